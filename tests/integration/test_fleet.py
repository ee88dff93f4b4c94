"""Three daemons on one PostgreSQL: each bot held by exactly one, moving by itself when a
node dies, is paused past its leases, or loses the database.

Real subprocesses with their own sockets and state folders, one store URL, a real
PostgreSQL server; short leases keep it quick. The journal is the witness: every order
intent names the node and the lease epoch it was written under.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import REPO, eventually
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.integration.tcp_proxy import TcpProxy
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

TTL_S = 8.0  # short for the tests; long enough for a loaded 2-core machine
SPEED = 600  # ten 1m candles a second: one candle is 0.1 s
BOTS = ("b1", "b2", "b3")
NODES = ("node-a", "node-b", "node-c")


def fleet_config(path: Path, url: str) -> Path:
    """Three bots, each on its own paper account (a paper account moves with its bot)."""
    data = REPO / "data" / "candles"
    parts = [
        f'[store]\nurl = "{url}"\n',
        f"[fleet]\nlease_ttl_s = {TTL_S}\n",
        "[risk]\nmax_leverage = 3\nmax_position_usdt = 150\nmax_account_position_usdt = 300\n",
    ]
    for i, (bot, symbol) in enumerate(
        zip(BOTS, ("ETH/USDT:USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"), strict=True)
    ):
        parts.append(
            f'[accounts.p{i}]\nkind = "paper"\ninitial_balance = 1000\n'
            f'[accounts.p{i}.replay]\ndata_dir = "{data}"\nspeed = {SPEED}\n'
            f"start = 2025-05-10T00:00:00Z\n"
            f'[bots.{bot}]\naccount = "p{i}"\nsymbol = "{symbol}"\nstrategy = "ema_cross"\n'
            f'timeframes = ["1m", "5m"]\nleverage = 3\n'
            f'[bots.{bot}.params]\nfast = 5\nslow = 13\ntrend_timeframe = "5m"\n'
        )
    path.write_text("\n".join(parts))
    return path


class Fleet:
    def __init__(self, folder: Path, url: str) -> None:
        self.url = url
        self.config = fleet_config(folder / "config.toml", url)
        self.folder = folder
        self.nodes: dict[str, DaemonProcess] = {}
        self._sockets: list[Path] = []

    def add(self, node: str, url: str | None = None) -> DaemonProcess:
        socket_dir = short_socket_dir()
        self._sockets.append(socket_dir)
        daemon = DaemonProcess(
            self.config,
            self.folder / node / "state",
            socket_dir / "control.sock",
            self.folder / f"{node}.log",
            extra_env={"TRADECTL_NODE": node, "TRADECTL_STORE_URL": url or self.url},
        )
        (self.folder / node).mkdir(exist_ok=True)
        self.nodes[node] = daemon
        return daemon

    def holders(self) -> dict[str, str | None]:
        """bot -> the node holding a live lease (by the database's clock)."""
        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "SELECT bot, CASE WHEN expires_at > now() THEN holder END FROM leases"
            ).fetchall()
        return {bot: holder for bot, holder in rows}

    def running_on(self, node: str) -> set[str]:
        bots = self.nodes[node].cli_json("status")["bots"]
        return {b["name"] for b in bots if b["state"] == "running"}

    def intents(self, kind: str = "order_intent_recorded") -> list[dict[str, Any]]:
        """The journal's order intents (or, with `kind`, its cancel requests), in order."""
        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "SELECT id, bot, node, data FROM events WHERE kind = %s ORDER BY id", (kind,)
            ).fetchall()
        return [{"id": i, "bot": b, "node": n, **json.loads(d)} for i, b, n, d in rows]

    def stop(self) -> None:
        for daemon in self.nodes.values():
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGCONT)
            daemon.stop()
        for folder in self._sockets:
            remove(folder)


