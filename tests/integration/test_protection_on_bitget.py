"""Stops and take-profits rest on Bitget too: the daemon, ccxt over HTTP, the loopback Bitget.

The same always-long strategy as on Binance (stop 1 % under the close, target 1 % over it):
its protection goes to Bitget's tpsl endpoint as position-sized loss and profit plans, shows
in `tradectl orders`, and a restart after kill -9 reconciles it with what the exchange did
while nobody watched (the stop fired: the plan is cleared, the take-profit cancelled).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, eventually
from tests.integration.crash_harness import recent
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.integration.test_protection_on_loopback import ALWAYS_LONG
from tests.loopback.bitget_usdt import LoopbackBitget
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread, real_candles
from tests.store_under_test import StoreUnderTest, current

BOT = "eth-long"
SYMBOL_ID = "ETHUSDT"
PASSPHRASE = "protection-passphrase"


@dataclass
class BitgetRig:
    market: ServerThread
    daemon: DaemonProcess
    state_dir: Path

    def plans(self) -> list[dict[str, Any]]:
        plans = self.market.call(lambda s: s.plan_orders_by_client_id())
        return sorted(plans.values(), key=lambda p: int(p["orderId"]))

    def resting(self) -> list[dict[str, Any]]:
        return [p for p in self.plans() if p["planStatus"] == "live"]

    def position(self) -> Decimal:
        return self.market.call(lambda s: s.position(SYMBOL_ID))[0]

    def tpsl_posts(self) -> list[str]:
        requests = self.market.call(lambda s: list(s.requests))
        return [
            p["clientOid"]
            for m, path, p in requests
            if (m, path) == ("POST", "/api/v2/mix/order/place-tpsl-order")
        ]

    def push(self, low_fraction: str) -> None:
        """One more candle after the last, its low at `low_fraction` of the last close."""

        def push(server: Any) -> None:
            candles = server._symbols[SYMBOL_ID].candles
            last = candles[max(candles)]
            low = last.close * Decimal(low_fraction)
            server.push_candle(
                SYMBOL_ID, max(candles) + 60_000, last.close, last.close, low, low, 1
            )

        self.market.call(push)

    def store(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return current().query(self.state_dir, sql, args)


@pytest.fixture
def rig(tmp_path: Path, daemon_store: StoreUnderTest) -> Iterator[BitgetRig]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "always_long.py").write_text(ALWAYS_LONG)
    candles = real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather", 3000)
    # ccxt never asks Bitget for candles after its own clock: they stay in the past.
    server = LoopbackBitget(API_KEY, API_SECRET, PASSPHRASE)
    market = ServerThread(
        SYMBOL_ID, recent(candles, days_ago=20), interval_s=0.2, server=server, retime=False
    )
    url = market.start()
    config = tmp_path / "config.toml"
    config.write_text(f"""
[daemon]
log_format = "json"

[risk]
max_leverage = 3
max_position_usdt = 50

[strategies]
user_dir = "{plugins}"

[accounts.bitget]
kind = "bitget"
credentials = "loopback"
api_base_url = "{url}"
poll_interval_s = 0.05
requests_per_s = 1000
market_data_transport = "rest"

[bots.{BOT}]
account = "bitget"
symbol = "ETH/USDT:USDT"
strategy = "always_long"
timeframes = ["1m"]
autostart = true
leverage = 3
max_candle_age_s = 2592000
""")
    socket_dir = short_socket_dir()
    daemon = DaemonProcess(
        config,
        tmp_path / "state",
        socket_dir / "control.sock",
        tmp_path / "daemon.log",
        extra_env={
            "TRADECTL_LOOPBACK_API_KEY": API_KEY,
            "TRADECTL_LOOPBACK_SECRET": API_SECRET,
            "TRADECTL_LOOPBACK_PASSWORD": PASSPHRASE,
        },
    )
    try:
        yield BitgetRig(market, daemon, tmp_path / "state")
    finally:
        daemon.stop()
        market.stop()
        remove(socket_dir)


def protected_position(rig: BitgetRig) -> dict[str, Any] | None:
    bot = rig.daemon.bot(BOT)
    if bot["position_side"] == "long" and bot["protected"] and len(rig.resting()) == 2:
        return bot
    return None


def test_a_bitget_entry_gets_its_stop_and_target_and_a_restart_reconciles_the_fired_stop(
    rig: BitgetRig,
) -> None:
    rig.daemon.start()
    bot = eventually(lambda: protected_position(rig), timeout=90)
    rig.market.pause_market()
    bot = eventually(lambda: protected_position(rig), timeout=30)
    held = rig.position()
    stop, target = sorted(rig.resting(), key=lambda p: p["planType"])  # pos_loss < pos_profit
    assert (stop["planType"], target["planType"]) == ("pos_loss", "pos_profit")
    for plan in (stop, target):
        assert plan["reduceOnly"] == "YES" and plan["side"] == "sell"
        assert plan["marginMode"] == "isolated" and plan["orderType"] == "market"
        assert Decimal(plan["size"]) == held == Decimal(bot["position_qty"])
    assert Decimal(stop["triggerPrice"]) < Decimal(target["triggerPrice"])
    listed = [o for o in rig.daemon.cli_json("orders") if o["status"] == "open"]
    assert sorted((o["purpose"], o["type"], o["client_order_id"]) for o in listed) == [
        ("stop", "stop_market", stop["clientOid"]),
        ("take_profit", "take_profit_market", target["clientOid"]),
    ]
    assert {Decimal(o["trigger_price"]) for o in listed} == {
        Decimal(stop["triggerPrice"]),
        Decimal(target["triggerPrice"]),
    }

    rig.daemon.signal(signal.SIGKILL)
    rig.daemon.wait()
    before = {p["clientOid"] for p in rig.plans()}
    rig.push("0.97")  # through the stop while nobody watches
    assert rig.position() == 0, "Bitget closed the position with the daemon dead"

    rig.daemon.start()
    eventually(lambda: rig.daemon.bot(BOT)["state"] == "running", timeout=60)
    states = {p["clientOid"]: p["planStatus"] for p in rig.plans()}
    assert states[stop["clientOid"]] == "executed"
    assert states[target["clientOid"]] == "cancelled", "the orphaned take-profit is cancelled"
    fills = rig.store(
        "SELECT client_order_id FROM fills WHERE client_order_id = ?", stop["clientOid"]
    )
    assert len(fills) == 1, "the stop's fill is recorded once, under the plan's client id"
    kinds = [e[0] for e in rig.store("SELECT kind FROM events ORDER BY id")]
    assert "plan_cleared" in kinds and "protection_cancelled" in kinds
    stored = rig.store("SELECT status FROM orders WHERE client_order_id = ?", stop["clientOid"])
    assert stored == [("filled",)]
    sent = rig.market.call(lambda s: s.order_requests())
    assert sent and {r["marginMode"] for r in sent} == {"isolated"}, "isolated on every order"
    posts = rig.tpsl_posts()
    assert len(posts) == len(set(posts)), "no protective order was ever sent twice"
    new = [p for p in rig.plans() if p["clientOid"] not in before]
    assert all(p["planType"] in ("pos_loss", "pos_profit") for p in new)
    assert len([p for p in rig.resting() if p["planType"] == "pos_loss"]) <= 1
