"""What only the PostgreSQL store does: refuse a newer database by name, keep the password
out of config and logs, and fence order intents, cancels and a runner's halt with the bot's
lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from daemon.adapters.postgres_leases import PostgresLeases
from daemon.adapters.postgres_store import MIGRATIONS, PostgresStore, StoreError
from daemon.adapters.postgres_url import store_target
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import ConfigError, LeaseLost
from daemon.domain.fleet import LeaseBook
from daemon.domain.models import Order, OrderIntent, OrderStatus, OrderType, Side
from daemon.redaction import scrub
from tests.postgres_server import PostgresServer

T0 = datetime(2025, 5, 10, tzinfo=UTC)


def intent(cid: str, purpose: str = "entry", bot: str = "b1") -> OrderIntent:
    return OrderIntent(
        bot,
        "paper",
        "ETH/USDT:USDT",
        cid,
        Side.BUY,
        OrderType.MARKET,
        Decimal("0.02"),
        None,
        purpose == "flatten",
        T0,
        purpose=purpose,
    )


def test_a_database_newer_than_the_code_is_refused_by_name(postgres: PostgresServer) -> None:
    url = postgres.database()
    PostgresStore(store_target(url, {}), LeaseBook("n1")).close()
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match=f"schema version {len(MIGRATIONS) + 1} is newer") as e:
        PostgresStore(store_target(url, {}), LeaseBook("n1"))
    assert url.rsplit("/", 1)[1] in str(e.value), "the refusal names the database"


def test_a_fleet_database_from_before_real_accounts_is_upgraded_in_place(
    postgres: PostgresServer,
) -> None:
    """Migrations 2 on (fill kinds, funding, history cursors, duty runs) keep the fills."""
    url = postgres.database()
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE schema_version ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        conn.execute(MIGRATIONS[0])
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute(
            "INSERT INTO fills (account, fill_id, client_order_id, bot, symbol, side, qty, "
            "price, fee, realized_pnl, ts) VALUES ('paper', 'f1', 'tcabc-00000001', 'b1', "
            "'ETH/USDT:USDT', 'sell', '0.02', '2500', '0.025', '1.5', %s)",
            (T0.isoformat(),),
        )
    store = PostgresStore(store_target(url, {}), LeaseBook("n1"))
    try:
        assert store.schema_version == len(MIGRATIONS)
        [old] = store.fills("b1")
        assert (old.fill_id, old.kind) == ("f1", "trade")
        assert store.realized_pnl("b1") == Decimal("1.475")
        assert store.funding("b1") == []
        assert store.history_cursor("paper", "ETH/USDT:USDT", "fills") is None
    finally:
        store.close()


def test_an_unreachable_database_is_a_clear_storage_error(postgres: PostgresServer) -> None:
    dead = postgres.url("tradectl", port=1)
    with pytest.raises(StoreError, match="cannot connect to the state store"):
        PostgresStore(store_target(dead, {}), LeaseBook("n1"))


def test_the_password_never_comes_from_the_url_and_never_shows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="carries a password"):
        store_target("postgresql://trader:hunter22@db.internal/tradectl", {})
    (tmp_path / "tradectl_store-password").write_text("s3cret-store-pw\n")
    target = store_target(
        "postgresql://trader@db.internal:5432/tradectl?sslmode=verify-full",
        {"CREDENTIALS_DIRECTORY": str(tmp_path)},
    )
    assert target.password == "s3cret-store-pw"
    assert "s3cret" not in repr(target) and "s3cret" not in str(target)
    assert str(target) == "postgresql://trader@db.internal:5432/tradectl"
    assert "s3cret" not in scrub("connection failed: password s3cret-store-pw rejected")
    with pytest.raises(ConfigError, match="names no database"):
        store_target("postgresql://trader@db.internal:5432", {})


def test_an_intent_is_refused_once_the_lease_moved_to_another_node(
    postgres: PostgresServer,
) -> None:
    url = postgres.database()
    target = store_target(url, {})
    book_a, book_b = LeaseBook("node-a"), LeaseBook("node-b")
    store_a, store_b = PostgresStore(target, book_a), PostgresStore(target, book_b)
    store_a.set_desired_state("b1", DesiredState.RUNNING)

    async def story() -> None:
        leases_a = PostgresLeases(target, "node-a", ttl_s=1.0)
        leases_b = PostgresLeases(target, "node-b", ttl_s=1.0)
        epoch_a = await leases_a.acquire("b1")
        assert epoch_a == 1 and await leases_b.acquire("b1") is None, "one holder at a time"
        book_a.hold("b1", epoch_a)
        store_a.record_intent(intent("tc-a-1"))  # the holder writes
        with pytest.raises(LeaseLost, match="node-b"):
            store_b.record_intent(intent("tc-b-0"))  # a node without the lease cannot
        await asyncio.sleep(1.2)  # node-a paused past its lease
        epoch_b = await leases_b.acquire("b1")
        assert epoch_b == 2
        book_b.hold("b1", epoch_b)
        with pytest.raises(LeaseLost, match="no longer holds"):
            store_a.record_intent(intent("tc-a-2"))  # woke up: fenced
        book_a.drop("b1")  # what its keeper does next
        assert await leases_a.beat({"b1": epoch_a}) == {}, "the old holder cannot renew"
        store_b.record_intent(intent("tc-b-1"))
        with pytest.raises(LeaseLost, match="the flatten waits"):
            store_a.record_intent(intent("tc-fx-1", "flatten"))
        await leases_b.release("b1", epoch_b)
        store_a.record_intent(intent("tc-fx-2", "flatten"))  # nobody holds it: flatten may
        await leases_a.close()
        await leases_b.close()

    asyncio.run(story())
    assert store_a.order("tc-a-2") is None and store_a.order("tc-b-0") is None
    written = [
        (e["cid"], e["node"], e["epoch"])
        for e in store_a.events("b1")
        if e["kind"] == "order_intent_recorded"
    ]
    assert written == [
        ("tc-a-1", "node-a", 1),
        ("tc-b-1", "node-b", 2),
        ("tc-fx-2", "node-a", None),
    ]
    store_a.close()
    store_b.close()


def test_a_direct_flatten_waits_for_the_holder_to_let_go(postgres: PostgresServer) -> None:
    from daemon.domain.errors import Refused
    from daemon.emergency import _wait_let_go

    url = postgres.database()
    target = store_target(url, {})
    store = PostgresStore(target, LeaseBook("host-flatten"))

    async def story() -> None:
        leases = PostgresLeases(target, "node-a", ttl_s=60)
        epoch = await leases.acquire("b1")
        assert epoch is not None
        with pytest.raises(Refused, match="b1 by node-a"):
            await _wait_let_go(store, ["b1", "b2"], timeout_s=0.5)
        await leases.release("b1", epoch)
        await _wait_let_go(store, ["b1", "b2"], timeout_s=2.0)
        await leases.close()

    asyncio.run(story())
    store.record_intent(intent("tc-fx-9", "flatten"))  # now the store takes it
    store.close()


def resting_stop(cid: str, bot: str = "b1") -> Order:
    return Order(
        account="paper",
        symbol="ETH/USDT:USDT",
        client_order_id=cid,
        side=Side.SELL,
        type=OrderType.STOP_MARKET,
        qty=Decimal("0.02"),
        price=None,
        reduce_only=True,
        status=OrderStatus.OPEN,
        bot=bot,
        trigger_price=Decimal("2400"),
        purpose="stop",
    )


def test_a_runners_halt_is_refused_once_the_lease_moved_but_an_operators_is_not(
    postgres: PostgresServer,
) -> None:
    """A node woken from a pause cannot halt the bot its new holder runs (its loss limit
    breached by a stale look); the operator's halt, the emergency brake, works from any node."""
    url = postgres.database()
    target = store_target(url, {})
    book_a, book_b = LeaseBook("node-a"), LeaseBook("node-b")
    store_a, store_b = PostgresStore(target, book_a), PostgresStore(target, book_b)
    store_a.set_desired_state("b1", DesiredState.RUNNING)
    store_a.set_desired_state("b2", DesiredState.RUNNING)

    async def story() -> None:
        leases_a = PostgresLeases(target, "node-a", ttl_s=1.0)
        leases_b = PostgresLeases(target, "node-b", ttl_s=1.0)
        with pytest.raises(LeaseLost, match="no longer holds its lease"):
            store_a.record_halt(["b1"], "daily loss limit", for_bot="b1")  # nobody holds it
        epoch_a = await leases_a.acquire("b1")
        assert epoch_a is not None
        book_a.hold("b1", epoch_a)
        with pytest.raises(LeaseLost, match=r"holder node-a, epoch 1,"):
            store_b.record_halt(["b1"], "daily loss limit", for_bot="b1")  # not its bot
        await asyncio.sleep(1.2)  # node-a paused past its lease
        with pytest.raises(LeaseLost, match=r"holder node-a, epoch 1,"):
            store_a.record_halt(["b1"], "daily loss limit", for_bot="b1")  # expired
        epoch_b = await leases_b.acquire("b1")
        assert epoch_b == epoch_a + 1
        book_b.hold("b1", epoch_b)
        with pytest.raises(LeaseLost, match=r"holder node-b, epoch 2, .*its halt \(a loss"):
            store_a.record_halt(["b1", "b2"], "a loss", for_bot="b1")  # woke up: fenced
        assert [store_b.bot(n).desired_state for n in ("b1", "b2")] == [  # type: ignore[union-attr]
            DesiredState.RUNNING
        ] * 2, "nothing of the refused halt was written"
        store_b.record_halt(["b1", "b2"], "account daily loss limit", for_bot="b1")  # the holder
        store_b.set_desired_state("b1", DesiredState.RUNNING, cause="resume")
        store_a.set_desired_state("b1", DesiredState.HALTED, reason="operator", cause="flatten")
        await leases_a.close()
        await leases_b.close()

    asyncio.run(story())
    halts = [
        (e["bot"], e["node"], e["cause"])
        for e in store_a.events(limit=100)
        if e["kind"] == "desired_state_changed" and e["state"] == "halted"
    ]
    assert halts == [
        ("b1", "node-b", "risk"),
        ("b2", "node-b", "risk"),
        ("b1", "node-a", "flatten"),
    ]
    store_a.close()
    store_b.close()


