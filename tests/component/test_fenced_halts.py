"""A node woken from a pause cannot halt, nor flatten, the bot another node took over.

Two nodes on one real PostgreSQL database and one paper exchange: node-a's runner holds
the bot's lease and protects its long; node-a is paused past the lease, node-b takes the
bot over and protects the long with a stop of its own. The market falls, and node-a
wakes to a candle past the bot's daily loss limit. Its halt is refused by the store, so
no flatten follows: the exchange hears no cancel and no close from node-a, node-b's bot
stays running with its stop resting, and node-a gives the bot up saying why. The same
holds for a halt written in time whose flatten comes after such a pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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

# a loss of 2 USDT in a day halts the bot: 0.05 ETH falling 60 is 3 (above its stop)
LIMITS = RiskLimits(3, Decimal(500), Decimal("0.5"), Decimal(2))


class WatchedPaper(CountingPaper):
    """The paper exchange, counting the cancels and the orders that reach it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.submitted: list[str] = []

    async def submit_order(self, intent: OrderIntent) -> Order:
        self.submitted.append(intent.client_order_id)
        return await super().submit_order(intent)


class TwoNodes:
    """node-a's real runner and supervisor, node-b's store and leases, one exchange."""

    def __init__(self, postgres: PostgresServer) -> None:
        self.target = store_target(postgres.database(), {})
        self.book_a, self.book_b = LeaseBook("node-a"), LeaseBook("node-b")
        self.store_a = PostgresStore(self.target, self.book_a)
        self.store_b = PostgresStore(self.target, self.book_b)
        self.exchange = WatchedPaper(
            "paper",
            PaperSettings(Decimal(1000), Decimal("0.0005"), Decimal("0.0002"), Decimal(2), 3),
            self.store_a,
            load_paper_markets(),
        )
        self.feed = HandFeed()
        self.started = asyncio.Event()
        self.before_flatten: Callable[[], Awaitable[None]] | None = None
        self.flatten_reports: list[dict[str, Any]] = []
        flattener = Flattener(self.store_a, SystemClock())

        def runner(spec: BotSpec, on_started: Callable[[], None]) -> BotRunner:
            def both() -> None:
                on_started()
                self.started.set()

            return BotRunner(
                spec,
                EmaCross(EmaCrossParams()),
                self.exchange,
                self.feed,
                self.store_a,
                LIMITS,
                SystemClock(),
                both,
            )

        async def flatten_bots(names: list[str], reason: str) -> list[dict[str, Any]]:
            """What the daemon does after a runner's halt (app.py `_flatten_halted`)."""
            if self.before_flatten is not None:
                await self.before_flatten()
            reports = await flattener.flatten(
                self.exchange, [ETH], {ETH: BOT}.get, 5.0, fenced=True
            )
            self.flatten_reports += [r.as_dict() for r in reports]
            return [r.as_dict() for r in reports]

        self.supervisor = Supervisor(
            {BOT: (BotSpec(BOT, "paper", ETH, "ema_cross", ("1m", "5m"), 3), True)},
            runner,
            self.store_a,
            SystemClock(),
            flatten_bots=flatten_bots,
            placement=lambda name: self.book_a.epoch(name) is not None,
        )

    async def market(self, minute: int, price: str) -> None:
        """A 1m candle around `price` on the exchange (its mark price)."""
        p = Decimal(price)
        opened_at = T0 + timedelta(minutes=minute)
        candle = Candle(ETH, "1m", opened_at, p, p + 5, p - 5, p, Decimal(10))
        await self.exchange.on_candles(
            CandlesClosed(ETH, opened_at + timedelta(minutes=1), (candle,))
        )

    async def node_a_protects_a_long(self, leases_a: PostgresLeases) -> dict[str, Order]:
        await self.exchange.start()
        await self.market(0, "2500")
        self.store_a.set_desired_state(BOT, DesiredState.RUNNING)
        epoch_a = await leases_a.acquire(BOT)
        assert epoch_a == 1
        self.book_a.hold(BOT, epoch_a)
        await send(self.store_a, self.exchange, intent("tca-entry", Side.BUY, "0.05"))
        self.store_a.save_plan(BOT, PLAN_A)
        self.supervisor.adopt(BOT)  # what the lease keeper does once node-a holds the lease
        await asyncio.wait_for(self.started.wait(), 20)
        protection = {o.purpose: o for o in self.store_a.live_orders(BOT)}
        assert sorted(protection) == ["stop", "take_profit"], "node-a protected its long"
        return protection

    async def node_b_takes_over(
        self, leases_b: PostgresLeases, protection_a: dict[str, Order]
    ) -> Order:
        """node-a's lease ran out; node-b takes the bot, keeps the long and protects it
        with a stop of its own, further away."""
        await asyncio.sleep(TTL_S * 1.3)
        epoch_b = await leases_b.acquire(BOT)
        assert epoch_b == 2
        self.book_b.hold(BOT, epoch_b)
        for old in protection_a.values():
            self.store_b.record_cancel(old, BOT)
            cancelled = await self.exchange.cancel_order(ETH, old.client_order_id, trigger=True)
            assert cancelled is not None
            self.store_b.update_order(mine(cancelled))
        return await send(
            self.store_b,
            self.exchange,
            intent(
                "tcb-stop", Side.SELL, "0.05", OrderType.STOP_MARKET, trigger=2300, purpose="stop"
            ),
        )

    async def node_a_wakes_to_a_fall(self) -> None:
        """The market falls 60 (the long is 3 USDT down, past the limit of 2); node-a's
        runner gets that candle and is done with the bot."""
        await self.market(1, "2440")
        await self.feed.close(T0 + timedelta(minutes=1), "2440")
        slot = {s.spec.name: s for s in self.supervisor.slots()}[BOT]
        assert slot.task is not None
        await asyncio.wait({slot.task}, timeout=10)
        assert slot.task.done() and slot.task.exception() is None

    async def node_b_is_untouched(self, stop_b: Order) -> None:
        resting = {o.client_order_id for o in await self.exchange.fetch_open_orders(ETH)}
        assert stop_b.client_order_id in resting, "the new holder's stop still rests"
        [held] = await self.exchange.fetch_positions(ETH)
        assert held.qty == Decimal("0.05"), "the new holder's long is untouched"
        still = self.store_b.order("tcb-stop")
        assert still is not None and still.status is OrderStatus.OPEN
        assert not [o for o in self.store_b.recent_orders(BOT) if o.purpose == "flatten"]

    def close(self) -> None:
        self.store_a.close()
        self.store_b.close()


