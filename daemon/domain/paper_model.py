"""The paper exchange's fill model as pure arithmetic: what a fill does to a net position.

Pure so that the paper adapter and the backtest simulator share it to the last Decimal, and
tests can table it without an account.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from daemon.domain.models import ZERO, Candle, Market, Side

_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class Holding:
    """A net position as the engine keeps it: signed qty and average entry."""

    qty: Decimal
    entry_price: Decimal


FLAT = Holding(ZERO, ZERO)


@dataclass(frozen=True, slots=True)
class PositionChange:
    """What one fill does to a net position."""

    holding: Holding
    realized_pnl: Decimal
    closed_qty: Decimal
    opened_qty: Decimal


def apply_fill(holding: Holding, side: Side, qty: Decimal, price: Decimal) -> PositionChange:
    """Average in on increase, realise PnL on decrease, close-then-reopen on a flip."""
    signed = qty * side.sign
    old = holding.qty
    new = old + signed
    if old == 0 or (old > 0) == (signed > 0):
        entry = (abs(old) * holding.entry_price + qty * price) / abs(new)
        return PositionChange(Holding(new, entry), ZERO, ZERO, qty)
    closed = min(abs(old), qty)
    direction = 1 if old > 0 else -1
    realized = (price - holding.entry_price) * closed * direction
    if new == 0:
        after = FLAT
    elif (new > 0) == (old > 0):
        after = Holding(new, holding.entry_price)
    else:
        after = Holding(new, price)
    return PositionChange(after, realized, closed, qty - closed)


def isolated_margin(holding: Holding, leverage: int) -> Decimal:
    return abs(holding.qty) * holding.entry_price / leverage


def slipped_price(side: Side, last: Decimal, slippage_bps: Decimal, market: Market) -> Decimal:
    """A taker pays the spread: buys fill above the last close, sells below."""
    return market.round_price(last * (1 + side.sign * slippage_bps / _BPS))


def is_marketable(side: Side, limit: Decimal, last: Decimal) -> bool:
    return limit >= last if side is Side.BUY else limit <= last


def limit_triggered(side: Side, limit: Decimal, candle: Candle) -> bool:
    """Whether the candle traded through a resting limit during its life."""
    return candle.low <= limit if side is Side.BUY else candle.high >= limit
