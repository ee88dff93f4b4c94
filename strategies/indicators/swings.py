"""Swing highs and lows (fractals), the pivots every other ICT concept is built on.

Definition, with `left` and `right` >= 1 and row i counted from 0 in the frame passed in:

- Swing high at row i: `high[i]` is strictly greater than each of the `left` highs before it
  (rows i-left .. i-1) and greater than or equal to each of the `right` highs after it
  (rows i+1 .. i+right). Ties: of a run of equal highs the first one is the swing, once; a
  later equal high is not strictly above it, so a flat top gives exactly one swing high.
- Swing low at row i: the mirror image: `low[i]` strictly below the `left` lows before it and
  at or below the `right` lows after it.
- Rows with fewer than `left` candles before them, or fewer than `right` after them, are
  never swings (not yet, for the last `right` rows: they may become swings as candles close).
- One candle can be both a swing high and a swing low (an outside bar).

Look-ahead: a swing at row i needs the `right` candles after it, so it becomes known at the
close of row `i + right`, given as `swing_high_known_at` / `swing_low_known_at`. The swing
price sits on row i for charting; a strategy standing at row k may only use the swings with
`*_known_at <= k`. On a frame that ends at row k that is automatic (later swings are null),
but on a backtest frame holding the future it is the consumer's job to filter.
"""

from __future__ import annotations

import polars as pl

from strategies.indicators._common import (
    ROW_DTYPE,
    attach,
    check_frame,
    check_window,
    row_number,
)


def swings(df: pl.DataFrame, left: int = 2, right: int = 2) -> pl.DataFrame:
    """`df` with swing columns added (see the module docstring for the definition).

    Columns: `swing_high`, `swing_low` (Float64: the high / low of the swing candle, else null);
    `swing_high_known_at`, `swing_low_known_at` (Int64: `row + right` on swing rows, else null).
    """
    check_frame(df)
    check_window(left, right)
    return attach(df, df.select(swing_exprs(left, right)))


def swing_exprs(left: int, right: int) -> list[pl.Expr]:
    """The four swing columns as expressions over `high` and `low`."""
    high, low, row = pl.col("high"), pl.col("low"), row_number()
    # rolling_* over a shifted column is null until `left` real values fill the window,
    # and shift(-right) is null for the last `right` rows: both read as "not a swing".
    is_high = (high > high.shift(1).rolling_max(left)) & (
        high >= high.rolling_max(right).shift(-right)
    )
    is_low = (low < low.shift(1).rolling_min(left)) & (low <= low.rolling_min(right).shift(-right))
    known = (row + right).cast(ROW_DTYPE)
    return [
        pl.when(is_high).then(high).alias("swing_high"),
        pl.when(is_low).then(low).alias("swing_low"),
        pl.when(is_high).then(known).alias("swing_high_known_at"),
        pl.when(is_low).then(known).alias("swing_low_known_at"),
    ]
