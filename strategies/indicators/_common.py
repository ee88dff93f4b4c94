"""Plumbing shared by the indicators: input checks, row numbers and the "first later hit" search.

Everything here is vectorised. `first_hit` answers "the first row j >= start where values[j]
is at or below a threshold" for every query at once with a sparse table of block minima
(binary lifting): log2(n) passes over the queries, each a numpy gather, instead of a Python
loop over candles or a scan per query.
"""

from __future__ import annotations

import numpy as np
import polars as pl

REQUIRED = ("open", "high", "low", "close")
ROW = "_row"
ROW_DTYPE = pl.Int64
SIGN_DTYPE = pl.Int8


def check_frame(df: pl.DataFrame) -> None:
    """Refuse a frame without the OHLC columns the indicators read."""
    missing = [name for name in REQUIRED if name not in df.columns]
    if missing:
        raise ValueError(f"candles frame lacks columns {missing}; it has {df.columns}")


def check_window(left: int, right: int) -> None:
    """Swing windows need at least one candle on each side."""
    if left < 1 or right < 1:
        raise ValueError(f"left and right must be at least 1, got left={left}, right={right}")


def row_number() -> pl.Expr:
    """0, 1, ..., n-1: the row positions every `*_at` column refers to."""
    return pl.int_range(pl.len(), dtype=ROW_DTYPE)


def attach(df: pl.DataFrame, added: pl.DataFrame) -> pl.DataFrame:
    """`df` with the columns of `added` (same height) appended, or replaced if already there."""
    return df.with_columns(added.get_columns())


def first_hit(
    values: pl.Series, start: pl.Series, threshold: pl.Series, *, strict: bool
) -> pl.Series:
    """Per query q: the least row j >= start[q] with values[j] <= threshold[q], else null.

    With `strict`, `<` instead of `<=`. Queries with a null start or threshold give null.
    "At or above" searches pass negated values and thresholds. `start` and `threshold` have
    one entry per query (any count); `values` is the searched column (nulls never hit).

    In numpy rather than polars: a live strategy calls this on windows of a few hundred
    rows, where each polars call's fixed cost (about 0.1 ms) outweighed the work tenfold.
    """
    n = values.len()
    asked = (start.is_not_null() & threshold.is_not_null() & (start < n)).fill_null(False)
    answers = np.full(start.len(), n)  # n, past the last row: no hit
    if asked.any():
        # patterns are sparse: search for the rows that ask, then put the answers back
        p = start.filter(asked).cast(ROW_DTYPE).to_numpy().copy()
        if p.min() < 0:
            raise ValueError(f"first_hit: starts are row numbers, got {p.min()}")
        thr = threshold.filter(asked).cast(pl.Float64).to_numpy()
        # blocks[k][i] = min(values[i : i + 2**k]) ignoring nulls, truncated at the end; NaN
        # where the block is all nulls
        blocks = [values.cast(pl.Float64).fill_null(np.nan).to_numpy()]
        while 1 << len(blocks) <= n:
            prev, width = blocks[-1], 1 << (len(blocks) - 1)
            shifted = np.concatenate((prev[width:], np.full(width, np.nan)))
            blocks.append(np.fmin(prev, shifted))
        # Greedy jumps, widest first, over blocks without a hit (an all-null one has none):
        # a block holding the first hit never clears, so p ends on it; with no hit p ends
        # past the last row (every width once reaches 2**len(blocks) - 1 >= n rows on, and
        # once past it, the block read at the last row, which cleared, clears again).
        for k in range(len(blocks) - 1, -1, -1):
            block_min = blocks[k][np.minimum(p, n - 1)]
            clear = ~(block_min < thr) if strict else ~(block_min <= thr)
            p = p + clear * (1 << k)
        answers[asked.to_numpy()] = p
    found = pl.Series(answers, dtype=ROW_DTYPE)
    return pl.select(pl.when(found < n).then(found)).to_series().alias("")
