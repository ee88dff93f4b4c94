"""The lease keeper of a fleet node (daemon/runtime/leases.py) on a fake clock, against the
fleet's tables kept in memory: renewal, a lost lease stopping its bot at once, a node cut off
from the database stopping its bots ttl/3 before their leases can expire, taking a free bot,
giving up an unwanted one, a clean shutdown, and what status and health read of the fleet.

The tables answer the keeper's `FleetTable` port the way PostgreSQL does (postgres_leases.py,
tested against a real server in tests/component/test_postgres_fleet_store.py and the fleet's
integration tests); time passes only when a statement takes time or the keeper waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.domain.errors import StorageError
from daemon.domain.fleet import FleetView, Lease, LeaseBook
from daemon.runtime.leases import LeaseKeeper

T0 = datetime(2026, 11, 26, 9, tzinfo=UTC)  # the database's clock when the fake clock reads 0
TTL = timedelta(seconds=15)  # renew every 3 s, stop 5 s before a lease could expire
ANY = {"b1": None, "b2": None, "b3": None}
LOST = "the lease expired or another node took it over"
CUT_OFF = "no lease renewal reached the store; stopping before the lease expires"
UNWANTED = "its desired state is no longer running"


class Clock:
    """Monotonic seconds and the database's wall clock, one and the same fake time."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t)


class Database:
    """The fleet's shared tables: heartbeats, leases, desired states; it can be cut off, and
    each statement can take time."""

    def __init__(self, clock: Clock, wanted: str = "b1") -> None:
        self.clock = clock
        self.heartbeats: dict[str, datetime] = {}
        self.leases: dict[str, Lease] = {}
        self.wanted = set(wanted.split())
        self.reachable = True
        self.latency_s = 0.0
        self.broken: Exception | None = None  # raised by every statement (a bug, not an outage)
        self.quicker: str | None = None  # a node that takes the lease just before this one

    def statement(self) -> datetime:
        self.clock.t += self.latency_s
        if self.broken is not None:
            raise self.broken
        if not self.reachable:
            raise StorageError("fleet store unreachable: connection refused")
        return self.clock.now()

    def give(self, bot: str, holder: str | None, epoch: int, expires_in_s: float = 15) -> None:
        expires = self.clock.now() + timedelta(seconds=expires_in_s)
        self.leases[bot] = Lease(bot, holder, epoch, expires)


class Table:
    """One node's view of the tables (FleetTable), as postgres_leases.py answers it."""

    def __init__(self, db: Database, node: str) -> None:
        self.db = db
        self.node = node
        self.ttl = TTL
        self.watching = False
        self.closed = False
        self.waits: list[float] = []
        self.released: list[tuple[str, int]] = []
        self.release_fails: set[str] = set()
        self.rounds = 0  # how many waits before the keeper's loop is ended

    async def beat(self, held: dict[str, int]) -> dict[str, int]:
        now = self.db.statement()
        self.db.heartbeats[self.node] = now
        still = {}
        for bot, epoch in held.items():
            lease = self.db.leases.get(bot)
            if lease is not None and lease.holder == self.node and lease.live(now):
                self.db.leases[bot] = Lease(bot, self.node, lease.epoch, now + self.ttl)
                if lease.epoch == epoch:
                    still[bot] = epoch
        return still

    async def view(self) -> FleetView:
        now = self.db.statement()
        return FleetView(
            now, dict(self.db.heartbeats), dict(self.db.leases), frozenset(self.db.wanted)
        )

    async def acquire(self, bot: str) -> int | None:
        now = self.db.statement()
        if self.db.quicker is not None:
            self.db.give(bot, self.db.quicker, 7)
        lease = self.db.leases.get(bot)
        if lease is not None and lease.live(now):
            return None
        epoch = 1 if lease is None else lease.epoch + 1
        self.db.leases[bot] = Lease(bot, self.node, epoch, now + self.ttl)
        return epoch

    async def release(self, bot: str, epoch: int) -> None:
        now = self.db.statement()
        if bot in self.release_fails:
            raise StorageError(f"release of {bot} timed out")
        self.released.append((bot, epoch))
        lease = self.db.leases.get(bot)
        if lease is not None and lease.holder == self.node and lease.epoch == epoch:
            self.db.leases[bot] = Lease(bot, None, epoch, now)

    def watch(self) -> None:
        self.watching = True

    async def changed(self, timeout_s: float) -> bool:
        """No NOTIFY arrives: the keeper waits its whole timeout."""
        self.waits.append(timeout_s)
        if len(self.waits) > self.rounds:
            raise EnoughRounds
        self.db.clock.t += timeout_s
        return False

    async def close(self) -> None:
        self.closed = True


