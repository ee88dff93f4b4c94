"""Closed candles from an exchange: by websocket where ccxt offers it, else REST polling.

One delivery path serves both transports, so they cannot disagree: candles go out closed,
in order, each once, none skipped, and the cursor store remembers the last one.

Closedness (both transports): a 1m candle is closed once a newer candle has been seen
(from either transport), or once its close time plus `close_grace_ms` has passed by the
exchange's clock (`exchange_time_ms`). The grace absorbs clock skew and the exchange's
own latency, so a candle judged closed by time carries its final values. The websocket's
newest candle is the forming one: ccxt returns it updated in place (Binance's ``"x"``
flag does not survive ccxt's parsing), so it waits for one of the two rules.

REST polling asks for the 1m candles since the last one delivered, so a poll after
minutes of silence delivers each missed candle once, in order.

Websocket (an optional `watch_ohlcv` callable): every (re)connection starts with a REST
catch-up from the last delivered candle, triggered by the connection's first update, of
which only the newest candle is trusted (older ones may be ccxt's cache from before the
drop). After that, websocket candles are delivered as they close; one that does not follow
the last delivered candle first sends the REST poll to fill the gap. A websocket that is
quiet for `poll_interval_s`, or past its forming candle's close, is backed by a REST poll.
A connection that fails before its first update (ccxt has no stream, refused, errors)
falls back to REST polling and is retried after a backoff that doubles up to
`ws_retry_max_s`; a connection that worked and then dropped reconnects at once.

Higher timeframes are built here from the 1m candles and delivered with the 1m candle
that closes them, as the replay does.
"""

from __future__ import annotations

import asyncio
import contextlib
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
# (symbol, timeframe) -> the candles the stream updated since the previous call
WatchOhlcv = Callable[[str, str], Awaitable[list[list[float]]]]
MINUTE_MS = 60_000
PAGE = 500
CLOSE_GRACE_MS = 2_000


