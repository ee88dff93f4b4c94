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
    max_account_position_usdt: Decimal = Decimal(500)  # all positions on one account
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


@dataclass(frozen=True, slots=True)
class Sizing:
    """An entry's quantity, or zero with the rule that made it so and the numbers."""

    qty: Decimal
    rule: str = ""
    reason: str = ""


def entry_quantity(signal: Signal, equity: Decimal, limits: RiskLimits, market: Market) -> Decimal:
    """Quantity that risks `risk_per_trade_pct` of equity between entry and stop.

    Capped by the position limit, rounded down to the market's step; zero when the
    result is below the market's minimums (the caller then does not trade).
    """
    return size_entry(signal, equity, limits, market).qty


def size_entry(signal: Signal, equity: Decimal, limits: RiskLimits, market: Market) -> Sizing:
    """`entry_quantity` with the reason when it is zero, naming the rule and the numbers,
    e.g. "max_position_usdt 50 < BTC/USDT:USDT minimum order 100 USDT"."""
    stop_distance = abs(signal.entry - signal.stop)
    if signal.entry <= 0:
        return Sizing(ZERO, "price", f"no usable entry price ({signal.entry})")
    if stop_distance <= 0:
        return Sizing(ZERO, "stop", f"the signal's stop {signal.stop} is at its entry")
    if equity <= 0:
        return Sizing(ZERO, "equity", f"no equity to risk ({equity:.2f} USDT)")
    risk_budget = equity * limits.risk_per_trade_pct / HUNDRED
    by_risk = risk_budget / stop_distance
    by_cap = limits.max_position_usdt / signal.entry
    qty = market.round_amount(min(by_risk, by_cap))
    if qty >= market.min_amount and qty * signal.entry >= market.min_notional:
        return Sizing(qty)
    minimum = _minimum(market)
    if limits.max_position_usdt < market.min_notional:
        return Sizing(
            ZERO,
            "max_position",
            f"max_position_usdt {limits.max_position_usdt} < {market.symbol} minimum order "
            f"{market.min_notional} USDT",
        )
    if by_cap <= by_risk:
        return Sizing(
            ZERO,
            "max_position",
            f"max_position_usdt {limits.max_position_usdt} buys {qty} at {signal.entry} "
            f"({qty * signal.entry:.2f} USDT) < {minimum}",
        )
    return Sizing(
        ZERO,
        "risk_per_trade",
        f"risk_per_trade_pct {limits.risk_per_trade_pct} % of equity {equity:.2f} USDT "
        f"({risk_budget:.2f} USDT over a stop {stop_distance} away) buys {qty} "
        f"({qty * signal.entry:.2f} USDT) < {minimum}",
    )


def _minimum(market: Market) -> str:
    """The market's smallest order in words, e.g. "BTC/USDT:USDT minimum order 100 USDT"."""
    if market.min_amount > market.amount_step:
        return (
            f"{market.symbol} minimum order {market.min_notional} USDT "
            f"and {market.min_amount} (steps of {market.amount_step})"
        )
    steps = f"steps of {market.amount_step}"
    return f"{market.symbol} minimum order {market.min_notional} USDT ({steps})"


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
        raise RiskRejected(
            "leverage",
            f"leverage {leverage} > the limit {leverage_cap} (max_leverage "
            f"{limits.max_leverage}, {market.symbol}'s bracket for {notional_after:.2f} USDT "
            f"allows {exchange_cap}x)",
        )
    breach = loss_breach(daily_pnl, account.daily_pnl, limits)
    if breach is not None:
        raise RiskRejected(f"{breach.scope}_daily_loss_limit", breach.reason)
    if notional_after > limits.max_position_usdt:
        raise RiskRejected(
            "max_position",
            f"max_position_usdt {limits.max_position_usdt} < the position after the order "
            f"({notional_after:.2f} USDT)",
        )
    account_after = account.other_positions_notional + notional_after
    if account_after > limits.max_account_position_usdt:
        raise RiskRejected(
            "max_account_position",
            f"max_account_position_usdt {limits.max_account_position_usdt} < the account's "
            f"positions after the order ({account_after:.2f} USDT: this bot "
            f"{notional_after:.2f}, others {account.other_positions_notional:.2f})",
        )
    if intent.qty != market.round_amount(intent.qty):
        raise RiskRejected(
            "market_precision", f"quantity {intent.qty} is not a multiple of {market.amount_step}"
        )
    if intent.qty < market.min_amount or intent.qty * price < market.min_notional:
        raise RiskRejected(
            "market_minimum",
            f"order {intent.qty} at {price} ({intent.qty * price:.2f} USDT) < {_minimum(market)}",
        )
