"""No order stays pending_submit after a start, whatever its bot's desired state: a stop
that lands while an order is in flight leaves an intent the next start resolves, by the
exchange's word when the order got there, as "never reached the exchange" when not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from daemon.adapters.ccxt_gateway import CcxtGateway
from daemon.credentials import ApiCredentials
from daemon.domain.bot_state import DesiredState
from daemon.domain.models import ClientOrderIds, OrderIntent, OrderType, Side
from tests.conftest import REPO
from tests.integration.crash_harness import FLIPPER, config_text
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread, real_candles
from tests.store_under_test import StoreUnderTest, current

MakeDaemon = Callable[..., DaemonProcess]


def intent(bot: str, account: str, sequence: int) -> OrderIntent:
    return OrderIntent(
        bot=bot,
        account=account,
        symbol="ETH/USDT:USDT",
        client_order_id=ClientOrderIds(bot).make(sequence),
        side=Side.BUY,
        type=OrderType.MARKET,
        qty=Decimal("0.02"),
        price=None,
        reduce_only=False,
        created_at=datetime.now(UTC),
    )


def stored(state_dir: Path, cid: str) -> tuple[str, str | None, int]:
    [(status, reason)] = current().query(
        state_dir, "SELECT status, reason FROM orders WHERE client_order_id = ?", (cid,)
    )
    [(fills,)] = current().query(
        state_dir, "SELECT count(*) FROM fills WHERE client_order_id = ?", (cid,)
    )
    return status, reason, int(fills)


def test_an_intent_of_a_stopped_bot_that_never_left_is_rejected_at_start(
    make_daemon: MakeDaemon, daemon_store: StoreUnderTest
) -> None:
    daemon = make_daemon().start()
    assert daemon.cli("stop", "eth-ema").returncode == 0
    daemon.stop()
    lost = intent("eth-ema", "paper", 900)  # the stop cancelled the runner right after this
    with daemon_store.opened(daemon.state_dir) as store:
        store.record_intent(lost)

    daemon.start()
    assert stored(daemon.state_dir, lost.client_order_id) == (
        "rejected",
        "never reached the exchange",
        0,
    )
    found = daemon.cli_json("status")["daemon"]["reconciliation"]
    assert any(e["kind"] == "pending_intent_rejected" for e in found), found
    assert daemon.bot("eth-ema")["state"] == "stopped", "resolving it starts nothing"


def test_an_intent_of_a_stopped_bot_that_reached_the_exchange_takes_its_outcome(
    tmp_path: Path, daemon_store: StoreUnderTest
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "flipper.py").write_text(FLIPPER)
    market = ServerThread(
        "ETHUSDT",
        real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"),
        interval_s=0.5,
    )
    url = market.start()
    socket_dir = short_socket_dir()
    config = tmp_path / "config.toml"
    config.write_text(config_text(url, plugins).replace("autostart = true", "autostart = false"))
    daemon = DaemonProcess(
        config,
        tmp_path / "state",
        socket_dir / "control.sock",
        tmp_path / "daemon.log",
        extra_env={"TRADECTL_LOOPBACK_API_KEY": API_KEY, "TRADECTL_LOOPBACK_SECRET": API_SECRET},
    )
    sent = intent("eth-flip", "binance", 77)
    try:
        (tmp_path / "state").mkdir(mode=0o750)
        with daemon_store.opened(tmp_path / "state") as store:
            store.set_desired_state("eth-flip", DesiredState.STOPPED)
            store.record_intent(sent)  # committed; the order left; then the stop cancelled us
        asyncio.run(_send(url, sent))

        daemon.start()
        status, _, fills = stored(tmp_path / "state", sent.client_order_id)
        assert (status, fills) == ("filled", 1)
        assert daemon.bot("eth-flip")["state"] == "stopped"
        assert Decimal(daemon.bot("eth-flip")["position_qty"]) == Decimal("0.02")
    finally:
        daemon.stop()
        market.stop()
        remove(socket_dir)


async def _send(url: str, order: OrderIntent) -> None:
    gateway = CcxtGateway(
        "binance", "binanceusdm", ApiCredentials("t", API_KEY, API_SECRET), api_base_url=url
    )
    await gateway.start()
    try:
        await gateway.submit_order(order)
    finally:
        await gateway.close()
