"""EMA crossover with an ATR stop and an optional higher-timeframe trend filter.

Definitions, so backtests can be checked by hand:

- EMA(n): `ewm_mean(span=n, adjust=False)`, alpha = 2/(n+1), seeded with the first close.
- ATR(n): Wilder's: true range smoothed with alpha = 1/n (`ewm_mean(alpha=1/n, adjust=False)`),
  seeded with the first candle's high - low (it has no previous close).
- Cross: fast - slow is <= 0 on the previous candle and > 0 on the last (long), or >= 0 then
  < 0 (short); so a touch followed by a move away counts once, never twice.
- Levels: entry = last close; stop = entry -/+ stop_atr * ATR; take_profit = entry +/-
  reward_risk * |entry - stop|. Quantised to 8 decimal places; snapping to the exchange's tick
  is the bot's job (Market.round_price).
- Confidence: |EMA fast - EMA slow| / ATR on the last candle, divided by FULL_CONFIDENCE_SEPARATION
  and capped at 1: a cross that already opens a gap of a quarter ATR is as convincing as
  this rule gets; a hairline cross is mostly noise.
- Trend filter (when `trend_timeframe` is set): long only if that timeframe's last close is
  above its EMA(slow), short only if below. Only trend candles closed by the close of the last
  base candle count, whatever else the frame holds, so a backtest may pass the whole frame.
- Warm-up: `3 * max(slow, atr_period)` candles on `timeframe`: both averages are seeded with
  the first value and the seed's weight decays as (1 - alpha)^k, about e^-6 for the EMA after
  3 spans (e^-3 for the ATR: close enough for a stop distance). On `trend_timeframe`:
  `slow + 1` closed candles.
- None: before warm-up, when ATR is 0 or NaN, or when a level would be <= 0.
- Backtests: `signal_series` gives every signal of a whole history at once, recomputing the
  averages per rolling window (`strategies/rolling_ewm.py`) so that they are, float for float,
  what `evaluate` computes on the live runner's windows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from daemon.domain.models import Direction, Signal
from daemon.domain.timeframes import timeframe_delta, timeframe_seconds
from strategies.base import PRICE_QUANTUM, Strategy, signal_price
from strategies.rolling_ewm import rolling_ewm_mean, span_alpha

FULL_CONFIDENCE_SEPARATION = 0.25  # in ATRs; see the module docstring


class EmaCrossParams(BaseModel):
    """Parameters of `ema_cross`; every default is a usable 1m setup."""

    # validate_default: cross-field checks must also see defaults (fast=30 vs the default slow)
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True
    )

    fast: int = Field(default=9, ge=2)
    slow: int = 21
    timeframe: str = "1m"
    trend_timeframe: str | None = "5m"
    atr_period: int = Field(default=14, ge=1)
    stop_atr: float = Field(default=1.5, gt=0)
    reward_risk: float = Field(default=2.0, gt=0)

    @field_validator("slow")
    @classmethod
    def _slow_above_fast(cls, slow: int, info: ValidationInfo) -> int:
        fast = info.data.get("fast")  # absent when fast itself was invalid
        if fast is not None and slow <= fast:
            raise ValueError(f"must be greater than fast ({fast}), got {slow}")
        return slow

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, timeframe: str) -> str:
        timeframe_seconds(timeframe)
        return timeframe

    @field_validator("trend_timeframe")
    @classmethod
    def _longer_trend_timeframe(cls, trend: str | None, info: ValidationInfo) -> str | None:
        if trend is None:
            return None
        seconds = timeframe_seconds(trend)
        base = info.data.get("timeframe")
        if base is not None and seconds <= timeframe_seconds(base):
            raise ValueError(f"must be a longer timeframe than timeframe ({base}), got {trend}")
        return trend


class EmaCross(Strategy):
    """Long when EMA(fast) crosses above EMA(slow), short when it crosses below."""

    name = "ema_cross"
    Params = EmaCrossParams

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        assert isinstance(params, EmaCrossParams)  # checked by Strategy.__init__
        self._p = params

    @property
    def timeframes(self) -> tuple[str, ...]:
        p = self._p
        return (p.timeframe,) if p.trend_timeframe is None else (p.timeframe, p.trend_timeframe)

    @property
    def warmup(self) -> dict[str, int]:
        p = self._p
        needs = {p.timeframe: 3 * max(p.slow, p.atr_period)}
        if p.trend_timeframe is not None:
            needs[p.trend_timeframe] = p.slow + 1
        return needs

    def evaluate(self, frames: Mapping[str, pl.DataFrame]) -> Signal | None:
        p = self._p
        base = self.require_frame(frames, p.timeframe)
        if base.height < self.warmup[p.timeframe]:
            return None
        last = self._last_two(base)
        fast_prev, fast_now = last["fast"]
        slow_prev, slow_now = last["slow"]
        atr = float(last["atr"][1])
        now = fast_now - slow_now
        direction = _cross(fast_prev - slow_prev, now, atr)
        if direction is None:
            return None
        trend = None
        if p.trend_timeframe is not None:
            trend = self._trend(frames, p.trend_timeframe, base)
        return self._conclude(direction, now, atr, float(last["close"][1]), trend)

    def signal_series(
        self, frames: Mapping[str, pl.DataFrame], windows: Mapping[str, int]
    ) -> dict[int, Signal]:
        """`evaluate` on every window of a whole history, vectorised; see Strategy's contract.

        The averages are recomputed per window (`rolling_ewm_mean`), exactly as `evaluate`
        computes them on the runner's window; only the rows where a cross fires go through
        the same scalar code as `evaluate` (`_cross` already passed, `_conclude`).
        """
        p = self._p
        base = self.require_frame(frames, p.timeframe)
        window = self.window_length(windows, p.timeframe)
        close, high, low = (base[c].to_numpy() for c in ("close", "high", "low"))
        with np.errstate(all="ignore"):  # NaN and inf propagate silently, as in polars
            fast = rolling_ewm_mean(close, span_alpha(p.fast), window, tail=2)
            slow = rolling_ewm_mean(close, span_alpha(p.slow), window, tail=2)
            atr = rolling_ewm_mean(
                _true_range(high, low, close), 1 / p.atr_period, window, first=high - low
            )[-1]
            before, now = fast[0] - slow[0], fast[1] - slow[1]
            rows = np.arange(base.height)
            fires = (np.minimum(rows + 1, window) >= self.warmup[p.timeframe]) & (
                ((before <= 0) & (now > 0)) | ((before >= 0) & (now < 0))
            )
        trend_at = None
        if p.trend_timeframe is not None:
            trend_at = self._trend_series(frames, windows, base, p.trend_timeframe)
        signals: dict[int, Signal] = {}
        for r in np.flatnonzero(fires).tolist():
            direction = _cross(float(before[r]), float(now[r]), float(atr[r]))
            if direction is None:  # ATR 0 or NaN
                continue
            trend = None if trend_at is None else trend_at(r)
            signal = self._conclude(direction, float(now[r]), float(atr[r]), float(close[r]), trend)
            if signal is not None:
                signals[r] = signal
        return signals

    def _trend_series(
        self,
        frames: Mapping[str, pl.DataFrame],
        windows: Mapping[str, int],
        base: pl.DataFrame,
        timeframe: str,
    ) -> Callable[[int], tuple[Direction, str] | None]:
        """`_trend` for base row r, as a lookup into the trend computed on every window."""
        window = self.window_length(windows, timeframe)
        trend = self.require_frame(frames, timeframe)
        close = trend["close"].to_numpy()
        average = rolling_ewm_mean(close, span_alpha(self._p.slow), window)[-1]
        # the last trend candle closed by the base candle's close, as in `_trend`: in ns
        shift = (timeframe_seconds(self._p.timeframe) - timeframe_seconds(timeframe)) * 10**9
        cutoff = base["timestamp"].dt.epoch("ns").to_numpy() + shift
        last = np.searchsorted(trend["timestamp"].dt.epoch("ns").to_numpy(), cutoff, "right") - 1
        warm = np.minimum(last + 1, window) >= self.warmup[timeframe]

        def at(r: int) -> tuple[Direction, str] | None:
            if not warm[r]:
                return None
            j = int(last[r])
            return self._trend_verdict(timeframe, float(close[j]), float(average[j]))

        return at

    def _last_two(self, base: pl.DataFrame) -> pl.DataFrame:
        """EMAs, ATR and close on the previous and the last candle, computed vectorised."""
        p = self._p
        return base.select(
            fast=ema(p.fast).tail(2),
            slow=ema(p.slow).tail(2),
            atr=wilder_atr(p.atr_period).tail(2),
            close=pl.col("close").tail(2),
        )

    def _trend(
        self, frames: Mapping[str, pl.DataFrame], timeframe: str, base: pl.DataFrame
    ) -> tuple[Direction, str] | None:
        """The trend's direction as known at the base candle's close, or None if not warm.

        Trend candles that had not closed by then are dropped: a caller that hands over a
        whole backtest's higher-timeframe frame must not leak the future into the filter.
        """
        last_open: datetime = base["timestamp"][-1]
        cutoff = last_open + timeframe_delta(self._p.timeframe) - timeframe_delta(timeframe)
        trend = self.require_frame(frames, timeframe).filter(pl.col("timestamp") <= cutoff)
        if trend.height < self.warmup[timeframe]:
            return None
        row = trend.select(
            close=pl.col("close").last(),
            average=ema(self._p.slow).last(),
        ).row(0)
        return self._trend_verdict(timeframe, float(row[0]), float(row[1]))

    def _trend_verdict(
        self, timeframe: str, close: float, average: float
    ) -> tuple[Direction, str] | None:
        """The trend's direction and the reason's suffix, from its last close and EMA."""
        if close > average:
            return Direction.LONG, f"; {timeframe} close above ema{self._p.slow}"
        if close < average:
            return Direction.SHORT, f"; {timeframe} close below ema{self._p.slow}"
        return None

    def _conclude(
        self,
        direction: Direction,
        now: float,
        atr: float,
        close: float,
        trend: tuple[Direction, str] | None,
    ) -> Signal | None:
        """The Signal for a cross, or None when the trend filter (if any) disagrees."""
        p = self._p
        side = "above" if direction is Direction.LONG else "below"
        reason = f"ema{p.fast} crossed {side} ema{p.slow} on {p.timeframe}"
        if p.trend_timeframe is not None:
            if trend is None or trend[0] != direction:
                return None
            reason += trend[1]
        confidence = min(1.0, abs(now) / atr / FULL_CONFIDENCE_SEPARATION)
        return _signal(direction, close, atr, p, confidence, reason)


def ema(span: int, column: str = "close") -> pl.Expr:
    """EMA with alpha = 2/(span+1), seeded with the first value (the recursive form)."""
    return pl.col(column).ewm_mean(span=span, adjust=False)


def wilder_atr(period: int) -> pl.Expr:
    """Wilder's ATR: true range smoothed with alpha = 1/period, seeded with the first range."""
    high, low, prev_close = pl.col("high"), pl.col("low"), pl.col("close").shift(1)
    true_range = pl.max_horizontal(  # ignores the null prev close on the first row
        high - low, (high - prev_close).abs(), (low - prev_close).abs()
    )
    return true_range.ewm_mean(alpha=1 / period, adjust=False)


