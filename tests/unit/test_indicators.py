"""ICT indicators: the polars code against plain loops, on random and real candles.

Each indicator has a reference implementation here written as the obvious loop over rows,
straight from the definitions in the module docstrings. The polars results must match it
exactly, on hypothesis random walks (integer-ish prices, so ties and equal highs are common)
and on real ETH 1m / BTC 1h candles. The no-look-ahead tests recompute every indicator on
prefixes of a series and check that whatever is known at the prefix's end is identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies.frames import FRAME_SCHEMA
from strategies.indicators import (
    breaker_blocks,
    fair_value_gaps,
    liquidity,
    order_blocks,
    structure,
    swings,
    trend,
)
from strategies.indicators._common import first_hit
from tests.conftest import FIXTURES, REPO

Column = list[Any]
Columns = dict[str, Column]

ETH_1M = REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"
BTC_1H = FIXTURES / "candles" / "binance_usdm_2025h1" / "BTC_USDT_USDT-1h-futures.feather"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- building candle frames


def frame(rows: Sequence[tuple[float, float, float, float]]) -> pl.DataFrame:
    """A FRAME_SCHEMA frame from (open, high, low, close) rows, one minute apart."""
    for o, h, low, c in rows:
        assert low <= min(o, c) and h >= max(o, c), (o, h, low, c)
    return pl.DataFrame(
        {
            "timestamp": [T0 + timedelta(minutes=i) for i in range(len(rows))],
            "open": [float(r[0]) for r in rows],
            "high": [float(r[1]) for r in rows],
            "low": [float(r[2]) for r in rows],
            "close": [float(r[3]) for r in rows],
            "volume": [1.0] * len(rows),
        },
        schema=FRAME_SCHEMA,
    )


# move, upper wick, lower wick, gap from the previous close: in quarter units, so many ties
STEP = st.tuples(
    st.integers(-8, 8), st.integers(0, 4), st.integers(0, 4), st.sampled_from([0, 0, 0, -3, 3])
)
WALKS = st.lists(STEP, min_size=20, max_size=300)


def walk(steps: Sequence[tuple[int, int, int, int]]) -> pl.DataFrame:
    """A valid OHLC random walk from hypothesis steps (prices exact in binary floats)."""
    rows, price = [], 4000
    for move, up_wick, down_wick, gap in steps:
        o = price + gap
        c = o + move
        rows.append((o / 4, (max(o, c) + up_wick) / 4, (min(o, c) - down_wick) / 4, c / 4))
        price = c
    return frame(rows)


def real(path: Path, rows: int | None = None) -> pl.DataFrame:
    assert path.exists(), (
        f"no candle file {path}: the tests need the repo's data and tests/fixtures"
    )
    df = pl.read_ipc(path).rename({"date": "timestamp"})
    return df if rows is None else df.head(rows)


def ohlc(df: pl.DataFrame) -> tuple[Column, Column, Column, Column]:
    return df["open"].to_list(), df["high"].to_list(), df["low"].to_list(), df["close"].to_list()


# ---------------------------------------------------------------- reference implementations


def ref_swings(df: pl.DataFrame, left: int, right: int) -> Columns:
    _, high, low, _ = ohlc(df)
    n = df.height
    out: Columns = {
        "swing_high": [None] * n,
        "swing_low": [None] * n,
        "swing_high_known_at": [None] * n,
        "swing_low_known_at": [None] * n,
    }
    for i in range(left, n - right):
        before, after = range(i - left, i), range(i + 1, i + right + 1)
        if all(high[i] > high[j] for j in before) and all(high[i] >= high[j] for j in after):
            out["swing_high"][i] = high[i]
            out["swing_high_known_at"][i] = i + right
        if all(low[i] < low[j] for j in before) and all(low[i] <= low[j] for j in after):
            out["swing_low"][i] = low[i]
            out["swing_low_known_at"][i] = i + right
    return out


@dataclass
class Break:
    row: int
    direction: int
    swing_row: int


def ref_structure(df: pl.DataFrame, left: int, right: int) -> tuple[Columns, list[Break]]:
    """The state machine, one candle at a time."""
    _, _, _, close = ohlc(df)
    n = df.height
    sw = ref_swings(df, left, right)
    out: Columns = {
        "bos": [None] * n,
        "choch": [None] * n,
        "trend": [0] * n,
        "structure_level": [None] * n,
    }
    found: list[Break] = []
    high_row: int | None = None  # the active (known, unbroken) swing high's row
    low_row: int | None = None
    state = 0
    for t in range(n):
        s = t - right  # the swing that becomes known at t
        if s >= 0 and sw["swing_high"][s] is not None:
            high_row = s
        if s >= 0 and sw["swing_low"][s] is not None:
            low_row = s
        up = high_row is not None and close[t] > sw["swing_high"][high_row]
        down = low_row is not None and close[t] < sw["swing_low"][low_row]
        assert not (up and down)
        if up or down:
            direction = 1 if up else -1
            swing_row = high_row if up else low_row
            assert swing_row is not None
            kind = "choch" if state == -direction else "bos"
            out[kind][t] = direction
            key = "swing_high" if up else "swing_low"
            out["structure_level"][t] = sw[key][swing_row]
            found.append(Break(t, direction, swing_row))
            state = direction
            if up:
                high_row = None
            else:
                low_row = None
        out["trend"][t] = state
    return out, found


def ref_fvg(df: pl.DataFrame, min_gap: float, mitigation: str) -> Columns:
    _, high, low, close = ohlc(df)
    n = df.height
    out: Columns = {k: [None] * n for k in ("fvg", "fvg_top", "fvg_bottom", "fvg_mitigated_at")}
    for i in range(2, n):
        if low[i] > high[i - 2]:
            kind, top, bottom = 1, low[i], high[i - 2]
        elif high[i] < low[i - 2]:
            kind, top, bottom = -1, low[i - 2], high[i]
        else:
            continue
        if not top - bottom >= min_gap * close[i]:
            continue
        out["fvg"][i], out["fvg_top"][i], out["fvg_bottom"][i] = kind, top, bottom
        edge = (
            (top if kind == 1 else bottom)
            if mitigation == "touch"
            else (bottom if kind == 1 else top)
        )
        for j in range(i + 1, n):
            if (low[j] <= edge) if kind == 1 else (high[j] >= edge):
                out["fvg_mitigated_at"][i] = j
                break
    return out


def ref_order_blocks(df: pl.DataFrame, left: int, right: int) -> Columns:
    open_, high, low, close = ohlc(df)
    n = df.height
    keys = ("ob", "ob_top", "ob_bottom", "ob_known_at", "ob_mitigated_at")
    out: Columns = {k: [None] * n for k in keys}
    for brk in ref_structure(df, left, right)[1]:  # in row order: the first break wins
        colour = [
            r
            for r in range(brk.swing_row + 1, brk.row)
            if (close[r] < open_[r] if brk.direction == 1 else close[r] > open_[r])
        ]
        if not colour or out["ob"][colour[-1]] is not None:
            continue
        r = colour[-1]
        out["ob"][r], out["ob_top"][r], out["ob_bottom"][r] = brk.direction, high[r], low[r]
        out["ob_known_at"][r] = brk.row
        for j in range(brk.row + 1, n):
            if (low[j] <= high[r]) if brk.direction == 1 else (high[j] >= low[r]):
                out["ob_mitigated_at"][r] = j
                break
    return out


def ref_breakers(df: pl.DataFrame, left: int, right: int) -> Columns:
    _, _, _, close = ohlc(df)
    n = df.height
    obs = ref_order_blocks(df, left, right)
    keys = ("breaker", "breaker_top", "breaker_bottom", "breaker_known_at")
    out: Columns = {k: [None] * n for k in keys}
    for r in range(n):
        kind, top, bottom, known = (obs[k][r] for k in ("ob", "ob_top", "ob_bottom", "ob_known_at"))
        if kind is None:
            continue
        for j in range(known + 1, n):
            if (close[j] < bottom) if kind == 1 else (close[j] > top):
                out["breaker"][r], out["breaker_known_at"][r] = -kind, j
                out["breaker_top"][r], out["breaker_bottom"][r] = top, bottom
                break
    return out


def ref_liquidity(
    df: pl.DataFrame, left: int, right: int, tolerance: float, min_touches: int, side: str
) -> Columns:
    _, high, low, _ = ohlc(df)
    n = df.height
    sw = ref_swings(df, left, right)
    keys = ("liquidity", "liquidity_level", "liquidity_known_at", "swept_at")
    out: Columns = {k: [None] * n for k in keys}
    for kind, column in ((1, "swing_high"), (-1, "swing_low")):  # buy-side first: it wins
        if side == ("sell" if kind == 1 else "buy"):
            continue
        run: list[float] = []
        for i in range(n):
            price = sw[column][i]
            if price is None:
                continue
            if run and abs(price - run[-1]) <= tolerance * run[-1]:
                run.append(price)
            else:
                run = [price]
            if len(run) < min_touches or out["liquidity"][i] is not None:
                continue
            level = max(run) if kind == 1 else min(run)
            out["liquidity"][i], out["liquidity_level"][i] = kind, level
            out["liquidity_known_at"][i] = i + right
            for j in range(i + right + 1, n):
                if (high[j] > level) if kind == 1 else (low[j] < level):
                    out["swept_at"][i] = j
                    break
    return out


# ---------------------------------------------------------------- comparing


def assert_columns(out: pl.DataFrame, expected: Columns) -> None:
    """Column by column, naming the first row that differs."""
    for name, want in expected.items():
        got = out[name].to_list()
        assert len(got) == len(want), f"{name}: {len(got)} rows, expected {len(want)}"
        bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
        assert not bad, f"{name} row {bad[0]}: got {got[bad[0]]}, expected {want[bad[0]]}"


def assert_input_kept(df: pl.DataFrame, out: pl.DataFrame) -> None:
    assert out.columns[: df.width] == df.columns
    assert out.select(df.columns).equals(df)


@dataclass(frozen=True)
class Spec:
    """How to run one indicator and which of its columns are gated by which known-at."""

    run: Callable[[pl.DataFrame], pl.DataFrame]
    reference: Callable[[pl.DataFrame], Columns]
    groups: tuple[tuple[str | None, tuple[str, ...], tuple[str, ...]], ...]
    # (known-at column or None if known at its own row, value columns, later-event columns)


def specs(
    left: int = 2,
    right: int = 2,
    min_gap: float = 0.0,
    mitigation: str = "touch",
    tolerance: float = 0.001,
    min_touches: int = 2,
    side: str = "both",
) -> dict[str, Spec]:
    w: dict[str, int] = {"left": left, "right": right}
    return {
        "swings": Spec(
            lambda df: swings(df, **w),
            lambda df: ref_swings(df, left, right),
            (
                ("swing_high_known_at", ("swing_high", "swing_high_known_at"), ()),
                ("swing_low_known_at", ("swing_low", "swing_low_known_at"), ()),
            ),
        ),
        "structure": Spec(
            lambda df: structure(df, **w),
            lambda df: ref_structure(df, left, right)[0],
            ((None, ("bos", "choch", "trend", "structure_level"), ()),),
        ),
        "fvg": Spec(
            lambda df: fair_value_gaps(df, min_gap, "touch" if mitigation == "touch" else "fill"),
            lambda df: ref_fvg(df, min_gap, mitigation),
            ((None, ("fvg", "fvg_top", "fvg_bottom"), ("fvg_mitigated_at",)),),
        ),
        "order_blocks": Spec(
            lambda df: order_blocks(df, **w),
            lambda df: ref_order_blocks(df, left, right),
            (("ob_known_at", ("ob", "ob_top", "ob_bottom", "ob_known_at"), ("ob_mitigated_at",)),),
        ),
        "breaker_blocks": Spec(
            lambda df: breaker_blocks(df, **w),
            lambda df: ref_breakers(df, left, right),
            (
                (
                    "breaker_known_at",
                    ("breaker", "breaker_top", "breaker_bottom", "breaker_known_at"),
                    (),
                ),
            ),
        ),
        "liquidity": Spec(
            lambda df: liquidity(
                df,
                **w,
                tolerance=tolerance,
                min_touches=min_touches,
                side="both" if side == "both" else "buy" if side == "buy" else "sell",
            ),
            lambda df: ref_liquidity(df, left, right, tolerance, min_touches, side),
            (
                (
                    "liquidity_known_at",
                    ("liquidity", "liquidity_level", "liquidity_known_at"),
                    ("swept_at",),
                ),
            ),
        ),
    }


NAMES = list(specs())


def known_by(full: pl.DataFrame, spec: Spec, k: int) -> Columns:
    """What a frame cut after row k-1 must show: the full result, minus what is not known yet."""
    last = k - 1
    expected: Columns = {}
    for known_col, values, events in spec.groups:
        known = (
            [True] * k
            if known_col is None
            else [at is not None and at <= last for at in full[known_col].head(k).to_list()]
        )
        for name in values:
            col = full[name].head(k).to_list()
            expected[name] = [v if ok else None for v, ok in zip(col, known, strict=True)]
        for name in events:
            col = full[name].head(k).to_list()
            expected[name] = [
                v if ok and v is not None and v <= last else None
                for v, ok in zip(col, known, strict=True)
            ]
    return expected


def assert_no_look_ahead(df: pl.DataFrame, spec: Spec, prefixes: Sequence[int]) -> None:
    full = spec.run(df)
    for k in prefixes:
        part = df.head(k)
        out = spec.run(part)
        assert_input_kept(part, out)
        try:
            assert_columns(out, known_by(full, spec, k))
        except AssertionError as e:
            raise AssertionError(f"prefix of {k} rows: {e}") from None


# ---------------------------------------------------------------- random candles

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARAMS = st.fixed_dictionaries(
    {
        "left": st.integers(1, 4),
        "right": st.integers(1, 4),
        "min_gap": st.sampled_from([0.0, 0.0005, 0.002]),
        "mitigation": st.sampled_from(["touch", "fill"]),
        "tolerance": st.sampled_from([0.0, 0.0002, 0.001, 0.003]),
        "min_touches": st.integers(1, 3),
        "side": st.sampled_from(["both", "buy", "sell"]),
    }
)


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(steps=WALKS, params=PARAMS)
def test_matches_the_loop_on_random_walks(
    name: str, steps: list[tuple[int, int, int, int]], params: dict[str, Any]
) -> None:
    df = walk(steps)
    spec = specs(**params)[name]
    out = spec.run(df)
    assert_input_kept(df, out)
    assert_columns(out, spec.reference(df))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=WALKS, params=PARAMS, data=st.data())
def test_no_look_ahead_on_random_walks(
    name: str, steps: list[tuple[int, int, int, int]], params: dict[str, Any], data: st.DataObject
) -> None:
    df = walk(steps)
    cuts = st.lists(st.integers(0, df.height), min_size=1, max_size=8, unique=True)
    assert_no_look_ahead(df, specs(**params)[name], data.draw(cuts))


# ---------------------------------------------------------------- real candles


@pytest.mark.parametrize("name", NAMES)
def test_matches_the_loop_on_eth_1m(name: str) -> None:
    df = real(ETH_1M, 5000)
    spec = specs()[name]
    assert_columns(spec.run(df), spec.reference(df))


@pytest.mark.parametrize("name", NAMES)
def test_matches_the_loop_on_btc_1h(name: str) -> None:
    df = real(BTC_1H)
    for spec in (specs()[name], specs(left=3, right=1, tolerance=0.003, mitigation="fill")[name]):
        assert_columns(spec.run(df), spec.reference(df))


@pytest.mark.parametrize("name", NAMES)
def test_no_look_ahead_on_eth_1m(name: str) -> None:
    df = real(ETH_1M, 1500)
    assert_no_look_ahead(df, specs()[name], range(1, 1501, 61))


def test_real_candles_exercise_every_indicator() -> None:
    """Guards the comparisons above against vacuous passes on all-null columns."""
    df = real(ETH_1M, 5000)
    for name, column in [
        ("swings", "swing_high"),
        ("structure", "choch"),
        ("fvg", "fvg_mitigated_at"),
        ("order_blocks", "ob_mitigated_at"),
        ("breaker_blocks", "breaker"),
        ("liquidity", "swept_at"),
    ]:
        assert specs()[name].run(df)[column].drop_nulls().len() > 20, name


# ---------------------------------------------------------------- hand-made series


def bars(highs: Sequence[float], lows: Sequence[float]) -> pl.DataFrame:
    """Dojis at mid-range: for indicators that only read highs and lows."""
    return frame([((h + lo) / 2, h, lo, (h + lo) / 2) for h, lo in zip(highs, lows, strict=True)])


def test_swings_by_hand() -> None:
    highs = [1, 2, 5, 2, 1, 3, 4, 4, 2, 1, 1]
    out = swings(bars(highs, [h - 1 for h in highs]))
    assert out["swing_high"].to_list() == [None, None, 5, *[None] * 3, 4, *[None] * 4]
    assert out["swing_high_known_at"].to_list() == [None, None, 4, *[None] * 3, 8, *[None] * 4]
    # row 4 is the only low with 2 higher lows each side; row 9 is not confirmed yet
    assert out["swing_low"].to_list() == [*[None] * 4, 0, *[None] * 6]
    assert out["swing_low_known_at"].to_list() == [*[None] * 4, 6, *[None] * 6]


def test_a_flat_top_is_one_swing_on_its_first_candle() -> None:
    out = swings(bars([1, 2, 5, 5, 2, 1], [0, 1, 4, 4, 1, 0]), left=2, right=2)
    assert out["swing_high"].to_list() == [None, None, 5, None, None, None]


# open, high, low, close; with left = right = 1 the swings are highs at rows 1, 6, 9, 12 and
# lows at rows 3, 8, 11; see test_structure_by_hand for the story
STORY = frame(
    [
        (8.5, 10, 8, 9),
        (9, 12, 9, 11),
        (11, 11, 9, 10),
        (10, 10, 7, 8),
        (8, 11, 8, 10),
        (10, 13, 10, 12.5),
        (12.5, 14, 12, 13.5),
        (13, 13, 11, 12),
        (12, 12, 9, 9.5),
        (9.5, 15, 9.5, 14.5),
        (14, 14, 8, 8.5),
        (8.5, 9, 6, 6.5),
        (7, 10, 7, 9.5),
        (9, 9, 5, 5.5),
    ]
)


def test_structure_by_hand() -> None:
    out = structure(STORY, left=1, right=1)
    # 5: close 12.5 over the row-1 high (12): first break, a BOS; 9: over the row-6 high (14);
    # 10: under the row-8 low (9) against the uptrend: CHoCH; 11: close 6.5 is under the row-3
    # low, but that level was replaced by row 8's, already broken; 13: under row 11's low (6)
    assert out["bos"].to_list() == [*[None] * 5, 1, None, None, None, 1, None, None, None, -1]
    assert out["choch"].to_list() == [*[None] * 10, -1, None, None, None]
    assert out["trend"].to_list() == [0] * 5 + [1] * 5 + [-1] * 4
    levels = out["structure_level"].to_list()
    assert {i: v for i, v in enumerate(levels) if v is not None} == {5: 12, 9: 14, 10: 9, 13: 6}
    assert trend(STORY, left=1, right=1)["trend"].equals(out["trend"])


def test_order_blocks_by_hand() -> None:
    out = order_blocks(STORY, left=1, right=1)
    got = {
        r[0]: r[1:]
        for r in out.with_row_index()
        .drop_nulls("ob")
        .select("index", "ob", "ob_top", "ob_bottom", "ob_known_at", "ob_mitigated_at")
        .iter_rows()
    }
    assert got == {
        3: (1, 10, 7, 5, 8),  # last down candle between the row-1 high and the row-5 break
        8: (1, 12, 9, 9, 10),  # rows 7 and 8 are both down: the last one
        9: (-1, 15, 9.5, 10, 12),  # the up candle before the row-10 CHoCH
        12: (-1, 10, 7, 13, None),  # confirmed on the last row: not mitigated yet
    }


def test_two_breaks_on_one_candle_keep_the_first() -> None:
    # left 1, right 3: the row-1 high (12) breaks at 7 and the row-5 high (13), known at 8,
    # breaks at 9; row 6 is the last down candle before both
    df = frame(
        [
            (9.5, 10, 9, 9.8),
            (9.8, 12, 9.8, 11.5),
            (11.5, 11.6, 10, 10.5),
            (10.5, 11, 10.2, 10.8),
            (10.8, 11.5, 10.5, 11.2),
            (11.2, 13, 10.8, 11.8),
            (11.8, 12, 10.5, 11),
            (11, 12.8, 10.8, 12.5),
            (12.5, 12.9, 12.2, 12.7),
            (12.7, 13.6, 12.5, 13.5),
        ]
    )
    assert structure(df, left=1, right=3)["bos"].to_list() == [*[None] * 7, 1, None, 1]
    out = order_blocks(df, left=1, right=3)
    got = {
        r[0]: r[1:]
        for r in out.with_row_index()
        .drop_nulls("ob")
        .select("index", "ob", "ob_top", "ob_bottom", "ob_known_at", "ob_mitigated_at")
        .iter_rows()
    }
    assert got == {6: (1, 12, 10.5, 7, None)}


def test_breaker_blocks_by_hand() -> None:
    out = breaker_blocks(STORY, left=1, right=1)
    got = {
        r[0]: r[1:]
        for r in out.with_row_index()
        .drop_nulls("breaker")
        .select("index", "breaker", "breaker_top", "breaker_bottom", "breaker_known_at")
        .iter_rows()
    }
    # the bullish blocks at 3 (bottom 7) and 8 (bottom 9) fail on closes 6.5 (row 11) and
    # 8.5 (row 10): bearish breakers; the bearish blocks never see a close above them
    assert got == {3: (-1, 10, 7, 11), 8: (-1, 12, 9, 10)}


def test_a_close_below_the_block_before_the_break_does_not_fail_the_block() -> None:
    # left = right = 1. Row 1 is a swing high (12); row 3 the last down candle (low 10.8)
    # before row 5 closes above 12. Row 4 closes at 9.5, under the block-to-be, but before
    # the block exists: only closes after row 5 can fail it, and none comes.
    df = frame(
        [
            (10, 10.5, 9.5, 10),
            (10, 12, 10, 11),
            (11, 11.5, 10.5, 11.2),
            (11.2, 11.4, 10.8, 10.9),
            (9, 9.6, 8.9, 9.5),
            (9.5, 12.5, 9.5, 12.2),
            (12.2, 12.6, 12, 12.4),
            (12.4, 12.9, 12.1, 12.8),
        ]
    )
    blocks = order_blocks(df, left=1, right=1)
    assert blocks["ob"].to_list() == [None, None, None, 1, None, None, None, None]
    assert blocks["ob_known_at"].to_list()[3] == 5
    assert breaker_blocks(df, left=1, right=1)["breaker"].null_count() == df.height
    spec = specs(left=1, right=1)["breaker_blocks"]
    assert_columns(spec.run(df), spec.reference(df))


def test_fair_value_gaps_by_hand() -> None:
    highs = [10, 12, 14, 13, 12.5, 11, 11.8, 12.2]
    lows = [9, 10, 11, 12, 11.5, 10.5, 10.8, 9.8]
    df = bars(highs, lows)
    touch = fair_value_gaps(df)
    # row 2: low 11 over row 0's high 10; row 5: high 11 under row 3's low 12; row 3's low
    # equals row 1's high: a zero-width gap is none
    assert touch["fvg"].to_list() == [None, None, 1, None, None, -1, None, None]
    assert touch["fvg_top"].to_list() == [None, None, 11, None, None, 12, None, None]
    assert touch["fvg_bottom"].to_list() == [None, None, 10, None, None, 11, None, None]
    assert touch["fvg_mitigated_at"].to_list() == [None, None, 5, None, None, 6, None, None]
    fill = fair_value_gaps(df, mitigation="fill")
    assert fill["fvg_mitigated_at"].to_list() == [None, None, 7, None, None, 7, None, None]
    # gaps of 1.0 at closes 12.5 and 10.75: kept at 5 %, dropped at 10 %
    assert fair_value_gaps(df, min_gap=0.05)["fvg"].drop_nulls().len() == 2
    assert fair_value_gaps(df, min_gap=0.1)["fvg"].drop_nulls().len() == 0


def test_liquidity_by_hand() -> None:
    highs = [99, 100, 99, 100.05, 99, 98, 99.5, 101, 99, 100.95, 99, 102, 99, 98.9]
    lows = [h - 2 for h in highs[:-1]] + [96.9]
    df = bars(highs, lows)
    out = liquidity(df, left=1, right=1, tolerance=0.001, min_touches=2)
    got = {
        r[0]: r[1:]
        for r in out.with_row_index()
        .drop_nulls("liquidity")
        .select("index", "liquidity", "liquidity_level", "liquidity_known_at", "swept_at")
        .iter_rows()
    }
    assert got == {
        3: (1, 100.05, 4, 7),  # 100 and 100.05 are equal highs; 101 takes them
        9: (1, 101, 10, 11),  # 101 and 100.95; the 98 -> 101 jump started a new run
        10: (-1, 97, 11, 13),  # lows 97 at rows 8 and 10; row 12's 97 touches, 96.9 sweeps
    }
    assert liquidity(df, left=1, right=1, min_touches=3)["liquidity"].null_count() == df.height
    sides = {
        side: liquidity(df, left=1, right=1, side=side)["liquidity"].drop_nulls().to_list()
        for side in ("buy", "sell")
    }
    assert sides == {"buy": [1, 1], "sell": [-1]}


def test_an_outside_bar_in_two_pools_reports_each_side_on_request() -> None:
    # rows 1 and 3 are outside bars, each a swing high (11) and a swing low (9) with
    # left = right = 1: row 3 completes a pool on both sides
    df = bars([10.5, 11, 10.5, 11, 10.5, 11.5], [9.5, 9, 9.5, 9, 9.5, 9.5])
    both = liquidity(df, left=1, right=1, tolerance=0.0, side="both")
    assert both["liquidity"].to_list() == [None, None, None, 1, None, None]
    assert both["swept_at"].to_list() == [None, None, None, 5, None, None]
    sell = liquidity(df, left=1, right=1, tolerance=0.0, side="sell")
    assert sell["liquidity"].to_list() == [None, None, None, -1, None, None]
    assert sell["liquidity_level"].to_list() == [None, None, None, 9, None, None]
    assert sell["swept_at"].to_list() == [None] * 6


# ---------------------------------------------------------------- edges and refusals


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rows", [0, 1, 2, 5])
def test_tiny_frames(name: str, rows: int) -> None:
    df = walk([(1, 1, 1, 0)] * rows)
    out = specs()[name].run(df)
    assert_input_kept(df, out)
    assert_columns(out, specs()[name].reference(df))


def test_added_columns_replace_same_named_ones() -> None:
    once = swings(STORY)
    assert swings(once).equals(once)


# ---------------------------------------------------------------- the documented interface

DEFAULTS: list[tuple[Callable[..., pl.DataFrame], dict[str, Any], dict[str, Any]]] = [
    (swings, {"left": 2, "right": 2}, {"left": 3}),
    (structure, {"left": 2, "right": 2}, {"right": 3}),
    (trend, {"left": 2, "right": 2}, {"left": 3}),
    (fair_value_gaps, {"min_gap": 0.0, "mitigation": "touch"}, {"mitigation": "fill"}),
    (order_blocks, {"left": 2, "right": 2}, {"left": 3}),
    (breaker_blocks, {"left": 2, "right": 2}, {"right": 3}),
    (
        liquidity,
        {"left": 2, "right": 2, "tolerance": 0.001, "min_touches": 2, "side": "both"},
        {"min_touches": 3},
    ),
]


@pytest.mark.parametrize(
    ("function", "documented", "other"), DEFAULTS, ids=[f.__name__ for f, _, _ in DEFAULTS]
)
def test_the_defaults_are_the_documented_ones(
    function: Callable[..., pl.DataFrame], documented: dict[str, Any], other: dict[str, Any]
) -> None:
    df = real(ETH_1M, 2000)
    assert function(df).equals(function(df, **documented))
    for name in documented:  # each default on its own, the others left out
        assert function(df, **{name: documented[name]}).equals(function(df)), name
    assert not function(df, **{**documented, **other}).equals(function(df)), "data too dull"


COLUMN_TYPES = {
    "swing_high": pl.Float64,
    "swing_low": pl.Float64,
    "swing_high_known_at": pl.Int64,
    "swing_low_known_at": pl.Int64,
    "bos": pl.Int8,
    "choch": pl.Int8,
    "trend": pl.Int8,
    "structure_level": pl.Float64,
    "fvg": pl.Int8,
    "fvg_top": pl.Float64,
    "fvg_bottom": pl.Float64,
    "fvg_mitigated_at": pl.Int64,
    "ob": pl.Int8,
    "ob_top": pl.Float64,
    "ob_bottom": pl.Float64,
    "ob_known_at": pl.Int64,
    "ob_mitigated_at": pl.Int64,
    "breaker": pl.Int8,
    "breaker_top": pl.Float64,
    "breaker_bottom": pl.Float64,
    "breaker_known_at": pl.Int64,
    "liquidity": pl.Int8,
    "liquidity_level": pl.Float64,
    "liquidity_known_at": pl.Int64,
    "swept_at": pl.Int64,
}


@pytest.mark.parametrize("rows", [0, 3, 2000])
def test_every_added_column_has_its_documented_type(rows: int) -> None:
    df = real(ETH_1M, rows)
    added: dict[str, pl.DataType] = {}
    for function in (swings, structure, fair_value_gaps, order_blocks, breaker_blocks, liquidity):
        out = function(df)
        added |= {c: out.schema[c] for c in out.columns if c not in df.columns}
    assert added == COLUMN_TYPES


def test_a_gap_exactly_at_the_minimum_size_counts() -> None:
    # Gaps of exactly 1.0 at a close of 4.0: a quarter of the price, exactly, in binary.
    up = frame([(2.5, 3, 2, 2.5), (3, 4.5, 3, 4.5), (4.5, 5, 4, 4)])
    down = frame([(5.5, 6, 5, 5.5), (5, 5, 3.5, 3.5), (4, 4, 3, 4)])
    for df, direction in ((up, 1), (down, -1)):
        assert fair_value_gaps(df, min_gap=0.25)["fvg"].to_list() == [None, None, direction]
        assert fair_value_gaps(df, min_gap=0.2501)["fvg"].to_list() == [None, None, None]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda df: swings(df, left=0), "left and right must be at least 1, got left=0, right=2"),
        (lambda df: structure(df, right=0), "left and right must be at least 1, got left=2"),
        (lambda df: fair_value_gaps(df, min_gap=-0.1), "min_gap must be >= 0, got -0.1"),
        (lambda df: fair_value_gaps(df, min_gap=float("nan")), "min_gap must be >= 0, got nan"),
        (
            lambda df: fair_value_gaps(df, mitigation="wick"),
            "mitigation must be 'touch' or 'fill', got 'wick'",
        ),
        (lambda df: liquidity(df, tolerance=-1), "tolerance must be >= 0, got -1"),
        (lambda df: liquidity(df, min_touches=0), "min_touches must be at least 1, got 0"),
        (
            lambda df: liquidity(df, side="up"),
            "side must be 'both', 'buy' or 'sell', got 'up'",
        ),
        (lambda df: order_blocks(df.drop("open")), "candles frame lacks columns ['open']"),
        (lambda df: breaker_blocks(df, left=1, right=0), "left and right must be at least 1"),
    ],
)
def test_bad_input_is_refused_with_what_is_wrong(
    call: Callable[[pl.DataFrame], pl.DataFrame], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        call(STORY)
    assert str(caught.value).startswith(message)


# --- the shared "first later hit" search ----------------------------------------------------


def first_hit_by_loop(
    values: Sequence[float | None],
    starts: Sequence[int | None],
    thresholds: Sequence[float | None],
    strict: bool,
) -> list[int | None]:
    """What first_hit promises, one query and one row at a time."""
    answers: list[int | None] = []
    for start, threshold in zip(starts, thresholds, strict=True):
        answer = None
        if start is not None and threshold is not None:
            for row in range(start, len(values)):
                value = values[row]
                if value is not None and (value < threshold if strict else value <= threshold):
                    answer = row
                    break
        answers.append(answer)
    return answers


SMALL_PRICES = st.integers(0, 6).map(float)  # few levels: ties with the threshold are common


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.none() | SMALL_PRICES, max_size=40),
    levels=st.lists(st.none() | SMALL_PRICES, min_size=1, max_size=6),
    strict=st.booleans(),
)
def test_first_hit_is_the_first_row_at_or_past_the_start_that_reaches_the_threshold(
    values: list[float | None], levels: list[float | None], strict: bool
) -> None:
    """Every indicator's later events (a fill, a sweep, a failure, a touch) come from here:
    row 0 and the last row can hit, nulls never do and never hide a later hit, a start past
    the end or a null threshold finds nothing, and ties hit unless strict. Every start from
    0 to two past the end (and none) is asked at each level, so no edge is left to luck."""
    starts = [*range(len(values) + 2), None]
    queries = [(start, level) for level in levels for start in starts]
    found = first_hit(
        pl.Series(values, dtype=pl.Float64),
        pl.Series([start for start, _ in queries], dtype=pl.Int64),
        pl.Series([level for _, level in queries], dtype=pl.Float64),
        strict=strict,
    )
    expected = first_hit_by_loop(
        values, [start for start, _ in queries], [level for _, level in queries], strict
    )
    assert found.to_list() == expected
    assert (found.name, found.dtype, found.len()) == ("", pl.Int64, len(queries))


def test_first_hit_looks_past_a_null_to_the_row_that_hits() -> None:
    """A null (a missing low) never hits, and the search goes on past it."""
    values = pl.Series([5.0, None, 1.0, 7.0])
    starts = pl.Series([0, 1, 2, 3])
    found = first_hit(values, starts, pl.Series([2.0] * 4), strict=False)
    assert found.to_list() == [2, 2, 2, None]


def test_first_hit_refuses_a_start_before_the_first_row() -> None:
    values = pl.Series([1.0, 2.0])
    with pytest.raises(ValueError, match="starts are row numbers, got -1"):
        first_hit(values, pl.Series([0, -1]), pl.Series([5.0, 5.0]), strict=False)
    assert first_hit(values, pl.Series([0]), pl.Series([5.0]), strict=False).to_list() == [0]
