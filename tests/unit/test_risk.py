"""The risk rules as properties: whatever the numbers, the limits hold and exits are free."""

from __future__ import annotations

import dataclasses
import time as clock
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import ROUND_CEILING, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.domain.errors import RiskRejected
from daemon.domain.models import Direction, Market, OrderIntent, OrderType, Side, Signal
from daemon.domain.risk import (
    AccountExposure,
    RiskLimits,
    check_intent,
    day_start,
    entry_quantity,
    loss_breach,
    shrinks_position,
    size_entry,
)

MARKET = Market(
    "ETH/USDT:USDT", Decimal("0.001"), Decimal("0.01"), Decimal("0.001"), Decimal(20), 125
)
T0 = datetime(2025, 5, 10, tzinfo=UTC)

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100_000), places=2)
prices = st.decimals(min_value=Decimal(1), max_value=Decimal(200_000), places=2)
qtys = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(50), places=3)
signed_qtys = st.decimals(min_value=Decimal(-50), max_value=Decimal(50), places=3)
limits_st = st.builds(
    RiskLimits,
    max_leverage=st.integers(1, 125),
    max_position_usdt=money,
    risk_per_trade_pct=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10), places=2),
    daily_loss_limit_usdt=money,
    max_account_position_usdt=money,
    account_daily_loss_limit_usdt=money,
)


def intent(side: Side, qty: Decimal, reduce_only: bool = False) -> OrderIntent:
    return OrderIntent(
        "b", "a", MARKET.symbol, "tc-1", side, OrderType.MARKET, qty, None, reduce_only, T0
    )


@settings(max_examples=300)
@given(
    position=signed_qtys.filter(lambda q: q != 0),
    data=st.data(),
    price=prices,
    limits=limits_st,
    pnl=st.decimals(min_value=Decimal(-(10**6)), max_value=Decimal(10**6), places=2),
    leverage=st.integers(1, 200),
    reduce_only=st.booleans(),
)
def test_an_order_that_only_shrinks_the_position_is_never_blocked(
    position: Decimal,
    data: st.DataObject,
    price: Decimal,
    limits: RiskLimits,
    pnl: Decimal,
    leverage: int,
    reduce_only: bool,
) -> None:
    steps = data.draw(st.integers(1, int(abs(position) / MARKET.amount_step)), label="steps")
    qty = steps * MARKET.amount_step  # from one step up to the whole position
    side = Side.SELL if position > 0 else Side.BUY
    exposure = AccountExposure(other_positions_notional=Decimal(10**9), daily_pnl=pnl)
    check_intent(  # every limit may be broken already: getting out is still allowed
        intent(side, qty, reduce_only),
        position_qty=position,
        price=price,
        leverage=leverage,
        limits=limits,
        market=MARKET,
        daily_pnl=pnl,
        account=exposure,
    )


def broken_rules(
    *,
    position: Decimal,
    qty: Decimal,
    side: Side,
    price: Decimal,
    leverage: int,
    limits: RiskLimits,
    pnl: Decimal,
    account_pnl: Decimal,
    others: Decimal,
    reduce_only: bool,
) -> set[str]:
    """Every rule the order breaks, by the README's words, not by check_intent's code."""
    after = position + qty * side.sign
    grows = abs(after) > abs(position) or (after != 0 and (after > 0) != (position > 0))
    rules = {
        "reduce_only": reduce_only and (grows or qty <= 0),
        "quantity": qty <= 0,
        "price": price <= 0,
        "leverage": leverage > min(limits.max_leverage, MARKET.max_leverage),
        "bot_daily_loss_limit": -pnl >= limits.daily_loss_limit_usdt,
        "account_daily_loss_limit": -account_pnl >= limits.account_daily_loss_limit_usdt,
        "max_position": abs(after) * price > limits.max_position_usdt,
        "max_account_position": others + abs(after) * price > limits.max_account_position_usdt,
        "market_precision": qty % MARKET.amount_step != 0,
        "market_minimum": qty < MARKET.min_amount or qty * price < MARKET.min_notional,
    }
    return {rule for rule, is_broken in rules.items() if is_broken}


