"""On the shipped paper default, a position always has exactly one resting stop covering it.

The daemon trades flat out until its bot holds a protected position, is killed with
SIGKILL and comes back on a slow replay (no candle for a minute), so that whatever the
restart does can be seen: it must neither lose nor duplicate the stop. Stopping the bot
keeps the stop resting; a flatten then leaves no order and no position.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tests.conftest import eventually
from tests.integration.daemon_process import DaemonProcess
from tests.store_under_test import current

BOT = "eth-ema"
MakeDaemon = Callable[..., DaemonProcess]


def resting(daemon: DaemonProcess, purpose: str) -> list[dict[str, Any]]:
    return [
        o
        for o in daemon.cli_json("orders")
        if o["purpose"] == purpose and o["status"] == "open" and o["bot"] == BOT
    ]


def placed_since_last_start(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """Protective intents recorded since the bot last started."""
    with current().opened(daemon.state_dir) as store:
        events = store.events(BOT, limit=1 << 20)
    started = max(
        e["id"] for e in events if e["kind"] in ("bot_resumed", "bot_autostarted", "bot_adopted")
    )  # before its launch (adopted: a fleet node took its lease)
    return [
        e
        for e in events
        if e["id"] > started
        and e["kind"] == "order_intent_recorded"
        and e["purpose"] in ("stop", "take_profit")
    ]


def protected(daemon: DaemonProcess) -> dict[str, Any] | None:
    bot = daemon.bot(BOT)
    held = bot["position_side"] != "flat" and bot["protected"]
    return bot if held and len(resting(daemon, "take_profit")) == 1 else None


def test_a_paper_position_keeps_one_stop_across_kill_9_and_stop_and_flatten_clears_all(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(speed=600)
    daemon.start()
    eventually(lambda: protected(daemon), timeout=90)
    daemon.signal(signal.SIGKILL)
    daemon.wait()

    slow = daemon.config.read_text().replace("speed = 600 ", "speed = 1 ")
    daemon.config.write_text(slow)  # one candle a minute: the restart alone is seen
    daemon.start()
    eventually(lambda: daemon.bot(BOT)["state"] == "running", timeout=30)
    after = daemon.bot(BOT)
    if after["position_side"] == "flat":  # the replay closed it between the check and the kill
        assert resting(daemon, "stop") == [] and after["protected"] is True
    else:
        [stop] = resting(daemon, "stop")
        assert stop["type"] == "stop_market" and stop["reduce_only"] is True
        assert Decimal(stop["qty"]) == abs(Decimal(after["position_qty"]))
        assert stop["side"] == ("sell" if after["position_side"] == "long" else "buy")
        assert after["protected"] is True
    assert placed_since_last_start(daemon) == [], "the restart placed nothing: none was lost"
    health = daemon.cli("health")
    assert "unprotected" not in health.stdout, health.stdout

    if after["position_side"] != "flat":
        assert daemon.cli("stop", BOT).returncode == 0
        assert len(resting(daemon, "stop")) == 1, "a stopped bot keeps its stop resting"
        assert daemon.bot(BOT)["protected"] is True
    done = daemon.cli("flatten", BOT, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [o for o in daemon.cli_json("orders") if o["status"] == "open"] == []
    assert daemon.cli_json("positions") == []