def test_a_cancel_is_refused_once_the_lease_moved_to_another_node(
    postgres: PostgresServer,
) -> None:
    """A node woken from a pause cannot cancel the new holder's stop: its cancel request is
    fenced like an intent, with no exception (a flatten's cancels are not the bot's)."""
    url = postgres.database()
    target = store_target(url, {})
    book_a, book_b = LeaseBook("node-a"), LeaseBook("node-b")
    store_a, store_b = PostgresStore(target, book_a), PostgresStore(target, book_b)
    store_a.set_desired_state("b1", DesiredState.RUNNING)

    async def story() -> None:
        leases_a = PostgresLeases(target, "node-a", ttl_s=1.0)
        leases_b = PostgresLeases(target, "node-b", ttl_s=1.0)
        with pytest.raises(LeaseLost, match="no longer holds its lease"):
            store_a.record_cancel(resting_stop("tc-a-1"), "b1")  # nobody holds it yet
        epoch_a = await leases_a.acquire("b1")
        assert epoch_a is not None
        book_a.hold("b1", epoch_a)
        store_a.record_cancel(resting_stop("tc-a-1"), "b1")  # the holder may
        with pytest.raises(LeaseLost, match="node-b"):
            store_b.record_cancel(resting_stop("tc-a-1"), "b1")  # another node may not
        await asyncio.sleep(1.2)  # node-a paused past its lease
        with pytest.raises(LeaseLost, match=r"lease \(holder node-a, epoch 1,"):
            store_a.record_cancel(resting_stop("tc-a-1"), "b1")  # expired, nobody took it
        epoch_b = await leases_b.acquire("b1")
        assert epoch_b == epoch_a + 1
        book_b.hold("b1", epoch_b)
        store_b.record_intent(intent("tc-b-1"))  # the new holder's stop, say
        with pytest.raises(LeaseLost, match="the cancel of tc-b-1 is not sent"):
            store_a.record_cancel(resting_stop("tc-b-1"), "b1")  # woke up: fenced
        store_b.record_cancel(resting_stop("tc-b-1"), "b1")
        await leases_a.close()
        await leases_b.close()

    asyncio.run(story())
    asked = [
        (e["cid"], e["node"], e["epoch"])
        for e in store_a.events("b1")
        if e["kind"] == "order_cancel_requested"
    ]
    assert asked == [("tc-a-1", "node-a", 1), ("tc-b-1", "node-b", 2)]
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT client_order_id, lease_node, lease_epoch FROM cancel_requests ORDER BY id"
        ).fetchall()
    assert rows == [("tc-a-1", "node-a", 1), ("tc-b-1", "node-b", 2)]
    store_a.close()
    store_b.close()