@pytest.fixture
def fleet(postgres: PostgresServer, tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(tmp_path, postgres.database())
    try:
        yield made
    finally:
        made.stop()


def start_fleet(fleet: Fleet, nodes: tuple[str, ...] = NODES) -> dict[str, str]:
    """Start the nodes together; once each sees them all live, start every bot (from one
    node: the store tells the others); bot -> the node it lands on."""
    for node in nodes:
        fleet.add(node).start(wait=False)
    for node in nodes:
        eventually(fleet.nodes[node]._answers, timeout=60)
    for node in nodes:
        eventually(
            lambda n=node: (
                sum(x["live"] for x in fleet.nodes[n].cli_json("status")["nodes"]) == len(nodes)
            )
        )
    started = fleet.nodes[nodes[0]].cli("start", "--all")
    assert started.returncode == 0, started.stderr
    return spread(fleet)


def spread(fleet: Fleet) -> dict[str, str]:
    """Wait until every bot is held by a live node and runs there; bot -> node."""

    def check() -> dict[str, str] | None:
        holders = fleet.holders()
        if set(holders) != set(BOTS) or None in holders.values():
            return None
        for bot, node in holders.items():
            assert node is not None
            if bot not in fleet.running_on(node):
                return None
        return {b: n for b, n in holders.items() if n is not None}

    return eventually(check, timeout=60, interval=0.2)


def assert_one_holder_per_epoch(fleet: Fleet) -> list[dict[str, Any]]:
    """From the journal: per bot, epochs never go back and each epoch has one node, so no
    two nodes ever wrote intents or cancel requests for one bot under one lease."""
    intents = [i for i in fleet.intents() if i["bot"] is not None and i["purpose"] != "flatten"]
    # a reconciliation's cancel for a bot no node held carries no epoch, as a flatten's
    cancels = [c for c in fleet.intents("order_cancel_requested") if c["epoch"] is not None]
    for bot in BOTS:
        mine = sorted((i for i in intents + cancels if i["bot"] == bot), key=lambda i: int(i["id"]))
        epochs = [i["epoch"] for i in mine]
        assert epochs == sorted(epochs), f"{bot}: epochs went back: {epochs}"
        by_epoch: dict[int, set[str]] = {}
        for i in mine:
            by_epoch.setdefault(i["epoch"], set()).add(i["node"])
        assert all(len(n) == 1 for n in by_epoch.values()), f"{bot}: {by_epoch}"
    cids = [i["cid"] for i in intents]
    assert len(cids) == len(set(cids)), "a client order id was used twice"
    return intents


def test_bots_spread_over_the_nodes_and_a_killed_nodes_bots_move_on(fleet: Fleet) -> None:
    placed = start_fleet(fleet)
    assert sorted(placed.values()) == sorted(NODES), f"one bot per node: {placed}"
    for node in NODES:
        status = fleet.nodes[node].cli_json("status")
        assert {b["name"]: b["node"] for b in status["bots"]} == placed
        assert all(b["lease_expires_at"] for b in status["bots"])
        assert sorted(n["node"] for n in status["nodes"] if n["live"]) == sorted(NODES)
    other = next(n for n in NODES if n != placed["b3"])
    stopped = fleet.nodes[other].cli("stop", "b3")  # any node acts on any bot
    assert stopped.returncode == 0, stopped.stderr
    asked = time.monotonic()
    eventually(lambda: fleet.holders()["b3"] is None, timeout=5, interval=0.05)
    assert time.monotonic() - asked < 2.0, "the holder acts within a second or so (NOTIFY)"
    assert "b3" not in fleet.running_on(placed["b3"])
    assert fleet.nodes[other].cli("start", "b3").returncode == 0
    placed = spread(fleet)
    eventually(lambda: len(fleet.intents()) >= 3, timeout=90)
    victim = placed["b1"]
    victim_bots = {b for b, n in placed.items() if n == victim}
    fleet.nodes[victim].signal(signal.SIGKILL)
    killed = time.monotonic()
    fleet.nodes[victim].wait()

    def moved() -> dict[str, str] | None:
        holders = fleet.holders()
        if any(holders.get(b) in (None, victim) for b in victim_bots):
            return None
        for bot in victim_bots:
            node = holders[bot]
            assert node is not None
            bots = fleet.nodes[node].cli_json("status")["bots"]
            [row] = [b for b in bots if b["name"] == bot]
            if row["state"] != "running" or row["candles_processed"] < 1:
                return None
        return {b: n for b, n in holders.items() if n is not None}

    after = eventually(moved, timeout=TTL_S * 10, interval=0.1)
    took = time.monotonic() - killed
    print(f"failover: {took:.2f} s (lease {TTL_S} s)")
    # the lease, one renewal round of the taker, and the runner's start on a loaded machine
    assert took < TTL_S * 1.2 + 5.0, f"bots moved after {took:.1f} s; the lease is {TTL_S} s"
    assert victim not in after.values()
    live = [n for n in NODES if n != victim]
    assert max(list(after.values()).count(n) for n in live) == 2  # 3 bots on 2 nodes
    assert_one_holder_per_epoch(fleet)
    health = fleet.nodes[live[0]].cli("health", "--fleet", "--json")
    assert health.returncode == 0, health.stdout
    bystander = next(n for n in live if n != after["b2"])
    flattened = fleet.nodes[bystander].cli_json(
        "flatten", "b2", "--yes"
    )  # from a node not holding it
    assert flattened["flat"] is True and flattened["halted"] == ["b2"]
    assert fleet.holders()["b2"] is None
    assert fleet.nodes[after["b2"]].bot("b2")["state"] == "halted"


def test_a_paused_node_sends_nothing_for_bots_it_lost_and_gives_them_up(fleet: Fleet) -> None:
    placed = start_fleet(fleet)
    paused = placed["b2"]
    daemon = fleet.nodes[paused]
    daemon.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()

    def moved() -> bool:
        holders = fleet.holders()
        return all(holders.get(b) not in (None, paused) for b, n in placed.items() if n == paused)

    eventually(moved, timeout=TTL_S * 10, interval=0.1)
    time.sleep(max(0.0, TTL_S - (time.monotonic() - stopped_at)))
    woke_at = len(daemon.log())
    daemon.signal(signal.SIGCONT)
    eventually(lambda: "lease_lost" in daemon.log(), timeout=TTL_S * 5)
    eventually(lambda: fleet.running_on(paused) == set(), timeout=TTL_S * 5)
    lost = [
        event
        for event in map(
            json.loads, filter(lambda line: line.startswith("{"), daemon.log().splitlines())
        )
        if event.get("event") in ("lease_lost", "bot_lease_lost") and event.get("bot") == "b2"
    ]
    # why depends on what the woken node does first: its renewal finds the lease gone, its
    # timer sees no renewal for too long, or the store refuses its next intent
    why = (
        "the lease expired or another node took it over",
        "no lease renewal reached the store",
        "no longer holds its lease",
    )
    assert lost and all(any(w in event["reason"] for w in why) for event in lost), lost
    time.sleep(TTL_S)  # let the moved bots trade on their new nodes
    intents = assert_one_holder_per_epoch(fleet)
    with psycopg.connect(fleet.url) as conn:
        epochs = dict(conn.execute("SELECT bot, epoch FROM leases").fetchall())
    cancels = [c for c in fleet.intents("order_cancel_requested") if c["epoch"] is not None]
    lost_bots = {bot for bot, node in placed.items() if node == paused}
    for bot in lost_bots:
        late = [i for i in intents + cancels if i["bot"] == bot and i["node"] == paused]
        assert all(i["epoch"] < epochs[bot] for i in late)
    woken = [
        event
        for event in map(
            json.loads,
            filter(lambda line: line.startswith("{"), daemon.log()[woke_at:].splitlines()),
        )
        if event.get("bot") in lost_bots
    ]
    sent = [e for e in woken if e.get("event") in ("order_cancelled", "order_cancel_failed")]
    assert sent == [], "the woken node sent a cancel for a bot it no longer holds"


def test_a_node_cut_off_from_the_database_stops_its_bots_before_its_leases_expire(
    fleet: Fleet, postgres: PostgresServer
) -> None:
    proxy = TcpProxy(postgres.port)
    try:
        cut_url = fleet.url.replace(f":{postgres.port}/", f":{proxy.port}/")
        fleet.add("node-a", cut_url).start()
        eventually(lambda: fleet.nodes["node-a"].cli_json("status")["nodes"])
        assert fleet.nodes["node-a"].cli("start", "--all").returncode == 0
        spread(fleet)  # one node: it holds all three
        for node in NODES[1:]:
            fleet.add(node).start()
        eventually(lambda: len(fleet.nodes["node-b"].cli_json("status")["nodes"]) == 3)
        held = {b for b, n in fleet.holders().items() if n == "node-a"}
        assert held, "node-a holds bots when the cut comes"
        seen = len(fleet.nodes["node-a"].log())
        proxy.cut()
        cut_at = time.monotonic()
        # Its status needs the store too: the log says what it did, and when.
        eventually(
            lambda: released(fleet.nodes["node-a"], seen) >= held, timeout=TTL_S * 3, interval=0.05
        )
        stopped_after = time.monotonic() - cut_at
        print(f"stopped {stopped_after:.2f} s after the cut (lease {TTL_S} s)")
        assert stopped_after < TTL_S, "the cut-off node must stop before its leases expire"

        def moved() -> bool:
            holders = fleet.holders()
            return all(holders.get(b) in ("node-b", "node-c") for b in held)

        eventually(moved, timeout=TTL_S * 10)
        assert_one_holder_per_epoch(fleet)
        cut_off = fleet.nodes["node-a"].cli_json("status")  # from memory, saying why
        assert cut_off["daemon"]["store_unreachable"], cut_off["daemon"]
        assert {b["name"] for b in cut_off["bots"]} >= held
        assert all(b["state"] != "running" for b in cut_off["bots"] if b["name"] in held)
        text = fleet.nodes["node-a"].cli("status")
        assert text.returncode == 0 and "state store unreachable" in text.stdout, text.stderr
    finally:
        proxy.close()


def test_one_daemon_on_postgresql_resumes_its_bots_after_a_kill_9(fleet: Fleet) -> None:
    placed = start_fleet(fleet, ("solo",))
    node = fleet.nodes["solo"]
    assert set(placed.values()) == {"solo"}
    eventually(lambda: len(fleet.intents()) >= 2, timeout=90)
    node.signal(signal.SIGKILL)
    node.wait()
    node.start()  # the same node name: it waits out its old leases, then takes them again
    again = spread(fleet)
    assert set(again.values()) == {"solo"}
    eventually(lambda: all(b["candles_processed"] > 0 for b in node.cli_json("status")["bots"]))
    assert_one_holder_per_epoch(fleet)
    assert node.cli("health", "--fleet").returncode == 0


def released(daemon: DaemonProcess, after: int) -> set[str]:
    """Bots the node stopped because it could not renew their leases (from its JSON log,
    past the first `after` characters)."""
    bots = set()
    for line in daemon.log()[after:].splitlines():
        if "bot_released" in line and "stopping before the lease expires" in line:
            bots.add(json.loads(line)["bot"])
    return bots
