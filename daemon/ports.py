"""Ports: the roles the runtime needs from the outside world, named for what they do.

Adapters (paper, ccxt, SQLite, replay) implement them; the runtime sees only these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from daemon.domain.models import Balance, Candle, Fill, Market, Order, OrderIntent, Position


class ExchangeGateway(Protocol):
    """One trading account on one exchange.

    `submit_order` is idempotent by client order id: sending the same intent twice
    returns the order the first send created. Trigger orders (stop-market, take-profit-market)
    are orders like the others: `fetch_open_orders` lists them; `fetch_order` and
    `cancel_order` take `trigger=True` for them (some exchanges keep them apart).
    """

    account: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def market(self, symbol: str) -> Market: ...
    async def set_leverage(self, symbol: str, leverage: int) -> None: ...
    async def submit_order(self, intent: OrderIntent) -> Order: ...
    async def cancel_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None: ...
    async def fetch_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None: ...
    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...
    async def fetch_positions(self, symbol: str | None = None) -> list[Position]: ...
    async def fetch_balance(self) -> Balance: ...
    async def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[Fill]: ...


@dataclass(frozen=True, slots=True)
class CandlesClosed:
    """Every candle of one symbol that closed at `closed_at`, lowest timeframe first."""

    symbol: str
    closed_at: datetime
    candles: tuple[Candle, ...]


CandleConsumer = Callable[[CandlesClosed], Awaitable[None]]


class MarketFeed(Protocol):
    """Closed candles of one symbol, in order, never one twice, never one still open.

    A consumer's coroutine returns when it is done with the event; a replay waits for
    it (lock-step, deterministic), a live feed may not.
    """

    symbol: str
    base_timeframe: str
    timeframes: tuple[str, ...]

    def history(self, timeframe: str, limit: int) -> list[Candle]: ...
    async def prepare(self, needs: Mapping[str, int]) -> None:
        """Load what history() must serve (warm-up per timeframe) before bots start."""
        ...

    def subscribe(self, consumer: CandleConsumer) -> None: ...
    def unsubscribe(self, consumer: CandleConsumer) -> None: ...
    async def run(self) -> None: ...
    def now(self) -> datetime:
        """The feed's own clock: a replay's simulated time, or the exchange's time. A candle
        is stale when it closed too long before this (replayed after downtime)."""
        ...

    @property
    def last_event_monotonic(self) -> float | None: ...

    @property
    def expected_interval_s(self) -> float:
        """Wall seconds between base candles; the health check derives its bounds from it."""
        ...


class PaperLedger(Protocol):
    """Where a paper account keeps its state between runs (a row in the state store)."""

    def load_paper_account(self, account: str) -> str | None: ...
    def save_paper_account(self, account: str, state_json: str) -> None: ...


class FeedCursorStore(Protocol):
    """Where a replay remembers how far it got, so a restart does not rewind time."""

    def load_feed_cursor(self, feed_key: str) -> datetime | None: ...
    def save_feed_cursor(self, feed_key: str, closed_at: datetime) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...
