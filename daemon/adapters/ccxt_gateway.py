"""The exchange port over ccxt (async) for Binance USDT-M and Bitget USDT perpetuals.

The only module that imports ccxt. ccxt's errors are translated here, once, into the
domain's: transient ones are retried with backoff and jitter (idempotent calls) or
resolved by client order id (order submission); rejections and authentication
failures are not retried. One instance per account: every bot on that account
shares its rate-limit budget, and a 429/418 pauses the whole account until the
exchange's Retry-After has passed, so twenty bots cannot get the IP banned.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
import structlog
from ccxt.base import errors as ccxt_errors
from ccxt.base.decimal_to_precision import TICK_SIZE

from daemon.credentials import ApiCredentials
from daemon.domain.errors import (
    ExchangeError,
    NotFound,
    OrderRejected,
    RetryableExchangeError,
    WouldTrigger,
)
from daemon.domain.models import (
    ZERO,
    Balance,
    Fill,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from daemon.redaction import scrub

T = TypeVar("T")
KINDS = ("binanceusdm", "bitget")
# Binance answers a reused id so (-20132: a reused clientAlgoId of a conditional order)
DUPLICATE_CLIENT_ID = ("-4116", "-20132", "duplicate", "duplicated")
# Bitget keeps position stop-loss / take-profit orders ("tpsl") apart from plain plan orders;
# loss_plan / profit_plan carry a size (ccxt's default pos_loss / pos_profit close it all).
BITGET_PLAN_TYPES = {
    OrderType.STOP_MARKET: "loss_plan",
    OrderType.TAKE_PROFIT_MARKET: "profit_plan",
}
BITGET_TPSL = "profit_loss"  # the planType that lists and cancels them
MAX_ATTEMPTS = 5
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 20.0
DEFAULT_BAN_S = 60.0


class AuthenticationFailed(ExchangeError):
    """The exchange refused our keys: not retried; the bot shows it and stops."""


def _dec(value: Any, default: Decimal = ZERO) -> Decimal:
    return default if value is None else Decimal(str(value))


def _time(ms: Any) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, UTC)


def point_at_base_url(exchange: Any, base_url: str) -> None:
    """Send every request to `base_url` (a proxy, or a test exchange), keeping each path.

    A ccxt.pro instance's websocket URLs (``urls['api']['ws']``) are re-rooted the same way,
    with http(s) turned into ws(s). ccxt picks Binance's USDT-M error table by the request
    host; for another host the USDT-M table is merged over the generic one so errors map as
    they would for fapi.binance.com.
    """
    base = base_url.rstrip("/")
    _reroot(exchange.urls["api"], base, skip="ws")
    ws_urls = exchange.urls["api"].get("ws")
    if isinstance(ws_urls, dict):
        _reroot(ws_urls, "ws" + base.removeprefix("http"))
    linear = exchange.exceptions.get("linear", {})
    for table in ("exact", "broad"):
        merged = dict(exchange.exceptions.get(table, {}))
        merged.update(linear.get(table, {}))
        exchange.exceptions[table] = merged


def _reroot(urls: dict[str, Any], base: str, skip: str | None = None) -> None:
    """In place, nested tables too (ccxt.pro keeps e.g. ``ws-api`` URLs one level down)."""
    for key, url in list(urls.items()):
        if key == skip:
            continue
        if isinstance(url, str):
            urls[key] = base + urlsplit(url).path
        elif isinstance(url, dict):
            _reroot(url, base)


def market_from_ccxt(raw: dict[str, Any], precision_mode: int) -> Market:
    """A ccxt market structure as our Market; `precision_mode` is the exchange's precisionMode."""
    precision, limits = raw.get("precision", {}), raw.get("limits", {})
    if precision_mode == TICK_SIZE:
        amount_step, price_step = _dec(precision.get("amount")), _dec(precision.get("price"))
    else:
        amount_step = Decimal(1).scaleb(-int(precision.get("amount") or 0))
        price_step = Decimal(1).scaleb(-int(precision.get("price") or 0))
    return Market(
        symbol=raw["symbol"],
        amount_step=amount_step,
        price_step=price_step,
        min_amount=_dec(limits.get("amount", {}).get("min"), amount_step),
        min_notional=_dec(limits.get("cost", {}).get("min")),
        max_leverage=int(limits.get("leverage", {}).get("max") or 125),
        contract_size=_dec(raw.get("contractSize"), Decimal(1)),
    )


