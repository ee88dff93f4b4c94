"""Bitget's user-data stream: ccxt.pro logs in to the loopback Bitget's private websocket
and delivers fills and order updates as they happen; a refused login is a clear error while
REST goes on; a dropped stream reconnects and REST fills the gap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from daemon.adapters.ccxt_gateway import AuthenticationFailed, CcxtGateway
from daemon.credentials import ApiCredentials
from daemon.domain.models import OrderIntent, OrderStatus, OrderType, Side
from daemon.runtime.user_stream import UserStream
from tests.conftest import StoreOpener
from tests.loopback.bitget_ws import LoopbackBitgetWs

ETH = "ETH/USDT:USDT"
KEY, SECRET, PASSPHRASE = "bg-key", "bg-secret", "bg-pass"
KEYS = ApiCredentials("loopback", KEY, SECRET, PASSPHRASE)


def intent(
    cid: str, qty: str = "0.02", order_type: OrderType = OrderType.MARKET, price: str = ""
) -> Any:
    return OrderIntent(
        "b1",
        "bitget",
        ETH,
        cid,
        Side.BUY,
        order_type,
        Decimal(qty),
        Decimal(price) if price else None,
        False,
        datetime.now(UTC),
    )


async def until(check: Callable[[], object]) -> None:
    """Poll `check` for up to 5 s without blocking the loop the servers and ccxt run on."""
    deadline = time.monotonic() + 5.0
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


Story = Callable[[LoopbackBitgetWs, CcxtGateway], Awaitable[None]]


def run(story: Story, **server: Any) -> None:
    async def main() -> None:
        loopback = LoopbackBitgetWs(KEY, SECRET, PASSPHRASE, **server)
        url = await loopback.start()
        minute = int(time.time() * 1000) // 60_000 * 60_000
        loopback.push_candle("ETHUSDT", minute, 2500, 2505, 2495, 2500, 100)
        gateway = CcxtGateway(
            "bitget", "bitget", KEYS, api_base_url=url, timeout_s=2, requests_per_s=1000
        )
        try:
            await gateway.start()
            await gateway.set_leverage(ETH, 3)
            await story(loopback, gateway)
        finally:
            await gateway.close()
            await loopback.close()

    asyncio.run(main())


def test_the_bitget_user_data_stream_delivers_fills_and_order_updates_as_they_happen() -> None:
    async def story(server: LoopbackBitgetWs, gw: CcxtGateway) -> None:
        assert gw.can_watch_user_data
        ws = gw._stream()
        ws.streaming = {**ws.streaming, "keepAlive": 200}  # ms: pings (and pongs) seen quickly
        fills = asyncio.ensure_future(gw.watch_fills())
        updates = asyncio.ensure_future(gw.watch_order_updates())
        await until(lambda: server.user_stream_connections == 1)
        assert server.ws_logins == ["ok"]
        subscribed = [
            arg
            for m in server.ws_received
            if isinstance(m, dict) and m.get("op") == "subscribe"
            for arg in m["args"]
        ]
        assert sorted(a["channel"] for a in subscribed) == ["fill", "orders"]
        assert {(a["instType"], a["instId"]) for a in subscribed} == {("USDT-FUTURES", "default")}

        await gw.submit_order(intent("tc1-ws", qty="0.04"))
        [fill] = await asyncio.wait_for(fills, 5)
        assert (fill.client_order_id, fill.qty, fill.price, fill.kind) == (
            "tc1-ws",
            Decimal("0.04"),
            Decimal(2500),
            "trade",
        )
        assert fill.fee == Decimal("0.06")  # 0.06 % of 100 USDT
        [update] = await asyncio.wait_for(updates, 5)
        assert (update.client_order_id, update.status, update.filled_qty) == (
            "tc1-ws",
            OrderStatus.FILLED,
            Decimal("0.04"),
        )

        resting = asyncio.ensure_future(gw.watch_order_updates())
        await gw.submit_order(intent("tc1-bid", order_type=OrderType.LIMIT, price="2400"))
        [placed] = await asyncio.wait_for(resting, 5)
        assert (placed.client_order_id, placed.status, placed.price) == (
            "tc1-bid",
            OrderStatus.OPEN,
            Decimal(2400),
        )
        cancelling = asyncio.ensure_future(gw.watch_order_updates())
        await gw.cancel_order(ETH, "tc1-bid")
        [cancelled] = await asyncio.wait_for(cancelling, 5)
        assert (cancelled.client_order_id, cancelled.status) == ("tc1-bid", OrderStatus.CANCELED)

        liquidation = asyncio.ensure_future(gw.watch_fills())
        await asyncio.sleep(0.1)
        server.liquidate("ETHUSDT", 2400)
        [liquidated] = await asyncio.wait_for(liquidation, 5)
        assert liquidated.kind == "liquidation" and liquidated.realized_pnl == Decimal("-4")

        await asyncio.sleep(1.0)  # five keep-alive periods: ccxt would drop a silent server
        assert "ping" in server.ws_received
        assert server.ws_connections_accepted == 1 and server.user_stream_connections == 1

    run(story)


def test_a_refused_websocket_login_is_a_clear_error_and_rest_keeps_working() -> None:
    async def story(server: LoopbackBitgetWs, gw: CcxtGateway) -> None:
        ws = gw._stream()
        ws.password = "not-the-passphrase"  # wrong on the websocket only: REST has the right one
        with pytest.raises(AuthenticationFailed, match="30012 Invalid ACCESS_PASSPHRASE"):
            await asyncio.wait_for(gw.watch_fills(), 5)
        ws.password, ws.secret = PASSPHRASE, "not-the-secret"
        with pytest.raises(AuthenticationFailed, match="30015 Invalid sign") as refused:
            await asyncio.wait_for(gw.watch_order_updates(), 5)
        assert "websocket login was refused" in str(refused.value)
        assert "not-the-secret" not in str(refused.value) and SECRET not in str(refused.value)
        assert server.ws_logins == ["30012", "30015"] and server.user_stream_connections == 0

        order = await gw.submit_order(intent("tc1-rest"))  # REST is untouched by the refusal
        assert order.status is OrderStatus.FILLED
        assert [f.client_order_id for f in await gw.fetch_fills(ETH)] == ["tc1-rest"]

        ws.secret = SECRET  # put right: the next watch logs in again, on its own
        fills = asyncio.ensure_future(gw.watch_fills())
        await until(lambda: server.user_stream_connections == 1)
        await gw.submit_order(intent("tc1-after"))
        [fill] = await asyncio.wait_for(fills, 5)
        assert fill.client_order_id == "tc1-after" and server.ws_logins[-1] == "ok"

    run(story)


def test_a_host_clock_40_s_ahead_still_logs_in_with_the_measured_offset() -> None:
    """Bitget refuses a login timestamp 30 s off; ccxt.pro signs it with the bare local
    clock, so the gateway lends it the measured one, as REST has."""

    async def story(server: LoopbackBitgetWs, gw: CcxtGateway) -> None:
        assert 39_000 <= gw.time_difference_ms <= 41_000
        fills = asyncio.ensure_future(gw.watch_fills())
        await until(lambda: server.user_stream_connections == 1)
        await gw.submit_order(intent("tc1-skewed"))
        [fill] = await asyncio.wait_for(fills, 5)
        assert fill.client_order_id == "tc1-skewed" and server.ws_logins == ["ok"]

    run(story, clock=lambda: int(time.time() * 1000) - 40_000)


def test_a_dropped_bitget_stream_reconnects_and_rest_fills_the_gap(open_store: StoreOpener) -> None:
    async def story(server: LoopbackBitgetWs, gw: CcxtGateway) -> None:
        store = open_store()

        async def quick(seconds: float) -> None:
            await asyncio.sleep(min(seconds, 0.2))

        stream = UserStream(gw, store, {ETH: "b1"}, sleep=quick)
        task = asyncio.ensure_future(stream.run())
        try:
            await until(lambda: server.user_stream_connections == 1)
            await gw.submit_order(intent("tc1-first"))
            await until(lambda: stream.fills_recorded == 1)
            assert stream.connected

            server.refuse_websockets(503)
            assert server.drop_websockets() == 1
            await until(lambda: not stream.connected)
            await gw.submit_order(intent("tc1-missed"))  # no stream to push it on
            await until(lambda: "tc1-missed" in {f.client_order_id for f in store.fills("b1")})
            assert stream.fills_recorded == 1, "the missed fill came by REST"
            assert stream.last_error is not None

            server.refuse_websockets(None)
            await until(lambda: server.user_stream_connections == 1)
            await gw.submit_order(intent("tc1-later"))
            await until(lambda: stream.fills_recorded == 2)
            assert stream.connected and stream.last_error is None
            cids = [f.client_order_id for f in store.fills("b1")]
            assert sorted(cids) == ["tc1-first", "tc1-later", "tc1-missed"], "each once"
            assert server.ws_logins.count("ok") >= 2, "logged in again after the drop"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            store.close()

    run(story)


def test_a_partly_filled_order_reports_its_whole_filled_size_on_the_stream() -> None:
    """Bitget's order push carries this fill's size (baseVolume, which ccxt reads as the
    order's filled size) and the order's whole one (accBaseVolume): the store needs the
    whole."""

    async def story(server: LoopbackBitgetWs, gw: CcxtGateway) -> None:
        updates = asyncio.ensure_future(gw.watch_order_updates())
        await until(lambda: server.ws_logins == ["ok"])
        server.faults.add("partial_fill", path="/api/v2/mix/order/place-order", fraction="0.5")
        await gw.submit_order(intent("tc1-part", qty="0.04"))
        [first] = await asyncio.wait_for(updates, 5)
        assert (first.status, first.filled_qty) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.02"))
        rest = asyncio.ensure_future(gw.watch_order_updates())
        minute = int(time.time() * 1000) // 60_000 * 60_000 + 60_000
        server.push_candle("ETHUSDT", minute, 2510, 2515, 2505, 2510, 10)  # fills the rest
        [second] = await asyncio.wait_for(rest, 5)
        assert (second.status, second.filled_qty) == (OrderStatus.FILLED, Decimal("0.04"))

    run(story)
