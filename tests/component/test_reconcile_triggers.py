"""Start-up reconciliation knows resting trigger orders: real ccxt against the loopback Binance.

Ours are adopted, an unknown one with our prefix is cancelled, a foreign one is left alone,
and a bot whose position is gone loses its plan and its leftover protection.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from daemon.adapters.ccxt_gateway import CcxtGateway
from daemon.credentials import ApiCredentials
from daemon.domain.bot_state import DesiredState
from daemon.domain.models import (
    Direction,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    TradePlan,
)
from daemon.runtime.reconcile import reconcile_account
from tests.conftest import StoreOpener
from tests.loopback.binance_usdm import LoopbackBinance

ETH = "ETH/USDT:USDT"
T0_MS = 1_746_835_200_000
BOT = "eth-bot"


def order(cid: str, kind: OrderType, side: Side, trigger: str | None = None) -> OrderIntent:
    purpose = {OrderType.STOP_MARKET: "stop", OrderType.TAKE_PROFIT_MARKET: "take_profit"}
    return OrderIntent(
        BOT,
        "binance",
        ETH,
        cid,
        side,
        kind,
        Decimal("0.02"),
        None,
        kind.is_trigger,
        datetime.now(UTC),
        purpose=purpose.get(kind, "entry"),
        trigger_price=None if trigger is None else Decimal(trigger),
    )


def test_reconciliation_adopts_cancels_and_leaves_trigger_orders_by_who_placed_them(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    store.set_desired_state(BOT, DesiredState.STOPPED)

    async def story() -> list[dict[str, object]]:
        server = LoopbackBinance("k", "s")
        url = await server.start()
        server.push_candle("ETHUSDT", T0_MS, 2500, 2505, 2495, 2500, 100)
        gw = CcxtGateway("binance", "binanceusdm", ApiCredentials("l", "k", "s"), api_base_url=url)
        try:
            await gw.start()
            await gw.submit_order(order("tcentry-1", OrderType.MARKET, Side.BUY))
            ours = order("tcabc-2", OrderType.STOP_MARKET, Side.SELL, "2400")
            store.record_intent(ours)
            store.update_order(await gw.submit_order(ours))
            await gw.submit_order(order("tcabc-3", OrderType.TAKE_PROFIT_MARKET, Side.SELL, "2600"))
            await gw.submit_order(order("hand-4", OrderType.STOP_MARKET, Side.SELL, "2300"))
            found = await reconcile_account(gw, store, lambda s: BOT, {ETH: BOT})
            states = {k: v["algoStatus"] for k, v in server.algo_orders_by_client_id().items()}
            assert states == {"tcabc-2": "NEW", "tcabc-3": "CANCELED", "hand-4": "NEW"}

            # the position goes while nobody watches: the stop fills, the plan must go
            store.save_plan(
                BOT, TradePlan(Direction.LONG, Decimal(2400), Decimal(2600), datetime.now(UTC))
            )
            server.push_candle("ETHUSDT", T0_MS + 60_000, 2500, 2500, 2350, 2360, 100)
            await gw.cancel_order(ETH, "hand-4", trigger=True)
            again = await reconcile_account(gw, store, lambda s: BOT, {ETH: BOT})
            stop = store.order("tcabc-2")
            assert stop is not None and stop.status is OrderStatus.FILLED
            assert store.plan(BOT) is None
            return [*found, *again]
        finally:
            await gw.close()
            await server.close()

    reports = asyncio.run(story())
    kinds = [(r["kind"], r.get("cid")) for r in reports]
    assert ("unknown_order_cancelled", "tcabc-3") in kinds
    assert ("foreign_order_seen", "hand-4") in kinds
    assert ("plan_cleared", None) in kinds
    store.close()
