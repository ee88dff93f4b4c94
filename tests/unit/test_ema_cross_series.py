"""EmaCross.signal_series against EmaCross.evaluate called per candle, float for float.

The reference slices, for every base row, the windows the live runner would hold (the last
`warmup + WINDOW_SLACK` base candles; the last trend candles closed by the base candle's
close) and calls `evaluate`; the vectorised series must give equal dicts with `==`, so every
Decimal level, confidence float and reason string must be identical. Real frames are built
the way live ones are: prices are Decimals from `load_candles`, turned into floats one by one
with `float()` as `CandleWindow` does. One test replays real candles through `CandleWindow`
itself, to show that the sliced windows are the live ones.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from daemon.adapters.candle_files import VALUE_COLUMNS, aggregate, frame_to_candles, load_candles
from daemon.domain.models import Signal
from daemon.domain.timeframes import timeframe_delta
from daemon.runtime.bot_runner import WINDOW_SLACK
from strategies.ema_cross import EmaCross, EmaCrossParams, ema
from strategies.frames import FRAME_SCHEMA, CandleWindow
from strategies.rolling_ewm import rolling_ewm_mean, span_alpha
from tests.conftest import REPO

CANDLES = REPO / "data" / "candles"
ETH_1M = CANDLES / "ETH_USDT_USDT-1m-futures.feather"
BTC_1M = CANDLES / "BTC_USDT_USDT-1m-futures.feather"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
MINUTE_US = 60_000_000

# the first rows (windows still short, then the warm-up) and a stretch in the middle
REAL_ROWS = (range(0, 1500), range(30_000, 31_500))


# ---------------------------------------------------------------- frames and the reference


def live_floats(decimal_frame: pl.DataFrame) -> pl.DataFrame:
    """A FRAME_SCHEMA frame from a `CandleFile.frame` layout, each Decimal through float()."""
    data: dict[str, list[int] | list[float]] = {
        "timestamp": [m * MINUTE_US for m in decimal_frame["minute"].to_list()]
    }
    for column in VALUE_COLUMNS:
        data[column] = [float(d) for d in decimal_frame[column].to_list()]
    return pl.DataFrame(data, schema={**FRAME_SCHEMA, "timestamp": pl.Int64()}).with_columns(
        pl.col("timestamp").cast(FRAME_SCHEMA["timestamp"])
    )


def live_windows(strategy: EmaCross) -> dict[str, int]:
    """The runner's window lengths (see BotRunner.__init__)."""
    return {tf: n + WINDOW_SLACK for tf, n in strategy.warmup.items()}


def reference(
    strategy: EmaCross,
    frames: Mapping[str, pl.DataFrame],
    windows: Mapping[str, int],
    rows: Sequence[int],
) -> dict[int, Signal]:
    """`evaluate` on each row's windows, sliced out of the whole frames as the contract says."""
    base_tf, *others = strategy.timeframes
    base = frames[base_tf]
    base_closes = [t + timeframe_delta(base_tf) for t in base["timestamp"].to_list()]
    other_closes = {
        tf: [t + timeframe_delta(tf) for t in frames[tf]["timestamp"].to_list()] for tf in others
    }
    for closes in other_closes.values():
        assert closes == sorted(closes)
    out: dict[int, Signal] = {}
    for r in rows:
        start = max(0, r - windows[base_tf] + 1)
        window = {base_tf: base.slice(start, r + 1 - start)}
        for tf in others:
            closed = bisect.bisect_right(other_closes[tf], base_closes[r])  # close <= r's close
            first = max(0, closed - windows[tf])
            window[tf] = frames[tf].slice(first, closed - first)
        signal = strategy.evaluate(window)
        if signal is not None:
            out[r] = signal
    return out


def restricted(series: Mapping[int, Signal], rows: Sequence[int]) -> dict[int, Signal]:
    wanted = set(rows)
    return {r: s for r, s in series.items() if r in wanted}


@pytest.fixture(scope="module")
def eth() -> dict[str, pl.DataFrame]:
    """The whole ETH file as live floats: 1m, and 5m aggregated from it."""
    candles = load_candles(ETH_1M).frame
    return {"1m": live_floats(candles), "5m": live_floats(aggregate(candles, 1, 5))}


PARAMS = [
    pytest.param({}, id="defaults-trend-5m"),
    pytest.param({"trend_timeframe": None}, id="no-trend"),
    pytest.param({"fast": 5, "slow": 13, "atr_period": 7}, id="fast5-slow13-atr7"),
]


# ---------------------------------------------------------------- real data


