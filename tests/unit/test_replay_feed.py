"""The replay feed: real candles, endless ping-pong laps, pacing, cursor and bad files."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from daemon.adapters.candle_files import aggregate, frame_to_candles, load_candles
from daemon.adapters.replay_feed import DataFileError, ReplayFeed
from daemon.domain.errors import ConfigError
from daemon.domain.models import Candle
from daemon.domain.timeframes import timeframe_delta
from daemon.ports import CandleConsumer, CandlesClosed, MarketFeed
from tests.conftest import FIXTURES, REPO

SHIPPED = REPO / "data" / "candles"
BINANCE = FIXTURES / "candles" / "binance_usdm_2025h1"
MINUTE = timedelta(minutes=1)

# Synthetic data: starts off the hour, and its first lap ends at 23:50, shortly before a
# UTC midnight, so short runs cross both a lap boundary and a day boundary.
SYNTH_T0 = datetime(2025, 1, 1, 15, 33, tzinfo=UTC)
SYNTH_N = 3377  # candles: the last opens at 2025-01-03 23:49
LAP_END = SYNTH_T0 + SYNTH_N * MINUTE
HTF = ["1m", "5m", "15m", "1h"]


class MemoryCursorStore:
    """The FeedCursorStore port, in memory."""

    def __init__(self) -> None:
        self.cursors: dict[str, datetime] = {}

    def load_feed_cursor(self, feed_key: str) -> datetime | None:
        return self.cursors.get(feed_key)

    def save_feed_cursor(self, feed_key: str, closed_at: datetime) -> None:
        self.cursors[feed_key] = closed_at


class FakeClock:
    """Monotonic time that moves only when slept on (or pushed by a test)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def synthetic_rows(start: datetime, count: int, seed: int = 7) -> list[tuple[object, ...]]:
    """Continuous candles (each opens at the previous close), prices on a 0.1 tick."""
    rng = random.Random(seed)
    rows: list[tuple[object, ...]] = []
    price = 20_000  # in ticks
    for k in range(count):
        close = max(1_000, price + rng.randint(-30, 30))
        high = max(price, close) + rng.randint(0, 8)
        low = min(price, close) - rng.randint(0, 8)
        volume = rng.randint(0, 90_000) / 1000
        rows.append((start + k * MINUTE, price / 10, high / 10, low / 10, close / 10, volume))
        price = close
    return rows


def frame_of(rows: list[tuple[object, ...]]) -> pl.DataFrame:
    schema = ["date", "open", "high", "low", "close", "volume"]
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.with_columns(pl.col("date").dt.cast_time_unit("ns"))


def write_feather(path: Path, frame: pl.DataFrame) -> Path:
    frame.write_ipc(path)
    return path


@pytest.fixture
def synth_file(tmp_path: Path) -> Path:
    return write_feather(
        tmp_path / "SYN_USDT_USDT-1m-futures.feather", frame_of(synthetic_rows(SYNTH_T0, SYNTH_N))
    )


def make_feed(
    data_file: Path,
    *,
    timeframes: list[str] | None = None,
    start: datetime | None = None,
    store: MemoryCursorStore | None = None,
    speed: float = 0.0,
    clock: FakeClock | None = None,
    on_consumer_error: Callable[[CandleConsumer, BaseException], None] | None = None,
) -> ReplayFeed:
    extra = {"sleep": clock.sleep, "monotonic": clock.monotonic} if clock else {}
    return ReplayFeed(
        "SYN/USDT:USDT",
        data_file,
        timeframes or HTF,
        speed,
        store or MemoryCursorStore(),
        "replay:SYN",
        start=start,
        on_consumer_error=on_consumer_error,
        **extra,  # type: ignore[arg-type]
    )


def run_events(feed: ReplayFeed, count: int, *others: CandleConsumer) -> list[CandlesClosed]:
    """Run the feed until `count` events went out, then cancel it (as the supervisor would)."""
    events: list[CandlesClosed] = []

    async def main() -> None:
        task = asyncio.create_task(feed.run())

        async def record(event: CandlesClosed) -> None:
            events.append(event)
            if len(events) == count:
                task.cancel()

        for consumer in others:
            feed.subscribe(consumer)
        feed.subscribe(record)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), "the feed swallowed its cancellation"
        feed.unsubscribe(record)

    asyncio.run(main())
    assert len(events) == count
    return events


def by_timeframe(events: list[CandlesClosed], timeframe: str) -> list[Candle]:
    return [c for e in events for c in e.candles if c.timeframe == timeframe]


