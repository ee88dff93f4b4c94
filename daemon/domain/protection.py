"""Which protective orders should rest for a position, and what to change to get there.

A position whose bot has an active plan is protected on the exchange by two reduce-only
trigger orders for the whole position: a stop-market at the plan's stop and a
take-profit-market at its target. `next_change` compares that with the bot's live protective
orders and says what to cancel or place next, the stop first. An amendment is a cancel
then a place, never a second stop beside the first. An order whose outcome is unknown
(pending submit) counts as resting: nothing is placed or cancelled beside it until it is
resolved, so a resend can never make a second stop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from daemon.domain.models import (
    Direction,
    Market,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TradePlan,
    closing_side,
)

STOP = "stop"
TAKE_PROFIT = "take_profit"
PURPOSES = (STOP, TAKE_PROFIT)
ORDER_TYPES = {STOP: OrderType.STOP_MARKET, TAKE_PROFIT: OrderType.TAKE_PROFIT_MARKET}


@dataclass(frozen=True, slots=True)
class Wanted:
    """A protective order that should rest."""

    purpose: str
    side: Side
    qty: Decimal
    trigger: Decimal

    @property
    def type(self) -> OrderType:
        return ORDER_TYPES[self.purpose]

    def matches(self, order: Order) -> bool:
        return (
            order.side is self.side
            and order.qty == self.qty
            and order.trigger_price == self.trigger
            and order.type is self.type
        )


def wanted(position_qty: Decimal, plan: TradePlan | None, market: Market) -> tuple[Wanted, ...]:
    """The stop and take-profit a position needs; none when flat, without a plan, or when
    the plan is for the other direction."""
    if position_qty == 0 or plan is None:
        return ()
    if (position_qty > 0) != (plan.direction is Direction.LONG):
        return ()
    side, qty = closing_side(position_qty), abs(position_qty)
    return (
        Wanted(STOP, side, qty, market.round_price(plan.stop)),
        Wanted(TAKE_PROFIT, side, qty, market.round_price(plan.take_profit)),
    )


def next_change(
    wants: tuple[Wanted, ...], resting: Sequence[Order], skip: frozenset[str] = frozenset()
) -> Order | Wanted | None:
    """The first change towards exactly `wants` resting: an order to cancel or one to place,
    the stop's before the take-profit's, a cancel before a place; None when all is in order.

    Purposes in `skip` are left as they are (their last attempt failed in this pass: retried
    at the next event). Only orders whose purpose is stop or take_profit count; `resting`
    may hold the bot's other live orders. Kept cheap: a backtest asks on every event.
    """
    for i, purpose in enumerate(PURPOSES):
        if purpose in skip:
            continue
        want = wants[i] if wants else None
        keep = extra = None
        pending = False
        for order in resting:
            if order.purpose != purpose:
                continue
            if order.status is OrderStatus.PENDING_SUBMIT:
                pending = True  # outcome unknown: decide once it is resolved
                break
            if keep is None and want is not None and want.matches(order):
                keep = order
            elif extra is None:
                extra = order
        if pending:
            continue
        if extra is not None:
            return extra
        if want is not None and keep is None:
            return want
    return None


def is_protected(position_qty: Decimal, orders: Iterable[Order]) -> bool:
    """Flat, or a working reduce-only stop covers the whole position."""
    if position_qty == 0:
        return True
    side = closing_side(position_qty)
    return any(
        o.type is OrderType.STOP_MARKET
        and o.status.is_open
        and o.reduce_only
        and o.side is side
        and o.remaining_qty >= abs(position_qty)
        for o in orders
    )
