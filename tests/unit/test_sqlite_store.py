"""The state store on a real SQLite file: durable, append-only journal, one daemon per folder."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.adapters.sqlite_store import MIGRATIONS, SqliteStore, StoreError
from daemon.adapters.state_lock import StateDirLock
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import StateLocked
from daemon.domain.models import Fill, OrderIntent, OrderStatus, OrderType, Side

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


def test_second_daemon_on_the_same_state_folder_is_refused(tmp_path: Path) -> None:
    first = StateDirLock(tmp_path)
    first.acquire()
    with pytest.raises(StateLocked, match="already uses the state folder"):
        StateDirLock(tmp_path).acquire()
    first.release()
    StateDirLock(tmp_path).acquire()  # free again once released