def binance_30m(symbol: str) -> dict[datetime, tuple[Decimal, ...]]:
    path = BINANCE / f"{symbol}_USDT_USDT-30m-futures.feather"
    assert path.is_file(), f"{path} is missing from tests/fixtures"
    return {
        row[0]: tuple(Decimal(repr(v)) for v in row[1:]) for row in pl.read_ipc(path).iter_rows()
    }


def combine(candles: list[Candle]) -> tuple[Decimal, ...]:
    """OHLCV of consecutive candles taken together, done by hand."""
    return (
        candles[0].open,
        max(c.high for c in candles),
        min(c.low for c in candles),
        candles[-1].close,
        sum((c.volume for c in candles), Decimal(0)),
    )


def same_ohlcv(ours: tuple[Decimal, ...], theirs: tuple[Decimal, ...]) -> bool:
    """OHLC exactly; volume within float tolerance (Binance's files hold float sums)."""
    return ours[:4] == theirs[:4] and math.isclose(ours[4], theirs[4], rel_tol=1e-12)


@pytest.fixture(scope="module")
def eth_first_lap() -> list[CandlesClosed]:
    """Every event of the shipped ETH file's first lap, with 5m, 15m, 30m and 1h built."""
    path = SHIPPED / "ETH_USDT_USDT-1m-futures.feather"
    first = pl.read_ipc(path)["date"][0]
    height = pl.read_ipc(path).height
    feed = make_feed(path, timeframes=["1m", "5m", "15m", "30m", "1h"], start=first)
    return run_events(feed, height)


def test_30m_built_from_1m_matches_binance_own_30m_candles(
    eth_first_lap: list[CandlesClosed],
) -> None:
    # The shared 5m/15m/1h files end in April, the 1m files start in May: 30m is the only
    # exchange-built timeframe overlapping them, so it is the end-to-end reference.
    theirs = binance_30m("ETH")
    ours = by_timeframe(eth_first_lap, "30m")
    first, last = ours[0].timestamp, ours[-1].timestamp
    expected = sorted(t for t in theirs if first <= t <= last)
    assert [c.timestamp for c in ours] == expected
    assert len(ours) > 2000
    for candle in ours:
        own = (candle.open, candle.high, candle.low, candle.close, candle.volume)
        assert same_ohlcv(own, theirs[candle.timestamp]), candle


