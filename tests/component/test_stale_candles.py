"""Candles replayed after downtime warm the indicators but open and close nothing.

The same bot, paper account and candles twice: once with the feed's clock at each candle's
close (live), once with the clock an hour ahead (a catch-up after downtime). Only the live
run trades.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from daemon.adapters.paper_exchange import PaperExchange, PaperSettings
from daemon.adapters.paper_markets import load_paper_markets
from daemon.adapters.replay_feed import ReplayFeed
from daemon.adapters.sqlite_store import SqliteStore
from daemon.clock import SystemClock
from daemon.domain.bot_state import DesiredState
from daemon.domain.risk import RiskLimits
from daemon.ports import CandlesClosed
from daemon.runtime.bot_runner import BotRunner, BotSpec
from strategies.ema_cross import EmaCross, EmaCrossParams
from tests.conftest import REPO

ETH = "ETH/USDT:USDT"
DATA = REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"
START = datetime(2025, 5, 10, tzinfo=UTC)
CANDLES = 240


class LateFeed(ReplayFeed):
    """A replay whose clock runs `behind` ahead of its candles: every one is old news."""

    behind = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.behind


def run(folder: Path, behind: timedelta) -> tuple[SqliteStore, BotRunner]:
    store = SqliteStore(folder / "state.db")
    feed = LateFeed(ETH, DATA, ["1m", "5m"], 0, store, f"paper:{ETH}", start=START)
    feed.behind = behind
    exchange = PaperExchange(
        "paper",
        PaperSettings(Decimal(1000), Decimal("0.0005"), Decimal("0.0002"), Decimal(2), 3),
        store,
        load_paper_markets(),
    )
    store.set_desired_state("eth", DesiredState.RUNNING)
    started = asyncio.Event()
    runner = BotRunner(
        BotSpec("eth", "paper", ETH, "ema_cross", ("1m", "5m"), 3),
        EmaCross(EmaCrossParams()),
        exchange,
        feed,
        store,
        RiskLimits(3, Decimal(50), Decimal("0.5"), Decimal(20)),
        SystemClock(),
        started.set,
    )

    async def main() -> None:
        await exchange.start()
        feed.subscribe(exchange.on_candles)
        task = asyncio.create_task(runner.run())
        await started.wait()
        done = asyncio.Event()

        async def count(event: CandlesClosed) -> None:
            if runner.snapshot.candles_processed >= CANDLES:
                done.set()
                await asyncio.Event().wait()

        feed.subscribe(count)
        feeding = asyncio.create_task(feed.run())
        await done.wait()
        for t in (feeding, task):
            t.cancel()
        await asyncio.gather(feeding, task, return_exceptions=True)

    asyncio.run(main())
    return store, runner


def test_candles_replayed_after_downtime_open_and_close_nothing(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    (tmp_path / "late").mkdir()
    live_store, live = run(tmp_path / "live", timedelta(0))
    assert live.snapshot.signals > 0 and live_store.recent_orders("eth"), "live, it trades"
    late_store, late = run(tmp_path / "late", timedelta(hours=1))
    assert late.snapshot.candles_processed >= CANDLES
    assert late.snapshot.stale_candles == late.snapshot.candles_processed
    assert late.snapshot.signals == 0
    assert late_store.recent_orders("eth") == [], "no entry, no exit on old candles"
    assert late_store.fills("eth") == []
