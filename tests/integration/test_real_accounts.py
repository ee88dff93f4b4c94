"""Real accounts as the daemon meets them, on loopback exchanges over HTTP: the preflight
refuses what would fail, by name, without a crash loop and without touching the other
account; a clock off by seconds trades normally."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import eventually
from tests.integration.real_account import LIVE_BOT, PAPER_BOT, daemon_on_loopback, journal
from tests.loopback.binance_usdm import LoopbackBinance
from tests.loopback.bitget_usdt import LoopbackBitget
from tests.loopback.server_thread import API_KEY, API_SECRET

PASSPHRASE = "loopback-passphrase"


def test_hedge_mode_is_refused_clearly_and_the_other_account_keeps_trading(
    tmp_path: Path,
) -> None:
    server = LoopbackBinance(API_KEY, API_SECRET, hedge_mode=True)
    with daemon_on_loopback(tmp_path, server) as (daemon, market):
        daemon.start()
        live = eventually(lambda: (b := daemon.bot(LIVE_BOT))["state"] == "errored" and b)
        assert "preflight position_mode" in live["error"] and "hedge mode" in live["error"]
        eventually(lambda: daemon.bot(PAPER_BOT)["candles_processed"] > 3, timeout=60)
        status = daemon.cli_json("status")
        [failure] = status["daemon"]["accounts"]["live"]["failures"]
        assert failure["check"] == "position_mode" and failure["bot"] is None
        assert daemon.cli("health").returncode == 0, "a refused account is not a sick daemon"
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert daemon.bot(LIVE_BOT)["restarts"] == 0, "held, not crash-looping"
        logged = journal(daemon.state_dir, "preflight_failed")
        assert [json.loads(d)["check"] for _, d in logged] == ["position_mode"]
        assert market.call(lambda s: s.orders_by_client_id()) == {}, "nothing was sent"


def test_leverage_beyond_the_exchange_bracket_is_refused_by_name_with_the_numbers(
    tmp_path: Path,
) -> None:
    server = LoopbackBinance(API_KEY, API_SECRET)
    with daemon_on_loopback(tmp_path, server, leverage=120, max_leverage=125) as (daemon, _):
        daemon.start()
        live = eventually(lambda: (b := daemon.bot(LIVE_BOT))["state"] == "errored" and b)
        assert live["error"] == (
            "preflight leverage_bracket: bots.eth-live.leverage 120 is beyond binanceusdm's "
            "bracket for ETH/USDT:USDT: a position up to 50 USDT (risk.max_position_usdt) "
            "allows at most 100x"
        )
        accounts = daemon.cli_json("status")["daemon"]["accounts"]
        assert accounts["live"]["leverage_brackets"] == {"ETH/USDT:USDT": "exchange"}
        assert daemon.bot(PAPER_BOT)["state"] == "running"


def test_a_host_clock_3_s_ahead_trades_normally_and_status_shows_the_offset(
    tmp_path: Path,
) -> None:
    server = LoopbackBinance(API_KEY, API_SECRET, clock=lambda: int(time.time() * 1000) - 3_000)
    with daemon_on_loopback(tmp_path, server) as (daemon, market):
        daemon.start()
        eventually(lambda: daemon.bot(LIVE_BOT)["candles_processed"] > 3, timeout=60)
        eventually(lambda: len(market.call(lambda s: s.trades())) >= 2, timeout=60)
        account = daemon.cli_json("status")["daemon"]["accounts"]["live"]
        assert 2_900 <= account["time_difference_ms"] <= 3_600
        assert [w["check"] for w in account["warnings"]] == ["clock"]
        assert daemon.bot(LIVE_BOT)["state"] == "running"


def test_a_bitget_account_in_hedge_mode_is_refused_and_one_without_passphrase_too(
    tmp_path: Path,
) -> None:
    server = LoopbackBitget(API_KEY, API_SECRET, PASSPHRASE, hedge_mode=True)
    bitget = {"kind": "bitget", "extra_account": 'market_data_transport = "rest"'}
    with daemon_on_loopback(tmp_path / "a", server, password=PASSPHRASE, **bitget) as (
        daemon,
        market,
    ):
        daemon.start()
        live = eventually(lambda: (b := daemon.bot(LIVE_BOT))["state"] == "errored" and b)
        assert live["error"].startswith("preflight position_mode: the account is in hedge mode")
        eventually(lambda: daemon.bot(PAPER_BOT)["candles_processed"] > 3, timeout=60)
        assert market.call(lambda s: s.order_requests()) == []
        daemon.stop()
    server = LoopbackBitget(API_KEY, API_SECRET, PASSPHRASE)
    with daemon_on_loopback(tmp_path / "b", server, **bitget) as (daemon, market):
        daemon.start()
        live = eventually(lambda: (b := daemon.bot(LIVE_BOT))["state"] == "errored" and b)
        assert live["error"].startswith(
            "preflight credentials: Bitget needs the API key's passphrase"
        )
        assert market.call(lambda s: list(s.requests)) == [], "nothing was asked of Bitget"
        assert daemon.cli("health").returncode == 0
