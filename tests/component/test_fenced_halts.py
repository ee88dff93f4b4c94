"""A node woken from a pause cannot halt, nor flatten, the bot another node took over.

Two nodes on one real PostgreSQL database and one paper exchange: node-a's runner holds
the bot's lease and protects its long; node-a is paused past the lease, node-b takes the
bot over and protects the long with a stop of its own. The market falls, and node-a
wakes to a candle past the bot's daily loss limit. Its halt is refused by the store, so
no flatten follows: the exchange hears no cancel and no close from node-a, node-b's bot
stays running with its stop resting, and node-a gives the bot up saying why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from daemon.adapters.paper_exchange import PaperSettings
from daemon.adapters.paper_markets import load_paper_markets
from daemon.adapters.postgres_leases import PostgresLeases
from daemon.adapters.postgres_store import PostgresStore
from daemon.adapters.postgres_url import store_target
from daemon.clock import SystemClock
from daemon.domain.bot_state import BotState, DesiredState
from daemon.domain.fleet import LeaseBook
from daemon.domain.models import Candle, Order, OrderIntent, OrderStatus, OrderType, Side
from daemon.domain.risk import RiskLimits
from daemon.ports import CandlesClosed
from daemon.runtime.bot_runner import BotRunner, BotSpec
from daemon.runtime.flatten import Flattener
from daemon.runtime.supervisor import Supervisor
from strategies.ema_cross import EmaCross, EmaCrossParams
from tests.component.test_fenced_cancels import (
    BOT,
    ETH,
    PLAN_A,
    T0,
    TTL_S,
    CountingPaper,
    HandFeed,
    intent,
    mine,
    send,
)
from tests.postgres_server import PostgresServer

# a loss of 2 USDT in a day halts the bot: 0.02 ETH falling 150 is 3
LIMITS = RiskLimits(3, Decimal(500), Decimal("0.5"), Decimal(2))


class WatchedPaper(CountingPaper):
    """The paper exchange, counting the cancels and the orders that reach it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.submitted: list[str] = []

    async def submit_order(self, intent: OrderIntent) -> Order:
        self.submitted.append(intent.client_order_id)
        return await super().submit_order(intent)


