"""Runner + supervisor + paper exchange + replay feed + a real store, in one event loop: each
story runs on the SQLite file and on PostgreSQL (the `open_store` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from daemon.adapters.paper_exchange import PaperExchange, PaperSettings
from daemon.adapters.paper_markets import load_paper_markets
from daemon.adapters.replay_feed import ReplayFeed
from daemon.adapters.sqlite_store import SqliteStore
from daemon.clock import SystemClock
from daemon.domain.bot_state import BotState, DesiredState
from daemon.domain.models import OrderIntent, OrderStatus, OrderType, Side, Signal
from daemon.domain.risk import RiskLimits
from daemon.runtime.bot_runner import BotRunner, BotSpec
from daemon.runtime.supervisor import Supervisor
from strategies.base import Strategy
from strategies.ema_cross import EmaCross, EmaCrossParams
from tests.conftest import REPO, StoreOpener

LIMITS = RiskLimits(3, Decimal(50), Decimal("0.5"), Decimal(20))
START = datetime(2025, 5, 10, tzinfo=UTC)
SYMBOLS = {"eth": "ETH/USDT:USDT", "btc": "BTC/USDT:USDT"}


class ExplodingStrategy(EmaCross):
    """The ema_cross strategy with a bug that fires on its third evaluation, once per process."""

    evaluations = 0

    def evaluate(self, frames: Mapping[str, pl.DataFrame]) -> Signal | None:
        type(self).evaluations += 1
        if type(self).evaluations == 3:
            raise ZeroDivisionError("strategy bug")
        return super().evaluate(frames)


class Runtime:
    """The daemon's wiring, small: one paper account, one replay feed per symbol."""

    def __init__(
        self, open_store: StoreOpener, strategies: dict[str, Strategy], speed: float = 0
    ) -> None:
        self.store = open_store()
        self.exchange = PaperExchange(
            "paper",
            PaperSettings(Decimal(1000), Decimal("0.0005"), Decimal("0.0002"), Decimal(2), 3),
            self.store,
            load_paper_markets(),
        )
        self.feeds = {}
        for name in strategies:
            symbol = SYMBOLS[name.split("-")[0]]
            stem = symbol.replace("/", "_").replace(":", "_")
            feed = ReplayFeed(
                symbol,
                REPO / "data" / "candles" / f"{stem}-1m-futures.feather",
                ["1m", "5m"],
                speed,
                self.store,
                f"paper:{symbol}",
                start=START,
            )
            feed.subscribe(self.exchange.on_candles)
            self.feeds[name] = feed
        self.strategies = strategies
        specs = {
            name: (
                BotSpec(name, "paper", self.feeds[name].symbol, "ema_cross", ("1m", "5m"), 3),
                True,
            )
            for name in strategies
        }
        self.told: list[tuple[str, str, dict[str, Any]]] = []  # what a person would be alerted of
        self.supervisor = Supervisor(
            specs, self._runner, self.store, SystemClock(), tell=self._tell
        )

    def _tell(self, event: str, bot: str, details: dict[str, Any]) -> None:
        self.told.append((event, bot, details))

    def _runner(self, spec: BotSpec, on_started: Callable[[], None]) -> BotRunner:
        return BotRunner(
            spec,
            self.strategies[spec.name],
            self.exchange,
            self.feeds[spec.name],
            self.store,
            LIMITS,
            SystemClock(),
            on_started,
        )

    async def run(self, body: Callable[[Runtime], Awaitable[None]]) -> None:
        await self.exchange.start()
        tasks = [asyncio.create_task(feed.run()) for feed in self.feeds.values()]
        try:
            await self.supervisor.bootstrap()
            await body(self)
        finally:
            await self.supervisor.shutdown()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def until(check: Callable[[], Any], within_s: float = 20.0) -> Any:
    """The async twin of eventually(): poll without blocking the loop under test."""
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        if value := check():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached within {within_s} s")


def ema() -> EmaCross:
    return EmaCross(EmaCrossParams())