def test_a_woken_node_cannot_halt_nor_flatten_the_bot_another_node_took_over(
    postgres: PostgresServer,
) -> None:
    nodes = TwoNodes(postgres)

    async def story() -> None:
        leases_a = PostgresLeases(nodes.target, "node-a", ttl_s=TTL_S)
        leases_b = PostgresLeases(nodes.target, "node-b", ttl_s=TTL_S)
        protection_a = await nodes.node_a_protects_a_long(leases_a)
        stop_b = await nodes.node_b_takes_over(leases_b, protection_a)
        cancels_before = list(nodes.exchange.cancels)
        submitted_before = list(nodes.exchange.submitted)
        await nodes.node_a_wakes_to_a_fall()
        assert nodes.exchange.cancels == cancels_before, "no cancel from node-a reached it"
        assert nodes.exchange.submitted == submitted_before, "no close from node-a reached it"
        await nodes.node_b_is_untouched(stop_b)
        [slot] = nodes.supervisor.slots()
        assert slot.state is BotState.STOPPED, "node-a gave the bot up, not halted it"
        await nodes.supervisor.shutdown()
        await leases_a.close()
        await leases_b.close()

    try:
        asyncio.run(story())
        record = nodes.store_b.bot(BOT)
        assert record is not None
        assert record.desired_state is DesiredState.RUNNING, "the new holder's bot runs on"
        journal = nodes.store_b.events(BOT, limit=500)
        [reached] = [e for e in journal if e["kind"] == "loss_limit_reached"]
        assert reached["node"] == "node-a", "node-a did see the loss"
        assert not [e for e in journal if e.get("state") == "halted"], "no halt was written"
        [lost] = [e for e in journal if e["kind"] == "bot_lease_lost"]
        assert lost["node"] == "node-a"
        assert "no longer holds its lease (holder node-b, epoch 2" in lost["reason"]
        assert "its halt (daily loss limit" in lost["reason"]
    finally:
        nodes.close()


def test_a_halts_flatten_after_a_pause_leaves_the_bot_to_the_node_that_took_it_over(
    postgres: PostgresServer,
) -> None:
    """node-a writes its halt in time, then pauses before the flatten; meanwhile the
    operator resumes the bot and node-b takes it over. node-a's flatten, when it wakes,
    is refused its first cancel: it sends nothing and leaves the bot to node-b."""
    nodes = TwoNodes(postgres)
    taken: list[Order] = []

    async def story() -> None:
        leases_a = PostgresLeases(nodes.target, "node-a", ttl_s=TTL_S)
        leases_b = PostgresLeases(nodes.target, "node-b", ttl_s=TTL_S)
        protection_a = await nodes.node_a_protects_a_long(leases_a)
        sent: dict[str, list[str]] = {}

        async def paused_then_taken_over() -> None:
            assert nodes.store_b.bot(BOT).desired_state is DesiredState.HALTED  # type: ignore[union-attr]
            nodes.store_b.set_desired_state(BOT, DesiredState.RUNNING, cause="resume")
            taken.append(await nodes.node_b_takes_over(leases_b, protection_a))
            sent["cancels"] = list(nodes.exchange.cancels)
            sent["submitted"] = list(nodes.exchange.submitted)

        nodes.before_flatten = paused_then_taken_over
        await nodes.node_a_wakes_to_a_fall()
        [report] = nodes.flatten_reports
        assert (report["symbol"], report["flat"], report["attempts"]) == (ETH, False, 1)
        [why] = report["errors"]
        assert why.startswith("left to its holder: ") and "node-b" in why, why
        assert nodes.exchange.cancels == sent["cancels"], "no cancel from node-a reached it"
        assert nodes.exchange.submitted == sent["submitted"], "no close from node-a reached it"
        await nodes.node_b_is_untouched(taken[0])
        await nodes.supervisor.shutdown()
        await leases_a.close()
        await leases_b.close()

    try:
        asyncio.run(story())
        record = nodes.store_b.bot(BOT)
        assert record is not None and record.desired_state is DesiredState.RUNNING
        journal = nodes.store_b.events(BOT, limit=500)
        halts = [(e["node"], e["cause"]) for e in journal if e.get("state") == "halted"]
        assert halts == [("node-a", "risk")], "the halt was written under node-a's lease"
        flatten_cancels = [
            e for e in journal if e["kind"] == "order_cancel_requested" and e["cause"] == "flatten"
        ]
        assert flatten_cancels == [], "node-a's flatten asked for no cancel"
    finally:
        nodes.close()
