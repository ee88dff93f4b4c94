"""The indicators as they read on every rolling window of a series, computed once for the series.

Why: a live strategy computes the indicators on its window, the last `length` candles, and
their state machines start afresh at the window's first row. A backtest that must give the
signals live trading gives cannot run them once over the whole history and read the rows off:
near a window's start the two differ. It need not run them per window either (one polars
evaluation per candle is what made backtests slow). The window's answer is the whole series'
answer with a few facts dropped, and which ones follows from the definitions:

- Swings (`swings`). A swing at row g needs rows g - left .. g + right, so a window starting
  at row s and ending at row k holds exactly the series' swings with s + left <= g <= k - right.
- Structure (`structure`). The active level at a row is the latest swing known by then; in
  the window the same, among the window's swings. So while the latest known swing has
  g >= s + left, its segment of rows and the first close through it are those of the series
  (the segment starts at g + right > s); when it has g < s + left, every earlier one has too
  and the window has no active level there. The window's breaks are therefore the series'
  breaks whose broken swing is at a row >= s + left, and its trend at row k is the direction
  of the latest of them at or before k (0 without one).
- Order blocks (`order_blocks`). A window break picks the same candle as in the series (the
  last opposite candle strictly between the swing and the break is after s + left). A candle
  picked by several breaks is known at the earliest of the window's breaks that pick it; its
  mitigation is the first touch after that row, which, when it is at or before k, is the
  series' first touch after that row.
- Fair value gaps (`fair_value_gaps`). Three candles, so the window holds the series' gaps at
  rows g >= s + 2, with the series' first touch when it is at or before k.
- Liquidity (`liquidity`). Runs of equal swings start afresh at the window's first swing, so
  levels and touch counts are recomputed per window from the window's swings (`SwingRuns`):
  cheap, as a strategy asks only on the rows where it signals.

`tests/unit/test_ict_series.py` checks every one of these against the indicators computed
on each window, on real candles and on random ones.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from strategies.indicators._common import check_frame, check_window, first_hit
from strategies.indicators.fvg import fair_value_gaps
from strategies.indicators.structure import breaks
from strategies.indicators.swings import swings

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
NONE = -1  # "no row" in the int arrays below


@dataclass(frozen=True, slots=True)
class ZoneInstances:
    """Zones (FVGs or order blocks) as windows see them, one entry per way of seeing one.

    Entry z is what a window starting at row s sees when `min_start[z] <= s <= max_start[z]`:
    a zone of `direction` (+1 / -1) from `bottom` to `top`, known at row `known_at`, first
    touched at `mitigated_at` (NONE: never, in the whole series). A window ending at k sees
    it mitigated at that row only when `mitigated_at <= k`.
    """

    direction: npt.NDArray[np.int8]
    bottom: FloatArray
    top: FloatArray
    known_at: IntArray
    mitigated_at: IntArray
    min_start: IntArray
    max_start: IntArray

    def __len__(self) -> int:
        return int(self.known_at.size)


def fvg_instances(df: pl.DataFrame, min_gap: float = 0.0) -> ZoneInstances:
    """`fair_value_gaps` (touch mitigation) as every window sees them: a gap at row g is in
    the windows starting at or before g - 2, unchanged."""
    gaps = fair_value_gaps(df, min_gap).select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        "fvg",
        "fvg_bottom",
        "fvg_top",
        pl.col("fvg_mitigated_at").fill_null(NONE),
    )
    gaps = gaps.filter(pl.col("fvg").is_not_null())
    row = gaps["row"].to_numpy()
    return ZoneInstances(
        direction=gaps["fvg"].to_numpy(),
        bottom=gaps["fvg_bottom"].to_numpy(),
        top=gaps["fvg_top"].to_numpy(),
        known_at=row,
        mitigated_at=gaps["fvg_mitigated_at"].to_numpy(),
        min_start=np.zeros_like(row),
        max_start=row - 2,
    )


def order_block_instances(df: pl.DataFrame, left: int = 2, right: int = 2) -> ZoneInstances:
    """`order_blocks` as every window sees them: one entry per structure break that picks a
    candle; seen by the windows that hold the broken swing (s <= swing - left) and none of the
    earlier breaks picking the same candle (those would make it known earlier)."""
    check_frame(df)
    check_window(left, right)
    n = df.height
    opens, closes = df["open"].to_numpy(), df["close"].to_numpy()
    highs, lows = df["high"].to_numpy(), df["low"].to_numpy()
    found = breaks(df, left, right).select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), "_break", "_swing_row"
    )
    found = found.filter(pl.col("_break").is_not_null())
    at = found["row"].to_numpy()
    kind = found["_break"].to_numpy().astype(np.int8)
    swing = found["_swing_row"].to_numpy()
    # the last down (up) candle strictly before each row, NONE before the first
    rows = np.arange(n, dtype=np.int64)
    last_down = _last_before(np.where(closes < opens, rows, NONE))
    last_up = _last_before(np.where(closes > opens, rows, NONE))
    picked = np.where(kind == 1, last_down[at], last_up[at])
    keep = picked > swing  # also drops NONE
    at, kind, swing, picked = at[keep], kind[keep], swing[keep], picked[keep]
    # earlier breaks picking the same candle: the latest swing among them bounds the starts
    order = np.lexsort((at, picked))
    earlier = np.full(at.size, NONE, dtype=np.int64)
    for i in range(1, order.size):  # breaks are few: hundreds per month of 5m candles
        a, b = order[i - 1], order[i]
        if picked[a] == picked[b]:
            earlier[b] = max(earlier[a], swing[a])
    min_start = np.where(earlier == NONE, 0, earlier - left + 1)
    top, bottom = highs[picked], lows[picked]
    start = pl.Series(at + 1)
    bull = first_hit(pl.Series(lows), start, _where(kind == 1, top), strict=False)
    bear = first_hit(pl.Series(-highs), start, _where(kind == -1, -bottom), strict=False)
    mitigated = pl.select(pl.coalesce(bull, bear)).to_series().fill_null(NONE).to_numpy()
    return ZoneInstances(
        direction=kind,
        bottom=bottom,
        top=top,
        known_at=at,
        mitigated_at=mitigated.astype(np.int64),
        min_start=min_start.astype(np.int64),
        max_start=swing - left,
    )


def window_trend(df: pl.DataFrame, left: int, right: int, length: int) -> npt.NDArray[np.int8]:
    """`structure(window)["trend"][-1]` for the window of `length` rows ending at each row
    (shorter at the series' start): the latest series break at or before the row whose
    broken swing is at least `left` rows after the window's first row."""
    check_frame(df)
    check_window(left, right)
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    n = df.height
    found = breaks(df, left, right).select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), "_break", "_swing_row"
    )
    found = found.filter(pl.col("_break").is_not_null())
    out = np.zeros(n, dtype=np.int8)
    if found.is_empty():
        return out
    at = found["row"].to_numpy()
    kind = found["_break"].to_numpy().astype(np.int8)
    swing = found["_swing_row"].to_numpy()
    ends = np.arange(n, dtype=np.int64)
    latest = np.searchsorted(at, ends, side="right") - 1  # last break at or before the row
    floor = np.maximum(0, ends - length + 1) + left  # its swing must be at or after this
    # the latest break at or before `latest` with swing >= floor: a first hit, backwards
    count = at.size
    reversed_swing = pl.Series(-swing[::-1].astype(np.float64))
    asked = latest >= 0
    hit = first_hit(
        reversed_swing,
        pl.Series(np.where(asked, count - 1 - latest, count)),
        pl.Series(-floor.astype(np.float64)),
        strict=False,
    )
    found_at = hit.fill_null(-1).to_numpy()
    ok = asked & (found_at >= 0)
    out[ok] = kind[count - 1 - found_at[ok]]
    return out


