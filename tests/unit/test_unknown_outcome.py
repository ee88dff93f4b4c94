"""An intent whose outcome is unknown is looked up for a bounded time, then known never placed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from daemon.domain.models import Order, OrderStatus, OrderType, Side
from daemon.runtime.unknown_outcome import NEVER_REACHED, resolve_pending

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = START

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return (self.at - START).total_seconds()


class NeverFound:
    """An exchange that never shows the order: each lookup is counted."""

    unknown_outcome_window_s = 10.0

    def __init__(self) -> None:
        self.lookups = 0

    async def fetch_order(self, symbol: str, cid: str, trigger: bool = False) -> Any:
        self.lookups += 1
        return None


def pending(created_at: datetime) -> Order:
    return Order(
        "binance",
        "ETH/USDT:USDT",
        "tc1-00000001",
        Side.BUY,
        OrderType.MARKET,
        Decimal("0.02"),
        None,
        False,
        OrderStatus.PENDING_SUBMIT,
        bot="b1",
        created_at=created_at,
    )


def resolve(created_at: datetime) -> tuple[Order, float, int]:
    clock, gateway = Clock(), NeverFound()

    async def sleep(seconds: float) -> None:
        clock.at += timedelta(seconds=seconds)

    order = asyncio.run(resolve_pending(gateway, pending(created_at), clock, sleep))  # type: ignore[arg-type]
    return order, clock.monotonic(), gateway.lookups


def test_an_intent_never_found_is_never_placed_once_the_window_has_passed() -> None:
    order, waited, lookups = resolve(START - timedelta(seconds=4))
    assert (order.status, order.reason) == (OrderStatus.REJECTED, NEVER_REACHED)
    assert waited == 6.0 and lookups > 2, "looked up until 10 s after it was written"


def test_an_intent_stamped_ahead_of_our_clock_is_still_resolved_within_the_window() -> None:
    """Decided on a candle timed hours ahead of our clock: the wait is the window, not hours."""
    order, waited, _ = resolve(START + timedelta(hours=4))
    assert (order.status, order.reason) == (OrderStatus.REJECTED, NEVER_REACHED)
    assert waited == 10.0