@settings(max_examples=500)
@given(
    position=signed_qtys,
    qty=qtys | st.sampled_from([Decimal(0), Decimal("-0.01"), Decimal("0.0105")]),
    side=st.sampled_from(Side),
    price=prices | st.just(Decimal(0)),
    limits=limits_st,
    others=money,
    pnl=st.decimals(min_value=Decimal(-1000), max_value=Decimal(1000), places=2),
    account_pnl=st.decimals(min_value=Decimal(-1000), max_value=Decimal(1000), places=2),
    leverage=st.integers(1, 130),
    reduce_only=st.booleans(),
)
def test_an_order_is_refused_for_a_rule_it_breaks_and_accepted_only_within_every_limit(
    position: Decimal,
    qty: Decimal,
    side: Side,
    price: Decimal,
    limits: RiskLimits,
    others: Decimal,
    pnl: Decimal,
    account_pnl: Decimal,
    leverage: int,
    reduce_only: bool,
) -> None:
    after = position + qty * side.sign
    broken = broken_rules(
        position=position,
        qty=qty,
        side=side,
        price=price,
        leverage=leverage,
        limits=limits,
        pnl=pnl,
        account_pnl=account_pnl,
        others=others,
        reduce_only=reduce_only,
    )
    only_reduces = (
        qty > 0 and abs(after) <= abs(position) and (after == 0 or (after > 0) == (position > 0))
    )
    try:
        check_intent(
            intent(side, qty, reduce_only),
            position_qty=position,
            price=price,
            leverage=leverage,
            limits=limits,
            market=MARKET,
            daily_pnl=pnl,
            account=AccountExposure(others, account_pnl),
        )
    except RiskRejected as e:
        assert not only_reduces, f"a pure reduction was refused: {e.rule}: {e}"
        assert e.rule in broken, f"refused for {e.rule!r} ({e}), but it breaks only {broken}"
        return
    assert only_reduces or not broken, f"accepted though it breaks {broken}"


@settings(max_examples=300)
@given(
    entry=prices,
    stop_pct=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.5"), places=3),
    direction=st.sampled_from(Direction),
    equity=money,
    limits=limits_st,
)
def test_entry_size_is_the_largest_step_within_the_budget_and_the_limit_or_zero_when_none_fits(
    entry: Decimal,
    stop_pct: Decimal,
    direction: Direction,
    equity: Decimal,
    limits: RiskLimits,
) -> None:
    distance = max((entry * stop_pct).quantize(Decimal("0.01")), Decimal("0.01"))
    sign = 1 if direction is Direction.LONG else -1
    signal = Signal(direction, entry, entry - sign * distance, entry + sign * 2 * distance)
    budget = equity * limits.risk_per_trade_pct / 100
    step = MARKET.amount_step

    def fits(q: Decimal) -> bool:
        return q * distance <= budget and q * entry <= limits.max_position_usdt

    qty = entry_quantity(signal, equity, limits, MARKET)
    if qty:
        assert qty % step == 0 and fits(qty) and not fits(qty + step)
        assert qty >= MARKET.min_amount and qty * entry >= MARKET.min_notional
    else:  # zero only when the smallest order the market takes breaks the budget or limit
        steps = (MARKET.min_notional / entry / step).to_integral_value(rounding=ROUND_CEILING)
        smallest = max(MARKET.min_amount, steps * step)
        assert not fits(smallest), f"{smallest} would fit, yet the size is 0"


