"""ccxt's own recorded exchange replies, through ccxt's parsers and then through our mapping.

The fixtures are ccxt's static response tests (tests/fixtures/ccxt_static, see its README):
``httpResponse`` is what Bitget or Binance sent, ``parsedResponse`` what ccxt made of it.
ccxt is built offline by the gateway's own `_make_exchange()` with two minimal markets, its
parse_* methods run on the raw replies (and must agree with the recording), and the result
goes through `CcxtGateway._order`, `position_from_ccxt` and `market_from_ccxt`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from daemon.adapters.ccxt_gateway import CcxtGateway, market_from_ccxt, position_from_ccxt
from daemon.domain.models import OrderStatus, OrderType, Side
from tests.conftest import FIXTURES
from tests.loopback.binance_usdm import SYMBOLS, _symbol_info

CCXT_STATIC = FIXTURES / "ccxt_static"
COMPARED = ("id", "clientOrderId", "symbol", "side", "type", "status", "amount", "filled")


def fixture_file(exchange: str) -> dict[str, Any]:
    name = {
        "bitget": "response__bitget__usdt_futures_subset.json",
        "binance": "response__binance__futures_subset.json",
    }[exchange]
    data: dict[str, Any] = json.loads((CCXT_STATIC / name).read_text())
    return data


def recorded(exchange: str, method: str, description: str) -> dict[str, Any]:
    data = fixture_file(exchange)
    for entry in data["methods"][method]:
        if entry["description"] == description:
            return dict(entry)
    raise KeyError(f"{exchange} {method} {description!r}")


def gateway(kind: str, testnet: bool = False) -> CcxtGateway:
    return CcxtGateway("acct", kind, None, testnet=testnet)


@contextmanager
def offline(gw: CcxtGateway) -> Iterator[Any]:
    """The gateway's ccxt instance with LTC and BTC perpetuals, never connected."""
    ex = gw._make_exchange()
    markets = [
        ex.safe_market_structure(
            {
                "id": f"{base}USDT",
                "symbol": f"{base}/USDT:USDT",
                "base": base,
                "quote": "USDT",
                "settle": "USDT",
                "baseId": base,
                "quoteId": "USDT",
                "settleId": "USDT",
                "type": "swap",
                "spot": False,
                "swap": True,
                "contract": True,
                "linear": True,
                "inverse": False,
                "contractSize": 1,
                "active": True,
            }
        )
        for base in ("LTC", "BTC")
    ]
    ex.set_markets(markets)
    try:
        yield ex
    finally:
        asyncio.run(ex.close())  # no session was opened; this only tidies up


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def agrees(parsed: dict[str, Any], recording: dict[str, Any]) -> None:
    assert {k: parsed[k] for k in COMPARED} == {k: recording[k] for k in COMPARED}


# ---------------------------------------------------------------------------- Bitget


def test_bitget_market_buy_is_a_filled_buy_with_its_client_id() -> None:
    entry = recorded("bitget", "fetchOrder", "swap market buy")
    gw = gateway("bitget")
    with offline(gw) as ex:
        parsed = ex.parse_order(entry["httpResponse"]["data"], ex.market("LTC/USDT:USDT"))
    agrees(parsed, entry["parsedResponse"])
    order = gw._order(parsed, "b1")
    assert order.symbol == "LTC/USDT:USDT"
    assert (order.side, order.type, order.status) == (
        Side.BUY,
        OrderType.MARKET,
        OrderStatus.FILLED,
    )
    assert order.client_order_id == "1139544620049014787"
    assert order.exchange_order_id == "1139544620032237568"
    assert (order.qty, order.filled_qty) == (Decimal("0.1"), Decimal("0.1"))
    assert order.avg_fill_price == Decimal("68.74")
    assert order.price is None  # a market order has no limit price
    assert order.reduce_only is False
    assert order.created_at == ms(1707414529811)
    assert order.updated_at == ms(1707414529920)
    assert order.bot == "b1"