def position_from_ccxt(raw: dict[str, Any], account: str) -> Position | None:
    """A ccxt position structure as our signed Position; None for an empty (flat) one."""
    contracts = _dec(raw.get("contracts"))
    if contracts == 0:
        return None
    size = contracts * _dec(raw.get("contractSize"), Decimal(1))
    return Position(
        account=account,
        symbol=raw["symbol"],
        qty=size if raw.get("side") == "long" else -size,
        entry_price=_dec(raw.get("entryPrice")),
        mark_price=_dec(raw.get("markPrice"), _dec(raw.get("entryPrice"))),
        leverage=int(raw.get("leverage") or 0),
        margin=_dec(raw.get("initialMargin") or raw.get("collateral")),
    )


class CcxtGateway:
    def __init__(
        self,
        account: str,
        kind: str,
        credentials: ApiCredentials | None,
        *,
        testnet: bool = False,
        api_base_url: str | None = None,
        requests_per_s: float | None = None,
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        trigger_price_type: str = "mark",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unsupported exchange kind {kind!r}; supported: {', '.join(KINDS)}")
        self.account = account
        self.kind = kind
        self._credentials = credentials
        self._testnet = testnet
        self._api_base_url = api_base_url
        self._requests_per_s = requests_per_s
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        if trigger_price_type not in ("mark", "last"):
            raise ValueError(f"trigger_price_type must be mark or last, got {trigger_price_type!r}")
        self._trigger_price_type = trigger_price_type
        self._not_before = 0.0  # monotonic time before which the account must not call
        self._cid_by_order_id: dict[str, str] = {}
        self._ex: Any = None
        self._ws: Any = None  # the ccxt.pro instance, made on the first watch
        self._can_watch: bool | None = None
        self.log = structlog.get_logger().bind(account=account, exchange=kind)

    # -- lifecycle -------------------------------------------------------------------

    def _make_exchange(self, websocket: bool = False) -> Any:
        """The ccxt instance for this account, configured but not yet connected (no network).

        `websocket`: a ccxt.pro instance (same options, sandbox and base URL) for streams.
        """
        options: dict[str, Any] = {
            "defaultType": "swap",
            "defaultSubType": "linear",
            "fetchMarkets": {"types": ["linear"]} if self.kind == "binanceusdm" else ["swap"],
            "fetchCurrencies": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        }
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": int(self._timeout_s * 1000),
            "options": options,
        }
        if self._requests_per_s is not None:
            config["rateLimit"] = 1000.0 / self._requests_per_s  # ms between request units
        if self._credentials is not None:  # None: public market data only
            config.update(apiKey=self._credentials.api_key, secret=self._credentials.secret)
            if self._credentials.password:
                config["password"] = self._credentials.password
        module = importlib.import_module("ccxt.pro") if websocket else ccxt_async
        ex = getattr(module, self.kind)(config)
        if self._testnet:
            ex.set_sandbox_mode(True)
        if self._api_base_url:
            point_at_base_url(ex, self._api_base_url)
        return ex

    async def start(self) -> None:
        self._ex = self._make_exchange()
        await self._call("load markets", self._ex.load_markets)
        self.log.info("exchange_connected", markets=len(self._ex.markets), testnet=self._testnet)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._ex is not None:
            await self._ex.close()

    # -- the one place ccxt errors become ours ------------------------------------------

    async def _call(
        self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, retry: bool = True, **kw: Any
    ) -> T:
        attempt = 0
        while True:
            wait = self._not_before - time.monotonic()
            if wait > 0:
                await self._sleep(wait)
            try:
                return await fn(*args, **kw)
            except ccxt_errors.DDoSProtection as e:  # 429 and 418 from Binance
                self._pause(e, what)
                error: Exception = e
            except ccxt_errors.RateLimitExceeded as e:
                self._pause(e, what)
                error = e
            except ccxt_errors.NetworkError as e:  # timeouts, 5xx, dropped connections
                error = e
            except ccxt_errors.AuthenticationError as e:
                raise AuthenticationFailed(f"{what}: {scrub(str(e))}") from e
            except ccxt_errors.OrderNotFound as e:
                raise NotFound(f"{what}: {scrub(str(e))}") from e
            except ccxt_errors.OrderImmediatelyFillable as e:  # Binance -2021
                raise WouldTrigger(f"{what}: {scrub(str(e))}") from e
            except (ccxt_errors.InsufficientFunds, ccxt_errors.InvalidOrder) as e:
                raise OrderRejected(f"{what}: {scrub(str(e))}") from e
            except ccxt_errors.BaseError as e:
                raise ExchangeError(f"{what}: {type(e).__name__}: {scrub(str(e))}") from e
            attempt += 1
            if not retry or attempt >= MAX_ATTEMPTS:
                raise RetryableExchangeError(
                    f"{what}: {type(error).__name__}: {scrub(str(error))}"
                ) from error
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (attempt - 1))
            delay *= 0.5 + self._rng.random()  # jitter: bots on one account spread out
            self.log.warning(
                "exchange_retry",
                what=what,
                attempt=attempt,
                delay_s=round(delay, 2),
                error=type(error).__name__,
            )
            await self._sleep(delay)

    def _pause(self, error: Exception, what: str) -> None:
        """Honour Retry-After for the whole account: every bot waits, nobody hammers."""
        headers = getattr(self._ex, "last_response_headers", None) or {}
        raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        try:
            seconds = float(raw) if raw is not None else DEFAULT_BAN_S
        except ValueError:
            seconds = DEFAULT_BAN_S
        self._not_before = max(self._not_before, time.monotonic() + seconds)
        self.log.warning(
            "exchange_rate_limited", what=what, pause_s=seconds, error=scrub(str(error))[:200]
        )

    # -- markets and account -------------------------------------------------------------

    async def market(self, symbol: str) -> Market:
        raw = self._ex.markets.get(symbol)
        if raw is None:
            raise NotFound(f"{self.kind} has no market {symbol}")
        return market_from_ccxt({**raw, "symbol": symbol}, self._ex.precisionMode)

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        try:
            await self._call("set margin mode", self._ex.set_margin_mode, "isolated", symbol)
        except ExchangeError as e:
            if "MarginModeAlreadySet" not in str(e) and "No need to change" not in str(e):
                raise
        await self._call("set leverage", self._ex.set_leverage, leverage, symbol)

    async def fetch_balance(self) -> Balance:
        raw = await self._call("fetch balance", self._ex.fetch_balance)
        usdt = raw.get("USDT", {})
        return Balance("USDT", total=_dec(usdt.get("total")), free=_dec(usdt.get("free")))

    async def fetch_positions(self, symbol: str | None = None) -> list[Position]:
        raw = await self._call(
            "fetch positions", self._ex.fetch_positions, [symbol] if symbol else None
        )
        positions = []
        for p in raw:
            if symbol is not None and p.get("symbol") != symbol:
                continue
            position = position_from_ccxt(p, self.account)
            if position is not None:
                positions.append(position)
        return positions

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int
    ) -> list[list[float]]:
        """Raw candles for the exchange feed (the newest one may still be forming)."""
        rows: list[list[float]] = await self._call(
            "fetch ohlcv", self._ex.fetch_ohlcv, symbol, timeframe, since_ms, limit
        )
        return rows

    # -- streams ------------------------------------------------------------------------

    @property
    def can_watch_ohlcv(self) -> bool:
        """Whether ccxt.pro streams candles for this exchange (decided offline)."""
        if self._can_watch is None:
            try:
                has = self._make_exchange(websocket=True).has
            except (ImportError, AttributeError):
                has = {}
            self._can_watch = bool(has.get("watchOHLCV"))
        return self._can_watch

    async def watch_ohlcv(self, symbol: str, timeframe: str) -> list[list[float]]:
        """The candles the websocket updated since the previous call (the newest is forming).

        The first call connects and subscribes; a call after a failure reconnects. Errors
        become ours: RetryableExchangeError for a dropped or refused connection.
        """
        if self._ws is None:
            self._ws = self._make_exchange(websocket=True)
            if self._ex is not None and self._ex.markets:
                self._ws.set_markets_from_exchange(self._ex)  # no second load_markets
        try:
            rows = await self._ws.watch_ohlcv(symbol, timeframe)
        except ccxt_errors.BaseError as e:
            # ccxt keeps its candle cache across reconnects; rows from before the drop
            # must not come back as fresh updates of the next connection.
            self._ws.ohlcvs.get(symbol, {}).pop(timeframe, None)
            message = f"watch ohlcv: {type(e).__name__}: {scrub(str(e))}"
            if isinstance(e, ccxt_errors.NetworkError):
                raise RetryableExchangeError(message) from e
            raise ExchangeError(message) from e
        return [list(row) for row in rows]  # ccxt updates its rows in place: copy

    def exchange_time_ms(self) -> int:
        """The exchange's clock as ccxt knows it: ours, corrected by any measured difference."""
        if self._ex is None:
            return int(time.time() * 1000)
        difference = self._ex.options.get("timeDifference") or 0
        return int(self._ex.milliseconds() - difference)

    # -- orders -----------------------------------------------------------------------------

    def _order(self, raw: dict[str, Any], bot: str | None = None) -> Order:
        status = raw.get("status")
        filled = _dec(raw.get("filled"))
        if status == "closed":
            state = OrderStatus.FILLED
        elif status in ("canceled", "cancelled", "expired"):
            state = OrderStatus.CANCELED
        elif status == "rejected":
            state = OrderStatus.REJECTED
        else:
            state = OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN
        cid = raw.get("clientOrderId") or f"exchange-{raw.get('id')}"
        if raw.get("id") is not None:
            self._cid_by_order_id[str(raw["id"])] = cid
        info = raw.get("info") or {}
        if info.get("actualOrderId"):  # a triggered conditional order's market order
            self._cid_by_order_id[str(info["actualOrderId"])] = cid
        order_type = _order_type(raw)
        trigger = raw.get("triggerPrice") or raw.get("stopLossPrice") or raw.get("takeProfitPrice")
        return Order(
            account=self.account,
            symbol=raw["symbol"],
            client_order_id=cid,
            side=Side(raw["side"]),
            type=order_type,
            qty=_dec(raw.get("amount")),
            price=_dec(raw["price"])
            if order_type is OrderType.LIMIT and raw.get("price")
            else None,
            reduce_only=bool(raw.get("reduceOnly")),
            status=state,
            filled_qty=filled,
            avg_fill_price=_dec(raw["average"]) if raw.get("average") else None,
            exchange_order_id=None if raw.get("id") is None else str(raw["id"]),
            bot=bot,
            created_at=_time(raw.get("timestamp")),
            updated_at=_time(raw.get("lastUpdateTimestamp") or raw.get("timestamp")),
            trigger_price=_dec(trigger) if order_type.is_trigger and trigger else None,
        )

    def _trigger_params(self, intent: OrderIntent) -> dict[str, Any]:
        """ccxt's unified trigger fields: Binance routes them to its algo-order endpoint as
        STOP_MARKET / TAKE_PROFIT_MARKET; Bitget to its tpsl (plan) endpoint."""
        assert intent.trigger_price is not None, "a trigger order needs its trigger price"
        key = "stopLossPrice" if intent.type is OrderType.STOP_MARKET else "takeProfitPrice"
        params: dict[str, Any] = {key: float(intent.trigger_price)}
        mark = self._trigger_price_type == "mark"
        if self.kind == "binanceusdm":
            params["workingType"] = "MARK_PRICE" if mark else "CONTRACT_PRICE"
        else:
            params["planType"] = BITGET_PLAN_TYPES[intent.type]
            params["triggerType"] = "mark_price" if mark else "fill_price"
        return params

    def _trigger_query(self) -> dict[str, Any]:
        """The params that make ccxt look at trigger orders instead of plain ones."""
        if self.kind == "bitget":
            return {"trigger": True, "planType": BITGET_TPSL}
        return {"trigger": True}

    async def submit_order(self, intent: OrderIntent) -> Order:
        """Send once; on an unknown outcome ask for the client id before sending again.

        A resend carries the same client order id, so the exchange refuses a second
        copy (Binance -4116) and we fetch the first instead: never two orders.
        """
        params: dict[str, Any] = {"clientOrderId": intent.client_order_id}
        if intent.reduce_only:
            params["reduceOnly"] = True
        order_type = intent.type.value
        trigger = intent.type.is_trigger
        if trigger:
            params.update(self._trigger_params(intent))
            order_type = "market"
        last: Exception | None = None
        for _ in range(MAX_ATTEMPTS):
            try:
                raw = await self._call(
                    "create order",
                    self._ex.create_order,
                    intent.symbol,
                    order_type,
                    intent.side.value,
                    float(intent.qty),
                    None if intent.price is None else float(intent.price),
                    params,
                    retry=False,
                )
                return _with_intent(self._order(_acknowledged(raw, intent), intent.bot), intent)
            except RetryableExchangeError as e:
                last = e  # unknown outcome: the order may exist
            except ExchangeError as e:
                duplicate = any(mark in str(e).lower() for mark in DUPLICATE_CLIENT_ID)
                if isinstance(e, WouldTrigger) or not duplicate:
                    raise
                last = e  # already accepted earlier: good news, fetch it below
            known = await self.fetch_order(intent.symbol, intent.client_order_id, trigger=trigger)
            if known is not None:
                self.log.info("order_found_after_unknown_outcome", cid=intent.client_order_id)
                return known if known.bot else _with_bot(known, intent.bot)
        raise RetryableExchangeError(
            f"order {intent.client_order_id}: outcome unknown after {MAX_ATTEMPTS} tries: {last}"
        )

    async def fetch_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        if trigger:
            return await self._fetch_trigger_order(symbol, client_order_id)
        try:
            raw = await self._call(
                "fetch order",
                self._ex.fetch_order,
                None,
                symbol,
                {"clientOrderId": client_order_id},
            )
        except NotFound:
            return None
        return self._order(raw)

    async def _fetch_trigger_order(self, symbol: str, client_order_id: str) -> Order | None:
        """A stop or take-profit by client id, with what its triggered market order did."""
        if self.kind == "bitget":  # no single-order query for plan orders: look in the lists
            for what, fetch in (
                ("fetch open trigger orders", self._ex.fetch_open_orders),
                ("fetch closed trigger orders", self._ex.fetch_canceled_and_closed_orders),
            ):
                raws = await self._call(what, fetch, symbol, None, None, self._trigger_query())
                found = [r for r in raws if r.get("clientOrderId") == client_order_id]
                if found:
                    return self._order(found[0])
            return None
        try:
            raw = await self._call(
                "fetch trigger order",
                self._ex.fetch_order,
                None,
                symbol,
                {"clientOrderId": client_order_id, **self._trigger_query()},
            )
        except NotFound:
            return None
        order = self._order(raw)
        actual = (raw.get("info") or {}).get("actualOrderId")
        if order.status is not OrderStatus.FILLED or not actual:
            return order
        # TRIGGERED / FINISHED: the conditional order is done; its market order tells how.
        try:
            placed = self._order(
                await self._call("fetch triggered order", self._ex.fetch_order, actual, symbol)
            )
        except NotFound:
            return order
        return order.with_status(
            placed.status,
            filled_qty=placed.filled_qty,
            avg_fill_price=placed.avg_fill_price,
            updated_at=placed.updated_at,
        )

    async def cancel_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        """Cancel by client id; an order already gone is good news, not an error."""
        if client_order_id.startswith("exchange-"):
            params: dict[str, Any] = {}
            order_id: str | None = client_order_id.removeprefix("exchange-")
        else:
            params, order_id = {"clientOrderId": client_order_id}, None
        if trigger:
            params.update(self._trigger_query())
        try:
            raw = await self._call("cancel order", self._ex.cancel_order, order_id, symbol, params)
        except NotFound:
            return await self.fetch_order(symbol, client_order_id, trigger=trigger)
        if trigger:  # Binance answers a conditional cancel with a bare {"code": "200"}
            return await self.fetch_order(symbol, client_order_id, trigger=True)
        return self._order(raw)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        """Plain open orders and resting trigger orders (which ccxt lists only when asked)."""
        raw = await self._call("fetch open orders", self._ex.fetch_open_orders, symbol)
        triggers = await self._call(
            "fetch open trigger orders",
            self._ex.fetch_open_orders,
            symbol,
            None,
            None,
            self._trigger_query(),
        )
        return [self._order(o) for o in [*raw, *triggers]]

    async def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[Fill]:
        since_ms = None if since is None else int(since.timestamp() * 1000) + 1
        raw = await self._call("fetch my trades", self._ex.fetch_my_trades, symbol, since_ms)
        fills = []
        for t in raw:
            order_id = str(t.get("order"))
            cid = self._cid_by_order_id.get(order_id)
            if cid is None:
                known = await self._call("fetch order", self._ex.fetch_order, order_id, symbol)
                cid = self._order(known).client_order_id
            fee = t.get("fee") or {}
            info = t.get("info") or {}
            fills.append(
                Fill(
                    account=self.account,
                    fill_id=str(t["id"]),
                    client_order_id=cid,
                    symbol=t["symbol"],
                    side=Side(t["side"]),
                    qty=_dec(t.get("amount")),
                    price=_dec(t.get("price")),
                    fee=_dec(fee.get("cost")),
                    realized_pnl=_dec(info.get("realizedPnl") or info.get("profit")),
                    timestamp=_time(t.get("timestamp")) or datetime.now(UTC),
                )
            )
        return fills


