"""Plumbing shared by the indicators: input checks, row numbers and the "first later hit" search.

Everything here is vectorised. `first_hit` answers "the first row j >= start where values[j]
is at or below a threshold" for every query at once with a sparse table of block minima
(binary lifting): log2(n) passes over the queries, each a polars gather, instead of a Python
loop over candles or a scan per query.
"""

from __future__ import annotations

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
    one entry per query (any count); `values` is the searched column.
    """
    n = values.len()
    inside_bound = max(n - 1, 0)
    answers = pl.Series(dtype=ROW_DTYPE).extend_constant(None, start.len())
    asked = start.is_not_null() & threshold.is_not_null() & (start < n)
    if n == 0 or not asked.any():
        return answers
    # patterns are sparse: search for the rows that ask, then put the answers back
    p = start.filter(asked).cast(ROW_DTYPE)
    thr = threshold.filter(asked).cast(pl.Float64)
    # blocks[k][i] = min(values[i : i + 2**k]), truncated at the end of the series
    blocks = [values.cast(pl.Float64)]
    while 1 << len(blocks) <= n:
        prev, width = blocks[-1], 1 << (len(blocks) - 1)
        blocks.append(pl.select(pl.min_horizontal(prev, prev.shift(-width))).to_series())
    # Greedy jumps, widest first: skip a block when none of it hits. Jumps never pass the
    # first hit (its block does not clear), so p ends on it, or past the end if none.
    for k in range(len(blocks) - 1, -1, -1):
        block_min = blocks[k].gather(p.clip(0, inside_bound))
        clear = (block_min >= thr) if strict else (block_min > thr)
        jump = (p < n) & clear.fill_null(False)
        p = p + jump.cast(ROW_DTYPE) * (1 << k)
    at_p = blocks[0].gather(p.clip(0, inside_bound))
    hit = (p < n) & ((at_p < thr) if strict else (at_p <= thr)).fill_null(False)
    return answers.scatter(asked.arg_true(), pl.select(pl.when(hit).then(p)).to_series())
