"""Risk rules: pure functions checked on every order intent before it reaches an exchange.

Nothing here reads a clock or an exchange: the caller passes the figures in, so the
same rules run live, in backtests and in property tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from daemon.domain.errors import RiskRejected
from daemon.domain.models import ZERO, Market, OrderIntent, Signal

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_leverage: int
    max_position_usdt: Decimal  # per bot, notional after the order
    risk_per_trade_pct: Decimal  # of equity, between entry and stop
    daily_loss_limit_usdt: Decimal  # per bot, realised plus unrealised since the reset
    max_account_position_usdt: Decimal = Decimal(200)  # all positions on one account
    account_daily_loss_limit_usdt: Decimal = Decimal(50)
    daily_reset: time = time(0, 0)  # UTC


@dataclass(frozen=True, slots=True)
class AccountExposure:
    """What the rest of the account holds, for the account-wide limits."""

    other_positions_notional: Decimal = ZERO  # notional of the account's other symbols
    daily_pnl: Decimal = ZERO  # realised today plus unrealised, the whole account


@dataclass(frozen=True, slots=True)
class LossBreach:
    scope: str  # "bot" or "account"
    pnl: Decimal
    limit: Decimal

    @property
    def reason(self) -> str:
        who = "account daily loss limit" if self.scope == "account" else "daily loss limit"
        return f"{who}: today's PnL {self.pnl:.2f} USDT reached -{self.limit} USDT"


def day_start(now: datetime, reset: time) -> datetime:
    """Start of the risk day that `now` falls in (the last reset at or before it)."""
    now = now.astimezone(UTC)
    start = datetime.combine(now.date(), reset, tzinfo=UTC)
    return start if start <= now else start - timedelta(days=1)


def loss_breach(bot_pnl: Decimal, account_pnl: Decimal, limits: RiskLimits) -> LossBreach | None:
    """The loss limit a bot (or its whole account) has reached today, if any."""
    if -account_pnl >= limits.account_daily_loss_limit_usdt:
        return LossBreach("account", account_pnl, limits.account_daily_loss_limit_usdt)
    if -bot_pnl >= limits.daily_loss_limit_usdt:
        return LossBreach("bot", bot_pnl, limits.daily_loss_limit_usdt)
    return None


def entry_quantity(signal: Signal, equity: Decimal, limits: RiskLimits, market: Market) -> Decimal:
    """Quantity that risks `risk_per_trade_pct` of equity between entry and stop.

    Capped by the position limit, rounded down to the market's step; zero when the
    result is below the market's minimums (the caller then does not trade).
    """
    stop_distance = abs(signal.entry - signal.stop)
    if stop_distance <= 0 or equity <= 0 or signal.entry <= 0:
        return ZERO
    risk_budget = equity * limits.risk_per_trade_pct / HUNDRED
    qty = min(risk_budget / stop_distance, limits.max_position_usdt / signal.entry)
    qty = market.round_amount(qty)
    if qty < market.min_amount or qty * signal.entry < market.min_notional:
        return ZERO
    return qty


def shrinks_position(position_qty: Decimal, signed_qty: Decimal) -> bool:
    """True when an order only reduces a position: same or smaller size, never flipped."""
    after = position_qty + signed_qty
    return abs(after) <= abs(position_qty) and (after == 0 or (after > 0) == (position_qty > 0))


def check_intent(
    intent: OrderIntent,
    *,
    position_qty: Decimal,
    price: Decimal,
    leverage: int,
    limits: RiskLimits,
    market: Market,
    daily_pnl: Decimal,
    account: AccountExposure | None = None,
) -> None:
    """Raise RiskRejected (naming the rule and the numbers) when `intent` breaks a limit.

    An order that only shrinks the position is never blocked: getting out must
    always be possible.
    """
    account = account or AccountExposure()
    if shrinks_position(position_qty, intent.qty * intent.side.sign) and intent.qty > 0:
        return
    if intent.reduce_only:
        raise RiskRejected("reduce_only", "a reduce-only order must shrink the position")
    if intent.qty <= 0:
        raise RiskRejected("quantity", f"quantity must be positive, got {intent.qty}")
    if price <= 0:
        raise RiskRejected("price", f"no usable price for {intent.symbol} ({price})")
    notional_after = abs(position_qty + intent.qty * intent.side.sign) * price
    exchange_cap = market.max_leverage_at(notional_after)
    leverage_cap = min(limits.max_leverage, exchange_cap)
    if leverage > leverage_cap:
        where = (
            f"the exchange's bracket for {notional_after:.2f} USDT allows {exchange_cap}x"
            if exchange_cap < limits.max_leverage
            else f"the limit is {leverage_cap}"
        )
        raise RiskRejected("leverage", f"leverage {leverage} exceeds what is allowed: {where}")
    breach = loss_breach(daily_pnl, account.daily_pnl, limits)
    if breach is not None:
        raise RiskRejected(f"{breach.scope}_daily_loss_limit", breach.reason)
    if notional_after > limits.max_position_usdt:
        raise RiskRejected(
            "max_position",
            f"position after the order {notional_after:.2f} USDT exceeds "
            f"the limit {limits.max_position_usdt} USDT",
        )
    account_after = account.other_positions_notional + notional_after
    if account_after > limits.max_account_position_usdt:
        raise RiskRejected(
            "max_account_position",
            f"account positions after the order {account_after:.2f} USDT exceed "
            f"the limit {limits.max_account_position_usdt} USDT",
        )
    if intent.qty != market.round_amount(intent.qty):
        raise RiskRejected(
            "market_precision", f"quantity {intent.qty} is not a multiple of {market.amount_step}"
        )
    if intent.qty < market.min_amount or intent.qty * price < market.min_notional:
        raise RiskRejected(
            "market_minimum",
            f"order {intent.qty} at {price} is below the market minimum "
            f"({market.min_amount} / {market.min_notional} USDT)",
        )