def test_refusals_name_the_rule_and_the_numbers() -> None:
    limits = RiskLimits(3, Decimal(50), Decimal("0.5"), Decimal(20))
    with pytest.raises(RiskRejected) as caught:
        check_intent(
            intent(Side.BUY, Decimal("0.03")),
            position_qty=Decimal(0),
            price=Decimal(2500),
            leverage=3,
            limits=limits,
            market=MARKET,
            daily_pnl=Decimal(0),
        )
    assert (
        caught.value.rule == "max_position"
        and "75.00" in str(caught.value)
        and "50" in str(caught.value)
    )
    with pytest.raises(RiskRejected) as caught:
        check_intent(
            intent(Side.BUY, Decimal("0.01")),
            position_qty=Decimal(0),
            price=Decimal(2500),
            leverage=3,
            limits=limits,
            market=MARKET,
            daily_pnl=Decimal(-20),
        )
    assert caught.value.rule == "bot_daily_loss_limit" and "-20.00" in str(caught.value)


def test_the_account_loss_limit_wins_over_the_bots() -> None:
    limits = RiskLimits(
        3, Decimal(50), Decimal("0.5"), Decimal(20), account_daily_loss_limit_usdt=Decimal(30)
    )
    assert loss_breach(Decimal(-5), Decimal(-10), limits) is None
    bot = loss_breach(Decimal(-21), Decimal(-21), limits)
    assert bot is not None and bot.scope == "bot"
    account = loss_breach(Decimal(-1), Decimal(-31), limits)
    assert (
        account is not None
        and account.scope == "account"
        and "account daily loss limit" in account.reason
    )


@given(
    now=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    reset=st.times(),
)
def test_the_risk_day_starts_at_the_last_reset(now: datetime, reset: time) -> None:
    start = day_start(now, reset.replace(tzinfo=None))
    assert start <= now < start + timedelta(days=1)
    assert start.time() == reset.replace(tzinfo=None)


# --- every guard at its limit and one step past it ---------------------------------------

EDGE = RiskLimits(
    max_leverage=200,
    max_position_usdt=Decimal(100),
    risk_per_trade_pct=Decimal(1),
    daily_loss_limit_usdt=Decimal(20),
    max_account_position_usdt=Decimal(150),
    account_daily_loss_limit_usdt=Decimal(30),
)


def refusal(
    side: Side = Side.BUY,
    qty: str = "0.01",
    *,
    position: str = "0",
    price: str = "2500",
    leverage: int = 3,
    limits: RiskLimits = EDGE,
    pnl: str = "0",
    others: str = "0",
    account_pnl: str = "0",
    reduce_only: bool = False,
) -> tuple[str, str] | None:
    """The rule and message an order is refused with, or None when it is accepted."""
    try:
        check_intent(
            intent(side, Decimal(qty), reduce_only),
            position_qty=Decimal(position),
            price=Decimal(price),
            leverage=leverage,
            limits=limits,
            market=MARKET,
            daily_pnl=Decimal(pnl),
            account=AccountExposure(Decimal(others), Decimal(account_pnl)),
        )
    except RiskRejected as e:
        return e.rule, str(e)
    return None


def rule(*args: Any, **order: Any) -> str | None:
    refused = refusal(*args, **order)
    return None if refused is None else refused[0]


def reason(*args: Any, **order: Any) -> str:
    refused = refusal(*args, **order)
    assert refused is not None, "accepted"
    return refused[1]


def test_a_plain_order_within_every_limit_is_accepted() -> None:
    assert refusal() is None


def test_the_position_limit_is_inclusive() -> None:
    assert rule(qty="0.04") is None  # 100.00 USDT: exactly the limit
    assert rule(qty="0.041") == "max_position"  # 102.50: one step past
    assert rule(qty="0.02", position="0.02") is None  # adding up to the limit
    assert rule(qty="0.021", position="0.02") == "max_position"
    assert rule(Side.SELL, "0.06", position="0.02") is None  # a flip to -0.04: 100 USDT
    assert rule(Side.SELL, "0.061", position="0.02") == "max_position"
    message = reason(qty="0.041")
    assert message == "max_position_usdt 100 < the position after the order (102.50 USDT)"


