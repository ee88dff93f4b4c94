"""Ports: the roles the runtime needs from the outside world, named for what they do.

Adapters (paper, ccxt, SQLite, replay) implement them; the runtime sees only these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from daemon.domain.bot_state import DesiredState
from daemon.domain.models import (
    Balance,
    Candle,
    Fill,
    FundingPayment,
    Market,
    Order,
    OrderIntent,
    Position,
    TradePlan,
)
from daemon.domain.store_records import BotRecord


class ExchangeGateway(Protocol):
    """One trading account on one exchange.

    `submit_order` sends once and resolves an unknown outcome by client order id; an intent
    is never sent twice. An order not found `unknown_outcome_window_s` after it was sent
    never reached the exchange. Trigger orders (stop-market, take-profit-market) are orders
    like the others: `fetch_open_orders` lists them; `fetch_order` and `cancel_order` take
    `trigger=True` for them (some exchanges keep them apart).
    """

    account: str
    unknown_outcome_window_s: float

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
    async def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[Fill]:
        """Every fill since `since` up to now, however long ago (paged as the exchange needs)."""
        ...

    async def fetch_funding(
        self, symbol: str, since: datetime | None = None
    ) -> list[FundingPayment]: ...
    def exchange_time_ms(self) -> int:
        """The exchange's clock (a paper market's: its last candle), for history cursors."""
        ...


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


@dataclass(frozen=True, slots=True)
class AccountSetup:
    """How an account is set up, as far as the exchange reports it (None: not reported)."""

    hedge_mode: bool | None = None
    multi_assets: bool | None = None
    can_trade_futures: bool | None = None
    can_withdraw: bool | None = None
    margin_modes: dict[str, str] = field(default_factory=dict)  # symbol -> isolated | crossed
    notes: tuple[str, ...] = ()  # what could not be asked, and why


class AccountAdmin(Protocol):
    """What the start-up preflight asks of a real exchange account."""

    account: str
    kind: str
    time_measured_at: datetime | None

    async def start(self) -> None: ...
    def missing_credentials(self) -> str | None: ...
    @property
    def time_difference_ms(self) -> int: ...
    async def account_setup(self, symbols: list[str]) -> AccountSetup: ...
    async def load_leverage_brackets(self, symbols: list[str]) -> dict[str, str]: ...
    async def set_isolated_margin(self, symbol: str) -> None: ...
    async def set_leverage(self, symbol: str, leverage: int) -> None: ...
    async def market(self, symbol: str) -> Market: ...


class StateStore(PaperLedger, FeedCursorStore, Protocol):
    """Where everything that matters is committed before it is acted on.

    Synchronous on purpose: each call is one short transaction (a local SQLite file, or one
    round trip to PostgreSQL on a bounded connection), called from the event loop like
    today; see daemon/adapters/postgres_store.py for why that is acceptable and bounded.
    `record_intent`, `record_cancel` and `record_halt` may raise `LeaseLost` (a PostgreSQL
    fleet) when the bot's lease has moved to another node: the order, the cancel or the
    halt (and its flatten) must then not go ahead.
    """

    @property
    def path(self) -> Path | None:
        """The store's file (SQLite), or None for a server database."""
        ...

    @property
    def schema_version(self) -> int: ...
    def close(self) -> None: ...
    def journal(self, kind: str, bot: str | None = None, **data: Any) -> None: ...
    def events(self, bot: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...
    def bot(self, name: str) -> BotRecord | None: ...
    def bots(self) -> list[BotRecord]: ...
    def set_desired_state(
        self,
        name: str,
        state: DesiredState,
        *,
        reason: str | None = None,
        owner_uid: int | None = None,
        cause: str = "operator",
    ) -> None: ...
    def record_halt(self, names: list[str], reason: str, *, for_bot: str) -> None:
        """A runner's halt of `names` (cause `risk`; its loss limit, breached by `for_bot`),
        written at once. In a fleet it is fenced like `for_bot`'s intents (LeaseLost,
        nothing written); an operator's halt goes through `set_desired_state`, unfenced."""
        ...

    def next_order_sequence(self, bot: str) -> int: ...
    def order_sequence(self, bot: str) -> int: ...
    def save_plan(self, bot: str, plan: TradePlan | None) -> None: ...
    def plan(self, bot: str) -> TradePlan | None: ...
    def entry_plan(self, bot: str) -> tuple[Order, TradePlan] | None: ...
    def record_intent(
        self, intent: OrderIntent, plan: TradePlan | None = None, sequence: int | None = None
    ) -> None: ...
    def record_cancel(self, order: Order, bot: str, cause: str = "bot") -> None:
        """The request to cancel `order` of `bot`, committed before it is sent. `cause`:
        `bot` (its runner: only the lease's holder), `reconcile` or `flatten` (a runner's
        halt's flatten; these two refused only while another node holds the bot)."""
        ...

    def update_order(self, order: Order) -> None: ...
    def order(self, client_order_id: str) -> Order | None: ...
    def live_orders(self, bot: str | None = None) -> list[Order]: ...
    def recent_orders(self, bot: str | None = None, limit: int = 50) -> list[Order]: ...
    def record_fill(self, fill: Fill, bot: str | None) -> bool: ...
    def last_fill_time(self, account: str, symbol: str) -> datetime | None: ...
    def fills(self, bot: str) -> list[Fill]: ...
    def record_funding(self, payment: FundingPayment, bot: str | None) -> bool: ...
    def funding(self, bot: str) -> list[FundingPayment]: ...
    def history_cursor(self, account: str, symbol: str, stream: str) -> datetime | None: ...
    def save_history_cursor(
        self, account: str, symbol: str, stream: str, until: datetime
    ) -> None: ...
    def realized_pnl(self, bot: str, since: datetime | None = None) -> Decimal: ...
    def account_realized_pnl(self, account: str, since: datetime | None = None) -> Decimal: ...
    def save_position(self, bot: str, position: Position) -> None: ...
    def position(self, bot: str) -> Position | None: ...
    def notice_other_writers(self) -> None:
        """Forget what is cached when another process has written (a no-op without a cache)."""
        ...

    def duty_last_run(self, name: str) -> datetime | None: ...
    def set_duty_last_run(self, name: str, at: datetime) -> None: ...
    def meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...
