"""The health monitor over a real supervisor and store: the figures it feeds the verdict, the
line it shows in `systemctl status`, and the watchdog it pings only while healthy."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from daemon.adapters.sqlite_store import SqliteStore
from daemon.domain.bot_state import BotState, DesiredState
from daemon.domain.health import HealthLimits, HealthVerdict
from daemon.domain.models import Order, OrderIntent, OrderStatus, OrderType, Position, Side
from daemon.runtime.bot_runner import BotRunner, BotSpec
from daemon.runtime.health import LOOP_PROBE_INTERVAL_S, HealthMonitor
from daemon.runtime.supervisor import Supervisor

LIMITS = HealthLimits(loop_lag_max_s=2, stale_floor_s=10, stale_candles=3, start_timeout_s=60)


class FakeClock:
    def __init__(self) -> None:
        self.t = 500.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime(2025, 5, 10, tzinfo=UTC)


class Feed:
    def __init__(self, interval_s: float, last_event: float | None) -> None:
        self.expected_interval_s = interval_s
        self.last_event_monotonic = last_event


class Notifier:
    """Records what systemd would be told, in order."""

    def __init__(self, watchdog_interval_s: float | None) -> None:
        self.watchdog_interval_s = watchdog_interval_s
        self.sent: list[tuple[str, str, float]] = []

    def watchdog(self) -> None:
        self.sent.append(("WATCHDOG", "1", asyncio.get_running_loop().time()))

    def status(self, text: str) -> None:
        self.sent.append(("STATUS", text, asyncio.get_running_loop().time()))

    def statuses(self) -> list[str]:
        return [text for kind, text, _ in self.sent if kind == "STATUS"]


def no_runner(spec: BotSpec, on_started: Callable[[], None]) -> BotRunner:
    raise AssertionError("the monitor must not start bots")


class World:
    """Two bots on two feeds; the test sets what each has done."""

    def __init__(self, folder: Path, watchdog_interval_s: float | None = 0.9) -> None:
        self.clock = FakeClock()
        self.store = SqliteStore(folder / "state.db")
        specs = {
            name: (BotSpec(name, "paper", symbol, "ema_cross", ("1m",), 3), True)
            for name, symbol in (("eth", "ETH/USDT:USDT"), ("btc", "BTC/USDT:USDT"))
        }
        self.supervisor = Supervisor(specs, no_runner, self.store, self.clock)
        self.feeds = {"fast": Feed(1, 499.0), "slow": Feed(60, 400.0)}
        self.notifier = Notifier(watchdog_interval_s)
        self.monitor = HealthMonitor(
            self.supervisor,
            self.feeds,  # type: ignore[arg-type]
            {"eth": "fast", "btc": "slow"},
            LIMITS,
            self.clock,
            self.notifier,  # type: ignore[arg-type]
        )
        self.slot = {s.spec.name: s for s in self.supervisor.slots()}

    def running(self, name: str, *, since: float, state: BotState = BotState.RUNNING) -> None:
        self.store.set_desired_state(name, DesiredState.RUNNING)
        slot = self.slot[name]
        slot.state, slot.launched_monotonic = state, since

    def holding(self, name: str, qty: str) -> None:
        """No runner task is live here, so the supervisor reads the position from the store."""
        spec = self.slot[name].spec
        position = Position(spec.account, spec.symbol, Decimal(qty), Decimal(100), Decimal(100), 3)
        self.store.save_position(name, position)


def test_a_bot_that_should_run_is_judged_by_its_own_feeds_pace(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.running("eth", since=world.clock.t - 12)  # 1 s feed: bound 13 s
    world.running("btc", since=world.clock.t - 150)  # 60 s feed: bound 190 s
    assert world.monitor.verdict() == HealthVerdict(True, ())
    world.clock.t += 1.5
    assert world.monitor.verdict().reasons == (
        "stale bot eth: last candle 14s ago, bound 13s (running)",
    )
    world.feeds["fast"].last_event_monotonic = world.clock.t - 13.5
    assert world.monitor.verdict().reasons == (
        "feed fast silent for 14s",
        "stale bot eth: last candle 14s ago, bound 13s (running)",
    )


def test_a_feed_no_running_bot_listens_to_is_not_judged(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.feeds["fast"].last_event_monotonic = 0.0  # silent for ages
    world.slot["eth"].state = BotState.STOPPED  # its only bot is not meant to run
    world.running("btc", since=world.clock.t)
    assert world.monitor.verdict().healthy
    world.store.set_desired_state("eth", DesiredState.RUNNING)
    assert "feed fast silent for 500s" in world.monitor.verdict().reasons


def test_a_feed_that_has_not_started_and_a_bot_never_launched(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.feeds["slow"].last_event_monotonic = None
    world.store.set_desired_state("btc", DesiredState.RUNNING)  # meant to run, never launched
    assert world.monitor.verdict().reasons == (
        "stale bot btc: last candle never, bound 190s (stopped)",
    )


def test_a_starting_bot_counts_from_its_launch(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.running("eth", since=world.clock.t - 60, state=BotState.STARTING)
    assert world.monitor.verdict().healthy  # exactly the start timeout
    world.clock.t += 1
    assert world.monitor.verdict().reasons == ("bot eth stuck starting for 61s",)


def test_loop_lag_shows_at_once_when_the_probe_is_overdue(tmp_path: Path) -> None:
    world = World(tmp_path)
    assert world.monitor.loop_lag_s == 0.0  # no probe yet: nothing measured
    world.monitor._last_probe = world.clock.t
    world.clock.t += LOOP_PROBE_INTERVAL_S + 3
    assert world.monitor.loop_lag_s == pytest.approx(3.0)
    assert world.monitor.verdict().reasons == ("event loop lag 3.0s > 2s",)
    world.clock.t -= 3
    assert world.monitor.loop_lag_s == 0.0, "on time is no lag"


def test_the_probe_measures_how_late_the_loop_wakes_it(tmp_path: Path) -> None:
    world = World(tmp_path)

    async def story() -> None:
        probe = asyncio.create_task(world.monitor.probe_loop())
        await asyncio.sleep(0)
        began = world.clock.t
        assert world.monitor._last_probe == began
        world.clock.t += LOOP_PROBE_INTERVAL_S + 4  # the loop was blocked for 4 s
        await until(lambda: world.monitor._loop_lag_s > 0)
        assert world.monitor._loop_lag_s == pytest.approx(4.0)
        assert world.monitor._last_probe == world.clock.t, "the next probe has begun"
        world.clock.t += LOOP_PROBE_INTERVAL_S  # then on time again
        await until(lambda: world.monitor._loop_lag_s == 0)
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe

    asyncio.run(story())


def test_the_status_line_counts_bots_by_state_and_open_positions(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.running("eth", since=world.clock.t)
    world.running("btc", since=world.clock.t)
    world.holding("eth", "0.05")
    healthy = world.monitor.verdict()
    assert world.monitor.summary(healthy) == "healthy; bots: 2 running; 1 open position"
    world.holding("btc", "-0.002")
    world.slot["btc"].state = BotState.ERRORED
    world.slot["btc"].error = "ValueError: boom"
    assert world.monitor.summary(healthy) == (
        "healthy; bots: 1 running, 1 errored; 2 open positions; last problem: btc: ValueError: boom"
    )
    world.holding("eth", "0")
    world.holding("btc", "0")
    sick = HealthVerdict(False, ("event loop lag 3.0s > 2s", "another"))
    assert world.monitor.summary(sick) == (
        "UNHEALTHY; bots: 1 running, 1 errored; 0 open positions; "
        "last problem: event loop lag 3.0s > 2s"
    )


def test_the_status_line_of_a_daemon_without_bots(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.supervisor._slots.clear()
    assert world.monitor.summary(HealthVerdict(True)) == "healthy; bots: none; 0 open positions"


async def until(check: Callable[[], Any], within_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while not (value := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within_s} s")
        await asyncio.sleep(0.005)
    return value


def reporting(world: World, body: Callable[[], Awaitable[None]]) -> None:
    async def story() -> None:
        task = asyncio.create_task(world.monitor.report())
        try:
            await body()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(story())


def test_the_watchdog_is_pinged_only_while_healthy_every_third_of_its_interval(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, watchdog_interval_s=0.9)
    world.running("eth", since=world.clock.t)
    notifier = world.notifier

    async def body() -> None:
        await until(lambda: len(notifier.statuses()) >= 3)
        assert [kind for kind, _, _ in notifier.sent[:4]] == [
            "WATCHDOG",
            "STATUS",
            "WATCHDOG",
            "STATUS",
        ]
        stamps = [at for kind, _, at in notifier.sent if kind == "STATUS"]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(0.29 <= gap < 1.5 for gap in gaps), gaps  # 0.9 s / 3, never 2 s
        world.clock.t += 100  # eth's 1 s feed falls silent: unhealthy
        sick_from = len(notifier.sent)
        await until(lambda: any("UNHEALTHY" in s for s in notifier.statuses()[-1:]))
        await until(lambda: len(notifier.sent) >= sick_from + 2)  # a second report: still live
        assert [kind for kind, _, _ in notifier.sent[sick_from:]] == ["STATUS", "STATUS"]
        assert notifier.sent[-1][1].startswith("UNHEALTHY; bots: 1 stopped, 1 running")

    reporting(world, body)


def test_without_a_watchdog_the_status_is_still_reported(tmp_path: Path) -> None:
    world = World(tmp_path, watchdog_interval_s=None)

    async def body() -> None:
        await until(lambda: notifier.statuses())
        assert notifier.statuses() == ["healthy; bots: 2 stopped; 0 open positions"]

    notifier = world.notifier
    reporting(world, body)


def test_a_change_of_verdict_is_logged_once_each_way_and_a_steady_one_never(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, watchdog_interval_s=0.06)  # a report every 20 ms
    world.running("eth", since=world.clock.t)
    notifier = world.notifier

    async def reports(count: int) -> None:
        seen = len(notifier.statuses())
        await until(lambda: len(notifier.statuses()) >= seen + count)

    async def body() -> None:
        await reports(3)  # healthy from the start: nothing to say
        world.clock.t += 100  # stale
        await reports(3)
        world.slot["eth"].launched_monotonic = world.clock.t  # it moves again
        world.feeds["fast"].last_event_monotonic = world.clock.t
        await reports(3)

    with capture_logs() as logs:
        reporting(world, body)
    said = [(e["event"], e.get("reasons")) for e in logs if e["event"].startswith("health_")]
    assert said == [
        (
            "health_failed",
            [
                "feed fast silent for 101s",
                "stale bot eth: last candle 100s ago, bound 13s (running)",
            ],
        ),
        ("health_recovered", None),
    ]


def test_an_errored_bot_is_reported_with_its_error(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.running("btc", since=world.clock.t - 200, state=BotState.ERRORED)
    world.slot["btc"].error = "RuntimeError: plugin bug"
    assert world.monitor.verdict().reasons == (
        "stale bot btc: last candle 200s ago, bound 190s (errored: RuntimeError: plugin bug)",
    )


def test_a_store_file_deleted_or_replaced_makes_the_daemon_unhealthy_at_once(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    store_file = tmp_path / "state.db"
    monitor = HealthMonitor(
        world.supervisor,
        world.feeds,  # type: ignore[arg-type]
        {"eth": "fast", "btc": "slow"},
        LIMITS,
        world.clock,
        world.notifier,  # type: ignore[arg-type]
        store_file=store_file,
    )
    assert monitor.store_problem() is None and monitor.verdict().healthy
    store_file.rename(tmp_path / "moved.db")
    deleted = f"state store {store_file} was deleted; nothing written now survives a restart"
    assert monitor.store_problem() == deleted
    verdict = monitor.verdict()
    assert (verdict.healthy, verdict.reasons[0]) == (False, deleted)
    store_file.write_bytes(b"another file")
    assert monitor.store_problem() == (
        f"state store {store_file} was replaced by another file; "
        "nothing written now survives a restart"
    )
    assert world.monitor.store_problem() is None, "a monitor told of no file never judges one"


def test_an_unprotected_position_is_counted_from_when_it_was_first_seen_bare(
    tmp_path: Path,
) -> None:
    world = World(tmp_path)
    world.holding("eth", "0.05")  # a stopped bot's position still needs its stop
    assert world.monitor.verdict().healthy, "just seen: within the grace"
    world.clock.t += 6
    bare = "unprotected position of bot eth: no resting stop covers it for 6s"
    assert world.monitor.verdict() == HealthVerdict(False, (bare,), alive=True)
    stop = OrderIntent(
        "eth",
        "paper",
        "ETH/USDT:USDT",
        "tcstop-1",
        Side.SELL,
        OrderType.STOP_MARKET,
        Decimal("0.05"),
        None,
        True,
        datetime(2025, 5, 10, tzinfo=UTC),
        purpose="stop",
        trigger_price=Decimal(90),
    )
    world.store.record_intent(stop)
    world.store.update_order(
        Order(
            "paper",
            stop.symbol,
            stop.client_order_id,
            stop.side,
            stop.type,
            stop.qty,
            None,
            True,
            OrderStatus.OPEN,
            bot="eth",
            trigger_price=stop.trigger_price,
        )
    )
    assert world.monitor.verdict().healthy, "covered by a resting stop"
    world.clock.t += 20
    world.store.update_order(
        Order(
            "paper",
            stop.symbol,
            stop.client_order_id,
            stop.side,
            stop.type,
            stop.qty,
            None,
            True,
            OrderStatus.CANCELED,
            bot="eth",
        )
    )
    assert world.monitor.verdict().healthy, "bare again: counted afresh, not from the first time"
    world.clock.t += 5.5
    assert world.monitor.verdict().reasons == (
        "unprotected position of bot eth: no resting stop covers it for 6s",
    )
    world.holding("btc", "-0.002")
    world.clock.t += 1
    assert world.monitor.verdict().reasons == (
        "unprotected position of bot eth: no resting stop covers it for 6s",
    ), "btc's own clock starts when btc is first seen bare"