class EnoughRounds(Exception):
    """Ends the keeper's endless loop once a story has seen what it needs."""


class Host:
    """Where the bots run (the supervisor's role): what was started and stopped, in order."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events: list[tuple[Any, ...]] = []
        self.fail_give_up: set[str] = set()
        self.fail_adopt: list[Exception] = []  # raised by the next adopts, one each

    def adopt(self, name: str) -> None:
        if self.fail_adopt:
            raise self.fail_adopt.pop(0)
        self.events.append(("adopt", name))

    async def give_up(self, name: str, reason: str) -> None:
        self.events.append(("give_up", name, reason, self.clock.t))
        if name in self.fail_give_up:
            raise RuntimeError(f"{name}'s runner would not stop")


class Node:
    """One fleet node: its book, table, keeper and the bots it runs."""

    def __init__(
        self,
        db: Database,
        name: str = "a",
        allowed: dict[str, tuple[str, ...] | None] | None = None,
        on_adopt: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.book = LeaseBook(name)
        self.table = Table(db, name)
        self.host = Host(db.clock)
        self.keeper = LeaseKeeper(
            self.table, self.book, self.host, ANY if allowed is None else allowed, db.clock,
            on_adopt,
        )  # fmt: skip

    def tick(self) -> None:
        asyncio.run(self.keeper.tick())

    def run(self, rounds: int) -> None:
        """The keeper's loop for `rounds` waits."""
        self.table.rounds = rounds
        with pytest.raises(EnoughRounds):
            asyncio.run(self.keeper.run())

    def hold(self, bot: str, epoch: int = 1) -> None:
        """This node holds `bot` already (taken before the story starts)."""
        self.db.give(bot, self.book.node, epoch)
        self.book.hold(bot, epoch)

    @property
    def stopped(self) -> list[tuple[str, str]]:
        return [(e[1], e[2]) for e in self.host.events if e[0] == "give_up"]


@pytest.fixture
def db() -> Database:
    return Database(Clock())


# -- taking a free bot --------------------------------------------------------------------------


def test_a_free_bot_is_taken_and_launched_after_its_adoption_is_prepared(db: Database) -> None:
    order: list[str] = []

    async def prepare(bot: str) -> None:
        order.append(f"prepared {bot}")
        assert not node.host.events, "prepared before it is launched"

    node = Node(db, on_adopt=prepare)
    node.tick()
    assert node.book.held() == {"b1": 1} and node.keeper.holds("b1")
    assert order == ["prepared b1"]
    assert node.host.events == [("adopt", "b1")]
    assert db.leases["b1"] == Lease("b1", "a", 1, db.clock.now() + TTL)
    assert db.heartbeats == {"a": db.clock.now()}


def test_at_most_one_free_bot_is_taken_per_round(db: Database) -> None:
    db.wanted = {"b1", "b2"}
    node = Node(db)
    node.tick()
    assert node.book.held() == {"b1": 1}
    node.tick()
    assert node.book.held() == {"b1": 1, "b2": 1}
    assert node.host.events == [("adopt", "b1"), ("adopt", "b2")]
    node.tick()
    assert node.host.events == [("adopt", "b1"), ("adopt", "b2")], "nothing more to take"