def test_5m_15m_1h_built_from_1m_agree_with_binance_own_30m_candles(
    eth_first_lap: list[CandlesClosed],
) -> None:
    theirs = binance_30m("ETH")
    for timeframe, per_30m in (("5m", 6), ("15m", 2)):
        ours = by_timeframe(eth_first_lap, timeframe)
        groups: dict[datetime, list[Candle]] = {}
        for candle in ours:
            bucket = candle.timestamp.replace(minute=candle.timestamp.minute // 30 * 30)
            groups.setdefault(bucket, []).append(candle)
        complete = {t: g for t, g in groups.items() if len(g) == per_30m}
        assert len(complete) > 2000
        for bucket, group in complete.items():
            assert same_ohlcv(combine(group), theirs[bucket]), (timeframe, bucket)
    hours = by_timeframe(eth_first_lap, "1h")
    assert len(hours) > 1000
    for hour in hours:
        halves = [theirs[hour.timestamp], theirs[hour.timestamp + timedelta(minutes=30)]]
        exchange = (
            halves[0][0],
            max(h[1] for h in halves),
            min(h[2] for h in halves),
            halves[1][3],
            halves[0][4] + halves[1][4],
        )
        assert same_ohlcv((hour.open, hour.high, hour.low, hour.close, hour.volume), exchange)


@pytest.mark.parametrize("symbol", ["BTC", "ETH"])
def test_15m_and_1h_aggregation_matches_binance_own_candles(symbol: str) -> None:
    # The feed's aggregation, fed Binance's own 5m candles, rebuilds Binance's 15m and 1h.
    five = load_candles(BINANCE / f"{symbol}_USDT_USDT-5m-futures.feather", "5m")
    for timeframe, minutes in (("15m", 15), ("1h", 60)):
        path = BINANCE / f"{symbol}_USDT_USDT-{timeframe}-futures.feather"
        theirs = {
            row[0]: tuple(Decimal(repr(v)) for v in row[1:])
            for row in pl.read_ipc(path).iter_rows()
        }
        ours = frame_to_candles(aggregate(five.frame, 5, minutes), symbol, timeframe)
        overlap = [c for c in ours if c.timestamp in theirs]
        assert len(overlap) == len(theirs) > 700
        for c in overlap:
            own = (c.open, c.high, c.low, c.close, c.volume)
            assert same_ohlcv(own, theirs[c.timestamp]), c


def test_higher_timeframe_candle_arrives_only_with_the_1m_candle_that_closes_it(
    synth_file: Path,
) -> None:
    feed = make_feed(synth_file, start=SYNTH_T0)  # the data starts at 15:33, mid-bucket
    events = run_events(feed, 600)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for event in events:
        one, *higher = event.candles
        assert one.timeframe == "1m"
        assert event.closed_at == one.timestamp + MINUTE
        assert [c.timeframe for c in higher] == [
            tf for tf in HTF[1:] if tf in {c.timeframe for c in higher}
        ]
        for candle in higher:
            length = timeframe_delta(candle.timeframe)
            assert candle.timestamp + length == event.closed_at
            assert (candle.timestamp - epoch) % length == timedelta(0)
    at = {e.closed_at: [c.timeframe for c in e.candles] for e in events}
    assert at[datetime(2025, 1, 1, 15, 39, tzinfo=UTC)] == ["1m"]
    assert at[datetime(2025, 1, 1, 15, 40, tzinfo=UTC)] == ["1m", "5m"]
    assert at[datetime(2025, 1, 1, 17, 0, tzinfo=UTC)] == ["1m", "5m", "15m", "1h"]
    # The buckets the data starts inside (15:30 5m and 15m, 15:00 1h) are never emitted.
    firsts = {tf: by_timeframe(events, tf)[0].timestamp.strftime("%H:%M") for tf in HTF[1:]}
    assert firsts == {"5m": "15:35", "15m": "15:45", "1h": "16:00"}
    # The 5m candle equals its five 1m candles, the last of which came in the same event.
    ones = by_timeframe(events, "1m")
    for candle in by_timeframe(events, "5m"):
        parts = [c for c in ones if candle.timestamp <= c.timestamp < candle.timestamp + 5 * MINUTE]
        assert combine(parts) == (candle.open, candle.high, candle.low, candle.close, candle.volume)


def test_restart_from_saved_cursor_neither_repeats_nor_skips_a_candle(synth_file: Path) -> None:
    start = datetime(2025, 1, 3, 23, 0, tzinfo=UTC)  # lap end at 23:50, midnight after
    uninterrupted = run_events(make_feed(synth_file, start=start), 200)

    store = MemoryCursorStore()
    pieces: list[CandlesClosed] = []
    for count in (30, 60, 110):  # each run a fresh feed, as after a daemon restart
        # `start` is ignored once a cursor exists: the cursor wins.
        pieces += run_events(make_feed(synth_file, start=start, store=store), count)
        assert store.cursors["replay:SYN"] == pieces[-1].closed_at
    assert pieces == uninterrupted
    closes = [e.closed_at for e in pieces]
    assert closes == [start + (k + 1) * MINUTE for k in range(200)]


def test_replay_runs_past_the_end_of_the_data_with_continuous_prices_and_increasing_time(
    synth_file: Path,
) -> None:
    source = frame_of(synthetic_rows(SYNTH_T0, SYNTH_N)).rows()
    events = run_events(make_feed(synth_file, start=SYNTH_T0), 2 * SYNTH_N + 500)
    ones = by_timeframe(events, "1m")

    assert [c.timestamp for c in ones] == [SYNTH_T0 + k * MINUTE for k in range(len(ones))]
    for before, after in itertools.pairwise(ones):
        assert after.open == before.close, (before, after)
    low = min(Decimal(repr(r[3])) for r in source)
    high = max(Decimal(repr(r[2])) for r in source)
    assert all(low <= c.low <= c.high <= high for c in ones)

    def as_decimals(row: tuple[object, ...]) -> tuple[Decimal, ...]:
        return tuple(Decimal(repr(v)) for v in row[1:])

    for j in range(SYNTH_N):
        forwards, backwards, again = ones[j], ones[SYNTH_N + j], ones[2 * SYNTH_N + j % 500]
        o, h, lo, c, v = as_decimals(source[SYNTH_N - 1 - j])
        assert (backwards.open, backwards.high, backwards.low, backwards.close) == (c, h, lo, o)
        assert backwards.volume == v
        assert (forwards.open, forwards.close) == as_decimals(source[j])[0:4:3]
        if j < 500:
            assert (again.open, again.close) == (forwards.open, forwards.close)
    # No higher-timeframe bucket is lost at a lap or a day boundary.
    for timeframe in HTF[1:]:
        stamps = [c.timestamp for c in by_timeframe(events, timeframe)]
        step = timeframe_delta(timeframe)
        assert stamps == [stamps[0] + k * step for k in range(len(stamps))]
        assert stamps[-1] + 2 * step > ones[-1].timestamp + MINUTE


def test_history_never_contains_an_unclosed_candle(synth_file: Path) -> None:
    start = LAP_END - 7 * MINUTE - timedelta(seconds=30)  # rounds up to 23:43
    feed = make_feed(synth_file, start=start)
    assert feed.cursor == datetime(2025, 1, 3, 23, 43, tzinfo=UTC)

    def check(limit: int) -> None:
        for timeframe in HTF:
            length = timeframe_delta(timeframe)
            candles = feed.history(timeframe, limit)
            assert len(candles) == limit
            assert all(c.timestamp + length <= feed.cursor for c in candles)
            assert candles[-1].timestamp + 2 * length > feed.cursor  # the newest closed one
            stamps = [c.timestamp for c in candles]
            assert stamps == [stamps[0] + k * length for k in range(limit)]

    check(40)
    events = run_events(feed, 1000)  # across the lap end and midnight
    assert feed.cursor == events[-1].closed_at
    check(40)
    # history() and the events tell the same story, across the lap boundary.
    for timeframe in HTF:
        emitted = by_timeframe(events, timeframe)
        assert feed.history(timeframe, len(emitted)) == emitted
    # Near the data's start there is less history, and no half-built first bucket.
    early = make_feed(synth_file, start=SYNTH_T0 + 47 * MINUTE)  # cursor 16:20
    assert len(early.history("1m", 500)) == 47
    assert [c.timestamp.strftime("%H:%M") for c in early.history("15m", 500)] == [
        "15:45",
        "16:00",
    ]
    assert early.history("1h", 500) == []
    assert early.history("5m", 0) == []


def test_speed_paces_candles_against_the_clock(synth_file: Path) -> None:
    clock = FakeClock()
    sent_at: list[float] = []

    async def slow_sometimes(event: CandlesClosed) -> None:
        sent_at.append(clock.now)
        if len(sent_at) == 4:
            clock.now += 2.5  # a slow consumer: the next candles catch up, no drift
        if len(sent_at) == 9:
            clock.now += 100  # a long stall: re-anchor instead of bursting 100 candles

    feed = make_feed(synth_file, speed=60, clock=clock)  # one candle per second
    run_events(feed, 12, slow_sometimes)
    assert sent_at == [
        *[1000.0, 1001.0, 1002.0, 1003.0],
        *[1005.5, 1005.5, 1006.0, 1007.0, 1008.0],
        *[1108.0, 1109.0, 1110.0],
    ]
    assert feed.last_event_monotonic == 1110.0
    assert max(clock.sleeps) == 1.0

    fast = FakeClock()
    run_events(make_feed(synth_file, speed=0, clock=fast), 50)
    assert fast.sleeps == [0] * 50  # as fast as possible, yielding after each event


def test_speed_is_candles_per_minute_of_wall_time(synth_file: Path) -> None:
    clock = FakeClock()
    sent_at: list[float] = []

    async def stamp(event: CandlesClosed) -> None:
        sent_at.append(clock.now)

    run_events(make_feed(synth_file, speed=600, clock=clock), 11, stamp)
    assert sent_at == pytest.approx([1000 + k / 10 for k in range(11)])  # 10 a second


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("gap", "gap(s) in the dates; the first: 1 candle(s) missing before row 10"),
        ("duplicate", "duplicate date"),
        ("unsorted", "not sorted"),
        ("missing_column", "missing column(s) volume"),
        ("bad_json", "not valid JSON"),
        ("bad_json_row", "row 1 is not [ts_ms, open, high, low, close, volume]"),
        ("five_minute", "5 minutes apart, expected 1m"),
        ("nan", "NaN"),
        ("negative_price", "price not above zero"),
        ("high_below_low", "high below low"),
        ("empty", "no candles"),
        ("csv", "unknown candle file type"),
        ("absent", "no such candle file"),
    ],
)
def test_bad_data_file_error_names_the_file_and_the_problem(
    tmp_path: Path, case: str, fragment: str
) -> None:
    good = frame_of(synthetic_rows(SYNTH_T0, 30))
    path = tmp_path / f"{case}-1m-futures.feather"
    if case == "gap":
        write_feather(path, pl.concat([good.head(10), good.slice(11)]))
    elif case == "duplicate":
        write_feather(path, pl.concat([good.head(10), good.slice(9)]))
    elif case == "unsorted":
        write_feather(path, pl.concat([good.head(10), good.slice(11, 1), good.slice(10, 1)]))
    elif case == "missing_column":
        write_feather(path, good.drop("volume"))
    elif case == "bad_json":
        path = path.with_suffix(".json")
        path.write_text("[[1735745580000, 1, 2, 0.5, 1.5, 3]", encoding="utf-8")
    elif case == "bad_json_row":
        path = path.with_suffix(".json")
        path.write_text(json.dumps([[1735745580000, 1, 2, 0.5, 1.5, 3], [1, 2]]), "utf-8")
    elif case == "five_minute":
        write_feather(path, good.gather_every(5))
    elif case == "nan":
        write_feather(
            path,
            good.with_columns(
                close=pl.when(pl.int_range(30) == 3).then(float("nan")).otherwise(pl.col("close"))
            ),
        )
    elif case == "negative_price":
        write_feather(path, good.with_columns(low=-pl.col("low")))
    elif case == "high_below_low":
        write_feather(path, good.with_columns(high=pl.col("low"), low=pl.col("high")))
    elif case == "empty":
        write_feather(path, good.head(0))
    elif case == "csv":
        path = path.with_suffix(".csv")
        good.write_csv(path)
    with pytest.raises(DataFileError) as caught:
        make_feed(path)
    assert isinstance(caught.value, ConfigError)
    message = str(caught.value)
    assert str(path) in message
    assert fragment in message


