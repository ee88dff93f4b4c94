"""The exchange port over ccxt (async) for Binance USDT-M and Bitget USDT perpetuals.

The only module that imports ccxt. ccxt's errors are translated here, once, into the
domain's, first by the exchange's own error code (`ERROR_CODES`, `REFUSALS`), then by
ccxt's class: transient ones are retried with backoff and jitter (idempotent calls) or
resolved by client order id (order submission); a refused timestamp re-measures the
clock and retries; rejections, account refusals and authentication failures are not
retried. One instance per account: every bot on that account shares its rate-limit
budget, and a 429/418 pauses the whole account until the exchange's Retry-After has
passed, so twenty bots cannot get the IP banned.

What ccxt does not do by itself for us, and this module does:
- signed requests carry the exchange's time: the offset is measured at start
  (`load_time_difference`) and again whenever a timestamp is refused (-1021, 40008);
- history (fills, funding) is asked for in windows the exchange accepts (at most 7 days,
  one page at a time), so any gap is filled and nothing is skipped silently;
- an order whose reply is lost is looked up by its client id until the exchange can no
  longer accept it (`unknown_outcome_window_s`); it is never sent twice;
- Bitget orders carry ``marginMode: isolated`` (ccxt sends "crossed" unless told).
"""

from __future__ import annotations

import asyncio
import enum
import importlib
import importlib.util
import json
import random
import re
import sys
import time
import types
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import structlog