@pytest.mark.parametrize("path", [ETH_1M, BTC_1M], ids=["eth", "btc"])
def test_polars_decimal_cast_equals_float_of_decimal(path: Path) -> None:
    """The fast engine casts Decimal columns with polars; live floats come from float()."""
    candles = load_candles(path).frame
    for frame in (candles, aggregate(candles, 1, 5)):
        for column in VALUE_COLUMNS:
            cast = frame[column].cast(pl.Float64).to_list()
            assert cast == [float(d) for d in frame[column].to_list()], column


@pytest.mark.slow  # replays weeks of real candles; test_random_candles_match_evaluate is fast
@pytest.mark.parametrize("raw", PARAMS)
def test_real_candles_match_evaluate(eth: dict[str, pl.DataFrame], raw: dict[str, object]) -> None:
    strategy = EmaCross(EmaCrossParams.model_validate(raw))
    windows = live_windows(strategy)
    series = strategy.signal_series(eth, windows)
    assert all(0 <= r < eth["1m"].height for r in series)
    for rows in REAL_ROWS:
        expected = reference(strategy, eth, windows, rows)
        print(f"{strategy.params}: rows {rows.start}-{rows.stop}: {len(expected)} signals")
        assert len(expected) >= 20  # a comparison of two empty dicts would prove nothing
        assert restricted(series, rows) == expected


@pytest.mark.slow  # a long replay through the runner's candle windows
def test_real_candles_through_live_candle_windows(eth: dict[str, pl.DataFrame]) -> None:
    """The windows the reference slices are those CandleWindow holds in a replay."""
    strategy = EmaCross(EmaCrossParams())
    windows = live_windows(strategy)
    series = strategy.signal_series(eth, windows)
    decimals = load_candles(ETH_1M).frame
    candles = {
        "1m": frame_to_candles(decimals, "ETH/USDT:USDT", "1m"),
        "5m": frame_to_candles(aggregate(decimals, 1, 5), "ETH/USDT:USDT", "5m"),
    }
    checked = signals = 0
    for first, stop in ((0, 700), (45_000, 45_700)):
        live = {tf: CandleWindow(tf, n) for tf, n in windows.items()}
        trend = iter(candles["5m"])
        pending = next(trend)
        for r in range(max(0, first - windows["1m"]), stop):
            candle = candles["1m"][r]
            live["1m"].append(candle)
            closes = candle.timestamp + timedelta(minutes=1)
            while pending.timestamp + timedelta(minutes=5) <= closes:
                live["5m"].append(pending)
                pending = next(trend)
            if r >= first:
                got = strategy.evaluate({tf: w.frame() for tf, w in live.items()})
                assert got == series.get(r), r
                checked += 1
                signals += got is not None
    assert checked == 1400 and signals >= 20


def test_whole_file_is_fast(eth: dict[str, pl.DataFrame]) -> None:
    """Not a benchmark: a guard against falling back to per-candle work (~0.1 s expected)."""
    strategy = EmaCross(EmaCrossParams())
    started = time.perf_counter()
    series = strategy.signal_series(eth, live_windows(strategy))
    elapsed = time.perf_counter() - started
    print(f"signal_series on {eth['1m'].height} rows: {elapsed:.3f} s, {len(series)} signals")
    assert len(series) > 500
    assert elapsed < 5


# ---------------------------------------------------------------- random candles

# move, upper wick, lower wick, gap from the previous close: in cents, so prices are not exact
# binary floats (rounding is exercised) yet ties, flat stretches and zero ranges are common
STEP = st.tuples(
    st.integers(-6, 6), st.integers(0, 3), st.integers(0, 3), st.sampled_from([0, 0, 0, -2, 2])
)


def steps(most: int) -> st.SearchStrategy[list[tuple[int, int, int, int]]]:
    """Up to `most` steps, lengths drawn evenly (plain lists stay mostly too short to warm up)."""
    return st.integers(0, most).flatmap(lambda n: st.lists(STEP, min_size=n, max_size=n))


def walk(moves: Sequence[tuple[int, int, int, int]], start: datetime, minutes: int) -> pl.DataFrame:
    """A valid OHLC random walk of `minutes`-minute candles from hypothesis steps."""
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


