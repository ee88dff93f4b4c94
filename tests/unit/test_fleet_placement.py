"""Who takes a free bot: the least-loaded live node allowed to hold it; held bots stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.domain.fleet import FleetView, Lease, LeaseBook, bot_to_take

NOW = datetime(2025, 5, 10, 12, tzinfo=UTC)
TTL = timedelta(seconds=15)
LIVE = NOW - timedelta(seconds=2)
DEAD = NOW - timedelta(seconds=60)


def view(
    leases: dict[str, tuple[str | None, int]], beats: dict[str, datetime], wanted: str
) -> FleetView:
    return FleetView(
        NOW,
        beats,
        {b: Lease(b, h, 1, NOW + timedelta(seconds=s)) for b, (h, s) in leases.items()},
        frozenset(wanted.split()),
    )


ANY = {"b1": None, "b2": None, "b3": None}


def test_a_free_bot_goes_to_the_least_loaded_node_ties_by_name() -> None:
    v = view({"b1": ("a", 10)}, {"a": LIVE, "b": LIVE, "c": LIVE}, "b1 b2 b3")
    assert bot_to_take("a", v, ANY, TTL) is None, "a holds one already"
    assert bot_to_take("b", v, ANY, TTL) == "b2"
    assert bot_to_take("c", v, ANY, TTL) is None, "b is as loaded and comes first"


def test_an_expired_lease_frees_its_bot_and_a_dead_node_counts_for_nothing() -> None:
    v = view({"b1": ("a", -1), "b2": ("b", 10)}, {"a": DEAD, "b": LIVE, "c": LIVE}, "b1 b2")
    assert bot_to_take("c", v, ANY, TTL) == "b1"
    assert bot_to_take("b", v, ANY, TTL) is None


def test_nodes_restrict_where_a_bot_may_run_and_unwanted_bots_are_not_taken() -> None:
    v = view({}, {"a": LIVE, "b": LIVE}, "b1 b2")
    allowed = {"b1": ("b",), "b2": None, "b3": None}
    assert bot_to_take("a", v, allowed, TTL) == "b2"
    assert bot_to_take("b", v, allowed, TTL) == "b1"
    assert bot_to_take("a", view({}, {"a": LIVE}, "b3"), {"b3": ("z",)}, TTL) is None
    assert bot_to_take("a", view({}, {"a": LIVE}, ""), ANY, TTL) is None


def test_a_joining_node_takes_only_free_bots() -> None:
    v = view(
        {"b1": ("a", 10), "b2": ("a", 10), "b3": ("a", 10)}, {"a": LIVE, "d": LIVE}, "b1 b2 b3"
    )
    assert bot_to_take("d", v, ANY, TTL) is None


def test_a_lease_is_live_until_its_expiry_and_a_node_until_its_heartbeat_ttl() -> None:
    assert Lease("b1", "a", 1, NOW + timedelta(microseconds=1)).live(NOW)
    assert not Lease("b1", "a", 1, NOW).live(NOW), "expiring now: free"
    assert not Lease("b1", None, 1, NOW + timedelta(seconds=10)).live(NOW), "nobody holds it"
    beats = {"a": NOW - TTL + timedelta(microseconds=1), "b": NOW - TTL}
    assert view({}, beats, "").live_nodes(TTL) == {"a"}, "a beat exactly ttl ago is dead"


def test_each_live_lease_adds_one_to_its_holders_load() -> None:
    v = view(
        {"b1": ("a", 10), "b2": ("b", 10), "b3": ("b", 10), "x": ("ghost", 10)},
        {"a": LIVE, "b": LIVE, "c": LIVE},
        "b1 b2 b3 b4 b5",
    )
    anywhere = {**ANY, "b4": None, "b5": ("a", "b")}
    assert bot_to_take("c", v, anywhere, TTL) == "b4", "c holds nothing"
    assert bot_to_take("a", v, anywhere, TTL) == "b5", "a holds one, b two (among a and b)"
    assert bot_to_take("b", v, anywhere, TTL) is None
    two_on_a = view(
        {"b1": ("a", 10), "b2": ("a", 10), "b3": ("b", 10)}, {"a": LIVE, "b": LIVE}, "b4"
    )
    assert bot_to_take("b", two_on_a, {"b4": None}, TTL) == "b4", "two leases weigh more than one"
    assert bot_to_take("a", v, {"b4": ("a", "b")}, TTL) == "b4", (
        "a lease of a dead node counts for no one"
    )


def test_the_lease_book_remembers_each_bots_epoch_until_dropped() -> None:
    book = LeaseBook("node-a")
    assert (book.node, book.epoch("b1"), book.held()) == ("node-a", None, {})
    book.hold("b1", 3)
    book.hold("b2", 7)
    held = book.held()
    held["b9"] = 1  # a copy: the book is not changed through it
    assert (book.epoch("b1"), book.epoch("b2"), book.held()) == (3, 7, {"b1": 3, "b2": 7})
    book.drop("b1")
    book.drop("b1")  # twice is harmless
    assert (book.epoch("b1"), book.held()) == (None, {"b2": 7})