from daemon.credentials import ApiCredentials
from daemon.domain.errors import (
    AccountRefused,
    ExchangeError,
    NotFound,
    OrderNeverPlaced,
    OrderRejected,
    RetryableExchangeError,
    WouldTrigger,
)
from daemon.domain.models import (
    ZERO,
    Balance,
    Fill,
    FundingPayment,
    LeverageBracket,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from daemon.ports import AccountSetup
from daemon.redaction import scrub

if TYPE_CHECKING:
    from ccxt.base.errors import BaseError as CcxtError


class _LightPackage(types.ModuleType):
    """Stands in for one of ccxt's packages without running its __init__, which imports
    every exchange ccxt has (about 330 modules: most of a second and 75 MB). A name asked
    of it comes from `sources` (where that __init__ takes it from), else from the
    submodule of that name; an exchange's class, not its module, is bound to the package
    (as that __init__ does with `from .binanceusdm import binanceusdm`)."""

    def __init__(self, name: str, sources: tuple[str, ...]) -> None:
        super().__init__(name)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError(f"{name} is not installed")
        self.__path__ = list(spec.submodule_search_locations)
        self.__spec__ = spec
        self.__file__ = spec.origin
        self._sources = sources

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_sources":
            raise AttributeError(attr)
        for source in self._sources:
            module = importlib.import_module(source)
            if hasattr(module, attr):
                return getattr(module, attr)
        try:
            module = importlib.import_module(f"{self.__name__}.{attr}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}") from None
        if attr not in self.__dict__:  # the import binds it, unless it was imported before
            setattr(self, attr, module)
        return self.__dict__[attr]

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and isinstance(getattr(value, name, None), type):
            value = getattr(value, name)
        super().__setattr__(name, value)


def _import_ccxt() -> tuple[Any, Any, Any]:
    """ccxt.async_support, ccxt's errors and TICK_SIZE, with only the exchanges we build
    ever loaded (unless ccxt was imported whole before: then it is used as it is)."""
    if "ccxt" not in sys.modules:
        base = ("ccxt.base.errors", "ccxt.base.precise", "ccxt.base.decimal_to_precision")
        sys.modules["ccxt"] = _LightPackage("ccxt", (*base, "ccxt.base.exchange"))
        sys.modules["ccxt.async_support"] = _LightPackage(
            "ccxt.async_support", (*base, "ccxt.async_support.base.exchange")
        )
    precision = importlib.import_module("ccxt.base.decimal_to_precision")
    return (
        importlib.import_module("ccxt.async_support"),
        importlib.import_module("ccxt.base.errors"),
        precision.TICK_SIZE,
    )


ccxt_async, ccxt_errors, TICK_SIZE = _import_ccxt()


T = TypeVar("T")
KINDS = ("binanceusdm", "bitget")
# Bitget keeps position stop-loss / take-profit orders ("tpsl") apart from plain plan orders;
# loss_plan / profit_plan carry a size (ccxt's default pos_loss / pos_profit close it all).
BITGET_PLAN_TYPES = {
    OrderType.STOP_MARKET: "loss_plan",
    OrderType.TAKE_PROFIT_MARKET: "profit_plan",
}
BITGET_TPSL = "profit_loss"  # the planType that lists and cancels them
MAX_ATTEMPTS = 5
LOOKUP_RETRY_S = 0.5  # between lookups of an order that its fills name but is not found yet
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 20.0
DEFAULT_BAN_S = 60.0
SETTLE = "USDT"
# Binance refuses a signed request that arrives more than recvWindow after its timestamp;
# orders carry a short one, so a lost order can no longer be accepted 5 s after it was signed.
BINANCE_ORDER_RECV_WINDOW_MS = 5_000
# Bitget refuses a request whose ACCESS-TIMESTAMP is more than 30 s off its clock.
BITGET_TIMESTAMP_WINDOW_S = 30.0
# How long an accepted order may stay invisible to a lookup by client id (Binance's
# "Order does not exist" just after acceptance).
LOOKUP_LAG_S = 5.0
LOOKUP_FIRST_S = 0.25
LOOKUP_MAX_S = 2.0
HISTORY_WINDOW_MS = 7 * 24 * 3600 * 1000 - 1  # both exchanges accept at most 7 days per query
HISTORY_PAGE = {"binanceusdm": 1000, "bitget": 100}
# Which end of a window a full page comes from (ccxt sorts every page oldest first).
HISTORY_NEWEST_FIRST = {"binanceusdm": False, "bitget": True}
# Bitget's websocket login refusals: key, passphrase, timestamp, expired, sign, login failed.
BITGET_WS_LOGIN_CODES = frozenset({"30011", "30012", "30013", "30014", "30015", "30005"})
LEVERAGE_TIERS_FILE = Path(__file__).resolve().with_name("binance_usdm_leverage_tiers.json")


class AuthenticationFailed(ExchangeError):
    """The exchange refused our keys: not retried; the bot shows it and stops."""


class DuplicateClientId(OrderRejected):
    """The exchange already holds an order with this client id: an earlier send arrived."""


class _Rule(enum.Enum):
    RETRY = "retry"  # refused before it was processed: try again after a pause
    UNKNOWN = "unknown"  # the exchange does not know whether it executed: look it up
    CLOCK = "clock"  # our timestamp was refused: measure the clock again, then retry
    DUPLICATE = "duplicate"
    NOT_FOUND = "not_found"


ERROR_CODES: dict[str, _Rule] = {
    # Binance USDT-M
    "-1001": _Rule.RETRY,  # internal error; unable to process your request
    "-1006": _Rule.UNKNOWN,  # unexpected response from the message bus; execution unknown
    "-1007": _Rule.UNKNOWN,  # timeout waiting for the backend; send and execution unknown
    "-1008": _Rule.RETRY,  # server overloaded with other requests
    "-1021": _Rule.CLOCK,  # timestamp outside the recvWindow
    "-5028": _Rule.CLOCK,  # timestamp outside the matching engine's recvWindow
    "-4116": _Rule.DUPLICATE,  # ClientOrderId is duplicated (among open orders)
    "-20132": _Rule.DUPLICATE,  # a conditional (algo) order's clientAlgoId is duplicated
    "-2013": _Rule.NOT_FOUND,  # order does not exist
    # Bitget USDT-FUTURES (v2 mix)
    "40004": _Rule.CLOCK,  # request timestamp expired
    "40005": _Rule.CLOCK,
    "40008": _Rule.CLOCK,
    "40015": _Rule.RETRY,  # system is abnormal, please try again later
    "40604": _Rule.RETRY,  # server is busy
    "40725": _Rule.RETRY,  # service returned an error
    "40786": _Rule.DUPLICATE,  # Duplicate clientOid
    "40109": _Rule.NOT_FOUND,  # the order cannot be found
    "40768": _Rule.NOT_FOUND,
    "43001": _Rule.NOT_FOUND,
    "43025": _Rule.NOT_FOUND,  # plan order does not exist (fired or cancelled already)
}

# Refused because of how the account or the config is set up: (check, what it means).
REFUSALS: dict[str, tuple[str, str]] = {
    "-4061": (
        "position_mode",
        "the account is in hedge mode (dual side position); tradectl trades one-way mode",
    ),
    "40774": (
        "position_mode",
        "the account is in hedge mode; tradectl trades one-way mode",
    ),
    "-4028": ("leverage", "the leverage is beyond what the exchange allows for this symbol"),
    "-2027": (
        "leverage_bracket",
        "the position would exceed the maximum notional allowed at this leverage",
    ),
    "-2028": ("leverage_bracket", "the leverage is too high for the margin balance"),
    "-4048": (
        "margin_mode",
        "the margin mode cannot change while a position is open on the symbol",
    ),
    "-4047": ("margin_mode", "the margin mode cannot change while orders are open on the symbol"),
    "-4168": (
        "multi_assets",
        "isolated margin is impossible while the account is in Multi-Assets mode",
    ),
}
_CODE = re.compile(r'"code"\s*:\s*"?(-?\d+)"?')
_MESSAGE = re.compile(r'"msg"\s*:\s*"([^"]*)"')


def _dec(value: Any, default: Decimal = ZERO) -> Decimal:
    return default if value is None else Decimal(str(value))


def _time(ms: Any) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, UTC)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def exchange_code(error: BaseException) -> tuple[str | None, str]:
    """The exchange's own error code and message inside a ccxt error's text, if any."""
    text = str(error)
    code = _CODE.search(text)
    message = _MESSAGE.search(text)
    return (code.group(1) if code else None, message.group(1) if message else text[:200])


