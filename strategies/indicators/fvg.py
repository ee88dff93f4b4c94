"""Fair value gaps: three-candle imbalances.

Definitions, on the candles at rows i-2, i-1 and i (i >= 2):

- Bullish FVG at row i: `low[i] > high[i-2]`; the gap is `fvg_bottom = high[i-2]` to
  `fvg_top = low[i]`, the price range candle i-1 crossed without overlap.
- Bearish FVG at row i: `high[i] < low[i-2]`; `fvg_top = low[i-2]`, `fvg_bottom = high[i]`.
  (Both at once is impossible: it would need low[i-2] > high[i].)
- `min_gap` is a fraction of the third candle's close: a gap counts only when
  `fvg_top - fvg_bottom >= min_gap * close[i]` (0.001 = 0.1 % of price). The default 0 keeps
  every gap of positive size; the comparisons above are strict, so a zero-width gap never counts.
- The FVG is known at the close of row i (its own row): no filtering needed.
- Mitigation, `mitigation="touch"` (the default): the first later row j > i whose range
  trades into the gap: `low[j] <= fvg_top` for a bullish gap, `high[j] >= fvg_bottom` for a
  bearish one (touching the edge counts). `mitigation="fill"`: the first j > i that trades
  through the whole gap: `low[j] <= fvg_bottom`, or `high[j] >= fvg_top`.
  `fvg_mitigated_at` is that j, or null if it has not happened (yet). It is a fact about the
  future of row i: a strategy at row k may treat the gap as mitigated only if
  `fvg_mitigated_at <= k`; on a frame ending at row k a later j is simply null.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from strategies.indicators._common import (
    SIGN_DTYPE,
    attach,
    check_frame,
    first_hit,
    row_number,
)

Mitigation = Literal["touch", "fill"]


def fair_value_gaps(
    df: pl.DataFrame, min_gap: float = 0.0, mitigation: Mitigation = "touch"
) -> pl.DataFrame:
    """`df` with fair-value-gap columns added (see the module docstring).

    Columns: `fvg` (Int8: +1 bullish / -1 bearish on the third candle's row, else null),
    `fvg_top`, `fvg_bottom` (Float64), `fvg_mitigated_at` (Int64 row index, or null).
    """
    check_frame(df)
    if not min_gap >= 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    if mitigation not in ("touch", "fill"):
        raise ValueError(f"mitigation must be 'touch' or 'fill', got {mitigation!r}")
    high, low, close = pl.col("high"), pl.col("low"), pl.col("close")
    up = (low > high.shift(2)) & (low - high.shift(2) >= min_gap * close)
    down = (high < low.shift(2)) & (low.shift(2) - high >= min_gap * close)
    # the edge a later candle must reach: the near edge to touch it, the far edge to fill it
    up_edge, down_edge = ("top", "bottom") if mitigation == "touch" else ("bottom", "top")
    gaps = df.select(
        "low",
        "high",
        fvg=pl.when(up).then(pl.lit(1, SIGN_DTYPE)).when(down).then(pl.lit(-1, SIGN_DTYPE)),
        top=pl.when(up).then(low).when(down).then(low.shift(2)),
        bottom=pl.when(up).then(high.shift(2)).when(down).then(high),
        start=row_number() + 1,
    ).with_columns(
        up_edge=pl.when(pl.col("fvg") == 1).then(up_edge),
        down_edge=pl.when(pl.col("fvg") == -1).then(-pl.col(down_edge)),
    )
    up_hit = first_hit(gaps["low"], gaps["start"], gaps["up_edge"], strict=False)
    down_hit = first_hit(-gaps["high"], gaps["start"], gaps["down_edge"], strict=False)
    added = gaps.select(
        "fvg",
        fvg_top="top",
        fvg_bottom="bottom",
        fvg_mitigated_at=pl.coalesce(up_hit, down_hit),
    )
    return attach(df, added)
