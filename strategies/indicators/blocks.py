"""Order blocks and breaker blocks, anchored on the structure breaks of `structure`.

Order block (definitions use `structure`'s breaks: a BOS or a CHoCH, rows from 0):

- A bullish break at row t broke the swing high at row s (`structure_level`). The bullish
  order block is the last down candle (`close < open`) strictly between them: the largest
  row r with s < r < t and close[r] < open[r]. No down candle in that span: no order block.
  Mirror image for a bearish break: the last up candle (`close > open`) after the broken
  swing low and before the breaking candle. Dojis (close == open) are neither colour.
- CHoCHs make order blocks too: the displacement that changes character is the classic one.
- Zone: the whole candle, wick to wick: `ob_top = high[r]`, `ob_bottom = low[r]`.
- `ob_known_at = t`, the row whose close broke structure; before it, r is just a candle. If two
  breaks pick the same candle (possible with right >= 3), the first one confirms it.
- `ob_mitigated_at`: the first row j > ob_known_at whose range trades back into the zone:
  `low[j] <= ob_top` for a bullish block, `high[j] >= ob_bottom` for a bearish one.

Breaker block:

- An order block fails when a later close goes through it: for a bullish block the first row
  j > ob_known_at with `close[j] < ob_bottom`, for a bearish block `close[j] > ob_top`.
  A wick through it is not enough.
- The failed block becomes a breaker of the opposite direction, on the order block's row:
  a failed bullish block is a bearish breaker (-1, resistance from below), a failed bearish
  block a bullish breaker (+1, support from above), with the block's zone.
- `breaker_known_at = j`, the row of the close that broke the block.

Known-at semantics as everywhere: a strategy at row k may use a block only when its
`*_known_at <= k`, and treat it as mitigated only when `ob_mitigated_at <= k`; a frame that
ends at row k shows later facts as null.

Implementation: the last down / up candle before every row is a forward fill of row numbers;
breaks are few and joined back by row; mitigation and failure use the vectorised
first-hit search. No Python loop over candles or breaks.
"""

from __future__ import annotations

import polars as pl

from strategies.indicators._common import (
    ROW,
    ROW_DTYPE,
    SIGN_DTYPE,
    attach,
    check_frame,
    check_window,
    first_hit,
    row_number,
)
from strategies.indicators.structure import breaks


def order_blocks(df: pl.DataFrame, left: int = 2, right: int = 2) -> pl.DataFrame:
    """`df` with order-block columns added (see the module docstring).

    Columns, set on the order-block candle's row, else null: `ob` (Int8: +1 bullish /
    -1 bearish), `ob_top`, `ob_bottom` (Float64), `ob_known_at`, `ob_mitigated_at` (Int64).
    """
    check_frame(df)
    check_window(left, right)
    return attach(df, _order_blocks(df, left, right).drop("high", "low", "close"))


def breaker_blocks(df: pl.DataFrame, left: int = 2, right: int = 2) -> pl.DataFrame:
    """`df` with breaker-block columns added (see the module docstring).

    Columns, set on the failed order block's row, else null: `breaker` (Int8: +1 bullish /
    -1 bearish), `breaker_top`, `breaker_bottom` (Float64), `breaker_known_at` (Int64).
    """
    check_frame(df)
    check_window(left, right)
    obs = _order_blocks(df, left, right)
    start = obs["ob_known_at"] + 1
    bull_fails = first_hit(
        obs["close"],
        start,
        obs.select(pl.when(pl.col("ob") == 1).then("ob_bottom")).to_series(),
        strict=True,
    )
    bear_fails = first_hit(
        -obs["close"],
        start,
        obs.select(pl.when(pl.col("ob") == -1).then(-pl.col("ob_top"))).to_series(),
        strict=True,
    )
    failed_at = pl.coalesce(bull_fails, bear_fails)
    failed = failed_at.is_not_null()
    added = obs.select(
        breaker=pl.when(failed).then(-pl.col("ob")),
        breaker_top=pl.when(failed).then("ob_top"),
        breaker_bottom=pl.when(failed).then("ob_bottom"),
        breaker_known_at=failed_at,
    )
    return attach(df, added)


def _order_blocks(df: pl.DataFrame, left: int, right: int) -> pl.DataFrame:
    """The order-block columns plus high, low and close, one row per candle."""
    row = row_number()
    open_, close = pl.col("open"), pl.col("close")
    candles = df.select(
        "high",
        "low",
        "close",
        _last_down=pl.when(close < open_).then(row).forward_fill().shift(1),
        _last_up=pl.when(close > open_).then(row).forward_fill().shift(1),
    )
    structure = breaks(df, left, right)
    kind = pl.col("_break")
    picked = (
        pl.concat([candles, structure], how="horizontal")
        .select(
            pl.when(kind == 1).then("_last_down").when(kind == -1).then("_last_up").alias(ROW),
            pl.col("_swing_row"),
            ob=kind,
            ob_known_at=row,
        )
        .filter(pl.col(ROW) > pl.col("_swing_row"))
        .group_by(ROW)  # a down candle only serves bullish breaks: one kind per row
        .agg(pl.col("ob").first(), pl.col("ob_known_at").min())
    )
    obs = (
        candles.select("high", "low", "close", row.alias(ROW))
        .join(picked, on=ROW, how="left", maintain_order="left")
        .with_columns(
            ob_top=pl.when(pl.col("ob").is_not_null()).then("high"),
            ob_bottom=pl.when(pl.col("ob").is_not_null()).then("low"),
        )
    )
    start = obs["ob_known_at"] + 1
    bull_touch = first_hit(
        obs["low"],
        start,
        obs.select(pl.when(pl.col("ob") == 1).then("ob_top")).to_series(),
        strict=False,
    )
    bear_touch = first_hit(
        -obs["high"],
        start,
        obs.select(pl.when(pl.col("ob") == -1).then(-pl.col("ob_bottom"))).to_series(),
        strict=False,
    )
    return obs.select(
        "high",
        "low",
        "close",
        pl.col("ob").cast(SIGN_DTYPE),
        "ob_top",
        "ob_bottom",
        pl.col("ob_known_at").cast(ROW_DTYPE),
        ob_mitigated_at=pl.coalesce(bull_touch, bear_touch),
    )
