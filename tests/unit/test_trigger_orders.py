"""Resting stop and take-profit orders in the paper exchange: one model with the backtest.

Settings: 1000 USDT, taker 0.05 %, slippage 2 bps, leverage 10; BTC ticks 0.1.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest

from daemon.adapters.paper_exchange import PaperExchange
from daemon.domain.errors import OrderRejected, WouldTrigger
from daemon.domain.models import Candle, OrderIntent, OrderStatus, OrderType, Side
from daemon.domain.paper_model import fired_triggers, trigger_hit
from daemon.ports import CandlesClosed
from tests.unit.test_paper_exchange import BTC, T0, MemoryLedger, intent, started

D = Decimal


def bar(minute: int, o: str, h: str, low: str, c: str) -> CandlesClosed:
    opened = T0 + timedelta(minutes=minute)
    candle = Candle(BTC, "1m", opened, D(o), D(h), D(low), D(c), D(1))
    return CandlesClosed(BTC, opened + timedelta(minutes=1), (candle,))


def protective(cid: str, kind: OrderType, trigger: str, qty: str = "0.01") -> OrderIntent:
    base = intent(cid, Side.SELL, qty, reduce_only=True)
    return OrderIntent(
        base.bot,
        base.account,
        base.symbol,
        cid,
        Side.SELL,
        kind,
        D(qty),
        None,
        True,
        base.created_at,
        purpose="stop" if kind is OrderType.STOP_MARKET else "take_profit",
        trigger_price=D(trigger),
    )


async def long_with_protection(stop: str = "49000", target: str = "52000") -> PaperExchange:
    """A 0.01 BTC long bought at 50010 (50000 + 2 bps), with its stop and take-profit."""
    ex = await started(MemoryLedger())
    await ex.on_candles(bar(0, "50000", "50000", "50000", "50000"))
    await ex.submit_order(intent("entry", Side.BUY, "0.01"))
    await ex.submit_order(protective("stop", OrderType.STOP_MARKET, stop))
    await ex.submit_order(protective("tp", OrderType.TAKE_PROFIT_MARKET, target))
    return ex


def test_a_stop_reached_inside_a_candle_fills_at_its_trigger_with_slippage() -> None:
    async def story() -> None:
        ex = await long_with_protection()
        assert {o.client_order_id for o in await ex.fetch_open_orders(BTC)} == {"stop", "tp"}
        await ex.on_candles(bar(1, "49800", "49900", "48500", "48700"))
        stop = await ex.fetch_order(BTC, "stop", trigger=True)
        assert stop is not None and stop.status is OrderStatus.FILLED
        assert stop.avg_fill_price == D("48990.2")  # 49000 moved 2 bps against the seller
        assert await ex.fetch_positions(BTC) == []
        [fill] = [f for f in await ex.fetch_fills(BTC) if f.client_order_id == "stop"]
        assert fill.fee == D("0.01") * D("48990.2") * D("0.0005")

    asyncio.run(story())


def test_a_candle_that_gaps_through_the_stop_fills_at_its_open() -> None:
    async def story() -> None:
        ex = await long_with_protection()
        await ex.on_candles(bar(1, "48000", "48200", "47500", "47900"))
        stop = await ex.fetch_order(BTC, "stop")
        assert stop is not None and stop.avg_fill_price == D("47990.4")  # the open, slipped

    asyncio.run(story())


def test_a_candle_that_reaches_stop_and_target_fills_the_stop_only() -> None:
    async def story() -> None:
        ex = await long_with_protection()
        await ex.on_candles(bar(1, "50000", "52500", "48500", "50100"))
        stop, tp = await ex.fetch_order(BTC, "stop"), await ex.fetch_order(BTC, "tp")
        assert stop is not None and stop.status is OrderStatus.FILLED
        assert tp is not None and tp.status is OrderStatus.OPEN
        await ex.on_candles(bar(2, "50100", "52600", "50000", "52000"))
        tp = await ex.fetch_order(BTC, "tp")
        assert tp is not None and tp.status is OrderStatus.CANCELED  # nothing left to reduce
        assert tp.reason == "reduce-only: no position left to reduce"

    asyncio.run(story())


def test_a_take_profit_fills_at_its_trigger_and_survives_a_restart_resting() -> None:
    async def story() -> None:
        ledger = MemoryLedger()
        ex = await started(ledger)
        await ex.on_candles(bar(0, "50000", "50000", "50000", "50000"))
        await ex.submit_order(intent("entry", Side.BUY, "0.01"))
        await ex.submit_order(protective("tp", OrderType.TAKE_PROFIT_MARKET, "52000"))
        again = await started(ledger)
        [resting] = await again.fetch_open_orders(BTC)
        assert (resting.type, resting.trigger_price) == (OrderType.TAKE_PROFIT_MARKET, D(52000))
        await again.on_candles(bar(1, "50100", "52100", "50000", "51900"))
        tp = await again.fetch_order(BTC, "tp")
        assert tp is not None and tp.avg_fill_price == D("51989.6")

    asyncio.run(story())


def test_placing_a_stop_the_price_has_passed_is_refused_as_would_trigger() -> None:
    async def story() -> None:
        ex = await long_with_protection()
        with pytest.raises(WouldTrigger, match="would immediately trigger"):
            await ex.submit_order(protective("late", OrderType.STOP_MARKET, "50000"))
        late = await ex.fetch_order(BTC, "late")
        assert late is not None and late.status is OrderStatus.REJECTED
        with pytest.raises(OrderRejected, match="tick"):
            await ex.submit_order(protective("odd", OrderType.STOP_MARKET, "49000.05"))

    asyncio.run(story())


def test_the_trigger_model_is_one_pure_function() -> None:
    sell_stop, buy_stop = (OrderType.STOP_MARKET, Side.SELL), (OrderType.STOP_MARKET, Side.BUY)
    assert trigger_hit(*sell_stop, D(100), D(105), D(106), D(99)) == D(100)  # range reached
    assert trigger_hit(*sell_stop, D(100), D(98), D(99), D(97)) == D(98)  # gapped: the open
    assert trigger_hit(*sell_stop, D(100), D(105), D(106), D("100.1")) is None
    assert trigger_hit(*buy_stop, D(100), D(95), D(100), D(94)) == D(100)
    assert trigger_hit(OrderType.TAKE_PROFIT_MARKET, Side.SELL, D(110), D(112), D(113), D(111)) == (
        D(112)
    )
    assert fired_triggers([], D(1), D(2), D(0)) == []
