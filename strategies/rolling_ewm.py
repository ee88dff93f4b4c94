"""polars' `ewm_mean(adjust=False)` over every rolling window of a series at once, bit for bit.

Why this exists: a live runner hands a strategy only the last `maxlen` candles, and the
strategy runs `ewm_mean` on that window alone, seeded with the window's own first value. So
the average at a candle differs (in the last bits, or more while the seed still weighs) from
one window to the next, and from a single recursion over the whole history. A backtest that
must reproduce live trading float for float therefore has to rerun the recursion once per
window. Called per candle through polars that costs a DataFrame per candle; here it is
`window` numpy steps, each one over all the windows at once.

The recursion is polars' own (polars-compute `ewm/mean.rs`, `adjust=False`, no nulls): the
mean starts as the first value, then for each next value x

    mean = mean + (x - mean) * (alpha / ((1 - alpha) + alpha))

where the factor is rounded exactly as polars rounds it (it is not always alpha itself).
numpy's float64 ufuncs round every operation as IEEE 754 requires and never fuse a multiply
into an add, so doing the same operations in the same order gives the same floats, not just
close ones; `tests/unit/test_ema_cross_series.py` checks this against polars. alpha must be
the float polars gets from the Python arguments: `span_alpha(span)` for `span=`, and the
caller's own expression (e.g. `1 / period`) for `alpha=`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def span_alpha(span: float) -> float:
    """alpha for `ewm_mean(span=span)`, computed as polars' Python API computes it."""
    return 2.0 / (span + 1.0)


def rolling_ewm_mean(
    values: npt.ArrayLike,
    alpha: float,
    window: int,
    *,
    tail: int = 1,
    first: npt.ArrayLike | None = None,
) -> FloatArray:
    """The last `tail` values of `ewm_mean(alpha, adjust=False)` on each rolling window.

    The window ending at row r is rows `max(0, r - window + 1)` to r, averaged on its own.
    The answer has shape `(tail, len(values))`: `out[-1, r]` is that window's last mean (what
    `.tail(1)` of polars' column gives), `out[-1 - j, r]` its mean j rows earlier; NaN where
    the window holds j rows or fewer.

    `first`, when given, is the value a window starting at row s uses in place of
    `values[s]`: a Wilder ATR's first true range is high - low, since inside the window the
    first candle has no previous close.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if tail < 1:
        raise ValueError(f"tail must be at least 1, got {tail}")
    x = np.ascontiguousarray(values, dtype=np.float64)
    seeds = x if first is None else np.ascontiguousarray(first, dtype=np.float64)
    if x.ndim != 1 or seeds.shape != x.shape:
        raise ValueError(f"values and first must be 1-d and alike, got {x.shape}, {seeds.shape}")
    n = x.size
    out = np.full((tail, n), np.nan)
    if n == 0:
        return out
    length = min(window, n)  # rows in the longest window
    starts = n - length + 1  # windows of that length, by first row s
    factor = alpha / ((1.0 - alpha) + alpha)  # polars: old weight 1 * (1 - alpha), new alpha
    # mean[s] is the mean of the window starting at row s after k steps, i.e. at row s + k.
    mean = seeds[:starts].copy()
    prefix = np.empty(length)  # the recursion from row 0: the windows cut short by the start
    prefix[0] = mean[0]
    step = np.empty_like(mean)
    with np.errstate(all="ignore"):  # inf and NaN propagate silently, as in polars
        for k in range(length):
            if k:
                np.subtract(x[k : k + starts], mean, out=step)
                np.multiply(step, factor, out=step)
                np.add(mean, step, out=mean)
                prefix[k] = mean[0]
            before_end = length - 1 - k
            if before_end < tail:
                out[tail - 1 - before_end, length - 1 :] = mean
    for j in range(min(tail, length - 1)):  # windows ending at r < length - 1 start at row 0
        out[tail - 1 - j, j : length - 1] = prefix[: length - 1 - j]
    return out