def test_the_account_limit_counts_the_other_symbols_and_is_inclusive() -> None:
    assert rule(qty="0.04", others="50") is None  # 50 + 100 = 150: exactly the limit
    assert rule(qty="0.04", others="50.01") == "max_account_position"
    assert rule(qty="0.039", others="52.5") is None  # 52.5 + 97.5
    message = reason(qty="0.04", others="60")
    assert message == (
        "max_account_position_usdt 150 < the account's positions after the order "
        "(160.00 USDT: this bot 100.00, others 60.00)"
    )


def test_the_leverage_cap_is_the_smaller_of_the_configs_and_the_markets() -> None:
    assert rule(leverage=125) is None  # the market's 125 under a config cap of 200
    assert rule(leverage=126) == "leverage"
    message = reason(leverage=150)
    assert message == (
        "leverage 150 > the limit 125 (max_leverage 200, "
        "ETH/USDT:USDT's bracket for 25.00 USDT allows 125x)"
    )
    tight = RiskLimits(3, Decimal(100), Decimal(1), Decimal(20))
    assert rule(leverage=3, limits=tight) is None
    assert rule(leverage=4, limits=tight) == "leverage"


def test_a_daily_loss_exactly_at_its_limit_halts_new_risk() -> None:
    assert rule(pnl="-19.99") is None
    assert rule(pnl="-20") == "bot_daily_loss_limit"
    assert rule(account_pnl="-29.99") is None
    assert rule(account_pnl="-30") == "account_daily_loss_limit"
    assert rule(pnl="-20", account_pnl="-30") == "account_daily_loss_limit"
    assert rule(pnl="25") is None and rule(account_pnl="35") is None  # a profit is no breach


def test_a_loss_breach_names_its_scope_and_the_numbers() -> None:
    assert loss_breach(Decimal("-19.99"), Decimal("-29.99"), EDGE) is None
    bot = loss_breach(Decimal(-20), Decimal(0), EDGE)
    assert bot is not None and (bot.scope, bot.pnl, bot.limit) == ("bot", Decimal(-20), Decimal(20))
    assert bot.reason == "daily loss limit: today's PnL -20.00 USDT reached -20 USDT"
    account = loss_breach(Decimal(0), Decimal("-30.5"), EDGE)
    assert account is not None
    assert (account.scope, account.pnl, account.limit) == ("account", Decimal("-30.5"), Decimal(30))
    assert account.reason == "account daily loss limit: today's PnL -30.50 USDT reached -30 USDT"


def test_a_reduce_only_order_that_would_grow_or_flip_the_position_is_refused() -> None:
    assert refusal(qty="0.01", position="0.01", reduce_only=True) == (
        "reduce_only",
        "a reduce-only order must shrink the position",
    )
    assert rule(qty="0.01", reduce_only=True) == "reduce_only"  # nothing to reduce
    assert rule(Side.SELL, "0.02", position="0.01", reduce_only=True) == "reduce_only"
    assert rule(Side.SELL, "0.01", position="0.01", reduce_only=True) is None  # closes it


def test_a_zero_or_negative_quantity_is_refused() -> None:
    assert refusal(qty="0") == ("quantity", "quantity must be positive, got 0")
    assert rule(qty="0", position="0.01") == "quantity"  # "shrinks" by nothing: still refused
    assert rule(qty="-0.01") == "quantity"
    assert rule(Side.SELL, "-0.01", position="0.01") == "quantity"


def test_an_order_without_a_usable_price_is_refused() -> None:
    assert refusal(price="0") == ("price", f"no usable price for {MARKET.symbol} (0)")
    assert rule(price="-1") == "price"
    assert rule(price="0.01", qty="1") == "market_minimum"  # a tiny but usable price


def test_a_quantity_off_the_markets_step_is_refused() -> None:
    assert refusal(qty="0.0105") == (
        "market_precision",
        "quantity 0.0105 is not a multiple of 0.001",
    )
    assert rule(qty="0.011") is None


