"""The exchange feed against the loopback Binance: real ccxt (REST and ccxt.pro), real sockets.

The loopback and the feed share one exchange clock (`ExchangeClock`), so which candle is
still forming is decided by the test, not by the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import ccxt.pro as ccxt_pro

from daemon.adapters.ccxt_gateway import CcxtGateway
from daemon.adapters.exchange_feed import ExchangeFeed
from daemon.ports import CandlesClosed
from tests.loopback.binance_usdm import LoopbackBinance, point_ccxt_at
from tests.loopback.binance_ws import LoopbackBinanceWs, point_ccxt_ws_at

ETH, ETH_ID = "ETH/USDT:USDT", "ETHUSDT"
T0 = 1_746_835_200_000  # 2025-05-10 00:00 UTC, a 5m boundary
MIN = 60_000


class ExchangeClock:
    """The exchange's clock: 30 s into the newest pushed candle unless a test moves it."""

    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


class Cursors:
    def __init__(self) -> None:
        self.saved: dict[str, datetime] = {}

    def load_feed_cursor(self, feed_key: str) -> datetime | None:
        return self.saved.get(feed_key)

    def save_feed_cursor(self, feed_key: str, closed_at: datetime) -> None:
        self.saved[feed_key] = closed_at


class Market:
    """The loopback, its clock and the candles pushed so far (close = 2500 + minute index)."""

    def __init__(self, server: LoopbackBinance, clock: ExchangeClock) -> None:
        self.server = server
        self.clock = clock
        self.pushed: list[int] = []

    def push(self, count: int = 1) -> None:
        for _ in range(count):
            ts = self.pushed[-1] + MIN if self.pushed else T0
            i = (ts - T0) // MIN
            self.server.push_candle(ETH_ID, ts, 2500 + i, 2510 + i, 2490 + i, 2501 + i, 10 + i)
            self.pushed.append(ts)
            self.clock.ms = ts + 30_000  # the newest candle is forming

    def klines_requests(self) -> int:
        return sum(path == "/fapi/v1/klines" for _, path, _ in self.server.requests)


class Events:
    def __init__(self) -> None:
        self.events: list[CandlesClosed] = []

    async def __call__(self, event: CandlesClosed) -> None:
        self.events.append(event)

    def starts(self, timeframe: str = "1m") -> list[int]:
        return [
            int(c.timestamp.timestamp() * 1000)
            for e in self.events
            for c in e.candles
            if c.timeframe == timeframe
        ]


async def eventually(condition: Callable[[], bool], within: float = 5.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)


async def polls_pass(market: Market, count: int = 3) -> None:
    """Wait until the feed has asked the exchange `count` more times: proof that it is alive
    and has had its chances to send something again, however slow the machine."""
    seen = market.klines_requests()
    await eventually(lambda: market.klines_requests() >= seen + count, what=f"{count} polls")


Story = Callable[[Market, CcxtGateway], Awaitable[None]]


def run(story: Story, websocket: bool = True) -> None:
    async def main() -> None:
        clock = ExchangeClock()
        server = (
            LoopbackBinanceWs("k", "s", clock=clock)
            if websocket
            else LoopbackBinance("k", "s", clock=clock)
        )
        url = await server.start()
        gateway = CcxtGateway("feed", "binanceusdm", None, api_base_url=url, timeout_s=2)
        try:
            await gateway.start()
            await story(Market(server, clock), gateway)
        finally:
            await gateway.close()
            await server.close()

    asyncio.run(main())


def make_feed(
    market: Market,
    gateway: CcxtGateway,
    *,
    websocket: bool,
    timeframes: tuple[str, ...] = ("1m", "5m"),
    poll_interval_s: float = 0.05,
    ws_retry_first_s: float = 0.2,
) -> tuple[ExchangeFeed, Events]:
    feed = ExchangeFeed(
        ETH,
        gateway.fetch_ohlcv,
        timeframes,
        Cursors(),
        "feed:ETH",
        poll_interval_s=poll_interval_s,
        watch_ohlcv=gateway.watch_ohlcv if websocket else None,
        exchange_time_ms=market.clock,
        ws_retry_first_s=ws_retry_first_s,
    )
    events = Events()
    feed.subscribe(events)
    return feed, events


