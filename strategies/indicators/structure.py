"""Market structure from confirmed swings: breaks of structure, changes of character, trend.

Definitions (swings as in `strategies.indicators.swings`, rows counted from 0):

- Active levels. At row t the active swing high is the most recent swing high already known
  at t (`swing_high_known_at <= t`, i.e. the swing at row t - right or earlier), as long as no
  close has broken it yet; likewise the active swing low. Each level is broken at most once:
  after a break there is no active high (low) until the next swing high (low) becomes known.
- Break. Row t breaks up when `close[t] > active swing high` (strictly, on the close: a wick
  through the level is not a break); it breaks down when `close[t] < active swing low`.
  Both on one row cannot happen: it needs an unbroken swing high below an unbroken swing
  low, and whichever of the two swings is later (or its confirmation window) would have had
  to close through the earlier level or trade inside-out of it. The tests assert this.
- Trend: the direction of the most recent break at or before row t (+1 up, -1 down), 0
  before the first break. The row of a break already carries the new trend.
- BOS vs CHoCH. A break in the direction of the trend as it stood before the row is a break
  of structure (`bos`); a break against it is a change of character (`choch`), which also
  flips the trend. The very first break (trend 0) has no character to change and counts as
  a BOS.
- `structure_level`: the swing level broken, on break rows.

Everything in a row is known at that row's close: only swings with `*_known_at <= t` and
closes up to t are used, so no filtering is needed.

Implementation: no per-candle loop. The break of each level is the first close past it within
the segment of rows where it is the active level (cumulative sums over segments), and trend
is a forward fill of break directions, since breaks do not depend on the trend.
"""

from __future__ import annotations

import polars as pl

from strategies.indicators._common import (
    ROW_DTYPE,
    SIGN_DTYPE,
    attach,
    check_frame,
    check_window,
    row_number,
)
from strategies.indicators.swings import swing_exprs

STRUCTURE_COLUMNS = ("bos", "choch", "trend", "structure_level")


def structure(df: pl.DataFrame, left: int = 2, right: int = 2) -> pl.DataFrame:
    """`df` with market-structure columns added (see the module docstring).

    Columns: `bos`, `choch` (Int8: +1 bullish / -1 bearish on break rows, else null; exactly
    one of them is set on a break row), `trend` (Int8: +1 / -1 / 0 on every row),
    `structure_level` (Float64: the swing level broken, on break rows).
    """
    check_frame(df)
    check_window(left, right)
    return attach(df, breaks(df, left, right).select(STRUCTURE_COLUMNS))


def trend(df: pl.DataFrame, left: int = 2, right: int = 2) -> pl.DataFrame:
    """`df` with only the `trend` column of `structure` added: +1 / -1 / 0, known at each row.

    For a higher timeframe, compute it on that timeframe's frame and join it onto the lower
    one by close time (`join_asof` backward on open time + timeframe), never by open time.
    """
    check_frame(df)
    check_window(left, right)
    return attach(df, breaks(df, left, right).select("trend"))


def breaks(df: pl.DataFrame, left: int, right: int) -> pl.DataFrame:
    """The structure columns plus the private `_break` (+1 / -1 / null) and `_swing_row`
    (the row of the swing whose level broke), one row per candle."""
    row = row_number()
    close = pl.col("close")
    new_high = pl.col("swing_high").shift(right)  # the swing high that becomes known at row t
    new_low = pl.col("swing_low").shift(right)
    return (
        df.lazy()
        .select("close", *swing_exprs(left, right)[:2])
        .with_columns(
            _high_level=new_high.forward_fill(),
            _low_level=new_low.forward_fill(),
            _high_row=pl.when(new_high.is_not_null()).then(row - right).forward_fill(),
            _low_row=pl.when(new_low.is_not_null()).then(row - right).forward_fill(),
            _high_segment=new_high.is_not_null().cum_sum(),
            _low_segment=new_low.is_not_null().cum_sum(),
        )
        .with_columns(
            _up=(close > pl.col("_high_level")).fill_null(False),
            _down=(close < pl.col("_low_level")).fill_null(False),
        )
        .with_columns(  # only the first close past a level in its segment breaks it
            _up=pl.col("_up") & (pl.col("_up").cum_sum().over("_high_segment") == 1),
            _down=pl.col("_down") & (pl.col("_down").cum_sum().over("_low_segment") == 1),
        )
        .with_columns(
            _break=pl.when("_up")
            .then(pl.lit(1, SIGN_DTYPE))
            .when("_down")
            .then(pl.lit(-1, SIGN_DTYPE)),
            structure_level=pl.when("_up").then("_high_level").when("_down").then("_low_level"),
            _swing_row=pl.when("_up")
            .then("_high_row")
            .when("_down")
            .then("_low_row")
            .cast(ROW_DTYPE),
        )
        .with_columns(trend=pl.col("_break").forward_fill().fill_null(0))
        .with_columns(_before=pl.col("trend").shift(1, fill_value=0))
        .with_columns(
            bos=pl.when(pl.col("_break") != -pl.col("_before")).then("_break"),
            choch=pl.when(pl.col("_break") == -pl.col("_before")).then("_break"),
        )
        .select("bos", "choch", "trend", "structure_level", "_break", "_swing_row")
        .collect()
    )