def test_the_markets_minimums_are_inclusive() -> None:
    assert rule(qty="0.008") is None  # 0.008 x 2500 = 20 USDT: the minimum notional
    assert refusal(qty="0.007") == (
        "market_minimum",
        "order 0.007 at 2500 (17.50 USDT) < ETH/USDT:USDT minimum order 20 USDT (steps of 0.001)",
    )
    assert rule(qty="0.001", price="20000") is None  # the minimum amount, 20 USDT
    assert rule(qty="0.001", price="19999") == "market_minimum"
    small_step = Market(
        MARKET.symbol, Decimal("0.0001"), Decimal("0.01"), Decimal("0.001"), Decimal(5), 125
    )
    ok = check_intent(
        intent(Side.BUY, Decimal("0.002")),
        position_qty=Decimal(0),
        price=Decimal(2500),
        leverage=3,
        limits=EDGE,
        market=small_step,
        daily_pnl=Decimal(0),
    )
    assert ok is None
    with pytest.raises(RiskRejected) as caught:  # on the step, above the notional, below the amount
        check_intent(
            intent(Side.BUY, Decimal("0.0009")),
            position_qty=Decimal(0),
            price=Decimal(25000),
            leverage=3,
            limits=EDGE,
            market=small_step,
            daily_pnl=Decimal(0),
        )
    assert caught.value.rule == "market_minimum"


@pytest.mark.parametrize(
    ("position", "signed", "only_shrinks"),
    [
        ("0.05", "-0.02", True),
        ("0.05", "-0.05", True),  # closes it
        ("-0.05", "0.05", True),
        ("0.05", "0", True),  # no change is no growth
        ("0", "0", True),
        ("0.05", "-0.1", False),  # a flip to the same size on the other side
        ("0.05", "-0.06", False),
        ("0.05", "0.01", False),
        ("-0.05", "-0.01", False),
        ("0", "0.01", False),
        ("0", "-0.01", False),
    ],
)
def test_what_counts_as_only_shrinking_a_position(
    position: str, signed: str, only_shrinks: bool
) -> None:
    assert shrinks_position(Decimal(position), Decimal(signed)) is only_shrinks


def test_without_an_account_figure_the_account_limits_see_nothing_else() -> None:
    check_intent(
        intent(Side.BUY, Decimal("0.04")),
        position_qty=Decimal(0),
        price=Decimal(2500),
        leverage=3,
        limits=EDGE,
        market=MARKET,
        daily_pnl=Decimal(0),
    )


def signal(entry: str, stop: str) -> Signal:
    e, s = Decimal(entry), Decimal(stop)
    if s < e:
        return Signal(Direction.LONG, e, s, e + 2 * (e - s))
    return Signal(Direction.SHORT, e, s, e - 2 * (s - e) / 4)


@pytest.mark.parametrize(
    ("entry", "stop", "equity", "expected", "why"),
    [
        ("2500", "2450", "1000", "0.2", "1 % of 1000 over a 50 USDT stop"),
        ("2500", "2550", "1000", "0.2", "the same for a short"),
        ("2500", "2470", "1000", "0.333", "rounded down to the step, never up"),
        ("2500", "2490", "1000", "0.4", "capped by the 1000 USDT position limit"),
        ("2500", "2450", "40", "0.008", "exactly the 20 USDT minimum notional"),
        ("2500", "2450", "39", "0", "0.0078 rounds to 0.007: below the minimum notional"),
        ("20000", "19000", "1", "0", "0.00001: below the minimum amount"),
        ("20000", "10000", "2000", "0.002", "2 x the minimum amount"),
        ("20000", "10000", "1000", "0.001", "exactly the minimum amount (and 20 USDT)"),
        ("2500", "2450", "0", "0", "no equity, no trade"),
        ("2500", "2450", "-5", "0", "a negative equity, no trade"),
        ("0", "-1", "1000", "0", "no usable entry price"),
        ("1", "0.5", "1000", "20", "an entry of 1 USDT is a price like any other"),
    ],
)
def test_entry_size_by_hand(entry: str, stop: str, equity: str, expected: str, why: str) -> None:
    sizing = dataclasses.replace(EDGE, max_position_usdt=Decimal(1000))
    qty = entry_quantity(signal(entry, stop), Decimal(equity), sizing, MARKET)
    assert qty == Decimal(expected), why


