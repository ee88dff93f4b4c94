"""The trading core as a table: (state, event) -> (state, actions), no I/O, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from daemon.domain import trader
from daemon.domain.models import (
    Direction,
    Market,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Signal,
    TradePlan,
)
from daemon.domain.risk import AccountExposure, RiskLimits

D = Decimal
T0 = datetime(2025, 5, 10, 12, 0, tzinfo=UTC)
ETH = Market("ETH/USDT:USDT", D("0.001"), D("0.01"), D("0.001"), D(20), 100)
LIMITS = RiskLimits(3, D(50), D("0.5"), D(20))
CONFIG = trader.TraderConfig("b1", "paper", "ETH/USDT:USDT", ETH, 3, LIMITS, timedelta(minutes=2))
LONG = Signal(Direction.LONG, D(2500), D("2490.004"), D(2520))
SHORT = Signal(Direction.SHORT, D(2500), D(2510), D(2480))
PLAN = TradePlan(Direction.LONG, D("2490.004"), D(2520), T0)


def facts(qty: str = "0", *orders: Order, equity: str | None = "1000") -> trader.Facts:
    return trader.Facts(
        position_qty=D(qty),
        entry_price=D(2500) if D(qty) else D(0),
        mark=D(2500),
        orders=orders,
        equity=None if equity is None else D(equity),
    )


def candle(
    f: trader.Facts, signal: Signal | None = None, at: datetime = T0, low: str = "2495"
) -> trader.CandleClosed:
    return trader.CandleClosed(at, D(2505), D(low), D(2500), signal, f, AccountExposure())


def resting(
    cid: str,
    purpose: str,
    qty: str,
    trigger: str,
    status: OrderStatus = OrderStatus.OPEN,
    side: Side = Side.SELL,
) -> Order:
    kind = OrderType.STOP_MARKET if purpose == "stop" else OrderType.TAKE_PROFIT_MARKET
    return Order(
        "paper",
        "ETH/USDT:USDT",
        cid,
        side,
        kind,
        D(qty),
        None,
        True,
        status,
        bot="b1",
        trigger_price=D(trigger),
        purpose=purpose,
    )


def step(
    state: trader.TraderState, event: trader.Event, now: datetime = T0
) -> tuple[trader.TraderState, list[trader.Action]]:
    return trader.step(state, event, CONFIG, now)


def done(
    state: trader.TraderState, f: trader.Facts, result: trader.Result = trader.Result.DONE
) -> trader.Outcome:
    assert state.awaiting, "nothing in flight"
    return trader.Outcome(state.awaiting[0][0], result, f, reason="because")


def kinds(actions: list[trader.Action]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, trader.Submit):
            out.append(f"submit {a.intent.purpose} {a.intent.type.value} {a.intent.qty}")
        elif isinstance(a, trader.Cancel):
            out.append(f"cancel {a.order.purpose}")
        elif isinstance(a, trader.Journal):
            out.append(f"journal {a.kind}")
        elif isinstance(a, trader.SavePlan):
            out.append("save plan" if a.plan else "clear plan")
        else:
            out.append(f"halt {a.scope}")
    return out


def protected_long(qty: str = "0.02") -> tuple[trader.TraderState, trader.Facts]:
    """A long position with its stop and take-profit resting, as after an entry."""
    f = facts(qty, resting("s", "stop", qty, "2490"), resting("t", "take_profit", qty, "2520"))
    state = trader.TraderState(sequence=3, plan=PLAN, facts=f)
    return state, f


def test_a_signal_when_flat_sends_the_entry_with_its_plan_and_a_fresh_client_order_id() -> None:
    state, actions = step(trader.initial_state(41, None, None), candle(facts(), LONG))
    [submit] = actions
    assert isinstance(submit, trader.Submit)
    intent = submit.intent
    assert (intent.side, intent.type, intent.purpose, intent.reduce_only) == (
        Side.BUY,
        OrderType.MARKET,
        "entry",
        False,
    )
    assert intent.qty == D("0.02")  # 50 USDT position cap at 2500
    assert submit.sequence == 42 and intent.client_order_id == CONFIG.client_order_id(42)
    assert submit.plan == TradePlan(Direction.LONG, LONG.stop, LONG.take_profit, T0)
    assert state.pending == (intent.client_order_id, submit.plan) and state.busy


def test_the_first_fill_activates_the_plan_and_the_stop_then_the_target_are_placed() -> None:
    state, _ = step(trader.TraderState(), candle(facts(), LONG))
    filled = facts("0.01")  # a partial fill: protection for what is held
    state, actions = step(state, done(state, filled))
    assert kinds(actions) == [
        "save plan",
        "journal plan_activated",
        "submit stop stop_market 0.01",
        "submit take_profit take_profit_market 0.01",
    ]
    stop = actions[2]
    assert isinstance(stop, trader.Submit)
    assert stop.intent.trigger_price == D("2490.00")  # rounded to the tick
    assert stop.intent.side is Side.SELL and stop.intent.reduce_only and stop.plan is None
    with_stop = facts("0.01", resting(stop.intent.client_order_id, "stop", "0.01", "2490"))
    state, actions = step(state, done(state, with_stop))
    assert actions == [] and state.busy, "the take-profit's outcome is still due"
    assert state.protected
    both = facts("0.01", *with_stop.orders, resting("t", "take_profit", "0.01", "2520"))
    state, actions = step(state, done(state, both))
    assert actions == [] and not state.busy and state.plan == PLAN and state.pending is None


def test_a_position_that_grew_gets_its_stop_then_its_target_replaced() -> None:
    state, f = protected_long("0.01")
    grown = replace(f, position_qty=D("0.02"))
    state, actions = step(state, candle(grown))
    assert kinds(actions) == ["cancel stop"]
    state, actions = step(state, done(state, replace(grown, orders=grown.orders[1:])))
    assert kinds(actions) == ["submit stop stop_market 0.02"]
    new_stop = resting("s2", "stop", "0.02", "2490")
    state, actions = step(state, done(state, replace(grown, orders=(grown.orders[1], new_stop))))
    assert kinds(actions) == ["cancel take_profit"]
    state, actions = step(state, done(state, replace(grown, orders=(new_stop,))))
    assert kinds(actions) == ["submit take_profit take_profit_market 0.02"]


def test_a_stop_refused_because_the_price_is_beyond_it_closes_the_position_at_market() -> None:
    state, _ = step(trader.TraderState(), candle(facts(), LONG))
    state, actions = step(state, done(state, facts("0.02")))
    take_profit = actions[-1]
    assert isinstance(take_profit, trader.Submit)
    state, actions = step(state, done(state, facts("0.02"), trader.Result.WOULD_TRIGGER))
    assert kinds(actions) == ["journal stop_hit_on_placement"]
    tp = resting(take_profit.intent.client_order_id, "take_profit", "0.02", "2520")
    state, actions = step(state, done(state, facts("0.02", tp)))
    assert kinds(actions) == ["submit stop market 0.02"]
    close = actions[-1]
    assert isinstance(close, trader.Submit)
    assert close.intent.reduce_only and close.intent.side is Side.SELL
    state, actions = step(state, done(state, facts("0", tp)))
    assert kinds(actions) == ["clear plan", "journal plan_cleared", "cancel take_profit"]
    state, actions = step(state, done(state, facts("0")))
    assert actions == [] and not state.busy and state.plan is None


def test_a_refused_stop_is_shown_unprotected_and_retried_at_the_next_candle_only() -> None:
    state, _ = step(trader.TraderState(), candle(facts(), LONG))
    state, _ = step(state, done(state, facts("0.02")))
    state, actions = step(state, done(state, facts("0.02"), trader.Result.REJECTED))
    assert kinds(actions) == ["journal protection_not_placed"]
    take_profit = resting("t", "take_profit", "0.02", "2520")
    state, actions = step(state, done(state, facts("0.02", take_profit)))
    assert (
        actions == []
        and not state.protected
        and "stop order rejected" in (state.last_problem or "")
    )
    later = T0 + timedelta(minutes=1)
    state, actions = step(state, candle(facts("0.02", take_profit), at=later), later)
    assert kinds(actions) == ["submit stop stop_market 0.02"]


def test_an_unknown_outcome_is_never_answered_with_a_second_stop() -> None:
    state, f = protected_long()
    pending = resting("s", "stop", "0.02", "2490", OrderStatus.PENDING_SUBMIT)
    unsure = replace(f, orders=(pending, f.orders[1]))
    state, actions = step(state, candle(unsure))
    assert actions == [] and not state.protected


def test_when_the_stop_fills_the_plan_is_cleared_and_the_take_profit_cancelled() -> None:
    state, f = protected_long()
    stopped = facts("0", f.orders[1])
    state, actions = step(state, candle(stopped, low="2480"))
    assert kinds(actions) == ["clear plan", "journal plan_cleared", "cancel take_profit"]
    state, actions = step(state, done(state, facts("0")))
    assert actions == [] and not state.busy


def test_a_reversal_closes_clears_the_protection_and_enters_the_other_way() -> None:
    state, f = protected_long()
    state, actions = step(state, candle(f, SHORT))
    assert kinds(actions) == ["submit reversal market 0.02"]
    flat_with_orders = facts("0", *f.orders)
    state, actions = step(state, done(state, flat_with_orders))
    assert kinds(actions) == [
        "clear plan",
        "journal plan_cleared",
        "cancel stop",
        "cancel take_profit",
    ]
    state, actions = step(state, done(state, facts("0", f.orders[1])))
    assert actions == []
    state, actions = step(state, done(state, facts("0")))
    assert kinds(actions) == ["submit entry market 0.02"]
    entry = actions[0]
    assert isinstance(entry, trader.Submit) and entry.intent.side is Side.SELL
    state, actions = step(state, done(state, facts("-0.02")))
    assert kinds(actions)[-2:] == [
        "submit stop stop_market 0.02",
        "submit take_profit take_profit_market 0.02",
    ]
    stop = actions[-2]
    assert isinstance(stop, trader.Submit) and stop.intent.side is Side.BUY


def test_a_signal_in_the_position_s_direction_changes_nothing_and_says_so() -> None:
    state, f = protected_long()
    state, actions = step(state, candle(f, LONG))
    assert actions == [
        trader.Journal(
            "signal_ignored",
            {"rule": "same_direction", "reason": f"the bot is already long ({f.position_qty})"},
        )
    ]
    assert not state.busy


def test_a_loss_limit_halts_and_later_candles_decide_nothing() -> None:
    state, f = protected_long()
    losing = replace(f, bot_realized=D(-25))
    state, actions = step(state, candle(losing, SHORT))
    assert kinds(actions) == ["journal loss_limit_reached", "halt bot"]
    assert state.halted
    state, actions = step(state, candle(facts(), LONG, at=T0 + timedelta(minutes=1)))
    assert actions == []


def test_a_stale_candle_opens_and_closes_nothing_even_through_the_stop() -> None:
    state = trader.TraderState(sequence=3, plan=PLAN, facts=facts("0.02"))  # nothing rests
    replayed = candle(facts("0.02"), SHORT, at=T0, low="2400")
    now = T0 + timedelta(minutes=30)
    state, actions = step(state, replayed, now)
    assert kinds(actions) == [
        "submit stop stop_market 0.02",
        "submit take_profit take_profit_market 0.02",
    ], "only the protection is kept"
    fresh = candle(facts("0.02"), SHORT, at=now, low="2400")
    state, actions = step(trader.TraderState(plan=PLAN), fresh, now)
    assert kinds(actions) == ["journal stop_crossed_unprotected", "submit stop market 0.02"]


def test_after_a_crash_the_entry_s_stored_plan_protects_the_adopted_position() -> None:
    entry = resting("e", "stop", "0.02", "1", OrderStatus.FILLED)
    entry = replace(entry, type=OrderType.MARKET, purpose="entry", trigger_price=None)
    state = trader.initial_state(7, None, (entry, PLAN))
    state, actions = step(state, trader.Started(facts("0.02")))
    assert kinds(actions) == [
        "save plan",
        "journal plan_activated",
        "submit stop stop_market 0.02",
        "submit take_profit take_profit_market 0.02",
    ]


def test_an_entry_that_never_filled_drops_its_plan() -> None:
    state, _ = step(trader.TraderState(), candle(facts(), LONG))
    state, actions = step(state, done(state, facts("0"), trader.Result.REJECTED))
    assert kinds(actions) == ["clear plan"] and state.pending is None


def test_an_outcome_for_another_order_is_a_bug_not_a_decision() -> None:
    state, _ = step(trader.TraderState(), candle(facts(), LONG))
    with pytest.raises(ValueError, match="unexpected outcome"):
        step(state, trader.Outcome("nope", trader.Result.DONE, facts()))
    with pytest.raises(ValueError, match="is due before"):
        step(state, candle(facts()))


def test_a_skipped_signal_names_the_rule_and_the_numbers() -> None:
    """BTC's 100 USDT minimum order against a 50 USDT position cap: nothing can be bought."""
    btc = Market("BTC/USDT:USDT", D("0.001"), D("0.1"), D("0.001"), D(100), 125)
    config = replace(CONFIG, symbol=btc.symbol, market=btc)
    signal = Signal(Direction.LONG, D(104000), D(103500), D(105000))
    event = trader.CandleClosed(T0, D(104100), D(103900), D(104000), signal, facts())
    state, actions = trader.step(trader.TraderState(), event, config, T0)
    assert actions == [
        trader.Journal(
            "signal_skipped",
            {
                "rule": "max_position",
                "reason": "max_position_usdt 50 < BTC/USDT:USDT minimum order 100 USDT",
                "equity": "1000",
            },
        )
    ]
    assert state.last_problem == f"signal skipped: {actions[0].data['reason']}"  # type: ignore[union-attr]


def test_a_cap_that_rounds_below_the_minimum_says_what_it_buys() -> None:
    btc = Market("BTC/USDT:USDT", D("0.001"), D("0.1"), D("0.001"), D(100), 125)
    config = replace(CONFIG, market=btc, limits=replace(LIMITS, max_position_usdt=D(150)))
    signal = Signal(Direction.LONG, D(96000), D(95500), D(97000))
    event = trader.CandleClosed(T0, D(96100), D(95900), D(96000), signal, facts())
    _, [journal] = trader.step(trader.TraderState(), event, config, T0)
    assert isinstance(journal, trader.Journal) and journal.data["reason"] == (
        "max_position_usdt 150 buys 0.001 at 96000 (96.00 USDT) < BTC/USDT:USDT minimum "
        "order 100 USDT (steps of 0.001)"
    )