def point_at_base_url(exchange: Any, base_url: str) -> None:
    """Send every request to `base_url` (a proxy, or a test exchange), keeping each path.

    A ccxt.pro instance's websocket URLs (``urls['api']['ws']``) are re-rooted the same way,
    with http(s) turned into ws(s). ccxt picks Binance's USDT-M error table by the request
    host; for another host the USDT-M table is merged over the generic one so errors map as
    they would for fapi.binance.com. Bitget's URLs carry a ``{hostname}`` placeholder,
    which a fixed base replaces.
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
            path = urlsplit(url.replace("{hostname}", "placeholder")).path
            urls[key] = base + path
        elif isinstance(url, dict):
            _reroot(url, base)


def market_from_ccxt(
    raw: dict[str, Any],
    precision_mode: int,
    brackets: tuple[LeverageBracket, ...] = (),
) -> Market:
    """A ccxt market structure as our Market; `precision_mode` is the exchange's precisionMode."""
    precision, limits = raw.get("precision", {}), raw.get("limits", {})
    if precision_mode == TICK_SIZE:
        amount_step, price_step = _dec(precision.get("amount")), _dec(precision.get("price"))
    else:
        amount_step = Decimal(1).scaleb(-int(precision.get("amount") or 0))
        price_step = Decimal(1).scaleb(-int(precision.get("price") or 0))
    max_leverage = int(limits.get("leverage", {}).get("max") or 125)
    if brackets:
        max_leverage = brackets[0].max_leverage
    return Market(
        symbol=raw["symbol"],
        amount_step=amount_step,
        price_step=price_step,
        min_amount=_dec(limits.get("amount", {}).get("min"), amount_step),
        min_notional=_dec(limits.get("cost", {}).get("min")),
        max_leverage=max_leverage,
        contract_size=_dec(raw.get("contractSize"), Decimal(1)),
        brackets=brackets,
    )


def brackets_from_ccxt(tiers: list[dict[str, Any]]) -> tuple[LeverageBracket, ...]:
    """ccxt leverage tiers (fetch_leverage_tiers / fetch_market_leverage_tiers) as brackets."""
    brackets = [
        LeverageBracket(
            notional_floor=_dec(t.get("minNotional")),
            notional_cap=_dec(t.get("maxNotional")),
            max_leverage=int(Decimal(str(t.get("maxLeverage") or 0))),
            maint_margin_rate=_dec(t.get("maintenanceMarginRate")),
        )
        for t in tiers
    ]
    return tuple(sorted(brackets, key=lambda b: b.notional_cap))


