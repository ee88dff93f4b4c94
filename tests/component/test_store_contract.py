"""One contract, two stores: the SQLite file and PostgreSQL behave the same to the daemon.

Every test runs on both (the `open_store` fixture); opening again is a restart.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from daemon.domain.bot_state import DesiredState
from daemon.domain.models import (
    Direction,
    Fill,
    FundingPayment,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TradePlan,
)
from tests.conftest import StoreOpener

T0 = datetime(2025, 5, 10, tzinfo=UTC)
PLAN = TradePlan(Direction.LONG, Decimal("2450.5"), Decimal("2600"), T0)
DUPLICATE = (sqlite3.IntegrityError, psycopg.IntegrityError)


def intent(
    cid: str = "tcabc-00000001",
    type_: OrderType = OrderType.MARKET,
    purpose: str = "entry",
    trigger: str | None = None,
) -> OrderIntent:
    return OrderIntent(
        bot="b1",
        account="paper",
        symbol="ETH/USDT:USDT",
        client_order_id=cid,
        side=Side.BUY,
        type=type_,
        qty=Decimal("0.02"),
        price=None,
        reduce_only=False,
        created_at=T0,
        purpose=purpose,
        trigger_price=None if trigger is None else Decimal(trigger),
    )


def fill(
    fill_id: str, pnl: str, ts: datetime = T0, bot_account: str = "paper", kind: str = "trade"
) -> Fill:
    return Fill(
        bot_account,
        fill_id,
        "tcabc-00000001",
        "ETH/USDT:USDT",
        Side.SELL,
        Decimal("0.02"),
        Decimal("2500"),
        Decimal("0.025"),
        Decimal(pnl),
        ts,
        kind=kind,
    )


def funding(payment_id: str, amount: str, ts: datetime = T0) -> FundingPayment:
    return FundingPayment("paper", payment_id, "ETH/USDT:USDT", Decimal(amount), ts)


def test_desired_state_survives_a_restart_and_is_journalled(open_store: StoreOpener) -> None:
    store = open_store()
    store.set_desired_state("b1", DesiredState.RUNNING, owner_uid=1000)
    store.set_desired_state("b1", DesiredState.HALTED, reason="daily loss limit", owner_uid=7)
    store.close()
    again = open_store()
    record = again.bot("b1")
    assert record is not None
    assert (record.desired_state, record.halt_reason, record.owner_uid) == (
        DesiredState.HALTED,
        "daily loss limit",
        1000,
    ), "the first owner stays"
    kinds = [(e["kind"], e["state"]) for e in again.events("b1")]
    assert kinds == [("desired_state_changed", "running"), ("desired_state_changed", "halted")]
    assert [r.name for r in again.bots()] == ["b1"]


def test_a_runners_halt_stops_every_named_bot_at_once_and_says_it_was_the_risk_rule(
    open_store: StoreOpener,
) -> None:
    """An account limit halts every bot on the account in one write, as the risk rule's."""
    store = open_store()
    store.set_desired_state("b1", DesiredState.RUNNING)
    store.set_desired_state("b2", DesiredState.RUNNING)
    store.record_halt(["b1", "b2"], "account daily loss limit", for_bot="b1")
    store.close()
    again = open_store()
    for name in ("b1", "b2"):
        record = again.bot(name)
        assert record is not None
        assert (record.desired_state, record.halt_reason) == (
            DesiredState.HALTED,
            "account daily loss limit",
        )
        [*_, last] = [e for e in again.events(name) if e["kind"] == "desired_state_changed"]
        assert (last["state"], last["cause"]) == ("halted", "risk")


