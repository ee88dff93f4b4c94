"""The configuration schema: pydantic models over tomllib, frozen and strict.

Secrets never live here: exchange accounts name a credential that the daemon reads
from the environment or systemd's CREDENTIALS_DIRECTORY.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping
from datetime import datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from tradectl import paths
from tradectl.errors import ConfigError

BOT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
SYMBOL = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+:[A-Z0-9]+$")
TIMEFRAME = re.compile(r"^[1-9][0-9]*[mhd]$")
MAX_ID = 2**32 - 2  # uid_t/gid_t; 2**32 - 1 means "no id" to the kernel
DURATION = re.compile(r"^([1-9][0-9]*)([smh])$")
MIN_RECONCILE_S = 10
MAX_RECONCILE_S = 86_400
SECRET_PLACEHOLDER = "{secret}"


def duration_seconds(value: str) -> int:
    """ "30s", "5m", "1h" as seconds; ValueError naming the expected form."""
    match = DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'{value!r} is not a duration like "30s", "5m" or "1h" (text)')
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def _kind(value: Any) -> str:
    return {str: "text", bool: "a boolean"}.get(type(value), type(value).__name__)


def _real(value: Any) -> Any:
    """A number as TOML writes it: no text, no boolean, nothing infinite or NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"must be a number, not {_kind(value)} ({value!r})")
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, not {value!r}")
    return value