@st.composite
def setups(draw: st.DrawFn) -> tuple[EmaCross, dict[str, pl.DataFrame], dict[str, int]]:
    fast = draw(st.integers(2, 4))
    slow = draw(st.integers(fast + 1, 7))
    trend_tf = draw(st.sampled_from([None, "3m", "5m"]))
    params = EmaCrossParams(
        fast=fast,
        slow=slow,
        atr_period=draw(st.integers(1, 6)),
        trend_timeframe=trend_tf,
        stop_atr=draw(st.sampled_from([0.5, 1.5, 3.0])),
        reward_risk=draw(st.sampled_from([1.0, 2.0, 2.5])),
    )
    strategy = EmaCross(params)
    frames = {"1m": walk(draw(steps(120)), T0, 1)}
    # windows around the warm-up: shorter ones must never signal
    windows = {"1m": max(1, strategy.warmup["1m"] + draw(st.integers(-3, 12)))}
    if trend_tf is not None:
        minutes = int(trend_tf[:-1])
        offset = draw(st.integers(-15, 3))  # the trend may start before or after the base
        start = T0 + timedelta(minutes=minutes * offset)
        frames[trend_tf] = walk(draw(steps(45)), start, minutes)
        windows[trend_tf] = max(1, strategy.warmup[trend_tf] + draw(st.integers(-2, 6)))
    return strategy, frames, windows


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setups())
def test_random_candles_match_evaluate(
    setup: tuple[EmaCross, dict[str, pl.DataFrame], dict[str, int]],
) -> None:
    strategy, frames, windows = setup
    expected = reference(strategy, frames, windows, range(frames["1m"].height))
    target(float(len(expected)))  # steer hypothesis towards examples with many signals
    assert strategy.signal_series(frames, windows) == expected


def test_cross_uses_both_values_from_the_same_window() -> None:
    """Short windows on a long random walk: the seam `_last_two` depends on, exercised.

    The previous candle's fast - slow inside the window ending at r is not the last value of
    the window ending at r - 1 (that window starts one candle earlier, its seed differs), and
    with a window as short as the warm-up the two often differ in sign around a cross. The
    series must use the former, as `evaluate` does; this walk has such rows, or it proves
    nothing.
    """
    rng = random.Random(20250504)
    walk_steps = [
        (rng.randint(-6, 6), rng.randint(0, 3), rng.randint(0, 3), rng.choice([0, 0, 2, -2]))
        for _ in range(2500)
    ]
    frames = {"1m": walk(walk_steps, T0, 1)}
    strategy = EmaCross(EmaCrossParams(fast=2, slow=3, atr_period=2, trend_timeframe=None))
    window = strategy.warmup["1m"]
    gaps = []  # (fast - slow) on the last two candles of each window, by polars
    for r in range(window - 1, frames["1m"].height):
        tail = frames["1m"].slice(r - window + 1, window).select(ema(2) - ema(3)).tail(2)
        gaps.append(tail.to_series().to_list())
    seams = sum(
        (prev[1] > 0) != (this[0] > 0) or (prev[1] < 0) != (this[0] < 0)
        for prev, this in itertools.pairwise(gaps)
    )
    print(f"{seams} rows where the two windows disagree on the sign")
    assert seams >= 5, seams
    expected = reference(strategy, frames, {"1m": window}, range(frames["1m"].height))
    assert strategy.signal_series(frames, {"1m": window}) == expected


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(-500, 500), max_size=60),
    firsts=st.lists(st.integers(0, 500), min_size=60, max_size=60),
    window=st.integers(1, 25),
    tail=st.integers(1, 3),
    span=st.integers(1, 40),
    by_span=st.booleans(),
    seeded=st.booleans(),
)
def test_rolling_ewm_mean_is_polars_per_window(
    values: list[int],
    firsts: list[int],
    window: int,
    tail: int,
    span: int,
    by_span: bool,
    seeded: bool,
) -> None:
    x = np.array(values, dtype=np.float64) / 7 + 1000  # not exact in binary: rounding matters
    first = np.array(firsts[: len(values)], dtype=np.float64) / 3
    alpha = span_alpha(span) if by_span else 1 / span
    got = rolling_ewm_mean(x, alpha, window, tail=tail, first=first if seeded else None)
    assert got.shape == (tail, len(values))
    for r in range(len(values)):
        start = max(0, r - window + 1)
        seq = x[start : r + 1].copy()
        if seeded:
            seq[0] = first[start]
        series = pl.Series(seq)
        ewm = (
            series.ewm_mean(span=span, adjust=False)
            if by_span
            else series.ewm_mean(alpha=alpha, adjust=False)
        ).to_list()
        expected = [ewm[-1 - j] if j < len(ewm) else None for j in range(tail)][::-1]
        actual = [None if np.isnan(v) else float(v) for v in got[:, r]]
        assert actual == expected, r