def test_a_crashing_bot_is_marked_errored_restarted_and_never_stops_another(
    open_store: StoreOpener,
) -> None:
    ExplodingStrategy.evaluations = 0
    runtime = Runtime(open_store, {"eth-bad": ExplodingStrategy(EmaCrossParams()), "btc-ok": ema()})

    async def story(rt: Runtime) -> None:
        sup = rt.supervisor
        errored = await until(lambda: (s := sup.bot_status("eth-bad"))["error"] and s)
        assert "ZeroDivisionError: strategy bug" in errored["error"]
        healthy_before = sup.bot_status("btc-ok")["candles_processed"]
        back = await until(lambda: (s := sup.bot_status("eth-bad"))["restarts"] >= 1 and s)
        await until(lambda: sup.bot_status("eth-bad")["state"] == BotState.RUNNING)
        assert back["desired_state"] == DesiredState.RUNNING
        await until(lambda: sup.bot_status("btc-ok")["candles_processed"] > healthy_before + 50)
        assert sup.bot_status("btc-ok")["state"] == BotState.RUNNING

    asyncio.run(runtime.run(story))
    kinds = [e["kind"] for e in runtime.store.events("eth-bad")]
    assert kinds.count("bot_errored") == 1 and kinds.count("bot_started") == 2
    [(event, bot, details)] = runtime.told
    assert (event, bot, details["retry_in_s"]) == ("bot_errored", "eth-bad", 1.0)
    assert "strategy bug" in details["error"]


def test_bots_trade_and_realised_pnl_is_the_sum_of_fills_net_of_fees(
    open_store: StoreOpener,
) -> None:
    runtime = Runtime(open_store, {"eth-ema": ema()})

    async def story(rt: Runtime) -> None:
        await until(lambda: len(rt.store.fills("eth-ema")) >= 6)

    asyncio.run(runtime.run(story))
    fills = runtime.store.fills("eth-ema")
    expected = sum((f.realized_pnl - f.fee for f in fills), Decimal(0))
    assert runtime.store.realized_pnl("eth-ema") == expected != 0
    orders = runtime.store.recent_orders("eth-ema", 1000)
    market = [o for o in orders if not o.type.is_trigger]
    assert {o.status for o in market} <= {OrderStatus.FILLED, OrderStatus.REJECTED}
    resting = [o for o in orders if o.type.is_trigger and o.status is OrderStatus.OPEN]
    assert len(resting) <= 2, "at most one stop and one take-profit rest at a time"
    assert {o.purpose for o in orders if o.type.is_trigger} == {"stop", "take_profit"}
    assert len({o.client_order_id for o in orders}) == len(orders)


def test_restart_resolves_an_intent_whose_reply_was_lost_without_sending_it_again(
    open_store: StoreOpener,
) -> None:
    """A crash between 'intent committed' and 'reply recorded': the order exists only once."""
    runtime = Runtime(open_store, {"eth-ema": ema()})

    async def crash_mid_order(rt: Runtime) -> None:
        await until(lambda: rt.supervisor.bot_status("eth-ema")["candles_processed"] > 3)
        seq = rt.store.next_order_sequence("eth-ema")
        sent = OrderIntent(
            "eth-ema",
            "paper",
            "ETH/USDT:USDT",
            f"tclost-{seq:08d}",
            Side.BUY,
            OrderType.MARKET,
            Decimal("0.01"),
            None,
            False,
            START,
        )
        lost = OrderIntent(
            "eth-ema",
            "paper",
            "ETH/USDT:USDT",
            f"tcnever-{seq:08d}",
            Side.BUY,
            OrderType.MARKET,
            Decimal("0.01"),
            None,
            False,
            START,
        )
        await rt.supervisor.stop_bot("eth-ema")  # quiet the runner, then fake the crash:
        rt.store.set_desired_state("eth-ema", DesiredState.RUNNING)  # it was running
        rt.store.record_intent(sent)
        await rt.exchange.submit_order(sent)  # reached the exchange; the reply was lost
        rt.store.record_intent(lost)  # never left the process

    asyncio.run(runtime.run(crash_mid_order))
    restarted = Runtime(open_store, {"eth-ema": ema()})

    async def after_restart(rt: Runtime) -> None:
        await until(lambda: rt.supervisor.bot_status("eth-ema")["state"] == BotState.RUNNING)

    asyncio.run(restarted.run(after_restart))
    store = restarted.store
    sent_order = next(
        o for o in store.recent_orders("eth-ema", 500) if o.client_order_id.startswith("tclost")
    )
    never = next(
        o for o in store.recent_orders("eth-ema", 500) if o.client_order_id.startswith("tcnever")
    )
    assert sent_order.status is OrderStatus.FILLED
    assert never.status is OrderStatus.REJECTED and never.reason == "never reached the exchange"
    assert [f.client_order_id for f in store.fills("eth-ema")].count(
        sent_order.client_order_id
    ) == 1
    assert not store.live_orders("eth-ema")