def test_consumer_that_raises_does_not_stop_the_feed(synth_file: Path) -> None:
    failures: list[tuple[CandleConsumer, BaseException]] = []
    calls = 0

    async def flaky(event: CandlesClosed) -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise RuntimeError(f"strategy bug at {event.closed_at}")

    store = MemoryCursorStore()
    feed = ReplayFeed(
        "SYN/USDT:USDT",
        synth_file,
        HTF,
        0,
        store,
        "replay:SYN",
        on_consumer_error=lambda consumer, error: failures.append((consumer, error)),
    )
    events = run_events(feed, 10, flaky)  # flaky comes first; the recorder still gets all
    assert calls == 10
    assert feed.consumer_errors == 5
    assert [c for c, _ in failures] == [flaky] * 5
    assert all(isinstance(e, RuntimeError) for _, e in failures)
    assert store.cursors["replay:SYN"] == events[-1].closed_at

    quiet = make_feed(synth_file)  # no handler: just counted
    run_events(quiet, 4, flaky)
    assert quiet.consumer_errors == 2


def test_consumer_unsubscribed_during_an_event_is_not_called_for_it(synth_file: Path) -> None:
    feed = make_feed(synth_file)
    seen: list[str] = []

    async def second(event: CandlesClosed) -> None:
        seen.append("second")

    async def first(event: CandlesClosed) -> None:
        seen.append("first")
        await asyncio.sleep(0)
        feed.unsubscribe(second)

    feed.subscribe(first)
    feed.subscribe(second)
    run_events(feed, 3)
    assert seen == ["first"] * 3
    with pytest.raises(ValueError, match="already subscribed"):
        feed.subscribe(first)


