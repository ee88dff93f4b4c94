"""Ict.signal_series against Ict.evaluate called per candle, float for float, and the
window-aware indicators (`strategies.indicators.windows`) against the indicators computed on
every window.

The reference slices, for every base row, the windows the live runner would hold (the last
`warmup + WINDOW_SLACK` base candles; the last trend candles closed by the base candle's
close) and calls `evaluate`; the whole-series path must give equal dicts with `==`, so every
Decimal level, confidence and reason string must be identical. Small lookbacks on random
candles put a window edge next to almost every pattern: that is where a state machine that
starts at the window's first row differs from one run over the whole history.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from daemon.adapters.candle_files import load_candles
from daemon.backtest_simulator import strategy_frames
from daemon.domain.models import Signal
from daemon.domain.timeframes import timeframe_delta
from daemon.runtime.bot_runner import window_lengths
from strategies.frames import FRAME_SCHEMA
from strategies.ict import Ict, IctParams
from strategies.indicators import fair_value_gaps, liquidity, order_blocks, structure
from strategies.indicators.windows import (
    SwingRuns,
    ZoneInstances,
    fvg_instances,
    order_block_instances,
    window_trend,
)
from tests.conftest import REPO

CANDLES = REPO / "data" / "candles"
ETH_1M = CANDLES / "ETH_USDT_USDT-1m-futures.feather"
BTC_1M = CANDLES / "BTC_USDT_USDT-1m-futures.feather"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- the reference


def reference(
    strategy: Ict, frames: Mapping[str, pl.DataFrame], windows: Mapping[str, int], rows: range
) -> dict[int, Signal]:
    """`evaluate` on each row's live windows, sliced out of the whole frames."""
    base_tf, trend_tf = strategy.timeframes
    base, higher = frames[base_tf], frames[trend_tf]
    base_closes = [t + timeframe_delta(base_tf) for t in base["timestamp"].to_list()]
    trend_closes = [t + timeframe_delta(trend_tf) for t in higher["timestamp"].to_list()]
    out: dict[int, Signal] = {}
    for r in rows:
        start = max(0, r - windows[base_tf] + 1)
        closed = bisect.bisect_right(trend_closes, base_closes[r])
        first = max(0, closed - windows[trend_tf])
        signal = strategy.evaluate(
            {
                base_tf: base.slice(start, r + 1 - start),
                trend_tf: higher.slice(first, closed - first),
            }
        )
        if signal is not None:
            out[r] = signal
    return out


def restricted(series: Mapping[int, Signal], rows: range) -> dict[int, Signal]:
    return {r: s for r, s in series.items() if r in rows}


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def eth() -> dict[str, pl.DataFrame]:
    """The ETH file as the fast engine hands it over: 1m, 5m, 15m and 1h."""
    return strategy_frames(load_candles(ETH_1M).frame, ("1m", "5m", "15m", "1h"))


REAL = [
    pytest.param({}, range(1_180, 1_550), id="defaults-trend-warming"),
    pytest.param({}, range(6_000, 6_350), id="defaults-middle"),
    pytest.param(
        {"left": 1, "right": 1, "lookback": 30, "max_age": 20, "trend_lookback": 8},
        range(2_000, 2_350),
        id="short-windows",
    ),
    pytest.param(
        {"zones": "ob", "left": 3, "right": 4, "trend_timeframe": "15m", "lookback": 60},
        range(9_000, 9_400),
        id="order-blocks-3-4",
    ),
]


@pytest.mark.slow  # evaluates every window of weeks of real candles
@pytest.mark.parametrize(("raw", "rows"), REAL)
def test_real_candles_match_evaluate(
    eth: dict[str, pl.DataFrame], raw: dict[str, Any], rows: range
) -> None:
    strategy = Ict(IctParams.model_validate(raw))
    windows = window_lengths(strategy)
    series = strategy.signal_series(eth, windows)
    assert all(0 <= r < eth[strategy.timeframes[0]].height for r in series)
    expected = reference(strategy, eth, windows, rows)
    print(f"{raw}: rows {rows.start}-{rows.stop}: {len(expected)} signals")
    assert len(expected) >= 5  # a comparison of two empty dicts would prove nothing
    assert restricted(series, rows) == expected


@pytest.mark.slow  # evaluates every window of weeks of real candles
def test_btc_through_the_backtest_s_own_signal_rows() -> None:
    """BTC, 1m base with a 15m trend (`evaluate` per 1m candle, as the runner calls it)."""
    strategy = Ict(IctParams(timeframe="1m", trend_timeframe="15m", lookback=80, max_age=30))
    frames = strategy_frames(load_candles(BTC_1M).frame, strategy.timeframes)
    windows = window_lengths(strategy)
    series = strategy.signal_series(frames, windows)
    rows = range(20_000, 20_500)
    expected = reference(strategy, frames, windows, rows)
    assert len(expected) >= 10
    assert restricted(series, rows) == expected


# ---------------------------------------------------------------- random candles

