"""Strategy interface, registry, candle windows and ema_cross, on hand-made and real candles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from daemon.domain.errors import ConfigError
from daemon.domain.models import Candle, Direction, Signal
from strategies.base import Strategy, StrategyConfigError
from strategies.ema_cross import EmaCross, EmaCrossParams, ema, wilder_atr
from strategies.frames import FRAME_SCHEMA, CandleWindow
from strategies.ict import Ict
from strategies.registry import available_strategies, build_strategy

ETH_1M = Path(__file__).parents[2] / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eth() -> pl.DataFrame:
    """The first 3000 real ETH 1m candles in the strategy frame layout."""
    return (
        pl.read_ipc(ETH_1M)
        .head(3000)
        .rename({"date": "timestamp"})
        .cast({"timestamp": FRAME_SCHEMA["timestamp"]})
        .select(FRAME_SCHEMA.names())
    )


def reference_ema(values: Sequence[float], span: int) -> list[float]:
    """The textbook recursion, seeded with the first value."""
    alpha = 2 / (span + 1)
    out = [values[0]]
    for value in values[1:]:
        out.append(out[-1] + alpha * (value - out[-1]))
    return out


def reference_atr(
    high: Sequence[float], low: Sequence[float], close: Sequence[float], n: int
) -> list[float]:
    """Wilder's ATR as a loop: true range, smoothed with alpha 1/n, seeded with high - low."""
    out = [high[0] - low[0]]
    for i in range(1, len(close)):
        tr = max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
        out.append(out[-1] + (tr - out[-1]) / n)
    return out


def frame_from_closes(
    closes: Sequence[float], start: datetime = T0, step: timedelta = MINUTE
) -> pl.DataFrame:
    """Candles that open at the previous close and range 0.5 either side of their close."""
    opens = [closes[0], *closes[:-1]]
    return pl.DataFrame(
        {
            "timestamp": [start + i * step for i in range(len(closes))],
            "open": opens,
            "high": [max(o, c) + 0.5 for o, c in zip(opens, closes, strict=True)],
            "low": [min(o, c) - 0.5 for o, c in zip(opens, closes, strict=True)],
            "close": list(closes),
            "volume": [10.0] * len(closes),
        },
        schema=FRAME_SCHEMA,
    )


def first_cross(
    closes: Sequence[float], direction: Direction, fast: int = 9, slow: int = 21
) -> int:
    """Index of the first candle on which EMA(fast) crosses EMA(slow) that way (reference maths)."""
    fasts, slows = reference_ema(closes, fast), reference_ema(closes, slow)
    diff = [f - s for f, s in zip(fasts, slows, strict=True)]
    for i in range(1, len(diff)):
        up, down = diff[i - 1] <= 0 < diff[i], diff[i - 1] >= 0 > diff[i]
        if up if direction is Direction.LONG else down:
            return i
    raise AssertionError(f"the series never crosses {direction.value}")


def v_shape(down: int, up: int, top: float = 2000.0, step: float = 1.0) -> list[float]:
    """A steady fall then a steady rise: one upward cross, some candles into the rise."""
    bottom = top - down * step
    return [top - i * step for i in range(down)] + [bottom + i * step for i in range(up)]


def to_candles(df: pl.DataFrame, timeframe: str) -> list[Candle]:
    return [
        Candle(
            "ETH/USDT:USDT",
            timeframe,
            ts,
            *(Decimal(repr(x)) for x in (o, h, lo, c, v)),
        )
        for ts, o, h, lo, c, v in df.iter_rows()
    ]


def resample(df: pl.DataFrame, every: str, minutes: int) -> pl.DataFrame:
    """Complete higher-timeframe candles from 1m ones (partial buckets dropped)."""
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


NO_TREND = {"trend_timeframe": None}


# --- indicators ------------------------------------------------------------------------------


def test_ema_and_atr_match_plain_loops_on_real_candles(eth: pl.DataFrame) -> None:
    got = eth.select(fast=ema(9), slow=ema(21), atr=wilder_atr(14))
    closes, highs, lows = eth["close"].to_list(), eth["high"].to_list(), eth["low"].to_list()
    for column, want in (
        ("fast", reference_ema(closes, 9)),
        ("slow", reference_ema(closes, 21)),
        ("atr", reference_atr(highs, lows, closes, 14)),
    ):
        worst = max(abs(a - b) for a, b in zip(got[column].to_list(), want, strict=True))
        assert worst < 1e-9, f"{column} differs from the loop by {worst}"