def test_a_bot_another_node_took_first_is_not_launched_here(db: Database) -> None:
    db.quicker = "b"
    prepared: list[str] = []

    async def prepare(bot: str) -> None:
        prepared.append(bot)

    node = Node(db, on_adopt=prepare)
    node.tick()
    assert node.book.held() == {} and not node.keeper.holds("b1")
    assert node.host.events == [] and prepared == []


def test_a_bot_held_by_another_live_node_or_allowed_elsewhere_is_left_alone(db: Database) -> None:
    db.wanted = {"b1", "b2"}
    db.give("b1", "b", 3)
    node = Node(db, allowed={"b1": None, "b2": ("c",)})
    node.tick()
    assert node.book.held() == {} and node.host.events == []


def test_a_bot_with_no_adoption_step_is_simply_launched(db: Database) -> None:
    node = Node(db)
    node.tick()
    assert node.host.events == [("adopt", "b1")]


# -- renewal and losing a lease -----------------------------------------------------------------


def test_every_held_lease_is_renewed_each_round_for_another_ttl(db: Database) -> None:
    node = Node(db)
    assert node.keeper.renew_every_s == 3.0, "a fifth of the lease"
    node.hold("b1", 4)
    db.clock.t += 12
    node.tick()
    assert db.leases["b1"] == Lease("b1", "a", 4, db.clock.now() + TTL)
    assert node.book.held() == {"b1": 4} and node.host.events == []


def test_a_lease_that_expired_or_moved_on_is_lost_and_its_bot_stops_at_once(db: Database) -> None:
    db.wanted = {"b1", "b2", "b3"}
    node = Node(db)
    node.hold("b1", 1)
    node.hold("b2", 1)
    node.hold("b3", 1)
    db.give("b3", "b", 2)  # another node took b3 over
    db.give("b1", "a", 1, expires_in_s=0)  # b1's lease expired here
    node.tick()
    assert node.stopped == [("b1", LOST), ("b3", LOST)], "each stopped, in order"
    assert db.leases["b3"].holder == "b", "not taken back"
    assert node.book.held() == {"b1": 2, "b2": 1}, "b1 was free: taken again, a new epoch"
    assert node.host.events[-1] == ("adopt", "b1"), "and launched afresh after its stop"


def test_a_lease_renewed_at_another_epoch_is_not_ours_any_more(db: Database) -> None:
    node = Node(db)
    node.hold("b1", 1)
    db.give("b1", "a", 2)  # this node took it again elsewhere: the epoch it holds is stale
    node.tick()
    assert node.stopped == [("b1", LOST)]


def test_a_bot_that_cannot_be_stopped_does_not_keep_the_next_one_running(db: Database) -> None:
    db.wanted = {"b1", "b2"}
    node = Node(db)
    node.hold("b1")
    node.hold("b2")
    node.host.fail_give_up.add("b1")
    db.give("b1", "b", 2)
    db.give("b2", "b", 2)
    with capture_logs() as logs:
        node.tick()
    assert node.stopped == [("b1", LOST), ("b2", LOST)]
    assert not node.keeper.holds("b1") and not node.keeper.holds("b2")
    assert [e["bot"] for e in logs if e["event"] == "bot_release_failed"] == ["b1"]


# -- giving up a bot no longer wanted -----------------------------------------------------------


def test_a_bot_stopped_anywhere_in_the_fleet_is_stopped_here_and_its_lease_released(
    db: Database,
) -> None:
    db.wanted = {"b1", "b2", "b3"}
    node = Node(db)
    node.hold("b1", 2)
    node.hold("b2", 5)
    node.hold("b3", 1)
    db.wanted = {"b1", "b3"}
    node.tick()
    assert node.stopped == [("b2", UNWANTED)]
    assert node.table.released == [("b2", 5)]
    assert db.leases["b2"].holder is None, "another node may take it at once"
    assert node.book.held() == {"b1": 2, "b3": 1}
    node.tick()
    assert node.book.held() == {"b1": 2, "b3": 1}, "not taken back while unwanted"


