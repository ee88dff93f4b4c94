"""A loopback Bitget USDT-M futures server (v2 mix API) that real ccxt ``bitget`` talks HTTP to.

ccxt 4.5.90 signs the requests and parses the replies for real; only the exchange is ours. The
server speaks what ccxt calls for a classic (non-unified) account with ``options['uta'] =
False``: public time, contracts, candles, position tiers; account, accounts, set-leverage,
set-margin-mode, set-position-mode; place-order, place-plan-order, place-tpsl-order, detail,
cancel-order, cancel-plan-order, orders-pending, orders-plan-pending, orders-plan-history;
all-position; fills;
account bills (funding); spot account info (API key permissions). Bodies are Bitget's:
``{"code": "00000", "msg": "success", "requestTime": ..., "data": ...}``, numbers as strings,
errors with Bitget's codes (checked against ccxt's recorded replies in
tests/fixtures/ccxt_static).

Simulation rules (what a test can rely on):

- Signatures: base64 HMAC-SHA256 of timestamp + method + path (+ "?" + query) + body, with
  the key, the passphrase and the timestamp checked; a timestamp more than
  ``timestamp_window_ms`` (30 s, Bitget's) off the server's clock is refused 40008.
- One-way mode: a net position per symbol (holdSide long/short, posMode one_way_mode). In
  ``hedge_mode`` an order without tradeSide is refused 40774, as Bitget does.
- Market orders fill at the last close (taker 0.06 %), limit orders rest and fill at their
  price when a pushed candle trades through them (maker 0.02 %); reduceOnly orders are
  clipped to the position and never flip it.
- Every order must say ``marginMode``; the symbol's margin mode must match it, else 40017
  (ccxt sends "crossed" unless told, while the symbol is isolated). The requests are kept,
  so a test can check what was sent.
- Client ids (clientOid) are unique per account: a reused one is refused 40786.
- Plan (trigger) orders: ``normal_plan`` fires when a candle reaches triggerPrice from the
  side it was placed on; ``pos_profit``/``pos_loss`` (and ``profit_plan``/``loss_plan``)
  close the position (holdSide buy: a long, sell: a short) when the candle reaches the
  trigger. The executed order carries the plan's clientOid; a triggered market order fills
  at the trigger price, or at the candle's open when it gapped past it.
- Fills (/order/fills) and bills answer at most 7 days per query and 100 rows, newest first.
- ``lookup_lag_ms``: an order cannot be found by /order/detail for that long after acceptance.
- ``pay_funding`` books funding bills (businessType contract_settle_fee); ``liquidate``
  closes a position with a ``burst_`` fill (``adl``: ``adl_`` fill).
- The same transport faults as the loopback Binance (`Faults`): rate_limited (429, code 429),
  banned, server_error, slow, timeout, drop, accepted_reply_lost, partial_fill, overloaded
  (40015 "System is abnormal, please try again later").

Every request is recorded in ``requests`` as (method, path, params) with the JSON body's
fields in params; an unknown path is logged, kept in ``unknown_requests`` and answered 404.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from tests.loopback.binance_usdm import (
    _INTERVAL_MS,
    FAULT_KINDS,
    Candle,
    Fault,
    Faults,
    Number,
    _d,
    _fmt,
    _plain,
    _Position,
)

log = logging.getLogger(__name__)

Json = dict[str, Any]
Handler = Callable[[dict[str, Any]], Any]
PRODUCT = "USDT-FUTURES"
_TRANSPORT_FAULTS = FAULT_KINDS - {"partial_fill"}
_TAKER_FEE = Decimal("0.0006")
_MAKER_FEE = Decimal("0.0002")
_WEEK_MS = 7 * 24 * 3600 * 1000
_PAGE = 100


@dataclass(frozen=True)
class BitgetContract:
    """A USDT-M perpetual as /api/v2/mix/market/contracts publishes it."""

    symbol: str
    base: str
    price_place: int
    volume_place: int
    size_multiplier: Decimal
    min_trade_num: Decimal
    min_trade_usdt: Decimal
    # (tier start, tier end, max leverage, maintenance margin rate)
    tiers: tuple[tuple[int, int, int, Decimal], ...]

    @property
    def tick(self) -> Decimal:
        return Decimal(1).scaleb(-self.price_place)

    @property
    def max_lever(self) -> int:
        return self.tiers[0][2]


CONTRACTS: dict[str, BitgetContract] = {
    "BTCUSDT": BitgetContract(
        "BTCUSDT",
        "BTC",
        1,
        3,
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal("5"),
        (
            (0, 150_000, 125, Decimal("0.004")),
            (150_000, 1_000_000, 100, Decimal("0.005")),
            (1_000_000, 5_000_000, 50, Decimal("0.01")),
        ),
    ),
    "ETHUSDT": BitgetContract(
        "ETHUSDT",
        "ETH",
        2,
        2,
        Decimal("0.01"),
        Decimal("0.01"),
        Decimal("5"),
        (
            (0, 100_000, 100, Decimal("0.005")),
            (100_000, 250_000, 75, Decimal("0.0065")),
            (250_000, 2_000_000, 50, Decimal("0.01")),
        ),
    ),
}


class BitgetError(Exception):
    def __init__(self, code: str, msg: str, status: int = 400) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status


@dataclass
class _Order:
    order_id: int
    symbol: str
    client_oid: str
    side: str  # buy | sell
    order_type: str  # market | limit
    size: Decimal
    price: Decimal
    reduce_only: bool
    margin_mode: str
    leverage: int
    force: str
    time: int
    state: str = "live"
    filled: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    profit: Decimal = Decimal(0)
    update_time: int = 0
    source: str = "API"  # who placed it: API, or the exchange (liquidation)

    @property
    def is_open(self) -> bool:
        return self.state in ("live", "partially_filled")


@dataclass
class _PlanOrder:
    order_id: int
    symbol: str
    client_oid: str
    plan_type: str  # normal_plan | pos_profit | pos_loss
    side: str
    order_type: str
    size: Decimal
    trigger_price: Decimal
    execute_price: Decimal
    trigger_type: str
    reduce_only: bool
    margin_mode: str
    rising: bool  # fires when the price rises to the trigger (else falls)
    time: int
    status: str = "live"  # live | executed | cancelled | fail_trigger
    update_time: int = 0
    executed_order_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "live"


@dataclass
class _Fill:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    size: Decimal
    fee: Decimal
    profit: Decimal
    time: int
    maker: bool
    trade_side: str


@dataclass
class _Bill:
    bill_id: int
    symbol: str
    amount: Decimal
    business_type: str
    time: int


@dataclass
class _SymbolState:
    spec: BitgetContract
    candles: dict[int, Candle] = field(default_factory=dict)
    last: Decimal | None = None
    leverage: int = 20
    margin_mode: str = "crossed"
    position: _Position = field(default_factory=_Position)


def _ok(data: Any, now: int) -> Json:
    return {"code": "00000", "msg": "success", "requestTime": now, "data": data}


class LoopbackBitget:
    """Bitget USDT-M futures (v2 mix) over HTTP on 127.0.0.1, for ccxt ``bitget``."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        passphrase: str,
        *,
        initial_balance: Number = Decimal("10000"),
        interval: str = "1m",
        clock: Callable[[], int] | None = None,
        hedge_mode: bool = False,
        union_mode: bool = False,
        lookup_lag_ms: int = 0,
        timestamp_window_ms: int = 30_000,
        withdrawals: bool = False,
    ) -> None:
        if interval not in _INTERVAL_MS:
            raise ValueError(f"unsupported candle interval {interval!r}")
        self.api_key = api_key
        self.api_secret = api_secret
        self.passphrase = passphrase
        self.interval = interval
        self.initial_balance = _d(initial_balance)
        self.hedge_mode = hedge_mode
        self.union_mode = union_mode
        self.lookup_lag_ms = lookup_lag_ms
        self.timestamp_window_ms = timestamp_window_ms
        self.withdrawals = withdrawals
        self.faults = Faults()
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.unknown_requests: list[tuple[str, str, dict[str, Any]]] = []
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._symbols = {name: _SymbolState(spec) for name, spec in CONTRACTS.items()}
        self._realized = Decimal(0)
        self._fees = Decimal(0)
        self._funding = Decimal(0)
        self._orders: dict[int, _Order] = {}
        self._plans: dict[int, _PlanOrder] = {}
        self._fills: list[_Fill] = []
        self._bills: list[_Bill] = []
        self._used_oids: set[str] = set()
        self._next_id = 1_139_544_620_000_000_000
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._routes: dict[tuple[str, str], tuple[bool, Handler]] = {
            ("GET", "/api/v2/public/time"): (False, self._time),
            ("GET", "/api/v2/spot/public/coins"): (False, self._coins),
            ("GET", "/api/v2/mix/market/contracts"): (False, self._contracts),
            ("GET", "/api/v2/mix/market/candles"): (False, self._candles),
            ("GET", "/api/v2/mix/market/history-candles"): (False, self._candles),
            ("GET", "/api/v2/mix/market/query-position-lever"): (False, self._tiers),
            ("GET", "/api/v2/mix/account/account"): (True, self._account),
            ("GET", "/api/v2/mix/account/accounts"): (True, self._accounts),
            ("POST", "/api/v2/mix/account/set-leverage"): (True, self._set_leverage),
            ("POST", "/api/v2/mix/account/set-margin-mode"): (True, self._set_margin_mode),
            ("POST", "/api/v2/mix/account/set-position-mode"): (True, self._set_position_mode),
            ("GET", "/api/v2/mix/account/bill"): (True, self._bill),
            ("POST", "/api/v2/mix/order/place-order"): (True, self._place_order),
            ("POST", "/api/v2/mix/order/place-plan-order"): (True, self._place_plan),
            ("POST", "/api/v2/mix/order/place-tpsl-order"): (True, self._place_tpsl),
            ("GET", "/api/v2/mix/order/detail"): (True, self._detail),
            ("POST", "/api/v2/mix/order/cancel-order"): (True, self._cancel_order),
            ("POST", "/api/v2/mix/order/cancel-plan-order"): (True, self._cancel_plan),
            ("GET", "/api/v2/mix/order/orders-pending"): (True, self._orders_pending),
            ("GET", "/api/v2/mix/order/orders-plan-pending"): (True, self._plans_pending),
            ("GET", "/api/v2/mix/order/orders-plan-history"): (True, self._plans_history),
            ("GET", "/api/v2/mix/order/fills"): (True, self._fills_query),
            ("GET", "/api/v2/mix/position/all-position"): (True, self._all_positions),
            ("GET", "/api/v2/spot/account/info"): (True, self._key_info),
        }

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; return the base URL (no trailing slash)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------- test surface

    @property
    def endpoints(self) -> list[tuple[str, str]]:
        return sorted(self._routes)

    def push_candle(
        self, symbol: str, ts_ms: int, o: Number, h: Number, low: Number, c: Number, v: Number
    ) -> None:
        """Trade one candle: fire plan orders it reaches, fill resting orders, close at `c`."""
        state = self._state(symbol)
        candle = Candle(ts_ms, _d(o), _d(h), _d(low), _d(c), _d(v))
        state.candles[ts_ms] = candle
        now = self._clock()
        for plan in sorted(self._plans.values(), key=lambda p: p.order_id):
            if plan.symbol == symbol and plan.is_open:
                self._maybe_trigger(plan, candle, now)
        for order in sorted(self._orders.values(), key=lambda o: o.order_id):
            if order.symbol != symbol or not order.is_open:
                continue
            if order.order_type == "market":
                self._fill(order, order.size - order.filled, candle.open, maker=False, now=now)
            elif (order.side == "buy" and candle.low < order.price) or (
                order.side == "sell" and candle.high > order.price
            ):
                self._fill(order, order.size - order.filled, order.price, maker=True, now=now)
        state.last = candle.close

    def position(self, symbol: str) -> tuple[Decimal, Decimal]:
        pos = self._state(symbol).position
        return pos.qty, pos.entry

    def last_price(self, symbol: str) -> Decimal | None:
        return self._state(symbol).last

    def margin_mode(self, symbol: str) -> str:
        return self._state(symbol).margin_mode

    @property
    def wallet_balance(self) -> Decimal:
        return self.initial_balance + self._realized - self._fees + self._funding

    def orders_by_client_id(self) -> dict[str, Json]:
        return {o.client_oid: self._order_json(o) for o in self._orders.values()}

    def plan_orders_by_client_id(self) -> dict[str, Json]:
        return {p.client_oid: self._plan_json(p) for p in self._plans.values()}

    def trades(self) -> list[Json]:
        """Every fill, in the shape of /api/v2/mix/order/fills, oldest first."""
        return [self._fill_json(f) for f in self._fills]

    def order_requests(self) -> list[dict[str, Any]]:
        """The bodies of every place-order request, as sent."""
        return [p for m, path, p in self.requests if path == "/api/v2/mix/order/place-order"]

    def shift_history(self, ms: int) -> None:
        for order in self._orders.values():
            order.time += ms
            order.update_time += ms
        for fill in self._fills:
            fill.time += ms
        for bill in self._bills:
            bill.time += ms

    def pay_funding(self, symbol: str, rate: Number) -> Decimal:
        state = self._state(symbol)
        if state.position.qty == 0:
            return Decimal(0)
        mark = state.last or state.position.entry
        amount = -(state.position.qty * mark * _d(rate)).quantize(Decimal("0.00000001"))
        self._funding += amount
        self._bills.append(
            _Bill(self._next(), symbol, amount, "contract_settle_fee", self._clock())
        )
        return amount

    def liquidate(self, symbol: str, price: Number, *, adl: bool = False) -> int:
        """Close the whole position at `price` by the exchange; returns the order id."""
        state = self._state(symbol)
        qty = state.position.qty
        if qty == 0:
            raise ValueError(f"no position on {symbol}")
        now = self._clock()
        order = _Order(
            order_id=self._next(),
            symbol=symbol,
            client_oid=f"{'adl' if adl else 'burst'}-{now}",
            side="sell" if qty > 0 else "buy",
            order_type="limit",
            size=abs(qty),
            price=_d(price),
            reduce_only=True,
            margin_mode=state.margin_mode,
            leverage=state.leverage,
            force="ioc",
            time=now,
            update_time=now,
            source="adl" if adl else "burst",
        )
        self._orders[order.order_id] = order
        self._fill(order, order.size, order.price, maker=False, now=now)
        return order.order_id

    def _on_order_event(self, order: _Order) -> None:
        """An order was placed, cancelled or expired without a fill (the websocket pushes)."""

    def _on_fill(self, order: _Order, fill: _Fill) -> None:
        """An order filled, in part or whole (the websocket pushes the fill and the order)."""

    # ------------------------------------------------------------------ HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        raw_query = request.rel_url.raw_query_string
        raw_body = await request.text() if request.can_read_body else ""
        params: dict[str, Any] = dict(parse_qsl(raw_query, keep_blank_values=True))
        if raw_body:
            try:
                body = json.loads(raw_body)
            except ValueError:
                return self._reply(400, "40017", "Parameter verification failed: not JSON")
            if isinstance(body, dict):
                params.update(body)
        self.requests.append((method, path, params))
        fault = self.faults.take(method, path, _TRANSPORT_FAULTS)
        if fault is not None:
            early = await self._apply_fault(fault, request)
            if early is not None:
                return early
        route = self._routes.get((method, path))
        if route is None:
            log.warning("unknown_endpoint_requested method=%s path=%s", method, path)
            self.unknown_requests.append((method, path, params))
            return self._reply(404, "404", f"Request URL NOT FOUND {method} {path}")
        private, handler = route
        try:
            if private:
                self._authenticate(request, method, path, raw_query, raw_body)
            data = handler(params)
        except BitgetError as e:
            return self._reply(e.status, e.code, e.msg)
        if fault is not None and fault.kind == "accepted_reply_lost":
            return _drop(request)
        return web.Response(
            text=json.dumps(_ok(data, self._clock())), content_type="application/json"
        )

    def _reply(self, status: int, code: str, msg: str) -> web.Response:
        body = {"code": code, "msg": msg, "requestTime": self._clock(), "data": None}
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    async def _apply_fault(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        kind, opts = fault.kind, fault.opts
        if kind in ("rate_limited", "banned"):
            body = {
                "code": "429",
                "msg": "Too Many Requests",
                "requestTime": self._clock(),
                "data": None,
            }
            return web.Response(
                status=429,
                text=json.dumps(body),
                content_type="application/json",
                headers={"Retry-After": str(opts.get("retry_after", 1))},
            )
        if kind == "overloaded":
            return self._reply(400, "40015", "System is abnormal, please try again later")
        if kind == "server_error":
            status = int(opts.get("status", 503))
            raw = opts.get("body", "Service Unavailable")
            if isinstance(raw, dict):
                return web.Response(
                    status=status, text=json.dumps(raw), content_type="application/json"
                )
            return web.Response(status=status, text=str(raw), content_type="text/html")
        if kind == "slow":
            await self._hold(float(opts.get("seconds", 0.2)))
            return None
        if kind == "timeout":
            await self._hold(float(opts.get("seconds", 2.0)))
            return _drop(request)
        if kind == "drop":
            return _drop(request)
        return None

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    def _authenticate(
        self, request: web.Request, method: str, path: str, raw_query: str, raw_body: str
    ) -> None:
        headers = request.headers
        key = headers.get("ACCESS-KEY", "")
        if not key:
            raise BitgetError("40001", "ACCESS_KEY cannot be empty", 401)
        if not hmac.compare_digest(key, self.api_key):
            raise BitgetError("40006", "Invalid ACCESS_KEY", 401)
        passphrase = headers.get("ACCESS-PASSPHRASE", "")
        if not passphrase:
            raise BitgetError("40011", "ACCESS_PASSPHRASE cannot be empty", 401)
        if not hmac.compare_digest(passphrase, self.passphrase):
            raise BitgetError("40012", "apikey/password is incorrect", 401)
        stamp = headers.get("ACCESS-TIMESTAMP", "")
        if not stamp.isdigit():
            raise BitgetError("40005", "Invalid ACCESS_TIMESTAMP", 401)
        if abs(int(stamp) - self._clock()) > self.timestamp_window_ms:
            raise BitgetError("40008", "Request timestamp expired", 401)
        prehash = stamp + method + path
        if raw_query:
            prehash += "?" + unquote(raw_query)
        prehash += raw_body
        digest = hmac.new(self.api_secret.encode(), prehash.encode(), hashlib.sha256).digest()
        expected = base64.b64encode(digest).decode()
        if not hmac.compare_digest(headers.get("ACCESS-SIGN", ""), expected):
            raise BitgetError("40009", "sign signature error", 401)

    # -------------------------------------------------------------- market data

    def _state(self, symbol: str) -> _SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            raise BitgetError("40034", f"Parameter {symbol} does not exist")
        return state

    def _product(self, params: dict[str, Any]) -> None:
        product = str(params.get("productType", "")).upper()
        if product != PRODUCT:
            raise BitgetError("40017", f"Parameter verification failed: productType {product}")

    def _symbol(self, params: dict[str, Any]) -> _SymbolState:
        self._product(params)
        return self._state(str(params.get("symbol", "")))

    def _time(self, params: dict[str, Any]) -> Any:
        return {"serverTime": str(self._clock())}

    def _coins(self, params: dict[str, Any]) -> Any:
        """ccxt's bitget asks for the coin list on every load_markets (whatever its options)."""
        coins = ["USDT", *(spec.base for spec in CONTRACTS.values())]
        return [
            {"coinId": str(n), "coin": coin, "transfer": "true", "chains": []}
            for n, coin in enumerate(coins, 1)
        ]

    def _contracts(self, params: dict[str, Any]) -> Any:
        if str(params.get("productType", "")).upper() != PRODUCT:
            return []
        return [_contract_json(s.spec) for s in self._symbols.values()]

    def _candles(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        granularity = str(params.get("granularity", ""))
        if granularity != self.interval:
            raise BitgetError("40017", f"Parameter verification failed: granularity {granularity}")
        limit = min(int(params.get("limit") or 100), 1000)
        start = int(params["startTime"]) if params.get("startTime") else None
        end = int(params["endTime"]) if params.get("endTime") else None
        rows = [
            c
            for ts, c in sorted(state.candles.items())
            if (start is None or ts >= start) and (end is None or ts <= end)
        ]
        rows = rows[:limit] if start is not None else rows[-limit:]
        pp, vp = state.spec.price_place, state.spec.volume_place
        return [
            [
                str(c.ts),
                _fmt(c.open, pp),
                _fmt(c.high, pp),
                _fmt(c.low, pp),
                _fmt(c.close, pp),
                _fmt(c.volume, vp),
                _fmt(c.volume * c.close, 4),
            ]
            for c in rows
        ]

    def _tiers(self, params: dict[str, Any]) -> Any:
        spec = self._symbol(params).spec
        return [
            {
                "symbol": spec.symbol,
                "level": str(level),
                "startUnit": str(start),
                "endUnit": str(end),
                "leverage": str(leverage),
                "keepMarginRate": str(rate),
            }
            for level, (start, end, leverage, rate) in enumerate(spec.tiers, 1)
        ]

    # ------------------------------------------------------------------ account

    def _next(self) -> int:
        self._next_id += 1
        return self._next_id

    def _margin_coin(self, params: dict[str, Any]) -> None:
        coin = str(params.get("marginCoin", "")).upper()
        if coin != "USDT":
            raise BitgetError("40017", f"Parameter verification failed: marginCoin {coin!r}")

    def _unrealized(self, state: _SymbolState) -> Decimal:
        pos = state.position
        mark = state.last if state.last is not None else pos.entry
        return pos.qty * (mark - pos.entry)

    def _used_margin(self) -> Decimal:
        total = Decimal(0)
        for state in self._symbols.values():
            pos = state.position
            total += abs(pos.qty) * pos.entry / state.leverage
        for order in self._orders.values():
            if order.is_open and not order.reduce_only:
                price = order.price or self._symbols[order.symbol].last or Decimal(0)
                total += (order.size - order.filled) * price / order.leverage
        return total

    def _available(self) -> Decimal:
        unrealized = sum((self._unrealized(s) for s in self._symbols.values()), Decimal(0))
        return max(self.wallet_balance + unrealized - self._used_margin(), Decimal(0))

    def _account(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        self._margin_coin(params)
        available = _fmt(self._available(), 8)
        equity = self.wallet_balance + self._unrealized(state)
        return {
            "marginCoin": "USDT",
            "locked": "0",
            "available": available,
            "crossedMaxAvailable": available,
            "isolatedMaxAvailable": available,
            "maxTransferOut": available,
            "accountEquity": _fmt(equity, 8),
            "usdtEquity": _fmt(equity, 12),
            "btcEquity": "0",
            "crossedRiskRate": "0",
            "crossedMarginLeverage": state.leverage,
            "isolatedLongLever": state.leverage,
            "isolatedShortLever": state.leverage,
            "marginMode": state.margin_mode,
            "posMode": "hedge_mode" if self.hedge_mode else "one_way_mode",
            "unrealizedPL": _fmt(self._unrealized(state), 8),
            "coupon": "0",
            "crossedUnrealizedPL": "0",
            "isolatedUnrealizedPL": "",
            "grant": "",
            "assetMode": "union" if self.union_mode else "single",
            "isolatedMargin": None,
            "crossedMargin": None,
        }

    def _accounts(self, params: dict[str, Any]) -> Any:
        self._product(params)
        unrealized = sum((self._unrealized(s) for s in self._symbols.values()), Decimal(0))
        available = _fmt(self._available(), 8)
        equity = _fmt(self.wallet_balance + unrealized, 8)
        return [
            {
                "marginCoin": "USDT",
                "locked": "0",
                "available": available,
                "crossedMaxAvailable": available,
                "isolatedMaxAvailable": available,
                "maxTransferOut": available,
                "accountEquity": equity,
                "usdtEquity": equity,
                "btcEquity": "0",
                "crossedRiskRate": "0",
                "unrealizedPL": _fmt(unrealized, 8),
                "coupon": "0",
                "unionTotalMagin": equity,
                "unionAvailable": available,
                "unionMm": "0",
                "assetList": [],
                "isolatedMargin": "0",
                "crossedMargin": "0",
                "crossedUnrealizedPL": "0",
                "isolatedUnrealizedPL": _fmt(unrealized, 8),
                "assetMode": "union" if self.union_mode else "single",
            }
        ]

    def _set_leverage(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        self._margin_coin(params)
        leverage = int(str(params.get("leverage", "0")))
        if not 1 <= leverage <= state.spec.max_lever:
            raise BitgetError("40797", "Exceeded the maximum settable leverage")
        state.leverage = leverage
        return {
            "symbol": state.spec.symbol,
            "marginCoin": "USDT",
            "longLeverage": str(leverage),
            "shortLeverage": str(leverage),
            "crossMarginLeverage": str(leverage),
            "marginMode": state.margin_mode,
        }

    def _set_margin_mode(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        self._margin_coin(params)
        mode = str(params.get("marginMode", ""))
        if mode not in ("isolated", "crossed"):
            raise BitgetError("40017", f"Parameter verification failed: marginMode {mode!r}")
        if mode == state.margin_mode:  # already so: Bitget answers success
            return {
                "symbol": state.spec.symbol,
                "marginCoin": "USDT",
                "longLeverage": str(state.leverage),
                "shortLeverage": str(state.leverage),
                "marginMode": mode,
            }
        if mode == "isolated" and self.union_mode:
            raise BitgetError(
                "40017", "Isolated margin is not supported in union (multi-asset) mode"
            )
        if state.position.qty != 0 or any(
            o.is_open for o in self._orders.values() if o.symbol == state.spec.symbol
        ):
            raise BitgetError("40017", "The margin mode cannot change with positions or orders")
        state.margin_mode = mode
        return {
            "symbol": state.spec.symbol,
            "marginCoin": "USDT",
            "longLeverage": str(state.leverage),
            "shortLeverage": str(state.leverage),
            "marginMode": mode,
        }

    def _set_position_mode(self, params: dict[str, Any]) -> Any:
        self._product(params)
        mode = str(params.get("posMode", ""))
        if mode not in ("one_way_mode", "hedge_mode"):
            raise BitgetError("40017", f"Parameter verification failed: posMode {mode!r}")
        if any(s.position.qty != 0 for s in self._symbols.values()):
            raise BitgetError("40017", "The position mode cannot change with open positions")
        self.hedge_mode = mode == "hedge_mode"
        return {"posMode": mode}

    def _key_info(self, params: dict[str, Any]) -> Any:
        authorities = ["readonly", "contract_trade"] + (["withdraw"] if self.withdrawals else [])
        return {
            "userId": "7264631751",
            "inviterId": "",
            "ips": "127.0.0.1",
            "authorities": authorities,
            "parentId": 7264631751,
            "traderType": "",
            "channelCode": "",
            "channel": "",
            "regisTime": "1700000000000",
        }

    # ------------------------------------------------------------------- orders

    def _check_oid(self, params: dict[str, Any]) -> str:
        oid = str(params.get("clientOid") or f"loopback{self._next_id + 1}")
        if len(oid) > 50:
            raise BitgetError("40305", "Client_oid length is not greater than 50")
        if oid in self._used_oids:
            raise BitgetError("40786", "Duplicate clientOid")
        return oid

    def _size(self, spec: BitgetContract, raw: Any) -> Decimal:
        size = _d(str(raw or "0"))
        if size <= 0 or size % spec.size_multiplier != 0:
            raise BitgetError(
                "40808", f"Parameter verification exception size checkBDScale error value={raw}"
            )
        if size < spec.min_trade_num:
            raise BitgetError("45111", f"less than the minimum order quantity {spec.min_trade_num}")
        return size

    def _price(self, spec: BitgetContract, raw: Any) -> Decimal:
        price = _d(str(raw or "0"))
        if price <= 0 or price % spec.tick != 0:
            raise BitgetError("41103", "param price scale error error")
        return price

    def _reducible(self, symbol: str, side: str) -> Decimal:
        qty = self._state(symbol).position.qty
        if side == "sell" and qty > 0:
            return qty
        if side == "buy" and qty < 0:
            return -qty
        return Decimal(0)

    def _check_one_way(self, params: dict[str, Any]) -> None:
        if self.hedge_mode and not params.get("tradeSide"):
            raise BitgetError(
                "40774",
                "The order type for unilateral position must also be the unilateral position type.",
            )
        if not self.hedge_mode and params.get("tradeSide"):
            raise BitgetError(
                "40774",
                "The order type for unilateral position must also be the unilateral position type.",
            )
        if self.hedge_mode:
            raise BitgetError("40017", "This loopback trades one-way mode only")

    def _check_margin_mode(self, state: _SymbolState, params: dict[str, Any]) -> str:
        mode = str(params.get("marginMode", ""))
        if mode not in ("isolated", "crossed"):
            raise BitgetError("40017", "Parameter verification failed: marginMode is required")
        if mode != state.margin_mode:
            raise BitgetError(
                "40017",
                f"Parameter verification failed: marginMode {mode} does not match the "
                f"symbol's {state.margin_mode} margin",
            )
        return mode

    def _place_order(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        spec = state.spec
        self._margin_coin(params)
        self._check_one_way(params)
        mode = self._check_margin_mode(state, params)
        side = str(params.get("side", ""))
        if side not in ("buy", "sell"):
            raise BitgetError("40017", f"Parameter verification failed: side {side!r}")
        order_type = str(params.get("orderType", ""))
        if order_type not in ("market", "limit"):
            raise BitgetError("40017", f"Parameter verification failed: orderType {order_type!r}")
        oid = self._check_oid(params)
        size = self._size(spec, params.get("size"))
        reduce_only = str(params.get("reduceOnly", "NO")).upper() == "YES"
        price = Decimal(0)
        if order_type == "limit":
            price = self._price(spec, params.get("price"))
        if order_type == "market" and state.last is None:
            raise BitgetError("40017", "No market price yet: push a candle first")
        reference = price if order_type == "limit" else state.last or Decimal(0)
        if reduce_only and self._reducible(spec.symbol, side) == 0:
            raise BitgetError("22002", "No position to close")
        if not reduce_only:
            if size * reference < spec.min_trade_usdt:
                raise BitgetError(
                    "45110", f"less than the minimum amount {spec.min_trade_usdt} USDT"
                )
            increase = size - self._reducible(spec.symbol, side)
            if increase > 0 and increase * reference / state.leverage > self._available():
                raise BitgetError("40762", "The order amount exceeds the balance")
        now = self._clock()
        order = _Order(
            order_id=self._next(),
            symbol=spec.symbol,
            client_oid=oid,
            side=side,
            order_type=order_type,
            size=size,
            price=price,
            reduce_only=reduce_only,
            margin_mode=mode,
            leverage=state.leverage,
            force=str(params.get("force", "gtc")).lower(),
            time=now,
            update_time=now,
        )
        self._orders[order.order_id] = order
        self._used_oids.add(oid)
        if order_type == "market":
            partial = self.faults.take(
                "POST", "/api/v2/mix/order/place-order", frozenset({"partial_fill"})
            )
            qty = size
            if partial is not None:
                fraction = _d(partial.opts.get("fraction", "0.5"))
                qty = (size * fraction).quantize(spec.size_multiplier, rounding=ROUND_DOWN)
            assert state.last is not None
            self._fill(order, qty, state.last, maker=False, now=now)
            if partial is not None and partial.opts.get("remainder", "open") == "expire":
                order.state = "canceled"
        else:
            last = state.last
            marketable = last is not None and (
                (side == "buy" and price >= last) or (side == "sell" and price <= last)
            )
            if marketable and order.force == "post_only":
                order.state = "canceled"
            elif marketable and last is not None:
                self._fill(order, size, last, maker=False, now=now)
        if order.state != "filled":
            self._on_order_event(order)  # a fill already told of a filled one
        return {"orderId": str(order.order_id), "clientOid": oid}

    def _fill(self, order: _Order, qty: Decimal, price: Decimal, *, maker: bool, now: int) -> None:
        state = self._state(order.symbol)
        if order.reduce_only:
            reducible = self._reducible(order.symbol, order.side)
            if reducible < qty:
                qty = reducible
                order.state = "canceled"  # never flip: the excess is dropped
        if qty <= 0:
            order.update_time = now
            self._on_order_event(order)
            return
        price = price.quantize(state.spec.tick)
        profit = state.position.apply(order.side.upper(), qty, price)
        state.position.update_time = now
        fee = (qty * price * (_MAKER_FEE if maker else _TAKER_FEE)).quantize(Decimal("0.00000001"))
        self._realized += profit
        self._fees += fee
        if order.source == "API":
            trade_side = f"{order.side}_single"
            if order.reduce_only:
                trade_side = f"reduce_{trade_side}"
        else:
            trade_side = f"{order.source}_{order.side}_single"
        self._fills.append(
            _Fill(
                trade_id=self._next(),
                order_id=order.order_id,
                symbol=order.symbol,
                side=order.side,
                price=price,
                size=qty,
                fee=fee,
                profit=profit,
                time=now,
                maker=maker,
                trade_side=trade_side,
            )
        )
        order.filled += qty
        order.quote += qty * price
        order.fee += fee
        order.profit += profit
        order.update_time = now
        if order.state != "canceled":
            order.state = "filled" if order.filled == order.size else "partially_filled"
        self._on_fill(order, self._fills[-1])

    def _find(self, params: dict[str, Any]) -> _Order | None:
        state = self._symbol(params)
        order: _Order | None = None
        if params.get("orderId"):
            order = self._orders.get(int(str(params["orderId"])))
        elif params.get("clientOid"):
            wanted = str(params["clientOid"])
            order = next((o for o in self._orders.values() if o.client_oid == wanted), None)
        else:
            raise BitgetError("40017", "Parameter verification failed: orderId or clientOid")
        if order is None or order.symbol != state.spec.symbol:
            return None
        return order

    def _detail(self, params: dict[str, Any]) -> Any:
        order = self._find(params)
        if order is None or self._clock() - order.time < self.lookup_lag_ms:
            raise BitgetError(
                "40109", "The data of the order cannot be found, please confirm the order number"
            )
        return self._order_json(order)

    def _cancel_order(self, params: dict[str, Any]) -> Any:
        order = self._find(params)
        if order is None or not order.is_open:
            raise BitgetError("40768", "Order does not exist")
        order.state = "canceled"
        order.update_time = self._clock()
        self._on_order_event(order)
        return {"orderId": str(order.order_id), "clientOid": order.client_oid}

    def _orders_pending(self, params: dict[str, Any]) -> Any:
        self._product(params)
        symbol = params.get("symbol")
        if symbol:
            self._state(str(symbol))
        rows = [
            self._order_json(o, pending=True)
            for o in sorted(self._orders.values(), key=lambda o: -o.order_id)
            if o.is_open and (not symbol or o.symbol == symbol)
        ]
        return {"entrustedList": rows or None, "endId": rows[-1]["orderId"] if rows else None}

    # --------------------------------------------------------------- plan orders

    def _place_plan(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        spec = state.spec
        self._margin_coin(params)
        self._check_one_way(params)
        mode = self._check_margin_mode(state, params)
        plan_type = str(params.get("planType", ""))
        if plan_type != "normal_plan":
            raise BitgetError("40017", f"Parameter verification failed: planType {plan_type!r}")
        side = str(params.get("side", ""))
        order_type = str(params.get("orderType", ""))
        if side not in ("buy", "sell") or order_type not in ("market", "limit"):
            raise BitgetError("40017", "Parameter verification failed: side or orderType")
        oid = self._check_oid(params)
        size = self._size(spec, params.get("size"))
        trigger = self._price(spec, params.get("triggerPrice"))
        execute = Decimal(0)
        if order_type == "limit":
            execute = self._price(spec, params.get("executePrice") or params.get("price"))
        last = state.last
        if last is None:
            raise BitgetError("40017", "No market price yet: push a candle first")
        plan = self._new_plan(
            spec.symbol,
            oid,
            "normal_plan",
            side,
            order_type,
            size,
            trigger,
            execute,
            str(params.get("triggerType", "mark_price")),
            str(params.get("reduceOnly", "NO")).upper() == "YES",
            mode,
            rising=trigger > last,
        )
        return {"orderId": str(plan.order_id), "clientOid": plan.client_oid}

    def _place_tpsl(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        spec = state.spec
        self._margin_coin(params)
        plan_type = str(params.get("planType", ""))
        if plan_type not in ("pos_profit", "pos_loss", "profit_plan", "loss_plan"):
            raise BitgetError("40017", f"Parameter verification failed: planType {plan_type!r}")
        hold_side = str(params.get("holdSide", ""))
        if hold_side not in ("buy", "sell", "long", "short"):
            raise BitgetError("40017", f"Parameter verification failed: holdSide {hold_side!r}")
        if hold_side in ("long", "short") and not self.hedge_mode:
            raise BitgetError(
                "40774",
                "The order type for unilateral position must also be the unilateral position type.",
            )
        long = hold_side in ("buy", "long")
        qty = state.position.qty
        if qty == 0 or (qty > 0) != long:
            raise BitgetError("40891", "Insufficient position, can not set profit or stop loss")
        trigger = self._price(spec, params.get("triggerPrice"))
        last = state.last or state.position.entry
        profit = plan_type in ("pos_profit", "profit_plan")
        if profit and ((long and trigger <= last) or (not long and trigger >= last)):
            raise BitgetError("40915", "Long position take profit price please > mark price")
        if not profit and ((long and trigger >= last) or (not long and trigger <= last)):
            raise BitgetError("40917", f"Stop price for long positions please < mark price {last}")
        size = self._size(spec, params.get("size")) if params.get("size") else abs(qty)
        execute = _d(str(params.get("executePrice") or "0"))
        plan = self._new_plan(
            spec.symbol,
            self._check_oid(params),
            "pos_profit" if profit else "pos_loss",
            "sell" if long else "buy",
            "limit" if execute > 0 else "market",
            size,
            trigger,
            execute,
            str(params.get("triggerType", "mark_price")),
            True,
            state.margin_mode,
            rising=long == profit,
        )
        return {"orderId": str(plan.order_id), "clientOid": plan.client_oid}

    def _new_plan(
        self,
        symbol: str,
        oid: str,
        plan_type: str,
        side: str,
        order_type: str,
        size: Decimal,
        trigger: Decimal,
        execute: Decimal,
        trigger_type: str,
        reduce_only: bool,
        margin_mode: str,
        *,
        rising: bool,
    ) -> _PlanOrder:
        now = self._clock()
        plan = _PlanOrder(
            order_id=self._next(),
            symbol=symbol,
            client_oid=oid,
            plan_type=plan_type,
            side=side,
            order_type=order_type,
            size=size,
            trigger_price=trigger,
            execute_price=execute,
            trigger_type=trigger_type,
            reduce_only=reduce_only,
            margin_mode=margin_mode,
            rising=rising,
            time=now,
            update_time=now,
        )
        self._plans[plan.order_id] = plan
        self._used_oids.add(oid)
        return plan

    def _cancel_plan(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        plan_type = str(params.get("planType") or "normal_plan")
        kinds = {"normal_plan"} if plan_type == "normal_plan" else {"pos_profit", "pos_loss"}
        tpsl = ("pos_profit", "pos_loss", "profit_plan", "loss_plan", "profit_loss")
        if plan_type != "normal_plan" and plan_type not in tpsl:
            raise BitgetError("40017", f"Parameter verification failed: planType {plan_type!r}")
        success, failure = [], []
        for wanted in params.get("orderIdList") or []:
            plan = next(
                (
                    p
                    for p in self._plans.values()
                    if p.symbol == state.spec.symbol
                    and p.plan_type in kinds
                    and (
                        str(p.order_id) == str(wanted.get("orderId"))
                        or (wanted.get("clientOid") and p.client_oid == wanted.get("clientOid"))
                    )
                ),
                None,
            )
            ids = {
                "orderId": str(wanted.get("orderId") or ""),
                "clientOid": wanted.get("clientOid"),
            }
            if plan is None or not plan.is_open:
                failure.append(
                    {**ids, "errorMsg": "Plan order does not exist", "errorCode": "43025"}
                )
                continue
            plan.status = "cancelled"
            plan.update_time = self._clock()
            success.append({"orderId": str(plan.order_id), "clientOid": plan.client_oid})
        if not success and failure:
            raise BitgetError("43025", "Plan order does not exist")
        return {"successList": success, "failureList": failure}

    def _plan_kinds(self, params: dict[str, Any]) -> set[str]:
        self._product(params)
        plan_type = str(params.get("planType", ""))
        if plan_type == "normal_plan":
            return {"normal_plan"}
        if plan_type == "profit_loss":
            return {"pos_profit", "pos_loss"}
        raise BitgetError("40017", f"Parameter verification failed: planType {plan_type!r}")

    def _plans_pending(self, params: dict[str, Any]) -> Any:
        return self._plan_list(params, self._plan_kinds(params), live=True)

    def _plans_history(self, params: dict[str, Any]) -> Any:
        """Plan orders no longer live (executed, cancelled, failed), newest first."""
        kinds = self._plan_kinds(params)
        if not params.get("symbol"):
            raise BitgetError("40017", "Parameter verification failed: symbol is required")
        return self._plan_list(params, kinds, live=False)

    def _plan_list(self, params: dict[str, Any], kinds: set[str], *, live: bool) -> Any:
        symbol = params.get("symbol")
        oid = params.get("clientOid")
        rows = [
            self._plan_json(p)
            for p in sorted(self._plans.values(), key=lambda p: -p.order_id)
            if p.is_open == live
            and p.plan_type in kinds
            and (not symbol or p.symbol == symbol)
            and (not oid or p.client_oid == oid)
        ]
        return {"entrustedList": rows or None, "endId": rows[-1]["orderId"] if rows else None}

    def _maybe_trigger(self, plan: _PlanOrder, candle: Candle, now: int) -> None:
        if plan.rising and candle.high < plan.trigger_price:
            return
        if not plan.rising and candle.low > plan.trigger_price:
            return
        gapped = (
            candle.open >= plan.trigger_price if plan.rising else candle.open <= plan.trigger_price
        )
        fill_at = candle.open if gapped else plan.trigger_price
        plan.update_time = now
        state = self._state(plan.symbol)
        size = plan.size
        if plan.plan_type in ("pos_profit", "pos_loss"):
            size = min(size, abs(state.position.qty))
        if size == 0 or (plan.reduce_only and self._reducible(plan.symbol, plan.side) == 0):
            plan.status = "fail_trigger"
            return
        order = _Order(
            order_id=self._next(),
            symbol=plan.symbol,
            client_oid=plan.client_oid,  # the executed order answers to the plan's clientOid
            side=plan.side,
            order_type=plan.order_type,
            size=size,
            price=plan.execute_price,
            reduce_only=plan.reduce_only,
            margin_mode=plan.margin_mode,
            leverage=state.leverage,
            force="gtc",
            time=now,
            update_time=now,
        )
        self._orders[order.order_id] = order
        plan.executed_order_id = order.order_id
        plan.status = "executed"
        if plan.order_type == "market":
            self._fill(order, size, fill_at, maker=False, now=now)
        elif (order.side == "buy" and candle.low < order.price) or (
            order.side == "sell" and candle.high > order.price
        ):
            self._fill(order, size, order.price, maker=False, now=now)

    # ---------------------------------------------------------------- positions

    def _all_positions(self, params: dict[str, Any]) -> Any:
        self._product(params)
        self._margin_coin(params)
        result = []
        for state in self._symbols.values():
            pos = state.position
            if pos.qty == 0:
                continue
            spec = state.spec
            mark = state.last if state.last is not None else pos.entry
            margin = abs(pos.qty) * pos.entry / state.leverage
            move = Decimal(1) / state.leverage - spec.tiers[0][3]
            liquidation = pos.entry * (1 - move) if pos.qty > 0 else pos.entry * (1 + move)
            result.append(
                {
                    "marginCoin": "USDT",
                    "symbol": spec.symbol,
                    "holdSide": "long" if pos.qty > 0 else "short",
                    "openDelegateSize": "0",
                    "marginSize": _fmt(margin, 8),
                    "available": _plain(abs(pos.qty)),
                    "locked": "0",
                    "total": _plain(abs(pos.qty)),
                    "leverage": str(state.leverage),
                    "achievedProfits": "0",
                    "openPriceAvg": _plain(pos.entry),
                    "marginMode": state.margin_mode,
                    "posMode": "hedge_mode" if self.hedge_mode else "one_way_mode",
                    "unrealizedPL": _fmt(self._unrealized(state), 8),
                    "liquidationPrice": _fmt(max(liquidation, Decimal(0)), spec.price_place),
                    "keepMarginRate": str(spec.tiers[0][3]),
                    "markPrice": _fmt(mark, spec.price_place),
                    "marginRatio": "0.01",
                    "breakEvenPrice": _plain(pos.entry),
                    "totalFee": "",
                    "deductedFee": "0",
                    "cTime": str(pos.update_time),
                    "uTime": str(pos.update_time),
                }
            )
        return result

    # ------------------------------------------------------------------ history

    def _window(self, params: dict[str, Any]) -> tuple[int, int]:
        start = int(params["startTime"]) if params.get("startTime") else None
        end = int(params["endTime"]) if params.get("endTime") else None
        if start is not None and end is not None:
            if end - start > _WEEK_MS:
                raise BitgetError("40017", "startTime and endTime interval cannot exceed 7 days")
            return start, end
        if start is not None:
            return start, start + _WEEK_MS
        if end is not None:
            return end - _WEEK_MS, end
        now = self._clock()
        return now - _WEEK_MS, now

    def _fills_query(self, params: dict[str, Any]) -> Any:
        state = self._symbol(params)
        start, end = self._window(params)
        limit = min(int(params.get("limit") or _PAGE), _PAGE)
        rows = [
            f
            for f in sorted(self._fills, key=lambda f: (-f.time, -f.trade_id))
            if f.symbol == state.spec.symbol
            and start <= f.time <= end
            and (not params.get("orderId") or str(f.order_id) == str(params["orderId"]))
        ][:limit]
        return {
            "fillList": [self._fill_json(f) for f in rows] or None,
            "endId": str(rows[-1].trade_id) if rows else None,
        }

    def _bill(self, params: dict[str, Any]) -> Any:
        self._product(params)
        self._margin_coin(params)
        symbol = params.get("symbol")
        business = params.get("businessType")
        start, end = self._window(params)
        limit = min(int(params.get("limit") or _PAGE), _PAGE)
        rows = [
            b
            for b in sorted(self._bills, key=lambda b: (-b.time, -b.bill_id))
            if (not symbol or b.symbol == symbol)
            and (not business or b.business_type == business)
            and start <= b.time <= end
        ][:limit]
        return {
            "bills": [
                {
                    "billId": str(b.bill_id),
                    "symbol": b.symbol,
                    "amount": _fmt(b.amount, 8),
                    "fee": "0",
                    "feeByCoupon": "",
                    "businessType": b.business_type,
                    "coin": "USDT",
                    "balance": "0",
                    "cTime": str(b.time),
                }
                for b in rows
            ],
            "endId": str(rows[-1].bill_id) if rows else None,
        }

    # ------------------------------------------------------------- JSON shapes

    def _order_json(self, order: _Order, pending: bool = False) -> Json:
        spec = CONTRACTS[order.symbol]
        avg = order.quote / order.filled if order.filled else Decimal(0)
        body: Json = {
            "symbol": order.symbol,
            "size": _plain(order.size),
            "orderId": str(order.order_id),
            "clientOid": order.client_oid,
            "baseVolume": _plain(order.filled),
            "fee": _fmt(-order.fee, 8),
            "price": _fmt(order.price, spec.price_place) if order.price else "",
            "priceAvg": _fmt(avg, spec.price_place) if order.filled else "",
            "side": order.side,
            "force": order.force,
            "totalProfits": _fmt(order.profit, 8),
            "posSide": "net",
            "marginCoin": "USDT",
            "presetStopSurplusPrice": "",
            "presetStopLossPrice": "",
            "quoteVolume": _fmt(order.quote, 8),
            "orderType": order.order_type,
            "leverage": str(order.leverage),
            "marginMode": order.margin_mode,
            "reduceOnly": "YES" if order.reduce_only else "NO",
            "enterPointSource": order.source,
            "tradeSide": f"{order.side}_single",
            "posMode": "one_way_mode",
            "orderSource": f"{order.order_type}",
            "cTime": str(order.time),
            "uTime": str(order.update_time),
        }
        body["status" if pending else "state"] = order.state
        return body

    def _plan_json(self, plan: _PlanOrder) -> Json:
        spec = CONTRACTS[plan.symbol]
        return {
            "planType": plan.plan_type,
            "symbol": plan.symbol,
            "size": _plain(plan.size),
            "orderId": str(plan.order_id),
            "clientOid": plan.client_oid,
            "price": _fmt(plan.execute_price, spec.price_place) if plan.execute_price else "",
            "executePrice": _fmt(plan.execute_price, spec.price_place)
            if plan.execute_price
            else "0",
            "callbackRatio": "",
            "triggerPrice": _fmt(plan.trigger_price, spec.price_place),
            "triggerType": plan.trigger_type,
            "planStatus": plan.status,
            "side": plan.side,
            "posSide": "net",
            "marginCoin": "USDT",
            "marginMode": plan.margin_mode,
            "enterPointSource": "API",
            "tradeSide": f"{plan.side}_single",
            "posMode": "one_way_mode",
            "orderType": plan.order_type,
            "reduceOnly": "YES" if plan.reduce_only else "NO",
            "stopSurplusTriggerPrice": "",
            "stopSurplusExecutePrice": "",
            "stopSurplusTriggerType": "",
            "stopLossTriggerPrice": "",
            "stopLossExecutePrice": "",
            "stopLossTriggerType": "",
            "cTime": str(plan.time),
            "uTime": str(plan.update_time),
        }

    def _fill_json(self, fill: _Fill) -> Json:
        spec = CONTRACTS[fill.symbol]
        return {
            "tradeId": str(fill.trade_id),
            "symbol": fill.symbol,
            "orderId": str(fill.order_id),
            "price": _fmt(fill.price, spec.price_place),
            "baseVolume": _plain(fill.size),
            "feeDetail": [
                {
                    "deduction": "no",
                    "feeCoin": "USDT",
                    "totalDeductionFee": None,
                    "totalFee": _fmt(-fill.fee, 8),
                }
            ],
            "side": fill.side,
            "quoteVolume": _fmt(fill.size * fill.price, 8),
            "profit": _fmt(fill.profit, 8),
            "enterPointSource": "API",
            "tradeSide": fill.trade_side,
            "posMode": "one_way_mode",
            "tradeScope": "maker" if fill.maker else "taker",
            "cTime": str(fill.time),
        }


def _contract_json(spec: BitgetContract) -> Json:
    return {
        "symbol": spec.symbol,
        "baseCoin": spec.base,
        "quoteCoin": "USDT",
        "buyLimitPriceRatio": "0.05",
        "sellLimitPriceRatio": "0.05",
        "feeRateUpRatio": "0.005",
        "makerFeeRate": str(_MAKER_FEE),
        "takerFeeRate": str(_TAKER_FEE),
        "openCostUpRatio": "0.01",
        "supportMarginCoins": ["USDT"],
        "minTradeNum": str(spec.min_trade_num),
        "priceEndStep": "1",
        "volumePlace": str(spec.volume_place),
        "pricePlace": str(spec.price_place),
        "sizeMultiplier": str(spec.size_multiplier),
        "symbolType": "perpetual",
        "minTradeUSDT": str(spec.min_trade_usdt),
        "maxSymbolOrderNum": "999999",
        "maxProductOrderNum": "999999",
        "maxPositionNum": "150",
        "symbolStatus": "normal",
        "offTime": "-1",
        "limitOpenTime": "-1",
        "deliveryTime": "",
        "deliveryStartTime": "",
        "deliveryPeriod": "",
        "launchTime": "",
        "fundInterval": "8",
        "minLever": "1",
        "maxLever": str(spec.max_lever),
        "posLimit": "0.05",
        "maintainTime": "",
    }


def _drop(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)