# --- ema_cross on hand-made series -----------------------------------------------------------


def test_ema_cross_signals_long_on_upward_cross_with_stop_below_entry() -> None:
    closes = v_shape(down=100, up=40)
    k = first_cross(closes, Direction.LONG)
    assert k > 100  # the cross is in the rise, after warm-up
    strategy = build_strategy("ema_cross", NO_TREND)
    frame = frame_from_closes(closes)

    signal = strategy.evaluate({"1m": frame[: k + 1]})

    assert signal is not None
    assert signal.direction is Direction.LONG
    assert signal.entry == Decimal(repr(closes[k])).quantize(Decimal("1e-8"))
    assert signal.stop < signal.entry < signal.take_profit
    assert signal.take_profit - signal.entry == 2 * (signal.entry - signal.stop)  # reward_risk
    atr = reference_atr(frame["high"].to_list(), frame["low"].to_list(), closes, 14)[k]
    assert float(signal.entry - signal.stop) == pytest.approx(1.5 * atr, abs=1e-7)
    assert 0 < signal.confidence <= 1
    # only on the candle of the cross, not before it, not after it
    assert strategy.evaluate({"1m": frame[:k]}) is None
    assert strategy.evaluate({"1m": frame[: k + 2]}) is None


def test_ema_cross_signals_short_on_downward_cross_with_stop_above_entry() -> None:
    closes = [4000.0 - c for c in v_shape(down=100, up=40)]  # the mirror image: rise then fall
    k = first_cross(closes, Direction.SHORT)
    strategy = build_strategy("ema_cross", NO_TREND)
    frame = frame_from_closes(closes)

    signal = strategy.evaluate({"1m": frame[: k + 1]})

    assert signal is not None
    assert signal.direction is Direction.SHORT
    assert signal.take_profit < signal.entry < signal.stop
    assert signal.entry - signal.take_profit == 2 * (signal.stop - signal.entry)
    assert strategy.evaluate({"1m": frame[:k]}) is None
    assert strategy.evaluate({"1m": frame[: k + 2]}) is None


def test_no_signal_before_warmup() -> None:
    strategy = build_strategy("ema_cross", NO_TREND)
    need = strategy.warmup["1m"]
    assert need == 63  # 3 * slow with the defaults
    closes = v_shape(down=40, up=30)
    k = first_cross(closes, Direction.LONG)
    assert k + 1 < need
    assert strategy.evaluate({"1m": frame_from_closes(closes)[: k + 1]}) is None
    # the same cross, shifted past warm-up by a flat lead-in, does signal
    padded = [closes[0]] * (need - k) + closes
    k = first_cross(padded, Direction.LONG)
    assert k + 1 >= need
    assert strategy.evaluate({"1m": frame_from_closes(padded)[: k + 1]}) is not None


def test_trend_filter_needs_its_warmup_and_agrees_with_the_cross() -> None:
    strategy = build_strategy("ema_cross", {"trend_timeframe": "5m"})
    assert strategy.timeframes == ("1m", "5m")
    closes = v_shape(down=100, up=40)
    k = first_cross(closes, Direction.LONG)
    base = frame_from_closes(closes)[: k + 1]
    end = T0 + (k + 1) * MINUTE  # close of the last 1m candle
    need = strategy.warmup["5m"]
    start = end - need * timedelta(minutes=5)
    rising = frame_from_closes([1000.0 + i for i in range(need)], start, timedelta(minutes=5))
    falling = frame_from_closes([1000.0 - i for i in range(need)], start, timedelta(minutes=5))

    assert strategy.evaluate({"1m": base, "5m": rising}) is not None
    assert strategy.evaluate({"1m": base, "5m": falling}) is None  # long cross in a downtrend
    assert strategy.evaluate({"1m": base, "5m": rising[1:]}) is None  # trend not warm yet
    # a 5m candle that has not closed at the 1m close is ignored, not used
    late = frame_from_closes(
        [1000.0 + i for i in range(need)], start + timedelta(minutes=1), timedelta(minutes=5)
    )
    assert strategy.evaluate({"1m": base, "5m": late}) is None