def test_a_bot_this_node_may_not_hold_is_given_up_even_if_wanted(db: Database) -> None:
    node = Node(db, allowed={"b2": None})
    node.hold("b1", 3)
    node.tick()
    assert node.stopped == [("b1", UNWANTED)]
    assert node.table.released == [("b1", 3)]


def test_unwanted_bots_are_given_up_in_order_of_name(db: Database) -> None:
    db.wanted = set()
    node = Node(db)
    node.hold("b2", 1)
    node.hold("b1", 1)
    node.tick()
    assert node.stopped == [("b1", UNWANTED), ("b2", UNWANTED)]
    assert node.table.released == [("b1", 1), ("b2", 1)]


# -- cut off from the database ------------------------------------------------------------------


def test_a_node_cut_off_from_the_database_stops_its_bots_before_the_lease_can_expire(
    db: Database,
) -> None:
    db.wanted = {"b1", "b2"}
    node = Node(db)
    node.hold("b2")
    node.tick()  # renews b2 and takes b1 at t = 1000
    assert node.book.held() == {"b1": 1, "b2": 1}
    db.reachable = False
    for t in (1003.0, 1006.0, 1009.0, 1009.999):
        db.clock.t = t
        node.tick()
        assert node.stopped == [], f"at {t}: still 5 s or more before the lease can expire"
    db.clock.t = 1010.0  # exactly a third of the ttl before the database's expiry
    node.tick()
    assert node.stopped == [("b1", CUT_OFF), ("b2", CUT_OFF)]
    assert node.book.held() == {}
    assert db.leases["b1"].live(db.clock.now()), "stopped while the lease still stood"


def test_the_margin_counts_from_the_start_of_the_last_good_renewal(db: Database) -> None:
    db.latency_s = 0.5  # beat, view and take-over each take half a second
    node = Node(db)
    node.tick()  # started at 1000, b1 taken at 1001.5; its lease lasts until 1016.5
    assert node.book.held() == {"b1": 1}
    assert db.leases["b1"].expires_at == T0 + timedelta(seconds=1016.5)
    db.reachable = False
    db.latency_s = 0.0
    db.clock.t = 1009.999
    node.tick()
    assert node.stopped == []
    db.clock.t = 1010.0  # 15 s after the renewal started, less 5: the margin is kept
    node.tick()
    assert node.stopped == [("b1", CUT_OFF)]


def test_a_renewal_that_succeeds_again_in_time_keeps_the_bots_running(db: Database) -> None:
    node = Node(db)
    node.hold("b1")
    node.tick()  # at 1000
    db.reachable = False
    db.clock.t = 1009.0
    node.tick()
    db.reachable = True
    db.clock.t = 1009.5
    node.tick()  # a good renewal: safe until 1024.5 less the margin
    db.reachable = False
    db.clock.t = 1019.0
    node.tick()
    assert node.stopped == [] and node.book.held() == {"b1": 1}
    db.clock.t = 1019.5
    node.tick()
    assert node.stopped == [("b1", CUT_OFF)]


def test_a_node_that_never_renewed_has_nothing_to_stop(db: Database) -> None:
    db.reachable = False
    node = Node(db)
    node.book.hold("b1", 1)  # believed held, never renewed by this keeper
    db.clock.t += 3600
    node.tick()
    assert node.stopped == [] and node.book.held() == {"b1": 1}


def test_losing_the_database_is_logged_once_and_its_return_once(db: Database) -> None:
    with capture_logs() as logs:
        node = Node(db)
        node.tick()
        db.reachable = False
        for _ in range(3):
            db.clock.t += 1
            node.tick()
        db.reachable = True
        node.tick()
        node.tick()
        db.reachable = False
        node.tick()
    events = [e["event"] for e in logs if e["event"] != "lease_taken"]
    assert events == ["lease_renewal_failed", "store_reachable_again", "lease_renewal_failed"]
    assert {e["node"] for e in logs} == {"a"}, "a fleet's logs say which node speaks"
    assert logs[1]["error"] == "fleet store unreachable: connection refused"


