"""Feeds the health verdict with live figures, and tells systemd the truth on a timer.

The watchdog ping is sent only while `verdict()` is healthy, and `tradectl health`
answers with the same `verdict()`, so the two can never disagree.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import structlog

from daemon.domain.bot_state import BotState
from daemon.domain.health import BotProgress, FeedProgress, HealthLimits, HealthVerdict, assess
from daemon.ports import Clock, MarketFeed
from daemon.runtime.supervisor import Supervisor
from daemon.systemd import SystemdNotifier

LOOP_PROBE_INTERVAL_S = 0.5


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


STATUS_INTERVAL_S = 2.0


class HealthMonitor:
    def __init__(
        self,
        supervisor: Supervisor,
        feeds: Mapping[str, MarketFeed],
        feed_of_bot: Mapping[str, str],
        limits: HealthLimits,
        clock: Clock,
        notifier: SystemdNotifier,
        store_file: Path | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._store_file = store_file
        self._store_identity = _identity(store_file) if store_file is not None else None
        self._feeds = feeds
        self._feed_of_bot = feed_of_bot
        self.limits = limits
        self._clock = clock
        self._notifier = notifier
        self._loop_lag_s = 0.0
        self._last_probe: float | None = None  # None until the probe runs
        self._last_reasons: tuple[str, ...] = ()
        self._unprotected_since: dict[str, float] = {}
        self._log = structlog.get_logger()

    @property
    def loop_lag_s(self) -> float:
        """The last measured lag, or how overdue the probe is now: a loop that was just
        blocked shows it at once, before the probe itself gets to run again."""
        if self._last_probe is None:
            return self._loop_lag_s
        overdue = self._clock.monotonic() - self._last_probe - LOOP_PROBE_INTERVAL_S
        return max(self._loop_lag_s, overdue)

    def verdict(self) -> HealthVerdict:
        now = self._clock.monotonic()
        bots = []
        listened: set[str] = set()
        for slot in self._supervisor.slots():
            name = slot.spec.name
            # A bot held by the preflight waits for its account to be fixed; a restart of the
            # daemon would not fix it, so it must not starve the watchdog (status shows it).
            should_run = self._supervisor.should_run_here(name) and slot.blocked is None
            feed_name = self._feed_of_bot[name]
            if should_run:
                listened.add(feed_name)
            since = slot.last_progress_monotonic()
            bots.append(
                BotProgress(
                    name=name,
                    should_run=should_run,
                    state=slot.state.value,
                    seconds_since_progress=None if since is None else now - since,
                    feed_interval_s=self._feeds[feed_name].expected_interval_s,
                    error=slot.error,
                    unprotected_s=self._unprotected_for(name, now),
                )
            )
        feeds = [
            FeedProgress(
                name=name,
                has_consumers=name in listened,
                seconds_since_event=None
                if feed.last_event_monotonic is None
                else now - feed.last_event_monotonic,
                interval_s=feed.expected_interval_s,
            )
            for name, feed in self._feeds.items()
        ]
        verdict = assess(self.loop_lag_s, bots, feeds, self.limits)
        problem = self.store_problem()
        if problem is None:
            return verdict
        return HealthVerdict(healthy=False, reasons=(problem, *verdict.reasons))

    def store_problem(self) -> str | None:
        """The store file deleted or replaced under us: what we write no longer reaches it
        (or anything a restart would find), so the daemon is unhealthy at once."""
        if self._store_file is None:
            return None
        now = _identity(self._store_file)
        if now == self._store_identity:
            return None
        what = "was deleted" if now is None else "was replaced by another file"
        return f"state store {self._store_file} {what}; nothing written now survives a restart"

    def _unprotected_for(self, name: str, now: float) -> float | None:
        """Seconds since this bot's position was last seen covered by a resting stop."""
        if self._supervisor.protected(name):
            self._unprotected_since.pop(name, None)
            return None
        return now - self._unprotected_since.setdefault(name, now)

    def summary(self, verdict: HealthVerdict) -> str:
        """The one line a person reads in `systemctl status`."""
        counts: dict[str, int] = {}
        positions = 0
        last_error = None
        for slot in self._supervisor.slots():
            counts[slot.state.value] = counts.get(slot.state.value, 0) + 1
            held = self._supervisor.position(slot.spec.name)
            if held is not None:
                positions += held.qty != Decimal(0)
            if slot.error:
                last_error = f"{slot.spec.name}: {slot.error}"
        order = [s.value for s in BotState]
        parts = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
        text = f"{'healthy' if verdict.healthy else 'UNHEALTHY'}; bots: {parts or 'none'}"
        text += f"; {positions} open position{'s' if positions != 1 else ''}"
        problem = verdict.reasons[0] if verdict.reasons else last_error
        if problem:
            text += f"; last problem: {problem}"
        return text

    async def probe_loop(self) -> None:
        """Measure how late the loop wakes us: a busy or blocked loop shows as lag."""
        while True:
            began = self._last_probe = self._clock.monotonic()
            await asyncio.sleep(LOOP_PROBE_INTERVAL_S)
            self._loop_lag_s = max(0.0, self._clock.monotonic() - began - LOOP_PROBE_INTERVAL_S)

    async def report(self) -> None:
        """Ping the watchdog while healthy; keep STATUS= current; log every change of verdict."""
        interval = STATUS_INTERVAL_S
        if self._notifier.watchdog_interval_s is not None:
            interval = min(interval, self._notifier.watchdog_interval_s / 3)
        while True:
            verdict = self.verdict()
            if verdict.alive:
                self._notifier.watchdog()
            if verdict.reasons != self._last_reasons:
                if verdict.healthy:
                    self._log.info("health_recovered")
                else:
                    self._log.error("health_failed", reasons=list(verdict.reasons))
                self._last_reasons = verdict.reasons
            self._notifier.status(self.summary(verdict))
            await asyncio.sleep(interval)