def test_no_signal_when_atr_is_not_a_number() -> None:
    strategy = build_strategy("ema_cross", NO_TREND)
    closes = v_shape(down=100, up=40)
    k = first_cross(closes, Direction.LONG)
    frame = frame_from_closes(closes)[: k + 1]
    assert strategy.evaluate({"1m": frame}) is not None
    broken = frame.with_columns(high=pl.lit(float("nan")), low=pl.lit(float("nan")))
    assert strategy.evaluate({"1m": broken}) is None


# --- look-ahead and real data ----------------------------------------------------------------


def test_strategy_never_looks_ahead(eth: pl.DataFrame) -> None:
    """Fed candle by candle, step k's signal equals evaluating rows <= k only.

    The reference gets the whole 5m frame, future candles included: the strategy must
    ignore the 5m candles that had not closed at step k.
    """
    one_day = eth.head(1600)
    five = resample(one_day, "5m", 5)
    strategy = build_strategy("ema_cross", {"trend_timeframe": "5m"})
    windows = {"1m": CandleWindow("1m", maxlen=len(one_day)), "5m": CandleWindow("5m", maxlen=500)}
    pending = to_candles(five, "5m")
    signals = 0
    for k, candle in enumerate(to_candles(one_day, "1m")):
        windows["1m"].append(candle)
        closed_at = candle.timestamp + MINUTE
        while pending and pending[0].timestamp + timedelta(minutes=5) <= closed_at:
            windows["5m"].append(pending.pop(0))
        live = strategy.evaluate({tf: w.frame() for tf, w in windows.items()})
        replay = strategy.evaluate({"1m": one_day[: k + 1], "5m": five})
        assert live == replay, f"step {k} at {candle.timestamp}"
        signals += live is not None
    assert signals >= 10  # the comparison covered real signals, not only Nones


def test_plausible_signal_count_over_one_real_day(eth: pl.DataFrame) -> None:
    strategy = build_strategy("ema_cross", NO_TREND)
    need = strategy.warmup["1m"]
    window = CandleWindow("1m", maxlen=300)
    signals: list[Signal] = []
    for i, candle in enumerate(to_candles(eth.head(need + 1440), "1m")):
        window.append(candle)
        signal = strategy.evaluate({"1m": window.frame()})
        if i < need - 1:
            assert signal is None
        elif signal is not None:
            signals.append(signal)
    longs = sum(s.direction is Direction.LONG for s in signals)
    print(f"ema_cross 9/21 on ETH 1m, one day: {len(signals)} signals, {longs} long")
    assert 5 < len(signals) < 200
    assert 0 < longs < len(signals)  # crosses alternate, so both directions appear


# --- params and registry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("ema_cross", {"fast": 21, "slow": 21}, "parameter 'slow': must be greater than fast (21)"),
        ("ema_cross", {"fast": 30}, "parameter 'slow': must be greater than fast (30)"),
        ("ema_cross", {"fastt": 5}, "parameter 'fastt': unknown parameter (accepted: fast, slow"),
        ("ema_cross", {"fast": "nine"}, "parameter 'fast': Input should be a valid integer"),
        ("ema_cross", {"fast": 1}, "parameter 'fast': Input should be greater than or equal to 2"),
        ("ema_cross", {"stop_atr": 0}, "parameter 'stop_atr': Input should be greater than 0"),
        ("ema_cross", {"timeframe": "7x"}, "parameter 'timeframe': unknown timeframe '7x'"),
        ("ema_cross", {"trend_timeframe": "1m"}, "parameter 'trend_timeframe': must be a longer"),
        ("ema_cros", {}, "strategy ema_cros: unknown strategy (available: ema_cross, ict)"),
    ],
)
def test_invalid_params_are_refused_naming_the_parameter(
    name: str, params: dict[str, object], expected: str
) -> None:
    with pytest.raises(StrategyConfigError) as caught:
        build_strategy(name, params)
    message = str(caught.value)
    assert message.startswith(f"strategy {name}: ")
    assert expected in message
    assert "Traceback" not in message and "errors.pydantic.dev" not in message
    assert isinstance(caught.value, ConfigError)


def test_every_bad_parameter_is_named_at_once() -> None:
    with pytest.raises(StrategyConfigError, match=r"'fast'.*'reward_risk'.*'colour'"):
        build_strategy("ema_cross", {"fast": "x", "reward_risk": -1, "colour": "red"})


