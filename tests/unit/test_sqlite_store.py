"""The state store on a real SQLite file: durable, append-only journal, one daemon per folder."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.adapters.sqlite_store import MIGRATIONS, SqliteStore, StoreError
from daemon.adapters.state_lock import StateDirLock
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import StateLocked
from daemon.domain.models import Fill, Order, OrderIntent, OrderStatus, OrderType, Position, Side

T0 = datetime(2025, 5, 10, tzinfo=UTC)


def intent(cid: str = "tcabc-00000001") -> OrderIntent:
    return OrderIntent(
        bot="b1",
        account="paper",
        symbol="ETH/USDT:USDT",
        client_order_id=cid,
        side=Side.BUY,
        type=OrderType.MARKET,
        qty=Decimal("0.02"),
        price=None,
        reduce_only=False,
        created_at=T0,
    )


def test_store_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    assert store.schema_version == len(MIGRATIONS)
    mode = sqlite3.connect(tmp_path / "state.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_desired_state_survives_reopening_and_is_journalled(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.set_desired_state("b1", DesiredState.RUNNING)
    store.set_desired_state("b1", DesiredState.HALTED, reason="daily loss limit")
    store.close()
    again = SqliteStore(tmp_path / "state.db")
    record = again.bot("b1")
    assert record is not None
    assert (record.desired_state, record.halt_reason) == (DesiredState.HALTED, "daily loss limit")
    kinds = [(e["kind"], e["state"]) for e in again.events("b1")]
    assert kinds == [("desired_state_changed", "running"), ("desired_state_changed", "halted")]


def test_journal_is_append_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.journal("something_happened", "b1", n=1)
    raw = sqlite3.connect(tmp_path / "state.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM events")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE events SET kind = 'x'")


def test_intent_is_durable_before_the_order_is_sent(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.set_desired_state("b1", DesiredState.RUNNING)
    store.record_intent(intent())
    # Another connection (another process after a crash) sees it at once.
    other = SqliteStore(tmp_path / "state.db")
    [pending] = other.live_orders("b1")
    assert (pending.client_order_id, pending.status) == (
        "tcabc-00000001",
        OrderStatus.PENDING_SUBMIT,
    )
    with pytest.raises(sqlite3.IntegrityError):
        other.record_intent(intent())  # a client order id is never used twice


def test_recording_a_fill_twice_is_harmless(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    fill = Fill(
        "paper",
        "paper-1",
        "tcabc-00000001",
        "ETH/USDT:USDT",
        Side.SELL,
        Decimal("0.02"),
        Decimal("2500"),
        Decimal("0.025"),
        Decimal("1.5"),
        T0,
    )
    assert store.record_fill(fill, "b1") is True
    assert store.record_fill(fill, "b1") is False
    assert store.realized_pnl("b1") == Decimal("1.475")
    assert [e["kind"] for e in store.events("b1")] == ["order_filled"]


def test_order_sequence_never_repeats(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.set_desired_state("b1", DesiredState.RUNNING)
    first = [store.next_order_sequence("b1") for _ in range(3)]
    store.close()
    assert SqliteStore(tmp_path / "state.db").next_order_sequence("b1") == first[-1] + 1 == 4


def test_newer_schema_is_refused_not_downgraded(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "state.db").close()
    raw = sqlite3.connect(tmp_path / "state.db")
    raw.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer than this tradectl"):
        SqliteStore(tmp_path / "state.db")


def test_a_state_file_from_before_recorded_cancels_opens_with_its_orders(tmp_path: Path) -> None:
    """The previous version's file (schema 5, a resting order in it) is upgraded in place."""
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:5]:
        db.executescript(script)
    db.execute("PRAGMA user_version=5")
    db.execute(
        "INSERT INTO orders (client_order_id, bot, account, symbol, side, type, qty,"
        " reduce_only, purpose, status, created_at, updated_at, trigger_price) VALUES"
        " ('tcold-00000001', 'b1', 'paper', 'ETH/USDT:USDT', 'sell', 'stop_market', '0.02',"
        " 1, 'stop', 'open', '2025-05-10T00:00:00+00:00', '2025-05-10T00:00:00+00:00', '2400')"
    )
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS)
    [resting] = store.live_orders("b1")
    store.record_cancel(resting, "b1")
    [asked] = [e for e in store.events("b1") if e["kind"] == "order_cancel_requested"]
    assert (asked["cid"], asked["purpose"]) == ("tcold-00000001", "stop")
    store.close()


def test_second_daemon_on_the_same_state_folder_is_refused(tmp_path: Path) -> None:
    first = StateDirLock(tmp_path)
    first.acquire()
    with pytest.raises(StateLocked, match="already uses the state folder"):
        StateDirLock(tmp_path).acquire()
    first.release()
    StateDirLock(tmp_path).acquire()  # free again once released


