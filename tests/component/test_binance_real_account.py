"""What a real Binance account does to the gateway, on the loopback over real HTTP: history
gaps, a busy exchange, lagging lookups, a clock off by seconds, account modes, brackets,
fees in BNB, liquidations and funding."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters.ccxt_gateway import CcxtGateway
from daemon.credentials import ApiCredentials
from daemon.domain.errors import AccountRefused, OrderNeverPlaced
from daemon.domain.models import OrderIntent, OrderType, Side
from daemon.ports import StateStore
from daemon.runtime.fills import record_new_fills
from tests.conftest import StoreOpener
from tests.loopback.binance_usdm import LoopbackBinance
from tests.loopback.binance_ws import LoopbackBinanceWs

ETH = "ETH/USDT:USDT"
DAY_MS = 24 * 3600 * 1000
KEYS = ApiCredentials("loopback", "test-key", "test-secret")


def intent(cid: str, side: Side = Side.BUY, qty: str = "0.02", reduce_only: bool = False) -> Any:
    return OrderIntent(
        "b1",
        "binance",
        ETH,
        cid,
        side,
        OrderType.MARKET,
        Decimal(qty),
        None,
        reduce_only,
        datetime.now(UTC),
    )


class Sleeps:
    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))


Story = Callable[[LoopbackBinance, CcxtGateway, Sleeps], Awaitable[None]]


def run(story: Story, window_s: float | None = 1.0, **server: Any) -> None:
    async def main() -> None:
        loopback = LoopbackBinance("test-key", "test-secret", **server)
        url = await loopback.start()
        now = int(time.time() * 1000) // 60_000 * 60_000
        loopback.push_candle("ETHUSDT", now, 2500, 2505, 2495, 2500, 100)
        sleeps = Sleeps()
        gateway = CcxtGateway(
            "binance",
            "binanceusdm",
            KEYS,
            api_base_url=url,
            timeout_s=2,
            requests_per_s=1000,  # ccxt's throttle would only slow the tests down
            sleep=sleeps,
            unknown_outcome_window_s=window_s,
        )
        try:
            await gateway.start()
            await story(loopback, gateway, sleeps)
        finally:
            await gateway.close()
            await loopback.close()

    asyncio.run(main())


def user_trade_queries(server: LoopbackBinance) -> int:
    return sum(1 for m, p, _ in server.requests if (m, p) == ("GET", "/fapi/v1/userTrades"))


async def fill_days_ago(server: LoopbackBinance, gw: CcxtGateway, store: StateStore, days: int):
    """A fill the bot recorded `days` ago, and nothing since: the store's view of an idle bot."""
    await gw.submit_order(intent("tc1-old"))
    server.shift_history(-days * DAY_MS)
    [old] = await gw.fetch_fills(ETH, datetime.now(UTC) - timedelta(days=days + 1))
    assert store.record_fill(old, "b1")
    return old


def test_a_fill_after_ten_idle_days_is_recorded(open_store: StoreOpener) -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        store = open_store()
        await fill_days_ago(server, gw, store, days=10)
        await gw.submit_order(intent("tc1-new", Side.SELL, reduce_only=True))
        new = await record_new_fills(gw, store, ETH, "b1")
        assert [f.client_order_id for f in new] == ["tc1-new"]
        assert [f.client_order_id for f in store.fills("b1")] == ["tc1-old", "tc1-new"]
        store.close()

    run(story)


def test_a_three_month_gap_is_read_in_weekly_windows_and_the_cursor_moves_on(
    open_store: StoreOpener,
) -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        store = open_store()
        await fill_days_ago(server, gw, store, days=90)
        await gw.submit_order(intent("tc1-new", Side.SELL, reduce_only=True))
        before = user_trade_queries(server)
        new = await record_new_fills(gw, store, ETH, "b1")
        assert [f.client_order_id for f in new] == ["tc1-new"]
        assert 13 <= user_trade_queries(server) - before <= 15  # 90 days in 7-day windows
        before = user_trade_queries(server)
        assert await record_new_fills(gw, store, ETH) == []
        assert user_trade_queries(server) - before == 1, "the cursor moved: one window now"
        store.close()

    run(story)


def test_more_fills_than_a_page_are_all_read(tmp_path: Path) -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        for n in range(5):
            await gw.submit_order(intent(f"tc1-{n}", qty="0.01"))
        gw_page = {"binanceusdm": 2}
        import daemon.adapters.ccxt_gateway as module

        original = dict(module.HISTORY_PAGE)
        module.HISTORY_PAGE.update(gw_page)
        try:
            fills = await gw.fetch_fills(ETH, datetime.now(UTC) - timedelta(hours=1))
        finally:
            module.HISTORY_PAGE.update(original)
        assert [f.client_order_id for f in fills] == [f"tc1-{n}" for n in range(5)]

    run(story)


