"""The daemon's wall-clock duties on APScheduler's asyncio scheduler, in the daemon's own loop.

Some work belongs to the clock rather than to candles: the risk-day rollover and its report, the
periodic check that the store still agrees with the exchange, funding collection. APScheduler
keeps the times (cron and interval triggers, coalescing, one instance at a time); this adapter
adds the one thing an in-memory scheduler cannot know: what was missed while the daemon was
down. Each duty's last run is kept by the caller's `LastRuns` (the state store), and a duty whose
trigger fired during the downtime runs once at start, not once per missed time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

Duty = Callable[[], Awaitable[None]]


class LastRuns(Protocol):
    """Where a duty's last run is remembered across restarts."""

    def duty_last_run(self, name: str) -> datetime | None: ...
    def set_duty_last_run(self, name: str, at: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class ScheduledDuty:
    name: str
    description: str
    trigger: str
    next_run: datetime | None


class DutyScheduler:
    def __init__(
        self,
        last_runs: LastRuns,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        host_zone: tzinfo | None = None,
    ) -> None:
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._last_runs = last_runs
        self._now = now
        self._descriptions: dict[str, str] = {}
        self.host_zone = host_zone or datetime.now().astimezone().tzinfo or UTC
        self._log = structlog.get_logger()

    def add(
        self, name: str, description: str, trigger: BaseTrigger, duty: Duty, *, catch_up: bool
    ) -> None:
        """Schedule `duty`; with `catch_up`, a fire time missed since its last run (while the
        daemon was down) makes it run once right at start."""
        now = self._now()
        options: dict[str, Any] = {}
        if catch_up and self._missed(name, trigger, now):
            options["next_run_time"] = now
        self._scheduler.add_job(
            self._runner(name, duty), trigger, id=name, name=description, **options
        )
        self._descriptions[name] = description

    def _missed(self, name: str, trigger: BaseTrigger, now: datetime) -> bool:
        last = self._last_runs.duty_last_run(name)
        if last is None:
            return False  # never ran here: nothing can have been missed
        due = trigger.get_next_fire_time(None, last + timedelta(microseconds=1))
        return due is not None and due <= now

    def _runner(self, name: str, duty: Duty) -> Duty:
        async def run() -> None:
            began = self._now()
            try:
                await duty()
            except Exception as e:  # one failed run must not end the duty
                self._log.error("duty_failed", duty=name, error=f"{type(e).__name__}: {e}")
            finally:
                self._last_runs.set_duty_last_run(name, began)

        return run

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._scheduler.shutdown(wait=False)

    def duties(self) -> list[ScheduledDuty]:
        return [
            ScheduledDuty(job.id, job.name, str(job.trigger), job.next_run_time)
            for job in sorted(self._scheduler.get_jobs(), key=lambda j: j.id)
        ]

    def as_rows(self) -> list[dict[str, Any]]:
        """Each duty with its next run in UTC and in the host's zone, for `tradectl schedule`."""
        rows = []
        for duty in self.duties():
            nxt = duty.next_run
            rows.append(
                {
                    "name": duty.name,
                    "description": duty.description,
                    "trigger": duty.trigger,
                    "next_run_utc": None if nxt is None else nxt.astimezone(UTC).isoformat(),
                    "next_run_local": None
                    if nxt is None
                    else nxt.astimezone(self.host_zone).isoformat(),
                    "last_run_utc": _iso(self._last_runs.duty_last_run(duty.name)),
                }
            )
        return rows


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()
