"""The paper exchange's fill model as pure arithmetic: what a fill does to a net position.

Pure so that the paper adapter and the backtest simulator share it to the last Decimal, and
tests can table it without an account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from daemon.domain.errors import OrderRejected
from daemon.domain.models import ZERO, Candle, Market, Order, OrderType, Side

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


# --- resting trigger orders: one model for the paper exchange and the backtest --------------


def trigger_rises(order_type: OrderType, side: Side) -> bool:
    """Whether a trigger order fires on a rise (a buy stop, a sell take-profit) or a fall."""
    return (side is Side.BUY) == (order_type is OrderType.STOP_MARKET)


def triggers_at(order_type: OrderType, side: Side, trigger: Decimal, last: Decimal) -> bool:
    """Whether the price `last` is already at or beyond the trigger (placing it would fire)."""
    return last >= trigger if trigger_rises(order_type, side) else last <= trigger


def trigger_hit(
    order_type: OrderType, side: Side, trigger: Decimal, open_: Decimal, high: Decimal, low: Decimal
) -> Decimal | None:
    """Where a resting trigger order executes within a candle, before slippage.

    At the trigger when the candle's range reaches it; at the open when the candle opened
    beyond it (a gap: the market never traded at the trigger); None when it did not fire.
    """
    if trigger_rises(order_type, side):
        if high < trigger:
            return None
        return open_ if open_ >= trigger else trigger
    if low > trigger:
        return None
    return open_ if open_ <= trigger else trigger


def fired_triggers(
    resting: Iterable[Order], open_: Decimal, high: Decimal, low: Decimal
) -> list[tuple[Order, Decimal]]:
    """The trigger orders (of one symbol) a candle fires, stops first, each with its price.

    The path inside a candle is unknown: when a candle reaches both a stop and a take-profit,
    the stop wins (the worse outcome is assumed) and the take-profit does not fire on it.
    """
    fired: list[tuple[Order, Decimal]] = []
    for order in resting:
        if order.trigger_price is None or not order.type.is_trigger:
            continue
        hit = trigger_hit(order.type, order.side, order.trigger_price, open_, high, low)
        if hit is not None:
            fired.append((order, hit))
    stops = [f for f in fired if f[0].type is OrderType.STOP_MARKET]
    return stops or fired


# --- what the account refuses: shared by the paper adapter and the backtest simulator ------


def check_step(qty: Decimal, market: Market) -> None:
    if qty % market.amount_step != 0:
        raise OrderRejected(f"quantity {qty} is not a multiple of the step {market.amount_step}")


def executed_quantity(holding: Holding, side: Side, qty: Decimal, reduce_only: bool) -> Decimal:
    """What of an order executes: all of it, or for reduce-only at most the position."""
    if not reduce_only:
        return qty
    if holding.qty * side.sign >= 0:
        raise OrderRejected("reduce-only order would not reduce the position")
    return min(qty, abs(holding.qty))


def check_minimums(qty: Decimal, price: Decimal, market: Market) -> None:
    """An opening order must reach the market's minimum amount and notional."""
    if qty < market.min_amount:
        raise OrderRejected(f"quantity {qty} is below the minimum {market.min_amount}")
    notional = qty * price
    if notional < market.min_notional:
        raise OrderRejected(
            f"notional {notional} USDT is below the minimum {market.min_notional} USDT"
        )


def check_fill_margin(
    before: Holding,
    side: Side,
    qty: Decimal,
    price: Decimal,
    fee: Decimal,
    free: Decimal,
    leverage: int,
) -> None:
    """A fill that opens or increases needs its extra margin plus fee out of the free balance
    (plus what the same fill realises); one that only reduces never needs any."""
    change = apply_fill(before, side, qty, price)
    if change.opened_qty == 0:
        return
    extra = isolated_margin(change.holding, leverage) - isolated_margin(before, leverage)
    require_margin(extra, fee, free + change.realized_pnl, leverage)


def require_margin(extra: Decimal, fee: Decimal, available: Decimal, leverage: int) -> None:
    if extra + fee > available:
        raise OrderRejected(
            f"insufficient margin: needs {extra + fee} USDT (margin {extra} "
            f"at {leverage}x + fee {fee}), free {available} USDT"
        )
