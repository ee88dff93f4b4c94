"""A simulated USDT-margined perpetual futures account (like Binance USDT-M), driven by candles.

Paper trading is an adapter, never a flag: the runtime talks to this class through the
`ExchangeGateway` port exactly as it talks to a real exchange. Prices and time come only
from closed candles (`on_candles`), so the same account behaves identically live, in a
replay and in tests; nothing here reads the wall clock or starts a task.

Model, kept deliberately simple:

* one net position per symbol (signed qty), isolated margin, margin = |qty| * entry / leverage;
* market orders fill fully at the last close moved against the taker by `slippage_bps`;
* a limit order that is marketable on arrival fills at once at the last close (taker fee);
  otherwise it rests and fills at its limit price (maker fee) when a later candle trades
  through it: buy when low <= limit, sell when high >= limit;
* resting non-reduce-only limits reserve margin at their limit price for their whole size
  (more conservative than Binance, which nets orders against an opposite position);
* stop-market and take-profit-market orders (reduce-only) rest until a candle's range reaches
  their trigger, then fill as a taker at the trigger moved by `slippage_bps`, or at the
  candle's open when it gapped past the trigger; a candle that reaches both a stop and a
  take-profit fills the stop only (`paper_model.fired_triggers`). Placing one whose trigger the
  last close has already passed is refused with `WouldTrigger`, as Binance does (-2021);
  candles are the only prices, so mark and last price are the same here;
* no funding, no liquidation, no partial fills: the wallet can go below zero on paper.

The state lives in the `PaperLedger` as JSON and is written after every change that matters.
Only the newest 200 terminal orders and 1000 fills are kept (in memory and in the saved
state) so an account that trades for months does not grow without bound; idempotency by
client order id therefore only reaches back over those 200 orders. The whole state is
rewritten on every change, so it is kept small; the store's own tables keep every fill.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from daemon.domain.errors import ConfigError, NotFound, OrderRejected, TradectlError, WouldTrigger
from daemon.domain.models import (
    ZERO,
    Balance,
    Candle,
    Fill,
    FundingPayment,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from daemon.domain.paper_model import (
    FLAT,
    Holding,
    apply_fill,
    check_fill_margin,
    check_minimums,
    check_step,
    executed_quantity,
    fired_triggers,
    is_marketable,
    isolated_margin,
    limit_triggered,
    require_margin,
    slipped_price,
    triggers_at,
)
from daemon.ports import CandlesClosed, PaperLedger

MAX_TERMINAL_ORDERS = 200
MAX_FILLS = 1000
STATE_VERSION = 1
CURRENCY = "USDT"

T = TypeVar("T")


class PaperStateCorrupt(TradectlError):
    """The saved state of a paper account cannot be read; it is never silently reset."""


@dataclass(frozen=True, slots=True)
class PaperSettings:
    """Money and cost assumptions of one paper account."""

    initial_balance: Decimal
    taker_fee_rate: Decimal
    maker_fee_rate: Decimal
    slippage_bps: Decimal
    default_leverage: int


@dataclass(slots=True)
class _Book:
    """Everything the account remembers; exactly what is saved to the ledger."""

    initial_balance: Decimal
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    fill_seq: int = 0
    order_seq: int = 0
    market_time: datetime | None = None
    last_prices: dict[str, Decimal] = field(default_factory=dict)
    last_candle_at: dict[str, datetime] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    positions: dict[str, Holding] = field(default_factory=dict)
    # Ordered by last change, so trimming drops the orders that went terminal longest ago.
    orders: dict[str, Order] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)

    @property
    def wallet(self) -> Decimal:
        return self.initial_balance + self.realized_pnl - self.fees_paid

    def put_order(self, order: Order) -> None:
        self.orders.pop(order.client_order_id, None)
        self.orders[order.client_order_id] = order

    def trim(self) -> None:
        terminal = [cid for cid, o in self.orders.items() if o.status.is_terminal]
        for cid in terminal[: max(0, len(terminal) - MAX_TERMINAL_ORDERS)]:
            del self.orders[cid]
        if len(self.fills) > MAX_FILLS:
            del self.fills[: len(self.fills) - MAX_FILLS]


# --- the adapter ------------------------------------------------------------------------------


class PaperExchange:
    """One simulated account implementing `ExchangeGateway`; see the module docstring."""

    def __init__(
        self,
        account: str,
        settings: PaperSettings,
        ledger: PaperLedger,
        markets: Mapping[str, Market],
    ) -> None:
        if settings.default_leverage < 1:
            raise ConfigError(f"paper account {account!r}: default_leverage must be >= 1")
        for symbol, market in markets.items():
            # The arithmetic assumes linear contracts quoted in USDT, one unit per contract.
            if market.contract_size != 1:
                raise ConfigError(
                    f"paper account {account!r}: {symbol} has contract_size "
                    f"{market.contract_size}; only linear contracts of size 1 are simulated"
                )
        self.account = account
        self.unknown_outcome_window_s = 0.0  # a paper order is never lost on the way
        self._settings = settings
        self._ledger = ledger
        self._markets = dict(markets)
        self._state: _Book | None = None

    # -- lifecycle --

    async def start(self) -> None:
        """Restore the account from the ledger; a new account starts with `initial_balance`."""
        text = self._ledger.load_paper_account(self.account)
        if text is None:
            self._state = _Book(initial_balance=self._settings.initial_balance)
            self._save()
        else:
            self._state = _load_state(self.account, text)

    async def close(self) -> None:
        if self._state is not None:
            self._save()

    # -- market data --

    async def on_candles(self, event: CandlesClosed) -> None:
        """Take the lowest timeframe candle as the new price and match resting limits."""
        if event.candles and self._on_candle(event.symbol, event.candles[0], event.closed_at):
            self._save()

    # -- the gateway --

    async def market(self, symbol: str) -> Market:
        return self._market(symbol)

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        """Like Binance, refuse a leverage change while a position is open (unless unchanged)."""
        if self._set_leverage(symbol, leverage):
            self._save()

    async def submit_order(self, intent: OrderIntent) -> Order:
        """Execute or rest an order; idempotent by client order id.

        A known client order id returns the stored order unchanged, with no second
        execution; this holds for rejected orders too: the first send raises
        `OrderRejected`, a resend returns the stored REJECTED order without raising.
        """
        return self._submit(intent)

    async def cancel_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        """Cancel an open order; a terminal one comes back unchanged, an unknown one as None."""
        order = self._find(symbol, client_order_id)
        if order is None or not order.status.is_open:
            return order
        canceled = order.with_status(
            OrderStatus.CANCELED, updated_at=self._book.market_time or order.updated_at
        )
        self._book.put_order(canceled)
        self._save()
        return canceled

    async def fetch_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        return self._find(symbol, client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            o
            for o in self._book.orders.values()
            if o.status.is_open and (symbol is None or o.symbol == symbol)
        ]

    async def fetch_positions(self, symbol: str | None = None) -> list[Position]:
        return [
            self._position(s, h)
            for s, h in sorted(self._book.positions.items())
            if h.qty != 0 and (symbol is None or s == symbol)
        ]

    async def fetch_balance(self) -> Balance:
        return self._balance()

    async def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[Fill]:
        return [
            f
            for f in self._book.fills
            if f.symbol == symbol and (since is None or f.timestamp > since)
        ]

    def exchange_time_ms(self) -> int:
        """The paper market's clock: the close of the last candle it saw (fills carry it)."""
        market_time = self._state.market_time if self._state is not None else None
        return int((market_time or datetime.now(UTC)).timestamp() * 1000)

    async def fetch_funding(
        self, symbol: str, since: datetime | None = None
    ) -> list[FundingPayment]:
        """A paper account pays and receives no funding."""
        return []

    # -- synchronous core --

    @property
    def _book(self) -> _Book:
        if self._state is None:
            # Acting before start() would overwrite the saved account with a fresh one.
            raise RuntimeError(f"paper account {self.account!r} used before start()")
        return self._state

    def _market(self, symbol: str) -> Market:
        try:
            return self._markets[symbol]
        except KeyError:
            raise NotFound(
                f"paper account {self.account!r} has no market {symbol!r}; "
                f"known: {', '.join(sorted(self._markets)) or 'none'}"
            ) from None

    def _find(self, symbol: str, client_order_id: str) -> Order | None:
        order = self._book.orders.get(client_order_id)
        return order if order is not None and order.symbol == symbol else None

    def _leverage_of(self, symbol: str) -> int:
        pinned = self._book.leverage.get(symbol)
        if pinned is not None:
            return pinned
        return min(self._settings.default_leverage, self._market(symbol).max_leverage)

    def _holding(self, symbol: str) -> Holding:
        return self._book.positions.get(symbol, FLAT)

    def _position(self, symbol: str, holding: Holding) -> Position:
        leverage = self._leverage_of(symbol)
        return Position(
            account=self.account,
            symbol=symbol,
            qty=holding.qty,
            entry_price=holding.entry_price,
            mark_price=self._book.last_prices.get(symbol, holding.entry_price),
            leverage=leverage,
            margin=isolated_margin(holding, leverage),
        )

    def _reserved_margin(self, symbol: str, leverage: int) -> Decimal:
        return sum(
            (
                o.remaining_qty * (o.price or ZERO) / leverage
                for o in self._book.orders.values()
                if o.symbol == symbol and o.status.is_open and not o.reduce_only
            ),
            ZERO,
        )

    def _free(self) -> Decimal:
        book = self._book
        symbols = set(book.positions) | {o.symbol for o in book.orders.values() if o.status.is_open}
        used = ZERO
        for symbol in symbols:
            leverage = self._leverage_of(symbol)
            used += isolated_margin(self._holding(symbol), leverage)
            used += self._reserved_margin(symbol, leverage)
        return book.wallet - used

    def _balance(self) -> Balance:
        book = self._book
        unrealized = sum(
            (
                (book.last_prices.get(s, h.entry_price) - h.entry_price) * h.qty
                for s, h in book.positions.items()
            ),
            ZERO,
        )
        return Balance(CURRENCY, total=book.wallet, free=self._free(), unrealized_pnl=unrealized)

    def _set_leverage(self, symbol: str, leverage: int) -> bool:
        """Apply a leverage change; returns whether anything changed."""
        market = self._market(symbol)
        if not 1 <= leverage <= market.max_leverage:
            raise OrderRejected(
                f"leverage {leverage} for {symbol} is outside 1..{market.max_leverage}"
            )
        current = self._leverage_of(symbol)
        if leverage == current:
            return False
        if self._holding(symbol).qty != 0:
            raise OrderRejected(
                f"cannot change leverage of {symbol} from {current} to {leverage} "
                "while a position is open"
            )
        extra = self._reserved_margin(symbol, leverage) - self._reserved_margin(symbol, current)
        if extra > self._free():
            raise OrderRejected(
                f"leverage {leverage} for {symbol}: open orders would need {extra} USDT "
                f"more margin than is free"
            )
        self._book.leverage[symbol] = leverage
        return True

    def _submit(self, intent: OrderIntent) -> Order:
        book = self._book
        known = book.orders.get(intent.client_order_id)
        if known is not None:
            return known
        now = book.market_time or intent.created_at
        order = Order(
            account=self.account,
            symbol=intent.symbol,
            client_order_id=intent.client_order_id,
            side=intent.side,
            type=intent.type,
            qty=intent.qty,
            price=intent.price if intent.type is OrderType.LIMIT else None,
            reduce_only=intent.reduce_only,
            status=OrderStatus.OPEN,
            bot=intent.bot,
            created_at=now,
            updated_at=now,
            trigger_price=intent.trigger_price if intent.type.is_trigger else None,
        )
        try:
            accepted = self._accept(intent, order, now)
        except OrderRejected as e:
            book.put_order(order.with_status(OrderStatus.REJECTED, reason=str(e)))
            self._save()
            raise type(e)(rejection(self.account, intent.client_order_id, e)) from None
        self._save()
        return accepted

    def _accept(self, intent: OrderIntent, order: Order, now: datetime) -> Order:
        """Validate, then fill or rest the order; raises OrderRejected before changing anything."""
        book = self._book
        if intent.account != self.account:
            raise OrderRejected(f"order is for account {intent.account!r}, not this one")
        market = self._markets.get(intent.symbol)
        if market is None:
            raise OrderRejected(f"unknown symbol {intent.symbol!r}")
        qty = intent.qty
        if not qty.is_finite() or qty <= 0:
            raise OrderRejected(f"quantity must be positive, got {qty}")
        check_step(qty, market)
        limit = intent.price
        if intent.type is OrderType.LIMIT:
            if limit is None or not limit.is_finite() or limit <= 0:
                raise OrderRejected(f"a limit order needs a positive price, got {limit}")
            if limit % market.price_step != 0:
                raise OrderRejected(
                    f"price {limit} is not a multiple of the tick {market.price_step}"
                )
        last = book.last_prices.get(intent.symbol)
        if last is None:
            raise OrderRejected(f"no price for {intent.symbol} yet: no candle has closed")
        exec_qty = executed_quantity(
            self._holding(intent.symbol), intent.side, qty, intent.reduce_only
        )
        if intent.type.is_trigger:
            return self._rest_trigger(intent, order, market, last)

        settings = self._settings
        if intent.type is OrderType.MARKET:
            price, fee_rate, immediate = (
                slipped_price(intent.side, last, settings.slippage_bps, market),
                settings.taker_fee_rate,
                True,
            )
        else:
            assert limit is not None
            if is_marketable(intent.side, limit, last):
                price, fee_rate, immediate = last, settings.taker_fee_rate, True
            else:
                price, fee_rate, immediate = limit, settings.maker_fee_rate, False

        if not intent.reduce_only:
            check_minimums(qty, price, market)
            self._check_margin(intent.symbol, intent.side, qty, price, fee_rate, immediate)

        book.leverage.setdefault(intent.symbol, self._leverage_of(intent.symbol))
        book.order_seq += 1
        order = order.with_status(OrderStatus.OPEN, exchange_order_id=f"paper-{book.order_seq}")
        if not immediate:
            book.put_order(order)
            return order
        return self._execute(order, exec_qty, price, fee_rate, now)

    def _rest_trigger(
        self, intent: OrderIntent, order: Order, market: Market, last: Decimal
    ) -> Order:
        """Accept a stop-market or take-profit-market order to rest until its trigger."""
        trigger = intent.trigger_price
        if trigger is None or not trigger.is_finite() or trigger <= 0:
            raise OrderRejected(f"a {intent.type.value} order needs a positive trigger price")
        if trigger % market.price_step != 0:
            raise OrderRejected(
                f"trigger price {trigger} is not a multiple of the tick {market.price_step}"
            )
        if not intent.reduce_only:
            raise OrderRejected(f"a {intent.type.value} order must be reduce-only here")
        if triggers_at(intent.type, intent.side, trigger, last):
            raise WouldTrigger(
                f"order would immediately trigger: {intent.type.value} {intent.side.value} "
                f"at {trigger}, last price {last}"
            )
        book = self._book
        book.leverage.setdefault(intent.symbol, self._leverage_of(intent.symbol))
        book.order_seq += 1
        rested = order.with_status(OrderStatus.OPEN, exchange_order_id=f"paper-{book.order_seq}")
        book.put_order(rested)
        return rested

    def _check_margin(
        self,
        symbol: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        fee_rate: Decimal,
        immediate: bool,
    ) -> None:
        """Opening or increasing needs margin plus fee out of the free balance; a resting
        order reserves margin for its whole size at its limit price."""
        leverage = self._leverage_of(symbol)
        fee = qty * price * fee_rate
        free = self._free()
        if immediate:
            check_fill_margin(self._holding(symbol), side, qty, price, fee, free, leverage)
        else:
            require_margin(qty * price / leverage, fee, free, leverage)

    def _execute(
        self, order: Order, qty: Decimal, price: Decimal, fee_rate: Decimal, now: datetime
    ) -> Order:
        """Book one fill: position, wallet, fill record, order status."""
        book = self._book
        change = apply_fill(self._holding(order.symbol), order.side, qty, price)
        fee = qty * price * fee_rate
        book.realized_pnl += change.realized_pnl
        book.fees_paid += fee
        if change.holding.qty == 0:
            book.positions.pop(order.symbol, None)
        else:
            book.positions[order.symbol] = change.holding
        book.fill_seq += 1
        book.fills.append(
            Fill(
                account=self.account,
                fill_id=f"{self.account}-{book.fill_seq}",
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                qty=qty,
                price=price,
                fee=fee,
                realized_pnl=change.realized_pnl,
                timestamp=now,
            )
        )
        reason = order.reason
        if qty < order.remaining_qty:
            reason = f"reduce-only: clipped from {order.remaining_qty} to the position size {qty}"
        filled = order.with_status(
            OrderStatus.FILLED,
            filled_qty=order.filled_qty + qty,
            avg_fill_price=price,
            updated_at=now,
            reason=reason,
        )
        book.put_order(filled)
        return filled

    def _on_candle(self, symbol: str, candle: Candle, closed_at: datetime) -> bool:
        """Move price and time forward and fill what the candle traded through.

        Returns whether an order changed, i.e. whether the state must be saved. A candle no
        newer than the last one seen for the symbol (a re-delivery after a restart) is
        ignored, so orders placed after it can never fill on it.
        """
        book = self._book
        seen = book.last_candle_at.get(symbol)
        if seen is not None and closed_at <= seen:
            return False
        book.last_candle_at[symbol] = closed_at
        book.last_prices[symbol] = candle.close
        if book.market_time is None or closed_at > book.market_time:
            book.market_time = closed_at
        now = book.market_time
        resting = [o for o in book.orders.values() if o.symbol == symbol and o.status.is_open]
        changed = False
        settings = self._settings
        for order, hit in fired_triggers(resting, candle.open, candle.high, candle.low):
            price = slipped_price(order.side, hit, settings.slippage_bps, self._market(symbol))
            changed |= self._execute_resting(order, price, settings.taker_fee_rate, now)
        for order in resting:
            if order.price is None or not limit_triggered(order.side, order.price, candle):
                continue
            changed |= self._execute_resting(order, order.price, settings.maker_fee_rate, now)
        return changed

    def _execute_resting(
        self, order: Order, price: Decimal, fee_rate: Decimal, now: datetime
    ) -> bool:
        """Fill a resting order the candle reached; a reduce-only one with nothing left to
        reduce is cancelled instead. Returns True: the book changed either way."""
        book = self._book
        qty = order.remaining_qty
        if order.reduce_only:
            holding = self._holding(order.symbol)
            if holding.qty * order.side.sign >= 0:
                book.put_order(
                    order.with_status(
                        OrderStatus.CANCELED,
                        updated_at=now,
                        reason="reduce-only: no position left to reduce",
                    )
                )
                return True
            qty = min(qty, abs(holding.qty))
        self._execute(order, qty, price, fee_rate, now)
        return True

    def _save(self) -> None:
        book = self._book
        book.trim()
        self._ledger.save_paper_account(self.account, _dump_state(self.account, book))


