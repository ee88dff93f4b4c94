"""The store keeps trigger orders and the plan an entry opens, across a schema upgrade."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from daemon.adapters.sqlite_store import MIGRATIONS, SqliteStore
from daemon.domain.bot_state import DesiredState
from daemon.domain.models import Direction, OrderIntent, OrderType, Side, TradePlan

T0 = datetime(2025, 5, 10, tzinfo=UTC)
PLAN = TradePlan(Direction.LONG, Decimal("2450.5"), Decimal("2600"), T0)


def intent(cid: str, kind: OrderType, purpose: str, trigger: str | None = None) -> OrderIntent:
    return OrderIntent(
        "b1",
        "paper",
        "ETH/USDT:USDT",
        cid,
        Side.BUY if purpose == "entry" else Side.SELL,
        kind,
        Decimal("0.02"),
        None,
        purpose != "entry",
        T0,
        purpose=purpose,
        trigger_price=None if trigger is None else Decimal(trigger),
    )


def test_a_stop_keeps_its_trigger_and_an_entry_its_plan_until_the_plan_is_used(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.set_desired_state("b1", DesiredState.RUNNING)
    store.record_intent(intent("tc-1", OrderType.MARKET, "entry"), PLAN, sequence=7)
    assert store.order_sequence("b1") == 7, "the sequence is stored with the intent"
    order, plan = store.entry_plan("b1") or (None, None)
    assert order is not None and order.client_order_id == "tc-1" and plan == PLAN
    store.record_intent(intent("tc-2", OrderType.STOP_MARKET, "stop", "2450.5"), sequence=8)
    stop = store.order("tc-2")
    assert stop is not None
    assert (stop.type, stop.trigger_price, stop.purpose) == (
        OrderType.STOP_MARKET,
        Decimal("2450.5"),
        "stop",
    )
    store.save_plan("b1", PLAN)  # activated at the first fill
    assert store.plan("b1") == PLAN and store.entry_plan("b1") is None
    [recorded] = [e for e in store.events("b1") if e.get("cid") == "tc-1"]
    assert recorded["plan"]["stop"] == "2450.5", "the journal keeps the plan sent with it"
    store.close()


def test_a_state_file_of_the_previous_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:2]:
        db.executescript(script)
    db.execute("PRAGMA user_version=2")
    db.execute(
        "INSERT INTO orders (client_order_id, bot, account, symbol, side, type, qty,"
        " reduce_only, purpose, status, created_at, updated_at) VALUES"
        " ('old', 'b1', 'paper', 'ETH/USDT:USDT', 'buy', 'market', '0.02', 0, 'entry',"
        " 'filled', '2025-05-10T00:00:00+00:00', '2025-05-10T00:00:00+00:00')"
    )
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert store.schema_version == len(MIGRATIONS)
    old = store.order("old")
    assert old is not None and old.trigger_price is None and old.purpose == "entry"
    store.close()
