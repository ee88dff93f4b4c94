"""The risk rules as properties: whatever the numbers, the limits hold and exits are free."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

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
    fraction=st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1), places=3),
    price=prices,
    limits=limits_st,
    pnl=st.decimals(min_value=Decimal(-(10**6)), max_value=Decimal(10**6), places=2),
    leverage=st.integers(1, 200),
    reduce_only=st.booleans(),
)
def test_an_order_that_only_shrinks_the_position_is_never_blocked(
    position: Decimal,
    fraction: Decimal,
    price: Decimal,
    limits: RiskLimits,
    pnl: Decimal,
    leverage: int,
    reduce_only: bool,
) -> None:
    qty = (abs(position) * fraction).quantize(Decimal("0.001"))
    if qty == 0:
        return
    side = Side.SELL if position > 0 else Side.BUY
    exposure = AccountExposure(other_positions_notional=Decimal(10**9), daily_pnl=pnl)
    check_intent(
        intent(side, qty, reduce_only),
        position_qty=position,
        price=price,
        leverage=leverage,
        limits=limits,
        market=MARKET,
        daily_pnl=pnl,
        account=exposure,
    )


@settings(max_examples=500)
@given(
    position=signed_qtys,
    qty=qtys,
    side=st.sampled_from(Side),
    price=prices,
    limits=limits_st,
    others=money,
    pnl=st.decimals(min_value=Decimal(-1000), max_value=Decimal(1000), places=2),
    account_pnl=st.decimals(min_value=Decimal(-1000), max_value=Decimal(1000), places=2),
    leverage=st.integers(1, 130),
)
def test_an_accepted_order_never_breaks_a_limit(
    position: Decimal,
    qty: Decimal,
    side: Side,
    price: Decimal,
    limits: RiskLimits,
    others: Decimal,
    pnl: Decimal,
    account_pnl: Decimal,
    leverage: int,
) -> None:
    after = position + qty * side.sign
    try:
        check_intent(
            intent(side, qty),
            position_qty=position,
            price=price,
            leverage=leverage,
            limits=limits,
            market=MARKET,
            daily_pnl=pnl,
            account=AccountExposure(others, account_pnl),
        )
    except RiskRejected as e:
        assert e.rule and str(e)  # refused with a rule and a reason
        return
    if abs(after) <= abs(position) and (after == 0 or (after > 0) == (position > 0)):
        return  # a pure reduction: always allowed
    assert abs(after) * price <= limits.max_position_usdt
    assert others + abs(after) * price <= limits.max_account_position_usdt
    assert leverage <= min(limits.max_leverage, MARKET.max_leverage)
    assert (
        -pnl < limits.daily_loss_limit_usdt and -account_pnl < limits.account_daily_loss_limit_usdt
    )
    assert qty * price >= MARKET.min_notional


@settings(max_examples=300)
@given(
    entry=prices,
    stop_pct=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.5"), places=3),
    direction=st.sampled_from(Direction),
    equity=money,
    limits=limits_st,
)
def test_entry_size_risks_at_most_the_budget_and_respects_the_market(
    entry: Decimal,
    stop_pct: Decimal,
    direction: Direction,
    equity: Decimal,
    limits: RiskLimits,
) -> None:
    distance = (entry * stop_pct).quantize(Decimal("0.01"))
    if distance <= 0 or distance >= entry:
        return
    sign = 1 if direction is Direction.LONG else -1
    signal = Signal(direction, entry, entry - sign * distance, entry + sign * 2 * distance)
    qty = entry_quantity(signal, equity, limits, MARKET)
    if qty == 0:
        return
    assert qty == MARKET.round_amount(qty) and qty >= MARKET.min_amount
    assert qty * entry >= MARKET.min_notional
    assert qty * entry <= limits.max_position_usdt
    assert qty * abs(signal.entry - signal.stop) <= equity * limits.risk_per_trade_pct / 100


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
