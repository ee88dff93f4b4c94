"""Status tells the truth after a flatten: the halted bot shows the position the flatten
left (flat), not its cancelled runner's last look, and health counts the same."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, eventually
from tests.integration.crash_harness import FLIPPER, config_text
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread, real_candles

MakeDaemon = Callable[..., DaemonProcess]


def flatten(daemon: DaemonProcess, bot: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "tradectl.cli", "flatten", bot, "--yes", "--json"],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=daemon.config.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def shows_flat_after_flatten(daemon: DaemonProcess, bot: str) -> None:
    eventually(lambda: daemon.bot(bot)["position_side"] != "flat", timeout=90)
    result = flatten(daemon, bot)
    assert result["flat"] and result["halted"] == [bot]
    assert daemon.cli_json("positions") == []
    status = daemon.bot(bot)
    assert status["state"] == "halted"
    assert (status["position_side"], status["position_qty"]) == ("flat", "0"), status
    assert status["entry_price"] is None
    summary = daemon.cli_json("health")["summary"]
    assert "0 open positions" in summary, summary


def test_a_flattened_paper_bot_shows_flat_and_health_agrees(make_daemon: MakeDaemon) -> None:
    shows_flat_after_flatten(make_daemon().start(), "eth-ema")


@pytest.mark.usefixtures("daemon_store")  # on each store of TRADECTL_TEST_STORES
def test_a_flattened_bot_on_the_loopback_exchange_shows_flat(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "flipper.py").write_text(FLIPPER)
    market = ServerThread(
        "ETHUSDT",
        real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"),
        interval_s=0.2,
    )
    url = market.start()
    socket_dir = short_socket_dir()
    config = tmp_path / "config.toml"
    config.write_text(config_text(url, plugins))
    daemon = DaemonProcess(
        config,
        tmp_path / "state",
        socket_dir / "control.sock",
        tmp_path / "daemon.log",
        extra_env={"TRADECTL_LOOPBACK_API_KEY": API_KEY, "TRADECTL_LOOPBACK_SECRET": API_SECRET},
    )
    try:
        daemon.start()
        shows_flat_after_flatten(daemon, "eth-flip")
    finally:
        daemon.stop()
        market.stop()
        remove(socket_dir)
