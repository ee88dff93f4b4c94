"""A paper account on live public prices: real ccxt market data, simulated fills."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import REPO, eventually
from tests.integration.crash_harness import FLIPPER
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.loopback.server_thread import ServerThread, real_candles


@pytest.fixture
def market() -> Iterator[ServerThread]:
    candles = real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather", 3000)
    server = ServerThread("ETHUSDT", candles, interval_s=0.1)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("transport", ["rest", "websocket"])
@pytest.mark.usefixtures("daemon_store")  # on each store of TRADECTL_TEST_STORES
def test_paper_bot_trades_on_exchange_prices_without_sending_orders_there(
    tmp_path: Path, market: ServerThread, transport: str
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "flipper.py").write_text(FLIPPER)
    config = tmp_path / "config.toml"
    config.write_text(f"""
[strategies]
user_dir = "{plugins}"

[accounts.paper]
kind = "paper"
market_data = "binanceusdm"
market_data_transport = "{transport}"
api_base_url = "{market.url}"
poll_interval_s = 0.05

[bots.eth-flip]
account = "paper"
symbol = "ETH/USDT:USDT"
strategy = "flipper"
timeframes = ["1m"]
autostart = true
""")
    socket_dir = short_socket_dir()
    daemon = DaemonProcess(
        config, tmp_path / "state", socket_dir / "c.sock", tmp_path / "daemon.log"
    )
    try:
        daemon.start()
        fills = eventually(
            lambda: [o for o in daemon.cli_json("orders", "--all") if o["status"] == "filled"],
            timeout=60,
        )
        closes = market.call(lambda s: [c.close for c in s._symbols["ETHUSDT"].candles.values()])
        fill_price = Decimal(str(fills[0]["avg_fill_price"]))
        assert min(closes) * Decimal("0.99") <= fill_price <= max(closes) * Decimal("1.01")
        assert market.call(lambda s: s.orders_by_client_id()) == {}, (
            "paper orders never reach the exchange"
        )
    finally:
        daemon.stop()
        remove(socket_dir)
