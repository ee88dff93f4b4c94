"""Which stop and take-profit should rest, and the one change to make next, as tables:
every branch of `wanted`, `next_change` and `is_protected` on plain values."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from daemon.domain import protection
from daemon.domain.models import Direction, Market, Order, OrderStatus, OrderType, Side, TradePlan
from daemon.domain.protection import STOP, TAKE_PROFIT, Wanted, is_protected, next_change, wanted

D = Decimal
T0 = datetime(2025, 5, 10, 12, 0, tzinfo=UTC)
ETH = Market("ETH/USDT:USDT", D("0.001"), D("0.01"), D("0.001"), D(20), 100)
LONG_PLAN = TradePlan(Direction.LONG, D("2490.004"), D("2520.006"), T0)
SHORT_PLAN = TradePlan(Direction.SHORT, D("2510"), D("2480"), T0)


def order(
    purpose: str | None,
    qty: str = "0.02",
    trigger: str | None = "2490",
    *,
    cid: str = "o",
    side: Side = Side.SELL,
    status: OrderStatus = OrderStatus.OPEN,
    type: OrderType | None = None,
    reduce_only: bool = True,
    filled: str = "0",
) -> Order:
    kind = type or (
        OrderType.TAKE_PROFIT_MARKET if purpose == TAKE_PROFIT else OrderType.STOP_MARKET
    )
    return Order(
        "paper",
        "ETH/USDT:USDT",
        cid,
        side,
        kind,
        D(qty),
        None,
        reduce_only,
        status,
        filled_qty=D(filled),
        trigger_price=None if trigger is None else D(trigger),
        purpose=purpose,
    )


STOP_W = Wanted(STOP, Side.SELL, D("0.02"), D("2490"))
TP_W = Wanted(TAKE_PROFIT, Side.SELL, D("0.02"), D("2520.01"))
STOP_O = order(STOP, trigger="2490", cid="s")
TP_O = order(TAKE_PROFIT, trigger="2520.01", cid="t")


# --- wanted --------------------------------------------------------------------------------


def test_a_long_wants_a_sell_stop_and_take_profit_for_all_of_it_on_the_tick() -> None:
    assert wanted(D("0.02"), LONG_PLAN, ETH) == (STOP_W, TP_W)
    assert [w.type for w in (STOP_W, TP_W)] == [
        OrderType.STOP_MARKET,
        OrderType.TAKE_PROFIT_MARKET,
    ]


def test_a_short_wants_buy_orders_for_its_absolute_size() -> None:
    assert wanted(D("-0.03"), SHORT_PLAN, ETH) == (
        Wanted(STOP, Side.BUY, D("0.03"), D("2510")),
        Wanted(TAKE_PROFIT, Side.BUY, D("0.03"), D("2480")),
    )


@pytest.mark.parametrize(
    ("qty", "plan"),
    [
        ("0", LONG_PLAN),
        ("0", SHORT_PLAN),
        ("0.02", None),
        ("0.02", SHORT_PLAN),
        ("-0.02", LONG_PLAN),
    ],
    ids=[
        "flat",
        "flat with a short plan",
        "no plan",
        "long with a short plan",
        "short with a long plan",
    ],
)
def test_nothing_is_wanted_when_flat_planless_or_against_the_plan(
    qty: str, plan: TradePlan | None
) -> None:
    assert wanted(D(qty), plan, ETH) == ()


def test_a_wanted_order_matches_only_the_same_side_size_trigger_and_type() -> None:
    assert STOP_W.matches(STOP_O)
    assert not STOP_W.matches(replace(STOP_O, side=Side.BUY))
    assert not STOP_W.matches(replace(STOP_O, qty=D("0.01")))
    assert not STOP_W.matches(replace(STOP_O, trigger_price=D("2490.01")))
    assert not STOP_W.matches(replace(STOP_O, type=OrderType.TAKE_PROFIT_MARKET))


# --- next_change ---------------------------------------------------------------------------


def test_all_in_order_needs_no_change() -> None:
    assert next_change((STOP_W, TP_W), [STOP_O, TP_O]) is None
    assert next_change((), []) is None


def test_the_stop_is_placed_before_the_take_profit() -> None:
    assert next_change((STOP_W, TP_W), []) == STOP_W
    assert next_change((STOP_W, TP_W), [STOP_O]) == TP_W
    assert next_change((STOP_W, TP_W), [TP_O]) == STOP_W


def test_a_wrong_order_is_cancelled_before_its_replacement_is_placed() -> None:
    old = replace(STOP_O, qty=D("0.01"))
    assert next_change((STOP_W, TP_W), [old, TP_O]) is old
    assert next_change((STOP_W, TP_W), [TP_O]) == STOP_W


def test_a_second_order_of_one_purpose_is_cancelled_and_the_matching_one_kept() -> None:
    twin = replace(STOP_O, client_order_id="s2")
    assert next_change((STOP_W, TP_W), [STOP_O, twin, TP_O]) is twin
    assert next_change((STOP_W, TP_W), [twin, STOP_O, TP_O]) is STOP_O


def test_nothing_wanted_cancels_what_rests_stop_first() -> None:
    assert next_change((), [TP_O, STOP_O]) is STOP_O
    assert next_change((), [TP_O]) is TP_O


def test_a_pending_order_holds_its_purpose_until_resolved() -> None:
    pending = replace(STOP_O, status=OrderStatus.PENDING_SUBMIT, qty=D("0.01"))
    assert next_change((STOP_W, TP_W), [pending]) == TP_W, "no second stop beside it"
    assert next_change((), [STOP_O, pending]) is None, "wherever it is in the list"
    assert next_change((), [pending, TP_O]) is TP_O
    assert next_change((STOP_W, TP_W), [STOP_O, pending, TP_O]) is None


def test_skipped_purposes_are_left_as_they_are() -> None:
    assert next_change((STOP_W, TP_W), [], frozenset({STOP})) == TP_W
    assert next_change((STOP_W, TP_W), [], frozenset({STOP, TAKE_PROFIT})) is None
    assert next_change((), [STOP_O, TP_O], frozenset({STOP})) is TP_O


def test_orders_of_other_purposes_are_not_protection() -> None:
    entry = order("entry", type=OrderType.MARKET, trigger=None, cid="e")
    unknown = order(None, cid="x")
    assert next_change((STOP_W, TP_W), [entry, unknown, STOP_O, TP_O]) is None
    assert next_change((), [entry, unknown]) is None


# --- is_protected --------------------------------------------------------------------------


def test_flat_is_protected_without_any_order() -> None:
    assert is_protected(D(0), [])


def test_a_working_reduce_only_stop_on_the_closing_side_for_all_of_it_protects() -> None:
    assert is_protected(D("0.02"), [STOP_O])
    assert is_protected(D("0.02"), [order(STOP, "0.03")]), "more than the position covers it"
    assert is_protected(D("0.02"), [order(STOP, status=OrderStatus.PARTIALLY_FILLED)])
    short_stop = order(STOP, side=Side.BUY, trigger="2510")
    assert is_protected(D("-0.02"), [short_stop])


@pytest.mark.parametrize(
    "stop",
    [
        order(TAKE_PROFIT, trigger="2520"),
        order(STOP, type=OrderType.MARKET, trigger=None),
        order(STOP, status=OrderStatus.PENDING_SUBMIT),
        order(STOP, status=OrderStatus.CANCELED),
        order(STOP, status=OrderStatus.FILLED),
        order(STOP, reduce_only=False),
        order(STOP, side=Side.BUY),
        order(STOP, "0.019"),
        order(STOP, filled="0.001"),
    ],
    ids=[
        "a take-profit",
        "a market order",
        "pending",
        "cancelled",
        "filled",
        "not reduce-only",
        "the opening side",
        "short of the position",
        "partly used up",
    ],
)
def test_these_do_not_protect_a_long(stop: Order) -> None:
    assert not is_protected(D("0.02"), [stop])
    assert is_protected(D("0.02"), [stop, STOP_O]), "any one good stop is enough"


def test_the_purposes_in_order_and_their_order_types() -> None:
    assert protection.PURPOSES == (STOP, TAKE_PROFIT) == ("stop", "take_profit")
    assert protection.ORDER_TYPES == {
        "stop": OrderType.STOP_MARKET,
        "take_profit": OrderType.TAKE_PROFIT_MARKET,
    }