def _with_bot(order: Order, bot: str | None) -> Order:
    return order.with_status(order.status, bot=bot)


def _acknowledged(raw: dict[str, Any], intent: OrderIntent) -> dict[str, Any]:
    """Bitget answers a new order with its ids only: the rest is what we sent."""
    return {
        **raw,
        "symbol": raw.get("symbol") or intent.symbol,
        "side": raw.get("side") or intent.side.value,
        "amount": raw.get("amount") if raw.get("amount") is not None else str(intent.qty),
    }


def _with_intent(order: Order, intent: OrderIntent) -> Order:
    """A reply that leaves out what we sent (a new conditional order's bare acknowledgement)
    keeps the intent's type and trigger price."""
    if order.type is intent.type and order.trigger_price == intent.trigger_price:
        return order
    return order.with_status(order.status, type=intent.type, trigger_price=intent.trigger_price)


_TRIGGER_TYPES = {
    "stop_market": OrderType.STOP_MARKET,
    "take_profit_market": OrderType.TAKE_PROFIT_MARKET,
    "loss_plan": OrderType.STOP_MARKET,
    "pos_loss": OrderType.STOP_MARKET,
    "profit_plan": OrderType.TAKE_PROFIT_MARKET,
    "pos_profit": OrderType.TAKE_PROFIT_MARKET,
}


def _order_type(raw: dict[str, Any]) -> OrderType:
    """ccxt reports a stop-market as "market": the exchange's own field says what it is."""
    info = raw.get("info") or {}
    for key in ("orderType", "type", "origType", "planType"):
        value = info.get(key)
        if isinstance(value, str) and value.lower() in _TRIGGER_TYPES:
            return _TRIGGER_TYPES[value.lower()]
    return OrderType.LIMIT if raw.get("type") == "limit" else OrderType.MARKET
