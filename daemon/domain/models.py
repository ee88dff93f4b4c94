"""Domain types: candles, orders, fills, positions, signals.

Money and quantities are Decimal; times are UTC-aware datetimes.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

ZERO = Decimal(0)


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


def closing_side(qty: Decimal) -> Side:
    """The side that reduces a signed position: sell a long, buy back a short."""
    return Side.SELL if qty > 0 else Side.BUY


class Direction(enum.StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def entry_side(self) -> Side:
        return Side.BUY if self is Direction.LONG else Side.SELL


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP_MARKET = "stop_market"  # a market order sent when the price reaches the trigger
    TAKE_PROFIT_MARKET = "take_profit_market"

    @property
    def is_trigger(self) -> bool:
        """Rests on the exchange until its trigger price is reached (not a plain order)."""
        return self in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)


class OrderStatus(enum.StrEnum):
    PENDING_SUBMIT = "pending_submit"  # intent written, request may or may not have left
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


@dataclass(frozen=True, slots=True)
class Candle:
    """A closed candle; `timestamp` is its open time."""

    symbol: str
    timeframe: str
    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class LeverageBracket:
    """One notional tier of a symbol: up to `notional_cap` USDT, at most `max_leverage`."""

    notional_floor: Decimal
    notional_cap: Decimal
    max_leverage: int
    maint_margin_rate: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Market:
    """What an exchange accepts for one symbol.

    `brackets`, when known, are the exchange's leverage tiers (lowest notional first):
    the higher the position's notional, the lower the leverage allowed.
    """

    symbol: str
    amount_step: Decimal
    price_step: Decimal
    min_amount: Decimal
    min_notional: Decimal
    max_leverage: int
    contract_size: Decimal = Decimal(1)
    brackets: tuple[LeverageBracket, ...] = ()

    def bracket_for(self, notional: Decimal) -> LeverageBracket | None:
        """The tier a position of `notional` USDT falls in; None beyond the last tier."""
        for bracket in self.brackets:
            if notional <= bracket.notional_cap:
                return bracket
        return None

    def max_leverage_at(self, notional: Decimal) -> int:
        """The leverage the exchange allows for a position of `notional` USDT (0: none)."""
        if not self.brackets:
            return self.max_leverage
        bracket = self.bracket_for(notional)
        return 0 if bracket is None else bracket.max_leverage

    def round_amount(self, qty: Decimal) -> Decimal:
        """Round a quantity down to the amount step (never up: never more than allowed)."""
        steps = (qty / self.amount_step).to_integral_value(rounding=ROUND_DOWN)
        return (steps * self.amount_step).normalize() if steps else ZERO

    def round_price(self, price: Decimal) -> Decimal:
        steps = (price / self.price_step).to_integral_value()
        return (steps * self.price_step).normalize()


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a bot (or a flatten, for positions no bot owns) wants sent; stored first."""

    bot: str | None
    account: str
    symbol: str
    client_order_id: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    reduce_only: bool
    created_at: datetime
    # entry | reversal | stop | take_profit | flatten ...: why the bot sent it, for the journal
    purpose: str = "entry"
    trigger_price: Decimal | None = None  # stop_market / take_profit_market only


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the exchange (or the store's last knowledge of it) sees it."""

    account: str
    symbol: str
    client_order_id: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    reduce_only: bool
    status: OrderStatus
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal | None = None
    exchange_order_id: str | None = None
    bot: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    reason: str | None = None
    trigger_price: Decimal | None = None  # stop_market / take_profit_market only
    purpose: str | None = None  # as the store recorded it; None when the store never knew it

    @property
    def remaining_qty(self) -> Decimal:
        return self.qty - self.filled_qty

    def with_status(self, status: OrderStatus, **changes: object) -> Order:
        return replace(self, status=status, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution; `fill_id` is unique per account so recording it twice is harmless."""

    account: str
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    timestamp: datetime
    kind: str = "trade"  # trade | liquidation | adl (the exchange closed it, not a bot)


FILL_KINDS = ("trade", "liquidation", "adl")


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One funding settlement on a position: `amount` USDT received (negative: paid)."""

    account: str
    payment_id: str
    symbol: str
    amount: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Position:
    """A net position; `qty` is signed: positive long, negative short."""

    account: str
    symbol: str
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal
    leverage: int
    margin: Decimal = ZERO

    @property
    def side(self) -> str:
        if self.qty > 0:
            return "long"
        if self.qty < 0:
            return "short"
        return "flat"

    @property
    def notional(self) -> Decimal:
        return abs(self.qty) * self.mark_price

    @property
    def unrealized_pnl(self) -> Decimal:
        return (self.mark_price - self.entry_price) * self.qty


@dataclass(frozen=True, slots=True)
class Balance:
    currency: str
    total: Decimal  # wallet balance: deposits plus realised PnL minus fees
    free: Decimal
    unrealized_pnl: Decimal = ZERO

    @property
    def equity(self) -> Decimal:
        return self.total + self.unrealized_pnl


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's wish to be in a trade, with its protective levels."""

    direction: Direction
    entry: Decimal
    stop: Decimal
    take_profit: Decimal
    confidence: float = 1.0
    reason: str = ""

    def __post_init__(self) -> None:
        if self.direction is Direction.LONG and not (self.stop < self.entry < self.take_profit):
            raise ValueError(f"long signal needs stop < entry < take_profit, got {self}")
        if self.direction is Direction.SHORT and not (self.take_profit < self.entry < self.stop):
            raise ValueError(f"short signal needs take_profit < entry < stop, got {self}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError("confidence must be within 0..1")


@dataclass(frozen=True, slots=True)
class TradePlan:
    """The exits a bot watches for its open position."""

    direction: Direction
    stop: Decimal
    take_profit: Decimal
    opened_at: datetime


@dataclass(slots=True)
class ClientOrderIds:
    """Deterministic client order ids: `tc` + a short bot tag + a per-bot sequence.

    Short enough for Binance (36 chars) and Bitget; the prefix lets us recognise our
    own orders on an account; the sequence lives in the store so ids never repeat.
    """

    bot: str
    tag: str = field(init=False)

    def __post_init__(self) -> None:
        self.tag = bot_tag(self.bot)

    def make(self, sequence: int) -> str:
        return f"tc{self.tag}-{sequence:08d}"


CLIENT_ORDER_PREFIX = "tc"


def bot_tag(bot: str) -> str:
    return hashlib.blake2s(bot.encode(), digest_size=4).hexdigest()