def store_view(store: SqliteStore, bot: str) -> tuple[object, ...]:
    """What status and every candle read of a bot."""
    return (store.bot(bot), store.live_orders(bot), store.realized_pnl(bot), store.position(bot))


def test_what_is_kept_in_memory_equals_what_a_restart_reads_after_every_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    fill = a_fill(realized_pnl="1.5")
    position = Position("paper", "ETH/USDT:USDT", Decimal("0.02"), Decimal(2500), Decimal(2510), 5)
    writes = [
        lambda: store.set_desired_state("b1", DesiredState.RUNNING, owner_uid=1000),
        lambda: store.record_intent(intent(), sequence=1),
        lambda: store.update_order(open_order(OrderStatus.OPEN)),
        lambda: store.record_fill(fill, "b1"),
        lambda: store.update_order(open_order(OrderStatus.FILLED)),
        lambda: store.save_position("b1", position),
        lambda: store.set_desired_state("b1", DesiredState.HALTED, reason="daily loss limit"),
    ]
    views = []
    for write in writes:
        store_view(store, "b1")  # read (and keep) before each write: the write must refresh it
        write()
        restarted = SqliteStore(path)
        assert store_view(store, "b1") == store_view(restarted, "b1")
        views.append(store_view(store, "b1"))
        restarted.close()
    assert len(set(map(repr, views))) == len(writes)  # every write changed what is shown


def test_a_write_by_another_process_is_seen_at_the_next_look(tmp_path: Path) -> None:
    """A direct flatten from the CLI halts a bot in the file while the daemon runs."""
    daemon = SqliteStore(tmp_path / "state.db")
    daemon.set_desired_state("b1", DesiredState.RUNNING)
    daemon.record_intent(intent(), sequence=1)
    assert daemon.bot("b1").desired_state is DesiredState.RUNNING  # type: ignore[union-attr]
    assert len(daemon.live_orders("b1")) == 1
    cli = SqliteStore(tmp_path / "state.db")
    cli.set_desired_state("b1", DesiredState.HALTED, reason="flattened directly")
    cli.update_order(open_order(OrderStatus.CANCELED))
    daemon.notice_other_writers()
    record = daemon.bot("b1")
    assert record is not None and record.desired_state is DesiredState.HALTED
    assert daemon.live_orders("b1") == []


def test_only_intents_fills_desired_states_plans_and_sequences_sync_the_log(
    tmp_path: Path,
) -> None:
    """FULL for what must survive a power cut; NORMAL (survives a crash) for the rest."""
    store = SqliteStore(tmp_path / "state.db")
    store.set_desired_state("b1", DesiredState.RUNNING)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)

    def synced(write: Callable[[], object]) -> bool:
        statements.clear()
        write()
        return "PRAGMA synchronous=FULL" in statements

    fill = a_fill(realized_pnl="0")
    assert synced(lambda: store.record_intent(intent(), sequence=1))
    assert synced(lambda: store.record_fill(fill, "b1"))
    assert synced(lambda: store.set_desired_state("b1", DesiredState.HALTED, reason="x"))
    assert synced(lambda: store.next_order_sequence("b1"))
    assert synced(lambda: store.save_plan("b1", None))
    assert not synced(lambda: store.update_order(open_order(OrderStatus.OPEN)))
    flat = Position("paper", "ETH/USDT:USDT", Decimal(0), Decimal(0), Decimal(0), 5)
    assert not synced(lambda: store.save_position("b1", flat))
    assert not synced(lambda: store.save_feed_cursor("paper:ETH", T0))
    assert not synced(lambda: store.journal("candle_skipped", "b1"))
    assert not synced(lambda: store.record_cancel(open_order(OrderStatus.OPEN), "b1"))
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL between writes
    store.sync_critical_writes = False  # paper only: the exchange is in this same file
    assert not synced(lambda: store.record_intent(intent("tcabc-00000002"), sequence=2))


def open_order(status: OrderStatus) -> Order:
    i = intent()
    return Order(
        account=i.account,
        symbol=i.symbol,
        client_order_id=i.client_order_id,
        side=i.side,
        type=i.type,
        qty=i.qty,
        price=None,
        reduce_only=False,
        status=status,
        filled_qty=i.qty if status is OrderStatus.FILLED else Decimal(0),
        avg_fill_price=Decimal("2500") if status is OrderStatus.FILLED else None,
        exchange_order_id="x1",
        bot="b1",
    )


def a_fill(realized_pnl: str) -> Fill:
    return Fill(
        account="paper",
        fill_id="f1",
        client_order_id="tcabc-00000001",
        symbol="ETH/USDT:USDT",
        side=Side.BUY,
        qty=Decimal("0.02"),
        price=Decimal(2500),
        fee=Decimal("0.03"),
        realized_pnl=Decimal(realized_pnl),
        timestamp=T0,
    )