def test_an_overloaded_exchange_is_retried_with_backoff() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("overloaded", path="/fapi/v1/openOrders", count=2)
        assert await gw.fetch_open_orders(ETH) == []
        assert len(sleeps.asked) == 2 and all(s > 0 for s in sleeps.asked)
        server.faults.add("overloaded", path="/fapi/v3/positionRisk", count=1)
        assert await gw.fetch_positions() == []

    run(story)


def test_an_order_refused_as_overloaded_is_looked_up_then_known_never_placed() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("overloaded", method="POST", path="/fapi/v1/order")
        with pytest.raises(OrderNeverPlaced, match="never reached the exchange"):
            await gw.submit_order(intent("tc1-busy"))
        posts = [r for r in server.requests if r[:2] == ("POST", "/fapi/v1/order")]
        assert len(posts) == 1, "never sent twice"
        assert server.orders_by_client_id() == {}

    run(story)


def test_a_lagging_lookup_does_not_double_an_entry() -> None:
    """The reply is lost and, just after acceptance, the order cannot be found yet: a
    resend under the same id would be accepted again (the filled order is no longer open)."""

    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("accepted_reply_lost", method="POST", path="/fapi/v1/order")
        order = await gw.submit_order(intent("tc1-lag"))
        assert order.client_order_id == "tc1-lag" and order.filled_qty == Decimal("0.02")
        assert server.position("ETHUSDT")[0] == Decimal("0.02"), "one entry, not two"
        posts = [r for r in server.requests if r[:2] == ("POST", "/fapi/v1/order")]
        assert len(posts) == 1

    run(story, window_s=10.0, lookup_lag_ms=800)


def test_execution_status_unknown_is_looked_up_not_resent() -> None:
    """-1007: Binance's backend timed out and the order may or may not exist; with a lagging
    lookup it is not found at first, yet it was accepted: it is found, never sent again."""

    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("execution_unknown", method="POST", path="/fapi/v1/order")
        order = await gw.submit_order(intent("tc1-unknown"))
        assert order.client_order_id == "tc1-unknown" and order.filled_qty == Decimal("0.02")
        assert server.position("ETHUSDT")[0] == Decimal("0.02"), "one entry, not two"
        posts = [r for r in server.requests if r[:2] == ("POST", "/fapi/v1/order")]
        assert len(posts) == 1

    run(story, window_s=10.0, lookup_lag_ms=800)


def test_a_clock_3_s_ahead_trades_normally_and_is_measured_again_on_minus_1021() -> None:
    offset = [-3_000]  # the exchange's clock is behind ours: our timestamps look early

    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        assert 2_900 <= gw.time_difference_ms <= 3_500
        order = await gw.submit_order(intent("tc1-clock"))
        assert order.filled_qty == Decimal("0.02")
        offset[0] = -8_000  # the host clock jumps further ahead
        assert (await gw.fetch_balance()).total > 0  # -1021, measured again, retried
        assert 7_900 <= gw.time_difference_ms <= 8_500
        refused = [r for r in server.requests if r[1] == "/fapi/v1/time"]
        assert len(refused) == 2

    run(story, clock=lambda: int(time.time() * 1000) + offset[0])


def test_hedge_mode_is_reported_and_its_refusal_names_the_position_mode() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        setup = await gw.account_setup([ETH])
        assert setup.hedge_mode is True
        with pytest.raises(AccountRefused, match="hedge mode") as refused:
            await gw.submit_order(intent("tc1-hedge"))
        assert refused.value.check == "position_mode"

    run(story, hedge_mode=True)


def test_account_setup_reports_multi_assets_permissions_and_margin_modes() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        assert server.key_permissions is not None
        server.key_permissions["enableWithdrawals"] = True
        setup = await gw.account_setup([ETH])
        assert (setup.hedge_mode, setup.multi_assets) == (False, True)
        assert (setup.can_trade_futures, setup.can_withdraw) == (True, True)
        assert setup.margin_modes == {ETH: "crossed"}
        with pytest.raises(AccountRefused, match="Multi-Assets") as refused:
            await gw.set_isolated_margin(ETH)
        assert refused.value.check == "multi_assets"

    run(story, multi_assets=True)


def test_isolated_margin_refused_under_an_open_cross_position_names_the_margin_mode() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        await gw.submit_order(intent("tc1-cross"))  # a position opened in cross margin
        with pytest.raises(AccountRefused, match="-4048") as refused:
            await gw.set_isolated_margin(ETH)
        assert refused.value.check == "margin_mode"
        assert "position is open" in str(refused.value)

    run(story)