def test_a_fleet_database_from_before_fenced_cancels_opens_and_fences_them(
    postgres: PostgresServer,
) -> None:
    """A database the previous version made (schema 3, orders in it) is migrated in place."""
    url = postgres.database()
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE schema_version ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, script in enumerate(MIGRATIONS[:3], start=1):
            conn.execute(script)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    book = LeaseBook("node-a")
    store = PostgresStore(store_target(url, {}), book)
    try:
        assert store.schema_version == len(MIGRATIONS)
        with pytest.raises(LeaseLost):
            store.record_cancel(resting_stop("tc-old-1"), "b1")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO leases (bot, holder, epoch, expires_at, acquired_at) "
                "VALUES ('b1', 'node-a', 3, now() + interval '1 minute', now())"
            )
        book.hold("b1", 3)
        store.record_cancel(resting_stop("tc-old-1"), "b1")
        [asked] = [e for e in store.events("b1") if e["kind"] == "order_cancel_requested"]
        assert (asked["cid"], asked["epoch"]) == ("tc-old-1", 3)
    finally:
        store.close()


def test_a_reconciliations_cancel_passes_unless_another_node_holds_the_bot(
    postgres: PostgresServer,
) -> None:
    """A start-up reconciliation cancels for bots no node holds (the protection of one
    whose position is gone); once another node holds the bot, its orders are left to it."""
    url = postgres.database()
    target = store_target(url, {})
    book_a, book_b = LeaseBook("node-a"), LeaseBook("node-b")
    store_a, store_b = PostgresStore(target, book_a), PostgresStore(target, book_b)

    async def story() -> None:
        leases_a = PostgresLeases(target, "node-a", ttl_s=60)
        leases_b = PostgresLeases(target, "node-b", ttl_s=60)
        store_a.record_cancel(resting_stop("tc-r-1"), "b1", cause="reconcile")  # no lease row
        epoch_b = await leases_b.acquire("b1")
        assert epoch_b is not None
        book_b.hold("b1", epoch_b)
        with pytest.raises(LeaseLost, match=r"held by node node-b .* tc-r-2 is left to it"):
            store_a.record_cancel(resting_stop("tc-r-2"), "b1", cause="reconcile")
        store_b.record_cancel(resting_stop("tc-r-3"), "b1", cause="reconcile")  # its holder
        await leases_b.release("b1", epoch_b)
        store_a.record_cancel(resting_stop("tc-r-4"), "b1", cause="reconcile")  # let go
        with pytest.raises(LeaseLost, match="no longer holds"):
            store_a.record_cancel(resting_stop("tc-r-5"), "b1")  # a runner's: holder only
        await leases_a.close()
        await leases_b.close()

    asyncio.run(story())
    asked = [
        (e["cid"], e["node"], e["cause"], e["epoch"])
        for e in store_a.events("b1")
        if e["kind"] == "order_cancel_requested"
    ]
    assert asked == [
        ("tc-r-1", "node-a", "reconcile", None),
        ("tc-r-3", "node-b", "reconcile", 1),
        ("tc-r-4", "node-a", "reconcile", None),
    ]
    store_a.close()
    store_b.close()


