"""A node woken from a pause cannot cancel the new holder's protective stop.

Two nodes on one real PostgreSQL database and one paper exchange: node-a's runner holds
the bot's lease and protects its long (its own cancel is recorded, then sent); node-a is
paused past the lease, node-b takes the bot over and trades on with a stop of its own;
node-a wakes to a candle, finds the stop not to its (stale) plan and wants it cancelled.
The store refuses the request, so the exchange never hears of it, and node-a gives the
bot up as it does for a refused intent. The same holds for a start-up reconciliation
paused between reading the positions and cancelling the protection of a flat bot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from daemon.adapters.paper_exchange import PaperExchange, PaperSettings
from daemon.adapters.paper_markets import load_paper_markets
from daemon.adapters.postgres_leases import PostgresLeases
from daemon.adapters.postgres_store import PostgresStore
from daemon.adapters.postgres_url import store_target
from daemon.clock import SystemClock
from daemon.domain.bot_state import BotState, DesiredState
from daemon.domain.fleet import LeaseBook
from daemon.domain.models import (
    Candle,
    Direction,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TradePlan,
)
from daemon.domain.risk import RiskLimits
from daemon.ports import CandleConsumer, CandlesClosed
from daemon.runtime.bot_runner import BotRunner, BotSpec
from daemon.runtime.reconcile import reconcile_account
from daemon.runtime.supervisor import Supervisor
from strategies.ema_cross import EmaCross, EmaCrossParams
from tests.postgres_server import PostgresServer

ETH = "ETH/USDT:USDT"
BOT = "eth"
T0 = datetime(2025, 5, 10, tzinfo=UTC)
TTL_S = 1.0
LIMITS = RiskLimits(3, Decimal(500), Decimal("0.5"), Decimal(50))
PLAN_A = TradePlan(Direction.LONG, Decimal("2400"), Decimal("2700"), T0)
PLAN_B = TradePlan(Direction.LONG, Decimal("2450"), Decimal("2650"), T0 + timedelta(minutes=5))


class CountingPaper(PaperExchange):
    """The paper exchange, counting the cancels that reach it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.cancels: list[str] = []

        self.meanwhile: Callable[[], Awaitable[None]] | None = None

    async def cancel_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        self.cancels.append(client_order_id)
        return await super().cancel_order(symbol, client_order_id, trigger=trigger)

    async def fetch_positions(self, symbol: str | None = None) -> list[Position]:
        """The positions as read; then, once, what `meanwhile` does before the caller
        gets them (the caller paused right after the read)."""
        read = await super().fetch_positions(symbol)
        later, self.meanwhile = self.meanwhile, None
        if later is not None:
            await later()
        return read


class HandFeed:
    """A feed the test turns by hand: one candle at a time, delivered to the runner."""

    symbol = ETH
    base_timeframe = "1m"
    timeframes = ("1m", "5m")
    last_event_monotonic = None
    expected_interval_s = 60.0

    def __init__(self) -> None:
        self.consumers: list[CandleConsumer] = []
        self.clock = T0

    def history(self, timeframe: str, limit: int) -> list[Candle]:
        return []

    async def prepare(self, needs: Mapping[str, int]) -> None:
        return None

    def subscribe(self, consumer: CandleConsumer) -> None:
        self.consumers.append(consumer)

    def unsubscribe(self, consumer: CandleConsumer) -> None:
        self.consumers.remove(consumer)

    async def run(self) -> None:
        return None

    def now(self) -> datetime:
        return self.clock

    async def close(self, opened_at: datetime, price: str) -> CandlesClosed:
        """A quiet 1m candle around `price`; the feed's clock a second after its close."""
        p = Decimal(price)
        candle = Candle(ETH, "1m", opened_at, p, p + 5, p - 5, p, Decimal(10))
        event = CandlesClosed(ETH, opened_at + timedelta(minutes=1), (candle,))
        self.clock = event.closed_at + timedelta(seconds=1)
        for consumer in list(self.consumers):
            await consumer(event)
        return event


def mine(order: Order) -> Order:
    """The order as the store keeps it: with its bot."""
    return order.with_status(order.status, bot=BOT)


async def send(store: PostgresStore, exchange: PaperExchange, intent: OrderIntent) -> Order:
    """What a holder's runner does with an intent: commit it (fenced), send it, record it."""
    store.record_intent(intent)
    placed = mine(await exchange.submit_order(intent))
    store.update_order(placed)
    return placed


