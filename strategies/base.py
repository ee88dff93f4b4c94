"""The strategy interface: closed-candle polars frames in, an optional Signal out.

Strategies are pure so the same object runs live, in backtests and in table tests:
no I/O, no clocks, no asyncio, and nothing but the frames they are handed.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from decimal import Decimal
from typing import ClassVar

import polars as pl
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from daemon.domain.errors import ConfigError
from daemon.domain.models import Signal

PRICE_QUANTUM = Decimal("1e-8")
"""Signal prices are quantized here; rounding to the market's tick is the bot's job."""


def signal_price(value: float) -> Decimal:
    """A float price from the frames as the Decimal a Signal carries."""
    return Decimal(repr(value)).quantize(PRICE_QUANTUM)


class StrategyConfigError(ConfigError):
    """An unknown strategy name or bad parameters; the message names both, never a traceback."""


class Strategy(abc.ABC):
    """A trading rule evaluated once per closed candle of its lowest timeframe.

    Subclasses set `name` (the key in the registry and in bot configs) and `Params`
    (a pydantic model with `extra="forbid", frozen=True`) and are built from a
    validated instance of that model.

    `evaluate` receives `frames[tf]` for every timeframe in `timeframes`: closed candles
    only, oldest first, columns `timestamp` (Datetime UTC, open time), `open`, `high`,
    `low`, `close`, `volume` (Float64).
    """

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel) -> None:
        if not isinstance(params, self.Params):
            raise TypeError(
                f"strategy {self.name}: params must be {self.Params.__name__}, "
                f"got {type(params).__name__}"
            )
        self.params = params

    @property
    @abc.abstractmethod
    def timeframes(self) -> tuple[str, ...]:
        """Timeframes needed, lowest first; the lowest is the one evaluate is called on."""

    @property
    @abc.abstractmethod
    def warmup(self) -> dict[str, int]:
        """Closed candles needed per timeframe before the strategy may signal."""

    @abc.abstractmethod
    def evaluate(self, frames: Mapping[str, pl.DataFrame]) -> Signal | None:
        """A Signal to be in a trade from the last close of the lowest timeframe, or None."""

    def signal_series(
        self, frames: Mapping[str, pl.DataFrame], windows: Mapping[str, int]
    ) -> dict[int, Signal] | None:
        """Optional fast path for backtests: every signal of a whole history at once.

        `frames[tf]` holds the whole series of closed candles of each timeframe (the
        `evaluate` layout) and `windows[tf]` the length of the live runner's rolling window.
        The answer maps each row r of the lowest timeframe's frame to the Signal `evaluate`
        returns when handed, per timeframe, the last `windows[tf]` candles of `frames[tf]`
        that had closed by row r's close; rows where that is None are left out. It must be
        exactly that, float for float, since a backtest is only worth its parity with live
        trading. None (the default) means there is no such path: the caller then slices
        the windows and calls `evaluate` per candle.
        """
        return None

    def require_frame(self, frames: Mapping[str, pl.DataFrame], timeframe: str) -> pl.DataFrame:
        """A missing frame is the caller's bug, not "not warm yet": say so loudly."""
        try:
            return frames[timeframe]
        except KeyError:
            raise KeyError(f"{self.name} needs a {timeframe} frame, got {sorted(frames)}") from None

    def window_length(self, windows: Mapping[str, int], timeframe: str) -> int:
        """The live runner's window length for a timeframe, as `signal_series` is handed it."""
        try:
            window = windows[timeframe]
        except KeyError:
            got = sorted(windows)
            raise KeyError(f"{self.name} needs a {timeframe} window, got {got}") from None
        if window < 1:
            raise ValueError(f"the {timeframe} window must be at least 1 candle, got {window}")
        return window

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


def parse_params(strategy: type[Strategy], raw: Mapping[str, object]) -> BaseModel:
    """Validate raw config values through `strategy.Params`, translating pydantic errors.

    The message lists every bad parameter and why, e.g.
    `strategy ema_cross: parameter 'fast': Input should be a valid integer`.
    """
    try:
        return strategy.Params.model_validate(dict(raw))
    except ValidationError as e:
        accepted = ", ".join(strategy.Params.model_fields)
        problems = "; ".join(_describe(err, accepted) for err in e.errors())
        raise StrategyConfigError(f"strategy {strategy.name}: {problems}") from e


def _describe(err: ErrorDetails, accepted: str) -> str:
    """One pydantic error as `parameter 'x': why`, without pydantic's URL and prefixes."""
    if err["type"] == "extra_forbidden":
        reason = f"unknown parameter (accepted: {accepted})"
    elif err["type"] == "value_error" and "ctx" in err and "error" in err["ctx"]:
        reason = str(err["ctx"]["error"])  # our own validators' words, without "Value error, "
    else:
        reason = err["msg"]
    loc = ".".join(str(part) for part in err["loc"])
    return f"parameter {loc!r}: {reason}" if loc else reason