class SwingRuns:
    """`liquidity`'s pools as a window sees them, recomputed from the series' swings.

    The pools of a window depend on where its runs of equal swings start, so they are worked
    out per window, in plain Python over the window's swings: a strategy asks only on the
    rows where it would signal.
    """

    def __init__(
        self, df: pl.DataFrame, left: int, right: int, tolerance: float, min_touches: int
    ) -> None:
        check_frame(df)
        check_window(left, right)
        found = swings(df, left, right).select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), "swing_high", "swing_low"
        )
        highs = found.filter(pl.col("swing_high").is_not_null())
        lows = found.filter(pl.col("swing_low").is_not_null())
        self._left, self._right = left, right
        self._tolerance, self._min_touches = tolerance, min_touches
        self._rows = {"buy": highs["row"].to_list(), "sell": lows["row"].to_list()}
        self._prices = {"buy": highs["swing_high"].to_list(), "sell": lows["swing_low"].to_list()}
        self._high = df["high"].to_numpy()
        self._low = df["low"].to_numpy()

    def unswept_levels(self, start: int, end: int, side: Literal["buy", "sell"]) -> list[float]:
        """The levels of the `side` pools of the window of rows start..end (inclusive) known
        by its last row and not swept by then, in row order (`liquidity` filtered as a
        strategy standing at the window's last row filters it)."""
        rows, prices = self._rows[side], self._prices[side]
        first = bisect.bisect_left(rows, start + self._left)
        last = bisect.bisect_right(rows, end - self._right)
        tolerance, buy = self._tolerance, side == "buy"
        levels: list[float] = []
        previous: float | None = None
        touches = 0
        level = 0.0
        for i in range(first, last):
            price = prices[i]
            if previous is not None and abs(price - previous) <= tolerance * previous:
                touches += 1
                level = max(level, price) if buy else min(level, price)
            else:
                touches, level = 1, price
            previous = price
            if touches < self._min_touches:
                continue
            known = rows[i] + self._right
            if known < end:  # swept: strictly beyond the level after it was known, by `end`
                if buy and float(self._high[known + 1 : end + 1].max()) > level:
                    continue
                if not buy and float(self._low[known + 1 : end + 1].min()) < level:
                    continue
            levels.append(level)
        return levels


def _where(mask: npt.NDArray[np.bool_], values: FloatArray) -> pl.Series:
    """`values` where `mask` holds, null elsewhere (a query `first_hit` leaves unasked)."""
    return pl.Series(np.where(mask, values, np.nan)).fill_nan(None)


def _last_before(marked: IntArray) -> IntArray:
    """Per row, the largest marked row strictly before it (NONE when there is none)."""
    running = np.maximum.accumulate(marked) if marked.size else marked
    out = np.full(marked.size, NONE, dtype=np.int64)
    out[1:] = running[:-1]
    return out
