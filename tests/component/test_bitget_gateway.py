"""The ccxt gateway's whole surface on Bitget, against the loopback Bitget over real HTTP:
markets, leverage and isolated margin, market and reduce-only orders with client ids,
positions, balance, fills, funding, flatten, the account preflight and the error mapping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from daemon.adapters.ccxt_gateway import CcxtGateway
from daemon.clock import SystemClock
from daemon.credentials import ApiCredentials
from daemon.domain.errors import AccountRefused, OrderNeverPlaced
from daemon.domain.models import OrderIntent, OrderStatus, OrderType, Side
from daemon.runtime.fills import record_new_fills
from daemon.runtime.flatten import Flattener
from daemon.runtime.preflight import BotNeeds, preflight
from tests.conftest import StoreOpener
from tests.loopback.bitget_usdt import LoopbackBitget

ETH = "ETH/USDT:USDT"
KEY, SECRET, PASSPHRASE = "bg-key", "bg-secret", "bg-pass"
KEYS = ApiCredentials("loopback", KEY, SECRET, PASSPHRASE)
DAY_MS = 24 * 3600 * 1000


def intent(cid: str, side: Side = Side.BUY, qty: str = "0.02", reduce_only: bool = False) -> Any:
    return OrderIntent(
        "b1",
        "bitget",
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


Story = Callable[[LoopbackBitget, CcxtGateway, Sleeps], Awaitable[None]]


def run(
    story: Story,
    keys: ApiCredentials = KEYS,
    window_s: float | None = 1.0,
    isolated: bool = True,
    **server: Any,
) -> None:
    async def main() -> None:
        loopback = LoopbackBitget(KEY, SECRET, PASSPHRASE, **server)
        url = await loopback.start()
        now = int(time.time() * 1000) // 60_000 * 60_000
        loopback.push_candle("ETHUSDT", now, 2500, 2505, 2495, 2500, 100)
        sleeps = Sleeps()
        gateway = CcxtGateway(
            "bitget",
            "bitget",
            keys,
            api_base_url=url,
            timeout_s=2,
            requests_per_s=1000,
            sleep=sleeps,
            unknown_outcome_window_s=window_s,
        )
        try:
            await gateway.start()
            if isolated:
                await gateway.set_leverage(ETH, 3)
            await story(loopback, gateway, sleeps)
        finally:
            await gateway.close()
            await loopback.close()

    asyncio.run(main())


def test_markets_orders_positions_balance_and_fills_on_bitget() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        market = await gw.market(ETH)
        assert (market.amount_step, market.price_step, market.min_notional) == (
            Decimal("0.01"),
            Decimal("0.01"),
            Decimal(5),
        )
        order = await gw.submit_order(intent("tc1-00000001"))
        assert order.client_order_id == "tc1-00000001" and order.status is OrderStatus.FILLED
        assert order.filled_qty == Decimal("0.02") and order.bot == "b1"
        [position] = await gw.fetch_positions(ETH)
        assert (position.qty, position.entry_price, position.leverage) == (
            Decimal("0.02"),
            Decimal(2500),
            3,
        )
        minute = int(time.time() * 1000) // 60_000 * 60_000 + 60_000
        server.push_candle("ETHUSDT", minute, 2500, 2560, 2500, 2550, 100)
        closed = await gw.submit_order(intent("tc1-00000002", Side.SELL, reduce_only=True))
        assert closed.status is OrderStatus.FILLED and closed.reduce_only
        fills = await gw.fetch_fills(ETH)
        assert [f.client_order_id for f in fills] == ["tc1-00000001", "tc1-00000002"]
        assert fills[1].realized_pnl == Decimal("1")  # (2550 - 2500) * 0.02
        assert fills[0].fee == Decimal("0.03")  # 0.06 % of 50 USDT
        assert await gw.fetch_positions() == []
        assert (await gw.fetch_balance()).total == server.wallet_balance
        assert server.unknown_requests == []

    run(story)


def test_isolated_margin_is_sent_on_every_order() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        assert server.margin_mode("ETHUSDT") == "isolated"
        await gw.submit_order(intent("tc1-a"))
        await gw.submit_order(intent("tc1-b", Side.SELL, qty="0.02", reduce_only=True))
        sent = server.order_requests()
        assert [r["marginMode"] for r in sent] == ["isolated", "isolated"]
        assert [r.get("reduceOnly") for r in sent] == [None, "YES"]

    run(story)


def test_hedge_mode_is_refused_by_the_preflight_and_by_the_error_mapping() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        report = await preflight(gw, [BotNeeds("b1", ETH, 3)], Decimal(50), started=True)
        assert [f.check for f in report.failures] == ["position_mode"]
        assert report.refusal("b1") is not None and "hedge mode" in report.refusal("b1")  # type: ignore[operator]
        with pytest.raises(AccountRefused, match="40774") as refused:
            await gw.submit_order(intent("tc1-hedge"))
        assert refused.value.check == "position_mode"

    run(story, hedge_mode=True, isolated=False)


def test_a_missing_passphrase_is_refused_before_any_private_call() -> None:
    async def main() -> None:
        server = LoopbackBitget(KEY, SECRET, PASSPHRASE)
        url = await server.start()
        gw = CcxtGateway(
            "bitget", "bitget", ApiCredentials("bg-main", KEY, SECRET), api_base_url=url
        )
        try:
            report = await preflight(gw, [BotNeeds("b1", ETH, 3)], Decimal(50))
            [failure] = report.failures
            assert failure.check == "credentials" and "passphrase" in failure.reason
            assert "bg-main" in failure.reason
            assert server.requests == [], "nothing was asked of the exchange"
        finally:
            await gw.close()
            await server.close()

    asyncio.run(main())


def test_preflight_passes_sets_isolated_and_loads_brackets_and_refuses_beyond_them() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        bots = [BotNeeds("b1", ETH, 20), BotNeeds("b2", "BTC/USDT:USDT", 125)]
        report = await preflight(gw, bots, Decimal(200_000), started=True)
        assert report.brackets == {ETH: "exchange", "BTC/USDT:USDT": "exchange"}
        [failure] = report.failures
        assert (failure.check, failure.bot) == ("leverage_bracket", "b2")
        assert "at most 100x" in failure.reason
        assert [w.check for w in report.warnings] == ["permissions"]  # withdrawals enabled
        assert server.margin_mode("ETHUSDT") == "isolated"
        assert (await gw.market(ETH)).max_leverage_at(Decimal(200_000)) == 75

    run(story, isolated=False, withdrawals=True)


def test_a_wrong_product_type_or_margin_coin_is_refused_by_name_and_the_right_bot_trades() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        bots = [
            BotNeeds("usdc", "BTC/USDC:USDC", 3),
            BotNeeds("coin", "ETH/USD:ETH", 3),
            BotNeeds("dated", "ETH/USDT:USDT-261225", 3),
            BotNeeds("gone", "XYZ/USDT:USDT", 3),
            BotNeeds("b1", ETH, 3),
        ]
        report = await preflight(gw, bots, Decimal(50), started=True)
        assert report.account_ok, "one bot's symbol holds that bot, not the account"
        refused = {f.bot: f.reason for f in report.failures if f.check == "market"}
        assert [f.check for f in report.failures] == ["market"] * 4
        assert refused["gone"] == "bitget has no market XYZ/USDT:USDT"
        assert refused["usdc"] == (
            "BTC/USDC:USDC is not a USDT-margined perpetual (margin coin USDC, Bitget product "
            "type USDC-FUTURES); tradectl trades USDT-margined perpetuals only (Bitget: "
            "product type USDT-FUTURES, margin coin USDT)"
        )
        assert "margin coin ETH, Bitget product type COIN-FUTURES" in refused["coin"]
        assert "a future delivered on 261225" in refused["dated"]
        assert report.refusal("b1") is None
        assert report.brackets == {ETH: "exchange", "XYZ/USDT:USDT": "unknown"}
        assert server.margin_mode("ETHUSDT") == "isolated"
        private = [p for _, path, p in server.requests if "/mix/account/" in path]
        assert private and all(p["productType"] == "USDT-FUTURES" for p in private)
        assert {p["marginCoin"] for p in private if "marginCoin" in p} == {"USDT"}
        assert server.unknown_requests == []

    run(story, isolated=False)


def test_a_lost_reply_with_a_lagging_lookup_is_one_order_and_a_dropped_one_never_placed() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("accepted_reply_lost", path="/api/v2/mix/order/place-order")
        order = await gw.submit_order(intent("tc1-lost"))
        assert order.status is OrderStatus.FILLED and order.client_order_id == "tc1-lost"
        server.faults.add("drop", path="/api/v2/mix/order/place-order")
        with pytest.raises(OrderNeverPlaced):
            await gw.submit_order(intent("tc1-drop"))
        assert list(server.orders_by_client_id()) == ["tc1-lost"]
        assert len(server.order_requests()) == 2, "each intent sent once"

    run(story, window_s=3.0, lookup_lag_ms=500)


def test_busy_and_rate_limited_bitget_is_retried() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        server.faults.add("overloaded", path="/api/v2/mix/position/all-position", count=2)
        assert await gw.fetch_positions() == []
        server.faults.add("rate_limited", path="/api/v2/mix/account/accounts", retry_after=4)
        assert (await gw.fetch_balance()).total > 0
        assert 4 in [round(s) for s in sleeps.asked]

    run(story)


def test_a_clock_3_s_ahead_trades_on_bitget_and_is_measured_again_on_40008() -> None:
    """The loopback refuses timestamps 1 s off (real Bitget: 30 s), so the 3 s offset must be
    measured and applied for any signed request to pass."""
    offset = [-3_000]  # Bitget's clock is behind ours: our timestamps look ahead

    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        assert 2_900 <= gw.time_difference_ms <= 3_500
        order = await gw.submit_order(intent("tc1-clock"))
        assert order.filled_qty == Decimal("0.02")
        offset[0] = -8_000  # the host clock jumps further ahead
        assert (await gw.fetch_balance()).total > 0  # 40008, measured again, retried
        assert 7_900 <= gw.time_difference_ms <= 8_500
        measured = [r for r in server.requests if r[1] == "/api/v2/public/time"]
        assert len(measured) == 2

    run(
        story,
        clock=lambda: int(time.time() * 1000) + offset[0],
        timestamp_window_ms=1_000,
    )


def test_fills_after_ten_idle_days_funding_and_a_liquidation_on_bitget(
    open_store: StoreOpener,
) -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        store = open_store()
        await gw.submit_order(intent("tc1-old"))
        server.shift_history(-10 * DAY_MS)
        [old] = await gw.fetch_fills(ETH, datetime.now(UTC) - timedelta(days=11))
        store.record_fill(old, "b1")
        await gw.submit_order(intent("tc1-new", qty="2"))
        assert server.pay_funding("ETHUSDT", "0.001") < 0
        server.liquidate("ETHUSDT", 2400)
        new = await record_new_fills(gw, store, ETH, "b1", funding_owner="b1")
        assert new[0].client_order_id == "tc1-new"
        assert [f.kind for f in new] == ["trade", "liquidation"]
        [funding] = store.funding("b1")
        assert funding.amount == Decimal("-5.05")  # 2.02 ETH at 2500, 0.1 %
        store.close()

    run(story)


def test_flatten_closes_a_bitget_account_through_faults() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        await gw.submit_order(intent("tc1-a", qty="0.04"))
        server.faults.add("rate_limited", path="/api/v2/mix/order/place-order", retry_after=1)
        [eth] = await Flattener(None, SystemClock(), sleep=sleeps).flatten(
            gw, [], lambda s: None, timeout_s=30, whole_account=True
        )
        assert eth.flat and eth.symbol == ETH, eth.as_dict()
        assert await gw.fetch_positions() == [] and await gw.fetch_open_orders() == []

    run(story)


def test_union_margin_mode_is_refused_like_binance_multi_assets() -> None:
    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        report = await preflight(gw, [BotNeeds("b1", ETH, 3)], Decimal(50), started=True)
        assert [f.check for f in report.failures] == ["multi_assets"]
        assert server.margin_mode("ETHUSDT") == "crossed", "nothing was changed"

    run(story, union_mode=True, isolated=False)


def test_resting_stops_and_take_profits_live_on_the_bitget_loopback() -> None:
    """The gateway's trigger orders (stop-market, take-profit-market) on Bitget's tpsl
    endpoint: placed, listed, cancelled, and a stop that fires closes the position."""

    async def story(server: LoopbackBitget, gw: CcxtGateway, sleeps: Sleeps) -> None:
        await gw.submit_order(intent("tc1-entry", qty="0.04"))
        stop = await gw.submit_order(
            trigger_intent("tc1-stop", OrderType.STOP_MARKET, "2400", qty="0.04")
        )
        take = await gw.submit_order(
            trigger_intent("tc1-take", OrderType.TAKE_PROFIT_MARKET, "2700", qty="0.04")
        )
        assert (stop.type, stop.trigger_price, stop.status) == (
            OrderType.STOP_MARKET,
            Decimal(2400),
            OrderStatus.OPEN,
        )
        assert take.type is OrderType.TAKE_PROFIT_MARKET
        listed = {o.client_order_id: o.type for o in await gw.fetch_open_orders(ETH)}
        assert listed == {
            "tc1-stop": OrderType.STOP_MARKET,
            "tc1-take": OrderType.TAKE_PROFIT_MARKET,
        }
        cancelled = await gw.cancel_order(ETH, "tc1-take", trigger=True)
        assert cancelled is not None and cancelled.status is OrderStatus.CANCELED
        minute = int(time.time() * 1000) // 60_000 * 60_000 + 60_000
        server.push_candle("ETHUSDT", minute, 2450, 2460, 2390, 2410, 30)  # the stop fires
        assert server.position("ETHUSDT")[0] == 0
        fired = await gw.fetch_order(ETH, "tc1-stop", trigger=True)
        assert fired is not None and fired.status is OrderStatus.FILLED
        assert await gw.fetch_open_orders(ETH) == []

    run(story)


def trigger_intent(cid: str, order_type: OrderType, trigger: str, qty: str) -> Any:
    return OrderIntent(
        "b1",
        "bitget",
        ETH,
        cid,
        Side.SELL,
        order_type,
        Decimal(qty),
        None,
        True,
        datetime.now(UTC),
        purpose="stop" if order_type is OrderType.STOP_MARKET else "take_profit",
        trigger_price=Decimal(trigger),
    )
