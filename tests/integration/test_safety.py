"""The bad day: flatten from a terminal or from cron, with the daemon up or dead, and a
loss limit that halts a bot for good until someone resumes it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable

from tests.conftest import eventually
from tests.integration.daemon_process import DaemonProcess

BOT = "eth-ema"
MakeDaemon = Callable[..., DaemonProcess]


def holding(daemon: DaemonProcess) -> dict[str, object]:
    return eventually(lambda: (b := daemon.bot(BOT))["position_side"] != "flat" and b, timeout=90)


def flatten(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """As cron runs it: no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "tradectl.cli", "flatten", *args],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=daemon.config.parent,
    )


def test_flatten_all_ends_flat_is_harmless_twice_and_halts_survive_a_restart(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon().start()
    holding(daemon)
    first = flatten(daemon, "--all", "--yes", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    result = json.loads(first.stdout)
    assert result["flat"] and result["halted"] == [BOT] and not result.get("direct")
    [eth] = [r for r in result["symbols"] if r["symbol"] == "ETH/USDT:USDT"]
    assert eth["owner"] == BOT and eth["flat"] and eth["closed_qty"] != "0"
    assert daemon.cli_json("positions") == []
    assert daemon.bot(BOT)["state"] == "halted"

    second = flatten(daemon, "--all", "--yes")
    assert second.returncode == 0 and "all flat" in second.stdout, second.stdout + second.stderr

    daemon.stop()
    daemon.start()
    bot = daemon.bot(BOT)
    assert bot["state"] == "halted" and "flatten requested by the operator" in bot["halt_reason"]
    assert daemon.cli("start", BOT).returncode == 1, "a halted bot must not start without resume"
    resumed = daemon.cli("resume", BOT)
    assert resumed.returncode == 0 and "halt cleared (was: flatten requested" in resumed.stdout
    eventually(lambda: daemon.bot(BOT)["state"] == "running")


def test_with_the_daemon_killed_cron_flattens_directly_and_the_halt_holds(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon().start()
    before = holding(daemon)
    daemon.signal(signal.SIGKILL)
    daemon.wait()
    result = flatten(daemon, "--all", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flattening directly" in result.stderr and "all flat" in result.stdout
    assert f"closed {str(before['position_qty']).lstrip('-')}" in result.stdout
    again = flatten(daemon, "--all", "--yes")
    assert again.returncode == 0 and "all flat" in again.stdout, again.stdout + again.stderr

    daemon.start()
    assert daemon.bot(BOT)["state"] == "halted"
    assert daemon.cli_json("positions") == []
    assert "direct" in daemon.bot(BOT)["halt_reason"]


def test_flatten_refuses_without_yes_when_not_on_a_terminal(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    result = flatten(daemon, "--all")
    assert result.returncode == 2 and "--yes" in result.stderr
    assert daemon.bot(BOT)["state"] in ("starting", "running"), "nothing may happen on a refusal"


def test_no_direct_refuses_when_the_daemon_is_down(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    result = flatten(daemon, "--all", "--yes", "--no-direct")
    assert result.returncode == 3 and str(daemon.socket) in result.stderr


def test_a_losing_run_reaches_the_daily_loss_limit_and_the_bot_halts_flat(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(speed=0)
    text = daemon.config.read_text().replace(
        "daily_loss_limit_usdt = 20", "daily_loss_limit_usdt = 0.3"
    )
    daemon.config.write_text(text)
    daemon.start()
    halted = eventually(lambda: (b := daemon.bot(BOT))["state"] == "halted" and b, timeout=90)
    assert halted["halt_reason"].startswith("daily loss limit: today's PnL -")
    assert halted["desired_state"] == "halted"
    eventually(lambda: daemon.cli_json("positions") == [], timeout=30)
    assert "loss_limit_reached" in daemon.log()
    daemon.stop()
    daemon.start()
    assert daemon.bot(BOT)["state"] == "halted", "the halt survives a restart"