def test_bot_timeframes_must_cover_the_strategy() -> None:
    with pytest.raises(StrategyConfigError, match=r"ema_cross: needs timeframes 5m .*has: 1m, 1h"):
        build_strategy("ema_cross", {}, timeframes=["1m", "1h"])
    strategy = build_strategy(
        "ema_cross", {"timeframe": "5m", "trend_timeframe": "1h"}, ["5m", "1h"]
    )
    assert strategy.timeframes == ("5m", "1h")
    assert strategy.warmup == {"5m": 63, "1h": 22}


def test_registry_lists_builtins_that_build_from_defaults() -> None:
    strategies = available_strategies()
    assert strategies == {"ema_cross": EmaCross, "ict": Ict}
    for name, cls in strategies.items():
        assert issubclass(cls, Strategy)
        strategy = build_strategy(name, {})
        assert strategy.params == cls.Params()
    assert EmaCross(EmaCrossParams(fast=5, slow=8)).timeframes == ("1m", "5m")
    with pytest.raises(TypeError, match="params must be EmaCrossParams"):
        EmaCross(pl.Config())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["ema_cross", "ict"])
def test_a_strategy_handed_too_little_says_which_strategy_and_timeframe(
    name: str, eth: pl.DataFrame
) -> None:
    """A missing frame or window is the caller's bug, not "not warm yet": said loudly."""
    strategy = build_strategy(name, {})
    base, higher = strategy.timeframes[0], strategy.timeframes[-1]
    with pytest.raises(KeyError, match=f"{name} needs a {base} frame, got \\['1h'\\]"):
        strategy.evaluate({"1h": eth})
    with pytest.raises(KeyError, match=f"{name} needs a {higher} frame, got \\['{base}'\\]"):
        strategy.signal_series({base: eth}, {base: 10, higher: 10})
    with pytest.raises(KeyError, match=f"{name} needs a {base} window, got \\['{higher}'\\]"):
        strategy.signal_series({base: eth, higher: eth}, {higher: 10})
    with pytest.raises(ValueError, match=f"the {base} window must be at least 1 candle, got 0"):
        strategy.signal_series({base: eth, higher: eth}, {base: 0, higher: 10})
    assert strategy.signal_series({base: eth, higher: eth}, {base: 1, higher: 1}) is not None


# --- candle windows --------------------------------------------------------------------------


def candle(
    minute: int, close: str = "100", timeframe: str = "1m", symbol: str = "ETH/USDT:USDT"
) -> Candle:
    price = Decimal(close)
    return Candle(
        symbol, timeframe, T0 + minute * MINUTE, price, price + 1, price - 1, price, Decimal("2.5")
    )


def test_candle_window_refuses_out_of_order_candles_and_keeps_maxlen() -> None:
    window = CandleWindow("1m", maxlen=3)
    assert len(window) == 0 and window.last_timestamp is None
    assert window.frame().schema == FRAME_SCHEMA and window.frame().height == 0

    window.extend(candle(i, str(100 + i)) for i in range(5))
    assert len(window) == 3
    assert window.last_timestamp == T0 + 4 * MINUTE
    frame = window.frame()
    assert frame.schema == FRAME_SCHEMA
    assert frame["close"].to_list() == [102.0, 103.0, 104.0]  # oldest dropped, oldest first
    assert frame["timestamp"].to_list() == [T0 + i * MINUTE for i in (2, 3, 4)]
    assert window.frame() is frame  # cached until the next append

    for bad in (candle(4), candle(3), candle(9, timeframe="5m"), candle(9, symbol="BTC/USDT:USDT")):
        with pytest.raises(ValueError):
            window.append(bad)
    naive = Candle("ETH/USDT:USDT", "1m", datetime(2025, 1, 2), *(Decimal(1),) * 5)
    with pytest.raises(ValueError, match="naive"):
        window.append(naive)
    assert window.frame() is frame and len(window) == 3  # refusals changed nothing

    window.append(candle(5, "105.5"))
    assert window.frame() is not frame
    assert window.frame()["close"].to_list() == [103.0, 104.0, 105.5]
    with pytest.raises(ValueError):
        CandleWindow("1m", maxlen=0)
