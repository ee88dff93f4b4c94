"""Liquidity pools: equal highs (buy-side liquidity) and equal lows (sell-side liquidity).

Definitions (swings as in `strategies.indicators.swings`, rows from 0):

- Runs. Take the confirmed swing highs in row order. Two consecutive swing highs are "equal"
  when `|h - h_prev| <= tolerance * h_prev` (tolerance relative: 0.001 = 0.1 %). A run is a
  maximal sequence of consecutive swing highs each equal to the one before. Consecutive
  matters: between two consecutive swing highs no high exceeds the higher of the two (it
  would itself be a swing high), so nothing inside a run has traded above the run. A swing
  high that is not equal to the previous one, higher or lower, starts a new run. Each step is
  within tolerance of the previous, so a long run may drift by up to
  (touches - 1) * tolerance in total.
- Pool. When a run reaches `min_touches` swing highs, and again at every further touch, the
  touch's row gets a buy-side pool (`liquidity = +1`) resting above
  `liquidity_level = max(run's highs so far)`. Swing lows mirror this: sell-side pools
  (`liquidity = -1`) below `min(run's lows so far)`.
- `liquidity_known_at`: the touching swing's known-at row, `row + right`.
- `swept_at`: the first row j > liquidity_known_at whose high goes strictly above a buy-side
  level (low strictly below a sell-side level). A wick is enough: no close back inside is
  required, so a sweep may also be a real breakout; check `close[swept_at]` against the
  level to tell a rejection from a break. Between the touch and its known-at row no high can
  exceed the level (the swing's right-hand window), so none is missed.
- `side`: "both" (default), "buy" or "sell": which pools to report.
- One row, two pools: a candle that is both a swing high and a swing low (an outside bar) can
  extend a qualifying run on both sides at once. One row holds one pool, so with
  side="both" the buy-side pool is reported and that sell-side one is left out (58 of the
  3717 sell-side pools on the 60k ETH 1m test candles, at the defaults). A strategy that needs
  every sell-side pool calls with side="sell" (and side="buy" for the buy-side ones).

Known-at semantics as everywhere: a strategy at row k may use a pool only when
`liquidity_known_at <= k` and consider it swept only when `swept_at <= k`.

Implementation: runs are cumulative sums over the (few) swing rows; levels are cumulative
max / min within each run; sweeps use the vectorised first-hit search. No Python loop.
"""

from __future__ import annotations

from typing import Literal

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
from strategies.indicators.swings import swing_exprs

Side = Literal["both", "buy", "sell"]


def liquidity(
    df: pl.DataFrame,
    left: int = 2,
    right: int = 2,
    tolerance: float = 0.001,
    min_touches: int = 2,
    side: Side = "both",
) -> pl.DataFrame:
    """`df` with liquidity-pool columns added (see the module docstring).

    Columns, on the row of the swing that completes or extends a pool, else null:
    `liquidity` (Int8: +1 buy-side above highs / -1 sell-side below lows),
    `liquidity_level` (Float64), `liquidity_known_at`, `swept_at` (Int64).
    """
    check_frame(df)
    check_window(left, right)
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if side not in ("both", "buy", "sell"):
        raise ValueError(f"side must be 'both', 'buy' or 'sell', got {side!r}")
    if min_touches < 1:
        raise ValueError(f"min_touches must be at least 1, got {min_touches}")
    candles = df.select("high", "low", *swing_exprs(left, right)[:2], row_number().alias(ROW))
    highs = _pools(candles, "swing_high", tolerance, min_touches, highs=True)
    lows = _pools(candles, "swing_low", tolerance, min_touches, highs=False)
    if side == "sell":
        highs = highs.clear()
    elif side == "buy":
        lows = lows.clear()
    pools = (
        candles.select("high", "low", ROW)
        .join(highs, on=ROW, how="left", maintain_order="left")
        .join(lows, on=ROW, how="left", maintain_order="left", suffix="_low")
        .with_columns(
            liquidity=pl.when(pl.col("level").is_not_null())
            .then(pl.lit(1, SIGN_DTYPE))
            .when(pl.col("level_low").is_not_null())
            .then(pl.lit(-1, SIGN_DTYPE)),
            liquidity_level=pl.coalesce("level", "level_low"),
        )
        .with_columns(
            liquidity_known_at=pl.when(pl.col("liquidity").is_not_null()).then(
                (pl.col(ROW) + right).cast(ROW_DTYPE)
            )
        )
    )
    start = pools["liquidity_known_at"] + 1
    kind = pl.col("liquidity")
    above = first_hit(
        -pools["high"],
        start,
        pools.select(pl.when(kind == 1).then(-pl.col("liquidity_level"))).to_series(),
        strict=True,
    )
    below = first_hit(
        pools["low"],
        start,
        pools.select(pl.when(kind == -1).then("liquidity_level")).to_series(),
        strict=True,
    )
    added = pools.select(
        "liquidity", "liquidity_level", "liquidity_known_at", swept_at=pl.coalesce(above, below)
    )
    return attach(df, added)


def _pools(
    candles: pl.DataFrame,
    column: str,
    tolerance: float,
    min_touches: int,
    *,
    highs: bool,
) -> pl.DataFrame:
    """Rows (`_row`) and `level` of the pools of one side, from its swing column."""
    price = pl.col(column)
    previous = price.shift(1)
    run = (~((price - previous).abs() <= tolerance * previous)).fill_null(True).cum_sum()
    level = price.cum_max() if highs else price.cum_min()  # the run's outermost touch
    return (
        candles.lazy()
        .filter(price.is_not_null())
        .with_columns(_run=run)
        .with_columns(
            _touches=pl.int_range(pl.len()).over("_run") + 1,
            level=level.over("_run"),
        )
        .filter(pl.col("_touches") >= min_touches)
        .select(ROW, "level")
        .collect()
    )
