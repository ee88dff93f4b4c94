"""Closed candles from an exchange by REST polling, with the gap filled after an outage.

Every poll asks for the 1m candles since the last one delivered, so a reconnect
after minutes of silence delivers each missed candle once, in order. The newest
candle an exchange returns is still forming and is never delivered: it is emitted
once a newer one exists. Higher timeframes are built here from the 1m candles and
delivered with the 1m candle that closes them, as the replay does.
(ccxt.pro websockets would cut the latency; polling is the fallback that always works.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import structlog

from daemon.domain.errors import ExchangeError
from daemon.domain.models import Candle
from daemon.domain.timeframes import timeframe_seconds
from daemon.ports import CandleConsumer, CandlesClosed, FeedCursorStore

# (symbol, timeframe, since_ms, limit) -> [[ts_ms, open, high, low, close, volume], ...]
FetchOhlcv = Callable[[str, str, int | None, int], Awaitable[list[list[float]]]]
MINUTE_MS = 60_000
PAGE = 500


def _candle(symbol: str, timeframe: str, row: Sequence[float]) -> Candle:
    ts, o, h, low, c, v = row[:6]
    return Candle(
        symbol,
        timeframe,
        datetime.fromtimestamp(int(ts) / 1000, UTC),
        Decimal(str(o)),
        Decimal(str(h)),
        Decimal(str(low)),
        Decimal(str(c)),
        Decimal(str(v)),
    )


class ExchangeFeed:
    base_timeframe = "1m"

    def __init__(
        self,
        symbol: str,
        fetch_ohlcv: FetchOhlcv,
        timeframes: Sequence[str],
        cursor_store: FeedCursorStore,
        feed_key: str,
        poll_interval_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.symbol = symbol
        self.timeframes = tuple(sorted(set(timeframes) | {"1m"}, key=timeframe_seconds))
        self._fetch = fetch_ohlcv
        self._cursor_store = cursor_store
        self._feed_key = feed_key
        self._poll_s = poll_interval_s
        self._sleep = sleep
        self._monotonic = monotonic
        self._consumers: list[CandleConsumer] = []
        self._history: dict[str, list[Candle]] = {tf: [] for tf in self.timeframes}
        self._pending: list[Candle] = []  # 1m candles of the higher-timeframe buckets in progress
        saved = cursor_store.load_feed_cursor(feed_key)
        self._last_ms: int | None = (
            None if saved is None else int(saved.timestamp() * 1000) - MINUTE_MS
        )
        self._last_event: float | None = None
        self.log = structlog.get_logger().bind(feed=feed_key)

    @property
    def last_event_monotonic(self) -> float | None:
        return self._last_event

    @property
    def expected_interval_s(self) -> float:
        return 60.0

    def subscribe(self, consumer: CandleConsumer) -> None:
        self._consumers.append(consumer)

    def unsubscribe(self, consumer: CandleConsumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    def history(self, timeframe: str, limit: int) -> list[Candle]:
        return self._history[timeframe][-limit:]

    async def prepare(self, needs: Mapping[str, int]) -> None:
        """Fetch the closed candles each timeframe needs for warm-up, before bots start."""
        for tf in self.timeframes:
            limit = max(needs.get(tf, 0), 2) + 1
            rows = await self._fetch(self.symbol, tf, None, min(limit, 1500))
            closed = [_candle(self.symbol, tf, r) for r in rows[:-1]]  # the last one is forming
            self._history[tf] = closed
        base = self._history["1m"]
        if self._last_ms is None and base:
            self._last_ms = int(base[-1].timestamp.timestamp() * 1000)

    async def run(self) -> None:
        while True:
            try:
                await self._poll()
            except ExchangeError as e:  # the gateway already retried; try again next poll
                self.log.warning("feed_poll_failed", error=str(e))
            await self._sleep(self._poll_s)

    async def _poll(self) -> None:
        since = None if self._last_ms is None else self._last_ms + MINUTE_MS
        while True:
            rows = await self._fetch(self.symbol, "1m", since, PAGE)
            rows = [r for r in rows if self._last_ms is None or int(r[0]) > self._last_ms]
            closed, forming = rows[:-1], rows[-1:]
            for row in closed:
                await self._deliver(_candle(self.symbol, "1m", row))
            if len(rows) < PAGE or not closed:
                return  # caught up; `forming` is delivered once a newer candle exists
            since = int(forming[0][0])

    async def _deliver(self, candle: Candle) -> None:
        closed_at = candle.timestamp + timedelta(minutes=1)
        batch = [candle]
        self._pending.append(candle)
        for tf in self.timeframes[1:]:
            seconds = timeframe_seconds(tf)
            if int(closed_at.timestamp()) % seconds == 0:
                start = closed_at - timedelta(seconds=seconds)
                parts = [c for c in self._pending if c.timestamp >= start]
                if parts and parts[0].timestamp == start:  # only complete buckets
                    batch.append(
                        Candle(
                            self.symbol,
                            tf,
                            start,
                            parts[0].open,
                            max(c.high for c in parts),
                            min(c.low for c in parts),
                            parts[-1].close,
                            sum((c.volume for c in parts), Decimal(0)),
                        )
                    )
        longest = timeframe_seconds(self.timeframes[-1])
        cutoff = closed_at - timedelta(seconds=longest)
        self._pending = [c for c in self._pending if c.timestamp >= cutoff]
        for c in batch:
            self._history[c.timeframe].append(c)
            del self._history[c.timeframe][:-2000]
        event = CandlesClosed(self.symbol, closed_at, tuple(batch))
        for consumer in list(self._consumers):
            try:
                await consumer(event)
            except Exception as e:  # one broken consumer must not starve the others
                self.log.error("feed_consumer_failed", error=f"{type(e).__name__}: {e}")
        self._last_ms = int(candle.timestamp.timestamp() * 1000)
        self._cursor_store.save_feed_cursor(self._feed_key, closed_at)
        self._last_event = self._monotonic()