def shipped_brackets(symbol: str, path: Path = LEVERAGE_TIERS_FILE) -> tuple[LeverageBracket, ...]:
    """The leverage tiers shipped with tradectl: a fallback when the exchange cannot be asked."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    tiers = raw.get("tiers", {}).get(symbol)
    return brackets_from_ccxt(tiers) if isinstance(tiers, list) else ()


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
        unknown_outcome_window_s: float | None = None,
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
        self._fee_prices: dict[tuple[str, int], Decimal] = {}
        self._brackets: dict[str, tuple[LeverageBracket, ...]] = {}
        self._ex: Any = None
        self._ws: Any = None  # the ccxt.pro instance, made on the first watch
        self._can_watch: bool | None = None
        self.time_measured_at: datetime | None = None
        if unknown_outcome_window_s is None:
            signed_window = (
                BINANCE_ORDER_RECV_WINDOW_MS / 1000
                if kind == "binanceusdm"
                else BITGET_TIMESTAMP_WINDOW_S
            )
            unknown_outcome_window_s = signed_window + LOOKUP_LAG_S
        # After this many seconds from the send, an order not found by its client id never
        # reached the exchange: it could no longer be accepted, and any lookup lag is over.
        self.unknown_outcome_window_s = unknown_outcome_window_s
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
        if self.kind == "bitget":
            # Classic (non-unified) accounts on the v2 mix API; without this ccxt probes the
            # unified-account endpoint before the first private call.
            options["uta"] = False
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": int(self._timeout_s * 1000),
            "options": options,
            # close() would sleep this long (250 ms) for TLS connections to finish closing;
            # ours close with the process or the daemon, and a flatten from cron must not wait
            "timeout_on_exit": 0,
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

    def missing_credentials(self) -> str | None:
        """What the account's credentials lack for this exchange, if anything."""
        if self._credentials is None:
            return "no API key: this account can read public market data only"
        if self.kind == "bitget" and not self._credentials.password:
            return (
                f"Bitget needs the API key's passphrase: add `password` to credentials "
                f"{self._credentials.name!r}"
            )
        return None

    async def start(self) -> None:
        self._ex = self._make_exchange()
        await self._call("load markets", self._ex.load_markets)
        if self._credentials is not None:
            await self.measure_time()
        self.log.info(
            "exchange_connected",
            markets=len(self._ex.markets),
            testnet=self._testnet,
            time_difference_ms=self.time_difference_ms,
        )

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._ex is not None:
            await self._ex.close()

    # -- the clock -------------------------------------------------------------------------

    async def measure_time(self) -> int:
        """Measure our clock against the exchange's; signed requests use it from now on."""
        try:
            difference = int(await self._ex.load_time_difference())
        except ccxt_errors.BaseError as e:
            raise RetryableExchangeError(
                f"measure time: {type(e).__name__}: {scrub(str(e))}"
            ) from e
        self.time_measured_at = datetime.now(UTC)
        self.log.info("exchange_time_measured", time_difference_ms=difference)
        return difference

    @property
    def time_difference_ms(self) -> int:
        """Our clock minus the exchange's, as measured (ccxt's ``timeDifference``)."""
        if self._ex is None:
            return 0
        return int(self._ex.options.get("timeDifference") or 0)

    def exchange_time_ms(self) -> int:
        """The exchange's clock as ccxt knows it: ours, corrected by any measured difference."""
        if self._ex is None:
            return int(time.time() * 1000)
        return int(self._ex.milliseconds() - self.time_difference_ms)

    # -- the one place ccxt errors become ours ------------------------------------------

    async def _call(
        self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, retry: bool = True, **kw: Any
    ) -> T:
        attempt = 0
        clock_measured = False
        while True:
            wait = self._not_before - time.monotonic()
            if wait > 0:
                await self._sleep(wait)
            try:
                return await fn(*args, **kw)
            except ccxt_errors.BaseError as e:
                rule = self._translate(what, e)
                error: Exception = e
            if rule is _Rule.CLOCK and not clock_measured:
                clock_measured = True  # once per call: the next refusal backs off as usual
                self.log.warning(
                    "exchange_timestamp_refused", what=what, error=scrub(str(error))[:200]
                )
                try:
                    await self.measure_time()
                except RetryableExchangeError as measure_error:
                    error = measure_error
                else:
                    continue
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
                code=exchange_code(error)[0],
            )
            await self._sleep(delay)

    def _translate(self, what: str, e: CcxtError) -> _Rule:
        """Raise the domain's error for `e`, or return how to retry a transient one."""
        code, message = exchange_code(e)
        if code in REFUSALS:
            check, meaning = REFUSALS[code]
            text = f"{what}: {meaning} (exchange code {code}: {scrub(message)})"
            raise AccountRefused(check, text) from e
        rule = ERROR_CODES.get(code or "")
        if rule is _Rule.DUPLICATE:
            raise DuplicateClientId(
                f"{what}: client order id already used ({code}: {scrub(message)})"
            )
        if rule is _Rule.NOT_FOUND:
            raise NotFound(f"{what}: {scrub(str(e))}") from e
        if rule is not None:
            return rule
        if isinstance(e, ccxt_errors.InvalidNonce):
            return _Rule.CLOCK
        if isinstance(e, ccxt_errors.DDoSProtection | ccxt_errors.RateLimitExceeded):
            self._pause(e, what)  # 429 and 418 from Binance
            return _Rule.RETRY
        if isinstance(e, ccxt_errors.OperationFailed):  # timeouts, 5xx, dropped connections
            return _Rule.RETRY
        if isinstance(e, ccxt_errors.AuthenticationError):
            raise AuthenticationFailed(f"{what}: {scrub(str(e))}") from e
        if isinstance(e, ccxt_errors.OrderNotFound):
            raise NotFound(f"{what}: {scrub(str(e))}") from e
        if isinstance(e, ccxt_errors.OrderImmediatelyFillable):  # Binance -2021
            raise WouldTrigger(f"{what}: {scrub(str(e))}") from e
        refused = ccxt_errors.InsufficientFunds | ccxt_errors.InvalidOrder
        if isinstance(e, refused | ccxt_errors.OperationRejected):
            raise OrderRejected(f"{what}: {scrub(str(e))}") from e
        raise ExchangeError(f"{what}: {type(e).__name__}: {scrub(str(e))}") from e

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
        return market_from_ccxt(
            {**raw, "symbol": symbol}, self._ex.precisionMode, self._brackets.get(symbol, ())
        )

    async def load_leverage_brackets(self, symbols: list[str]) -> dict[str, str]:
        """Ask the exchange for each symbol's leverage tiers; `market()` carries them from now.

        Where the exchange cannot be asked, the tiers shipped with tradectl stand in.
        Returns, per symbol, where the tiers came from ("exchange" or "shipped file"), or why
        none are known.
        """
        sources: dict[str, str] = {}
        fetched: dict[str, Any] = {}
        try:
            if self.kind == "binanceusdm":
                fetched = await self._call(
                    "fetch leverage tiers", self._ex.fetch_leverage_tiers, symbols
                )
            else:
                for symbol in (s for s in symbols if s in self._ex.markets):
                    fetched[symbol] = await self._call(
                        "fetch leverage tiers", self._ex.fetch_market_leverage_tiers, symbol
                    )
        except ExchangeError as e:
            self.log.warning("leverage_tiers_unavailable", error=str(e)[:200])
        for symbol in symbols:
            brackets = brackets_from_ccxt(fetched.get(symbol) or [])
            source = "exchange"
            if not brackets and self.kind == "binanceusdm":
                brackets, source = shipped_brackets(symbol), "shipped file"
            if brackets:
                self._brackets[symbol] = brackets
                sources[symbol] = source
            else:
                sources[symbol] = "unknown"
        return sources

    async def account_setup(self, symbols: list[str]) -> AccountSetup:
        """Position mode, Multi-Assets mode, key permissions and margin modes, as reported."""
        if self.kind == "binanceusdm":
            return await self._binance_setup(symbols)
        return await self._bitget_setup(symbols)

    async def _binance_setup(self, symbols: list[str]) -> AccountSetup:
        ex = self._ex
        mode = await self._call("fetch position mode", ex.fetch_position_mode)
        assets = await self._call("fetch multi-assets mode", ex.fapiPrivateGetMultiAssetsMargin)
        account = await self._call("fetch account", ex.fapiPrivateV2GetAccount)
        notes: list[str] = []
        can_trade: bool | None = bool(account.get("canTrade", True))
        can_withdraw: bool | None = None
        try:
            restrictions = await self._call(
                "fetch api key permissions", ex.sapiGetAccountApiRestrictions, retry=False
            )
        except ExchangeError as e:  # testnets and proxies often lack the spot API
            notes.append(f"API key permissions not reported ({str(e)[:120]})")
        else:
            can_trade = bool(can_trade and restrictions.get("enableFutures", False))
            can_withdraw = bool(restrictions.get("enableWithdrawals", False))
        margin_modes: dict[str, str] = {}
        wanted = {ex.market(s)["id"]: s for s in symbols if s in ex.markets}
        for raw in await self._call("fetch position risk", ex.fapiPrivateV2GetPositionRisk):
            symbol = wanted.get(raw.get("symbol"))
            if symbol is not None:
                isolated = str(raw.get("marginType", "")).lower() == "isolated"
                margin_modes[symbol] = "isolated" if isolated else "crossed"
        return AccountSetup(
            hedge_mode=bool(mode.get("hedged")),
            multi_assets=bool(assets.get("multiAssetsMargin")),
            can_trade_futures=can_trade,
            can_withdraw=can_withdraw,
            margin_modes=margin_modes,
            notes=tuple(notes),
        )

    async def _bitget_setup(self, symbols: list[str]) -> AccountSetup:
        ex = self._ex
        notes: list[str] = []
        hedge: bool | None = None
        union: bool | None = None
        margin_modes: dict[str, str] = {}
        for symbol in symbols:
            if symbol not in ex.markets:
                continue  # the preflight refuses its bot by name ("market")
            market = ex.market(symbol)
            reply = await self._call(
                "fetch account",
                ex.privateMixGetV2MixAccountAccount,
                {
                    "symbol": market["id"],
                    "productType": "USDT-FUTURES",
                    "marginCoin": market["settleId"],
                },
            )
            data = reply.get("data") or {}
            hedge = bool(hedge) or data.get("posMode") == "hedge_mode"
            if data.get("assetMode") is not None:
                union = bool(union) or data.get("assetMode") == "union"
            if data.get("marginMode"):
                margin_modes[symbol] = "isolated" if data["marginMode"] == "isolated" else "crossed"
        can_trade: bool | None = None
        can_withdraw: bool | None = None
        try:
            info = await self._call(
                "fetch api key permissions", ex.privateSpotGetV2SpotAccountInfo, retry=False
            )
        except ExchangeError as e:
            notes.append(f"API key permissions not reported ({str(e)[:120]})")
        else:
            authorities = {str(a).lower() for a in (info.get("data") or {}).get("authorities", [])}
            can_trade = bool(authorities & {"contract_trade", "mix_trade", "trade", "coor"})
            can_withdraw = bool(authorities & {"withdraw", "wdor"})
        return AccountSetup(
            hedge_mode=hedge,
            multi_assets=union,
            can_trade_futures=can_trade,
            can_withdraw=can_withdraw,
            margin_modes=margin_modes,
            notes=tuple(notes),
        )

    async def set_isolated_margin(self, symbol: str) -> None:
        """Make `symbol` isolated; already isolated is fine."""
        try:
            await self._call("set margin mode", self._ex.set_margin_mode, "isolated", symbol)
        except AccountRefused:
            raise
        except ExchangeError as e:
            text = str(e)
            if not any(m in text for m in ("MarginModeAlreadySet", "No need to change", "-4046")):
                raise

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        await self.set_isolated_margin(symbol)
        await self._call("set leverage", self._ex.set_leverage, leverage, symbol)

    async def fetch_balance(self) -> Balance:
        raw = await self._call("fetch balance", self._ex.fetch_balance)
        usdt = raw.get(SETTLE, {})
        return Balance(SETTLE, total=_dec(usdt.get("total")), free=_dec(usdt.get("free")))

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

    def _stream(self) -> Any:
        if self._ws is None:
            self._ws = self._make_exchange(websocket=True)
            if self._ex is not None and self._ex.markets:
                self._ws.set_markets_from_exchange(self._ex)  # no second load_markets
            if self._ex is not None:
                self._ws.options["timeDifference"] = self.time_difference_ms
            if self.kind == "bitget":
                # ccxt.pro signs Bitget's websocket login with the bare local clock, which
                # Bitget refuses beyond 30 s: sign it with the measured exchange clock, as
                # the REST requests are.
                self._ws.seconds = lambda: self.exchange_time_ms() // 1000
        return self._ws

    async def watch_ohlcv(self, symbol: str, timeframe: str) -> list[list[float]]:
        """The candles the websocket updated since the previous call (the newest is forming).

        The first call connects and subscribes; a call after a failure reconnects. Errors
        become ours: RetryableExchangeError for a dropped or refused connection.
        """
        ws = self._stream()
        try:
            rows = await ws.watch_ohlcv(symbol, timeframe)
        except ccxt_errors.BaseError as e:
            # ccxt keeps its candle cache across reconnects; rows from before the drop
            # must not come back as fresh updates of the next connection.
            ws.ohlcvs.get(symbol, {}).pop(timeframe, None)
            message = f"watch ohlcv: {type(e).__name__}: {scrub(str(e))}"
            if isinstance(e, ccxt_errors.NetworkError):
                raise RetryableExchangeError(message) from e
            raise ExchangeError(message) from e
        return [list(row) for row in rows]  # ccxt updates its rows in place: copy

    @property
    def can_watch_user_data(self) -> bool:
        """Whether ccxt.pro streams this account's fills and orders (decided offline)."""
        if self._credentials is None:
            return False
        try:
            has = self._make_exchange(websocket=True).has
        except (ImportError, AttributeError):
            return False
        return bool(has.get("watchMyTrades") and has.get("watchOrders"))

    def _stream_failed(self, what: str, e: CcxtError) -> ExchangeError:
        """A user-data stream failed: log in again (Binance: a new listen key) on the next
        connect. A refused websocket login says so, with the exchange's code and reason."""
        ws = self._ws
        if ws is not None:
            for kind in ("linear", "future", "swap"):
                if isinstance(ws.options.get(kind), dict):
                    ws.options[kind] = {**ws.options[kind], "lastAuthenticatedTime": 0}
            for client in (getattr(ws, "clients", None) or {}).values():
                # ccxt.pro's Bitget forgets its login only on an authentication error; after
                # any other refusal (an expired timestamp) it would wait for ever for a login
                # it never sends again.
                client.subscriptions.pop("authenticated", None)
        code, message = exchange_code(e)
        if self.kind == "bitget" and (
            code in BITGET_WS_LOGIN_CODES or isinstance(e, ccxt_errors.AuthenticationError)
        ):
            fix = (
                "the host's clock"
                if code in ("30013", "30014")
                else "the key, secret and passphrase of the credentials"
            )
            return AuthenticationFailed(
                f"{what}: the websocket login was refused ({code} {scrub(message)}): check "
                f"{fix}; fills are read by REST on every candle meanwhile"
            )
        if isinstance(e, ccxt_errors.NetworkError):
            return RetryableExchangeError(f"{what}: {type(e).__name__}: {scrub(str(e))}")
        return ExchangeError(f"{what}: {type(e).__name__}: {scrub(str(e))}")

    async def watch_fills(self) -> list[Fill]:
        """Fills the user-data stream delivered since the previous call (connects the first
        time, with the listen key ccxt keeps alive; reconnects after a failure)."""
        ws = self._stream()
        try:
            trades = await ws.watch_my_trades()
        except ccxt_errors.BaseError as e:
            raise self._stream_failed("watch my trades", e) from e
        return [await self._fill(t, t.get("symbol") or "") for t in list(trades)]

    async def watch_order_updates(self) -> list[Order]:
        """Orders the user-data stream updated since the previous call."""
        ws = self._stream()
        try:
            raw = await ws.watch_orders()
        except ccxt_errors.BaseError as e:
            raise self._stream_failed("watch orders", e) from e
        return [self._order(o) for o in list(raw) if o.get("symbol") and o.get("side")]

    # -- orders -----------------------------------------------------------------------------

    def _order(self, raw: dict[str, Any], bot: str | None = None) -> Order:
        status = raw.get("status")
        info = raw.get("info") or {}
        # Bitget's websocket order: ccxt reads "filled" from baseVolume, the size of the fill
        # that caused the push; the order's whole filled size is accBaseVolume.
        filled = _dec(info.get("accBaseVolume") or raw.get("filled"))
        if status == "closed":
            state = OrderStatus.FILLED
        elif status in ("canceled", "cancelled", "expired"):
            state = OrderStatus.CANCELED
        elif status == "rejected":
            state = OrderStatus.REJECTED
        else:
            state = OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN
        # Bitget's documented websocket order spells it clientOId; ccxt reads only clientOid
        cid = raw.get("clientOrderId") or info.get("clientOId") or f"exchange-{raw.get('id')}"
        if raw.get("id") is not None:
            self._cid_by_order_id[str(raw["id"])] = cid
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

    def _order_params(self, intent: OrderIntent) -> dict[str, Any]:
        params: dict[str, Any] = {"clientOrderId": intent.client_order_id}
        if intent.reduce_only:
            params["reduceOnly"] = True
        if self.kind == "binanceusdm":
            params["recvWindow"] = BINANCE_ORDER_RECV_WINDOW_MS
        else:
            params["marginMode"] = "isolated"  # ccxt sends "crossed" unless told
        return params

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
        """Send once. A lost reply is resolved by looking the client id up, never by a resend.

        An outcome we cannot know (a timeout, a dropped connection, the exchange's own
        "execution status unknown") is resolved by `resolve_order`: found means it was
        placed; not found for `unknown_outcome_window_s` after the send means it never
        reached the exchange (`OrderNeverPlaced`): only then may the caller decide again,
        and a new order carries a new client order id. Binance keeps client ids unique only
        among open orders, so a resend of a filled market order would be a second order.
        """
        params = self._order_params(intent)
        order_type = intent.type.value
        trigger = intent.type.is_trigger
        if trigger:
            params.update(self._trigger_params(intent))
            order_type = "market"
        sent = time.monotonic()
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
        except DuplicateClientId:  # an earlier send of this very intent was accepted
            self.log.info("order_already_accepted", cid=intent.client_order_id)
        except RetryableExchangeError as e:
            self.log.warning("order_outcome_unknown", cid=intent.client_order_id, error=str(e))
        else:
            if trigger or raw.get("status") is not None:
                return _with_intent(self._order(_acknowledged(raw, intent), intent.bot), intent)
            # Bitget answers a new order with its ids only: read the order itself.
        order = await self.resolve_order(
            intent.symbol, intent.client_order_id, sent, trigger=trigger
        )
        return _with_intent(order if order.bot else _with_bot(order, intent.bot), intent)

    async def resolve_order(
        self, symbol: str, client_order_id: str, sent_monotonic: float, *, trigger: bool = False
    ) -> Order:
        """Look an order up by client id until found, or until it cannot exist.

        Returns the order when found. Raises `OrderNeverPlaced` when every lookup up to
        `unknown_outcome_window_s` after `sent_monotonic` said "no such order", and
        `RetryableExchangeError` when the exchange could not be asked: the outcome stays
        unknown and the caller must ask again before sending anything new.
        """
        deadline = sent_monotonic + self.unknown_outcome_window_s
        delay = LOOKUP_FIRST_S
        answered = True
        lookups = 0
        while True:
            last_chance = time.monotonic() >= deadline
            lookups += 1
            try:
                known = await self.fetch_order(symbol, client_order_id, trigger=trigger)
            except RetryableExchangeError as e:
                answered, known = False, None
                self.log.warning("order_lookup_failed", cid=client_order_id, error=str(e)[:200])
            else:
                answered = True
            if known is not None:
                if lookups > 1:
                    self.log.info("order_found_after_unknown_outcome", cid=client_order_id)
                return known
            if last_chance:
                break
            await self._sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, LOOKUP_MAX_S)
        if not answered:
            raise RetryableExchangeError(
                f"order {client_order_id}: outcome unknown (the exchange could not be asked)"
            )
        self.log.warning(
            "order_never_placed",
            cid=client_order_id,
            looked_up_s=round(self.unknown_outcome_window_s, 1),
            lookups=lookups,
        )
        raise OrderNeverPlaced(
            f"order {client_order_id} never reached the exchange (not found by its client id "
            f"for {self.unknown_outcome_window_s:.0f} s after it was sent)"
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
        if trigger or raw.get("status") is None or raw.get("side") is None:
            # Binance answers a conditional cancel with a bare {"code": "200"}, Bitget any
            # cancel with the ids only: read the order itself.
            return await self.fetch_order(symbol, client_order_id, trigger=trigger)
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

    # -- history: fills and funding, in windows the exchange accepts ---------------------

    async def _history(
        self,
        what: str,
        fetch: Callable[..., Awaitable[list[dict[str, Any]]]],
        symbol: str,
        since_ms: int | None,
    ) -> list[dict[str, Any]]:
        """Every entry from `since_ms` to now: 7-day windows, each read page by page.

        A full page holds a window's oldest entries (Binance) or its newest (Bitget); the
        bound then moves past the page just read, so reading always advances. Entries are
        deduplicated by id.
        """
        newest_first = HISTORY_NEWEST_FIRST[self.kind]
        limit = HISTORY_PAGE[self.kind]
        # A minute past our estimate of the exchange's clock: the estimate errs early by up
        # to a round trip, and an execution of this very moment must not fall outside.
        now = self.exchange_time_ms() + 60_000
        start = since_ms if since_ms is not None else now - HISTORY_WINDOW_MS
        found: dict[str, dict[str, Any]] = {}
        while start <= now:
            end = min(start + HISTORY_WINDOW_MS, now)
            low, high = start, end
            while True:
                rows = await self._call(what, fetch, symbol, low, limit, {"until": high})
                for row in rows:
                    found[str(row.get("id"))] = row
                if len(rows) < limit:
                    break
                times = [int(r["timestamp"]) for r in rows]
                if newest_first:  # go on before the oldest of the page
                    if min(times) >= high:
                        break
                    high = min(times)
                else:  # go on after the newest of the page
                    if max(times) <= low:
                        break
                    low = max(times)
            start = end + 1
        return sorted(found.values(), key=lambda r: (int(r["timestamp"]), str(r.get("id"))))

    async def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[Fill]:
        """Every fill on `symbol` since `since` (by default the last 7 days), oldest first."""
        since_ms = None if since is None else _ms(since)
        raw = await self._history("fetch my trades", self._ex.fetch_my_trades, symbol, since_ms)
        return [await self._fill(t, symbol) for t in raw]

    async def _client_id_of(self, order_id: str, symbol: str) -> str:
        """The client id of a filled order. Its lookup may lag its fills just after it was
        placed (as the order's own lookup may): ask again within the lookup window, then
        give up for now as a transient error, so the fill cursor stays and the next sync
        reads the fill again rather than recording it without its owner."""
        deadline = time.monotonic() + self.unknown_outcome_window_s
        while True:
            try:
                known = await self._call("fetch order", self._ex.fetch_order, order_id, symbol)
                return str(self._order(known).client_order_id)
            except NotFound as e:
                if time.monotonic() >= deadline:
                    raise RetryableExchangeError(
                        f"order {order_id} of a fill is not found yet: {e}"
                    ) from e
            await self._sleep(LOOKUP_RETRY_S)

    async def _fill(self, t: dict[str, Any], symbol: str) -> Fill:
        """A ccxt trade (REST or stream) as our Fill, with its order's client id."""
        info = t.get("info") or {}
        order_id = str(t.get("order"))
        cid = info.get("c") or self._cid_by_order_id.get(order_id)  # "c": the stream says
        if cid is None:
            cid = await self._client_id_of(order_id, symbol)
        timestamp = _time(t.get("timestamp")) or datetime.now(UTC)
        pnl = info.get("realizedPnl") or info.get("profit") or info.get("rp")
        return Fill(
            account=self.account,
            fill_id=str(t["id"]),
            client_order_id=str(cid),
            symbol=t["symbol"],
            side=Side(t["side"]),
            qty=_dec(t.get("amount")),
            price=_dec(t.get("price")),
            fee=await self._fee_in_usdt(t.get("fee") or {}, timestamp),
            realized_pnl=_dec(pnl),
            timestamp=timestamp,
            kind=_fill_kind(str(cid), info),
        )

    async def _fee_in_usdt(self, fee: dict[str, Any], at: datetime) -> Decimal:
        """A fee paid in another asset (BNB) as USDT at that minute's price."""
        cost = _dec(fee.get("cost"))
        currency = fee.get("currency")
        if cost == 0 or currency in (None, SETTLE):
            return cost
        symbol = f"{currency}/{SETTLE}:{SETTLE}"
        minute = _ms(at) // 60_000 * 60_000
        price = self._fee_prices.get((currency, minute))
        if price is None:
            if symbol not in self._ex.markets:
                self.log.error("fee_not_converted", asset=currency, cost=str(cost))
                return ZERO
            rows = await self._call(
                "fetch fee price", self._ex.fetch_ohlcv, symbol, "1m", minute, 1
            )
            if not rows:
                self.log.error("fee_not_converted", asset=currency, cost=str(cost))
                return ZERO
            price = _dec(rows[0][4])
            self._fee_prices[(currency, minute)] = price
        return cost * price

    async def fetch_funding(
        self, symbol: str, since: datetime | None = None
    ) -> list[FundingPayment]:
        """Funding paid or received on `symbol` since `since` (default: 7 days), oldest first."""
        since_ms = None if since is None else _ms(since)
        raw = await self._history(
            "fetch funding history", self._ex.fetch_funding_history, symbol, since_ms
        )
        return [
            FundingPayment(
                account=self.account,
                payment_id=f"{r.get('id')}:{symbol}",
                symbol=r.get("symbol") or symbol,
                amount=_dec(r.get("amount")),
                timestamp=_time(r.get("timestamp")) or datetime.now(UTC),
            )
            for r in raw
        ]


def _fill_kind(cid: str, info: dict[str, Any]) -> str:
    """Binance names the exchange's own closing orders (autoclose-: liquidation,
    adl_autoclose: auto-deleveraging); Bitget marks the fill's tradeSide (burst_, _adl_)."""
    trade_side = str(info.get("tradeSide") or "").lower()
    if cid.startswith("adl_autoclose") or "adl" in trade_side:
        return "adl"
    if cid.startswith("autoclose-") or "burst" in trade_side:
        return "liquidation"
    return "trade"


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
