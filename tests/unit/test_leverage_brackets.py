"""The exchange's leverage brackets in the risk rules: the real cap bites, by the numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from daemon.adapters.ccxt_gateway import brackets_from_ccxt, shipped_brackets
from daemon.domain.errors import RiskRejected
from daemon.domain.models import LeverageBracket, Market, OrderIntent, OrderType, Side
from daemon.domain.risk import RiskLimits, check_intent

BRACKETS = (
    LeverageBracket(Decimal(0), Decimal(50), 20),
    LeverageBracket(Decimal(50), Decimal(1000), 10),
)
MARKET = Market(
    "ETH/USDT:USDT",
    Decimal("0.001"),
    Decimal("0.01"),
    Decimal("0.001"),
    Decimal(5),
    20,
    brackets=BRACKETS,
)
LIMITS = RiskLimits(
    max_leverage=25,
    max_position_usdt=Decimal(5000),
    risk_per_trade_pct=Decimal(1),
    daily_loss_limit_usdt=Decimal(100),
    max_account_position_usdt=Decimal(5000),
)


def entry(qty: str) -> OrderIntent:
    return OrderIntent(
        "b1",
        "a",
        "ETH/USDT:USDT",
        "tc-1",
        Side.BUY,
        OrderType.MARKET,
        Decimal(qty),
        None,
        False,
        datetime.now(UTC),
    )


def check(qty: str, leverage: int) -> None:
    check_intent(
        entry(qty),
        position_qty=Decimal(0),
        price=Decimal(100),
        leverage=leverage,
        limits=LIMITS,
        market=MARKET,
        daily_pnl=Decimal(0),
    )


def test_the_bracket_for_a_notional_gives_its_leverage_and_none_beyond_the_last() -> None:
    assert MARKET.max_leverage_at(Decimal(50)) == 20
    assert MARKET.max_leverage_at(Decimal("50.01")) == 10
    assert MARKET.max_leverage_at(Decimal(1001)) == 0


def test_leverage_allowed_for_a_small_position_is_refused_for_a_large_one() -> None:
    check("0.4", 15)  # 40 USDT: the 20x bracket
    with pytest.raises(RiskRejected, match=r"bracket for 400\.00 USDT allows 10x") as refused:
        check("4", 15)
    assert refused.value.rule == "leverage"


def test_ccxt_tiers_become_brackets_and_the_shipped_file_has_eth() -> None:
    tiers = [
        {
            "minNotional": 0,
            "maxNotional": 50000,
            "maxLeverage": 125.0,
            "maintenanceMarginRate": 0.004,
        },
        {
            "minNotional": 50000,
            "maxNotional": 600000,
            "maxLeverage": 100,
            "maintenanceMarginRate": 0.005,
        },
    ]
    assert [(b.notional_cap, b.max_leverage) for b in brackets_from_ccxt(tiers)] == [
        (Decimal(50000), 125),
        (Decimal(600000), 100),
    ]
    shipped = shipped_brackets("ETH/USDT:USDT")
    assert shipped and shipped[0].max_leverage >= shipped[-1].max_leverage
    assert shipped_brackets("NOPE/USDT:USDT") == ()