def test_bitget_hedge_mode_close_of_a_long_is_a_reduce_only_sell() -> None:
    # Bitget says side "buy" with tradeSide "close" (closing the long); ccxt makes it a sell.
    entry = recorded("bitget", "fetchClosedOrders", "Swap closed order reduced only")
    raw = entry["httpResponse"]["data"]["entrustedList"][0]
    assert (raw["side"], raw["tradeSide"]) == ("buy", "close")
    gw = gateway("bitget")
    with offline(gw) as ex:
        parsed = ex.parse_order(raw, None)
    agrees(parsed, entry["parsedResponse"][0])
    order = gw._order(parsed)
    assert (order.side, order.status, order.reduce_only) == (Side.SELL, OrderStatus.FILLED, True)
    assert order.client_order_id == "1115965643971776512"
    assert order.avg_fill_price == Decimal("72.25")


def test_bitget_long_position_has_a_positive_quantity() -> None:
    entry = recorded("bitget", "fetchPositions", "Linear position")
    with offline(gateway("bitget")) as ex:
        parsed = ex.parse_position(entry["httpResponse"]["data"][0], None)
    recording = entry["parsedResponse"][0]
    for key in ("symbol", "side", "contracts", "entryPrice", "markPrice", "initialMargin"):
        assert parsed[key] == recording[key]
    position = position_from_ccxt(parsed, "acct")
    assert position is not None
    assert (position.account, position.symbol) == ("acct", "LTC/USDT:USDT")
    assert position.qty == Decimal("0.1")
    assert (position.entry_price, position.mark_price) == (Decimal("72.66"), Decimal("72.62"))
    assert (position.leverage, position.margin) == (5, Decimal("1.4532"))


def test_bitget_unified_account_position_maps_the_same_way() -> None:
    recording = recorded("bitget", "fetchPositions", "fetchPositions uta")["parsedResponse"][0]
    position = position_from_ccxt(recording, "acct")
    assert position is not None
    assert (position.symbol, position.qty) == ("BTC/USDT:USDT", Decimal("0.001"))
    assert (position.entry_price, position.leverage) == (Decimal("115085.6"), 20)
    assert position.margin == Decimal("5.82333136")


def test_a_flat_or_short_position() -> None:
    recording = recorded("bitget", "fetchPositions", "Linear position")["parsedResponse"][0]
    short = position_from_ccxt({**recording, "side": "short"}, "acct")
    assert short is not None and short.qty == Decimal("-0.1")
    assert position_from_ccxt({**recording, "contracts": 0}, "acct") is None


# --------------------------------------------------------------------------- Binance


def test_binance_resting_limit_order_is_open_with_its_price() -> None:
    entry = recorded("binance", "fetchOpenOrder", "swap open order")
    gw = gateway("binanceusdm")
    with offline(gw) as ex:
        parsed = ex.parse_order(entry["httpResponse"], ex.market("LTC/USDT:USDT"))
    agrees(parsed, entry["parsedResponse"])
    order = gw._order(parsed)
    assert (order.side, order.type, order.status) == (Side.BUY, OrderType.LIMIT, OrderStatus.OPEN)
    assert (order.qty, order.price, order.filled_qty) == (Decimal("0.2"), Decimal(50), Decimal(0))
    assert order.avg_fill_price is None
    assert order.client_order_id == "x-xcKtGhcu68f8383451844295b3e8b9"
    assert order.exchange_order_id == "664082074"
    assert order.created_at == ms(1707907323983)


def test_binance_new_sell_order_from_create_orders() -> None:
    entry = recorded("binance", "createOrders", "create swap orders")
    gw = gateway("binanceusdm")
    with offline(gw) as ex:
        parsed = ex.parse_order(entry["httpResponse"][0], None)
    agrees(parsed, entry["parsedResponse"][0])
    order = gw._order(parsed)
    assert (order.symbol, order.side, order.status) == (
        "BTC/USDT:USDT",
        Side.SELL,
        OrderStatus.OPEN,
    )
    assert (order.qty, order.price) == (Decimal("0.2"), Decimal(110001))
    # what the gateway learnt: fills of exchange order 4087922044 belong to this client id
    assert gw._cid_by_order_id["4087922044"] == "x-xcKtGhcu04075babaeb34c55af79ba"


