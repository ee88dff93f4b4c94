"""ICT: higher-timeframe structure for direction, a retrace into a fair value gap or order block
for entry, opposite liquidity for the target.

Definitions (the indicators are those of `strategies.indicators`; read their docstrings):

- Frames. `timeframe` (the entry timeframe, evaluated on every close) and `trend_timeframe`
  (longer). Row k is the last row of the entry frame: the candle that just closed.
- Direction. `structure(trend frame, left, right)` on the trend candles closed by the close of
  row k (later ones are dropped, so a caller may hand over a whole backtest frame); the last
  such row's `trend`: +1 allows longs only, -1 shorts only, 0 (no break yet) nothing.
- Zones, on the entry frame: bullish fair value gaps (`fvg == 1`, gap `fvg_bottom..fvg_top`)
  and bullish order blocks (`ob == 1`, candle `ob_bottom..ob_top`) for longs; the bearish ones
  for shorts. `zones` picks FVGs, order blocks or both. A zone is a candidate at row k when
  * it was known before the retrace: `known_at < k` (an FVG is known at its own row, an order
    block at `ob_known_at`, the row whose close broke structure);
  * it is recent: `k - known_at <= max_age`;
  * it is unmitigated until now and row k is its first retrace: `mitigated_at == k` (the
    indicators' touch rule: the low trades to the top of a bullish zone, the high to the
    bottom of a bearish one). A zone touched before k has had its retrace; none after k is
    visible, since `mitigated_at > k` would be the future;
  * row k did not close through it: `close[k] >= bottom` (long), `close[k] <= top` (short).
  Of several candidates the most recently known one wins (ties: the FVG).
- Levels. entry = close[k]; stop = zone bottom * (1 - stop_buffer) for a long, zone top *
  (1 + stop_buffer) for a short (`stop_buffer` is a fraction of price: beyond the block plus
  a little room). risk = |entry - stop|.
- Target: opposite liquidity. For a long the buy-side pools (`liquidity(side="buy")`, equal
  highs) above the entry with `liquidity_known_at <= k` and not swept by row k (`swept_at`
  null or `> k`; on a frame ending at k a later sweep is null anyway); for a short the
  sell-side pools below it. The nearest pool whose reward:risk is at least `min_reward_risk`
  is the take-profit; when none qualifies, take_profit = entry +/- `reward_risk` * risk.
- Confidence: 1.0 with a liquidity target, 0.5 with the fallback multiple.
- Warm-up: `lookback` closed candles on `timeframe`, `trend_lookback` on `trend_timeframe`.
  Only the last `lookback` (`trend_lookback`) rows are read, so a live window and a whole
  backtest frame give the same signals once both hold that many candles.
- None: before warm-up, against or without a trend, without a fresh retrace, or when
  quantised levels collapse (risk 0) or a level would be <= 0.

Backtests: `signal_series` gives every signal of a whole history at once, equal to `evaluate`
on the live runner's windows: the indicators run once over the history and
`strategies.indicators.windows` says which of their facts each window sees.

Known-at rules, respected strictly: every pattern is used only when its `*_known_at` (or its
own row, for FVGs and structure) is `<= k`, and treated as mitigated or swept only when that
`*_at` is `<= k`. The frames are cut to the candles closed by row k's close before any
indicator runs, so nothing computed here can see a later candle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from daemon.domain.models import Direction, Signal
from daemon.domain.timeframes import timeframe_delta, timeframe_seconds
from strategies.base import PRICE_QUANTUM, Strategy, signal_price
from strategies.indicators import fair_value_gaps, liquidity, order_blocks, structure
from strategies.indicators.windows import (
    SwingRuns,
    ZoneInstances,
    fvg_instances,
    order_block_instances,
    window_trend,
)

FALLBACK_CONFIDENCE = 0.5

Zones = Literal["both", "fvg", "ob"]
Side = Literal["buy", "sell"]


class IctParams(BaseModel):
    """Parameters of `ict`; the defaults trade 5m retraces in the 1h trend."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True
    )

    timeframe: str = "5m"
    trend_timeframe: str = "1h"
    left: int = Field(default=2, ge=1, le=50)
    right: int = Field(default=2, ge=1, le=50)
    zones: Zones = "both"
    min_gap: float = Field(default=0.0, ge=0, lt=1)
    max_age: int = Field(default=48, ge=1)
    tolerance: float = Field(default=0.001, ge=0, lt=0.1)
    min_touches: int = Field(default=2, ge=1)
    stop_buffer: float = Field(default=0.0005, ge=0, lt=0.1)
    min_reward_risk: float = Field(default=1.5, gt=0)
    reward_risk: float = 2.0
    lookback: int = Field(default=200, ge=10)
    trend_lookback: int = Field(default=100, ge=3)

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, timeframe: str) -> str:
        timeframe_seconds(timeframe)
        return timeframe

    @field_validator("trend_timeframe")
    @classmethod
    def _longer_trend_timeframe(cls, trend: str, info: ValidationInfo) -> str:
        seconds = timeframe_seconds(trend)
        base = info.data.get("timeframe")
        if base is not None and seconds <= timeframe_seconds(base):
            raise ValueError(f"must be a longer timeframe than timeframe ({base}), got {trend}")
        return trend

    @field_validator("reward_risk")
    @classmethod
    def _fallback_not_below_minimum(cls, reward_risk: float, info: ValidationInfo) -> float:
        minimum = info.data.get("min_reward_risk")
        if minimum is not None and reward_risk < minimum:
            raise ValueError(f"must be at least min_reward_risk ({minimum}), got {reward_risk}")
        return reward_risk

    @field_validator("lookback")
    @classmethod
    def _lookback_covers_max_age(cls, lookback: int, info: ValidationInfo) -> int:
        max_age = info.data.get("max_age")
        if max_age is not None and lookback <= max_age:
            raise ValueError(f"must be greater than max_age ({max_age}), got {lookback}")
        return lookback