# -- the keeper's loop ------------------------------------------------------------------------


def test_the_loop_renews_every_fifth_of_the_ttl_and_wakes_in_time_to_stop_when_cut_off(
    db: Database,
) -> None:
    async def cut_off_after_taking(bot: str) -> None:
        db.reachable = False

    node = Node(db, on_adopt=cut_off_after_taking)
    node.run(rounds=6)
    assert node.table.watching, "NOTIFY of desired-state changes is listened for"
    # taken at 1000 (lease until 1015): rounds at 1003, 1006, 1009, then 1010 to stop
    assert node.table.waits == [3.0, 3.0, 3.0, 1.0, 3.0, 3.0, 3.0]
    assert node.stopped == [("b1", CUT_OFF)]
    assert [e[3] for e in node.host.events if e[0] == "give_up"] == [1010.0]


def test_the_loop_never_spins_when_the_stop_is_due_in_a_moment(db: Database) -> None:
    db.latency_s = 3.33  # beat, view and take-over: the round ends 0.01 s before the margin
    node = Node(db)
    node.run(rounds=0)
    assert node.book.held() == {"b1": 1}
    assert node.table.waits == [0.05]


def test_a_node_with_nothing_held_waits_the_full_round(db: Database) -> None:
    db.wanted = set()
    node = Node(db)
    node.run(rounds=2)
    assert node.table.waits == [3.0, 3.0, 3.0]


def test_a_bot_whose_launch_fails_is_handed_back_and_taken_again_next_round(db: Database) -> None:
    """Held but never launched, a bot would run nowhere: its lease renewed here for good,
    and no orphan for `health --fleet` either."""
    node = Node(db)
    node.host.fail_adopt = [RuntimeError("cannot launch b1")]
    with capture_logs() as logs:
        node.run(rounds=1)
    assert [e["error"] for e in logs if e["event"] == "lease_keeper_failed"] == [
        "RuntimeError: cannot launch b1"
    ]
    assert node.table.released == [("b1", 1)]
    assert node.book.held() == {"b1": 2}, "taken again at the next round, a new epoch"
    assert node.host.events == [("adopt", "b1")]
    assert node.table.waits == [3.0, 3.0]


def test_a_store_failing_while_a_bot_is_launched_leaves_it_free_for_any_node(db: Database) -> None:
    node = Node(db)
    node.host.fail_adopt = [StorageError("bots table: connection lost")]
    node.tick()
    assert node.book.held() == {} and node.host.events == []
    assert db.leases["b1"].holder is None, "released, not renewed here for good"
    assert node.keeper.orphans() == ["b1"], "health --fleet reports it until it runs"


def test_a_bot_whose_launch_fails_with_the_store_away_is_not_renewed_again(db: Database) -> None:
    failures = [StorageError("paper account: connection lost")]

    async def store_gone_once(bot: str) -> None:
        if failures:
            db.reachable = False
            raise failures.pop()

    node = Node(db, on_adopt=store_gone_once)
    node.tick()
    assert node.book.held() == {} and node.table.released == []
    db.reachable = True
    db.clock.t += 15  # its lease runs out, never renewed
    node.tick()
    assert node.book.held() == {"b1": 2} and node.host.events == [("adopt", "b1")]


def test_renewals_failing_in_an_unexpected_way_still_stop_the_bots_in_time(db: Database) -> None:
    node = Node(db)
    node.tick()  # b1 taken at 1000
    db.broken = RuntimeError("a driver bug")
    node.run(rounds=5)
    assert node.stopped == [("b1", CUT_OFF)]
    assert [e[3] for e in node.host.events if e[0] == "give_up"] == [1010.0]


# -- a clean shutdown ---------------------------------------------------------------------------