def test_binance_one_way_position_has_a_positive_quantity() -> None:
    entry = recorded("binance", "fetchPositions", "Fetch linear positions with symbols")
    with offline(gateway("binanceusdm")) as ex:
        # fetch_positions parses /fapi/v3/positionRisk with the cached leverage brackets
        ex.options["leverageBrackets"] = fixture_file("binance")["options"]["leverageBrackets"]
        parsed = ex.parse_position_risk(entry["httpResponse"][0], None)
    recording = entry["parsedResponse"][0]
    for key in ("symbol", "side", "contracts", "entryPrice", "markPrice", "initialMargin"):
        assert parsed[key] == recording[key]
    position = position_from_ccxt(parsed, "acct")
    assert position is not None
    assert (position.symbol, position.qty) == ("BTC/USDT:USDT", Decimal("0.009"))
    assert position.entry_price == Decimal("67445.9")
    assert position.mark_price == Decimal("67582.2")
    assert position.margin == Decimal("7.60299749")
    assert position.leverage == 0  # /fapi/v3/positionRisk does not say; ccxt gives None


def test_binance_market_rules_from_exchange_info() -> None:
    with offline(gateway("binanceusdm")) as ex:
        raw = ex.parse_market(_symbol_info(SYMBOLS["ETHUSDT"]))
        market = market_from_ccxt(raw, ex.precisionMode)
    assert market.symbol == "ETH/USDT:USDT"
    assert (market.price_step, market.amount_step) == (Decimal("0.01"), Decimal("0.001"))
    assert (market.min_amount, market.min_notional) == (Decimal("0.001"), Decimal(20))
    assert market.contract_size == Decimal(1)


# --------------------------------------------------------------------------- testnet


def test_testnet_puts_binance_on_its_futures_testnet() -> None:
    for websocket in (False, True):
        live = gateway("binanceusdm")._make_exchange(websocket=websocket)
        test = gateway("binanceusdm", testnet=True)._make_exchange(websocket=websocket)
        assert "fapi.binance.com" in live.urls["api"]["fapiPublic"]
        assert "testnet.binancefuture.com" in test.urls["api"]["fapiPublic"]
        assert "testnet.binancefuture.com" in test.urls["api"]["fapiPrivate"]
        if websocket:
            assert "binancefuture.com" in test.urls["api"]["ws"]["linear"]
            assert "fstream.binance.com" in live.urls["api"]["ws"]["linear"]


def test_testnet_puts_bitget_in_demo_trading() -> None:
    # Bitget's demo trading is the live host with a PAPTRADING header, switched by this option.
    for websocket in (False, True):
        assert gateway("bitget")._make_exchange(websocket=websocket).options["sandboxMode"] is False
        test = gateway("bitget", testnet=True)._make_exchange(websocket=websocket)
        assert test.options["sandboxMode"] is True


def test_a_base_url_reroots_rest_and_websocket_urls() -> None:
    gw = CcxtGateway("acct", "binanceusdm", None, api_base_url="http://127.0.0.1:9999")
    ex = gw._make_exchange(websocket=True)
    assert ex.urls["api"]["fapiPublic"] == "http://127.0.0.1:9999/fapi/v1"
    assert ex.urls["api"]["ws"]["linear"] == "ws://127.0.0.1:9999/ws"
    assert ex.urls["api"]["ws"]["ws-api"]["linear"] == "ws://127.0.0.1:9999/ws-fapi/v1"
    assert gw.can_watch_ohlcv and gateway("bitget").can_watch_ohlcv
