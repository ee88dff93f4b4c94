"""The daemon's scheduled duties against the loopback Binance: `tradectl schedule` lists them,
and a trade placed by hand behind the daemon's back shows as drift within one check."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, eventually
from tests.integration.alert_receiver import AlertReceiver
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.integration.test_protection_on_loopback import ALWAYS_LONG
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread, real_candles
from tests.store_under_test import StoreUnderTest, current

BOT = "eth-quiet"
CHECK_EVERY_S = 10

NEVER = '''
"""Never signals: the bot holds nothing unless someone else trades."""
from pydantic import BaseModel, ConfigDict

from strategies.base import Strategy


class NeverParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Never(Strategy):
    name = "never"
    Params = NeverParams

    @property
    def timeframes(self):
        return ("1m",)

    @property
    def warmup(self):
        return {"1m": 2}

    def evaluate(self, frames):
        return None
'''


@dataclass
class Rig:
    market: ServerThread
    daemon: DaemonProcess
    receiver: AlertReceiver


@pytest.fixture
def rig(tmp_path: Path, daemon_store: StoreUnderTest) -> Iterator[Rig]:
    yield from make_rig(tmp_path, "never", NEVER, 0.5)


@pytest.fixture
def trading_rig(tmp_path: Path, daemon_store: StoreUnderTest) -> Iterator[Rig]:
    yield from make_rig(tmp_path, "always_long", ALWAYS_LONG, 0.1)


def make_rig(tmp_path: Path, strategy: str, source: str, interval_s: float) -> Iterator[Rig]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / f"{strategy}.py").write_text(source)
    candles = real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather", 3000)
    market = ServerThread("ETHUSDT", candles, interval_s=interval_s)
    url = market.start()
    receiver = AlertReceiver().__enter__()
    config = tmp_path / "config.toml"
    config.write_text(f"""
[daemon]
log_format = "json"
reconcile_every = "{CHECK_EVERY_S}s"

[risk]
daily_reset_utc = 00:00:00

[strategies]
user_dir = "{plugins}"

[alerts]
urls = ["{receiver.url()}"]

[accounts.binance]
kind = "binanceusdm"
credentials = "loopback"
api_base_url = "{url}"
poll_interval_s = 0.05
requests_per_s = 1000
market_data_transport = "rest"

[bots.{BOT}]
account = "binance"
symbol = "ETH/USDT:USDT"
strategy = "{strategy}"
autostart = true
sessions = ["Mon-Fri 07:00-10:00 Europe/London"]
""")
    socket_dir = short_socket_dir()
    daemon = DaemonProcess(
        config,
        tmp_path / "state",
        socket_dir / "control.sock",
        tmp_path / "daemon.log",
        extra_env={"TRADECTL_LOOPBACK_API_KEY": API_KEY, "TRADECTL_LOOPBACK_SECRET": API_SECRET},
    )
    try:
        yield Rig(market, daemon, receiver)
    finally:
        daemon.stop()
        market.stop()
        receiver.__exit__()
        remove(socket_dir)


def test_schedule_names_the_rollover_and_the_drift_check_with_their_next_runs(rig: Rig) -> None:
    rig.daemon.start()
    schedule = rig.daemon.cli_json("schedule")
    jobs = {job["name"]: job for job in schedule["jobs"]}
    assert set(jobs) == {"rollover", "drift:binance", "funding:binance"}
    now = datetime.now(UTC)
    rollover = datetime.fromisoformat(jobs["rollover"]["next_run_utc"])
    assert rollover == datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    local = datetime.fromisoformat(jobs["rollover"]["next_run_local"])
    assert local == rollover, "the same moment, in the host's zone"
    drift = datetime.fromisoformat(jobs["drift:binance"]["next_run_utc"])
    assert now < drift <= now + timedelta(seconds=CHECK_EVERY_S + 1)
    [session] = schedule["sessions"]
    assert session["bot"] == BOT and session["sessions"] == ["Mon-Fri 07:00-10:00 Europe/London"]
    change = datetime.fromisoformat(session["next_session_change"])
    assert now < change <= now + timedelta(days=3)
    status = rig.daemon.bot(BOT)
    assert status["in_session"] == session["in_session"]
    text = rig.daemon.cli("schedule")
    assert text.returncode == 0 and "drift:binance" in text.stdout and "rollover" in text.stdout


def test_a_manual_trade_behind_the_daemons_back_shows_as_drift_and_is_alerted(rig: Rig) -> None:
    rig.daemon.start()
    eventually(lambda: rig.daemon.bot(BOT)["state"] == "running", timeout=60)
    eventually(lambda: rig.daemon.bot(BOT)["candles_processed"] > 0, timeout=30)
    assert _drift(rig) == []

    rig.market.call(
        lambda s: s._new_order(
            {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.02"}
        )
    )
    rows = eventually(lambda: _drift(rig), timeout=CHECK_EVERY_S + 10)
    whats = " | ".join(r["what"] for r in rows)
    assert "not placed by tradectl" in whats and "BUY".lower() in whats.lower(), whats
    assert all(r["account"] == "binance" for r in rows)
    [alert] = eventually(lambda: rig.receiver.saying("account binance", "not placed by tradectl"))
    assert "0.02" in alert
    # the bot adopts the position at its next candle, without a plan: no stop covers it
    health = json.loads(rig.daemon.cli("health", "--json").stdout)
    assert any("not placed by tradectl" in d for d in health["drift"]), health
    assert "drift (not a health failure)" in rig.daemon.cli("health").stdout
    [unprotected] = eventually(lambda: rig.receiver.saying(f"{BOT} position unprotected"))
    assert "without a resting stop" in unprotected


def test_a_bot_trading_with_its_stops_and_targets_shows_no_drift(trading_rig: Rig) -> None:
    """Entries, resting stops and take-profits that fill between the bot's candles and the
    checks are the bot's own business, never drift."""
    rig = trading_rig
    rig.daemon.start()
    exits_before_checks = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert _drift(rig) == [], _drift(rig)
        exits = _store(
            rig,
            "SELECT count(*) FROM fills f JOIN orders o USING (client_order_id) "
            "WHERE o.purpose IN ('stop', 'take_profit')",
        )
        checks = rig.daemon.cli_json("schedule")["jobs"]
        ran = [j for j in checks if j["name"] == "drift:binance" and j["last_run_utc"]]
        if exits and ran and exits_before_checks is None:
            exits_before_checks = (exits, ran[0]["last_run_utc"])
        if exits_before_checks and ran[0]["last_run_utc"] > exits_before_checks[1]:
            break  # a check ran after an exit filled on the exchange
        time.sleep(0.5)
    assert exits_before_checks is not None, "the window must hold an exit by stop or target"
    assert _drift(rig) == []
    assert rig.receiver.saying("drift") == []


def _store(rig: Rig, sql: str) -> int:
    [(value,)] = current().query(rig.daemon.state_dir, sql)
    return int(value)


def _drift(rig: Rig) -> list[dict[str, Any]]:
    status = rig.daemon.cli_json("status")
    return [r for r in status["daemon"]["reconciliation"] if r.get("kind") == "drift"]


def test_a_clean_start_lists_no_drift(rig: Rig) -> None:
    rig.daemon.start()
    assert json.loads(rig.daemon.cli("status", "--json").stdout)["daemon"]["reconciliation"] == []
