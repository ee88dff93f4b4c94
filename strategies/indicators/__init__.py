"""ICT indicators on polars candle frames, computed vectorised and never looking ahead.

Every function takes a candles frame (`timestamp, open, high, low, close, volume`, oldest
first, closed candles only; only the OHLC columns are read) and returns it with documented
columns added: all input columns and rows are kept, in order; an added column that already
exists is replaced. Each submodule's docstring defines its concept precisely.

- `swings(df, left=2, right=2)`: swing_high, swing_low, swing_high_known_at,
  swing_low_known_at
- `structure(df, left=2, right=2)`: bos, choch, trend, structure_level
- `trend(df, left=2, right=2)`: trend
- `fair_value_gaps(df, min_gap=0.0, mitigation="touch")`: fvg, fvg_top, fvg_bottom,
  fvg_mitigated_at
- `order_blocks(df, left=2, right=2)`: ob, ob_top, ob_bottom, ob_known_at, ob_mitigated_at
- `breaker_blocks(df, left=2, right=2)`: breaker, breaker_top, breaker_bottom,
  breaker_known_at
- `liquidity(df, left=2, right=2, tolerance=0.001, min_touches=2, side="both")`: liquidity,
  liquidity_level, liquidity_known_at, swept_at

Conventions:

- Directions are Int8 +1 (bullish / buy-side) or -1 (bearish / sell-side); null where there is
  nothing. Prices are Float64. Columns ending in `_at` are Int64 row positions (0-based) in
  the frame passed in, not timestamps: in a sliding window they shift as the window moves.
- Patterns sit on the row of the candle they describe (the swing candle, the order-block
  candle...), which may be before the row where they can be known. The contract for a
  strategy standing at row k (its last closed candle) is:
  * use a pattern only if its `*_known_at <= k` (FVGs and structure columns are known at
    their own row);
  * treat it as mitigated / swept / failed only if that `*_at` value is `<= k`.
  Computing on a frame that ends at row k gives exactly this (tests check it on every
  prefix); a backtest frame that holds the future must apply the filter itself.
- `left` and `right` are the swing window (see `swings`); `right` is also the confirmation
  delay of every swing-based pattern, in candles.
"""

from __future__ import annotations

from strategies.indicators.blocks import breaker_blocks, order_blocks
from strategies.indicators.fvg import fair_value_gaps
from strategies.indicators.liquidity import liquidity
from strategies.indicators.structure import structure, trend
from strategies.indicators.swings import swings

__all__ = [
    "breaker_blocks",
    "fair_value_gaps",
    "liquidity",
    "order_blocks",
    "structure",
    "swings",
    "trend",
]