# --- persistence ------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _opt_iso(value: datetime | None) -> str | None:
    return None if value is None else _iso(value)


def _opt_str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _order_json(o: Order) -> dict[str, Any]:
    return {
        "account": o.account,
        "symbol": o.symbol,
        "client_order_id": o.client_order_id,
        "side": o.side.value,
        "type": o.type.value,
        "qty": str(o.qty),
        "price": _opt_str(o.price),
        "reduce_only": o.reduce_only,
        "status": o.status.value,
        "filled_qty": str(o.filled_qty),
        "avg_fill_price": _opt_str(o.avg_fill_price),
        "exchange_order_id": o.exchange_order_id,
        "bot": o.bot,
        "created_at": _opt_iso(o.created_at),
        "updated_at": _opt_iso(o.updated_at),
        "reason": o.reason,
        "trigger_price": _opt_str(o.trigger_price),
    }


def _fill_json(f: Fill) -> dict[str, Any]:
    return {
        "account": f.account,
        "fill_id": f.fill_id,
        "client_order_id": f.client_order_id,
        "symbol": f.symbol,
        "side": f.side.value,
        "qty": str(f.qty),
        "price": str(f.price),
        "fee": str(f.fee),
        "realized_pnl": str(f.realized_pnl),
        "timestamp": _iso(f.timestamp),
    }