# move, upper wick, lower wick, gap from the previous close: in cents, so prices are not exact
# binary floats (rounding is exercised) yet equal highs, flat tops and gaps are common
STEP = st.tuples(
    st.integers(-40, 40), st.integers(0, 12), st.integers(0, 12), st.sampled_from([0, 0, -15, 15])
)


def walk(moves: Sequence[tuple[int, int, int, int]], start: datetime, minutes: int) -> pl.DataFrame:
    rows = []
    price = 250_013
    for move, up_wick, down_wick, gap in moves:
        o = price + gap
        c = o + move
        rows.append((o / 100, (max(o, c) + up_wick) / 100, (min(o, c) - down_wick) / 100, c / 100))
        price = c
    return pl.DataFrame(
        {
            "timestamp": [start + timedelta(minutes=minutes * i) for i in range(len(rows))],
            "open": [r[0] for r in rows],
            "high": [r[1] for r in rows],
            "low": [r[2] for r in rows],
            "close": [r[3] for r in rows],
            "volume": [1.0] * len(rows),
        },
        schema=FRAME_SCHEMA,
    )


def moves(least: int, most: int) -> st.SearchStrategy[list[tuple[int, int, int, int]]]:
    return st.integers(least, most).flatmap(lambda n: st.lists(STEP, min_size=n, max_size=n))


def buckets(df: pl.DataFrame, minutes: int, skip: int) -> pl.DataFrame:
    """`minutes` candles aggregated from 1m ones (complete buckets only), less the first `skip`."""
    return (
        df.group_by_dynamic("timestamp", every=f"{minutes}m")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.len().alias("rows"),
        )
        .filter(pl.col("rows") == minutes)
        .drop("rows")
        .slice(skip)
    )


@st.composite
def setups(draw: st.DrawFn) -> tuple[Ict, dict[str, pl.DataFrame], dict[str, int]]:
    max_age = draw(st.integers(1, 12))
    params = IctParams(
        timeframe="1m",
        trend_timeframe=draw(st.sampled_from(["2m", "3m"])),
        left=draw(st.integers(1, 2)),
        right=draw(st.integers(1, 3)),
        zones=draw(st.sampled_from(["both", "both", "fvg", "ob"])),
        max_age=max_age,
        lookback=max(10, max_age + draw(st.integers(1, 10))),
        trend_lookback=draw(st.integers(4, 12)),
        tolerance=draw(st.sampled_from([0.0, 0.0004, 0.002])),
        min_touches=draw(st.integers(1, 3)),
        min_reward_risk=draw(st.sampled_from([0.5, 1.5])),
        reward_risk=2.0,
    )
    strategy = Ict(params)
    base = walk(draw(moves(30, 120)), T0, 1)
    minutes = int(params.trend_timeframe[:-1])
    frames = {"1m": base, params.trend_timeframe: buckets(base, minutes, draw(st.integers(0, 3)))}
    windows = {tf: n + draw(st.integers(-2, 8)) for tf, n in strategy.warmup.items()}
    return strategy, frames, {tf: max(1, n) for tf, n in windows.items()}


@pytest.mark.slow  # every window of every example (10-15 s); indicators: test_indicators.py
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setups())
def test_random_candles_match_evaluate(
    setup: tuple[Ict, dict[str, pl.DataFrame], dict[str, int]],
) -> None:
    strategy, frames, windows = setup
    expected = reference(strategy, frames, windows, range(frames["1m"].height))
    target(float(len(expected)))  # steer hypothesis towards examples with many signals
    assert strategy.signal_series(frames, windows) == expected


# ---------------------------------------------------------------- the indicators per window

WINDOW = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(3, 25))


def sees(zones: ZoneInstances, start: int, end: int) -> set[tuple[Any, ...]]:
    """The zones a window start..end holds by the instances' rules, in its own row numbers."""
    out = set()
    for z in range(len(zones)):
        known = int(zones.known_at[z])
        if not (zones.min_start[z] <= start <= zones.max_start[z]) or known > end:
            continue
        mitigated = int(zones.mitigated_at[z])
        out.add(
            (
                int(zones.direction[z]),
                float(zones.bottom[z]),
                float(zones.top[z]),
                known - start,
                mitigated - start if 0 <= mitigated <= end else None,
            )
        )
    return out


@pytest.mark.slow  # every window of every example (10-15 s); indicators: test_indicators.py
@settings(max_examples=30, deadline=None)
@given(moves(0, 50), WINDOW)
def test_window_trend_is_structure_on_each_window(
    steps: list[tuple[int, int, int, int]], window: tuple[int, int, int]
) -> None:
    left, right, length = window
    df = walk(steps, T0, 1)
    got = window_trend(df, left, right, length)
    expected = [
        int(
            structure(
                df.slice(max(0, e - length + 1), e + 1 - max(0, e - length + 1)), left, right
            )["trend"][-1]
        )
        for e in range(df.height)
    ]
    target(float(sum(1 for t in expected if t)))
    assert got.tolist() == expected


