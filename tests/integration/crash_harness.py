"""kill -9 the daemon at random moments of the order flow against a loopback exchange (Binance
USDT-M or Bitget USDT-M), restart it each time, and check that the store and the exchange
agree at the end.

Shared by the crash-consistency test (a few dozen kills) and bench/crash_consistency.py
(hundreds). A plugin strategy flips long/short on every candle, so orders are always
in flight; some replies are lost on purpose, and an accepted order shows in a lookup only
after a lag, so restarts must resolve unknown outcomes without sending anything twice.
"""

from __future__ import annotations

import json
import random
import signal
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import REPO, eventually
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.loopback.bitget_usdt import LoopbackBitget
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread, real_candles
from tests.store_under_test import current

BOT = "eth-flip"
SYMBOL_ID = "ETHUSDT"
PASSPHRASE = "crash-passphrase"
# Where each exchange takes new orders, and the request field carrying the client id.
ORDER_POST = {
    "binanceusdm": ("/fapi/v1/order", "newClientOrderId"),
    "bitget": ("/api/v2/mix/order/place-order", "clientOid"),
}
# Where the resting stops and take-profits go (Binance's algo orders, Bitget's tpsl plans).
TRIGGER_POST = {
    "binanceusdm": ("/fapi/v1/algoOrder", "clientAlgoId"),
    "bitget": ("/api/v2/mix/order/place-tpsl-order", "clientOid"),
}
# The loopback Bitget refuses requests 5 s off its clock (Bitget: 30 s), so an order whose
# reply was lost is known never placed 5 s + 5 s of lookup lag after it was sent, as on Binance.
BITGET_TIMESTAMP_WINDOW_MS = 5_000
LOOKUP_LAG_MS = 800

FLIPPER = '''
"""Long, short, long...: one reversal per candle, so orders are always in flight."""
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from daemon.domain.models import Direction, Signal
from strategies.base import Strategy


class FlipperParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Flipper(Strategy):
    name = "flipper"
    Params = FlipperParams

    @property
    def timeframes(self):
        return ("1m",)

    @property
    def warmup(self):
        return {"1m": 2}

    def evaluate(self, frames):
        frame = frames["1m"]
        close = Decimal(repr(frame["close"][-1])).quantize(Decimal("0.01"))
        long = frame["timestamp"][-1].minute % 2 == 0
        step = close / 100
        return Signal(
            Direction.LONG if long else Direction.SHORT,
            close,
            close - step if long else close + step,
            close + step if long else close - step,
        )
'''


def config_text(url: str, plugins: Path, exchange: str = "binanceusdm") -> str:
    # Bitget on REST (candles, fills), as its figures were measured; LoopbackBitgetWs streams.
    lookup = 'order_lookup_window_s = 10\nmarket_data_transport = "rest"'
    lookup = lookup if exchange == "bitget" else ""
    age = "max_candle_age_s = 2592000" if exchange == "bitget" else ""  # 30 days
    return f"""
[daemon]
log_format = "json"

[risk]
max_leverage = 3
max_position_usdt = 50
daily_loss_limit_usdt = 1000
account_daily_loss_limit_usdt = 1000

[strategies]
user_dir = "{plugins}"

[accounts.binance]
kind = "{exchange}"
credentials = "loopback"
api_base_url = "{url}"
poll_interval_s = 0.05
requests_per_s = 1000
{lookup}

[bots.{BOT}]
account = "binance"
symbol = "ETH/USDT:USDT"
strategy = "flipper"
timeframes = ["1m"]
autostart = true
leverage = 3
{age}
"""


@dataclass
class CrashReport:
    kills: int = 0
    exchange_orders: int = 0
    trigger_orders: int = 0
    resends: int = 0
    lost_replies: int = 0
    unknown_to_store: list[str] = field(default_factory=list)
    pending_left: list[str] = field(default_factory=list)
    missing_fills: list[str] = field(default_factory=list)
    # Stops and take-profits the store believes open and the exchange does not, or the reverse.
    trigger_disagreements: list[str] = field(default_factory=list)
    position_exchange: Decimal = Decimal(0)
    position_store: Decimal = Decimal(0)
    flattened: dict[str, Any] | None = None

    @property
    def mismatches(self) -> int:
        return (
            len(self.unknown_to_store)
            + len(self.pending_left)
            + len(self.missing_fills)
            + len(self.trigger_disagreements)
            + int(self.position_exchange != self.position_store)
        )

    def summary(self) -> str:
        return (
            f"kills={self.kills} orders={self.exchange_orders} "
            f"trigger_orders={self.trigger_orders} resends={self.resends} "
            f"lost_replies={self.lost_replies} mismatches={self.mismatches} "
            f"(unknown={len(self.unknown_to_store)} pending={len(self.pending_left)} "
            f"missing_fills={len(self.missing_fills)} "
            f"triggers={len(self.trigger_disagreements)} "
            f"position exchange={self.position_exchange} store={self.position_store})"
        )