def test_a_woken_node_cannot_halt_nor_flatten_the_bot_another_node_took_over(
    postgres: PostgresServer,
) -> None:
    target = store_target(postgres.database(), {})
    book_a, book_b = LeaseBook("node-a"), LeaseBook("node-b")
    store_a, store_b = PostgresStore(target, book_a), PostgresStore(target, book_b)
    exchange = WatchedPaper(
        "paper",
        PaperSettings(Decimal(1000), Decimal("0.0005"), Decimal("0.0002"), Decimal(2), 3),
        store_a,
        load_paper_markets(),
    )
    feed = HandFeed()
    started = asyncio.Event()
    flattener = Flattener(store_a, SystemClock())

    def runner(spec: BotSpec, on_started: Callable[[], None]) -> BotRunner:
        def both() -> None:
            on_started()
            started.set()

        return BotRunner(
            spec, EmaCross(EmaCrossParams()), exchange, feed, store_a, LIMITS, SystemClock(), both
        )

    async def flatten_bots(names: list[str], reason: str) -> list[dict[str, Any]]:
        """What the daemon does after a runner's halt (app.py `_flatten_halted`)."""
        reports = await flattener.flatten(exchange, [ETH], {ETH: BOT}.get, 5.0)
        return [r.as_dict() for r in reports]

    supervisor = Supervisor(
        {BOT: (BotSpec(BOT, "paper", ETH, "ema_cross", ("1m", "5m"), 3), True)},
        runner,
        store_a,
        SystemClock(),
        flatten_bots=flatten_bots,
        placement=lambda name: book_a.epoch(name) is not None,
    )

    async def market(opened_at_minute: int, price: str) -> None:
        """A 1m candle around `price` on the exchange (its mark); then to node-a's runner."""
        p = Decimal(price)
        opened_at = T0 + timedelta(minutes=opened_at_minute)
        candle = Candle(ETH, "1m", opened_at, p, p + 5, p - 5, p, Decimal(10))
        await exchange.on_candles(CandlesClosed(ETH, opened_at + timedelta(minutes=1), (candle,)))

    async def story() -> None:
        leases_a = PostgresLeases(target, "node-a", ttl_s=TTL_S)
        leases_b = PostgresLeases(target, "node-b", ttl_s=TTL_S)
        await exchange.start()
        await market(0, "2500")
        store_a.set_desired_state(BOT, DesiredState.RUNNING)
        epoch_a = await leases_a.acquire(BOT)
        assert epoch_a == 1
        book_a.hold(BOT, epoch_a)
        await send(store_a, exchange, intent("tca-entry", Side.BUY, "0.02"))
        store_a.save_plan(BOT, PLAN_A)
        supervisor.adopt(BOT)  # what the lease keeper does once node-a holds the lease
        await asyncio.wait_for(started.wait(), 20)
        protection_a = {o.purpose: o for o in store_a.live_orders(BOT)}
        assert sorted(protection_a) == ["stop", "take_profit"], "node-a protected its long"

        # node-a pauses past its lease (its runner waits for a candle); node-b takes over,
        # keeps the long and protects it with a stop of its own, further away
        await asyncio.sleep(TTL_S * 1.3)
        epoch_b = await leases_b.acquire(BOT)
        assert epoch_b == 2
        book_b.hold(BOT, epoch_b)
        for old in protection_a.values():
            store_b.record_cancel(old, BOT)
            cancelled = await exchange.cancel_order(ETH, old.client_order_id, trigger=True)
            assert cancelled is not None
            store_b.update_order(mine(cancelled))
        stop_b = await send(
            store_b,
            exchange,
            intent(
                "tcb-stop", Side.SELL, "0.02", OrderType.STOP_MARKET, trigger=2300, purpose="stop"
            ),
        )
        cancels_before, submitted_before = list(exchange.cancels), list(exchange.submitted)

        # the market falls 150 (the long is 3 USDT down, past the bot's limit of 2);
        # node-a wakes to that candle
        await market(1, "2350")
        await feed.close(T0 + timedelta(minutes=1), "2350")
        slot = {s.spec.name: s for s in supervisor.slots()}[BOT]
        assert slot.task is not None
        await asyncio.wait({slot.task}, timeout=10)
        assert exchange.cancels == cancels_before, "no cancel from node-a reached the exchange"
        assert exchange.submitted == submitted_before, "no close from node-a reached it"
        resting = {o.client_order_id for o in await exchange.fetch_open_orders(ETH)}
        assert stop_b.client_order_id in resting, "the new holder's stop still rests"
        assert slot.task.done() and slot.task.exception() is None
        assert slot.state is BotState.STOPPED, "node-a gave the bot up, not halted it"
        [held] = await exchange.fetch_positions(ETH)
        assert held.qty == Decimal("0.02"), "the new holder's long is untouched"
        await supervisor.shutdown()
        await leases_a.close()
        await leases_b.close()

    try:
        asyncio.run(story())
        record = store_b.bot(BOT)
        assert record is not None
        assert record.desired_state is DesiredState.RUNNING, "the new holder's bot runs on"
        journal = store_b.events(BOT, limit=500)
        [reached] = [e for e in journal if e["kind"] == "loss_limit_reached"]
        assert reached["node"] == "node-a", "node-a did see the loss"
        assert not [e for e in journal if e.get("state") == "halted"], "no halt was written"
        [lost] = [e for e in journal if e["kind"] == "bot_lease_lost"]
        assert lost["node"] == "node-a"
        assert "no longer holds its lease (holder node-b, epoch 2" in lost["reason"]
        assert "its halt (daily loss limit" in lost["reason"]
        assert not [o for o in store_b.recent_orders(BOT) if o.purpose == "flatten"]
        still = store_b.order("tcb-stop")
        assert still is not None and still.status is OrderStatus.OPEN
    finally:
        store_a.close()
        store_b.close()
