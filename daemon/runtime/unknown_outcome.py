"""An order intent whose outcome is unknown (a crash or a lost reply after it was written):
look it up by client id until it is found or could no longer exist.

Only a lookup made `unknown_outcome_window_s` after the intent was written may conclude
"never reached the exchange": until then the exchange might still accept the request, or
might not show an accepted order yet. A bot therefore waits that long at most before it
decides anything new; the new decision carries a new client order id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from daemon.domain.models import Order, OrderStatus
from daemon.ports import Clock, ExchangeGateway

NEVER_REACHED = "never reached the exchange"
FIRST_WAIT_S = 0.25
MAX_WAIT_S = 2.0


async def resolve_pending(
    gateway: ExchangeGateway,
    order: Order,
    clock: Clock,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Order:
    """The exchange's order for a pending intent, or the intent REJECTED as never placed."""
    window = gateway.unknown_outcome_window_s
    wait = FIRST_WAIT_S
    # The intent carries the time of the candle it was decided on; one stamped ahead of our
    # clock (a candle timed by a clock that runs ahead) counts from now, so the wait stays
    # bounded by the window.
    born = None if order.created_at is None else min(order.created_at, clock.now())
    while True:
        known = await gateway.fetch_order(
            order.symbol, order.client_order_id, trigger=order.type.is_trigger
        )
        if known is not None:
            return known.with_status(known.status, bot=order.bot)
        age = (clock.now() - born).total_seconds() if born is not None else window
        if age >= window:
            return order.with_status(OrderStatus.REJECTED, reason=NEVER_REACHED)
        await sleep(min(wait, window - age))
        wait = min(wait * 2, MAX_WAIT_S)