def run_crash_test(
    folder: Path,
    kills: int,
    seed: int = 7,
    finish_with_flatten: bool = False,
    exchange: str = "binanceusdm",
) -> CrashReport:
    rng = random.Random(seed)
    plugins = folder / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "flipper.py").write_text(FLIPPER)
    server = None
    env = {"TRADECTL_LOOPBACK_API_KEY": API_KEY, "TRADECTL_LOOPBACK_SECRET": API_SECRET}
    if exchange == "bitget":
        server = LoopbackBitget(
            API_KEY, API_SECRET, PASSPHRASE, timestamp_window_ms=BITGET_TIMESTAMP_WINDOW_MS
        )
        env["TRADECTL_LOOPBACK_PASSWORD"] = PASSPHRASE
    candles = real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather")
    if exchange == "bitget":
        # ccxt never asks Bitget for candles after its own clock, so they stay in the past
        # (and within the 30 days its recent-candles endpoint serves); the bot is told to
        # decide on candles that old (max_candle_age_s).
        candles = recent(candles, days_ago=20)
    market = ServerThread(
        SYMBOL_ID, candles, interval_s=0.1, server=server, retime=exchange != "bitget"
    )
    url = market.start()
    # As on the real exchanges, an accepted order cannot be looked up at once: a lost reply
    # resolved by a lookup too soon would count it never placed and send the entry again.
    market.call(lambda s: setattr(s, "lookup_lag_ms", LOOKUP_LAG_MS))
    socket_dir = short_socket_dir()
    config = folder / "config.toml"
    config.write_text(config_text(url, plugins, exchange))
    if current().kind != "sqlite":  # a restart after a kill waits out its old lease: keep it short
        config.write_text(config.read_text() + "\n[fleet]\nlease_ttl_s = 4\n")
    daemon = DaemonProcess(
        config, folder / "state", socket_dir / "control.sock", folder / "daemon.log", extra_env=env
    )
    order_path, _ = ORDER_POST[exchange]
    report = CrashReport()
    try:
        for _ in range(kills):
            if rng.random() < 0.3:  # the next order is accepted but its reply never arrives
                market.call(
                    lambda s: s.faults.add("accepted_reply_lost", path=order_path, method="POST")
                )
                report.lost_replies += 1
            during_startup = rng.random() < 0.25  # also kill while it reconciles
            daemon.start(wait=not during_startup)
            time.sleep(rng.uniform(0.05, 2.0) if during_startup else rng.uniform(0.2, 2.0))
            daemon.signal(signal.SIGKILL)
            daemon.wait()
            report.kills += 1
        daemon.start()  # crash-only start: reconcile, resume, trade a little
        eventually(lambda: daemon.bot(BOT)["candles_processed"] > 2, timeout=30)
        market.pause_market()
        if finish_with_flatten:
            done = daemon.cli("flatten", "--all", "--yes", "--json")
            assert done.returncode == 0, done.stdout + done.stderr
            report.flattened = json.loads(done.stdout)
        else:
            stopped = daemon.cli("stop", BOT)
            assert stopped.returncode == 0, stopped.stderr
        daemon.stop()
        daemon.start()  # one more reconciliation with the bot stopped: the last word
        daemon.stop()
        check(report, market, folder / "state", exchange)
    finally:
        daemon.stop()
        market.stop()
        remove(socket_dir)
    return report


def recent(candles: list[Any], days_ago: int) -> list[Any]:
    """The same candles, moved in time to start `days_ago` days before now."""
    shift = int(time.time() * 1000) // 60_000 * 60_000 - days_ago * 86_400_000 - candles[0][0]
    return [(ts + shift, *rest) for ts, *rest in candles]


def check(
    report: CrashReport, market: ServerThread, state_dir: Path, exchange: str = "binanceusdm"
) -> None:
    orders = market.call(lambda s: s.orders_by_client_id())
    if exchange == "bitget":
        plans = market.call(lambda s: s.plan_orders_by_client_id())
        triggers = {cid: p["planStatus"] == "live" for cid, p in plans.items()}
    else:
        algos = market.call(lambda s: s.algo_orders_by_client_id())
        triggers = {cid: a["algoStatus"] == "NEW" for cid, a in algos.items()}
    trades = market.call(lambda s: s.trades())
    trade_ids = [str(t["id"] if "id" in t else t["tradeId"]) for t in trades]
    requests = market.call(lambda s: list(s.requests))
    position = market.call(lambda s: s.position(SYMBOL_ID))[0]
    store = current()  # the daemon's store, SQLite or PostgreSQL
    store_orders = dict(store.query(state_dir, "SELECT client_order_id, status FROM orders"))
    store_fills = {fid for (fid,) in store.query(state_dir, "SELECT fill_id FROM fills")}
    [row] = store.query(state_dir, "SELECT qty FROM positions WHERE bot = ?", (BOT,)) or [None]
    posts = [
        p.get(cid_field)
        for order_path, cid_field in (ORDER_POST[exchange], TRIGGER_POST[exchange])
        for m, path, p in requests
        if m == "POST" and path == order_path
    ]
    report.exchange_orders = len(orders)
    report.trigger_orders = len(triggers)
    report.resends = len(posts) - len(set(posts))
    report.unknown_to_store = sorted(cid for cid in [*orders, *triggers] if cid not in store_orders)
    report.trigger_disagreements = sorted(
        cid
        for cid, live in triggers.items()
        if cid in store_orders and live != (store_orders[cid] in ("open", "partially_filled"))
    )
    report.pending_left = sorted(
        cid for cid, status in store_orders.items() if status == "pending_submit"
    )
    report.missing_fills = sorted(fid for fid in trade_ids if fid not in store_fills)
    report.position_exchange = position
    report.position_store = Decimal(row[0]) if row else Decimal(0)
