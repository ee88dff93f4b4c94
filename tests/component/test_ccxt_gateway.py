"""The ccxt gateway against the loopback Binance: real ccxt, real HTTP, real signatures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from daemon.adapters.ccxt_gateway import AuthenticationFailed, CcxtGateway
from daemon.clock import SystemClock
from daemon.credentials import ApiCredentials
from daemon.domain.errors import OrderRejected, RetryableExchangeError
from daemon.domain.models import OrderIntent, OrderStatus, OrderType, Side
from daemon.runtime.flatten import Flattener
from tests.loopback.binance_usdm import LoopbackBinance

ETH = "ETH/USDT:USDT"
T0_MS = 1_746_835_200_000  # 2025-05-10 00:00 UTC
KEYS = ApiCredentials("loopback", "test-key", "test-secret")


def intent(
    cid: str,
    side: Side = Side.BUY,
    qty: str = "0.02",
    reduce_only: bool = False,
    order_type: OrderType = OrderType.MARKET,
    price: str | None = None,
) -> OrderIntent:
    return OrderIntent(
        "b1",
        "binance",
        ETH,
        cid,
        side,
        order_type,
        Decimal(qty),
        None if price is None else Decimal(price),
        reduce_only,
        datetime.now(UTC),
    )


class Sleeps:
    """Records what the gateway waits for, and waits for real only a little."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))


def run(
    story: Callable[[LoopbackBinance, CcxtGateway, Sleeps], Awaitable[None]],
    keys: ApiCredentials = KEYS,
) -> None:
    async def main() -> None:
        server = LoopbackBinance("test-key", "test-secret")
        url = await server.start()
        server.push_candle("ETHUSDT", T0_MS, 2500, 2505, 2495, 2500, 100)
        sleeps = Sleeps()
        gateway = CcxtGateway(
            "binance", "binanceusdm", keys, api_base_url=url, timeout_s=2, sleep=sleeps
        )
        try:
            await gateway.start()
            await story(server, gateway, sleeps)
        finally:
            await gateway.close()
            await server.close()

    asyncio.run(main())


def test_markets_come_with_binance_precision_and_minimums() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        market = await gw.market(ETH)
        assert (market.amount_step, market.price_step) == (Decimal("0.001"), Decimal("0.01"))
        assert market.min_notional == Decimal(20) and market.min_amount == Decimal("0.001")

    run(story)


def test_a_market_order_fills_and_position_balance_and_fills_follow() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        await gw.set_leverage(ETH, 3)
        await gw.set_leverage(ETH, 3)  # margin mode already isolated: still fine
        order = await gw.submit_order(intent("tc1-00000001"))
        assert order.status is OrderStatus.FILLED and order.filled_qty == Decimal("0.02")
        assert (await gw.fetch_order(ETH, "tc1-00000001")).status is OrderStatus.FILLED  # type: ignore[union-attr]
        [position] = await gw.fetch_positions(ETH)
        assert position.qty == Decimal("0.02") and position.entry_price == Decimal(2500)
        server.push_candle("ETHUSDT", T0_MS + 60_000, 2500, 2560, 2500, 2550, 100)
        await gw.submit_order(intent("tc1-00000002", Side.SELL, reduce_only=True))
        fills = await gw.fetch_fills(ETH)
        assert [f.client_order_id for f in fills] == ["tc1-00000001", "tc1-00000002"]
        assert fills[1].realized_pnl == Decimal("1")  # (2550 - 2500) * 0.02
        assert await gw.fetch_positions() == []
        assert (await gw.fetch_balance()).total > 0

    run(story)


def test_a_lost_reply_is_resolved_by_client_id_and_never_sends_a_second_order() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("accepted_reply_lost", path="/fapi/v1/order", method="POST")
        order = await gw.submit_order(intent("tc1-lost"))
        assert order.client_order_id == "tc1-lost" and order.status is OrderStatus.FILLED
        assert list(server.orders_by_client_id()) == ["tc1-lost"]
        posts = [r for r in server.requests if r[:2] == ("POST", "/fapi/v1/order")]
        assert len(posts) == 1, "the outcome is looked up, the order is not sent again"

    run(story)


def test_429_pauses_the_whole_account_for_retry_after_then_goes_on() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("rate_limited", path="/fapi/v1/openOrders", retry_after=7)
        assert await gw.fetch_open_orders(ETH) == []
        assert 7 in [round(s) for s in sleeps.asked], sleeps.asked

    run(story)


def test_transient_failures_are_retried_with_backoff_but_not_forever() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("server_error", path="/fapi/v3/positionRisk", count=2)
        assert await gw.fetch_positions() == []
        server.faults.add("server_error", path="/fapi/v1/openOrders", count=50)
        with pytest.raises(RetryableExchangeError):
            await gw.fetch_open_orders(ETH)
        assert len(sleeps.asked) >= 5

    run(story)


def test_rejections_are_not_retried() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        posts = len(server.requests)
        with pytest.raises(OrderRejected):
            await gw.submit_order(intent("tc1-big", qty="900"))  # far beyond the margin
        assert [r for r in server.requests[posts:] if r[0] == "POST"] and not sleeps.asked

    run(story)


def test_wrong_keys_are_an_authentication_failure_not_a_retry_loop() -> None:
    async def main() -> None:
        server = LoopbackBinance("test-key", "test-secret")
        url = await server.start()
        gw = CcxtGateway(
            "binance",
            "binanceusdm",
            ApiCredentials("x", "test-key", "wrong"),
            api_base_url=url,
            sleep=Sleeps(),
        )
        try:
            await gw.start()  # public market data needs no signature
            with pytest.raises(AuthenticationFailed):
                await gw.fetch_balance()
        finally:
            await gw.close()
            await server.close()

    asyncio.run(main())


def test_cancel_of_an_order_already_gone_is_not_an_error() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        assert await gw.cancel_order(ETH, "tc1-never") is None
        resting = await gw.submit_order(
            intent("tc1-rest", order_type=OrderType.LIMIT, price="2000")
        )
        assert resting.status is OrderStatus.OPEN
        cancelled = await gw.cancel_order(ETH, "tc1-rest")
        assert cancelled is not None and cancelled.status is OrderStatus.CANCELED
        twice = await gw.cancel_order(ETH, "tc1-rest")
        assert twice is not None and twice.status is OrderStatus.CANCELED

    run(story)


@pytest.mark.slow  # waits out injected faults and back-offs over HTTP
def test_flatten_all_flattens_a_loopback_account_through_faults() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        await gw.submit_order(intent("tc1-a", qty="0.04"))
        await gw.submit_order(intent("tc1-rest", order_type=OrderType.LIMIT, price="2000"))
        server.faults.add("rate_limited", path="/fapi/v1/order", method="POST", retry_after=1)
        server.faults.add("partial_fill", fraction=0.5)
        [eth] = await Flattener(None, SystemClock(), sleep=sleeps).flatten(
            gw, [], lambda s: None, timeout_s=30, whole_account=True
        )
        assert eth.flat and eth.cancelled and eth.symbol == ETH, eth.as_dict()
        assert await gw.fetch_positions() == [] and await gw.fetch_open_orders() == []

    run(story)