STEPS = "ETH/USDT:USDT minimum order 20 USDT (steps of 0.001)"


@pytest.mark.parametrize(
    ("entry", "stop", "equity", "max_position", "rule", "reason"),
    [
        ("0", "-1", "1000", "1000", "price", "no usable entry price (0)"),
        ("2500", "2450", "0", "1000", "equity", "no equity to risk (0.00 USDT)"),
        ("2500", "2450", "-5", "1000", "equity", "no equity to risk (-5.00 USDT)"),
        (
            "2500",
            "2450",
            "1000",
            "19.99",
            "max_position",
            "max_position_usdt 19.99 < ETH/USDT:USDT minimum order 20 USDT",
        ),
        (  # a cap exactly at the minimum can buy it, but not at this price's step
            "2501",
            "2450",
            "1000",
            "20",
            "max_position",
            f"max_position_usdt 20 buys 0.007 at 2501 (17.51 USDT) < {STEPS}",
        ),
        (  # the cap and the risk buy exactly as much: the cap is named
            "15000",
            "5000",
            "1500",
            "22.5",
            "max_position",
            f"max_position_usdt 22.5 buys 0.001 at 15000 (15.00 USDT) < {STEPS}",
        ),
        (
            "2500",
            "2450",
            "39",
            "1000",
            "risk_per_trade",
            "risk_per_trade_pct 1 % of equity 39.00 USDT (0.39 USDT over a stop 50 away) buys "
            f"0.007 (17.50 USDT) < {STEPS}",
        ),
    ],
)
def test_a_size_of_zero_names_the_rule_and_the_numbers(
    entry: str, stop: str, equity: str, max_position: str, rule: str, reason: str
) -> None:
    limits = dataclasses.replace(EDGE, max_position_usdt=Decimal(max_position))
    sized = size_entry(signal(entry, stop), Decimal(equity), limits, MARKET)
    assert (sized.qty, sized.rule, sized.reason) == (0, rule, reason)


def test_a_size_that_can_be_bought_names_no_rule() -> None:
    sized = size_entry(signal("2500", "2450"), Decimal(1000), EDGE, MARKET)
    assert (sized.qty, sized.rule, sized.reason) == (Decimal("0.04"), "", "")


def test_the_risk_day_follows_the_reset_time_in_utc() -> None:
    reset = time(22, 0)
    at_reset = datetime(2025, 5, 10, 22, 0, tzinfo=UTC)
    assert day_start(at_reset, reset) == at_reset
    assert day_start(at_reset - timedelta(seconds=1), reset) == at_reset - timedelta(days=1)
    assert day_start(at_reset + timedelta(hours=3), reset) == at_reset  # past midnight UTC
    paris = timezone(timedelta(hours=2))
    local = datetime(2025, 5, 11, 0, 30, tzinfo=paris)  # 22:30 UTC on the 10th
    assert day_start(local, reset) == at_reset
    assert day_start(local, reset).tzinfo is UTC


def test_the_risk_day_does_not_depend_on_the_machines_timezone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "XST+08")  # a machine 8 hours west of UTC (POSIX spelling)
    clock.tzset()
    try:
        now = datetime(2025, 5, 10, 2, 0, tzinfo=UTC)  # still the 9th on that machine
        assert day_start(now, time(0, 0)) == datetime(2025, 5, 10, tzinfo=UTC)
        east = timezone(timedelta(hours=9))
        assert day_start(now.astimezone(east), time(0, 0)) == datetime(2025, 5, 10, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        clock.tzset()
