"""Real ccxt bitget over real HTTP against the loopback Bitget USDT-M server, checked against
ccxt's own recorded requests and replies (tests/fixtures/ccxt_static)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from daemon.adapters.ccxt_gateway import point_at_base_url
from tests.conftest import FIXTURES
from tests.loopback.bitget_usdt import LoopbackBitget

KEY, SECRET, PASSPHRASE = "bg-key", "bg-secret", "bg-pass"
ETH, BTC = "ETH/USDT:USDT", "BTC/USDT:USDT"
Story = Callable[[LoopbackBitget, Any], Awaitable[None]]


def recorded(kind: str, method: str, description: str) -> dict[str, Any]:
    path = FIXTURES / "ccxt_static" / f"{kind}__bitget__usdt_futures_subset.json"
    data = json.loads(path.read_text())
    return next(e for e in data["methods"][method] if e["description"] == description)


def play(story: Story, *, password: str = PASSPHRASE, **server_kwargs: Any) -> None:
    async def main() -> None:
        server = LoopbackBitget(KEY, SECRET, PASSPHRASE, **server_kwargs)
        url = await server.start()
        exchange = ccxt.bitget(
            {
                "apiKey": KEY,
                "secret": SECRET,
                "password": password,
                "timeout": 1500,
                "enableRateLimit": False,
                "options": {"defaultType": "swap", "uta": False, "fetchMarkets": ["swap"]},
            }
        )
        try:
            point_at_base_url(exchange, url)
            now = int(time.time() * 1000) // 60_000 * 60_000
            server.push_candle("ETHUSDT", now, 2500, 2505, 2495, 2500, 40)
            server.push_candle("BTCUSDT", now, 50_000, 50_050, 49_950, 50_000, 12)
            await story(server, exchange)
        finally:
            await exchange.close()
            await server.close()

    asyncio.run(main())


async def isolated(ex: Any, symbol: str = ETH) -> None:
    await ex.load_markets()
    await ex.set_margin_mode("isolated", symbol)


def test_ccxt_loads_the_usdt_contracts_with_bitget_precision() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        markets = await ex.load_markets()
        assert set(markets) == {ETH, BTC}
        eth = markets[ETH]
        assert (eth["type"], eth["linear"], eth["settle"], eth["settleId"]) == (
            "swap",
            True,
            "USDT",
            "USDT",
        )
        assert eth["precision"] == {"amount": 0.01, "price": 0.01}
        assert eth["limits"]["cost"]["min"] == 5 and eth["limits"]["leverage"]["max"] == 100
        assert server.unknown_requests == []

    play(story)


def test_requests_are_the_ones_ccxt_records_for_bitget() -> None:
    """The recorded one-way isolated market sell and set-margin-mode reach the loopback as
    recorded (fields that vary aside) and are accepted."""

    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex, BTC)
        entry = recorded("request", "setMarginMode", "Set margin mode to isolated")
        sent = server.requests[-1][2]
        expected = dict(entry["output"], symbol="BTCUSDT")
        assert sent == expected
        await ex.create_order(BTC, "market", "buy", 0.002, None, {"marginMode": "isolated"})
        entry = recorded(
            "request", "createOrder", "Swap oneWayMode market sell order with reduceOnly"
        )
        symbol, order_type, side, amount, price, params = entry["input"]
        await ex.create_order(symbol, order_type, side, amount, price, params)
        _, path, body = server.requests[-1]
        assert path == entry["url"].removeprefix("https://api.bitget.com")
        assert body == entry["output"]
        assert server.position("BTCUSDT")[0] == Decimal("0.001")

    play(story)


def test_replies_carry_every_field_ccxt_recorded() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex)
        await ex.create_order(
            ETH, "market", "buy", 0.02, None, {"clientOrderId": "tc-1", "marginMode": "isolated"}
        )
        detail = (await ex.fetch_order(None, ETH, {"clientOrderId": "tc-1"}))["info"]
        [trade] = await ex.fetch_my_trades(ETH)
        [position] = await ex.fetch_positions([ETH])
        account = (await ex.fetch_leverage(ETH))["info"]
        for mine, (method, description) in [
            (detail, ("fetchOrder", "swap market buy")),
            (position["info"], ("fetchPositions", "Linear position")),
            (account, ("fetchLeverage", "fetch leverage")),
        ]:
            reply = recorded("response", method, description)["httpResponse"]["data"]
            reply = reply[0] if isinstance(reply, list) else reply
            assert set(reply) <= set(mine), (method, set(reply) - set(mine))
        fill = recorded("response", "fetchMyTrades", "swap trade")["httpResponse"]["data"]
        assert set(fill["fillList"][0]) <= set(trade["info"])
        assert set(fill) <= {"fillList", "endId"}
        assert (trade["amount"], trade["price"], trade["fee"]["cost"]) == (0.02, 2500, 0.03)

    play(story)


def test_an_order_without_isolated_margin_is_refused_on_an_isolated_symbol() -> None:
    """ccxt sends marginMode "crossed" unless told: on a symbol set to isolated that is refused."""

    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex)
        with pytest.raises(ccxt.BadRequest, match="marginMode crossed"):
            await ex.create_order(ETH, "market", "buy", 0.02)
        assert server.order_requests()[-1]["marginMode"] == "crossed"
        assert server.position("ETHUSDT")[0] == 0

    play(story)


def test_hedge_mode_refuses_one_way_orders_with_40774() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await ex.load_markets()
        with pytest.raises(ccxt.InvalidOrder, match="40774"):
            await ex.create_order(ETH, "market", "buy", 0.02, None, {"marginMode": "crossed"})
        account = await ex.fetch_leverage(ETH)
        assert account["info"]["posMode"] == "hedge_mode"

    play(story, hedge_mode=True)


def test_a_reused_client_id_is_refused_with_40786() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex)
        params = {"clientOrderId": "tc-dup", "marginMode": "isolated"}
        await ex.create_order(ETH, "market", "buy", 0.02, None, params)
        with pytest.raises(ccxt.ExchangeError, match="40786"):
            await ex.create_order(ETH, "market", "buy", 0.02, None, params)
        assert server.position("ETHUSDT")[0] == Decimal("0.02")

    play(story)


@pytest.mark.parametrize(
    ("password", "secret", "code"),
    [("wrong", SECRET, "40012"), (PASSPHRASE, "wrong", "40009"), ("", SECRET, "password")],
    ids=["passphrase", "signature", "no-passphrase"],
)
def test_bad_credentials_are_authentication_errors(password: str, secret: str, code: str) -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        ex.secret = secret
        await ex.load_markets()
        with pytest.raises(ccxt.AuthenticationError, match=code):
            await ex.fetch_balance()

    play(story, password=password)


def test_a_stale_timestamp_is_InvalidNonce() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await ex.load_markets()
        with pytest.raises(ccxt.InvalidNonce, match="40008"):
            await ex.fetch_balance()

    play(story, clock=lambda: int(time.time() * 1000) + 60_000)


def test_plan_orders_trigger_list_and_cancel_as_ccxt_sends_them() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex)
        await ex.create_order(ETH, "market", "buy", 0.04, None, {"marginMode": "isolated"})
        stop = await ex.create_order(
            ETH, "market", "sell", 0.04, None, {"stopLossPrice": 2400, "clientOrderId": "tc-sl"}
        )
        take = await ex.create_order(
            ETH, "market", "sell", 0.04, None, {"takeProfitPrice": 2700, "clientOrderId": "tc-tp"}
        )
        entry = await ex.create_order(
            ETH,
            "market",
            "buy",
            0.02,
            None,
            {"triggerPrice": 2600, "clientOrderId": "tc-tr", "marginMode": "isolated"},
        )
        assert [stop["clientOrderId"], take["clientOrderId"], entry["clientOrderId"]] == [
            "tc-sl",
            "tc-tp",
            "tc-tr",
        ]
        paths = [p for m, p, _ in server.requests if m == "POST"][-3:]
        assert paths == [
            "/api/v2/mix/order/place-tpsl-order",
            "/api/v2/mix/order/place-tpsl-order",
            "/api/v2/mix/order/place-plan-order",
        ]
        plans = await ex.fetch_open_orders(ETH, None, None, {"trigger": True})
        assert [(o["clientOrderId"], o["triggerPrice"]) for o in plans] == [("tc-tr", 2600)]
        tpsl = await ex.fetch_open_orders(ETH, None, None, {"planType": "profit_loss"})
        assert sorted(o["clientOrderId"] for o in tpsl) == ["tc-sl", "tc-tp"]
        canceled = await ex.cancel_order(None, ETH, {"clientOrderId": "tc-tr", "trigger": True})
        assert canceled["clientOrderId"] == "tc-tr"
        assert await ex.fetch_open_orders(ETH, None, None, {"trigger": True}) == []
        minute = int(time.time() * 1000) // 60_000 * 60_000 + 60_000
        server.push_candle("ETHUSDT", minute, 2450, 2460, 2390, 2410, 30)  # the stop fires
        assert server.position("ETHUSDT")[0] == 0
        assert server.plan_orders_by_client_id()["tc-sl"]["planStatus"] == "executed"
        stopped = [t for t in server.trades() if t["side"] == "sell"]
        assert [t["price"] for t in stopped] == ["2400.00"]

    play(story)


def test_fills_are_served_newest_first_at_most_a_week_and_a_page_at_a_time() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex)
        for _ in range(3):
            await ex.create_order(ETH, "market", "buy", 0.01, None, {"marginMode": "isolated"})
        server.shift_history(-10 * 24 * 3600 * 1000)
        assert await ex.fetch_my_trades(ETH) == [], "the default window is the last 7 days"
        old = int(time.time() * 1000) - 11 * 24 * 3600 * 1000
        page = await ex.fetch_my_trades(ETH, old, 2, {"until": old + 6 * 24 * 3600 * 1000})
        assert len(page) == 2
        with pytest.raises(ccxt.BadRequest, match="7 days"):
            await ex.fetch_my_trades(ETH, old, 2, {"until": old + 8 * 24 * 3600 * 1000})

    play(story)


def test_funding_bills_leverage_tiers_and_key_permissions() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex)
        await ex.create_order(ETH, "market", "buy", 2, None, {"marginMode": "isolated"})
        assert server.pay_funding("ETHUSDT", "0.001") == Decimal("-5")
        [funding] = await ex.fetch_funding_history(ETH)
        assert funding["amount"] == -5 and funding["symbol"] == ETH
        tiers = await ex.fetch_market_leverage_tiers(ETH)
        assert [(t["maxNotional"], t["maxLeverage"]) for t in tiers][:2] == [
            (100_000, 100),
            (250_000, 75),
        ]
        with pytest.raises(ccxt.ExchangeError, match="40797"):
            await ex.set_leverage(125, ETH)
        info = await ex.privateSpotGetV2SpotAccountInfo()
        assert "withdraw" in info["data"]["authorities"]

    play(story, withdrawals=True)


def test_overloaded_rate_limited_and_lost_replies_as_on_binance() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex)
        server.faults.add("overloaded", path="/api/v2/mix/account/accounts")
        with pytest.raises(ccxt.ExchangeError, match="40015"):
            await ex.fetch_balance()
        server.faults.add("rate_limited", path="/api/v2/mix/account/accounts", retry_after=3)
        with pytest.raises(ccxt.DDoSProtection):
            await ex.fetch_balance()
        assert ex.last_response_headers["Retry-After"] == "3"
        server.faults.add("accepted_reply_lost", path="/api/v2/mix/order/place-order")
        with pytest.raises(ccxt.NetworkError):
            await ex.create_order(
                ETH,
                "market",
                "buy",
                0.02,
                None,
                {"clientOrderId": "tc-x", "marginMode": "isolated"},
            )
        assert server.orders_by_client_id()["tc-x"]["state"] == "filled"

    play(story)


def test_a_lagging_lookup_answers_40109_until_it_catches_up() -> None:
    async def story(server: LoopbackBitget, ex: Any) -> None:
        await isolated(ex)
        params = {"clientOrderId": "tc-lag", "marginMode": "isolated"}
        await ex.create_order(ETH, "market", "buy", 0.02, None, params)
        with pytest.raises(ccxt.OrderNotFound, match="40109"):
            await ex.fetch_order(None, ETH, {"clientOrderId": "tc-lag"})
        await asyncio.sleep(0.35)
        assert (await ex.fetch_order(None, ETH, {"clientOrderId": "tc-lag"}))["status"] == "closed"

    play(story, lookup_lag_ms=300)
