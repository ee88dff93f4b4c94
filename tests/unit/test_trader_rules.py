"""The trading core's rules one at a time, each at its edge: what is journalled and with
which facts, what is refused and why, when a candle is too old, what a start does.
(`test_trader.py` tells the main stories; this file pins every branch they pass by.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain import trader
from daemon.domain.models import (
    Direction,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Signal,
    TradePlan,
    bot_tag,
)
from daemon.domain.risk import AccountExposure
from tests.unit.test_trader import (
    CONFIG,
    IN_SESSION,
    LONG,
    MONDAY_AFTER,
    PLAN,
    SHORT,
    T0,
    D,
    candle,
    done,
    facts,
    kinds,
    protected_long,
    resting,
    session_step,
    step,
)

SHORT_PLAN = TradePlan(Direction.SHORT, D(2510), D(2480), T0)


def journal(actions: list[trader.Action], kind: str) -> dict[str, object]:
    [entry] = [a for a in actions if isinstance(a, trader.Journal) and a.kind == kind]
    return dict(entry.data)


def submits(actions: list[trader.Action]) -> list[trader.Submit]:
    return [a for a in actions if isinstance(a, trader.Submit)]


# --- configuration and facts ----------------------------------------------------------------


def test_client_order_ids_carry_the_bot_s_tag_and_an_eight_digit_sequence() -> None:
    config = trader.TraderConfig(
        "eth-ema", "paper", CONFIG.symbol, CONFIG.market, 3, CONFIG.limits, timedelta(minutes=2)
    )
    assert config.tag == bot_tag("eth-ema") and len(config.tag) == 8
    assert config.client_order_id(42) == f"tc{bot_tag('eth-ema')}-00000042"
    assert replace(CONFIG, tag="abc").client_order_id(7) == "tcabc-00000007", "a tag is kept"


def test_unrealised_pnl_follows_the_position_s_sign() -> None:
    long = trader.Facts(position_qty=D("2"), entry_price=D(100), mark=D(110))
    short = trader.Facts(position_qty=D("-2"), entry_price=D(100), mark=D(110))
    assert (long.unrealized, short.unrealized) == (D(20), D(-20))


def test_a_step_never_changes_the_state_it_was_given() -> None:
    before = trader.TraderState(sequence=5)
    after, _ = step(before, candle(facts(), LONG))
    assert before == trader.TraderState(sequence=5) and after.sequence == 6
    assert before.copy() == before and before.copy() is not before


# --- start-up --------------------------------------------------------------------------------


def test_a_start_with_a_position_and_no_plan_says_it_is_kept_unprotected() -> None:
    state, actions = step(trader.TraderState(), trader.Started(facts("0.02")))
    assert kinds(actions) == ["journal position_without_plan"]
    assert journal(actions, "position_without_plan") == {
        "qty": "0.02",
        "note": "kept unprotected; the bot exits it on an opposite signal",
    }
    assert not state.busy and not state.protected


def test_a_start_with_a_plan_or_a_pending_entry_does_not_call_the_position_planless() -> None:
    _, with_plan = step(trader.TraderState(plan=PLAN), trader.Started(facts("0.02")))
    assert "journal position_without_plan" not in kinds(with_plan)
    entry = replace(resting("e", "stop", "0.02", "1"), type=OrderType.MARKET, purpose="entry")
    pending = trader.initial_state(0, None, (entry, SHORT_PLAN))
    _, actions = step(pending, trader.Started(facts("0.02")))
    assert "journal position_without_plan" not in kinds(actions)
    _, flat = step(trader.TraderState(), trader.Started(facts("0")))
    assert flat == []


def test_a_start_s_orders_are_dated_by_the_start_and_protect_what_is_held() -> None:
    now = T0 + timedelta(hours=3)
    _, actions = step(trader.TraderState(plan=PLAN), trader.Started(facts("0.02")), now)
    stop, take_profit = submits(actions)
    assert stop.intent.created_at == now == take_profit.intent.created_at
    assert (stop.sequence, take_profit.sequence) == (1, 2)
    assert stop.intent.client_order_id == CONFIG.client_order_id(1)
    assert stop.plan is None and stop.intent.price is None
    assert (stop.intent.bot, stop.intent.account, stop.intent.symbol) == (
        "b1",
        "paper",
        "ETH/USDT:USDT",
    )


def test_a_halted_bot_does_nothing_at_start() -> None:
    state, actions = step(trader.TraderState(plan=PLAN, halted=True), trader.Started(facts("0.02")))
    assert actions == [] and not state.busy


def test_the_state_a_bot_starts_from_is_its_stored_sequence_plan_and_pending_entry() -> None:
    entry = replace(resting("e9", "stop", "0.02", "1"), purpose="entry")
    state = trader.initial_state(9, PLAN, (entry, SHORT_PLAN))
    assert (state.sequence, state.plan, state.pending) == (9, PLAN, ("e9", SHORT_PLAN))
    assert trader.initial_state(3, None, None).pending is None


# --- what a backtest may skip ----------------------------------------------------------------


def test_a_candle_needs_attention_only_when_plan_or_protection_is_out_of_step() -> None:
    settled, _ = protected_long()
    assert not trader.needs_attention(settled, CONFIG)
    assert not trader.needs_attention(trader.TraderState(), CONFIG), "flat and planless"
    assert trader.needs_attention(replace(settled, pending=("e", PLAN)), CONFIG)
    assert trader.needs_attention(replace(settled, facts=facts("0", *settled.facts.orders)), CONFIG)
    assert trader.needs_attention(replace(settled, facts=facts("0.02")), CONFIG), "no stop"
    assert trader.needs_attention(trader.TraderState(plan=PLAN), CONFIG), "flat with a plan"


def test_a_busy_state_has_a_request_in_flight_or_work_queued() -> None:
    assert not trader.TraderState().busy
    assert trader.TraderState(todo=("guard",)).busy
    assert trader.TraderState(awaiting=(("c", "entry", "submit"),)).busy


# --- fresh and stale candles ------------------------------------------------------------------


def test_a_candle_exactly_at_the_maximum_age_is_still_traded_on() -> None:
    at_limit = T0 + CONFIG.max_candle_age
    _, actions = step(trader.TraderState(), candle(facts(), LONG), at_limit)
    assert kinds(actions) == ["submit entry market 0.02"]
    _, late = step(trader.TraderState(), candle(facts(), LONG), at_limit + timedelta(seconds=1))
    assert late == []


def test_the_entry_is_dated_by_its_candle_not_by_the_clock() -> None:
    now = T0 + timedelta(seconds=30)
    _, actions = step(trader.TraderState(), candle(facts(), LONG), now)
    [entry] = submits(actions)
    assert entry.intent.created_at == T0 and entry.plan is not None
    assert entry.plan.opened_at == T0


# --- loss limits -----------------------------------------------------------------------------


def test_a_bot_loss_counts_realised_and_unrealised_and_is_journalled_with_its_limit() -> None:
    losing = replace(facts("0.02"), bot_realized=D(-19), mark=D(2450))  # -19 + -1 = -20
    state, actions = step(trader.TraderState(plan=PLAN), candle(losing))
    assert kinds(actions) == ["journal loss_limit_reached", "halt bot"]
    assert journal(actions, "loss_limit_reached") == {
        "scope": "bot",
        "pnl": "-20.00",
        "limit": "20",
    }
    halt = actions[-1]
    assert isinstance(halt, trader.Halt)
    assert halt.reason == "daily loss limit: today's PnL -20.00 USDT reached -20 USDT"
    assert state.halted and not state.busy
    _, nearly = step(trader.TraderState(), candle(replace(losing, bot_realized=D("-18.99"))))
    assert "halt bot" not in kinds(nearly)


def test_an_account_loss_halts_the_whole_account() -> None:
    account = AccountExposure(daily_pnl=D(-50))
    event = replace(candle(facts()), account=account)
    _, actions = step(trader.TraderState(), event)
    assert kinds(actions) == ["journal loss_limit_reached", "halt account"]
    halt = actions[-1]
    assert isinstance(halt, trader.Halt) and halt.scope == "account"


def test_a_stale_candle_does_not_judge_the_loss_limits() -> None:
    losing = replace(facts(), bot_realized=D(-25))
    late = T0 + timedelta(hours=1)
    _, actions = step(trader.TraderState(), candle(losing), late)
    assert actions == []


# --- the plan --------------------------------------------------------------------------------


def test_a_plan_for_the_other_direction_is_cleared_with_its_reason() -> None:
    state, actions = step(trader.TraderState(plan=SHORT_PLAN), candle(facts("0.02")))
    assert kinds(actions)[:2] == ["clear plan", "journal plan_cleared"]
    assert journal(actions, "plan_cleared") == {"reason": "the position is the other way"}
    assert state.plan is None


def test_a_closed_position_clears_its_plan_with_that_reason() -> None:
    _, actions = step(trader.TraderState(plan=PLAN), candle(facts("0")))
    assert journal(actions, "plan_cleared") == {"reason": "the position is closed"}


def test_a_pending_entry_s_plan_is_not_activated_by_a_position_the_other_way() -> None:
    state, actions = step(
        trader.TraderState(pending=("e", SHORT_PLAN)), trader.Started(facts("0.02"))
    )
    assert state.plan is None and state.pending == ("e", SHORT_PLAN)
    assert "save plan" not in kinds(actions)


def test_a_pending_entry_still_live_keeps_its_plan_while_flat() -> None:
    live = replace(resting("e", "stop", "0.02", "1"), type=OrderType.MARKET, purpose="entry")
    state, actions = step(trader.TraderState(pending=("e", PLAN)), trader.Started(facts("0", live)))
    assert state.pending == ("e", PLAN) and "clear plan" not in kinds(actions)


def test_plan_activation_is_journalled_with_the_entry_and_the_held_quantity() -> None:
    _, actions = step(trader.TraderState(pending=("e7", PLAN)), trader.Started(facts("0.01")))
    assert journal(actions, "plan_activated") == {
        "cid": "e7",
        "qty": "0.01",
        "stop": "2490.004",
        "take_profit": "2520",
    }


# --- the safety net behind the resting stop -----------------------------------------------


def test_an_unprotected_short_is_closed_when_the_candle_reaches_its_stop() -> None:
    short = facts("-0.02")
    _, actions = step(trader.TraderState(plan=SHORT_PLAN), candle(short))  # high 2505 < 2510
    assert "journal stop_crossed_unprotected" not in kinds(actions)
    high = trader.CandleClosed(T0, D(2510), D(2495), D(2500), None, short)
    _, actions = step(trader.TraderState(plan=SHORT_PLAN), high)
    assert kinds(actions) == ["journal stop_crossed_unprotected", "submit stop market 0.02"]
    assert journal(actions, "stop_crossed_unprotected") == {"stop": "2510"}
    [close] = submits(actions)
    assert close.intent.side is Side.BUY and close.intent.reduce_only


def test_an_unprotected_long_is_closed_when_the_low_touches_the_stop_exactly() -> None:
    at_stop = candle(facts("0.02"), low="2490.004")
    _, actions = step(trader.TraderState(plan=PLAN), at_stop)
    assert kinds(actions)[:2] == ["journal stop_crossed_unprotected", "submit stop market 0.02"]
    above = candle(facts("0.02"), low="2490.005")
    _, actions = step(trader.TraderState(plan=PLAN), above)
    assert "journal stop_crossed_unprotected" not in kinds(actions)


def test_a_protected_position_is_left_to_its_resting_stop() -> None:
    state, f = protected_long()
    _, actions = step(state, candle(f, low="2400"))
    assert actions == []


# --- outcomes ----------------------------------------------------------------------------------


def entry_sent() -> trader.TraderState:
    state, _ = step(trader.TraderState(), candle(facts(), LONG))
    return state


def test_a_rejected_entry_is_the_bot_s_last_problem() -> None:
    state = entry_sent()
    state, _ = step(state, done(state, facts(), trader.Result.REJECTED))
    assert state.last_problem == "entry order rejected: because"


def test_an_entry_with_no_answer_is_the_bot_s_last_problem() -> None:
    state = entry_sent()
    state, _ = step(state, done(state, facts(), trader.Result.UNKNOWN))
    assert state.last_problem == "entry order outcome unknown: because"


def test_an_entry_refused_as_would_trigger_is_a_rejection_not_a_stop_hit() -> None:
    state = entry_sent()
    state, actions = step(state, done(state, facts(), trader.Result.WOULD_TRIGGER))
    assert state.last_problem == "entry order rejected: because"
    assert not any("hit_on_placement" in k for k in kinds(actions))


def stop_sent() -> trader.TraderState:
    state = entry_sent()
    state, _ = step(state, done(state, facts("0.02")))
    assert [a[1] for a in state.awaiting] == ["stop", "take_profit"]
    return state


def test_a_protective_order_with_no_answer_is_shown_and_not_placed_again_this_pass() -> None:
    state = stop_sent()
    state, actions = step(state, done(state, facts("0.02"), trader.Result.UNKNOWN))
    assert kinds(actions) == ["journal protection_not_placed"]
    assert journal(actions, "protection_not_placed") == {
        "cid": CONFIG.client_order_id(2),
        "purpose": "stop",
        "reason": "because",
    }
    assert state.last_problem == "stop order outcome unknown: because"
    assert state.blocked == {"stop"}
    tp = resting(CONFIG.client_order_id(3), "take_profit", "0.02", "2520")
    state, actions = step(state, done(state, facts("0.02", tp)))
    assert actions == [] and not state.busy


def test_a_take_profit_refused_as_already_reached_closes_the_position_as_take_profit() -> None:
    state = stop_sent()
    stop = resting(CONFIG.client_order_id(2), "stop", "0.02", "2490")
    state, _ = step(state, done(state, facts("0.02", stop)))
    state, actions = step(state, done(state, facts("0.02", stop), trader.Result.WOULD_TRIGGER))
    assert kinds(actions) == [
        "journal take_profit_hit_on_placement",
        "submit take_profit market 0.02",
    ]
    assert journal(actions, "take_profit_hit_on_placement") == {
        "cid": CONFIG.client_order_id(3),
        "reason": "because",
        "action": "closed at market",
    }


def test_a_cancel_answered_but_still_listed_is_not_sent_again_in_the_same_pass() -> None:
    state, f = protected_long()
    state, actions = step(state, candle(facts("0", *f.orders)))
    assert kinds(actions)[-2:] == ["cancel stop", "cancel take_profit"]
    state, actions = step(state, done(state, facts("0", *f.orders)))  # stop still listed
    assert state.blocked == {"stop"} and actions == []
    state, actions = step(state, done(state, facts("0", f.orders[0])))
    assert actions == [] and not state.busy


def test_a_failed_cancel_is_retried_at_the_next_candle() -> None:
    state, f = protected_long()
    state, _ = step(state, candle(facts("0", *f.orders)))
    state, actions = step(state, done(state, facts("0", *f.orders), trader.Result.REJECTED))
    assert actions == [] and state.blocked == {"stop"}
    assert state.last_problem == "stop order rejected: because"
    state, _ = step(state, done(state, facts("0", f.orders[0])))
    later = T0 + timedelta(minutes=1)
    state, actions = step(state, candle(facts("0", f.orders[0]), at=later), later)
    assert kinds(actions) == ["cancel stop"]


# --- signals and entries ----------------------------------------------------------------------


def test_without_equity_or_room_a_signal_is_skipped_and_journalled() -> None:
    _, actions = step(trader.TraderState(), candle(facts(equity=None), LONG))
    assert kinds(actions) == ["journal signal_skipped"]
    assert journal(actions, "signal_skipped") == {
        "rule": "equity",
        "reason": "the account's equity was not read",
        "equity": "None",
    }
    state, poor = step(trader.TraderState(), candle(facts(equity="10"), LONG))
    skipped = journal(poor, "signal_skipped")
    assert (skipped["equity"], skipped["rule"]) == ("10", "risk_per_trade")
    assert state.last_problem == f"signal skipped: {skipped['reason']}"


def test_a_short_signal_when_flat_sells_with_a_short_plan() -> None:
    _, actions = step(trader.TraderState(), candle(facts(), SHORT))
    [entry] = submits(actions)
    assert entry.intent.side is Side.SELL and not entry.intent.reduce_only
    assert entry.plan == TradePlan(Direction.SHORT, D(2510), D(2480), T0)


def test_an_entry_the_risk_rules_refuse_is_journalled_with_its_rule() -> None:
    wide = Signal(Direction.LONG, D(2500), D(2499), D(2520))  # a tiny stop: a large size
    tight = replace(CONFIG, limits=replace(CONFIG.limits, max_position_usdt=D(50)))
    state, actions = trader.step(
        trader.TraderState(),
        candle(facts("0", equity="1000"), wide),
        replace(tight, leverage=4),  # above the limits' 3x
        T0,
    )
    assert kinds(actions) == ["journal order_refused"]
    refusal = journal(actions, "order_refused")
    assert refusal["rule"] == "leverage" and refusal["cid"] == CONFIG.client_order_id(1)
    assert state.last_problem == f"risk rule leverage: {refusal['reason']}"
    assert not state.busy and state.pending is None


def test_a_reversal_s_close_is_sent_even_when_an_entry_would_be_refused() -> None:
    """Getting out is always possible: the risk rules never block a close."""
    state, f = protected_long()
    state, actions = trader.step(state, candle(f, SHORT), replace(CONFIG, leverage=4), T0)
    assert kinds(actions) == ["submit reversal market 0.02"]


def test_a_reversal_that_leaves_a_remainder_does_not_enter_and_re_protects() -> None:
    state, f = protected_long()
    state, actions = step(state, candle(f, SHORT))
    assert kinds(actions) == ["submit reversal market 0.02"]
    remainder = facts("0.01", *f.orders)  # only half closed
    state, actions = step(state, done(state, remainder))
    assert kinds(actions) == ["cancel stop"], "the stop is resized, no entry"
    assert state.signal is None


@pytest.mark.parametrize("side", [Side.SELL, Side.BUY])
def test_a_protective_order_of_the_wrong_type_is_replaced(side: Side) -> None:
    state, f = protected_long()
    wrong = Order(
        "paper",
        "ETH/USDT:USDT",
        "x",
        side,
        OrderType.LIMIT,
        D("0.02"),
        D(2490),
        True,
        OrderStatus.OPEN,
        purpose="stop",
    )
    _, actions = step(state, candle(replace(f, orders=(wrong, f.orders[1]))))
    assert kinds(actions) == ["cancel stop"]


def test_an_outcome_due_is_named_by_its_client_order_id() -> None:
    state = entry_sent()
    cid = CONFIG.client_order_id(1)
    with pytest.raises(ValueError, match=f"an outcome for {cid} is due before any other event"):
        step(state, candle(facts()))


def test_a_stop_hit_on_placement_after_the_position_is_gone_sends_nothing() -> None:
    state = stop_sent()
    state, actions = step(state, done(state, facts("0"), trader.Result.WOULD_TRIGGER))
    assert kinds(actions) == ["journal stop_hit_on_placement"]
    state, actions = step(state, done(state, facts("0")))  # the take-profit's answer
    assert "journal order_refused" not in kinds(actions)
    assert not any(k.startswith("submit") for k in kinds(actions))


def test_a_rejected_close_of_a_stop_hit_is_shown_as_protection_not_placed() -> None:
    state = stop_sent()
    state, _ = step(state, done(state, facts("0.02"), trader.Result.WOULD_TRIGGER))
    tp = resting(CONFIG.client_order_id(3), "take_profit", "0.02", "2520")
    state, actions = step(state, done(state, facts("0.02", tp)))
    assert kinds(actions) == ["submit stop market 0.02"]
    state, actions = step(state, done(state, facts("0.02", tp), trader.Result.REJECTED))
    assert journal(actions, "protection_not_placed")["purpose"] == "stop"
    assert state.blocked == {"stop"} and not state.busy


def test_no_entry_when_the_account_is_no_longer_flat_once_the_protection_is_cleared() -> None:
    state, f = protected_long()
    state, _ = step(state, candle(f, SHORT))
    state, actions = step(state, done(state, facts("0", *f.orders)))
    assert kinds(actions)[-2:] == ["cancel stop", "cancel take_profit"]
    state, _ = step(state, done(state, facts("0", f.orders[1])))
    reopened = facts("0.01")  # a fill nobody expected, between the cancels and the entry
    state, actions = step(state, done(state, reopened))
    assert not any("entry" in k for k in kinds(actions)), kinds(actions)


def test_a_failed_take_profit_cancel_is_reported_as_the_take_profit_s() -> None:
    state, f = protected_long()
    only_tp = facts("0", f.orders[1])
    state, actions = step(state, candle(only_tp))
    assert kinds(actions)[-1:] == ["cancel take_profit"]
    state, actions = step(state, done(state, only_tp, trader.Result.REJECTED))
    assert state.last_problem == "take_profit order rejected: because"
    assert state.blocked == {"take_profit"}


def test_an_entry_that_would_crowd_the_account_is_refused_by_the_account_limit() -> None:
    crowded = AccountExposure(other_positions_notional=D("450.01"))
    event = replace(candle(facts(), LONG), account=crowded)
    _, actions = step(trader.TraderState(), event)
    assert kinds(actions) == ["journal order_refused"]
    assert journal(actions, "order_refused")["rule"] == "max_account_position"
    room = replace(event, account=AccountExposure(other_positions_notional=D(450)))
    _, actions = step(trader.TraderState(), room)
    assert kinds(actions) == ["submit entry market 0.02"]


def test_a_new_plan_for_the_same_position_moves_its_protection() -> None:
    settled, _ = protected_long()
    assert not trader.needs_attention(settled, CONFIG)  # remembered for this plan and size
    wider = TradePlan(Direction.LONG, D(2480), D(2520), T0)
    assert trader.needs_attention(replace(settled, plan=wider), CONFIG)
    _, actions = step(replace(settled, plan=wider), candle(settled.facts))
    assert kinds(actions) == ["cancel stop"]


# --- trading sessions -----------------------------------------------------------------------

SATURDAY = datetime(2025, 3, 29, 8, 0, tzinfo=UTC)
SESSION_CLOSE = datetime(2025, 10, 27, 10, 0, tzinfo=UTC)  # Monday, 10:00 London (GMT)


def test_a_signal_outside_the_sessions_is_skipped_saying_when_the_next_one_opens() -> None:
    _, actions = session_step(trader.TraderState(), candle(facts(), LONG, at=SATURDAY), SATURDAY)
    assert journal(actions, "signal_skipped") == {
        "rule": "session",
        "reason": "outside the bot's trading sessions",
        "until": MONDAY_AFTER.isoformat(),  # Monday 07:00 London, summer time
    }
    assert kinds(actions) == ["journal signal_skipped"]


def test_the_session_end_flatten_is_journalled_with_the_quantity_it_closes() -> None:
    state, f = protected_long("0.02")
    _, actions = session_step(state, candle(f, at=SESSION_CLOSE), SESSION_CLOSE)
    assert journal(actions, "session_ended") == {
        "qty": "0.02",
        "action": "closed at market (session_end)",
    }
    [close] = submits(actions)
    assert (close.intent.side, close.intent.reduce_only) == (Side.SELL, True)


def protected_short(qty: str) -> trader.Facts:
    stop = resting("s", "stop", qty, "2510", side=Side.BUY)
    return facts(f"-{qty}", stop, resting("t", "take_profit", qty, "2480", side=Side.BUY))


def test_a_short_is_closed_at_the_session_end_by_buying() -> None:
    f = protected_short("1")
    state = trader.TraderState(sequence=3, plan=SHORT_PLAN, facts=f)
    _, actions = session_step(state, candle(f, at=SESSION_CLOSE), SESSION_CLOSE)
    assert journal(actions, "session_ended")["qty"] == "-1"
    [close] = submits(actions)
    assert (close.intent.side, close.intent.qty, close.intent.purpose) == (
        Side.BUY,
        D(1),
        trader.SESSION_END,
    )


def test_a_flat_bot_at_the_session_end_has_nothing_to_close_or_journal() -> None:
    _, actions = session_step(
        trader.TraderState(), candle(facts(), at=SESSION_CLOSE), SESSION_CLOSE
    )
    assert actions == []


def test_a_position_out_of_session_needs_attention_only_for_a_flatten_bot() -> None:
    """A backtest skips candles that need no attention: a flatten bot holding a position
    after its session must not be skipped, a keep bot or a flat one may be."""
    settled, _ = protected_long()
    assert not trader.needs_attention(settled, IN_SESSION), "in session, protected"
    out = replace(settled, in_session=False)
    assert trader.needs_attention(out, IN_SESSION)
    assert not trader.needs_attention(out, replace(IN_SESSION, session_end=trader.KEEP))
    flat = replace(out, plan=None, facts=facts("0"))
    assert not trader.needs_attention(flat, IN_SESSION)


def test_a_session_is_due_again_only_before_its_start_or_from_its_next_change() -> None:
    since, until = SATURDAY, MONDAY_AFTER
    known = trader.TraderState(in_session=False, session_since=since, session_until=until)
    due = [
        trader.session_due(known, IN_SESSION, at)
        for at in (since - timedelta(minutes=1), since, until - timedelta(minutes=1), until)
    ]
    assert due == [True, False, False, True]
    assert trader.session_due(trader.TraderState(), IN_SESSION, since), "never computed"
    endless = replace(known, session_until=None)
    assert not trader.session_due(endless, IN_SESSION, until), "no next change: never due"
    assert not trader.session_due(trader.TraderState(), CONFIG, since), "no sessions"


def test_a_signal_the_way_a_short_already_is_is_ignored_naming_the_short() -> None:
    f = protected_short("0.02")
    state = trader.TraderState(sequence=3, plan=SHORT_PLAN, facts=f)
    _, actions = step(state, candle(f, SHORT))
    assert journal(actions, "signal_ignored") == {
        "rule": "same_direction",
        "reason": "the bot is already short (-0.02)",
    }