def _dump_state(account: str, book: _Book) -> str:
    state = {
        "version": STATE_VERSION,
        "account": account,
        "initial_balance": str(book.initial_balance),
        "realized_pnl": str(book.realized_pnl),
        "fees_paid": str(book.fees_paid),
        "fill_seq": book.fill_seq,
        "order_seq": book.order_seq,
        "market_time": _opt_iso(book.market_time),
        "last_prices": {s: str(p) for s, p in book.last_prices.items()},
        "last_candle_at": {s: _iso(t) for s, t in book.last_candle_at.items()},
        "leverage": dict(book.leverage),
        "positions": {
            s: {"qty": str(h.qty), "entry_price": str(h.entry_price)}
            for s, h in book.positions.items()
        },
        "orders": [_order_json(o) for o in book.orders.values()],
        "fills": [_fill_json(f) for f in book.fills],
    }
    return json.dumps(state, separators=(",", ":"))


def _dec(value: Any) -> Decimal:
    # Strings only: a float in the saved state means someone wrote it by other means.
    if not isinstance(value, str):
        raise ValueError(f"expected a decimal string, got {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 time, got {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time without a timezone: {value!r}")
    return parsed.astimezone(UTC)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _opt(value: Any, parse: Callable[[Any], T]) -> T | None:
    return None if value is None else parse(value)


