"""Stops and take-profits rest on the exchange: ccxt over HTTP against the loopback Binance.

A plugin strategy always wants to be long, with its stop 1 % below the close and its target
1 % above, so after the first entry the bot holds one position and the exchange holds its
protection. The market is then paused and moved by hand.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, eventually
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread, real_candles
from tests.store_under_test import StoreUnderTest, current

BOT = "eth-long"
SYMBOL_ID = "ETHUSDT"

ALWAYS_LONG = '''
"""Always long: stop 1 % under the close, target 1 % over it."""
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from daemon.domain.models import Direction, Signal
from strategies.base import Strategy


class AlwaysLongParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlwaysLong(Strategy):
    name = "always_long"
    Params = AlwaysLongParams

    @property
    def timeframes(self):
        return ("1m",)

    @property
    def warmup(self):
        return {"1m": 2}

    def evaluate(self, frames):
        close = Decimal(repr(frames["1m"]["close"][-1])).quantize(Decimal("0.01"))
        step = (close / 100).quantize(Decimal("0.01"))
        return Signal(Direction.LONG, close, close - step, close + step)
'''


@dataclass
class Rig:
    market: ServerThread
    daemon: DaemonProcess
    state_dir: Path

    def algo_orders(self) -> list[dict[str, Any]]:
        orders = self.market.call(lambda s: s.algo_orders_by_client_id())
        return sorted(orders.values(), key=lambda o: int(o["algoId"]))

    def resting(self) -> list[dict[str, Any]]:
        return [o for o in self.algo_orders() if o["algoStatus"] == "NEW"]

    def position(self) -> Decimal:
        return self.market.call(lambda s: s.position(SYMBOL_ID))[0]

    def algo_posts(self) -> int:
        requests = self.market.call(lambda s: list(s.requests))
        return sum(1 for m, path, _ in requests if (m, path) == ("POST", "/fapi/v1/algoOrder"))

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
def rig(tmp_path: Path, daemon_store: StoreUnderTest) -> Iterator[Rig]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "always_long.py").write_text(ALWAYS_LONG)
    candles = real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather", 3000)
    market = ServerThread(SYMBOL_ID, candles, interval_s=0.2)
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
strategy = "always_long"
timeframes = ["1m"]
autostart = true
leverage = 3
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
        yield Rig(market, daemon, tmp_path / "state")
    finally:
        daemon.stop()
        market.stop()
        remove(socket_dir)


def protected_position(rig: Rig) -> dict[str, Any] | None:
    bot = rig.daemon.bot(BOT)
    if bot["position_side"] == "long" and bot["protected"] and len(rig.resting()) == 2:
        return bot
    return None


def test_an_entry_gets_its_stop_and_target_and_the_stop_closes_it_with_the_daemon_dead(
    rig: Rig,
) -> None:
    rig.daemon.start()
    bot = eventually(lambda: protected_position(rig), timeout=60)
    rig.market.pause_market()
    held = rig.position()
    stop, target = rig.resting()
    assert (stop["orderType"], target["orderType"]) == ("STOP_MARKET", "TAKE_PROFIT_MARKET")
    for order in (stop, target):
        assert order["reduceOnly"] is True and order["side"] == "SELL"
        assert Decimal(order["quantity"]) == held == Decimal(bot["position_qty"])
    listed = [o for o in rig.daemon.cli_json("orders") if o["status"] == "open"]
    assert sorted((o["purpose"], o["type"]) for o in listed) == [
        ("stop", "stop_market"),
        ("take_profit", "take_profit_market"),
    ]
    for row in listed:
        assert row["bot"] == BOT and row["reduce_only"] is True and row["trigger_price"]
    assert {Decimal(o["trigger_price"]) for o in listed} == {
        Decimal(stop["triggerPrice"]),
        Decimal(target["triggerPrice"]),
    }

    rig.daemon.signal(signal.SIGKILL)
    rig.daemon.wait()
    before = {o["clientAlgoId"] for o in rig.algo_orders()}
    rig.push("0.97")  # through the stop while nobody watches
    assert rig.position() == 0, "the exchange closed the position with the daemon dead"

    rig.daemon.start()  # on PostgreSQL it first waits out its old lease (lease_ttl_s)
    eventually(lambda: rig.daemon.bot(BOT)["state"] == "running", timeout=45)
    states = {o["clientAlgoId"]: o["algoStatus"] for o in rig.algo_orders()}
    assert states[stop["clientAlgoId"]] in ("TRIGGERED", "FINISHED")
    assert states[target["clientAlgoId"]] == "CANCELED", "the orphaned take-profit is cancelled"
    fills = rig.store(
        "SELECT client_order_id FROM fills WHERE client_order_id = ?", stop["clientAlgoId"]
    )
    assert len(fills) == 1, "the stop's fill is recorded once"
    kinds = [e[0] for e in rig.store("SELECT kind FROM events ORDER BY id")]
    assert "plan_cleared" in kinds and "protection_cancelled" in kinds
    # The strategy wants to be long again on the next candle: whatever it opened has its own
    # protection, and nothing was ever placed again for the position the stop closed.
    new = [o for o in rig.algo_orders() if o["clientAlgoId"] not in before]
    entries = rig.store("SELECT count(*) FROM orders WHERE purpose = 'entry' AND status = 'filled'")
    assert len(new) <= 2 * (entries[0][0] - 1)
    assert len([o for o in rig.resting() if o["orderType"] == "STOP_MARKET"]) <= 1
    if rig.position() == 0:
        assert rig.resting() == [] and rig.daemon.bot(BOT)["protected"] is True


def test_a_partial_fill_is_protected_at_once_and_the_stop_follows_the_rest(rig: Rig) -> None:
    rig.market.call(
        lambda s: s.faults.add("partial_fill", path="/fapi/v1/order", method="POST", fraction="0.5")
    )
    rig.daemon.start()
    bot = eventually(lambda: protected_position(rig), timeout=60)
    stops = [o for o in rig.algo_orders() if o["orderType"] == "STOP_MARKET"]
    assert stops, bot
    first = stops[0]
    eventually(
        lambda: (
            next(o for o in rig.resting() if o["orderType"] == "STOP_MARKET")["clientAlgoId"]
            != first["clientAlgoId"]
        ),
        timeout=30,
    )
    rig.market.pause_market()
    held = eventually(lambda: rig.position() if rig.position() > 0 else None)
    states = {o["clientAlgoId"]: o for o in rig.algo_orders()}
    assert states[first["clientAlgoId"]]["algoStatus"] == "CANCELED"
    [now_resting] = [o for o in rig.resting() if o["orderType"] == "STOP_MARKET"]
    half = (held / 2).quantize(Decimal("0.001"), rounding="ROUND_DOWN")
    assert Decimal(first["quantity"]) == half, "the first stop covered the filled half"
    assert Decimal(now_resting["quantity"]) == held, "then the whole position"


def test_a_crash_before_the_entry_reply_leaves_a_position_with_its_plan_and_its_stop(
    rig: Rig,
) -> None:
    def arm(server: Any) -> None:
        server.faults.add("accepted_reply_lost", path="/fapi/v1/order", method="POST")
        server.faults.add("slow", path="/fapi/v1/order", method="GET", count=50, seconds=60)

    rig.market.call(arm)
    rig.daemon.start()
    eventually(lambda: rig.position() > 0, timeout=60)  # accepted; the reply never came
    rig.daemon.signal(signal.SIGKILL)
    rig.daemon.wait()
    rig.market.call(lambda s: s.faults.clear())
    assert rig.resting() == [], "the daemon died before it could place the stop"
    [(plan,)] = rig.store(
        "SELECT plan FROM orders WHERE purpose = 'entry' AND status = 'pending_submit'"
    )
    assert json.loads(plan)["direction"] == "long", "the plan was stored with the intent"

    rig.daemon.start()
    eventually(lambda: protected_position(rig), timeout=60)
    [(active,)] = rig.store("SELECT plan FROM bots WHERE name = ?", BOT)
    assert active is not None and json.loads(active)["stop"] == json.loads(plan)["stop"]
    stops = [o for o in rig.resting() if o["orderType"] == "STOP_MARKET"]
    assert len(stops) == 1 and Decimal(stops[0]["quantity"]) == rig.position()


def test_a_position_whose_stop_is_refused_fails_health_by_name_until_the_stop_rests(
    rig: Rig,
) -> None:
    refused = {"code": -2010, "msg": "NEW_ORDER_REJECTED"}
    rig.market.call(
        lambda s: s.faults.add(
            "server_error",
            path="/fapi/v1/algoOrder",
            method="POST",
            count=10_000,
            status=400,
            body=refused,
        )
    )
    rig.daemon.start()
    eventually(lambda: rig.position() > 0, timeout=60)
    assert rig.resting() == [], "every stop was refused"
    assert rig.daemon.bot(BOT)["protected"] is False

    def unhealthy() -> str | None:
        result = rig.daemon.cli("health")
        return result.stdout + result.stderr if result.returncode == 1 else None

    said = eventually(unhealthy, timeout=30)  # the grace is 5 s
    assert f"unprotected position of bot {BOT}" in said, said

    rig.market.call(lambda s: s.faults.clear())
    eventually(lambda: protected_position(rig), timeout=60)
    eventually(lambda: rig.daemon.cli("health").returncode == 0, timeout=30)