def test_json_file_replays_like_the_feather_file(tmp_path: Path, synth_file: Path) -> None:
    rows = synthetic_rows(SYNTH_T0, SYNTH_N)
    as_json = tmp_path / "SYN_USDT_USDT-1m-futures.json"
    as_json.write_text(
        json.dumps([[int(r[0].timestamp() * 1000), *r[1:]] for r in rows]),  # type: ignore[attr-defined]
        encoding="utf-8",
    )
    start = LAP_END - 30 * MINUTE
    from_json = make_feed(as_json, start=start)
    from_feather = make_feed(synth_file, start=start)
    assert run_events(from_json, 100) == run_events(from_feather, 100)
    assert from_json.history("1h", 20) == from_feather.history("1h", 20)


def test_default_start_is_three_days_in_and_start_outside_the_first_lap_is_refused(
    synth_file: Path,
) -> None:
    feed: MarketFeed = make_feed(synth_file)
    assert isinstance(feed, ReplayFeed)
    assert feed.cursor == SYNTH_T0 + timedelta(days=3)
    assert feed.timeframes == ("1m", "5m", "15m", "1h")
    assert feed.last_event_monotonic is None
    for outside in (SYNTH_T0 - MINUTE, LAP_END):
        with pytest.raises(DataFileError, match=r"outside the data.*2025-01-01T15:33.*23:49"):
            make_feed(synth_file, start=outside)
    with pytest.raises(ValueError, match="timezone-aware"):
        make_feed(synth_file, start=datetime(2025, 1, 2))
    store = MemoryCursorStore()
    store.cursors["replay:SYN"] = SYNTH_T0 - timedelta(days=1)
    with pytest.raises(DataFileError, match="before the data's first candle"):
        make_feed(synth_file, store=store)