def _wall_ms() -> int:
    return int(time.time() * 1000)


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
        *,
        watch_ohlcv: WatchOhlcv | None = None,
        exchange_time_ms: Callable[[], int] = _wall_ms,
        close_grace_ms: int = CLOSE_GRACE_MS,
        ws_retry_first_s: float = 5.0,
        ws_retry_max_s: float = 300.0,
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
        self._watch = watch_ohlcv
        self._exchange_ms = exchange_time_ms
        self._grace_ms = close_grace_ms
        self._ws_retry_first_s = ws_retry_first_s
        self._ws_retry_max_s = ws_retry_max_s
        self._ws_failures = 0  # consecutive connections that failed before their first update
        self._ws_retry_at = 0.0  # monotonic time of the next websocket attempt
        self._ws_rows: dict[int, list[float]] = {}  # undelivered websocket candles by start ms
        self._newest_ms: int | None = None  # the newest 1m candle seen, from either transport
        self._streaming = False
        self.log = structlog.get_logger().bind(feed=feed_key)

    @property
    def transport(self) -> str:
        """ "websocket" while candles stream, "rest" while polling."""
        return "websocket" if self._streaming else "rest"

    @property
    def last_event_monotonic(self) -> float | None:
        return self._last_event

    @property
    def expected_interval_s(self) -> float:
        return 60.0

    def now(self) -> datetime:
        """The exchange's clock: a candle delivered in a catch-up after downtime is old by it."""
        return datetime.fromtimestamp(self._exchange_ms() / 1000, UTC)

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
            rows = sorted(rows, key=lambda r: int(r[0]))
            span_ms = timeframe_seconds(tf) * 1000
            now = self._exchange_ms()
            closed = [  # the newest one may still be forming
                _candle(self.symbol, tf, r)
                for i, r in enumerate(rows)
                if i < len(rows) - 1 or int(r[0]) + span_ms + self._grace_ms <= now
            ]
            self._history[tf] = closed
        base = self._history["1m"]
        if self._last_ms is None and base:
            self._last_ms = int(base[-1].timestamp.timestamp() * 1000)

    async def run(self) -> None:
        while True:
            if self._watch is not None and self._monotonic() >= self._ws_retry_at:
                await self._stream(self._watch)
                continue
            await self._poll_logged()
            await self._sleep(self._poll_s)

    def _is_closed(self, ts_ms: int) -> bool:
        """The closedness rule of the module docstring, for a 1m candle starting at `ts_ms`."""
        if self._newest_ms is not None and ts_ms < self._newest_ms:
            return True
        return ts_ms + MINUTE_MS + self._grace_ms <= self._exchange_ms()

    def _seen(self, ts_ms: int) -> None:
        if self._newest_ms is None or ts_ms > self._newest_ms:
            self._newest_ms = ts_ms

    # -- REST ------------------------------------------------------------------------------

    async def _poll_logged(self) -> bool:
        try:
            await self._poll()
        except ExchangeError as e:  # the gateway already retried; try again next poll
            self.log.warning("feed_poll_failed", error=str(e))
            return False
        return True

    async def _poll(self) -> None:
        while True:
            since = None if self._last_ms is None else self._last_ms + MINUTE_MS
            rows = await self._fetch(self.symbol, "1m", since, PAGE)
            rows = sorted(
                (r for r in rows if self._last_ms is None or int(r[0]) > self._last_ms),
                key=lambda r: int(r[0]),
            )
            if rows:
                self._seen(int(rows[-1][0]))
            closed = [r for r in rows if self._is_closed(int(r[0]))]  # a prefix: rule is monotone
            for row in closed:
                await self._deliver(_candle(self.symbol, "1m", row))
            if len(rows) < PAGE or not closed:
                return  # caught up; the forming candle is delivered once it closes

    # -- websocket -------------------------------------------------------------------------

    async def _stream(self, watch: WatchOhlcv) -> None:
        """Deliver from the websocket until it fails, then schedule the next attempt."""
        self._ws_rows.clear()
        updates = 0
        pending = asyncio.ensure_future(watch(self.symbol, "1m"))
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=self._quiet_timeout())
                if not done:  # quiet websocket: REST keeps the candles coming
                    if await self._poll_logged():
                        await self._deliver_ws()
                    continue
                rows = pending.result()  # raises when the connection failed
                pending = asyncio.ensure_future(watch(self.symbol, "1m"))
                updates += 1
                if updates == 1:
                    self._streaming = True
                    self._ws_failures = 0
                    self.log.info("feed_websocket_connected")
                    # Only the newest candle is surely of this connection; REST fills the rest.
                    rows = sorted(rows, key=lambda r: int(r[0]))[-1:]
                    self._take_ws(rows)
                    await self._poll_logged()  # the gap since the last delivered candle
                else:
                    self._take_ws(rows)
                await self._deliver_ws()
        except ExchangeError as e:
            if updates == 0:
                self._ws_failures += 1
                delay = min(
                    self._ws_retry_max_s, self._ws_retry_first_s * 2 ** (self._ws_failures - 1)
                )
            else:
                delay = 0.0  # it worked: reconnect at once, the next first update catches up
            self._ws_retry_at = self._monotonic() + delay
            self.log.warning(
                "feed_websocket_failed",
                error=str(e)[:200],
                updates=updates,
                retry_in_s=round(delay, 2),
                fallback="rest" if delay else "reconnect",
            )
        finally:
            self._streaming = False
            self._ws_rows.clear()
            if not pending.done():
                pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ExchangeError):
                await pending

    def _take_ws(self, rows: Sequence[Sequence[float]]) -> None:
        for row in rows:
            ts = int(row[0])
            if self._last_ms is None or ts > self._last_ms:
                self._ws_rows[ts] = list(row)
            self._seen(ts)

    def _quiet_timeout(self) -> float:
        """Seconds to wait for the websocket before a REST poll backs it up."""
        forming = max(self._ws_rows, default=None)
        if forming is None:
            return self._poll_s
        due_s = (forming + MINUTE_MS + self._grace_ms - self._exchange_ms()) / 1000
        return self._poll_s if due_s <= 0 else min(self._poll_s, due_s)

    async def _deliver_ws(self) -> None:
        for ts in sorted(self._ws_rows):
            if self._last_ms is not None and ts <= self._last_ms:
                continue  # REST delivered it already
            if not self._is_closed(ts):
                break
            if self._last_ms is not None and ts > self._last_ms + MINUTE_MS:
                if not await self._poll_logged():
                    break  # REST is down: hold the candle rather than skip one
                if self._last_ms is not None and ts <= self._last_ms:
                    continue
                if self._last_ms is not None and ts > self._last_ms + MINUTE_MS:
                    self.log.warning(
                        "feed_gap_unfilled", after_ms=self._last_ms, next_ms=ts
                    )  # the exchange has no candles in between
            await self._deliver(_candle(self.symbol, "1m", self._ws_rows[ts]))
        if self._last_ms is not None:
            for ts in [t for t in self._ws_rows if t <= self._last_ms]:
                del self._ws_rows[ts]

    async def _deliver(self, candle: Candle) -> None:
        """The one path out, whichever transport brought the candle."""
        ts_ms = int(candle.timestamp.timestamp() * 1000)
        if self._last_ms is not None and ts_ms <= self._last_ms:
            return  # never one twice
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
            # A restart delivers again what closed after the saved cursor, which the warm-up
            # may already hold: the history stays strictly newer-by-candle, or a bot that
            # starts later (a fleet's takeover) gets a window that refuses it.
            history = self._history[c.timeframe]
            if not history or c.timestamp > history[-1].timestamp:
                history.append(c)
                del history[:-2000]
        event = CandlesClosed(self.symbol, closed_at, tuple(batch))
        for consumer in list(self._consumers):
            try:
                await consumer(event)
            except Exception as e:  # one broken consumer must not starve the others
                self.log.error("feed_consumer_failed", error=f"{type(e).__name__}: {e}")
        self._last_ms = int(candle.timestamp.timestamp() * 1000)
        self._cursor_store.save_feed_cursor(self._feed_key, closed_at)
        self._last_event = self._monotonic()
