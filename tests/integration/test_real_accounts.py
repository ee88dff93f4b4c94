"""Real accounts as the daemon meets them, on loopback exchanges over HTTP: the preflight
refuses what would fail, by name, without a crash loop and without touching the other
account; a clock off by seconds trades normally."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import eventually
from tests.integration.real_account import LIVE_BOT, PAPER_BOT, daemon_on_loopback, journal
from tests.loopback.binance_usdm import LoopbackBinance
from tests.loopback.binance_ws import LoopbackBinanceWs
from tests.loopback.bitget_usdt import LoopbackBitget
from tests.loopback.bitget_ws import LoopbackBitgetWs
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread

PASSPHRASE = "loopback-passphrase"
# Every test here starts a daemon: on each store of TRADECTL_TEST_STORES.
pytestmark = pytest.mark.usefixtures("daemon_store")


def settled(daemon: Any) -> int:
    """Candles processed, once the bot has processed none for a second."""

    def unchanged() -> int | None:
        first = daemon.bot(LIVE_BOT)["candles_processed"]
        time.sleep(1.0)
        return first if daemon.bot(LIVE_BOT)["candles_processed"] == first else None

    return eventually(unchanged, timeout=60)


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


def test_bitget_leverage_beyond_its_bracket_is_refused_by_name_with_the_numbers(
    tmp_path: Path,
) -> None:
    server = LoopbackBitget(API_KEY, API_SECRET, PASSPHRASE)
    bitget = {"kind": "bitget", "extra_account": 'market_data_transport = "rest"'}
    with daemon_on_loopback(
        tmp_path, server, password=PASSPHRASE, leverage=120, max_leverage=125, **bitget
    ) as (daemon, market):
        daemon.start()
        live = eventually(lambda: (b := daemon.bot(LIVE_BOT))["state"] == "errored" and b)
        assert live["error"] == (
            "preflight leverage_bracket: bots.eth-live.leverage 120 is beyond bitget's "
            "bracket for ETH/USDT:USDT: a position up to 50 USDT (risk.max_position_usdt) "
            "allows at most 100x"
        )
        accounts = daemon.cli_json("status")["daemon"]["accounts"]
        assert accounts["live"]["leverage_brackets"] == {"ETH/USDT:USDT": "exchange"}
        assert market.call(lambda s: s.order_requests()) == [], "nothing was sent"
        assert daemon.bot(LIVE_BOT)["restarts"] == 0


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


def test_a_fill_between_candles_arrives_by_the_user_data_stream_before_the_next_candle(
    tmp_path: Path,
) -> None:
    server = LoopbackBinanceWs(API_KEY, API_SECRET)
    with daemon_on_loopback(tmp_path, server, interval_s=1.0) as (daemon, market):
        daemon.start()
        eventually(lambda: daemon.bot(LIVE_BOT)["position_side"] != "flat", timeout=60)
        account = eventually(
            lambda: (
                (a := daemon.cli_json("status")["daemon"]["accounts"]["live"])["user_stream"][
                    "connected"
                ]
                and a
            )
        )
        assert account["user_stream"]["fills_recorded"] >= 1
        market.pause_market()
        before = settled(daemon)  # the last pushed candle is processed; no other comes
        assert market.call(lambda s: s.position("ETHUSDT")[0]) != 0
        price = market.call(lambda s: s.last_price("ETHUSDT"))
        cid = market.call(lambda s: s.liquidate("ETHUSDT", price))
        logged = eventually(lambda: journal(daemon.state_dir, "liquidation_filled"), timeout=5)
        [(bot, data)] = logged
        assert bot == LIVE_BOT and json.loads(data)["cid"] == cid
        assert daemon.bot(LIVE_BOT)["candles_processed"] == before, "no candle was needed"


def funding_past_the_loss_limit_halts_the_bot(daemon: Any, market: ServerThread) -> None:
    """A 20 USDT daily limit; down over a funding time with a position open, 30 USDT of funding
    paid (long or short); on restart the next candle halts the bot, the funding journalled."""
    limits = "daily_loss_limit_usdt = 20"
    text = daemon.config.read_text().replace("daily_loss_limit_usdt = 1000", limits, 1)
    daemon.config.write_text(text)
    daemon.start()
    for _ in range(10):  # a quiet market with a position open (its stop may fire first)
        eventually(lambda: daemon.bot(LIVE_BOT)["position_side"] != "flat", timeout=60)
        market.pause_market()
        settled(daemon)
        if market.call(lambda s: s.position("ETHUSDT")[0]) != 0:
            break
        market.resume_market()
    daemon.stop()  # down over a funding time
    signed = market.call(lambda s: s.position("ETHUSDT")[0] * s.last_price("ETHUSDT"))
    paid = market.call(lambda s: s.pay_funding("ETHUSDT", str(30 / signed)))
    assert paid == Decimal(-30)
    daemon.start()
    market.resume_market()  # the next candle checks the loss limits
    bot = eventually(lambda: (b := daemon.bot(LIVE_BOT))["state"] == "halted" and b, timeout=60)
    assert bot["halt_reason"].startswith("daily loss limit: today's PnL -")
    [(owner, data)] = journal(daemon.state_dir, "funding_recorded")
    assert owner == LIVE_BOT and Decimal(json.loads(data)["amount"]) == paid
    assert Decimal(daemon.bot(LIVE_BOT)["realized_pnl"]) <= paid + 1


def test_a_funding_payment_counts_against_the_daily_loss_limit(tmp_path: Path) -> None:
    server = LoopbackBinance(API_KEY, API_SECRET)
    with daemon_on_loopback(tmp_path, server, interval_s=0.5, extra_risk="") as (daemon, market):
        funding_past_the_loss_limit_halts_the_bot(daemon, market)


def withdrawal_warning(daemon: Any) -> dict[str, Any] | None:
    account = daemon.cli_json("status")["daemon"]["accounts"]["live"]
    found = [w for w in account["warnings"] if w["check"] == "permissions"]
    return found[0] if found else None


def test_a_binance_key_that_may_withdraw_is_warned_loudly_one_without_futures_refused(
    tmp_path: Path,
) -> None:
    server = LoopbackBinance(API_KEY, API_SECRET)
    assert server.key_permissions is not None
    server.key_permissions["enableWithdrawals"] = True
    with daemon_on_loopback(tmp_path / "a", server) as (daemon, market):
        daemon.start()
        eventually(lambda: len(market.call(lambda s: s.trades())) >= 1, timeout=60)
        warning = eventually(lambda: withdrawal_warning(daemon))
        assert warning["reason"].startswith("WITHDRAWALS ARE ENABLED on this trading key")
        assert daemon.bot(LIVE_BOT)["state"] == "running", "a warning, not a refusal"
        [(_, data)] = journal(daemon.state_dir, "preflight_warning")
        assert json.loads(data)["check"] == "permissions"
        assert "WITHDRAWALS ARE ENABLED" in daemon.log_path.read_text()
        daemon.stop()
    server = LoopbackBinance(API_KEY, API_SECRET)
    assert server.key_permissions is not None
    server.key_permissions["enableFutures"] = False
    with daemon_on_loopback(tmp_path / "b", server) as (daemon, market):
        daemon.start()
        live = eventually(lambda: (b := daemon.bot(LIVE_BOT))["state"] == "errored" and b)
        assert live["error"] == (
            "preflight permissions: the API key may not trade futures: enable futures trading"
        )
        assert market.call(lambda s: s.orders_by_client_id()) == {}, "nothing was sent"
        assert withdrawal_warning(daemon) is None


def test_a_bitget_key_that_may_withdraw_is_warned_loudly(tmp_path: Path) -> None:
    server = LoopbackBitget(API_KEY, API_SECRET, PASSPHRASE, withdrawals=True)
    bitget = {"kind": "bitget", "extra_account": 'market_data_transport = "rest"'}
    with daemon_on_loopback(tmp_path, server, password=PASSPHRASE, **bitget) as (daemon, _):
        daemon.start()
        warning = eventually(lambda: withdrawal_warning(daemon), timeout=60)
        assert warning["reason"].startswith("WITHDRAWALS ARE ENABLED on this trading key")
        assert daemon.bot(LIVE_BOT)["state"] == "running"
        [(_, data)] = journal(daemon.state_dir, "preflight_warning")
        assert json.loads(data)["check"] == "permissions"


def test_a_bot_the_exchange_keeps_refusing_backs_off_and_says_why(tmp_path: Path) -> None:
    server = LoopbackBinance(API_KEY, API_SECRET)
    margin = {"status": 400, "body": {"code": -2019, "msg": "Margin is insufficient."}}
    server.faults.add("server_error", method="POST", path="/fapi/v1/order", count=50, **margin)
    with daemon_on_loopback(tmp_path, server) as (daemon, market):
        daemon.start()

        def held() -> dict[str, Any] | None:
            bot = daemon.bot(LIVE_BOT)
            return bot if "no new entries until" in (bot["last_problem"] or "") else None

        bot = eventually(held, timeout=60)
        assert bot["state"] == "running" and bot["restarts"] == 0, "refused, not crashed"
        assert "refused 2 time(s) in a row" in bot["last_problem"]
        assert "Margin is insufficient" in bot["last_problem"]

        def posts() -> int:
            requests = market.call(lambda s: list(s.requests))
            return sum(1 for m, p, _ in requests if (m, p) == ("POST", "/fapi/v1/order"))

        sent = posts()
        before = daemon.bot(LIVE_BOT)["candles_processed"]
        eventually(lambda: daemon.bot(LIVE_BOT)["candles_processed"] >= before + 5, timeout=60)
        assert posts() == sent == 2, "entries are held back, not sent again and again"
        assert len(journal(daemon.state_dir, "order_rejected")) == 2


def test_a_bitget_fill_between_candles_arrives_by_the_user_data_stream_before_the_next_candle(
    tmp_path: Path,
) -> None:
    server = LoopbackBitgetWs(API_KEY, API_SECRET, PASSPHRASE)
    with daemon_on_loopback(
        tmp_path, server, password=PASSPHRASE, interval_s=1.0, kind="bitget"
    ) as (daemon, market):
        daemon.start()
        eventually(lambda: daemon.bot(LIVE_BOT)["position_side"] != "flat", timeout=60)
        account = eventually(
            lambda: (
                (a := daemon.cli_json("status")["daemon"]["accounts"]["live"])["user_stream"][
                    "connected"
                ]
                and a
            )
        )
        assert account["user_stream"]["fills_recorded"] >= 1
        assert account["user_stream"]["error"] is None
        market.pause_market()
        before = settled(daemon)  # the last pushed candle is processed; no other comes
        assert market.call(lambda s: s.position("ETHUSDT")[0]) != 0
        price = market.call(lambda s: s.last_price("ETHUSDT"))
        order_id = market.call(lambda s: s.liquidate("ETHUSDT", price))
        logged = eventually(lambda: journal(daemon.state_dir, "liquidation_filled"), timeout=5)
        [(bot, data)] = logged
        cid = market.call(lambda s: s.orders_by_client_id())
        assert bot == LIVE_BOT and json.loads(data)["cid"] in cid
        assert json.loads(data)["cid"].startswith("burst-") and order_id
        assert daemon.bot(LIVE_BOT)["candles_processed"] == before, "no candle was needed"
        assert market.call(lambda s: s.ws_logins) == ["ok"]


def test_a_bitget_funding_payment_counts_against_the_daily_loss_limit(tmp_path: Path) -> None:
    server = LoopbackBitgetWs(API_KEY, API_SECRET, PASSPHRASE)
    with daemon_on_loopback(
        tmp_path, server, password=PASSPHRASE, interval_s=0.5, kind="bitget"
    ) as (daemon, market):
        funding_past_the_loss_limit_halts_the_bot(daemon, market)
        bills = [p for m, path, p in market.call(lambda s: list(s.requests)) if "bill" in path]
        assert bills and all(p["productType"] == "USDT-FUTURES" for p in bills)


def test_a_refused_bitget_websocket_login_shows_in_status_and_the_bot_trades_by_rest(
    tmp_path: Path,
) -> None:
    server = LoopbackBitgetWs(API_KEY, API_SECRET, PASSPHRASE, ws_passphrase="another")
    with daemon_on_loopback(
        tmp_path, server, password=PASSPHRASE, interval_s=0.5, kind="bitget"
    ) as (daemon, market):
        daemon.start()
        stream = eventually(
            lambda: (
                (s := daemon.cli_json("status")["daemon"]["accounts"]["live"]["user_stream"])[
                    "error"
                ]
                and s
            ),
            timeout=60,
        )
        assert not stream["connected"]
        assert "websocket login was refused (30012 Invalid ACCESS_PASSPHRASE)" in stream["error"]
        filled = eventually(lambda: len(journal(daemon.state_dir, "order_filled")) >= 2, timeout=60)
        assert filled, "fills are recorded by REST while the stream is refused"
        assert daemon.bot(LIVE_BOT)["state"] == "running" and daemon.bot(LIVE_BOT)["restarts"] == 0
        assert daemon.cli("health").returncode == 0
        log = daemon.log_path.read_text()
        assert "user_stream_failed" in log and API_SECRET not in log and PASSPHRASE not in log
        assert set(market.call(lambda s: s.ws_logins)) == {"30012"}