def test_a_clean_stop_gives_every_lease_up_so_other_nodes_take_the_bots_at_once(
    db: Database,
) -> None:
    db.wanted = {"b1", "b2", "b3"}
    node = Node(db)
    node.hold("b3", 2)
    node.hold("b1", 9)
    node.hold("b2", 1)
    node.table.release_fails.add("b1")  # the store times out for one: the others still go
    asyncio.run(node.keeper.shutdown())
    assert node.table.released == [("b2", 1), ("b3", 2)]
    assert node.book.held() == {}
    assert node.table.closed
    assert db.leases["b3"].holder is None and db.leases["b2"].holder is None


# -- what status and health read --------------------------------------------------------------


def test_status_shows_a_live_lease_with_its_holder_expiry_and_epoch(db: Database) -> None:
    db.wanted = {"b1", "b2", "b3"}
    node = Node(db)
    assert node.keeper.lease_of("b1") == {
        "node": None,
        "lease_expires_at": None,
        "lease_epoch": None,
    }, "before the first view"
    node.hold("b1", 4)
    db.give("b2", "b", 6, expires_in_s=0)  # expired: no holder, its epoch still shown
    asyncio.run(node.keeper.refresh())
    assert node.keeper.lease_of("b1") == {
        "node": "a",
        "lease_expires_at": (T0 + timedelta(seconds=1015)).isoformat(),
        "lease_epoch": 4,
    }
    assert node.keeper.lease_of("b2") == {
        "node": None,
        "lease_expires_at": None,
        "lease_epoch": 6,
    }
    assert node.keeper.lease_of("b3") == {
        "node": None,
        "lease_expires_at": None,
        "lease_epoch": None,
    }


def test_a_refresh_keeps_the_last_view_when_the_store_does_not_answer(db: Database) -> None:
    node = Node(db)
    node.tick()
    seen = node.keeper.view
    assert seen is not None
    db.reachable = False
    db.clock.t += 1
    asyncio.run(node.keeper.refresh())
    assert node.keeper.view is seen
    db.reachable = True
    asyncio.run(node.keeper.refresh())
    assert node.keeper.view is not seen and node.keeper.view.now == db.clock.now()


def test_nodes_are_listed_with_their_heartbeat_liveness_and_live_bots(db: Database) -> None:
    node = Node(db)
    assert node.keeper.nodes() == [], "before the first view"
    db.heartbeats = {
        "c": db.clock.now() - TTL,  # exactly a ttl ago: dead
        "b": db.clock.now() - TTL + timedelta(milliseconds=1),
    }
    db.wanted = {"b1", "b2", "b3", "b4", "b5"}
    db.give("b2", "b", 1)
    db.give("b3", "b", 1)
    db.give("b4", "c", 1, expires_in_s=0)  # expired: counts for nobody
    db.give("b5", "z", 1)  # a holder with no heartbeat row
    node.tick()  # a heartbeats and takes b1
    asyncio.run(node.keeper.refresh())
    assert node.keeper.nodes() == [
        {"node": "a", "heartbeat_at": db.clock.now().isoformat(), "live": True, "bots": 1},
        {
            "node": "b",
            "heartbeat_at": (db.clock.now() - TTL + timedelta(milliseconds=1)).isoformat(),
            "live": True,
            "bots": 2,
        },
        {
            "node": "c",
            "heartbeat_at": (db.clock.now() - TTL).isoformat(),
            "live": False,
            "bots": 0,
        },
    ]


def test_orphans_are_wanted_bots_this_node_may_run_with_no_live_holder(db: Database) -> None:
    node = Node(db, allowed={"b3": None, "b1": ("a",), "b2": None, "b4": ("z",)})
    assert node.keeper.orphans() == ["b1", "b2", "b3", "b4"], "no view yet: every bot"
    db.wanted = {"b1", "b2", "b3", "b5"}
    db.give("b1", "b", 1)
    db.give("b2", "b", 1, expires_in_s=0)
    asyncio.run(node.keeper.refresh())
    assert node.keeper.orphans() == ["b2", "b3"]