def _order_from(d: Any) -> Order:
    reduce_only = d["reduce_only"]
    if not isinstance(reduce_only, bool):
        raise ValueError(f"reduce_only must be true or false, got {reduce_only!r}")
    return Order(
        account=_text(d["account"]),
        symbol=_text(d["symbol"]),
        client_order_id=_text(d["client_order_id"]),
        side=Side(d["side"]),
        type=OrderType(d["type"]),
        qty=_dec(d["qty"]),
        price=_opt(d["price"], _dec),
        reduce_only=reduce_only,
        status=OrderStatus(d["status"]),
        filled_qty=_dec(d["filled_qty"]),
        avg_fill_price=_opt(d["avg_fill_price"], _dec),
        exchange_order_id=_opt(d["exchange_order_id"], _text),
        bot=_opt(d["bot"], _text),
        created_at=_opt(d["created_at"], _time),
        updated_at=_opt(d["updated_at"], _time),
        reason=_opt(d["reason"], _text),
        trigger_price=_opt(d.get("trigger_price"), _dec),  # absent in states saved before
    )


def _fill_from(d: Any) -> Fill:
    return Fill(
        account=_text(d["account"]),
        fill_id=_text(d["fill_id"]),
        client_order_id=_text(d["client_order_id"]),
        symbol=_text(d["symbol"]),
        side=Side(d["side"]),
        qty=_dec(d["qty"]),
        price=_dec(d["price"]),
        fee=_dec(d["fee"]),
        realized_pnl=_dec(d["realized_pnl"]),
        timestamp=_time(d["timestamp"]),
    )


