"""Alerts reach a real HTTP receiver on loopback through Apprise, and never hold anyone up."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from daemon.adapters.apprise_alerts import (
    AlertConfigError,
    AlertTarget,
    AppriseAlerter,
    Delivery,
)
from daemon.domain.alerts import Alert, AlertThrottle, Severity

HALT = Alert(
    "bot_halted",
    Severity.CRITICAL,
    "tradectl: eth-ema halted",
    "daily loss limit: today's PnL -20.31 USDT reached -20 USDT",
    bot="eth-ema",
)


@dataclass
class Receiver:
    """A webhook endpoint that records what arrives, or hangs or fails when told to."""

    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    hang_s: float = 0.0
    fail_with: int | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if self.fail_with is not None:
            return web.Response(status=self.fail_with)
        self.received.append({"path": request.path, **json.loads(await request.read())})
        return web.Response(text="ok")

    def url(self, path: str = "hook", query: str = "") -> str:
        return f"json://127.0.0.1:{self.port}/{path}{'?' + query if query else ''}"


@asynccontextmanager
async def receiver(**options: Any) -> AsyncIterator[Receiver]:
    box = Receiver(**options)
    app = web.Application()
    app.router.add_post("/{tail:.*}", box.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield box
    finally:
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Any, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_a_halt_alert_reaches_the_webhook_with_its_title_body_and_type() -> None:
    async def main() -> None:
        async with receiver() as hook:
            alerter = AppriseAlerter([AlertTarget(hook.url())])
            task = asyncio.create_task(alerter.run())
            alerter.notify(HALT)
            assert await alerter.drain(10)
            task.cancel()
            assert len(hook.received) == 1
            sent = hook.received[0]
            assert sent["title"] == "tradectl: eth-ema halted"
            assert "reached -20 USDT" in sent["message"]
            assert sent["type"] == "failure"  # critical

    asyncio.run(main())


def test_each_url_gets_only_the_severities_it_asked_for() -> None:
    async def main() -> None:
        async with receiver() as hook:
            alerter = AppriseAlerter(
                [
                    AlertTarget(hook.url("everything")),
                    AlertTarget(hook.url("pager"), Severity.CRITICAL),
                ]
            )
            report = Alert("daily_report", Severity.INFO, "daily report", "PnL +3.20 USDT")
            assert [d.ok for d in await alerter.deliver(report)] == [True]
            assert {d.ok for d in await alerter.deliver(HALT)} == {True}
            paths = sorted(r["path"] for r in hook.received)
            assert paths == ["/everything", "/everything", "/pager"]

    asyncio.run(main())


def test_a_hanging_receiver_does_not_hold_up_the_caller_and_times_out() -> None:
    async def main() -> None:
        async with receiver(hang_s=4) as hook:
            alerter = AppriseAlerter([AlertTarget(hook.url())], timeout_s=1.0, retries=0)
            failures: list[list[Delivery]] = []
            alerter._on_failure = lambda alert, failed: failures.append(failed)
            task = asyncio.create_task(alerter.run())
            began = time.monotonic()
            for n in range(50):  # a burst, as a flatten of many symbols would send
                alerter.notify(Alert("flatten", Severity.WARNING, "flatten", f"symbol {n}"))
            assert time.monotonic() - began < 0.05  # notify never waits on the receiver
            ticks = 0
            while ticks < 20:  # the event loop keeps turning meanwhile
                await asyncio.sleep(0.01)
                ticks += 1
            await until(lambda: failures)
            task.cancel()
            assert failures[0][0].status in ("timed out", "failed")
            assert failures[0][0].target.startswith("json://127.0.0.1")

    asyncio.run(main())


def test_a_refusing_receiver_is_retried_then_reported_without_its_secret() -> None:
    async def main() -> None:
        url = f"json://127.0.0.1:{closed_port()}/hook?token=s3cr3t-t0k3n"
        alerter = AppriseAlerter([AlertTarget(url)], retries=2, timeout_s=5)
        deliveries = await alerter.deliver(HALT)
        assert len(deliveries) == 1
        assert not deliveries[0].ok and deliveries[0].attempts == 3
        assert "s3cr3t" not in repr(deliveries) and "s3cr3t" not in " ".join(alerter.targets)
        assert "s3cr3t" not in repr(AlertTarget(url))

    asyncio.run(main())


def test_a_server_error_counts_as_a_failed_delivery() -> None:
    async def main() -> None:
        async with receiver(fail_with=500) as hook:
            alerter = AppriseAlerter([AlertTarget(hook.url())], retries=1)
            (delivery,) = await alerter.deliver(HALT)
            assert (delivery.ok, delivery.status, delivery.attempts) == (False, "failed", 2)

    asyncio.run(main())


def test_identical_alerts_are_throttled_and_the_next_one_says_how_many() -> None:
    async def main() -> None:
        now = [0.0]
        async with receiver() as hook:
            alerter = AppriseAlerter(
                [AlertTarget(hook.url())],
                throttle=AlertThrottle(window_s=300),
                monotonic=lambda: now[0],
            )
            task = asyncio.create_task(alerter.run())
            unprotected = Alert("unprotected", Severity.WARNING, "unprotected", "eth-ema: no stop")
            for second in (0, 10, 20, 30):
                now[0] = second
                alerter.notify(unprotected)
            alerter.notify(Alert("unprotected", Severity.WARNING, "unprotected", "btc: no stop"))
            now[0] = 301
            alerter.notify(unprotected)
            assert await alerter.drain(10)
            task.cancel()
            messages = [r["message"] for r in hook.received]
            assert messages == [
                "eth-ema: no stop",
                "btc: no stop",
                "eth-ema: no stop\n(3 identical alerts held back before this)",
            ]

    asyncio.run(main())


def test_a_url_apprise_does_not_know_is_refused_without_echoing_it() -> None:
    with pytest.raises(AlertConfigError, match="alert URL #2") as refused:
        AppriseAlerter([AlertTarget("json://localhost/x"), AlertTarget("nosuch://t0ken@x")])
    assert "t0ken" not in str(refused.value)


def test_without_targets_notify_is_a_no_op() -> None:
    async def main() -> None:
        alerter = AppriseAlerter([])
        alerter.notify(HALT)
        assert await alerter.drain(0.1)
        assert len(alerter) == 0

    asyncio.run(main())