class Ict(Strategy):
    """Trade a retrace into a fresh FVG or order block in the higher-timeframe trend."""

    name = "ict"
    Params = IctParams

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        assert isinstance(params, IctParams)  # checked by Strategy.__init__
        self._p = params
        # The higher-timeframe trend changes only when a trend candle closes, but evaluate
        # runs on every base close: remember the last answer, keyed by the exact rows.
        self._last_trend: tuple[tuple[int, ...], int] | None = None

    @property
    def timeframes(self) -> tuple[str, ...]:
        return (self._p.timeframe, self._p.trend_timeframe)

    @property
    def warmup(self) -> dict[str, int]:
        return {
            self._p.timeframe: self._p.lookback,
            self._p.trend_timeframe: self._p.trend_lookback,
        }

    def evaluate(self, frames: Mapping[str, pl.DataFrame]) -> Signal | None:
        p = self._p
        base = self.require_frame(frames, p.timeframe)
        if base.height < p.lookback:
            return None
        base = base.tail(p.lookback)
        trend = self._trend(frames, base)
        if trend == 0:
            return None
        zone = self._retraced_zone(base, trend)
        if zone is None:
            return None
        side: Side = "buy" if trend > 0 else "sell"
        return self._conclude(
            trend, zone, float(base["close"][-1]), lambda: self._pool_levels(base, side)
        )

    def signal_series(
        self, frames: Mapping[str, pl.DataFrame], windows: Mapping[str, int]
    ) -> dict[int, Signal]:
        """`evaluate` on every window of a whole history; see Strategy's contract.

        The indicators run once over each whole frame; `strategies.indicators.windows` says
        which of their facts each window sees (a window's state machines start at its first
        row). The rows where a fresh retrace meets the trend go through the same scalar code
        as `evaluate` (`_conclude`), with the window's liquidity pools.
        """
        p = self._p
        base = self.require_frame(frames, p.timeframe)
        higher = self.require_frame(frames, p.trend_timeframe)
        base_window = self.window_length(windows, p.timeframe)
        trend_window = self.window_length(windows, p.trend_timeframe)
        n = base.height
        if n < p.lookback or base_window < p.lookback or trend_window < p.trend_lookback:
            return {}  # every window too short: evaluate says None
        trend = self._trend_series(base, higher)
        found = self._retraces(base, trend)
        if not found:
            return {}
        close = base["close"].to_numpy()
        runs = SwingRuns(base, p.left, p.right, p.tolerance, p.min_touches)
        signals: dict[int, Signal] = {}
        for k, zone in found.items():
            direction = int(trend[k])
            side: Side = "buy" if direction > 0 else "sell"
            start = k - p.lookback + 1
            levels = functools.partial(runs.unswept_levels, start, k, side)
            signal = self._conclude(direction, zone, float(close[k]), levels)
            if signal is not None:
                signals[k] = signal
        return signals

    def _trend_series(self, base: pl.DataFrame, higher: pl.DataFrame) -> npt.NDArray[np.int8]:
        """`_trend` for every base row: the structure trend of the last `trend_lookback`
        trend candles closed by the row's close, 0 with fewer."""
        p = self._p
        on_trend = window_trend(higher, p.left, p.right, p.trend_lookback)
        # trend candles closed by each base close, as in `_trend`: in ns
        shift = (timeframe_seconds(p.timeframe) - timeframe_seconds(p.trend_timeframe)) * 10**9
        cutoff = base["timestamp"].dt.epoch("ns").to_numpy() + shift
        closed = np.searchsorted(higher["timestamp"].dt.epoch("ns").to_numpy(), cutoff, "right")
        warm = closed >= p.trend_lookback
        return np.where(warm, on_trend[np.maximum(closed - 1, 0)], 0).astype(np.int8)

    def _retraces(
        self, base: pl.DataFrame, trend: npt.NDArray[np.int8]
    ) -> dict[int, tuple[str, float, float]]:
        """`_retraced_zone` for every base row whose window is full and has a trend."""
        p = self._p
        kinds: list[tuple[str, ZoneInstances]] = []
        if p.zones in ("both", "fvg"):
            kinds.append(("fvg", fvg_instances(base, p.min_gap)))
        if p.zones in ("both", "ob"):
            kinds.append(("order block", order_block_instances(base, p.left, p.right)))
        close = base["close"].to_numpy()
        best: dict[int, tuple[int, int, str, float, float]] = {}  # k -> (known, -rank, zone)
        for rank, (kind, zones) in enumerate(kinds):
            k = zones.mitigated_at
            start = k - p.lookback + 1
            at = np.maximum(k, 0)
            direction = zones.direction.astype(np.int8)
            holds = np.where(direction > 0, close[at] >= zones.bottom, close[at] <= zones.top)
            fresh = (
                (start >= 0)
                & (zones.min_start <= start)
                & (start <= zones.max_start)
                & (zones.known_at >= k - p.max_age)
                & (trend[at] == direction)
                & holds
            )
            for z in np.flatnonzero(fresh).tolist():
                key = (int(zones.known_at[z]), -rank)
                row = int(k[z])
                if row not in best or key > best[row][:2]:
                    best[row] = (*key, kind, float(zones.bottom[z]), float(zones.top[z]))
        return {k: (kind, bottom, top) for k, (_, _, kind, bottom, top) in sorted(best.items())}

    def _conclude(
        self,
        trend: int,
        zone: tuple[str, float, float],
        close: float,
        pool_levels: Callable[[], list[float]],
    ) -> Signal | None:
        """The Signal for a retrace into `zone` closing at `close`, or None (see the module
        docstring); `pool_levels` gives the unswept opposite pools' levels, asked only when
        the levels hold."""
        p = self._p
        direction = Direction.LONG if trend > 0 else Direction.SHORT
        kind, bottom, top = zone
        entry = signal_price(close)
        if direction is Direction.LONG:
            stop = signal_price(bottom * (1 - p.stop_buffer))
        else:
            stop = signal_price(top * (1 + p.stop_buffer))
        risk = abs(entry - stop)
        if risk <= 0 or min(entry, stop) <= 0:
            return None
        target = self._liquidity_target(pool_levels(), direction, entry, risk)
        side = "bullish" if direction is Direction.LONG else "bearish"
        trend_word = "up" if direction is Direction.LONG else "down"
        reason = (
            f"retrace into {side} {kind} {bottom:g}..{top:g} on {p.timeframe} "
            f"in {p.trend_timeframe} {trend_word}-trend"
        )
        sign = 1 if direction is Direction.LONG else -1
        if target is not None:
            take_profit, confidence = target, 1.0
            pool = "buy" if direction is Direction.LONG else "sell"
            reason += f"; target {pool}-side liquidity {target}"
        else:
            rr = Decimal(repr(p.reward_risk))
            take_profit = (entry + sign * rr * risk).quantize(PRICE_QUANTUM)
            confidence = FALLBACK_CONFIDENCE
            reason += f"; no liquidity target, {p.reward_risk:g}R"
        if take_profit <= 0 or (take_profit - entry) * sign <= 0:
            return None
        return Signal(direction, entry, stop, take_profit, confidence, reason)

    def _trend(self, frames: Mapping[str, pl.DataFrame], base: pl.DataFrame) -> int:
        """The trend timeframe's structure trend as known at the close of base's last row.

        Trend candles that had not closed by then are dropped before anything is computed.
        0 also when fewer than `trend_lookback` of them are there.
        """
        p = self._p
        last_open: datetime = base["timestamp"][-1]
        cutoff = last_open + timeframe_delta(p.timeframe) - timeframe_delta(p.trend_timeframe)
        higher = self.require_frame(frames, p.trend_timeframe).filter(pl.col("timestamp") <= cutoff)
        if higher.height < p.trend_lookback:
            return 0
        rows = higher.tail(p.trend_lookback)
        key = tuple(rows.hash_rows(seed=0).to_list())
        if self._last_trend is not None and self._last_trend[0] == key:
            return self._last_trend[1]
        trend = int(structure(rows, p.left, p.right)["trend"][-1])
        self._last_trend = (key, trend)
        return trend

    def _retraced_zone(self, base: pl.DataFrame, trend: int) -> tuple[str, float, float] | None:
        """(kind, bottom, top) of the freshest zone of `trend`'s direction first retraced at k."""
        p = self._p
        k = base.height - 1
        close = pl.lit(float(base["close"][-1]))
        candidates: list[pl.DataFrame] = []
        if p.zones in ("both", "fvg"):
            gaps = fair_value_gaps(base, p.min_gap).with_row_index("known_at")
            candidates.append(
                gaps.filter(pl.col("fvg") == trend).select(
                    pl.lit("fvg").alias("kind"),
                    pl.col("known_at").cast(pl.Int64),
                    pl.col("fvg_mitigated_at").alias("mitigated_at"),
                    pl.col("fvg_bottom").alias("bottom"),
                    pl.col("fvg_top").alias("top"),
                )
            )
        if p.zones in ("both", "ob"):
            blocks = order_blocks(base, p.left, p.right)
            candidates.append(
                blocks.filter(pl.col("ob") == trend).select(
                    pl.lit("order block").alias("kind"),
                    pl.col("ob_known_at").alias("known_at"),
                    pl.col("ob_mitigated_at").alias("mitigated_at"),
                    pl.col("ob_bottom").alias("bottom"),
                    pl.col("ob_top").alias("top"),
                )
            )
        holds = close >= pl.col("bottom") if trend > 0 else close <= pl.col("top")
        fresh = (
            pl.concat(candidates)
            .filter(
                (pl.col("known_at") < k)
                & (pl.col("known_at") >= k - p.max_age)
                & (pl.col("mitigated_at") == k)
                & holds
            )
            .sort("known_at", descending=True, maintain_order=True)
        )
        if fresh.is_empty():
            return None
        kind, _, _, bottom, top = fresh.row(0)
        return str(kind), float(bottom), float(top)

    def _pool_levels(self, base: pl.DataFrame, side: Side) -> list[float]:
        """Levels of the `side` pools known by base's last row and not swept by then."""
        p = self._p
        k = base.height - 1
        pools = liquidity(base, p.left, p.right, p.tolerance, p.min_touches, side=side).filter(
            pl.col("liquidity").is_not_null()
            & (pl.col("liquidity_known_at") <= k)
            & (pl.col("swept_at").is_null() | (pl.col("swept_at") > k))
        )
        return [float(level) for level in pools["liquidity_level"].to_list()]

    def _liquidity_target(
        self, pool_levels: list[float], direction: Direction, entry: Decimal, risk: Decimal
    ) -> Decimal | None:
        """The nearest unswept opposite pool with reward:risk >= min_reward_risk, if any."""
        p = self._p
        long = direction is Direction.LONG
        levels = sorted((signal_price(level) for level in pool_levels), reverse=not long)
        minimum = Decimal(repr(p.min_reward_risk))
        for level in levels:
            reward = (level - entry) if long else (entry - level)
            if reward > 0 and reward >= minimum * risk:
                return level
        return None
