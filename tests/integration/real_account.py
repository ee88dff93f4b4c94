"""A daemon with a real-exchange account on a loopback server (in a thread of the test) and a
paper account beside it, so a test can show what one account's trouble does to the other."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.integration.crash_harness import FLIPPER
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread, real_candles
from tests.store_under_test import current

LIVE_BOT, PAPER_BOT = "eth-live", "eth-paper"
ETH_FILE = REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"


def config_text(
    url: str,
    plugins: Path,
    *,
    kind: str = "binanceusdm",
    leverage: int = 3,
    max_leverage: int = 3,
    extra_account: str = "",
    extra_risk: str = "",
) -> str:
    return f"""
[daemon]
log_format = "json"

[risk]
max_leverage = {max_leverage}
max_position_usdt = 50
daily_loss_limit_usdt = 1000
account_daily_loss_limit_usdt = 1000
{extra_risk}

[strategies]
user_dir = "{plugins}"

[accounts.live]
kind = "{kind}"
credentials = "loopback"
api_base_url = "{url}"
poll_interval_s = 0.05
requests_per_s = 1000
{extra_account}

[accounts.paper]
kind = "paper"

[accounts.paper.replay]
data_dir = "{REPO / "data" / "candles"}"
speed = 120
start = 2025-05-10T00:00:00Z

[bots.{LIVE_BOT}]
account = "live"
symbol = "ETH/USDT:USDT"
strategy = "flipper"
timeframes = ["1m"]
autostart = true
leverage = {leverage}

[bots.{PAPER_BOT}]
account = "paper"
symbol = "ETH/USDT:USDT"
strategy = "flipper"
timeframes = ["1m"]
autostart = true
leverage = 3
"""


@contextmanager
def daemon_on_loopback(
    folder: Path,
    server: Any,
    symbol_id: str = "ETHUSDT",
    password: str | None = None,
    interval_s: float = 0.2,
    **config: Any,
) -> Iterator[tuple[DaemonProcess, ServerThread]]:
    """The loopback `server` fed real ETH candles, and a daemon (not started) trading it."""
    plugins = folder / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "flipper.py").write_text(FLIPPER)
    market = ServerThread(symbol_id, real_candles(ETH_FILE), interval_s=interval_s, server=server)
    url = market.start()
    socket_dir = short_socket_dir()
    path = folder / "config.toml"
    path.write_text(config_text(url, plugins, **config))
    env = {"TRADECTL_LOOPBACK_API_KEY": API_KEY, "TRADECTL_LOOPBACK_SECRET": API_SECRET}
    if password is not None:
        env["TRADECTL_LOOPBACK_PASSWORD"] = password
    daemon = DaemonProcess(
        path, folder / "state", socket_dir / "control.sock", folder / "daemon.log", extra_env=env
    )
    try:
        yield daemon, market
    finally:
        daemon.stop()
        market.stop()
        remove(socket_dir)


def journal(state_dir: Path, kind: str) -> list[tuple[str | None, str]]:
    """(bot, data) of every journal entry of `kind`, oldest first."""
    return current().query(
        state_dir, "SELECT bot, data FROM events WHERE kind = ? ORDER BY id", (kind,)
    )