def test_halted_bots_stay_halted_across_a_restart_and_the_journal_says_why(
    open_store: StoreOpener,
) -> None:
    runtime = Runtime(open_store, {"eth-ema": ema(), "btc-ema": ema()})
    runtime.store.set_meta("bootstrapped", "earlier")
    runtime.store.set_desired_state("eth-ema", DesiredState.HALTED, reason="daily loss limit")
    runtime.store.set_desired_state("btc-ema", DesiredState.RUNNING)

    async def story(rt: Runtime) -> None:
        await until(lambda: rt.supervisor.bot_status("btc-ema")["state"] == BotState.RUNNING)
        assert rt.supervisor.bot_status("eth-ema")["state"] == BotState.HALTED

    asyncio.run(runtime.run(story))
    [why] = [e for e in runtime.store.events("eth-ema") if e["kind"] == "bot_not_resumed"]
    assert why["reason"] == "halted: daily loss limit"
    assert [e["kind"] for e in runtime.store.events("btc-ema")][-2:] == [
        "bot_resumed",
        "bot_started",
    ]


RUNNER_FIELDS = {
    "state",
    "last_candle_age_s",
    "last_candle_close",
    "candles_processed",
    "error",
    "last_problem",
    "restarts",
}


def test_status_from_memory_equals_status_from_the_store_after_a_restart(tmp_path: Path) -> None:
    """What status shows from memory is what a restarted daemon reads from the file; quiet
    candles write no position (only a change of size or entry, and the mark once a minute)."""

    def open_sqlite() -> SqliteStore:  # the SQLite file: its trace counts the writes
        return SqliteStore(tmp_path / "state.db")

    runtime = Runtime(open_sqlite, {"eth-ema": ema()})
    position_writes: list[str] = []
    runtime.store._db.set_trace_callback(
        lambda sql: position_writes.append(sql) if "INTO positions" in sql else None
    )
    seen: dict[str, Any] = {}

    async def story(rt: Runtime) -> None:
        await until(lambda: len(rt.store.fills("eth-ema")) >= 6)
        seen.update(rt.supervisor.bot_status("eth-ema"))

    asyncio.run(runtime.run(story))
    from_memory = runtime.supervisor.status()
    restarted = Runtime(open_sqlite, {"eth-ema": ema()}).supervisor.status()
    assert [{k: v for k, v in b.items() if k not in RUNNER_FIELDS} for b in from_memory] == [
        {k: v for k, v in b.items() if k not in RUNNER_FIELDS} for b in restarted
    ]
    assert from_memory[0]["realized_pnl"] != "0"
    assert seen["candles_processed"] > 100
    assert len(position_writes) < seen["candles_processed"] / 4, len(position_writes)


def test_a_first_start_logs_bot_started_and_a_restart_bot_resumed(
    open_store: StoreOpener,
) -> None:
    """The journal reads right from the first line: nothing is 'resumed' that never ran."""

    async def running(rt: Runtime) -> None:
        await until(lambda: rt.supervisor.bot_status("eth-ema")["state"] == BotState.RUNNING)

    first = Runtime(open_store, {"eth-ema": ema()})
    asyncio.run(first.run(running))
    kinds = [e["kind"] for e in first.store.events("eth-ema", limit=1000)]
    assert "bot_resumed" not in kinds
    assert kinds.index("bot_autostarted") < kinds.index("bot_started")
    first.store.close()

    again = Runtime(open_store, {"eth-ema": ema()})
    asyncio.run(again.run(running))
    kinds = [e["kind"] for e in again.store.events("eth-ema", limit=1000)]
    assert kinds.count("bot_autostarted") == 1 and kinds.count("bot_resumed") == 1
    assert kinds.index("bot_resumed") < len(kinds) - 1 - kinds[::-1].index("bot_started")
