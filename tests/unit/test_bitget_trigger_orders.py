"""Stops and take-profits on Bitget USDT-M: what the gateway makes ccxt send, offline.

ccxt is the real one, built by the gateway with two markets and never connected; only the
private endpoints it would call over the internet are replaced, to see the request and give
a reply. ccxt's own recorded request (tests/unit/fixtures) is the reference for the body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.adapters.ccxt_gateway import CcxtGateway
from daemon.domain.models import OrderIntent, OrderStatus, OrderType, Side

LTC = "LTC/USDT:USDT"
FIXTURE = Path(__file__).parent / "fixtures" / "ccxt_bitget_tpsl_requests.json"


@contextmanager
def offline(gw: CcxtGateway) -> Iterator[Any]:
    """The gateway's own ccxt Bitget with an LTC perpetual (0.1 lots, 0.01 ticks), offline."""
    ex = gw._make_exchange()
    ex.set_markets(
        [
            ex.safe_market_structure(
                {
                    "id": "LTCUSDT",
                    "symbol": LTC,
                    "base": "LTC",
                    "quote": "USDT",
                    "settle": "USDT",
                    "baseId": "LTC",
                    "quoteId": "USDT",
                    "settleId": "USDT",
                    "type": "swap",
                    "swap": True,
                    "contract": True,
                    "linear": True,
                    "contractSize": 1,
                    "active": True,
                    "precision": {"amount": 0.1, "price": 0.01},
                    "info": {"productType": "USDT-FUTURES"},
                }
            )
        ]
    )
    gw._ex = ex
    try:
        yield ex
    finally:
        asyncio.run(ex.close())  # no session was opened; this only tidies up


def recorded(method: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(FIXTURE.read_text())["methods"][method][0]
    return entry


def stop_intent(kind: OrderType, trigger: str) -> OrderIntent:
    return OrderIntent(
        "b1",
        "acct",
        LTC,
        "tc0a1b2c3d-00000007",
        Side.SELL,
        kind,
        Decimal("0.1"),
        None,
        True,
        datetime.now(UTC),
        purpose="stop" if kind is OrderType.STOP_MARKET else "take_profit",
        trigger_price=Decimal(trigger),
    )


Endpoint = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def answering(calls: list[tuple[str, dict[str, Any]]], name: str, data: Any) -> Endpoint:
    async def endpoint(request: dict[str, Any]) -> dict[str, Any]:
        calls.append((name, dict(request)))
        return {"code": "00000", "msg": "success", "requestTime": 1, "data": data}

    return endpoint


def test_a_bitget_stop_is_a_sized_loss_plan_on_the_tpsl_endpoint_triggered_on_mark() -> None:
    reference = recorded("createStopLossOrder")
    gw = CcxtGateway("acct", "bitget", None)
    calls: list[tuple[str, dict[str, Any]]] = []
    with offline(gw) as ex:
        ex.privateMixPostV2MixOrderPlaceTpslOrder = answering(
            calls, "place-tpsl-order", {"orderId": "991", "clientOid": "tc0a1b2c3d-00000007"}
        )
        order = asyncio.run(gw.submit_order(stop_intent(OrderType.STOP_MARKET, "60")))
    [(endpoint, sent)] = calls
    assert endpoint == "place-tpsl-order" == reference["url"].rsplit("/", 1)[1]
    expected = {**reference["output"], "planType": "loss_plan", "clientOid": "tc0a1b2c3d-00000007"}
    assert sent == expected, "ccxt's own request, sized (loss_plan, not pos_loss), with our id"
    assert (order.type, order.trigger_price, order.status) == (
        OrderType.STOP_MARKET,
        Decimal(60),
        OrderStatus.OPEN,
    )


def test_a_bitget_take_profit_triggers_on_the_last_price_when_configured() -> None:
    gw = CcxtGateway("acct", "bitget", None, trigger_price_type="last")
    calls: list[tuple[str, dict[str, Any]]] = []
    with offline(gw) as ex:
        ex.privateMixPostV2MixOrderPlaceTpslOrder = answering(
            calls, "place-tpsl-order", {"orderId": "992", "clientOid": "tc0a1b2c3d-00000007"}
        )
        asyncio.run(gw.submit_order(stop_intent(OrderType.TAKE_PROFIT_MARKET, "130")))
    [(_, sent)] = calls
    assert (sent["planType"], sent["triggerType"], sent["triggerPrice"]) == (
        "profit_plan",
        "fill_price",
        "130",
    )
    assert sent["holdSide"] == recorded("createStopLossOrder")["output"]["holdSide"]  # a long


def test_bitget_lists_and_cancels_its_tpsl_orders_as_plan_orders() -> None:
    gw = CcxtGateway("acct", "bitget", None)
    calls: list[tuple[str, dict[str, Any]]] = []
    pending = {
        "entrustedList": [
            {
                "planType": "loss_plan",
                "symbol": "LTCUSDT",
                "size": "0.1",
                "orderId": "991",
                "clientOid": "tc0a1b2c3d-00000007",
                "triggerPrice": "60",
                "triggerType": "mark_price",
                "side": "sell",
                "posSide": "net",
                "planStatus": "live",
                "orderType": "market",
                "reduceOnly": "yes",
                "cTime": "1700000000000",
                "uTime": "1700000000000",
            }
        ],
        "endId": "991",
    }
    with offline(gw) as ex:
        ex.privateMixGetV2MixOrderOrdersPending = answering(calls, "orders-pending", {})
        ex.privateMixGetV2MixOrderOrdersPlanPending = answering(
            calls, "orders-plan-pending", pending
        )
        ex.privateMixPostV2MixOrderCancelPlanOrder = answering(
            calls, "cancel-plan-order", {"successList": [{"orderId": "991"}], "failureList": []}
        )
        [order] = asyncio.run(gw.fetch_open_orders(LTC))
        calls_before_cancel = len(calls)
        asyncio.run(gw.cancel_order(LTC, "tc0a1b2c3d-00000007", trigger=True))
    assert (order.type, order.trigger_price, order.client_order_id) == (
        OrderType.STOP_MARKET,
        Decimal(60),
        "tc0a1b2c3d-00000007",
    )
    assert next(c[1]["planType"] for c in calls if c[0] == "orders-plan-pending") == "profit_loss"
    name, cancel = calls[calls_before_cancel]
    assert name == "cancel-plan-order"
    assert cancel["orderIdList"] == [{"clientOid": "tc0a1b2c3d-00000007"}]
    assert cancel["planType"] == "profit_loss"