def test_leverage_brackets_come_from_the_exchange_and_beyond_them_is_refused_by_name() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        assert await gw.load_leverage_brackets([ETH]) == {ETH: "exchange"}
        market = await gw.market(ETH)
        assert market.max_leverage == 100
        assert market.max_leverage_at(Decimal(150_000)) == 75
        with pytest.raises(AccountRefused, match="-4028") as refused:
            await gw.set_leverage(ETH, 120)
        assert refused.value.check == "leverage"
        await gw.set_leverage(ETH, 100)
        with pytest.raises(AccountRefused, match="-2027") as refused:  # 200k > 100x's 100k cap
            await gw.submit_order(intent("tc1-big", qty="80"))
        assert refused.value.check == "leverage_bracket"

    run(story, initial_balance=1_000_000)


def test_a_fee_paid_in_bnb_is_counted_in_usdt_at_the_fill_minute() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        minute = int(time.time() * 1000) // 60_000 * 60_000
        server.push_candle("BNBUSDT", minute, 600, 601, 599, 600, 10)
        await gw.submit_order(intent("tc1-bnb"))
        [fill] = await gw.fetch_fills(ETH)
        [trade] = server.trades()
        assert trade["commissionAsset"] == "BNB"
        assert fill.fee == Decimal(trade["commission"]) * 600
        assert abs(fill.fee - Decimal("0.025")) < Decimal("0.00001")  # 0.05 % of 50 USDT

    run(story, bnb_fees=True)


def test_liquidation_and_adl_fills_are_told_apart_journalled_and_counted(
    open_store: StoreOpener,
) -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        store = open_store()
        await gw.submit_order(intent("tc1-a"))
        server.liquidate("ETHUSDT", 2400)
        await gw.submit_order(intent("tc1-b"))
        server.liquidate("ETHUSDT", 2450, adl=True)
        kinds = [(f.client_order_id[:13], f.kind) for f in await gw.fetch_fills(ETH)]
        assert [k for _, k in kinds] == ["trade", "liquidation", "trade", "adl"]
        recorded = await record_new_fills(gw, store, ETH, "b1")
        journalled = [e["kind"] for e in store.events("b1")]
        assert journalled == ["order_filled", "liquidation_filled", "order_filled", "adl_filled"]
        # 0.02 ETH bought at 2500, liquidated at 2400 (-2) and deleveraged at 2450 (-1)
        assert sum(f.realized_pnl for f in recorded) == Decimal(-3)
        assert store.realized_pnl("b1") == Decimal(-3) - sum(f.fee for f in recorded)
        store.close()

    run(story)


def test_funding_payments_are_read_from_the_income_history() -> None:
    async def story(server: LoopbackBinance, gw: CcxtGateway, sleeps: Sleeps) -> None:
        await gw.submit_order(intent("tc1-f", qty="2"))
        paid = server.pay_funding("ETHUSDT", "0.001")  # 2 ETH at 2500: 5 USDT
        assert paid == Decimal("-5")
        [payment] = await gw.fetch_funding(ETH)
        assert payment.amount == Decimal("-5") and payment.symbol == ETH

    run(story)


def test_the_user_data_stream_delivers_fills_as_they_happen_and_keeps_its_key_alive() -> None:
    async def main() -> None:
        server = LoopbackBinanceWs("test-key", "test-secret")
        url = await server.start()
        minute = int(time.time() * 1000) // 60_000 * 60_000
        server.push_candle("ETHUSDT", minute, 2500, 2505, 2495, 2500, 100)
        gw = CcxtGateway(
            "binance", "binanceusdm", KEYS, api_base_url=url, requests_per_s=1000, timeout_s=2
        )
        try:
            await gw.start()
            assert gw.can_watch_user_data
            gw._stream().options["listenKeyRefreshRate"] = 300  # ms: keep-alive seen quickly
            watching = asyncio.ensure_future(gw.watch_fills())
            await asyncio.sleep(0.5)  # connected and listening
            assert server.user_stream_connections == 1
            await gw.submit_order(intent("tc1-ws", qty="0.04"))
            [fill] = await asyncio.wait_for(watching, 5)
            assert (fill.client_order_id, fill.qty, fill.kind) == (
                "tc1-ws",
                Decimal("0.04"),
                "trade",
            )
            assert fill.fee == Decimal("0.05")  # 0.05 % of 100 USDT
            liquidation = asyncio.ensure_future(gw.watch_fills())
            await asyncio.sleep(0.1)
            server.liquidate("ETHUSDT", 2400)
            [liquidated] = await asyncio.wait_for(liquidation, 5)
            assert liquidated.kind == "liquidation" and liquidated.realized_pnl == Decimal("-4")
            await asyncio.sleep(0.5)
            assert server.listen_key_requests[0] == "POST" and "PUT" in server.listen_key_requests
        finally:
            await gw.close()
            await server.close()

    asyncio.run(main())
