"""Alerts delivered through Apprise: Telegram, Slack, Discord, e-mail, ntfy, JSON webhooks...

Apprise does the delivering, and the routing, retrying and time-keeping too: each URL is added
with one tag per severity it wants (a `warning` URL gets `warning` and `critical`), an alert is
sent to the tag of its severity with Apprise's retry suffix (`warning:2`), and the whole call is
bounded by Apprise's own `timeout`. What this adapter adds is what a trading daemon needs
around it: `notify` never waits (alerts queue up and a background task delivers them, so a
candle or a flatten never waits on a receiver that hangs), identical alerts are throttled,
and a delivery that still failed is handed to `on_failure` (the daemon journals it).

URLs carry secrets (bot tokens, webhook keys). They live only inside Apprise; everything this
module logs, returns or journals names a target by Apprise's privacy form of its URL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import apprise
import structlog

from daemon.domain.alerts import Alert, AlertThrottle, Severity

DELIVERY_TIMEOUT_S = 15.0  # one alert, every target, every retry
RETRIES = 2  # after the first attempt, per target
QUEUE_SIZE = 256
_NOTIFY_TYPE = {
    Severity.INFO: apprise.NotifyType.INFO,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
}

# Apprise logs through the standard library; its lines would bypass our redaction.
logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)


class AlertConfigError(ValueError):
    """An alert URL Apprise cannot use; the message names it without its secrets."""


@dataclass(frozen=True, slots=True)
class AlertTarget:
    url: str = field(repr=False)  # may hold a token: never logged
    min_severity: Severity = Severity.INFO


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one alert went to one target; `target` is the URL with its secrets masked."""

    target: str
    ok: bool
    attempts: int
    status: str  # "delivered", "failed" or "timed out"


FailureHandler = Callable[[Alert, list[Delivery]], None]


class AppriseAlerter:
    def __init__(
        self,
        targets: Sequence[AlertTarget],
        *,
        throttle: AlertThrottle | None = None,
        on_failure: FailureHandler | None = None,
        timeout_s: float = DELIVERY_TIMEOUT_S,
        retries: int = RETRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._apprise = apprise.Apprise()
        self.targets: list[str] = []
        for number, target in enumerate(targets, 1):
            tags = [s.name.lower() for s in Severity if s >= target.min_severity]
            if not self._apprise.add(target.url, tag=tags):
                raise AlertConfigError(
                    f"alert URL #{number} is not one Apprise understands "
                    "(see https://github.com/caronc/apprise/wiki for the schemes)"
                )
            added = self._apprise[len(self._apprise) - 1]
            self.targets.append(str(added.url(privacy=True)))  # type: ignore[no-untyped-call]
        self._throttle = throttle or AlertThrottle()
        self._on_failure = on_failure
        self._timeout_s = timeout_s
        self._retries = retries
        self._monotonic = monotonic
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(QUEUE_SIZE)
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0
        self._log = structlog.get_logger()

    def __len__(self) -> int:
        return len(self.targets)

    def notify(self, alert: Alert) -> None:
        """Queue an alert and return at once; throttled repeats are held back here."""
        if not self.targets:
            return
        admitted = self._throttle.admit(alert, self._monotonic())
        if admitted is None:
            return
        if self._queue.full():  # a receiver down for long: keep the newest news
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
        self._idle.clear()
        self._queue.put_nowait(admitted)

    async def run(self) -> None:
        """Deliver queued alerts one after another until cancelled."""
        while True:
            alert = await self._queue.get()
            try:
                deliveries = await self.deliver(alert)
                failed = [d for d in deliveries if not d.ok]
                if failed:
                    self._log.warning(
                        "alert_delivery_failed",
                        kind=alert.kind,
                        bot=alert.bot,
                        targets=[d.target for d in failed],
                        status=[d.status for d in failed],
                    )
                    if self._on_failure is not None:
                        self._on_failure(alert, failed)
            finally:
                self._queue.task_done()
                if self._queue.empty():
                    self._idle.set()

    async def deliver(self, alert: Alert) -> list[Delivery]:
        """Send one alert now to every target that wants its severity; one Delivery each."""
        tag = f"{alert.severity.name.lower()}:{self._retries}" if self._retries else None
        result = await self._apprise.async_notify(
            body=alert.body,
            title=alert.title,
            notify_type=_NOTIFY_TYPE[alert.severity],
            tag=tag or alert.severity.name.lower(),
            timeout=self._timeout_s,
        )
        deliveries = []
        for service in result:
            status = service.status
            deliveries.append(
                Delivery(
                    target=service.url,
                    ok=bool(service),
                    attempts=len(service.attempts),
                    status="delivered"
                    if bool(service)
                    else "timed out"
                    if status == apprise.AppriseResultStatus.TIMEOUT
                    else "failed",
                )
            )
        return deliveries

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every queued alert has been tried; False when `timeout_s` ran out."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