@pytest.mark.slow  # every window of every example (10-15 s); indicators: test_indicators.py
@settings(max_examples=30, deadline=None)
@given(moves(0, 50), WINDOW)
def test_zone_instances_are_the_zones_of_each_window(
    steps: list[tuple[int, int, int, int]], window: tuple[int, int, int]
) -> None:
    left, right, length = window
    df = walk(steps, T0, 1)
    blocks, gaps = order_block_instances(df, left, right), fvg_instances(df)
    seen = 0
    for end in range(df.height):
        start = max(0, end - length + 1)
        part = df.slice(start, end + 1 - start)
        ob = order_blocks(part, left, right).filter(pl.col("ob").is_not_null())
        expected_blocks = set(
            ob.select("ob", "ob_bottom", "ob_top", "ob_known_at", "ob_mitigated_at").iter_rows()
        )
        fvg = fair_value_gaps(part).with_row_index("row").filter(pl.col("fvg").is_not_null())
        expected_gaps = set(
            fvg.select(
                "fvg", "fvg_bottom", "fvg_top", pl.col("row").cast(pl.Int64), "fvg_mitigated_at"
            ).iter_rows()
        )
        assert sees(blocks, start, end) == expected_blocks, end
        assert sees(gaps, start, end) == expected_gaps, end
        seen += len(expected_blocks)
    target(float(seen))


@pytest.mark.slow  # every window of every example (10-15 s); indicators: test_indicators.py
@settings(max_examples=30, deadline=None)
@given(
    moves(0, 50),
    WINDOW,
    st.sampled_from([0.0, 0.0005, 0.002]),
    st.integers(1, 3),
    st.sampled_from(["buy", "sell"]),
)
def test_swing_runs_give_each_window_s_unswept_pools(
    steps: list[tuple[int, int, int, int]],
    window: tuple[int, int, int],
    tolerance: float,
    touches: int,
    side: Literal["buy", "sell"],
) -> None:
    left, right, length = window
    df = walk(steps, T0, 1)
    runs = SwingRuns(df, left, right, tolerance, touches)
    pools = 0
    for end in range(df.height):
        start = max(0, end - length + 1)
        k = end - start
        found = liquidity(
            df.slice(start, k + 1), left, right, tolerance, touches, side=side
        ).filter(
            pl.col("liquidity").is_not_null()
            & (pl.col("liquidity_known_at") <= k)
            & (pl.col("swept_at").is_null() | (pl.col("swept_at") > k))
        )
        expected = found["liquidity_level"].to_list()
        assert runs.unswept_levels(start, end, side) == expected, end
        pools += len(expected)
    target(float(pools))


# left=1, right=3: two breaks pick the down candle at row 6. Row 7 closes above the swing
# high at row 1 (100) while the swing high at row 5 (103) is not yet known (it is at row 8);
# row 9 closes above 103 with no down candle since row 6, so it picks row 6 too.
TWO_BREAKS: list[tuple[float, float, float, float]] = [
    (95, 96, 94, 95.5),
    (95.5, 100, 95, 97),
    (97, 98, 96, 97.5),
    (97.5, 99, 96.5, 98),
    (98, 99.5, 97, 99),
    (99, 103, 98.5, 99.5),
    (99.5, 100, 98, 98.5),
    (98.5, 102, 98.4, 101),
    (101, 102.5, 100.5, 102),
    (102, 104, 101.5, 103.5),
    (103.5, 104, 99, 99.5),
    (99.5, 100.5, 98.8, 100),
]


def test_an_order_block_picked_by_two_breaks_is_known_at_the_window_s_first_break() -> None:
    """The case the instances' start bounds exist for (rare: a handful in the shipped files).
    A window holding the first break's swing knows the block at row 7; one that starts after
    that swing (but holds the second's) knows it at row 9, and its retrace is then fresher."""
    df = pl.DataFrame(
        {
            "timestamp": [T0 + timedelta(minutes=i) for i in range(len(TWO_BREAKS))],
            **{
                c: [r[i] for r in TWO_BREAKS]
                for i, c in enumerate(("open", "high", "low", "close"))
            },
            "volume": [1.0] * len(TWO_BREAKS),
        },
        schema=FRAME_SCHEMA,
    )
    whole = order_blocks(df, 1, 3).row(6, named=True)
    assert (whole["ob"], whole["ob_known_at"], whole["ob_mitigated_at"]) == (1, 7, 10)
    later = order_blocks(df.slice(2), 1, 3).row(4, named=True)
    assert (later["ob"], later["ob_known_at"], later["ob_mitigated_at"]) == (1, 7, 8)
    blocks = order_block_instances(df, 1, 3)
    assert sorted(zip(blocks.known_at.tolist(), blocks.min_start.tolist(), strict=True)) == [
        (7, 0),
        (9, 1),
    ]
    for length in range(3, len(TWO_BREAKS) + 1):
        for end in range(len(TWO_BREAKS)):
            start = max(0, end - length + 1)
            part = order_blocks(df.slice(start, end + 1 - start), 1, 3)
            expected = set(
                part.filter(pl.col("ob").is_not_null())
                .select("ob", "ob_bottom", "ob_top", "ob_known_at", "ob_mitigated_at")
                .iter_rows()
            )
            assert sees(blocks, start, end) == expected, (start, end)
