"""What one `status` call costs the daemon's event loop at N bots, without the socket.

On a shared machine the socket round trip measures the scheduler as much as the daemon
(`ping`, which does nothing, had a p99 of 5-12 ms in the same runs); this measures the
handler's own work in one process: the supervisor's status of N bots on a real SQLite
file (each bot with a desired state, a few fills and a resting stop), encoded as the
reply, and scrubbed as the server does. Baseline in the same run, the way it was done
before: every bot's record, live orders and realised PnL read from the file (the caches
emptied before each call) and `scrub` run on every string of the reply.

Usage: python bench/status_handler.py [bots ...] (default 1 10 100 1000)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.adapters.sqlite_store import SqliteStore  # noqa: E402
from daemon.clock import SystemClock  # noqa: E402
from daemon.domain.bot_state import DesiredState  # noqa: E402
from daemon.domain.models import Fill, OrderIntent, OrderType, Side  # noqa: E402
from daemon.redaction import may_need_scrub, scrub_value  # noqa: E402
from daemon.runtime.bot_runner import BotSpec  # noqa: E402
from daemon.runtime.supervisor import Supervisor  # noqa: E402
from tradectl.protocol import Reply, encode_reply  # noqa: E402

T0 = datetime(2025, 5, 10, tzinfo=UTC)


def supervisor_of(bots: int, folder: Path) -> tuple[Supervisor, SqliteStore]:
    store = SqliteStore(folder / "state.db")
    specs = {}
    for i in range(bots):
        name = f"eth-{i}"
        specs[name] = (
            BotSpec(name, f"paper{i // 2}", "ETH/USDT:USDT", "ema_cross", ("1m", "5m"), 5),
            True,
        )
        store.set_desired_state(name, DesiredState.RUNNING)
        for n in range(5):
            store.record_fill(
                Fill(
                    f"paper{i // 2}",
                    f"{name}-f{n}",
                    f"tc{i}-{n}",
                    "ETH/USDT:USDT",
                    Side.BUY,
                    Decimal("0.02"),
                    Decimal(2500),
                    Decimal("0.03"),
                    Decimal("1.5"),
                    T0 + timedelta(minutes=n),
                ),
                name,
            )
        store.record_intent(
            OrderIntent(
                bot=name,
                account=f"paper{i // 2}",
                symbol="ETH/USDT:USDT",
                client_order_id=f"tc{i}-stop",
                side=Side.SELL,
                type=OrderType.STOP_MARKET,
                qty=Decimal("0.02"),
                price=None,
                reduce_only=True,
                created_at=T0,
                trigger_price=Decimal(2400),
                purpose="stop",
            )
        )
    return Supervisor(specs, lambda spec, started: None, store, SystemClock()), store  # type: ignore[arg-type,return-value]


def one_call(supervisor: Supervisor, store: SqliteStore, before: bool) -> float:
    began = time.perf_counter()
    if before:
        store._bot_cache.clear()
        store._live_cache.clear()
        store._realized_cache.clear()
        store._position_cache.clear()
    reply = Reply("1", True, {"bots": supervisor.status()})
    if before:
        body = encode_reply(Reply("1", True, scrub_value(reply.result)))
    else:
        body = encode_reply(reply)
        if may_need_scrub(body.decode()):
            body = encode_reply(Reply("1", True, scrub_value(reply.result)))
    assert body
    return time.perf_counter() - began


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1, 10, 100, 1000]
    print("bots   now p50 / p99 (ms)     before p50 / p99 (ms)   calls each")
    for bots in counts:
        with tempfile.TemporaryDirectory(prefix="tc-status-") as tmp:
            supervisor, store = supervisor_of(bots, Path(tmp))
            calls = max(20, 20_000 // bots)
            now, before = [], []
            for _ in range(calls):  # alternate, so the machine's load falls on both alike
                now.append(one_call(supervisor, store, before=False))
                before.append(one_call(supervisor, store, before=True))
            store.close()

        def figures(samples: list[float]) -> str:
            ordered = sorted(samples)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            return f"{statistics.median(samples) * 1000:8.3f} / {p99 * 1000:8.3f}"

        print(f"{bots:>5}  {figures(now)}    {figures(before)}    {calls}")


if __name__ == "__main__":
    main()