def test_an_intent_is_durable_before_the_order_is_sent_and_never_recorded_twice(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    store.set_desired_state("b1", DesiredState.RUNNING)
    store.record_intent(intent())
    other = open_store()  # another connection (another process after a crash) sees it
    [pending] = other.live_orders("b1")
    assert (pending.client_order_id, pending.status) == (
        "tcabc-00000001",
        OrderStatus.PENDING_SUBMIT,
    )
    with pytest.raises(DUPLICATE):
        other.record_intent(intent())
    assert len(other.live_orders()) == 1


def test_order_updates_are_journalled_once_per_status_change(open_store: StoreOpener) -> None:
    store = open_store()
    store.set_desired_state("b1", DesiredState.RUNNING)
    store.record_intent(intent())
    sent = store.order("tcabc-00000001")
    assert sent is not None
    opened = Order(**{**_fields(sent), "status": OrderStatus.OPEN, "exchange_order_id": "x1"})
    store.update_order(opened)
    store.update_order(opened)
    filled = Order(
        **{
            **_fields(opened),
            "status": OrderStatus.FILLED,
            "filled_qty": Decimal("0.02"),
            "avg_fill_price": Decimal("2501.5"),
            "exchange_order_id": None,
        }
    )
    store.update_order(filled)
    final = store.order("tcabc-00000001")
    assert final is not None
    assert (final.status, final.exchange_order_id, final.avg_fill_price) == (
        OrderStatus.FILLED,
        "x1",
        Decimal("2501.5"),
    )
    changes = [
        (e["from"], e["to"]) for e in store.events("b1") if e["kind"] == "order_status_changed"
    ]
    assert changes == [("pending_submit", "open"), ("open", "filled")]
    assert store.live_orders("b1") == []
    assert [o.client_order_id for o in store.recent_orders("b1")] == ["tcabc-00000001"]


def _fields(order: Order) -> dict[str, object]:
    return {name: getattr(order, name) for name in Order.__dataclass_fields__}


def test_a_cancel_is_recorded_before_it_is_sent_and_may_be_asked_for_again(
    open_store: StoreOpener,
) -> None:
    """The request is journalled ahead of the exchange's answer, with who asked; the order
    stays live until that answer, and a cancel asked for again is recorded again."""
    store = open_store()
    store.set_desired_state("b1", DesiredState.RUNNING)
    store.record_intent(intent("tcabc-00000002", OrderType.STOP_MARKET, "stop", "2400"))
    sent = store.order("tcabc-00000002")
    assert sent is not None
    resting = Order(**{**_fields(sent), "status": OrderStatus.OPEN, "exchange_order_id": "x2"})
    store.update_order(resting)
    store.record_cancel(resting, "b1")
    store.record_cancel(resting, "b1", cause="reconcile")  # after a restart, say
    assert [o.client_order_id for o in store.live_orders("b1")] == ["tcabc-00000002"]
    store.update_order(resting.with_status(OrderStatus.CANCELED))
    store.close()
    again = open_store()
    journal = [
        (e["kind"], e.get("cid"), e.get("purpose"), e.get("cause"), e.get("to"))
        for e in again.events("b1")
        if e["kind"] in ("order_cancel_requested", "order_status_changed")
    ]
    assert journal == [
        ("order_status_changed", "tcabc-00000002", None, None, "open"),
        ("order_cancel_requested", "tcabc-00000002", "stop", "bot", None),
        ("order_cancel_requested", "tcabc-00000002", "stop", "reconcile", None),
        ("order_status_changed", "tcabc-00000002", None, None, "canceled"),
    ]
    assert again.live_orders("b1") == []


def test_a_fill_counts_once_and_pnl_is_exact_since_a_time(open_store: StoreOpener) -> None:
    store = open_store()
    assert store.record_fill(fill("f1", "1.5"), "b1") is True
    assert store.record_fill(fill("f1", "1.5"), "b1") is False
    assert store.record_fill(fill("f2", "-0.3", T0 + timedelta(hours=2)), "b1") is True
    assert store.record_fill(fill("f3", "10", T0, "other"), None) is True
    assert store.realized_pnl("b1") == Decimal("1.475") + Decimal("-0.325")
    assert store.realized_pnl("b1", since=T0 + timedelta(hours=1)) == Decimal("-0.325")
    assert store.account_realized_pnl("paper") == Decimal("1.15")
    assert store.last_fill_time("paper", "ETH/USDT:USDT") == T0 + timedelta(hours=2)
    assert [f.fill_id for f in store.fills("b1")] == ["f1", "f2"]
    assert [e["kind"] for e in store.events("b1")] == ["order_filled", "order_filled"]


def test_a_liquidation_fill_keeps_its_kind_and_is_journalled_by_name(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    assert store.record_fill(fill("f1", "-40", kind="liquidation"), "b1") is True
    assert store.record_fill(fill("f2", "-5", T0 + timedelta(minutes=1), kind="adl"), "b1")
    store.close()
    again = open_store()
    assert [(f.fill_id, f.kind) for f in again.fills("b1")] == [
        ("f1", "liquidation"),
        ("f2", "adl"),
    ]
    assert [e["kind"] for e in again.events("b1")] == ["liquidation_filled", "adl_filled"]
    assert again.realized_pnl("b1") == Decimal("-45.05")


def test_funding_counts_once_in_realised_pnl_of_the_bot_and_its_account(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    assert store.record_fill(fill("f1", "1.5"), "b1") is True
    assert store.record_funding(funding("p1", "-0.12"), "b1") is True
    assert store.record_funding(funding("p1", "-0.12"), "b1") is False
    assert store.record_funding(funding("p2", "0.05", T0 + timedelta(hours=8)), "b1") is True
    assert store.record_funding(funding("p3", "-1"), None) is True  # no bot trades it
    store.close()
    again = open_store()
    assert [(p.payment_id, p.amount) for p in again.funding("b1")] == [
        ("p1", Decimal("-0.12")),
        ("p2", Decimal("0.05")),
    ]
    assert again.funding("b1")[1].timestamp == T0 + timedelta(hours=8)
    assert again.realized_pnl("b1") == Decimal("1.475") - Decimal("0.12") + Decimal("0.05")
    assert again.realized_pnl("b1", since=T0 + timedelta(hours=1)) == Decimal("0.05")
    assert again.account_realized_pnl("paper") == Decimal("1.405") - Decimal("1")
    assert [e["kind"] for e in again.events("b1")] == [
        "order_filled",
        "funding_recorded",
        "funding_recorded",
    ]
    assert again.events("b1")[1]["amount"] == "-0.12"


def test_history_cursors_are_kept_per_account_symbol_and_history(open_store: StoreOpener) -> None:
    store = open_store()
    assert store.history_cursor("paper", "ETH/USDT:USDT", "fills") is None
    store.save_history_cursor("paper", "ETH/USDT:USDT", "fills", T0)
    store.save_history_cursor("paper", "ETH/USDT:USDT", "fills", T0 + timedelta(minutes=5))
    store.save_history_cursor("paper", "ETH/USDT:USDT", "funding", T0 + timedelta(hours=1))
    store.save_history_cursor("other", "ETH/USDT:USDT", "fills", T0 - timedelta(days=1))
    store.close()
    again = open_store()
    assert again.history_cursor("paper", "ETH/USDT:USDT", "fills") == T0 + timedelta(minutes=5)
    assert again.history_cursor("paper", "ETH/USDT:USDT", "funding") == T0 + timedelta(hours=1)
    assert again.history_cursor("other", "ETH/USDT:USDT", "fills") == T0 - timedelta(days=1)
    assert again.history_cursor("paper", "BTC/USDT:USDT", "fills") is None


def test_a_duty_remembers_its_last_run_across_a_restart(open_store: StoreOpener) -> None:
    store = open_store()
    assert store.duty_last_run("rollover") is None
    store.set_duty_last_run("rollover", T0)
    store.set_duty_last_run("rollover", T0 + timedelta(days=1))
    store.set_duty_last_run("drift", T0 + timedelta(minutes=5))
    store.close()
    again = open_store()
    again.notice_other_writers()
    assert again.duty_last_run("rollover") == T0 + timedelta(days=1)
    assert again.duty_last_run("drift") == T0 + timedelta(minutes=5)


def test_order_sequence_never_repeats_across_a_restart(open_store: StoreOpener) -> None:
    store = open_store()
    store.set_desired_state("b1", DesiredState.RUNNING)
    first = [store.next_order_sequence("b1") for _ in range(3)]
    store.close()
    assert open_store().next_order_sequence("b1") == first[-1] + 1 == 4


def test_a_stop_keeps_its_trigger_and_an_entry_its_plan_until_used(open_store: StoreOpener) -> None:
    store = open_store()
    store.set_desired_state("b1", DesiredState.RUNNING)
    store.record_intent(intent("tc-1"), PLAN, sequence=7)
    assert store.order_sequence("b1") == 7
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
    store.save_plan("b1", PLAN)
    assert store.plan("b1") == PLAN and store.entry_plan("b1") is None
    [recorded] = [e for e in store.events("b1") if e.get("cid") == "tc-1"]
    assert recorded["plan"]["stop"] == "2450.5"


def test_positions_paper_accounts_cursors_and_meta_are_kept(open_store: StoreOpener) -> None:
    store = open_store()
    store.save_position(
        "b1", Position("paper", "ETH/USDT:USDT", Decimal("0.02"), Decimal(2500), Decimal(2510), 3)
    )
    store.save_position(
        "b1", Position("paper", "ETH/USDT:USDT", Decimal("-0.01"), Decimal(2500), Decimal(2490), 3)
    )
    store.save_paper_account("paper", '{"balance": "1000"}')
    store.save_paper_account("paper", '{"balance": "999"}')
    store.save_feed_cursor("paper:ETH", T0)
    store.save_feed_cursor("paper:ETH", T0 + timedelta(minutes=1))
    store.set_meta("k", "v1")
    store.set_meta("k", "v2")
    store.close()
    again = open_store()
    position = again.position("b1")
    assert position is not None and position.qty == Decimal("-0.01")
    assert again.load_paper_account("paper") == '{"balance": "999"}'
    assert again.load_paper_account("nope") is None
    assert again.load_feed_cursor("paper:ETH") == T0 + timedelta(minutes=1)
    assert again.meta("k") == "v2" and again.meta("missing") is None


def test_the_journal_is_append_only(open_store: StoreOpener) -> None:
    store = open_store()
    store.journal("something_happened", "b1", n=1)
    [event] = store.events("b1")
    assert (event["kind"], event["n"]) == ("something_happened", 1)
    if hasattr(store, "_db"):
        raw_sqlite: sqlite3.Connection = store._db
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw_sqlite.execute("DELETE FROM events")
    else:
        with psycopg.connect(store.target.url) as raw:
            with pytest.raises(psycopg.Error, match="append-only"):
                raw.execute("DELETE FROM events")
            raw.rollback()
            with pytest.raises(psycopg.Error, match="append-only"):
                raw.execute("UPDATE events SET kind = 'x'")
