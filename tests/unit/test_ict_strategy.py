"""The `ict` strategy on hand-built candles, on real candles fed one by one, and its params."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from daemon.domain.errors import ConfigError
from daemon.domain.models import Candle, Direction
from strategies.base import StrategyConfigError
from strategies.frames import FRAME_SCHEMA, CandleWindow
from strategies.ict import Ict, IctParams
from strategies.registry import available_strategies, build_strategy

ETH_1M = Path(__file__).parents[2] / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
FIVE = timedelta(minutes=5)
HOUR = timedelta(hours=1)

# Small windows so that a dozen hand-made candles are a complete, warm setup.
SMALL = {"left": 1, "right": 1, "lookback": 12, "trend_lookback": 4, "max_age": 10}

Ohlc = tuple[float, float, float, float]

# 1h: a swing high at row 1 (103), confirmed at row 2, broken by row 3's close: up-trend.
UP_TREND: list[Ohlc] = [
    (100, 101, 99, 100),
    (100, 103, 99.5, 102),
    (102, 102.5, 100, 101),
    (101, 105, 100.5, 104.5),
]

# 5m: a bullish FVG at row 5 (high[3] = 100 .. low[5] = 101), equal highs 106 / 106.05 at
# rows 6 and 8 (buy-side liquidity, known at row 9, never swept), and row 11 retraces into
# the gap for the first time (low 100.8 <= 101) and closes inside it (101.5 >= 100).
RETRACE: list[Ohlc] = [
    (100, 101, 99, 100),
    (100, 100.5, 99, 99.5),
    (99.5, 100, 98.5, 99),
    (99, 100, 98.8, 99.8),
    (99.8, 104, 99.6, 103.8),
    (103.8, 105, 101, 104.5),
    (104.5, 106, 103.5, 105.5),
    (105.5, 105.8, 104, 104.5),
    (104.5, 106.05, 104.2, 105),
    (105, 105.5, 103, 103.5),
    (103.5, 104, 102, 102.5),
    (102.5, 103, 100.8, 101.5),
]


def frame(rows: Sequence[Ohlc], start: datetime, step: timedelta) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "timestamp": [start + i * step for i in range(len(rows))],
            "open": [r[0] for r in rows],
            "high": [r[1] for r in rows],
            "low": [r[2] for r in rows],
            "close": [r[3] for r in rows],
            "volume": [1.0] * len(rows),
        },
        schema=FRAME_SCHEMA,
    )


def mirror(rows: Sequence[Ohlc], around: float = 200.0) -> list[Ohlc]:
    """Prices reflected: up becomes down, highs become lows, bullish patterns bearish."""
    return [(around - o, around - lo, around - h, around - c) for o, h, lo, c in rows]


def frames(ltf: Sequence[Ohlc], htf: Sequence[Ohlc]) -> dict[str, pl.DataFrame]:
    """5m candles from T0; 1h candles whose last one closes with the last 5m candle."""
    base = frame(ltf, T0, FIVE)
    last_close = T0 + len(ltf) * FIVE
    return {"5m": base, "1h": frame(htf, last_close - len(htf) * HOUR, HOUR)}


def ict(**params: object) -> Ict:
    strategy = build_strategy("ict", {**SMALL, **params})
    assert isinstance(strategy, Ict)
    return strategy


# --- the obvious setups ----------------------------------------------------------------------


def test_retrace_into_a_bullish_fvg_in_an_up_trend_goes_long_to_buy_side_liquidity() -> None:
    signal = ict(stop_buffer=0.001).evaluate(frames(RETRACE, UP_TREND))
    assert signal is not None
    assert signal.direction is Direction.LONG
    assert signal.entry == Decimal("101.5")
    assert signal.stop == Decimal("99.9")  # the gap's bottom (100) minus 0.1 %
    assert signal.take_profit == Decimal("106.05")  # the equal highs, not yet swept
    assert signal.confidence == 1.0
    assert "bullish fvg" in signal.reason and "buy-side liquidity" in signal.reason


def test_the_mirror_image_goes_short_to_sell_side_liquidity() -> None:
    signal = ict(stop_buffer=0.001).evaluate(frames(mirror(RETRACE), mirror(UP_TREND)))
    assert signal is not None
    assert signal.direction is Direction.SHORT
    assert signal.entry == Decimal("98.5")  # 200 - 101.5
    assert signal.stop == Decimal("100.1")  # the gap's top (200 - 100) plus 0.1 %
    assert signal.take_profit == Decimal("93.95")  # the equal lows, 200 - 106.05
    assert "bearish fvg" in signal.reason and "sell-side liquidity" in signal.reason


def test_without_liquidity_far_enough_the_target_is_the_reward_risk_multiple() -> None:
    signal = ict(stop_buffer=0.001, min_reward_risk=3.0, reward_risk=4.0).evaluate(
        frames(RETRACE, UP_TREND)
    )
    assert signal is not None  # 106.05 is 2.9R away: below 3R, so the fallback applies
    assert signal.take_profit == Decimal("101.5") + 4 * (Decimal("101.5") - Decimal("99.9"))
    assert signal.confidence == 0.5


def test_no_signal_against_the_higher_timeframe_trend_or_without_one() -> None:
    strategy = ict()
    assert strategy.evaluate(frames(RETRACE, mirror(UP_TREND))) is None  # bullish gap, down-trend
    assert strategy.evaluate(frames(mirror(RETRACE), UP_TREND)) is None  # bearish gap, up-trend
    no_break = [*UP_TREND[:3], (101, 102.8, 100.5, 102.5)]  # never closes above 103
    assert strategy.evaluate(frames(RETRACE, no_break)) is None


def test_no_signal_when_the_gap_was_already_retraced_or_is_closed_through() -> None:
    strategy = ict()
    earlier_touch = list(RETRACE)
    earlier_touch[9] = (105, 105.5, 100.9, 103.5)  # row 9 already trades into the gap
    assert strategy.evaluate(frames(earlier_touch, UP_TREND)) is None
    through = [*RETRACE[:11], (102.5, 103, 99, 99.5)]  # closes below the gap's bottom
    assert strategy.evaluate(frames(through, UP_TREND)) is None
    assert ict(zones="ob").evaluate(frames(RETRACE, UP_TREND)) is None  # there is no order block
    assert ict(max_age=5).evaluate(frames(RETRACE, UP_TREND)) is None  # the gap is 6 rows old


def test_trend_candles_that_close_after_the_entry_candle_are_ignored() -> None:
    """A whole backtest frame may hold later trend candles: the strategy must cut them off."""
    later = frames(RETRACE, UP_TREND)
    extra = frame(mirror(UP_TREND) * 3, later["1h"]["timestamp"][-1] + HOUR, HOUR)
    later["1h"] = pl.concat([later["1h"], extra])
    assert ict().evaluate(later) == ict().evaluate(frames(RETRACE, UP_TREND))


def test_no_signal_before_warm_up() -> None:
    assert ict().evaluate(frames(RETRACE[1:], UP_TREND)) is None  # 11 of 12 entry candles
    assert ict().evaluate(frames(RETRACE, UP_TREND[1:])) is None  # 3 of 4 trend candles


# --- real candles, one at a time -------------------------------------------------------------


def candles(df: pl.DataFrame, timeframe: str) -> list[Candle]:
    return [
        Candle("ETH/USDT:USDT", timeframe, ts, *(Decimal(repr(x)) for x in (o, h, lo, c, v)))
        for ts, o, h, lo, c, v in df.iter_rows()
    ]


def resample(df: pl.DataFrame, every: str, minutes: int) -> pl.DataFrame:
    return (
        df.group_by_dynamic("timestamp", every=every, closed="left", label="left")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.len().alias("n"),
        )
        .filter(pl.col("n") == minutes)
        .drop("n")
    )


@pytest.mark.slow  # evaluates ict on every prefix of a real day, one polars call each
def test_strategy_never_looks_ahead_on_real_candles() -> None:
    """Fed candle by candle through windows, step k's signal equals evaluating rows <= k only
    of frames that hold the whole future (the 5m frame entire, the 1m frame sliced)."""
    ones = (
        pl.read_ipc(ETH_1M)
        .slice(1000, 560)
        .rename({"date": "timestamp"})
        .cast({"timestamp": FRAME_SCHEMA["timestamp"]})
        .select(FRAME_SCHEMA.names())
    )
    five = resample(ones, "5m", 5)
    params = {"timeframe": "1m", "trend_timeframe": "5m", "lookback": 60, "trend_lookback": 20}
    strategy = build_strategy("ict", {**params, "max_age": 30})
    windows = {"1m": CandleWindow("1m", 80), "5m": CandleWindow("5m", 40)}
    pending = candles(five, "5m")
    signals = longs = 0
    for k, candle in enumerate(candles(ones, "1m")):
        windows["1m"].append(candle)
        closed_at = candle.timestamp + timedelta(minutes=1)
        while pending and pending[0].timestamp + timedelta(minutes=5) <= closed_at:
            windows["5m"].append(pending.pop(0))
        live = strategy.evaluate({tf: w.frame() for tf, w in windows.items()})
        replay = strategy.evaluate({"1m": ones[: k + 1], "5m": five})
        assert live == replay, f"step {k} at {candle.timestamp}"
        if live is not None:
            signals += 1
            longs += live.direction is Direction.LONG
    print(f"ict on {ones.height} ETH 1m candles: {signals} signals, {longs} long")
    assert signals >= 5 and 0 < longs < signals  # real signals of both kinds were compared


# --- params ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"left": 0}, "parameter 'left': Input should be greater than or equal to 1"),
        ({"trend_timeframe": "5m"}, "parameter 'trend_timeframe': must be a longer timeframe"),
        ({"timeframe": "7x"}, "parameter 'timeframe': unknown timeframe '7x'"),
        ({"zones": "breaker"}, "parameter 'zones': Input should be 'both', 'fvg' or 'ob'"),
        ({"stop_buffer": -0.1}, "parameter 'stop_buffer': Input should be greater than or equal"),
        ({"reward_risk": 1.0}, "parameter 'reward_risk': must be at least min_reward_risk (1.5)"),
        ({"max_age": 300}, "parameter 'lookback': must be greater than max_age (300)"),
        ({"tolerance": "wide"}, "parameter 'tolerance': Input should be a valid number"),
        ({"colour": "red"}, "parameter 'colour': unknown parameter (accepted: timeframe"),
    ],
)
def test_invalid_params_are_refused_naming_the_parameter(
    params: dict[str, object], expected: str
) -> None:
    with pytest.raises(StrategyConfigError) as caught:
        build_strategy("ict", params)
    message = str(caught.value)
    assert message.startswith("strategy ict: ")
    assert expected in message
    assert "Traceback" not in message and "errors.pydantic.dev" not in message
    assert isinstance(caught.value, ConfigError)


def test_registered_and_built_from_defaults() -> None:
    assert available_strategies()["ict"] is Ict
    strategy = build_strategy("ict", {}, timeframes=["1m", "5m", "1h"])
    assert strategy.params == IctParams()
    assert strategy.timeframes == ("5m", "1h")
    assert strategy.warmup == {"5m": 200, "1h": 100}
