"""Wall-clock duties on APScheduler in the daemon's loop, with missed runs caught up once."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from daemon.adapters.duty_scheduler import DutyScheduler


class MemoryLastRuns:
    def __init__(self, **runs: datetime) -> None:
        self.runs = dict(runs)

    def duty_last_run(self, name: str) -> datetime | None:
        return self.runs.get(name)

    def set_duty_last_run(self, name: str, at: datetime) -> None:
        self.runs[name] = at


async def until(check: object, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def rollover_trigger() -> CronTrigger:
    return CronTrigger(hour=0, minute=0, timezone=UTC)


def test_an_interval_duty_runs_in_the_daemons_loop_and_remembers_its_last_run() -> None:
    async def main() -> None:
        runs: list[float] = []
        last_runs = MemoryLastRuns()
        scheduler = DutyScheduler(last_runs)

        async def drift_check() -> None:
            runs.append(time.monotonic())

        scheduler.add(
            "reconcile-drift:binance",
            "reconciliation drift check",
            IntervalTrigger(seconds=0.2),
            drift_check,
            catch_up=False,
        )
        scheduler.start()
        await until(lambda: len(runs) >= 3)
        scheduler.shutdown()
        assert "reconcile-drift:binance" in last_runs.runs
        assert all(b - a > 0.1 for a, b in itertools.pairwise(runs))

    asyncio.run(main())


def test_a_rollover_missed_while_the_daemon_was_down_runs_once_at_start() -> None:
    async def main() -> None:
        now = datetime.now(UTC)
        three_days_ago = now - timedelta(days=3)  # three midnights missed
        last_runs = MemoryLastRuns(rollover=three_days_ago)
        runs: list[datetime] = []
        scheduler = DutyScheduler(last_runs)

        async def rollover() -> None:
            runs.append(datetime.now(UTC))

        scheduler.add("rollover", "risk-day rollover", rollover_trigger(), rollover, catch_up=True)
        scheduler.start()
        await until(lambda: runs)
        await asyncio.sleep(0.3)  # no second catch-up run follows the first
        row = scheduler.as_rows()[0]
        scheduler.shutdown()
        assert len(runs) == 1
        assert last_runs.runs["rollover"] > three_days_ago
        assert datetime.fromisoformat(row["next_run_utc"]) > now  # back on its daily beat

    asyncio.run(main())


def test_nothing_runs_at_start_when_nothing_was_missed() -> None:
    async def main() -> None:
        now = datetime.now(UTC)
        ran: list[str] = []

        async def rollover() -> None:
            ran.append("rollover")

        for last in (None, now - timedelta(seconds=1)):
            runs = MemoryLastRuns() if last is None else MemoryLastRuns(rollover=last)
            scheduler = DutyScheduler(runs)
            trigger = CronTrigger(hour=(now.hour + 12) % 24, minute=0, timezone=UTC)
            scheduler.add("rollover", "risk-day rollover", trigger, rollover, catch_up=True)
            scheduler.start()
            await asyncio.sleep(0.3)
            scheduler.shutdown()
        assert ran == []

    asyncio.run(main())


def test_a_failing_duty_keeps_its_schedule() -> None:
    async def main() -> None:
        attempts: list[int] = []
        scheduler = DutyScheduler(MemoryLastRuns())

        async def flaky() -> None:
            attempts.append(1)
            raise ConnectionError("exchange down")

        scheduler.add("drift", "drift check", IntervalTrigger(seconds=0.1), flaky, catch_up=False)
        scheduler.start()
        await until(lambda: len(attempts) >= 3)
        scheduler.shutdown()

    asyncio.run(main())


def test_the_listing_gives_each_duty_its_next_run_in_utc_and_the_host_zone() -> None:
    async def main() -> None:
        scheduler = DutyScheduler(MemoryLastRuns(), host_zone=ZoneInfo("Asia/Tokyo"))

        async def nothing() -> None:
            return None

        scheduler.add(
            "rollover", "risk-day rollover at 00:00 UTC", rollover_trigger(), nothing, catch_up=True
        )
        scheduler.add("drift", "drift check", IntervalTrigger(minutes=5), nothing, catch_up=False)
        scheduler.start()
        rows = {r["name"]: r for r in scheduler.as_rows()}
        scheduler.shutdown()
        rollover = rows["rollover"]
        utc_next = datetime.fromisoformat(rollover["next_run_utc"])
        assert (utc_next.hour, utc_next.minute) == (0, 0)
        assert datetime.fromisoformat(rollover["next_run_local"]).hour == 9  # Tokyo, UTC+9
        assert datetime.fromisoformat(rollover["next_run_local"]) == utc_next
        assert rows["drift"]["description"] == "drift check"
        assert rollover["last_run_utc"] is None

    asyncio.run(main())