def intent(
    cid: str, side: Side, qty: str, kind: OrderType = OrderType.MARKET, **more: object
) -> OrderIntent:
    return OrderIntent(
        bot=BOT,
        account="paper",
        symbol=ETH,
        client_order_id=cid,
        side=side,
        type=kind,
        qty=Decimal(qty),
        price=None,
        reduce_only=bool(more.get("reduce_only", kind is not OrderType.MARKET)),
        created_at=T0,
        purpose=str(more.get("purpose", "entry")),
        trigger_price=None if "trigger" not in more else Decimal(str(more["trigger"])),
    )


def test_a_woken_node_cannot_cancel_the_new_holders_stop_and_gives_the_bot_up(
    postgres: PostgresServer,
) -> None:
    target = store_target(postgres.database(), {})
    book_a, book_b = LeaseBook("node-a"), LeaseBook("node-b")
    store_a, store_b = PostgresStore(target, book_a), PostgresStore(target, book_b)
    exchange = CountingPaper(
        "paper",
        PaperSettings(Decimal(1000), Decimal("0.0005"), Decimal("0.0002"), Decimal(2), 3),
        store_a,
        load_paper_markets(),
    )
    feed = HandFeed()
    started = asyncio.Event()

    def runner(spec: BotSpec, on_started: Callable[[], None]) -> BotRunner:
        def both() -> None:
            on_started()
            started.set()

        return BotRunner(
            spec, EmaCross(EmaCrossParams()), exchange, feed, store_a, LIMITS, SystemClock(), both
        )

    supervisor = Supervisor(
        {BOT: (BotSpec(BOT, "paper", ETH, "ema_cross", ("1m", "5m"), 3), True)},
        runner,
        store_a,
        SystemClock(),
        placement=lambda name: book_a.epoch(name) is not None,
    )

    async def story() -> list[str]:
        leases_a = PostgresLeases(target, "node-a", ttl_s=TTL_S)
        leases_b = PostgresLeases(target, "node-b", ttl_s=TTL_S)
        await exchange.start()
        await exchange.on_candles(await feed.close(T0, "2500"))  # the market has a price
        store_a.set_desired_state(BOT, DesiredState.RUNNING)
        epoch_a = await leases_a.acquire(BOT)
        assert epoch_a == 1
        book_a.hold(BOT, epoch_a)
        # node-a's long, its plan, and a stale stop left for half of it (say, after a crash)
        await send(store_a, exchange, intent("tca-entry", Side.BUY, "0.02"))
        store_a.save_plan(BOT, PLAN_A)
        stale = await send(
            store_a,
            exchange,
            intent(
                "tca-stale", Side.SELL, "0.01", OrderType.STOP_MARKET, trigger=2390, purpose="stop"
            ),
        )
        supervisor.adopt(BOT)  # what the lease keeper does once node-a holds the lease
        await asyncio.wait_for(started.wait(), 20)
        assert exchange.cancels == [stale.client_order_id], "the holder's own cancel went out"
        protection_a = {o.purpose: o for o in store_a.live_orders(BOT)}
        assert sorted(protection_a) == ["stop", "take_profit"]
        assert protection_a["stop"].trigger_price == PLAN_A.stop

        # node-a pauses past its lease (its runner waits for a candle); node-b takes over
        await asyncio.sleep(TTL_S * 1.3)
        epoch_b = await leases_b.acquire(BOT)
        assert epoch_b == 2
        book_b.hold(BOT, epoch_b)
        # node-b trades on: it takes node-a's protection off, closes the long, opens a new
        # one with its own plan and protects that (every step fenced, every step its own)
        for old in protection_a.values():
            store_b.record_cancel(old, BOT)
            cancelled = await exchange.cancel_order(ETH, old.client_order_id, trigger=True)
            assert cancelled is not None
            store_b.update_order(mine(cancelled))
        await send(store_b, exchange, intent("tcb-close", Side.SELL, "0.02", reduce_only=True))
        await send(store_b, exchange, intent("tcb-entry", Side.BUY, "0.03"))
        store_b.save_plan(BOT, PLAN_B)
        stop_b = await send(
            store_b,
            exchange,
            intent(
                "tcb-stop", Side.SELL, "0.03", OrderType.STOP_MARKET, trigger=2450, purpose="stop"
            ),
        )
        cancels_before = list(exchange.cancels)

        # node-a wakes to its next candle: its plan says 2400, the resting stop is at 2450
        await feed.close(T0 + timedelta(minutes=1), "2500")
        slot = {s.spec.name: s for s in supervisor.slots()}[BOT]
        assert slot.task is not None
        await asyncio.wait({slot.task}, timeout=10)
        assert slot.state is BotState.STOPPED, "node-a gave the bot up"
        assert exchange.cancels == cancels_before, "node-a's cancel never reached the exchange"
        resting = {o.client_order_id for o in await exchange.fetch_open_orders(ETH)}
        assert stop_b.client_order_id in resting, "the new holder's stop still rests"
        await supervisor.shutdown()
        await leases_a.close()
        await leases_b.close()
        return [o.client_order_id for o in protection_a.values()]

    try:
        taken_off = asyncio.run(story())
        journal = store_b.events(BOT, limit=500)
        [lost] = [e for e in journal if e["kind"] == "bot_lease_lost"]
        assert lost["node"] == "node-a"
        assert "the cancel of tcb-stop is not sent" in lost["reason"]
        asked = [
            (e["cid"], e["node"], e["epoch"])
            for e in journal
            if e["kind"] == "order_cancel_requested"
        ]
        assert asked == [("tca-stale", "node-a", 1), *((cid, "node-b", 2) for cid in taken_off)]
        still = store_b.order("tcb-stop")
        assert still is not None and still.status is OrderStatus.OPEN
    finally:
        store_a.close()
        store_b.close()