def _leverage(value: Any) -> int:
    leverage = _int(value)
    if leverage < 1:
        raise ValueError(f"leverage must be >= 1, got {leverage}")
    return leverage


def _load_state(account: str, text: str) -> _Book:
    """Parse the saved state; anything unexpected is PaperStateCorrupt naming the account."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("the saved state is not a JSON object")
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {raw.get('version')!r}")
        if raw.get("account") != account:
            raise ValueError(f"the saved state belongs to account {raw.get('account')!r}")
        book = _Book(
            initial_balance=_dec(raw["initial_balance"]),
            realized_pnl=_dec(raw["realized_pnl"]),
            fees_paid=_dec(raw["fees_paid"]),
            fill_seq=_int(raw["fill_seq"]),
            order_seq=_int(raw["order_seq"]),
            market_time=_opt(raw["market_time"], _time),
            last_prices={_text(s): _dec(p) for s, p in raw["last_prices"].items()},
            last_candle_at={_text(s): _time(t) for s, t in raw["last_candle_at"].items()},
            leverage={_text(s): _leverage(v) for s, v in raw["leverage"].items()},
            positions={
                _text(s): Holding(_dec(h["qty"]), _dec(h["entry_price"]))
                for s, h in raw["positions"].items()
            },
        )
        for item in raw["orders"]:
            order = _order_from(item)
            book.orders[order.client_order_id] = order
        book.fills = [_fill_from(item) for item in raw["fills"]]
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as e:
        detail = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise PaperStateCorrupt(
            f"paper account {account!r}: the saved state in the ledger cannot be read "
            f"({type(e).__name__}: {detail}); refusing to start rather than reset its money"
        ) from e
    return book


def rejection(account: str, client_order_id: str, reason: object) -> str:
    """How a paper account words a refused order, in the daemon and in a backtest alike."""
    return f"paper account {account!r} rejected {client_order_id}: {reason}"