@pytest.mark.parametrize(
    ("timeframes", "named"),
    [
        (["1m", "7m"], "'7m'"),
        (["1m", "2d"], "'2d'"),
        (["5m"], "'1m'"),
        (["1m", "1x"], "'1x'"),
        (["1m", "60m", "1h"], "'60m'"),
    ],
)
def test_timeframes_the_replay_cannot_build_are_refused_by_name(
    synth_file: Path, timeframes: list[str], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        make_feed(synth_file, timeframes=timeframes)


def virtual_reference(path: Path, count: int, timeframes: list[str]) -> dict[str, list[Candle]]:
    """The replay's candles over its first `count` virtual minutes, built the slow way: the
    ping-pong 1m sequence as a polars frame, `aggregate`d per timeframe (complete only)."""
    source = load_candles(path).frame
    n = source.height
    i = pl.int_range(0, count, dtype=pl.Int64, eager=True)
    backwards = (i // n) % 2 == 1
    row = pl.select(pl.when(backwards).then(n - 1 - i % n).otherwise(i % n)).to_series()
    rows = source.select(pl.all().gather(row))
    back = pl.Series(backwards)
    virtual = rows.with_columns(
        minute=source["minute"][0] + i,
        open=pl.when(back).then(pl.col("close")).otherwise(pl.col("open")),
        close=pl.when(back).then(pl.col("open")).otherwise(pl.col("close")),
    )
    symbol = "SYN/USDT:USDT"
    out = {"1m": frame_to_candles(virtual, symbol, "1m")}
    for timeframe in timeframes[1:]:
        minutes = int(timeframe_delta(timeframe).total_seconds()) // 60
        out[timeframe] = frame_to_candles(aggregate(virtual, 1, minutes), symbol, timeframe)
    return out


def test_events_built_from_the_shared_columns_are_the_polars_aggregation_across_laps(
    synth_file: Path,
) -> None:
    """Each event's candles are made when it goes out, from the file's integer columns; they
    must be the candles the polars aggregation builds, Decimal for Decimal (same digits too),
    through the data's partial first bucket, lap boundaries both ways and UTC midnights."""
    timeframes = [*HTF, "30m", "1d"]
    count = 2 * SYNTH_N + 1500
    events = run_events(make_feed(synth_file, timeframes=timeframes, start=SYNTH_T0), count)
    expected = virtual_reference(synth_file, count, timeframes)
    for timeframe in timeframes:
        got = by_timeframe(events, timeframe)
        want = [
            c
            for c in expected[timeframe]
            if c.timestamp + timeframe_delta(timeframe) <= SYNTH_T0 + count * MINUTE
        ]
        assert len(got) >= 2, timeframe
        assert got == want, timeframe
        assert [tuple(map(str, (c.open, c.high, c.low, c.close, c.volume))) for c in got] == [
            tuple(map(str, (c.open, c.high, c.low, c.close, c.volume))) for c in want
        ], timeframe


def test_feeds_on_one_file_hold_no_candles_of_their_own(synth_file: Path) -> None:
    """A hundred bots on one file must not cost a hundred copies of it (or of a day of it):
    ten more feeds, each past a day of events, allocate well under one day of candles."""
    import tracemalloc

    def feeds_after_a_day(count: int) -> list[ReplayFeed]:
        feeds = [make_feed(synth_file, start=SYNTH_T0) for _ in range(count)]
        for feed in feeds:
            run_events(feed, 1500)
        return feeds

    feeds_after_a_day(1)  # the file loaded and its columns made once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = feeds_after_a_day(10)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == 10
    print(f"10 feeds, a day of events each: {grown / 1e6:.2f} MB kept")
    assert grown < 1_000_000  # a day of 1m candles as objects alone is about 1.5 MB per feed
