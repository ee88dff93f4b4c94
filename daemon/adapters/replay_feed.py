"""Replay market feed: recorded 1m candles played back forever, paced against the clock.

Why endless: the demo daemon should run for months on a few MB of real data. The data
(n candles opening at T0) is replayed "ping-pong": lap 0 forwards, lap 1 the same candles
backwards in time (candle j of lap 1 is original candle n-1-j with open and close swapped;
high, low and volume unchanged), lap 2 forwards again, and so on. Time never goes back:
virtual minute i opens at T0 + i minutes, whatever the lap. So prices stay in the real range,
a lap's last close is the next lap's first open, and every move looks like a real one (a
reversed candle is a real candle run backwards).

Higher timeframes are built from the virtual 1m sequence with polars, in buckets aligned to
the UTC epoch (5m at :00, :05, ...; 1h on the hour). A higher-timeframe candle goes out only
complete, in the same event as the 1m candle that closes it; the partial bucket at the data's
start is never emitted. A timeframe must divide a day, so no bucket straddles two UTC days.

Memory: every feed on a file reads the one integer copy of its values the file keeps
(`CandleFile.columns`, about 40 bytes a candle) and builds each event's candles when it emits
them, so a feed holds no candles of its own: a hundred bots on one file cost one copy.

Cursor: the `closed_at` of the last event every consumer has had, saved after each event.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from daemon.adapters.candle_files import (
    VALUE_COLUMNS,
    DataFileError,
    aggregate,
    frame_to_candles,
    load_candles,
    minute_to_datetime,
    timeframe_minutes,
)
from daemon.domain.models import Candle
from daemon.ports import CandleConsumer, CandlesClosed, FeedCursorStore

__all__ = ["DataFileError", "ReplayFeed", "check_timeframes", "start_index"]

DAY_MINUTES = 1440
DEFAULT_WARMUP = timedelta(days=3)  # without cursor or start: begin here, so history exists
MAX_LAG_INTERVALS = 5  # further behind than this, re-anchor the schedule instead of bursting
_MINUTE = timedelta(minutes=1)

ConsumerErrorHandler = Callable[[CandleConsumer, BaseException], None]


class ReplayFeed:
    """A `MarketFeed` replaying a 1m candle file endlessly (see the module docstring).

    Start: after the saved cursor if there is one (a restart neither repeats nor skips a
    candle); else the first candle opens at `start` rounded up to the minute, which must be
    an open time of the data's first lap; else at T0 + 3 days. `speed` is candles per minute
    of wall time (1.0 = real time); 0 replays as fast as the consumers allow.
    """

    base_timeframe = "1m"

    def __init__(
        self,
        symbol: str,
        data_file: Path,
        timeframes: Sequence[str],
        speed: float,
        cursor_store: FeedCursorStore,
        feed_key: str,
        start: datetime | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        on_consumer_error: ConsumerErrorHandler | None = None,
    ) -> None:
        if not (math.isfinite(speed) and speed >= 0):
            raise ValueError(f"replay speed must be a finite number >= 0, got {speed!r}")
        self.symbol = symbol
        self.timeframes = check_timeframes(timeframes)
        self.consumer_errors = 0
        self._minutes = {tf: timeframe_minutes(tf) for tf in self.timeframes}
        self._speed = speed
        self._store = cursor_store
        self._feed_key = feed_key
        self._sleep = sleep
        self._monotonic = monotonic
        self._on_consumer_error = on_consumer_error
        self._consumers: list[CandleConsumer] = []
        self._last_event_monotonic: float | None = None
        self._running = False
        self._now: datetime | None = None

        data = load_candles(data_file)
        self._path = data_file
        self._n = data.height
        self._t0 = data.first_minute  # epoch minute of the first candle's open
        self._source = data.frame.select(VALUE_COLUMNS)
        self._columns = data.columns()  # shared with every reader of the file
        self._next = self._start_index(start)  # virtual index of the next candle to emit

    @property
    def last_event_monotonic(self) -> float | None:
        """`monotonic()` after the last event was handled; None before the first."""
        return self._last_event_monotonic

    async def prepare(self, needs: Mapping[str, int]) -> None:
        """Nothing to fetch: the whole history is in the file."""

    @property
    def expected_interval_s(self) -> float:
        """Wall seconds between 1m candles at this speed (0 when flat out)."""
        return 60.0 / self._speed if self._speed > 0 else 0.0

    def now(self) -> datetime:
        """Simulated time: the close of the candle being (or last) handed out. A replay
        pauses while the daemon is down, so its candles are never stale."""
        return self._now or self.cursor

    @property
    def cursor(self) -> datetime:
        """Every candle closing at or before this instant is history; the next closes after it."""
        return minute_to_datetime(self._t0 + self._next)

    def subscribe(self, consumer: CandleConsumer) -> None:
        """Add a consumer; it gets events from the next one on, after earlier subscribers."""
        if consumer in self._consumers:
            raise ValueError(f"consumer {consumer!r} is already subscribed")
        self._consumers.append(consumer)

    def unsubscribe(self, consumer: CandleConsumer) -> None:
        """Remove a consumer (no-op if absent); takes effect even within the current event."""
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    def history(self, timeframe: str, limit: int) -> list[Candle]:
        """The last `limit` candles of `timeframe` closed at the cursor, oldest first.

        Fewer when the data's start is nearer; never a candle still open at the cursor.
        """
        if timeframe not in self._minutes:
            raise ValueError(f"timeframe {timeframe!r} is not replayed; have {self.timeframes}")
        if limit < 0:
            raise ValueError(f"history limit must be >= 0, got {limit}")
        minutes = self._minutes[timeframe]
        end = self._next
        # Start on a bucket boundary exactly `limit` buckets before the last closed one.
        first = max(0, (self._t0 + end - limit * minutes) // minutes * minutes - self._t0)
        if limit == 0 or first >= end:
            return []
        frame = self._virtual(first, end)
        if minutes > 1:
            frame = aggregate(frame, 1, minutes)
        return frame_to_candles(frame.tail(limit), self.symbol, timeframe)

    async def run(self) -> None:
        """Emit events until cancelled; each consumer is awaited before the next event."""
        if self._running:
            raise RuntimeError(f"replay feed {self._feed_key!r} is already running")
        self._running = True
        try:
            interval = self.expected_interval_s
            due = self._monotonic()
            while True:
                if interval:
                    now = self._monotonic()
                    if now < due:
                        await self._sleep(due - now)
                    else:
                        if now - due > MAX_LAG_INTERVALS * interval:
                            due = now  # a long stall: carry on from here, do not burst
                        await self._sleep(0)  # behind: no wait, but let other tasks run
                    due += interval
                await self._emit_next()
                if not interval:
                    await self._sleep(0)
        finally:
            self._running = False

    async def _emit_next(self) -> None:
        event = self._event(self._next)
        self._now = event.closed_at
        for consumer in tuple(self._consumers):
            if consumer not in self._consumers:
                continue  # unsubscribed while an earlier consumer had this event
            try:
                await consumer(event)
            except Exception as e:  # CancelledError is not an Exception: it propagates
                self.consumer_errors += 1
                if self._on_consumer_error is not None:
                    self._on_consumer_error(consumer, e)
        self._store.save_feed_cursor(self._feed_key, event.closed_at)
        self._next += 1
        self._last_event_monotonic = self._monotonic()

    def _event(self, index: int) -> CandlesClosed:
        """The event of virtual candle `index`: its 1m candle, then every longer candle it
        closes (complete buckets only), shortest first; built from the shared columns."""
        opened = self._t0 + index
        closes = opened + 1
        candles = [self._one_minute(opened, index)]
        for timeframe in self.timeframes[1:]:
            minutes = self._minutes[timeframe]
            if closes % minutes == 0 and index + 1 >= minutes:
                rows = np.arange(index + 1 - minutes, index + 1)
                candles.append(self._candle(timeframe, closes - minutes, rows))
        return CandlesClosed(self.symbol, minute_to_datetime(closes), tuple(candles))

    def _one_minute(self, opened: int, index: int) -> Candle:
        """The 1m candle of virtual index `index`: a source row, run backwards on odd laps."""
        n, data = self._n, self._columns
        lap, j = divmod(index, n)
        price, volume = -data.price_scale, -data.volume_scale
        if lap % 2:
            row = n - 1 - j
            open_, close = data.close[row], data.open[row]
        else:
            row = j
            open_, close = data.open[row], data.close[row]
        return Candle(
            self.symbol,
            "1m",
            minute_to_datetime(opened),
            Decimal(int(open_)).scaleb(price),
            Decimal(int(data.high[row])).scaleb(price),
            Decimal(int(data.low[row])).scaleb(price),
            Decimal(int(close)).scaleb(price),
            Decimal(int(data.volume[row])).scaleb(volume),
        )

    def _candle(self, timeframe: str, opened: int, virtual: npt.NDArray[np.int64]) -> Candle:
        """One candle from the virtual 1m candles `virtual` (consecutive), as `aggregate`
        builds it: first open, highest high, lowest low, last close, summed volume."""
        n, data = self._n, self._columns
        lap, j = np.divmod(virtual, n)
        backwards = (lap % 2).astype(bool)
        source = np.where(backwards, n - 1 - j, j)
        first, last = int(source[0]), int(source[-1])
        open_ = data.close[first] if backwards[0] else data.open[first]
        close = data.open[last] if backwards[-1] else data.close[last]
        price, volume = -data.price_scale, -data.volume_scale
        return Candle(
            self.symbol,
            timeframe,
            minute_to_datetime(opened),
            Decimal(int(open_)).scaleb(price),
            Decimal(int(data.high[source].max())).scaleb(price),
            Decimal(int(data.low[source].min())).scaleb(price),
            Decimal(int(close)).scaleb(price),
            Decimal(int(data.volume[source].sum())).scaleb(volume),
        )

    def _virtual(self, first: int, end: int) -> pl.DataFrame:
        """Virtual 1m candles `first` <= i < `end`, laid out like `CandleFile.frame`."""
        n = self._n
        plan = pl.DataFrame({"i": pl.int_range(first, end, dtype=pl.Int64, eager=True)})
        plan = plan.with_columns(
            backwards=(pl.col("i") // n) % 2 == 1, j=pl.col("i") % n
        ).with_columns(
            source=pl.when(pl.col("backwards")).then(n - 1 - pl.col("j")).otherwise(pl.col("j"))
        )
        rows = self._source.select(pl.all().gather(plan["source"]))
        backwards = pl.col("backwards")
        return pl.concat([plan.select("i", "backwards"), rows], how="horizontal").select(
            minute=pl.col("i") + self._t0,
            open=pl.when(backwards).then(pl.col("close")).otherwise(pl.col("open")),
            high=pl.col("high"),
            low=pl.col("low"),
            close=pl.when(backwards).then(pl.col("open")).otherwise(pl.col("close")),
            volume=pl.col("volume"),
        )

    def _start_index(self, start: datetime | None) -> int:
        """Virtual index of the first candle to emit: from the cursor, `start` or the default."""
        saved = self._store.load_feed_cursor(self._feed_key)
        if saved is not None:
            minute = _whole_minutes(saved, "saved feed cursor")
            if _whole_minutes(saved, "saved feed cursor", round_up=True) != minute:
                raise DataFileError(
                    f"{self._path}: saved cursor of feed {self._feed_key!r} ({saved.isoformat()}) "
                    "is not on a minute: it was not written by this replay"
                )
            if minute < self._t0:
                raise DataFileError(
                    f"{self._path}: saved cursor of feed {self._feed_key!r} ({saved.isoformat()}) "
                    f"is before the data's first candle ({self._first_lap()}): was the file "
                    "replaced? Clear the cursor to start afresh"
                )
            return minute - self._t0
        if start is not None:
            return start_index(self._path, self._t0, self._n, start)
        return DEFAULT_WARMUP // _MINUTE

    def _first_lap(self) -> str:
        return _lap(self._t0, self._n)


def start_index(path: Path, first_minute: int, count: int, start: datetime) -> int:
    """Virtual index of the candle opening at `start` (rounded up to the minute), which must
    lie in the data's first lap; DataFileError otherwise. The daemon's start-up checks
    (and `tradectl config check`) ask the same before anything runs."""
    index = _whole_minutes(start, "replay start", round_up=True) - first_minute
    if not 0 <= index < count:
        raise DataFileError(
            f"{path}: replay start {start.isoformat()} is outside the data: the "
            f"first candle must open within {_lap(first_minute, count)}"
        )
    return index


def _lap(first_minute: int, count: int) -> str:
    first = minute_to_datetime(first_minute).isoformat()
    last = minute_to_datetime(first_minute + count - 1).isoformat()
    return f"{first} .. {last}"


def _whole_minutes(when: datetime, what: str, round_up: bool = False) -> int:
    """Epoch minutes of an aware datetime, truncated (or rounded up)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got {when.isoformat()}")
    micros = (when - minute_to_datetime(0)) // timedelta(microseconds=1)
    per_minute = 60_000_000
    return -(-micros // per_minute) if round_up else micros // per_minute


def check_timeframes(timeframes: Sequence[str]) -> tuple[str, ...]:
    """The timeframes shortest first; ValueError naming one the replay cannot build."""
    if isinstance(timeframes, str):
        raise ValueError(f"timeframes must be a list of names, got the string {timeframes!r}")
    if "1m" not in timeframes:
        raise ValueError(f"replay timeframes must include '1m' (the base), got {list(timeframes)}")
    seen: dict[int, str] = {}
    for timeframe in timeframes:
        minutes = timeframe_minutes(timeframe)
        if DAY_MINUTES % minutes:
            raise ValueError(
                f"timeframe {timeframe!r} does not divide a day: replay buckets are aligned "
                "to UTC midnight"
            )
        if minutes in seen:
            raise ValueError(f"timeframes {seen[minutes]!r} and {timeframe!r} are the same length")
        seen[minutes] = timeframe
    return tuple(seen[m] for m in sorted(seen))