@contextlib.asynccontextmanager
async def running(feed: ExchangeFeed):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(feed.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def minutes(first: int, last: int) -> list[int]:
    return [T0 + i * MIN for i in range(first, last + 1)]


# ------------------------------------------------------------------------------ REST


def test_rest_delivers_closed_candles_once_in_order_and_builds_5m() -> None:
    async def story(market: Market, gateway: CcxtGateway) -> None:
        market.push(6)  # minutes 0..5; 5 is forming
        feed, events = make_feed(market, gateway, websocket=False)
        async with running(feed):
            await eventually(lambda: events.starts() == minutes(0, 4), what="minutes 0..4")
            market.push()  # minute 6 opens: 5 closes
            await eventually(lambda: events.starts() == minutes(0, 5), what="minute 5")
            await polls_pass(market)  # several more polls: nothing twice
        assert events.starts() == minutes(0, 5)
        assert feed.transport == "rest"
        five = [e for e in events.events if len(e.candles) == 2]
        assert len(five) == 1
        bucket = five[0].candles[1]
        assert (bucket.timeframe, bucket.timestamp) == (
            "5m",
            datetime.fromtimestamp(T0 / 1000, UTC),
        )
        assert five[0].closed_at == datetime.fromtimestamp((T0 + 5 * MIN) / 1000, UTC)
        assert (bucket.open, bucket.high, bucket.low, bucket.close, bucket.volume) == (
            Decimal(2500),
            Decimal(2514),
            Decimal(2490),
            Decimal(2505),
            Decimal(60),
        )

    run(story, websocket=False)


def test_a_forming_candle_closes_by_the_exchange_clock() -> None:
    async def story(market: Market, gateway: CcxtGateway) -> None:
        market.push(3)
        feed, events = make_feed(market, gateway, websocket=False, timeframes=("1m",))
        async with running(feed):
            await eventually(lambda: events.starts() == minutes(0, 1), what="minutes 0..1")
            await polls_pass(market)
            assert events.starts() == minutes(0, 1)  # minute 2 is still forming
            market.clock.ms = T0 + 3 * MIN + 1_000  # past the close, within the grace
            await polls_pass(market)
            assert events.starts() == minutes(0, 1)
            market.clock.ms = T0 + 3 * MIN + 2_000  # past close + grace: final
            await eventually(lambda: events.starts() == minutes(0, 2), what="minute 2 by time")
            market.push()  # minute 3 arrives later: minute 2 is not sent again
            await polls_pass(market)
        assert events.starts() == minutes(0, 2)

    run(story, websocket=False)


def test_prepare_loads_closed_history_and_run_continues_after_it() -> None:
    async def story(market: Market, gateway: CcxtGateway) -> None:
        market.push(10)  # minute 9 is forming
        feed, events = make_feed(market, gateway, websocket=False, timeframes=("1m",))
        await feed.prepare({"1m": 5})
        history = feed.history("1m", 5)
        assert [int(c.timestamp.timestamp() * 1000) for c in history] == minutes(4, 8)
        assert history[-1].close == Decimal(2509)
        async with running(feed):
            market.push()
            await eventually(lambda: events.starts() == minutes(9, 9), what="minute 9")
            await polls_pass(market)
        assert events.starts() == minutes(9, 9)  # nothing of the history again
        assert [int(c.timestamp.timestamp() * 1000) for c in feed.history("1m", 3)] == minutes(7, 9)

    run(story, websocket=False)


# ------------------------------------------------------------------------- websocket


def test_loopback_speaks_the_kline_stream_ccxt_pro_expects() -> None:
    async def main() -> None:
        clock = ExchangeClock()
        server = LoopbackBinanceWs("k", "s", clock=clock)
        url = await server.start()
        ex = ccxt_pro.binanceusdm({})
        point_ccxt_at(ex, url)
        point_ccxt_ws_at(ex, url)
        try:
            await ex.load_markets()
            market = Market(server, clock)
            market.push()
            watching = asyncio.ensure_future(ex.watch_ohlcv(ETH, "1m"))
            await eventually(lambda: server.ws_subscribers(ETH_ID) == 1, what="subscribed")
            assert server.ws_received == [
                {"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 1}
            ]
            market.push()
            rows = await asyncio.wait_for(watching, 5)
            assert rows[-1][:5] == [T0, 2500.0, 2510.0, 2490.0, 2501.0]  # minute 0, closed
            watching = asyncio.ensure_future(ex.watch_ohlcv(ETH, "1m"))
            await asyncio.sleep(0.05)
            market.push()  # minute 1 closes (re-sent with "x": true), minute 2 opens
            rows = await asyncio.wait_for(watching, 5)
            assert [r[0] for r in rows] == [T0 + MIN]
            assert rows[0][4] == 2502.0
        finally:
            await ex.close()
            await server.close()

    asyncio.run(main())


def test_websocket_delivers_closed_candles_once_in_order_and_builds_5m() -> None:
    async def story(market: Market, gateway: CcxtGateway) -> None:
        server = market.server
        assert isinstance(server, LoopbackBinanceWs)
        market.push(3)  # minutes 0..2
        # Polling every 30 s: within this test only the websocket can bring candles.
        feed, events = make_feed(market, gateway, websocket=True, poll_interval_s=30)
        async with running(feed):
            await eventually(lambda: server.ws_subscribers(ETH_ID) == 1, what="subscribed")
            market.push()  # minute 3: the first update; REST catches up to minute 2
            await eventually(lambda: events.starts() == minutes(0, 2), what="catch-up")
            assert feed.transport == "websocket"
            catch_up = market.klines_requests()
            for i in range(4, 10):
                market.push()
                await eventually(lambda i=i: events.starts() == minutes(0, i - 1), what=f"m{i}")
            assert market.klines_requests() == catch_up  # every later candle came by websocket
        assert events.starts() == minutes(0, 8)  # minute 8 came after 0..7: none came twice
        assert events.starts("5m") == [T0]
        closes = [c.close for e in events.events for c in e.candles if c.timeframe == "1m"]
        assert closes == [Decimal(2501 + i) for i in range(9)]

    run(story)


def drop_story(abrupt: bool) -> Story:
    async def story(market: Market, gateway: CcxtGateway) -> None:
        server = market.server
        assert isinstance(server, LoopbackBinanceWs)
        market.push(2)
        feed, events = make_feed(market, gateway, websocket=True, poll_interval_s=30)
        async with running(feed):
            await eventually(lambda: server.ws_subscribers(ETH_ID) == 1, what="subscribed")
            market.push(2)  # minutes 2, 3
            await eventually(lambda: events.starts() == minutes(0, 2), what="streaming")
            assert server.drop_websockets(abrupt=abrupt) == 1
            market.push(3)  # minutes 4, 5, 6: nobody hears them
            await eventually(
                lambda: server.ws_connections_accepted == 2 and server.ws_subscribers(ETH_ID) == 1,
                what="reconnected",
            )
            assert events.starts() == minutes(0, 2)
            market.push()  # minute 7: first update of the new connection; REST fills 3..6
            await eventually(lambda: events.starts() == minutes(0, 6), what="gap filled")
            market.push(2)
            await eventually(lambda: events.starts() == minutes(0, 8), what="streaming again")
            market.push()  # a later candle: everything before it has been delivered by now
            await eventually(lambda: events.starts() == minutes(0, 9), what="minute 9")
        assert events.starts() == minutes(0, 9)  # once each, in order
        assert events.starts("5m") == [T0, T0 + 5 * MIN]

    return story


def test_a_dropped_websocket_reconnects_and_the_gap_is_filled_once_in_order() -> None:
    run(drop_story(abrupt=False))


def test_a_websocket_cut_without_close_frame_reconnects_and_fills_the_gap() -> None:
    run(drop_story(abrupt=True))


def test_a_refused_websocket_falls_back_to_rest_and_is_retried_later() -> None:
    async def story(market: Market, gateway: CcxtGateway) -> None:
        server = market.server
        assert isinstance(server, LoopbackBinanceWs)
        server.refuse_websockets(503)
        market.push(3)
        feed, events = make_feed(market, gateway, websocket=True, timeframes=("1m",))
        async with running(feed):
            await eventually(lambda: events.starts() == minutes(0, 1), what="REST delivers")
            market.push()
            await eventually(lambda: events.starts() == minutes(0, 2), what="REST minute 2")
            assert server.ws_refused >= 1
            assert feed.transport == "rest"
            server.refuse_websockets(None)  # the exchange is back: the backoff retry gets in
            await eventually(
                lambda: server.ws_subscribers(ETH_ID) == 1, within=10, what="websocket retried"
            )
            for _ in range(3):
                market.push()
            await eventually(lambda: events.starts() == minutes(0, 5), what="after the switch")
            await eventually(lambda: feed.transport == "websocket", what="streaming")
            market.push()  # a later candle over the websocket: nothing before it came twice
            await eventually(lambda: events.starts() == minutes(0, 6), what="minute 6")
        assert events.starts() == minutes(0, 6)

    run(story)


def test_an_exchange_without_the_stream_endpoint_is_served_by_rest() -> None:
    async def story(market: Market, gateway: CcxtGateway) -> None:
        market.push(3)  # the plain loopback answers the websocket upgrade with 404
        feed, events = make_feed(market, gateway, websocket=True, timeframes=("1m",))
        async with running(feed):
            await eventually(lambda: events.starts() == minutes(0, 1), what="REST delivers")
            market.push(2)
            await eventually(lambda: events.starts() == minutes(0, 3), what="still REST")
        assert feed.transport == "rest"
        assert any(path.startswith("/market/ws") for _, path, _ in market.server.unknown_requests)

    run(story, websocket=False)
