"""A fleet's figures, measured in one run on a throw-away PostgreSQL server:

- the cost of the lease fence per order intent: record_intent of a bot (the trigger locks
  and checks its lease row) against the same intent of no bot (the trigger lets it
  through at once), and the SQLite store's record_intent as the single-node baseline;
- what a bot's cancel now costs before it is sent: record_cancel (always fenced on
  PostgreSQL; an unsynced write on SQLite);
- failover: kill -9 of the node holding a bot -> the bot processing candles on another
  node, over a few rounds, with the lease's length beside it.

Usage: python bench/fleet_figures.py [intents] [failover rounds] [lease_ttl_s]
(0 failover rounds: the write costs alone)
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.adapters.postgres_leases import PostgresLeases  # noqa: E402
from daemon.adapters.postgres_store import PostgresStore  # noqa: E402
from daemon.adapters.postgres_url import store_target  # noqa: E402
from daemon.adapters.sqlite_store import SqliteStore  # noqa: E402
from daemon.domain.bot_state import DesiredState  # noqa: E402
from daemon.domain.fleet import LeaseBook  # noqa: E402
from daemon.domain.models import Order, OrderIntent, OrderStatus, OrderType, Side  # noqa: E402
from tests.conftest import eventually  # noqa: E402
from tests.integration.test_fleet import Fleet  # noqa: E402
from tests.postgres_server import PostgresServer, find_bindir  # noqa: E402

T0 = datetime(2025, 5, 10, tzinfo=UTC)


def intents(prefix: str, bot: str | None, n: int) -> list[OrderIntent]:
    return [
        OrderIntent(
            bot,
            "paper",
            "ETH/USDT:USDT",
            f"{prefix}-{i:08d}",
            Side.BUY,
            OrderType.MARKET,
            Decimal("0.01"),
            None,
            False,
            T0,
        )
        for i in range(n)
    ]


def per_call_us(store: object, batch: list[OrderIntent]) -> float:
    record = store.record_intent  # type: ignore[attr-defined]
    started = time.perf_counter()
    for intent in batch:
        record(intent)
    return (time.perf_counter() - started) / len(batch) * 1e6


def cancel_us(store: object, n: int) -> float:
    """record_cancel per call: a resting stop of bot b1, asked to be cancelled n times."""
    stop = Order(
        "paper",
        "ETH/USDT:USDT",
        "tc-stop-00000001",
        Side.SELL,
        OrderType.STOP_MARKET,
        Decimal("0.01"),
        None,
        True,
        OrderStatus.OPEN,
        bot="b1",
        trigger_price=Decimal("2400"),
        purpose="stop",
    )
    record = store.record_cancel  # type: ignore[attr-defined]
    started = time.perf_counter()
    for _ in range(n):
        record(stop, "b1")
    return (time.perf_counter() - started) / n * 1e6


def fence_cost(server: PostgresServer, n: int) -> None:
    url = server.database()
    target = store_target(url, {})
    book = LeaseBook("bench")
    store = PostgresStore(target, book)
    store.set_desired_state("b1", DesiredState.RUNNING)

    async def take() -> int:
        leases = PostgresLeases(target, "bench", ttl_s=3600)
        epoch = await leases.acquire("b1")
        await leases.close()
        assert epoch is not None
        return epoch

    book.hold("b1", asyncio.run(take()))
    per_call_us(store, intents("warm", None, 200))
    rounds = [
        (
            per_call_us(store, intents(f"f{r}", "b1", n)),
            per_call_us(store, intents(f"u{r}", None, n)),
        )
        for r in range(3)
    ]
    fenced = statistics.median(f for f, _ in rounds)
    unfenced = statistics.median(u for _, u in rounds)
    cancel = statistics.median(cancel_us(store, n) for _ in range(3))
    store.close()
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SqliteStore(Path(folder) / "state.db")
        sqlite.set_desired_state("b1", DesiredState.RUNNING)
        single = per_call_us(sqlite, intents("s", "b1", n))
        single_cancel = cancel_us(sqlite, n)
        sqlite.close()
    print(f"record_intent, {n} intents, median of 3 rounds (loopback PostgreSQL, fsync off):")
    print(f"  fenced (bot's lease checked)   {fenced:8.0f} us")
    print(f"  unfenced (no bot)              {unfenced:8.0f} us")
    print(
        f"  fence cost per order           {fenced - unfenced:8.0f} us  "
        f"({fenced / unfenced:.2f}x the unfenced write)"
    )
    print(f"  SQLite (single node, FULL)     {single:8.0f} us")
    print(f"record_cancel, {n} requests, before each cancel is sent:")
    print(
        f"  PostgreSQL (fenced)            {cancel:8.0f} us  "
        f"({cancel / fenced:.2f}x a fenced intent)"
    )
    print(f"  SQLite (single node, NORMAL)   {single_cancel:8.0f} us")


def failover(server: PostgresServer, rounds: int, ttl_s: float) -> None:
    import tests.integration.test_fleet as fleet_module

    fleet_module.TTL_S = ttl_s
    times = []
    with tempfile.TemporaryDirectory(prefix="tcbench-") as folder:
        fleet = Fleet(Path(folder), server.database())
        try:
            for node in ("n1", "n2", "n3"):
                fleet.add(node).start()
            assert fleet.nodes["n1"].cli("start", "--all").returncode == 0
            for r in range(rounds):
                holders = eventually(lambda: (h := fleet.holders()).get("b1") and h, timeout=120)
                victim = holders["b1"]
                fleet.nodes[victim].signal(signal.SIGKILL)
                killed = time.monotonic()
                fleet.nodes[victim].wait()

                def elsewhere(victim: str = victim) -> bool:
                    node = fleet.holders().get("b1")
                    if node in (None, victim):
                        return False
                    bots = fleet.nodes[node].cli_json("status")["bots"]
                    row = next(b for b in bots if b["name"] == "b1")
                    return row["state"] == "running" and row["candles_processed"] > 0

                eventually(elsewhere, timeout=ttl_s * 10, interval=0.05)
                times.append(time.monotonic() - killed)
                fleet.nodes[victim].start()  # back, for the next round
                print(f"  round {r + 1}: {times[-1]:.2f} s", flush=True)
        finally:
            fleet.stop()
    print(f"failover (kill -9 -> b1 trading elsewhere), lease {ttl_s} s, {rounds} rounds:")
    print(
        f"  median {statistics.median(times):.2f} s, max {max(times):.2f} s "
        f"({statistics.median(times) / ttl_s:.2f}x the lease)"
    )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ttl_s = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    bindir = find_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries (initdb, postgres) here")
    server = PostgresServer(bindir).start()
    try:
        fence_cost(server, n)
        if rounds > 0:
            failover(server, rounds, ttl_s)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