def _true_range(
    high: npt.NDArray[np.float64], low: npt.NDArray[np.float64], close: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """`wilder_atr`'s true range over a whole series; row 0 (no previous close) is high - low."""
    with np.errstate(all="ignore"):
        true_range = high - low
        prev_close = close[:-1]
        true_range[1:] = np.maximum(
            true_range[1:],
            np.maximum(np.abs(high[1:] - prev_close), np.abs(low[1:] - prev_close)),
        )
    return true_range


def _cross(before: float, now: float, atr: float) -> Direction | None:
    """The cross of fast - slow from `before` to `now`, or None (also when ATR is 0 or NaN)."""
    if not math.isfinite(atr) or atr <= 0:
        return None
    if before <= 0 < now:
        return Direction.LONG
    if before >= 0 > now:
        return Direction.SHORT
    return None


def _signal(
    direction: Direction,
    close: float,
    atr: float,
    p: EmaCrossParams,
    confidence: float,
    reason: str,
) -> Signal | None:
    """Levels in Decimal; None when quantising collapses them or a level would be <= 0."""
    entry = signal_price(close)
    risk = signal_price(p.stop_atr * atr)
    sign = 1 if direction is Direction.LONG else -1
    stop = entry - sign * risk
    take_profit = (entry + sign * (Decimal(repr(p.reward_risk)) * risk)).quantize(PRICE_QUANTUM)
    if risk <= 0 or min(entry, stop, take_profit) <= 0:
        return None
    return Signal(direction, entry, stop, take_profit, confidence, reason)