def test_a_halts_flatten_cancel_passes_unless_another_node_holds_the_bot_on_a_migrated_database(
    postgres: PostgresServer,
) -> None:
    """A database from before (schema 4, fenced cancels) is migrated in place; then a loss
    limit's flatten (cause `flatten`) cancels for a bot no node holds live, as a
    reconciliation does, and leaves one another node holds to it."""
    url = postgres.database()
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE schema_version ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, script in enumerate(MIGRATIONS[:4], start=1):
            conn.execute(script)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    target = store_target(url, {})
    store_a = PostgresStore(target, LeaseBook("node-a"))
    book_b = LeaseBook("node-b")
    store_b = PostgresStore(target, book_b)

    async def story() -> None:
        leases_b = PostgresLeases(target, "node-b", ttl_s=60)
        store_a.record_cancel(resting_stop("tc-f-1"), "b1", cause="flatten")  # no lease row
        epoch_b = await leases_b.acquire("b1")
        assert epoch_b is not None
        book_b.hold("b1", epoch_b)
        with pytest.raises(LeaseLost, match=r"held by node node-b .* tc-f-2 is left to it"):
            store_a.record_cancel(resting_stop("tc-f-2"), "b1", cause="flatten")
        await leases_b.release("b1", epoch_b)
        store_a.record_cancel(resting_stop("tc-f-3"), "b1", cause="flatten")  # let go
        await leases_b.close()

    try:
        assert store_a.schema_version == len(MIGRATIONS)
        asyncio.run(story())
        asked = [
            (e["cid"], e["cause"])
            for e in store_a.events("b1")
            if e["kind"] == "order_cancel_requested"
        ]
        assert asked == [("tc-f-1", "flatten"), ("tc-f-3", "flatten")]
    finally:
        store_a.close()
        store_b.close()