def _whole(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {_kind(value)} ({value!r})")
    return value


def _name_or_id(value: Any) -> Any:
    """A user or group: its name, or its numeric id (0 and up)."""
    if value is None or (isinstance(value, str) and value):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a name or a numeric id, not {_kind(value)} ({value!r})")
    if not 0 <= value <= MAX_ID:
        raise ValueError(f"must be a numeric id from 0 to {MAX_ID}, not {value}")
    return value


Real = Annotated[float, BeforeValidator(_real)]
Money = Annotated[Decimal, BeforeValidator(_real)]
Whole = Annotated[int, BeforeValidator(_whole)]
NameOrId = Annotated[str | int | None, BeforeValidator(_name_or_id)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaemonSettings(Strict):
    state_dir: str = paths.DEFAULT_STATE_DIR
    socket_path: str = paths.DEFAULT_SOCKET
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Members of this group (name or gid) may do anything on the control socket, like root
    # and the daemon's own user; everyone else who can reach it reads status and acts only
    # on the bots they own.
    admin_group: NameOrId = None
    # How often the store is checked against each exchange account (drift): "30s", "5m", "1h".
    reconcile_every: str = "5m"

    @field_validator("reconcile_every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> Any:
        seconds = duration_seconds(value)
        if not MIN_RECONCILE_S <= seconds <= MAX_RECONCILE_S:
            raise ValueError(f"must be from {MIN_RECONCILE_S}s to 24h, not {value!r}")
        return value

    @property
    def reconcile_every_s(self) -> int:
        return duration_seconds(self.reconcile_every)


class ReplaySettings(Strict):
    """Real candles played as a live feed; `speed` is a multiple of real time, 0 = flat out."""

    data_dir: str = "data/candles"
    speed: Real = Field(default=120.0, ge=0)
    start: datetime | None = None

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a timezone, e.g. 2025-05-10T00:00:00Z")
        return value


class PaperAccount(Strict):
    """A simulated account; its balance and positions persist in the state store."""

    kind: Literal["paper"]
    initial_balance: Money = Field(default=Decimal(1000), gt=0)
    taker_fee_rate: Money = Field(default=Decimal("0.0005"), ge=0, lt=Decimal("0.01"))
    maker_fee_rate: Money = Field(default=Decimal("0.0002"), ge=0, lt=Decimal("0.01"))
    slippage_bps: Money = Field(default=Decimal(2), ge=0, le=500)
    # "replay": recorded candles; an exchange name: live public prices, simulated fills.
    market_data: Literal["replay", "binanceusdm", "bitget"] = "replay"
    replay: ReplaySettings = ReplaySettings()
    poll_interval_s: Real = Field(default=5.0, gt=0, le=60)
    api_base_url: str | None = None  # a proxy (or a test exchange) in front of the real API
    # Live candles: ccxt.pro websocket (REST polling as fallback), or REST polling only.
    market_data_transport: Literal["websocket", "rest"] = "websocket"


class ExchangeAccount(Strict):
    """A real exchange account. `credentials` names the secret, never holds it."""

    kind: Literal["binanceusdm", "bitget"]
    credentials: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    testnet: StrictBool = False
    poll_interval_s: Real = Field(default=5.0, gt=0, le=60)
    api_base_url: str | None = None  # a proxy (or a test exchange) in front of the real API
    # The account's request budget, shared by all its bots; default: ccxt's for the exchange.
    requests_per_s: Real | None = Field(default=None, gt=0, le=1000)
    # Live candles: ccxt.pro websocket (REST polling as fallback), or REST polling only.
    market_data_transport: Literal["websocket", "rest"] = "websocket"
    # How long an order whose reply was lost is looked up by its client id before it counts
    # as never placed. Default: the exchange's window for a late request plus 5 s of lookup
    # lag (Binance 10 s, Bitget 35 s). Lower it only for an endpoint that refuses late
    # requests sooner.
    order_lookup_window_s: Real | None = Field(default=None, gt=0, le=120)

    # The price resting stops and take-profits trigger on: the mark price (no wick of one
    # thin trade fires them) or the last traded price.
    trigger_price_type: Literal["mark", "last"] = "mark"


Account = Annotated[PaperAccount | ExchangeAccount, Field(discriminator="kind")]


class RiskSettings(Strict):
    """Per-bot limits, then account-wide ones; the risk day starts at `daily_reset_utc`."""

    max_leverage: Whole = Field(default=3, ge=1, le=125)
    max_position_usdt: Money = Field(default=Decimal(250), gt=0)
    risk_per_trade_pct: Money = Field(default=Decimal("0.5"), gt=0, le=100)
    daily_loss_limit_usdt: Money = Field(default=Decimal(20), gt=0)
    max_account_position_usdt: Money = Field(default=Decimal(500), gt=0)
    account_daily_loss_limit_usdt: Money = Field(default=Decimal(50), gt=0)
    daily_reset_utc: time = time(0, 0)


class StrategySettings(Strict):
    user_dir: str | None = None  # a folder of the operator's own strategy plugins (*.py)


class HealthSettings(Strict):
    """Bounds of the health verdict that drives the systemd watchdog and `tradectl health`."""

    loop_lag_max_s: Real = Field(default=5.0, gt=0)
    stale_floor_s: Real = Field(default=30.0, gt=0)
    stale_candles: Real = Field(default=3.0, ge=1)
    start_timeout_s: Real = Field(default=120.0, gt=0)
    # A position without a resting stop covering it for longer than this is a problem.
    unprotected_grace_s: Real = Field(default=5.0, gt=0)


class StoreSettings(Strict):
    """Where the state lives: the embedded SQLite file in the state folder (no url), or a
    PostgreSQL database shared by a fleet of daemons. The password never lives here."""

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (leave it out for the SQLite file)")
        return value


class FleetSettings(Strict):
    """This daemon as one node of a fleet (PostgreSQL store only): the node's name (default
    the host name) and how long a bot's lease lives without being renewed by its holder."""

    node: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    lease_ttl_s: Real = Field(default=15.0, ge=1, le=600)


class AlertUrl(Strict):
    """One alert target. `{secret}` in `url` is replaced by the named secret (from the
    credentials folder or the environment, like exchange keys), so tokens stay out of here."""

    url: str = Field(min_length=3)
    secret: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    severity: Literal["info", "warning", "critical"] = "info"  # the least it is sent

    @model_validator(mode="after")
    def _placeholder(self) -> AlertUrl:
        count = self.url.count(SECRET_PLACEHOLDER)
        if self.secret is not None and count != 1:
            raise ValueError(f"url must hold {SECRET_PLACEHOLDER} once where the secret goes")
        if self.secret is None and count:
            raise ValueError(f"url holds {SECRET_PLACEHOLDER} but no secret names it")
        return self


def _alert_url(value: Any) -> Any:
    """A plain URL string is a target that wants every severity."""
    return {"url": value} if isinstance(value, str) else value


class AlertSettings(Strict):
    """Where alerts go (Apprise URLs) and how long identical ones are held back."""

    urls: tuple[Annotated[AlertUrl, BeforeValidator(_alert_url)], ...] = ()
    repeat_after_s: Real = Field(default=300.0, ge=0, le=86_400)


class BotSettings(Strict):
    account: str
    symbol: str
    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeframes: tuple[str, ...] = ("1m",)
    autostart: StrictBool = False
    leverage: Whole = Field(default=3, ge=1, le=125)
    owner: NameOrId = None  # user name or uid; else whoever first starts the bot
    # Exits and entries are decided only on candles that closed within this many seconds (by
    # the feed's clock); older ones, replayed after downtime, only warm the indicators.
    # Default: two candles of the strategy's base timeframe.
    max_candle_age_s: Real | None = Field(default=None, gt=0)
    # A fleet: the nodes that may hold this bot (default: any node).
    nodes: tuple[str, ...] | None = Field(default=None, min_length=1)
    # Trading sessions: "[days] HH:MM-HH:MM Zone" (several allowed; none = always). Outside
    # them the bot opens nothing new; `session_end` says what happens to a position then.
    sessions: tuple[str, ...] = ()
    session_end: Literal["keep", "flatten"] = "keep"

    @field_validator("sessions", mode="before")
    @classmethod
    def _session_texts(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError('must be a list of texts like ["Mon-Fri 07:00-10:00 Europe/London"]')
        return value

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        if not SYMBOL.match(value):
            raise ValueError("must be a unified perpetual symbol like ETH/USDT:USDT")
        return value

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one timeframe")
        for tf in value:
            if not TIMEFRAME.match(tf):
                raise ValueError(f"{tf!r} is not a timeframe like 1m, 5m, 15m, 1h")
        return value


class Config(Strict):
    daemon: DaemonSettings = DaemonSettings()
    risk: RiskSettings = RiskSettings()
    health: HealthSettings = HealthSettings()
    strategies: StrategySettings = StrategySettings()
    store: StoreSettings = StoreSettings()
    fleet: FleetSettings = FleetSettings()
    alerts: AlertSettings = AlertSettings()
    accounts: dict[str, Account] = Field(min_length=1)
    bots: dict[str, BotSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        seen: dict[tuple[str, str], str] = {}
        for name, bot in self.bots.items():
            if not BOT_NAME.match(name):
                raise ValueError(
                    f"bots.{name}: a bot name is 1-48 of a-z, 0-9, '-' and '_', "
                    "starting with a letter or digit"
                )
            if bot.account not in self.accounts:
                raise ValueError(
                    f"bots.{name}.account: no account {bot.account!r}; "
                    f"known: {', '.join(sorted(self.accounts))}"
                )
            if bot.leverage > self.risk.max_leverage:
                raise ValueError(
                    f"bots.{name}.leverage: {bot.leverage} exceeds risk.max_leverage "
                    f"{self.risk.max_leverage}"
                )
            key = (bot.account, bot.symbol)
            if key in seen:
                raise ValueError(
                    f"bots.{name}: bot {seen[key]!r} already trades {bot.symbol} on account "
                    f"{bot.account!r}; one bot per symbol and account keeps positions apart"
                )
            seen[key] = name
        return self


class LoadedConfig:
    """A validated config with the paths it resolves to in this environment."""

    def __init__(self, path: Path, config: Config, environ: Mapping[str, str]) -> None:
        self.path = path.absolute()
        self.config = config
        self.base_dir = self.path.parent
        self.state_dir = paths.state_dir(self.path, config.daemon.state_dir, environ)
        self.socket_path = paths.socket_path(self.path, config.daemon.socket_path, environ)
        # TRADECTL_STORE_URL and TRADECTL_NODE win over the file, like the paths above.
        self.store_url = environ.get("TRADECTL_STORE_URL") or config.store.url
        self.node = environ.get("TRADECTL_NODE") or config.fleet.node or socket.gethostname()

    def resolve(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        return paths.resolve_against(self.base_dir, value)

    @property
    def strategy_dir(self) -> Path | None:
        user_dir = self.config.strategies.user_dir
        return None if user_dir is None else self.resolve(user_dir)


ACCOUNT_KINDS = ("paper", "binanceusdm", "bitget")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        if len(loc) > 2 and loc[0] == "accounts" and loc[2] in ACCOUNT_KINDS:
            del loc[2]  # the union's tag: accounts.paper.replay, not accounts.paper.paper.replay
        where = ".".join(str(part) for part in loc) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; secrets never belong in this file)"
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> LoadedConfig:
    """Read and validate the config; any problem is a ConfigError naming file and field."""
    raw = paths.read_toml(path)
    try:
        config = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_describe(e)}") from None
    return LoadedConfig(path, config, environ)


def check_strategies(loaded: LoadedConfig) -> dict[str, Any]:
    """Validate each bot's strategy and parameters (imports polars: not for the fast path);
    the strategies built, by bot."""
    from strategies.registry import build_strategy

    built: dict[str, Any] = {}
    for name, bot in loaded.config.bots.items():
        try:
            built[name] = build_strategy(
                bot.strategy, bot.params, bot.timeframes, loaded.strategy_dir
            )
        except ConfigError as e:
            raise ConfigError(f"{loaded.path}: bots.{name}: {e}") from None
    return built
