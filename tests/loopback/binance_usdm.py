"""A loopback Binance USDT-M futures REST server that real ccxt ``binanceusdm`` talks HTTP to.

ccxt signs the requests and parses the replies for real; only the exchange is ours. The server
speaks the fapi subset that ccxt 4.5.90 calls for load_markets, fetch_time, fetch_balance,
set_leverage, set_margin_mode, create_order (plain and conditional), fetch_order, cancel_order,
fetch_open_orders, fetch_positions, fetch_my_trades and fetch_ohlcv, with Binance's field names,
number formatting and error codes, and it simulates a market fed candle by candle.

Simulation rules (what a test can rely on):

- Market orders fill at the last close, moved against the taker by ``slippage`` (a fraction).
- A resting LIMIT order fills at its own price (maker) when a pushed candle trades *through*
  it: a buy when the candle's low is below the price, a sell when the high is above it. A LIMIT
  order that is marketable on arrival fills at once at the last close (taker); with
  timeInForce GTX (post-only) it is EXPIRED instead, as Binance does.
- Conditional orders go to ``/fapi/v1/algoOrder`` (that is where ccxt 4.5.90 sends them).
  STOP_MARKET triggers when the candle reaches the trigger price from the current side,
  TAKE_PROFIT_MARKET from the other side; the triggered market order fills at the trigger price,
  or at the candle's open when the candle gapped past it.
- reduceOnly orders are clipped to the open position and never flip it; a clipped market order
  ends EXPIRED with the position size executed; a resting one whose position is gone EXPIRES.
- Positions are net per symbol (one-way mode) with an average entry price; unrealised PnL is at
  the last close (the mark price here). Wallet = initial + realised - fees (taker 0.05 %,
  maker 0.02 %). A duplicate client order id is refused while any order with that id is known.
- The ``partial_fill`` fault fills the next market order only to ``fraction`` of its quantity;
  the rest stays open as PARTIALLY_FILLED (visible in openOrders, cancellable) and fills at the
  open of the next pushed candle, or, with ``remainder="expire"``, the order ends EXPIRED like a
  Binance market order that ran out of liquidity.

Account behaviours of real accounts (each off by default, switched on by a test):

- ``hedge_mode``: dual-side positions; an order without positionSide LONG/SHORT is refused
  -4061, as Binance does (GET/POST /fapi/v1/positionSide/dual read and switch it).
- ``multi_assets``: Multi-Assets margin; switching a symbol to ISOLATED is refused -4168.
- leverage brackets: leverage above the first bracket is refused -4028, and an order whose
  position would pass the notional cap of the current leverage's bracket -2027.
- the clock (``clock``): a signed request more than recvWindow behind it, or 1 s ahead, is
  refused -1021; ``fapi/v1/time`` tells the truth so a client can measure its offset.
- ``lookup_lag_ms``: an order cannot be found by a query for that long after acceptance
  (-2013), as Binance's query path lags its matching engine.
- client order ids are unique only among open orders: a filled order's id is accepted again.
- fill history (/fapi/v1/userTrades) and income history (/fapi/v1/income) answer at most
  7 days per query, oldest first, ``limit`` rows at most.
- ``pay_funding`` settles funding on open positions (income type FUNDING_FEE, into the
  wallet); ``liquidate`` closes a position by an ``autoclose-`` order, ``deleverage`` by an
  ``adl_autoclose`` one, as Binance names them.
- ``bnb_fees``: commissions are paid in BNB at the BNBUSDT price (BNBUSDT is then listed).
- API key permissions at /sapi/v1/account/apiRestrictions (``key_permissions``).
- the ``overloaded`` fault answers 503 with -1008, as Binance does in busy minutes;
  ``execution_unknown`` applies the request, then answers 503 with -1007 ("execution status
  unknown"), as Binance does when its backend times out.

Every request is recorded in ``requests``; an unknown path is logged, kept in
``unknown_requests`` and answered 404 with a Binance error body, never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from daemon.adapters.ccxt_gateway import point_at_base_url

log = logging.getLogger(__name__)

Json = dict[str, Any]
Number = Decimal | float | int | str
Handler = Callable[[dict[str, str]], tuple[int, Any]]

FAULT_KINDS = frozenset(
    {
        "rate_limited",
        "banned",
        "server_error",
        "slow",
        "timeout",
        "drop",
        "accepted_reply_lost",
        "partial_fill",
        "overloaded",
        "execution_unknown",
    }
)
_TRANSPORT_FAULTS = FAULT_KINDS - {"partial_fill"}
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_INTERVAL_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
_TAKER_FEE = Decimal("0.0005")
_MAKER_FEE = Decimal("0.0002")
_MAX_RECV_WINDOW = 60_000
_WEEK_MS = 7 * 24 * 3600 * 1000


def _d(value: Number) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _fmt(value: Decimal, places: int) -> str:
    """Fixed-point text with `places` decimals, as Binance prints its numbers."""
    quantized = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if quantized == 0:
        quantized = abs(quantized)
    return f"{quantized:f}"


def _plain(value: Decimal) -> str:
    """Shortest exact text (Binance's entryPrice style: "67445.9")."""
    text = f"{value.normalize():f}"
    return "0.0" if value == 0 else text


@dataclass(frozen=True)
class SymbolSpec:
    """Static trading rules of one perpetual, as exchangeInfo publishes them."""

    symbol: str
    base: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    price_precision: int
    quantity_precision: int
    # (notional floor, maintenance margin ratio, max initial leverage) per bracket
    brackets: tuple[tuple[int, Decimal, int], ...]


SYMBOLS: dict[str, SymbolSpec] = {
    "BTCUSDT": SymbolSpec(
        symbol="BTCUSDT",
        base="BTC",
        tick_size=Decimal("0.10"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("1000"),
        market_max_qty=Decimal("120"),
        min_notional=Decimal("100"),
        price_precision=2,
        quantity_precision=3,
        brackets=(
            (0, Decimal("0.004"), 125),
            (50_000, Decimal("0.005"), 100),
            (250_000, Decimal("0.01"), 50),
            (3_000_000, Decimal("0.025"), 20),
            (20_000_000, Decimal("0.05"), 10),
            (40_000_000, Decimal("0.1"), 5),
            (100_000_000, Decimal("0.125"), 4),
            (120_000_000, Decimal("0.15"), 3),
            (200_000_000, Decimal("0.25"), 2),
            (300_000_000, Decimal("0.5"), 1),
        ),
    ),
    "ETHUSDT": SymbolSpec(
        symbol="ETHUSDT",
        base="ETH",
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("10000"),
        market_max_qty=Decimal("2000"),
        min_notional=Decimal("20"),
        price_precision=2,
        quantity_precision=3,
        brackets=(
            (0, Decimal("0.005"), 100),
            (100_000, Decimal("0.0065"), 75),
            (250_000, Decimal("0.01"), 50),
            (2_000_000, Decimal("0.02"), 25),
            (15_000_000, Decimal("0.05"), 10),
            (30_000_000, Decimal("0.1"), 5),
            (60_000_000, Decimal("0.125"), 4),
            (80_000_000, Decimal("0.15"), 3),
            (100_000_000, Decimal("0.25"), 2),
            (150_000_000, Decimal("0.5"), 1),
        ),
    ),
}


BNB_SPEC = SymbolSpec(
    symbol="BNBUSDT",
    base="BNB",
    tick_size=Decimal("0.010"),
    step_size=Decimal("0.01"),
    min_qty=Decimal("0.01"),
    max_qty=Decimal("10000"),
    market_max_qty=Decimal("2000"),
    min_notional=Decimal("5"),
    price_precision=3,
    quantity_precision=2,
    brackets=((0, Decimal("0.005"), 75), (10_000, Decimal("0.01"), 50)),
)


def add_symbol_like(symbol: str, base: str, template: str = "ETHUSDT") -> SymbolSpec:
    """Register one more perpetual with a template's trading rules (benchmarks that need
    many symbols); servers created afterwards list it in exchangeInfo."""
    spec = dataclasses.replace(SYMBOLS[template], symbol=symbol, base=base)
    SYMBOLS[symbol] = spec
    return spec


class BinanceError(Exception):
    """An error reply in Binance's shape: HTTP status plus {"code": ..., "msg": ...}."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg


def _mandatory(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if value == "":
        raise BinanceError(
            400,
            -1102,
            f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
        )
    return value


@dataclass
class Fault:
    """One armed fault: consumed by the next `count` requests that match method and path."""

    kind: str
    path: str | None
    method: str | None
    count: int
    opts: dict[str, Any]

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path == path
        )


class Faults:
    """Faults armed by a test, each consumed by the next matching request."""

    def __init__(self) -> None:
        self._armed: list[Fault] = []
        self.fired: list[tuple[str, str, str]] = []  # (kind, method, path)

    def add(
        self,
        kind: str,
        path: str | None = None,
        method: str | None = None,
        count: int = 1,
        **opts: Any,
    ) -> None:
        """Arm `kind` for the next `count` requests matching `method`/`path` (None: any).

        Options: rate_limited/banned ``retry_after`` (s); server_error ``status`` (503),
        ``body`` (str or dict); slow ``seconds``; timeout ``seconds`` (hold, then drop);
        partial_fill ``fraction`` (0.5) and ``remainder`` ("open" or "expire").
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self._armed.append(Fault(kind, path, method.upper() if method else None, count, opts))

    def pending(self) -> list[Fault]:
        """Faults not consumed yet."""
        return list(self._armed)

    def clear(self) -> None:
        self._armed.clear()

    def take(self, method: str, path: str, kinds: frozenset[str]) -> Fault | None:
        """Consume one use of the first armed fault of `kinds` matching the request."""
        for armed in self._armed:
            if armed.kind in kinds and armed.matches(method, path):
                armed.count -= 1
                if armed.count == 0:
                    self._armed.remove(armed)
                self.fired.append((armed.kind, method, path))
                return Fault(armed.kind, armed.path, armed.method, 1, dict(armed.opts))
        return None


@dataclass
class Candle:
    ts: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass
class _Order:
    order_id: int
    symbol: str
    client_id: str
    side: str
    type: str
    qty: Decimal
    price: Decimal
    stop_price: Decimal
    time_in_force: str
    reduce_only: bool
    time: int
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    update_time: int = 0
    orig_type: str = ""

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed


@dataclass
class _AlgoOrder:
    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    trigger_price: Decimal
    price: Decimal
    time_in_force: str
    reduce_only: bool
    close_position: bool
    create_time: int
    status: str = "NEW"
    update_time: int = 0
    trigger_time: int = 0
    actual_order_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"


@dataclass
class _Trade:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    realized_pnl: Decimal
    commission: Decimal
    time: int
    maker: bool
    commission_asset: str = "USDT"


@dataclass
class _Position:
    qty: Decimal = Decimal(0)  # signed: long > 0, short < 0
    entry: Decimal = Decimal(0)
    update_time: int = 0

    def apply(self, side: str, qty: Decimal, price: Decimal) -> Decimal:
        """Net a fill into the position; return the realised PnL."""
        signed = qty if side == "BUY" else -qty
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            total = abs(self.qty) + qty
            self.entry = (abs(self.qty) * self.entry + qty * price) / total
            self.qty += signed
            return Decimal(0)
        closing = min(qty, abs(self.qty))
        direction = 1 if self.qty > 0 else -1
        realized = closing * (price - self.entry) * direction
        self.qty += signed
        if self.qty == 0:
            self.entry = Decimal(0)
        elif (self.qty > 0) != (direction > 0):  # flipped: the rest opened at this price
            self.entry = price
        return realized


@dataclass
class _Income:
    tran_id: int
    symbol: str
    income_type: str
    income: Decimal
    time: int


@dataclass
class _SymbolState:
    spec: SymbolSpec
    candles: dict[int, Candle] = field(default_factory=dict)
    last: Decimal | None = None
    leverage: int = 20
    margin_type: str = "CROSSED"
    position: _Position = field(default_factory=_Position)


class LoopbackBinance:
    """Binance USDT-M futures over HTTP on 127.0.0.1, for ccxt ``binanceusdm``.

    >>> server = LoopbackBinance("key", "secret")
    >>> base_url = await server.start()   # doctest: +SKIP
    >>> point_ccxt_at(exchange, base_url)  # doctest: +SKIP
    """

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        initial_balance: Number = Decimal("10000"),
        slippage: Number = Decimal(0),
        interval: str = "1m",
        clock: Callable[[], int] | None = None,
        hedge_mode: bool = False,
        multi_assets: bool = False,
        lookup_lag_ms: int = 0,
        bnb_fees: bool = False,
    ) -> None:
        if interval not in _INTERVAL_MS:
            raise ValueError(f"unsupported candle interval {interval!r}")
        self.hedge_mode = hedge_mode
        self.multi_assets = multi_assets
        self.lookup_lag_ms = lookup_lag_ms
        self.bnb_fees = bnb_fees
        self.key_permissions: Json | None = {
            "ipRestrict": True,
            "createTime": 1_700_000_000_000,
            "enableReading": True,
            "enableWithdrawals": False,
            "enableInternalTransfer": False,
            "enableMargin": False,
            "enableFutures": True,
            "permitsUniversalTransfer": False,
            "enableVanillaOptions": False,
            "enableFixApiTrade": False,
            "enableFixReadOnly": False,
            "enableSpotAndMarginTrading": False,
            "enablePortfolioMarginTrading": False,
        }
        self.api_key = api_key
        self.api_secret = api_secret
        self.slippage = _d(slippage)
        self.interval = interval
        self.initial_balance = _d(initial_balance)
        self.faults = Faults()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.unknown_requests: list[tuple[str, str, dict[str, str]]] = []
        self._clock = clock or (lambda: int(time.time() * 1000))
        specs = dict(SYMBOLS)
        if bnb_fees:
            specs[BNB_SPEC.symbol] = BNB_SPEC
        self._symbols = {name: _SymbolState(spec) for name, spec in specs.items()}
        self._realized = Decimal(0)
        self._fees = Decimal(0)
        self._funding = Decimal(0)
        self._bnb_paid = Decimal(0)
        self._incomes: list[_Income] = []
        self._orders: dict[int, _Order] = {}
        self._algo_orders: dict[int, _AlgoOrder] = {}
        self._trades: list[_Trade] = []
        self._next_id = 8_389_765_000
        self._next_trade_id = 5_000_000
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._routes: dict[tuple[str, str], tuple[bool, Handler]] = {
            ("GET", "/fapi/v1/ping"): (False, lambda p: (200, {})),
            ("GET", "/fapi/v1/time"): (False, lambda p: (200, {"serverTime": self._clock()})),
            ("GET", "/fapi/v1/exchangeInfo"): (False, self._exchange_info),
            ("GET", "/fapi/v1/klines"): (False, self._klines),
            ("GET", "/fapi/v1/ticker/price"): (False, self._ticker_price),
            ("GET", "/fapi/v2/ticker/price"): (False, self._ticker_price),
            ("GET", "/fapi/v1/leverageBracket"): (True, self._leverage_bracket),
            ("GET", "/fapi/v2/account"): (True, self._account),
            ("GET", "/fapi/v3/account"): (True, self._account),
            ("GET", "/fapi/v2/positionRisk"): (True, self._position_risk_v2),
            ("GET", "/fapi/v3/positionRisk"): (True, self._position_risk_v3),
            ("POST", "/fapi/v1/leverage"): (True, self._set_leverage),
            ("POST", "/fapi/v1/marginType"): (True, self._set_margin_type),
            ("POST", "/fapi/v1/order"): (True, self._new_order),
            ("GET", "/fapi/v1/order"): (True, self._query_order),
            ("DELETE", "/fapi/v1/order"): (True, self._cancel_order),
            ("GET", "/fapi/v1/openOrder"): (True, self._query_open_order),
            ("GET", "/fapi/v1/openOrders"): (True, self._open_orders),
            ("GET", "/fapi/v1/allOrders"): (True, self._all_orders),
            ("DELETE", "/fapi/v1/allOpenOrders"): (True, self._cancel_all),
            ("GET", "/fapi/v1/userTrades"): (True, self._user_trades),
            ("POST", "/fapi/v1/algoOrder"): (True, self._new_algo_order),
            ("GET", "/fapi/v1/algoOrder"): (True, self._query_algo_order),
            ("DELETE", "/fapi/v1/algoOrder"): (True, self._cancel_algo_order),
            ("GET", "/fapi/v1/openAlgoOrders"): (True, self._open_algo_orders),
            ("GET", "/fapi/v1/positionSide/dual"): (True, self._position_mode),
            ("POST", "/fapi/v1/positionSide/dual"): (True, self._set_position_mode),
            ("GET", "/fapi/v1/multiAssetsMargin"): (True, self._multi_assets_mode),
            ("GET", "/fapi/v1/income"): (True, self._income),
            ("GET", "/sapi/v1/account/apiRestrictions"): (True, self._api_restrictions),
        }
        # The user-data stream's listen key: the API key header only, no signature.
        self._key_only_routes: dict[tuple[str, str], Handler] = {
            ("POST", "/fapi/v1/listenKey"): self._new_listen_key,
            ("PUT", "/fapi/v1/listenKey"): self._keep_listen_key,
            ("DELETE", "/fapi/v1/listenKey"): self._close_listen_key,
        }
        self.listen_keys: dict[str, int] = {}  # listen key -> when it expires (server ms)
        self.listen_key_requests: list[str] = []  # POST, PUT, DELETE as they came

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; return the base URL (no trailing slash)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # port 0: the OS picks a free one
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def close(self) -> None:
        """Wake held requests, stop listening and release the port."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------- test surface

    @property
    def endpoints(self) -> list[tuple[str, str]]:
        """(method, path) of every endpoint the server answers."""
        return sorted(self._routes)

    def push_candle(
        self,
        symbol: str,
        ts_ms: int,
        o: Number,
        h: Number,
        low: Number,
        c: Number,
        v: Number,
    ) -> None:
        """Trade one candle: fill resting orders it trades through, then close at `c`."""
        state = self._state(symbol)
        candle = Candle(ts_ms, _d(o), _d(h), _d(low), _d(c), _d(v))
        state.candles[ts_ms] = candle
        now = self._clock()
        for algo in sorted(self._algo_orders.values(), key=lambda a: a.algo_id):
            if algo.symbol == symbol and algo.is_open:
                self._maybe_trigger(algo, candle, now)
        for order in sorted(self._orders.values(), key=lambda o: o.order_id):
            if order.symbol != symbol or not order.is_open:
                continue
            if order.type == "MARKET":  # the rest of a partially filled market order
                self._fill_taker(order, candle.open, now)
            elif order.type == "LIMIT":
                through = (order.side == "BUY" and candle.low < order.price) or (
                    order.side == "SELL" and candle.high > order.price
                )
                if through:
                    self._fill(order, order.remaining, order.price, maker=True, now=now)
        state.last = candle.close
        self._refresh_algo_status()

    def last_price(self, symbol: str) -> Decimal | None:
        return self._state(symbol).last

    def position(self, symbol: str) -> tuple[Decimal, Decimal]:
        """(signed quantity, entry price) of the net position."""
        pos = self._state(symbol).position
        return pos.qty, pos.entry

    @property
    def wallet_balance(self) -> Decimal:
        """Initial balance + realised PnL - USDT fees + funding (BNB fees leave it alone)."""
        return self.initial_balance + self._realized - self._fees + self._funding

    @property
    def bnb_paid(self) -> Decimal:
        """Commission paid in BNB (with ``bnb_fees``)."""
        return self._bnb_paid

    def incomes(self) -> list[Json]:
        """Every income record, in the shape of /fapi/v1/income."""
        return [self._income_json(i) for i in self._incomes]

    def shift_history(self, ms: int) -> None:
        """Move every order and fill `ms` in time (negative: into the past), as if the
        account had traded then: a test's way to make a bot idle for days."""
        for order in self._orders.values():
            order.time += ms
            order.update_time += ms
        for trade in self._trades:
            trade.time += ms
        for income in self._incomes:
            income.time += ms

    def pay_funding(self, symbol: str, rate: Number) -> Decimal:
        """Settle funding on `symbol`'s position at `rate` (longs pay a positive rate);
        returns the income (negative: paid)."""
        state = self._state(symbol)
        mark = state.last or state.position.entry
        income = -(state.position.qty * mark * _d(rate)).quantize(Decimal("0.00000001"))
        if state.position.qty == 0:
            return Decimal(0)
        self._funding += income
        self._next_trade_id += 1
        self._incomes.append(
            _Income(self._next_trade_id, symbol, "FUNDING_FEE", income, self._clock())
        )
        self._on_account_event("FUNDING_FEE")
        return income

    def _on_account_event(self, reason: str) -> None:
        """The wallet or a position changed (the user-data stream publishes it)."""

    def liquidate(self, symbol: str, price: Number, *, adl: bool = False) -> str:
        """Close `symbol`'s whole position at `price` by the exchange's own order (a
        liquidation, or with `adl` an auto-deleveraging); returns its client order id."""
        state = self._state(symbol)
        qty = state.position.qty
        if qty == 0:
            raise ValueError(f"no position on {symbol} to liquidate")
        now = self._clock()
        prefix = "adl_autoclose" if adl else "autoclose-"
        order = _Order(
            order_id=self._next(),
            symbol=symbol,
            client_id=f"{prefix}{now}",
            side="SELL" if qty > 0 else "BUY",
            type="LIMIT",
            qty=abs(qty),
            price=_d(price),
            stop_price=Decimal(0),
            time_in_force="IOC",
            reduce_only=True,
            time=now,
            update_time=now,
            orig_type="LIMIT",
        )
        self._orders[order.order_id] = order
        self._fill(order, order.qty, order.price, maker=False, now=now)
        self._on_order_event(order)
        return order.client_id

    def orders_by_client_id(self) -> dict[str, Json]:
        """Every order the exchange holds (any status), in Binance's shape, by clientOrderId."""
        return {o.client_id: self._order_json(o) for o in self._orders.values()}

    def algo_orders_by_client_id(self) -> dict[str, Json]:
        """Every conditional (algo) order, in Binance's shape, by clientAlgoId."""
        return {a.client_algo_id: self._algo_json(a) for a in self._algo_orders.values()}

    def trades(self) -> list[Json]:
        """Every fill, in the shape of /fapi/v1/userTrades."""
        return [self._trade_json(t) for t in self._trades]

    # ------------------------------------------------------------------ HTTP

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        path = request.path
        raw_query = request.rel_url.raw_query_string
        raw_body = await request.text() if request.can_read_body else ""
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update(parse_qsl(raw_body, keep_blank_values=True))
        self.requests.append((method, path, params))

        fault = self.faults.take(method, path, _TRANSPORT_FAULTS)
        if fault is not None:
            early = await self._apply_fault(fault, request)
            if early is not None:
                return early

        key_only = self._key_only_routes.get((method, path))
        if key_only is not None:
            if request.headers.get("X-MBX-APIKEY") != self.api_key:
                return _json_reply(401, {"code": -2015, "msg": "Invalid API-key."})
            try:
                status, payload = key_only(params)
            except BinanceError as e:
                status, payload = e.status, {"code": e.code, "msg": e.msg}
            return _json_reply(status, payload)
        route = self._routes.get((method, path))
        if route is None:
            log.warning("unknown_endpoint_requested method=%s path=%s", method, path)
            self.unknown_requests.append((method, path, params))
            return _json_reply(404, {"code": -1000, "msg": f"Unknown endpoint {method} {path}"})
        private, handler = route
        try:
            if private:
                self._authenticate(request, raw_query, raw_body, params)
            status, payload = handler(params)
        except BinanceError as e:
            status, payload = e.status, {"code": e.code, "msg": e.msg}
        if fault is not None and fault.kind == "accepted_reply_lost":
            return self._drop(request)
        if fault is not None and fault.kind == "execution_unknown":
            body = {
                "code": -1007,
                "msg": "Timeout waiting for response from backend server. Send status unknown; "
                "execution status unknown.",
            }
            return _json_reply(503, body)
        return _json_reply(status, payload)

    async def _apply_fault(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        """Answer for a transport fault, or None to carry on (slow, accepted_reply_lost)."""
        kind, opts = fault.kind, fault.opts
        if kind == "rate_limited":
            retry_after = str(opts.get("retry_after", 1))
            body = {
                "code": -1003,
                "msg": "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per "
                "minute. Please use the websocket for live updates to avoid polling the API.",
            }
            return _json_reply(429, body, {"Retry-After": retry_after})
        if kind == "banned":
            ban_seconds = int(opts.get("retry_after", 120))
            until = self._clock() + ban_seconds * 1000
            body = {
                "code": -1003,
                "msg": f"Way too many requests; IP(127.0.0.1) banned until {until}. "
                "Please use the websocket for live updates to avoid bans.",
            }
            return _json_reply(418, body, {"Retry-After": str(ban_seconds)})
        if kind == "server_error":
            status = int(opts.get("status", 503))
            raw = opts.get("body", "Service Unavailable")
            if isinstance(raw, dict):
                return _json_reply(status, raw)
            return web.Response(status=status, text=str(raw), content_type="text/html")
        if kind == "overloaded":
            body = {
                "code": -1008,
                "msg": "Server is currently overloaded with other requests. Please try again "
                "in a few minutes.",
            }
            return _json_reply(503, body)
        if kind == "slow":
            await self._hold(float(opts.get("seconds", 0.2)))
            return None
        if kind == "timeout":
            await self._hold(float(opts.get("seconds", 2.0)))
            return self._drop(request)
        if kind == "drop":
            return self._drop(request)
        return None  # accepted_reply_lost, execution_unknown: apply first, answer after

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        # Closing the transport before aiohttp writes makes the client see the connection end
        # without a reply; the write of this placeholder then fails quietly inside aiohttp.
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=204)

    def _authenticate(
        self, request: web.Request, raw_query: str, raw_body: str, params: dict[str, str]
    ) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        timestamp = int(_mandatory(params, "timestamp"))
        recv_window = int(params.get("recvWindow") or 5000)
        if recv_window > _MAX_RECV_WINDOW:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        now = self._clock()
        if timestamp >= now + 1000 or now - timestamp > recv_window:
            raise BinanceError(
                400, -1021, "Timestamp for this request is outside of the recvWindow."
            )
        signature = _mandatory(params, "signature")
        # Binance signs totalParams = query string + request body, exactly as sent.
        total = _strip_signature(raw_query) + _strip_signature(raw_body)
        expected = hmac.new(self.api_secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            raise BinanceError(401, -1022, "Signature for this request is not valid.")

    # ----------------------------------------------------------- market data

    def _state(self, symbol: str) -> _SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return state

    def _exchange_info(self, params: dict[str, str]) -> tuple[int, Any]:
        symbols = [_symbol_info(state.spec) for state in self._symbols.values()]
        return 200, {
            "timezone": "UTC",
            "serverTime": self._clock(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
            ],
            "symbols": symbols,
        }

    def _klines(self, params: dict[str, str]) -> tuple[int, Any]:
        state = self._state(_mandatory(params, "symbol"))
        interval = _mandatory(params, "interval")
        if interval not in _INTERVAL_MS:
            raise BinanceError(400, -1120, "Invalid interval.")
        if interval != self.interval:
            # The server keeps only the candles it was fed; it does not resample them.
            raise BinanceError(
                400, -1120, f"Invalid interval. This loopback serves {self.interval}"
            )
        limit = min(int(params.get("limit") or 500), 1500)
        start = int(params["startTime"]) if params.get("startTime") else None
        end = int(params["endTime"]) if params.get("endTime") else None
        rows = [
            c
            for ts, c in sorted(state.candles.items())
            if (start is None or ts >= start) and (end is None or ts <= end)
        ]
        rows = rows[:limit] if start is not None else rows[-limit:]
        pp, qp = state.spec.price_precision, state.spec.quantity_precision
        step = _INTERVAL_MS[interval]
        return 200, [
            [
                c.ts,
                _fmt(c.open, pp),
                _fmt(c.high, pp),
                _fmt(c.low, pp),
                _fmt(c.close, pp),
                _fmt(c.volume, qp),
                c.ts + step - 1,
                _fmt(c.volume * c.close, 5),
                1 if c.volume > 0 else 0,
                _fmt(c.volume / 2, qp),
                _fmt(c.volume * c.close / 2, 5),
                "0",
            ]
            for c in rows
        ]

    def _ticker_price(self, params: dict[str, str]) -> tuple[int, Any]:
        def entry(state: _SymbolState) -> Json:
            price = state.last if state.last is not None else Decimal(0)
            return {
                "symbol": state.spec.symbol,
                "price": _fmt(price, state.spec.price_precision),
                "time": self._clock(),
            }

        if params.get("symbol"):
            return 200, entry(self._state(params["symbol"]))
        return 200, [entry(s) for s in self._symbols.values()]

    # --------------------------------------------------------------- account

    def _leverage_bracket(self, params: dict[str, str]) -> tuple[int, Any]:
        wanted = params.get("symbol")
        result = []
        for state in self._symbols.values():
            if wanted and state.spec.symbol != wanted:
                continue
            result.append({"symbol": state.spec.symbol, "brackets": _brackets(state.spec)})
        if wanted and not result:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return 200, result

    def _set_leverage(self, params: dict[str, str]) -> tuple[int, Any]:
        state = self._state(_mandatory(params, "symbol"))
        leverage = int(_mandatory(params, "leverage"))
        if not 1 <= leverage <= state.spec.brackets[0][2]:
            raise BinanceError(400, -4028, f"Leverage {leverage} is not valid")
        state.leverage = leverage
        return 200, {
            "leverage": leverage,
            "maxNotionalValue": str(_max_notional(state.spec, leverage)),
            "symbol": state.spec.symbol,
        }

    def _set_margin_type(self, params: dict[str, str]) -> tuple[int, Any]:
        state = self._state(_mandatory(params, "symbol"))
        margin_type = _mandatory(params, "marginType").upper()
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise BinanceError(400, -4044, "The margin type is invalid.")
        if margin_type == state.margin_type:
            raise BinanceError(400, -4046, "No need to change margin type.")
        if margin_type == "ISOLATED" and self.multi_assets:
            raise BinanceError(
                400, -4168, "Unable to adjust to isolated-margin mode under the Multi-Assets mode."
            )
        if state.position.qty != 0:
            raise BinanceError(
                400, -4048, "Margin type cannot be changed if there exists position."
            )
        if any(o.is_open for o in self._orders.values() if o.symbol == state.spec.symbol):
            raise BinanceError(
                400, -4047, "Margin type cannot be changed if there exists open orders."
            )
        state.margin_type = margin_type
        return 200, {"code": 200, "msg": "success"}

    def _position_numbers(self, state: _SymbolState) -> dict[str, Decimal]:
        pos = state.position
        mark = state.last if state.last is not None else pos.entry
        notional = pos.qty * mark
        unrealized = pos.qty * (mark - pos.entry)
        initial = abs(notional) / state.leverage
        mmr = _maint_ratio(state.spec, abs(notional))
        isolated_wallet = (
            abs(pos.qty) * pos.entry / state.leverage if state.margin_type == "ISOLATED" else 0
        )
        liquidation = Decimal(0)
        if pos.qty != 0:
            # Isolated approximation; good enough to be a plausible, non-zero number.
            move = Decimal(1) / state.leverage - mmr
            liquidation = pos.entry * (1 - move) if pos.qty > 0 else pos.entry * (1 + move)
        break_even = pos.entry * (1 + _TAKER_FEE) if pos.qty > 0 else pos.entry * (1 - _TAKER_FEE)
        return {
            "mark": mark,
            "notional": notional,
            "unrealized": unrealized,
            "initial": initial,
            "maint": abs(notional) * mmr,
            "isolated_wallet": Decimal(isolated_wallet),
            "liquidation": max(liquidation, Decimal(0)),
            "break_even": break_even if pos.qty != 0 else Decimal(0),
        }

    def _open_order_margin(self, state: _SymbolState) -> Decimal:
        total = Decimal(0)
        for o in self._orders.values():
            if o.symbol == state.spec.symbol and o.is_open and not o.reduce_only:
                price = o.price if o.price > 0 else (state.last or Decimal(0))
                total += o.remaining * price / state.leverage
        return total

    def _position_v3(self, state: _SymbolState) -> Json:
        n = self._position_numbers(state)
        pos, spec = state.position, state.spec
        isolated = state.margin_type == "ISOLATED"
        return {
            "symbol": spec.symbol,
            "positionSide": "BOTH",
            "positionAmt": _fmt(pos.qty, spec.quantity_precision),
            "entryPrice": _plain(pos.entry),
            "breakEvenPrice": _plain(n["break_even"]),
            "markPrice": _fmt(n["mark"], 8),
            "unRealizedProfit": _fmt(n["unrealized"], 8),
            "liquidationPrice": _fmt(n["liquidation"], 8),
            "isolatedMargin": _fmt(n["isolated_wallet"] + n["unrealized"], 8) if isolated else "0",
            "notional": _fmt(n["notional"], 8),
            "marginAsset": "USDT",
            "isolatedWallet": _fmt(n["isolated_wallet"], 8) if isolated else "0",
            "initialMargin": _fmt(n["initial"], 8),
            "maintMargin": _fmt(n["maint"], 8),
            "positionInitialMargin": _fmt(n["initial"], 8),
            "openOrderInitialMargin": _fmt(self._open_order_margin(state), 8),
            "adl": 1 if pos.qty != 0 else 0,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": pos.update_time,
        }

    def _position_risk_v3(self, params: dict[str, str]) -> tuple[int, Any]:
        # v3 lists only symbols with a position or open orders.
        result = []
        for state in self._selected(params):
            has_orders = any(
                o.is_open for o in self._orders.values() if o.symbol == state.spec.symbol
            )
            if state.position.qty != 0 or has_orders:
                result.append(self._position_v3(state))
        return 200, result

    def _position_risk_v2(self, params: dict[str, str]) -> tuple[int, Any]:
        result = []
        for state in self._selected(params):
            v3 = self._position_v3(state)
            result.append(
                {
                    "symbol": v3["symbol"],
                    "positionAmt": v3["positionAmt"],
                    "entryPrice": v3["entryPrice"],
                    "breakEvenPrice": v3["breakEvenPrice"],
                    "markPrice": v3["markPrice"],
                    "unRealizedProfit": v3["unRealizedProfit"],
                    "liquidationPrice": v3["liquidationPrice"],
                    "leverage": str(state.leverage),
                    "maxNotionalValue": str(_max_notional(state.spec, state.leverage)),
                    "marginType": "isolated" if state.margin_type == "ISOLATED" else "cross",
                    "isolatedMargin": v3["isolatedMargin"],
                    "isAutoAddMargin": "false",
                    "positionSide": "BOTH",
                    "notional": v3["notional"],
                    "isolatedWallet": v3["isolatedWallet"],
                    "updateTime": v3["updateTime"],
                }
            )
        return 200, result

    def _selected(self, params: dict[str, str]) -> list[_SymbolState]:
        if params.get("symbol"):
            return [self._state(params["symbol"])]
        return list(self._symbols.values())

    def _account(self, params: dict[str, str]) -> tuple[int, Any]:
        wallet = self.wallet_balance
        unrealized = Decimal(0)
        position_margin = Decimal(0)
        order_margin = Decimal(0)
        maint = Decimal(0)
        isolated_wallets = Decimal(0)
        isolated_unrealized = Decimal(0)
        positions = []
        for state in self._symbols.values():
            n = self._position_numbers(state)
            unrealized += n["unrealized"]
            position_margin += n["initial"]
            order_margin += self._open_order_margin(state)
            maint += n["maint"]
            if state.margin_type == "ISOLATED":
                isolated_wallets += n["isolated_wallet"]
                isolated_unrealized += n["unrealized"]
            if state.position.qty != 0:
                v3 = self._position_v3(state)
                positions.append(
                    {
                        key: v3[key]
                        for key in (
                            "symbol",
                            "positionSide",
                            "positionAmt",
                            "isolatedMargin",
                            "notional",
                            "isolatedWallet",
                            "initialMargin",
                            "maintMargin",
                            "updateTime",
                        )
                    }
                    | {"unrealizedProfit": v3["unRealizedProfit"]}
                )
        initial = position_margin + order_margin
        margin_balance = wallet + unrealized
        cross_wallet = wallet - isolated_wallets
        cross_unrealized = unrealized - isolated_unrealized
        available = max(cross_wallet + cross_unrealized - initial + isolated_wallets, Decimal(0))
        update_time = max(
            [s.position.update_time for s in self._symbols.values()] + [self._clock()]
        )

        def m(value: Decimal) -> str:
            return _fmt(value, 8)

        usdt = {
            "asset": "USDT",
            "walletBalance": m(wallet),
            "unrealizedProfit": m(unrealized),
            "marginBalance": m(margin_balance),
            "maintMargin": m(maint),
            "initialMargin": m(initial),
            "positionInitialMargin": m(position_margin),
            "openOrderInitialMargin": m(order_margin),
            "crossWalletBalance": m(cross_wallet),
            "crossUnPnl": m(cross_unrealized),
            "availableBalance": m(available),
            "maxWithdrawAmount": m(min(available, wallet)),
            "marginAvailable": True,
            "updateTime": update_time,
        }
        return 200, {
            "feeTier": 0,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "tradeGroupId": -1,
            "updateTime": 0,
            "multiAssetsMargin": self.multi_assets,
            "totalInitialMargin": m(initial),
            "totalMaintMargin": m(maint),
            "totalWalletBalance": m(wallet),
            "totalUnrealizedProfit": m(unrealized),
            "totalMarginBalance": m(margin_balance),
            "totalPositionInitialMargin": m(position_margin),
            "totalOpenOrderInitialMargin": m(order_margin),
            "totalCrossWalletBalance": m(cross_wallet),
            "totalCrossUnPnl": m(cross_unrealized),
            "availableBalance": m(available),
            "maxWithdrawAmount": m(min(available, wallet)),
            "assets": [usdt],
            "positions": positions,
        }

    # ---------------------------------------------------------------- orders

    def _next(self) -> int:
        self._next_id += 1
        return self._next_id

    def _check_quantity(self, spec: SymbolSpec, raw: str, market: bool) -> Decimal:
        qty = _d(raw)
        if qty <= 0:
            raise BinanceError(400, -4003, "Quantity less than or equal to zero.")
        if qty % spec.step_size != 0:
            raise BinanceError(400, -1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty:
            raise BinanceError(400, -4004, "Quantity less than min quantity.")
        if qty > (spec.market_max_qty if market else spec.max_qty):
            raise BinanceError(400, -4005, "Quantity greater than max quantity.")
        return qty

    def _check_price(self, spec: SymbolSpec, raw: str) -> Decimal:
        price = _d(raw)
        if price <= 0:
            raise BinanceError(400, -4001, "Price less than 0.")
        if price % spec.tick_size != 0:
            raise BinanceError(400, -4014, "Price not increased by tick size.")
        return price

    def _reducible(self, symbol: str, side: str) -> Decimal:
        qty = self._state(symbol).position.qty
        if side == "SELL" and qty > 0:
            return qty
        if side == "BUY" and qty < 0:
            return -qty
        return Decimal(0)

    def _check_margin(self, state: _SymbolState, side: str, qty: Decimal, price: Decimal) -> None:
        increase = qty - self._reducible(state.spec.symbol, side)
        if increase <= 0:
            return
        _, account = self._account({})
        if _d(account["availableBalance"]) < increase * price / state.leverage:
            raise BinanceError(400, -2019, "Margin is insufficient.")

    def _check_bracket(self, state: _SymbolState, side: str, qty: Decimal, price: Decimal) -> None:
        signed = qty if side == "BUY" else -qty
        notional = abs(state.position.qty + signed) * price
        if notional > _max_notional(state.spec, state.leverage):
            raise BinanceError(
                400, -2027, "Exceeded the maximum allowable position at current leverage."
            )

    def _new_order(self, params: dict[str, str]) -> tuple[int, Any]:
        state = self._state(_mandatory(params, "symbol"))
        spec = state.spec
        side = _mandatory(params, "side").upper()
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        order_type = _mandatory(params, "type").upper()
        if order_type not in ("MARKET", "LIMIT"):
            if order_type in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"):
                raise BinanceError(
                    400,
                    -4120,
                    "Order type not supported for this endpoint. Please use the Algo Order API "
                    "endpoints instead.",
                )
            raise BinanceError(400, -1116, "Invalid orderType.")
        position_side = params.get("positionSide", "BOTH").upper()
        if (position_side == "BOTH") == self.hedge_mode:
            raise BinanceError(400, -4061, "Order's position side does not match user's setting.")
        if self.hedge_mode:
            raise BinanceError(400, -4061, "This loopback trades one-way mode only.")
        client_id = params.get("newClientOrderId") or f"loopback-{self._next_id + 1}"
        if not _CLIENT_ID.match(client_id):
            raise BinanceError(
                400,
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        if any(o.client_id == client_id and o.is_open for o in self._orders.values()):
            raise BinanceError(400, -4116, "ClientOrderId is duplicated.")
        market = order_type == "MARKET"
        qty = self._check_quantity(spec, _mandatory(params, "quantity"), market)
        reduce_only = params.get("reduceOnly", "false").lower() == "true"
        price = Decimal(0)
        time_in_force = "GTC"
        if not market:
            price = self._check_price(spec, _mandatory(params, "price"))
            time_in_force = _mandatory(params, "timeInForce").upper()
            if time_in_force not in ("GTC", "IOC", "FOK", "GTX", "GTD"):
                raise BinanceError(400, -1115, "Invalid timeInForce.")
        if market and state.last is None:
            raise BinanceError(400, -1000, "No market price yet: push a candle first.")
        reference = price if not market else state.last or Decimal(0)
        if not reduce_only and qty * reference < spec.min_notional:
            raise BinanceError(
                400,
                -4164,
                f"Order's notional must be no smaller than {spec.min_notional} "
                "(unless you choose reduce only).",
            )
        if reduce_only and self._reducible(spec.symbol, side) == 0:
            raise BinanceError(400, -2022, "ReduceOnly Order is rejected.")
        if not reduce_only:
            self._check_bracket(state, side, qty, reference)
            self._check_margin(state, side, qty, reference)
        now = self._clock()
        order = _Order(
            order_id=self._next(),
            symbol=spec.symbol,
            client_id=client_id,
            side=side,
            type=order_type,
            qty=qty,
            price=price,
            stop_price=Decimal(0),
            time_in_force=time_in_force,
            reduce_only=reduce_only,
            time=now,
            update_time=now,
            orig_type=order_type,
        )
        self._orders[order.order_id] = order
        if market:
            partial = self.faults.take("POST", "/fapi/v1/order", frozenset({"partial_fill"}))
            self._execute_market(order, state, partial, now)
        else:
            marketable = state.last is not None and (
                (side == "BUY" and price >= state.last) or (side == "SELL" and price <= state.last)
            )
            if marketable and time_in_force == "GTX":
                order.status = "EXPIRED"
            elif marketable and state.last is not None:
                self._fill_taker(order, state.last, now)
            elif time_in_force in ("IOC", "FOK"):
                order.status = "EXPIRED"
        self._on_order_event(order)
        return 200, self._order_json(order, created=True)

    def _on_order_event(self, order: _Order) -> None:
        """An order was created or changed (the user-data stream publishes it)."""

    def _execute_market(
        self, order: _Order, state: _SymbolState, partial: Fault | None, now: int
    ) -> None:
        assert state.last is not None
        if partial is None:
            self._fill_taker(order, state.last, now)
            return
        fraction = _d(partial.opts.get("fraction", "0.5"))
        qty = (order.qty * fraction).quantize(state.spec.step_size, rounding=ROUND_DOWN)
        if qty > 0:
            self._fill(order, qty, self._slipped(order.side, state.last), maker=False, now=now)
        if partial.opts.get("remainder", "open") == "expire":
            order.status = "EXPIRED"
        elif order.executed > 0:
            order.status = "PARTIALLY_FILLED"

    def _slipped(self, side: str, price: Decimal) -> Decimal:
        return price * (1 + self.slippage) if side == "BUY" else price * (1 - self.slippage)

    def _fill_taker(self, order: _Order, price: Decimal, now: int) -> None:
        """Fill what is left of `order` at `price` (moved by slippage for market orders)."""
        fill_price = self._slipped(order.side, price) if order.type == "MARKET" else price
        self._fill(order, order.remaining, fill_price, maker=False, now=now)

    def _fill(self, order: _Order, qty: Decimal, price: Decimal, *, maker: bool, now: int) -> None:
        state = self._state(order.symbol)
        if order.reduce_only:
            reducible = self._reducible(order.symbol, order.side)
            if reducible < qty:
                qty = reducible
                order.status = "EXPIRED"  # never flip: the excess is dropped
        if qty <= 0:
            order.update_time = now
            return
        price = price.quantize(state.spec.tick_size) if order.type == "MARKET" else price
        realized = state.position.apply(order.side, qty, price)
        state.position.update_time = now
        commission = (qty * price * (_MAKER_FEE if maker else _TAKER_FEE)).quantize(
            Decimal("0.00000001")
        )
        commission_asset = "USDT"
        bnb = self._symbols.get(BNB_SPEC.symbol)
        if self.bnb_fees and bnb is not None and bnb.last:
            commission = (commission / bnb.last).quantize(Decimal("0.00000001"))
            commission_asset = "BNB"
            self._bnb_paid += commission
        else:
            self._fees += commission
        self._realized += realized
        self._next_trade_id += 1
        self._trades.append(
            _Trade(
                trade_id=self._next_trade_id,
                order_id=order.order_id,
                symbol=order.symbol,
                side=order.side,
                price=price,
                qty=qty,
                realized_pnl=realized,
                commission=commission,
                time=now,
                maker=maker,
                commission_asset=commission_asset,
            )
        )
        order.executed += qty
        order.cum_quote += qty * price
        order.update_time = now
        if order.status != "EXPIRED":
            order.status = "FILLED" if order.executed == order.qty else "PARTIALLY_FILLED"
        self._on_trade(order, self._trades[-1])

    def _on_trade(self, order: _Order, trade: _Trade) -> None:
        """An order traded (the user-data stream publishes it)."""

    def _find_order(self, params: dict[str, str]) -> _Order | None:
        symbol = _mandatory(params, "symbol")
        self._state(symbol)
        order: _Order | None = None
        if params.get("orderId"):
            order = self._orders.get(int(params["orderId"]))
        elif params.get("origClientOrderId"):
            wanted = params["origClientOrderId"]
            same = [o for o in self._orders.values() if o.client_id == wanted]
            order = max(same, key=lambda o: o.order_id) if same else None
        else:
            raise BinanceError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if order is not None and order.symbol != symbol:
            return None
        if order is not None and self._clock() - order.time < self.lookup_lag_ms:
            return None  # accepted, but the query path has not caught up yet
        return order

    def _query_order(self, params: dict[str, str]) -> tuple[int, Any]:
        order = self._find_order(params)
        if order is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return 200, self._order_json(order)

    def _query_open_order(self, params: dict[str, str]) -> tuple[int, Any]:
        order = self._find_order(params)
        if order is None or not order.is_open:
            raise BinanceError(400, -2013, "Order does not exist.")
        return 200, self._order_json(order)

    def _cancel_order(self, params: dict[str, str]) -> tuple[int, Any]:
        order = self._find_order(params)
        if order is None or not order.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.update_time = self._clock()
        self._on_order_event(order)
        return 200, self._order_json(order, created=True)

    def _cancel_all(self, params: dict[str, str]) -> tuple[int, Any]:
        symbol = self._state(_mandatory(params, "symbol")).spec.symbol
        now = self._clock()
        for order in self._orders.values():
            if order.symbol == symbol and order.is_open:
                order.status = "CANCELED"
                order.update_time = now
        return 200, {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _open_orders(self, params: dict[str, str]) -> tuple[int, Any]:
        symbol = params.get("symbol")
        if symbol:
            self._state(symbol)
        return 200, [
            self._order_json(o)
            for o in sorted(self._orders.values(), key=lambda o: o.order_id)
            if o.is_open and (not symbol or o.symbol == symbol)
        ]

    def _all_orders(self, params: dict[str, str]) -> tuple[int, Any]:
        symbol = self._state(_mandatory(params, "symbol")).spec.symbol
        limit = min(int(params.get("limit") or 500), 1000)
        orders = [o for o in sorted(self._orders.values(), key=lambda o: o.order_id)]
        return 200, [self._order_json(o) for o in orders if o.symbol == symbol][-limit:]

    def _window(self, params: dict[str, str]) -> tuple[int, int]:
        """Binance's history window: at most 7 days; by default the last 7 days."""
        start = int(params["startTime"]) if params.get("startTime") else None
        end = int(params["endTime"]) if params.get("endTime") else None
        if start is not None and end is not None:
            if end - start > _WEEK_MS:
                raise BinanceError(400, -1127, "More than 168 hours between startTime and endTime.")
            return start, end
        if start is not None:
            return start, start + _WEEK_MS
        if end is not None:
            return end - _WEEK_MS, end
        now = self._clock()
        return now - _WEEK_MS, now

    def _user_trades(self, params: dict[str, str]) -> tuple[int, Any]:
        symbol = self._state(_mandatory(params, "symbol")).spec.symbol
        from_id = int(params["fromId"]) if params.get("fromId") else None
        order_id = int(params["orderId"]) if params.get("orderId") else None
        limit = min(int(params.get("limit") or 500), 1000)
        if from_id is not None and (params.get("startTime") or params.get("endTime")):
            raise BinanceError(400, -1128, "fromId cannot be sent with startTime or endTime.")
        start, end = self._window(params) if from_id is None else (0, 2**63)
        rows = [
            t
            for t in sorted(self._trades, key=lambda t: (t.time, t.trade_id))
            if t.symbol == symbol
            and start <= t.time <= end
            and (from_id is None or t.trade_id >= from_id)
            and (order_id is None or t.order_id == order_id)
        ]
        return 200, [self._trade_json(t) for t in rows[:limit]]

    def _income(self, params: dict[str, str]) -> tuple[int, Any]:
        symbol = params.get("symbol")
        if symbol:
            self._state(symbol)
        income_type = params.get("incomeType")
        limit = min(int(params.get("limit") or 100), 1000)
        start, end = self._window(params)
        rows = [
            i
            for i in sorted(self._incomes, key=lambda i: (i.time, i.tran_id))
            if (not symbol or i.symbol == symbol)
            and (not income_type or i.income_type == income_type)
            and start <= i.time <= end
        ]
        return 200, [self._income_json(i) for i in rows[:limit]]

    def _income_json(self, income: _Income) -> Json:
        return {
            "symbol": income.symbol,
            "incomeType": income.income_type,
            "income": _fmt(income.income, 8),
            "asset": "USDT",
            "info": income.income_type,
            "time": income.time,
            "tranId": income.tran_id,
            "tradeId": "",
        }

    def _new_listen_key(self, params: dict[str, str]) -> tuple[int, Any]:
        """One key per account, as Binance: asking again extends and returns the same one."""
        self.listen_key_requests.append("POST")
        key = next(iter(self.listen_keys), None) or f"lk{self._next()}loopback"
        self.listen_keys[key] = self._clock() + 3_600_000
        return 200, {"listenKey": key}

    def _keep_listen_key(self, params: dict[str, str]) -> tuple[int, Any]:
        self.listen_key_requests.append("PUT")
        if not self.listen_keys:
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        for key in self.listen_keys:
            self.listen_keys[key] = self._clock() + 3_600_000
        return 200, {}

    def _close_listen_key(self, params: dict[str, str]) -> tuple[int, Any]:
        self.listen_key_requests.append("DELETE")
        self.listen_keys.clear()
        return 200, {}

    def _position_mode(self, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {"dualSidePosition": self.hedge_mode}

    def _set_position_mode(self, params: dict[str, str]) -> tuple[int, Any]:
        hedge = _mandatory(params, "dualSidePosition").lower() == "true"
        if hedge == self.hedge_mode:
            raise BinanceError(400, -4059, "No need to change position side.")
        if any(s.position.qty != 0 for s in self._symbols.values()):
            raise BinanceError(
                400, -4068, "Position side cannot be changed if there exists position."
            )
        self.hedge_mode = hedge
        return 200, {"code": 200, "msg": "success"}

    def _multi_assets_mode(self, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {"multiAssetsMargin": self.multi_assets}

    def _api_restrictions(self, params: dict[str, str]) -> tuple[int, Any]:
        if self.key_permissions is None:
            raise BinanceError(404, -1000, "Not available on this endpoint (no spot API).")
        return 200, dict(self.key_permissions)

    # ------------------------------------------------------- algo (conditional)

    def _new_algo_order(self, params: dict[str, str]) -> tuple[int, Any]:
        state = self._state(_mandatory(params, "symbol"))
        spec = state.spec
        if _mandatory(params, "algoType") != "CONDITIONAL":
            raise BinanceError(400, -1116, "Invalid algoType.")
        side = _mandatory(params, "side").upper()
        order_type = _mandatory(params, "type").upper()
        if order_type not in ("STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        client_id = params.get("clientAlgoId") or f"loopback-algo-{self._next_id + 1}"
        if any(a.client_algo_id == client_id for a in self._algo_orders.values()):
            raise BinanceError(400, -20132, "The client algo id is duplicated.")
        close_position = params.get("closePosition", "false").lower() == "true"
        qty = (
            Decimal(0)
            if close_position
            else self._check_quantity(spec, _mandatory(params, "quantity"), True)
        )
        trigger = self._check_price(spec, _mandatory(params, "triggerPrice"))
        price = Decimal(0)
        if order_type in ("STOP", "TAKE_PROFIT"):
            price = self._check_price(spec, _mandatory(params, "price"))
        last = state.last
        rising = (side == "BUY") == order_type.startswith("STOP")  # fires when price rises
        if last is not None and (trigger <= last if rising else trigger >= last):
            raise BinanceError(400, -2021, "Order would immediately trigger.")
        now = self._clock()
        algo = _AlgoOrder(
            algo_id=self._next(),
            client_algo_id=client_id,
            symbol=spec.symbol,
            side=side,
            order_type=order_type,
            qty=qty,
            trigger_price=trigger,
            price=price,
            time_in_force=params.get("timeInForce", "GTC"),
            reduce_only=params.get("reduceOnly", "false").lower() == "true",
            close_position=close_position,
            create_time=now,
            update_time=now,
        )
        self._algo_orders[algo.algo_id] = algo
        return 200, self._algo_json(algo)

    def _find_algo(self, params: dict[str, str]) -> _AlgoOrder | None:
        if params.get("algoId"):
            return self._algo_orders.get(int(params["algoId"]))
        if params.get("clientAlgoId"):
            wanted = params["clientAlgoId"]
            return next((a for a in self._algo_orders.values() if a.client_algo_id == wanted), None)
        raise BinanceError(400, -1102, "Param 'algoId' or 'clientAlgoId' must be sent.")

    def _query_algo_order(self, params: dict[str, str]) -> tuple[int, Any]:
        algo = self._find_algo(params)
        if algo is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return 200, self._algo_json(algo)

    def _cancel_algo_order(self, params: dict[str, str]) -> tuple[int, Any]:
        algo = self._find_algo(params)
        if algo is None or not algo.is_open:
            raise BinanceError(400, -2011, "Unknown order sent.")
        algo.status = "CANCELED"
        algo.update_time = self._clock()
        return 200, {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "code": "200",
            "msg": "success",
        }

    def _open_algo_orders(self, params: dict[str, str]) -> tuple[int, Any]:
        symbol = params.get("symbol")
        return 200, [
            self._algo_json(a)
            for a in sorted(self._algo_orders.values(), key=lambda a: a.algo_id)
            if a.is_open and (not symbol or a.symbol == symbol)
        ]

    def _maybe_trigger(self, algo: _AlgoOrder, candle: Candle, now: int) -> None:
        stop = algo.order_type.startswith("STOP")
        rising = (algo.side == "BUY") == stop  # buy stops and sell take-profits fire on a rise
        if rising and candle.high < algo.trigger_price:
            return
        if not rising and candle.low > algo.trigger_price:
            return
        gapped = candle.open >= algo.trigger_price if rising else candle.open <= algo.trigger_price
        fill_at = candle.open if gapped else algo.trigger_price
        state = self._state(algo.symbol)
        qty = algo.qty if not algo.close_position else abs(state.position.qty)
        reduce_only = algo.reduce_only or algo.close_position
        algo.trigger_time = now
        algo.update_time = now
        if qty == 0 or (reduce_only and self._reducible(algo.symbol, algo.side) == 0):
            algo.status = "EXPIRED"
            return
        market = algo.order_type.endswith("_MARKET")
        order = _Order(
            order_id=self._next(),
            symbol=algo.symbol,
            client_id=algo.client_algo_id,
            side=algo.side,
            type="MARKET" if market else "LIMIT",
            qty=qty,
            price=Decimal(0) if market else algo.price,
            stop_price=algo.trigger_price,
            time_in_force=algo.time_in_force,
            reduce_only=reduce_only,
            time=now,
            update_time=now,
            orig_type=algo.order_type,
        )
        self._orders[order.order_id] = order
        algo.actual_order_id = order.order_id
        algo.status = "TRIGGERED"
        if market:
            self._fill(order, order.qty, fill_at, maker=False, now=now)
        elif (order.side == "BUY" and candle.low < order.price) or (
            order.side == "SELL" and candle.high > order.price
        ):
            self._fill(order, order.qty, order.price, maker=False, now=now)

    def _refresh_algo_status(self) -> None:
        for algo in self._algo_orders.values():
            order_id = algo.actual_order_id
            if algo.status == "TRIGGERED" and order_id is not None:
                algo.status = "TRIGGERED" if self._orders[order_id].is_open else "FINISHED"

    # ------------------------------------------------------------- JSON shapes

    def _order_json(self, order: _Order, created: bool = False) -> Json:
        spec = SYMBOLS[order.symbol]
        pp, qp = spec.price_precision, spec.quantity_precision
        avg = order.cum_quote / order.executed if order.executed else Decimal(0)
        body: Json = {
            "orderId": order.order_id,
            "symbol": order.symbol,
            "status": order.status,
            "clientOrderId": order.client_id,
            "price": _fmt(order.price, pp),
            "avgPrice": _fmt(avg, 5) if order.executed else _fmt(Decimal(0), pp),
            "origQty": _fmt(order.qty, qp),
            "executedQty": _fmt(order.executed, qp),
            "cumQuote": _fmt(order.cum_quote, 5),
            "timeInForce": order.time_in_force,
            "type": order.type,
            "reduceOnly": order.reduce_only,
            "closePosition": False,
            "side": order.side,
            "positionSide": "BOTH",
            "stopPrice": _fmt(order.stop_price, pp),
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": order.orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": order.update_time,
        }
        if created:  # POST/DELETE replies carry cumQty, queries carry the creation time
            body["cumQty"] = body["executedQty"]
        else:
            body["time"] = order.time
        return body

    def _algo_json(self, algo: _AlgoOrder) -> Json:
        spec = SYMBOLS[algo.symbol]
        pp, qp = spec.price_precision, spec.quantity_precision
        body: Json = {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": algo.order_type,
            "symbol": algo.symbol,
            "side": algo.side,
            "positionSide": "BOTH",
            "timeInForce": algo.time_in_force,
            "quantity": _fmt(algo.qty, qp),
            "algoStatus": algo.status,
            "triggerPrice": _fmt(algo.trigger_price, pp),
            "price": _fmt(algo.price, pp),
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": "CONTRACT_PRICE",
            "priceMatch": "NONE",
            "closePosition": algo.close_position,
            "priceProtect": False,
            "reduceOnly": algo.reduce_only,
            "createTime": algo.create_time,
            "updateTime": algo.update_time,
            "triggerTime": algo.trigger_time,
            "goodTillDate": 0,
        }
        if algo.actual_order_id is not None:
            order = self._orders[algo.actual_order_id]
            body["actualOrderId"] = str(order.order_id)
            avg = order.cum_quote / order.executed if order.executed else Decimal(0)
            body["actualPrice"] = _fmt(avg, pp)
        return body

    def _trade_json(self, trade: _Trade) -> Json:
        spec = SYMBOLS[trade.symbol]
        return {
            "symbol": trade.symbol,
            "id": trade.trade_id,
            "orderId": trade.order_id,
            "side": trade.side,
            "price": _fmt(trade.price, spec.price_precision),
            "qty": _fmt(trade.qty, spec.quantity_precision),
            "realizedPnl": _fmt(trade.realized_pnl, 8),
            "marginAsset": "USDT",
            "quoteQty": _fmt(trade.qty * trade.price, 5),
            "commission": _fmt(trade.commission, 8),
            "commissionAsset": trade.commission_asset,
            "time": trade.time,
            "positionSide": "BOTH",
            "maker": trade.maker,
            "buyer": trade.side == "BUY",
        }


# ------------------------------------------------------------------ helpers


def _json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(payload),
        content_type="application/json",
        headers=headers,
    )


def _strip_signature(raw: str) -> str:
    """The signed payload: the raw text with its `signature=` parameter removed."""
    if not raw:
        return ""
    return "&".join(part for part in raw.split("&") if not part.startswith("signature="))


def _brackets(spec: SymbolSpec) -> list[Json]:
    result: list[Json] = []
    cum = Decimal(0)
    previous_ratio = Decimal(0)
    for index, (floor, ratio, leverage) in enumerate(spec.brackets):
        cum += floor * (ratio - previous_ratio)
        previous_ratio = ratio
        cap = spec.brackets[index + 1][0] if index + 1 < len(spec.brackets) else 500_000_000
        result.append(
            {
                "bracket": index + 1,
                "initialLeverage": leverage,
                "notionalCap": cap,
                "notionalFloor": floor,
                "maintMarginRatio": float(ratio),
                "cum": float(cum),
            }
        )
    return result


def _max_notional(spec: SymbolSpec, leverage: int) -> int:
    brackets = _brackets(spec)
    allowed = [b["notionalCap"] for b in brackets if b["initialLeverage"] >= leverage]
    return int(max(allowed)) if allowed else int(brackets[0]["notionalCap"])


def _maint_ratio(spec: SymbolSpec, notional: Decimal) -> Decimal:
    ratio = spec.brackets[0][1]
    for floor, bracket_ratio, _ in spec.brackets:
        if notional >= floor:
            ratio = bracket_ratio
    return ratio


def _symbol_info(spec: SymbolSpec) -> Json:
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": spec.price_precision,
        "quantityPrecision": spec.quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": ["PoW"] if spec.base == "BTC" else ["Layer-1"],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": f"{spec.tick_size * 10:f}",
                "maxPrice": "4529764",
                "tickSize": f"{spec.tick_size:f}",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": f"{spec.min_qty:f}",
                "maxQty": f"{spec.max_qty:f}",
                "stepSize": f"{spec.step_size:f}",
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": f"{spec.min_qty:f}",
                "maxQty": f"{spec.market_max_qty:f}",
                "stepSize": f"{spec.step_size:f}",
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": f"{spec.min_notional:f}"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY"],
    }


def point_ccxt_at(exchange: Any, base_url: str) -> None:
    """Send every request of a ccxt ``binanceusdm`` instance to the loopback server.

    Every ``urls['api']`` entry is re-rooted at `base_url`, keeping its path (``/fapi/v1``,
    ``/fapi/v2``, ``/fapi/v3``, ``/futures/data``, and also ``/sapi/v1``, ``/api/v3``...), so a
    call outside the fapi subset reaches the loopback, is logged as unknown and fails loudly
    instead of leaving the machine. Options that would call spot/sapi endpoints are switched
    off. ccxt picks Binance's USDT-M error table by the request URL's host (fapi.binance.com,
    demo-fapi, testnet); a loopback URL matches none, so the USDT-M table is merged over the
    generic one here, which reproduces the order in which ccxt consults them for a real fapi URL.
    """
    point_at_base_url(exchange, base_url)  # the daemon's own re-rooting and error tables
    exchange.options["fetchMarkets"] = {"types": ["linear"]}
    exchange.options["fetchCurrencies"] = False
    exchange.options["fetchMargins"] = False
    exchange.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
    exchange.options["defaultType"] = "swap"
    exchange.options["defaultSubType"] = "linear"