def test_a_reconciliation_paused_mid_way_leaves_the_new_holders_protection_alone(
    postgres: PostgresServer,
) -> None:
    """node-a starts while the bot is stopped and held by nobody, so it reconciles it; it
    reads the position (flat) and pauses. Meanwhile the bot is started, node-b takes it
    and protects a new long. node-a wakes and, by its stale read, would cancel that stop
    and take-profit as a flat bot's leftovers: the store refuses, nothing is sent."""
    target = store_target(postgres.database(), {})
    book_a, book_b = LeaseBook("node-a"), LeaseBook("node-b")
    store_a, store_b = PostgresStore(target, book_a), PostgresStore(target, book_b)
    exchange = CountingPaper(
        "paper",
        PaperSettings(Decimal(1000), Decimal("0.0005"), Decimal("0.0002"), Decimal(2), 3),
        store_a,
        load_paper_markets(),
    )

    async def story() -> list[dict[str, object]]:
        leases_b = PostgresLeases(target, "node-b", ttl_s=60)
        await exchange.start()
        await exchange.on_candles(await HandFeed().close(T0, "2500"))
        store_a.set_desired_state(BOT, DesiredState.STOPPED)

        async def node_b_takes_over() -> None:
            store_b.set_desired_state(BOT, DesiredState.RUNNING)
            epoch = await leases_b.acquire(BOT)
            assert epoch is not None
            book_b.hold(BOT, epoch)
            await send(store_b, exchange, intent("tcb-entry", Side.BUY, "0.02"))
            store_b.save_plan(BOT, PLAN_B)
            for purpose, kind, trigger in (
                ("stop", OrderType.STOP_MARKET, 2450),
                ("take_profit", OrderType.TAKE_PROFIT_MARKET, 2650),
            ):
                cid = f"tcb-{purpose}"
                await send(
                    store_b,
                    exchange,
                    intent(cid, Side.SELL, "0.02", kind, trigger=trigger, purpose=purpose),
                )

        exchange.meanwhile = node_b_takes_over
        differences = await reconcile_account(
            exchange, store_a, {ETH: BOT}.get, {ETH: BOT}, in_flight_of=frozenset([BOT])
        )
        assert exchange.meanwhile is None, "node-a paused after reading the positions"
        assert exchange.cancels == [], "no cancel of node-b's protection reached the exchange"
        resting = {o.client_order_id for o in await exchange.fetch_open_orders(ETH)}
        assert resting == {"tcb-stop", "tcb-take_profit"}
        await leases_b.close()
        return differences

    try:
        differences = asyncio.run(story())
        [left] = [d for d in differences if d["kind"] == "protection_left_to_holder"]
        assert (left["account"], left["bot"], left["cid"]) == ("paper", BOT, "tcb-stop")
        assert "held by node node-b" in str(left["reason"])
        [journalled] = [e for e in store_a.events(limit=100) if e["kind"] == left["kind"]]
        assert (journalled["bot"], journalled["cid"]) == (BOT, "tcb-stop")
        assert not [d for d in differences if d["kind"] == "protection_cancelled"]
        assert [o.status for o in store_b.live_orders(BOT)] == [OrderStatus.OPEN] * 2
    finally:
        store_a.close()
        store_b.close()
