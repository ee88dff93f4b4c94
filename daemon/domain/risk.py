"""Risk rules: pure functions checked on every order intent before it reaches an exchange."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from daemon.domain.errors import RiskRejected
from daemon.domain.models import ZERO, Market, OrderIntent, Signal

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_leverage: int
    max_position_usdt: Decimal
    risk_per_trade_pct: Decimal
    daily_loss_limit_usdt: Decimal


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


def check_intent(
    intent: OrderIntent,
    *,
    position_qty: Decimal,
    price: Decimal,
    leverage: int,
    limits: RiskLimits,
    market: Market,
    daily_pnl: Decimal,
) -> None:
    """Raise RiskRejected when `intent` breaks a limit.

    An order that only shrinks the position is never blocked: getting out must
    always be possible.
    """
    signed = intent.qty * intent.side.sign
    after = position_qty + signed
    shrinks = abs(after) <= abs(position_qty) and (after == 0 or (after > 0) == (position_qty > 0))
    if intent.reduce_only and not shrinks:
        raise RiskRejected("reduce_only", "a reduce-only order must shrink the position")
    if shrinks:
        return
    if intent.qty <= 0:
        raise RiskRejected("quantity", f"quantity must be positive, got {intent.qty}")
    leverage_cap = min(limits.max_leverage, market.max_leverage)
    if leverage > leverage_cap:
        raise RiskRejected("leverage", f"leverage {leverage} exceeds the limit {leverage_cap}")
    if -daily_pnl >= limits.daily_loss_limit_usdt:
        raise RiskRejected(
            "daily_loss_limit",
            f"daily loss {-daily_pnl} reached the limit {limits.daily_loss_limit_usdt} USDT",
        )
    notional_after = abs(after) * price
    if notional_after > limits.max_position_usdt:
        raise RiskRejected(
            "max_position",
            f"position after the order {notional_after:.2f} USDT exceeds "
            f"the limit {limits.max_position_usdt} USDT",
        )
    if intent.qty < market.min_amount or intent.qty * price < market.min_notional:
        raise RiskRejected(
            "market_minimum",
            f"order {intent.qty} at {price} is below the market minimum "
            f"({market.min_amount} / {market.min_notional} USDT)",
        )
