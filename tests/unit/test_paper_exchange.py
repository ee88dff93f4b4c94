"""The paper exchange: fills, fees, margin, positions and persistence, numbers done by hand.

Settings throughout: 1000 USDT, taker 0.05 %, maker 0.02 %, slippage 2 bps, leverage 10.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters import paper_exchange
from daemon.adapters.paper_exchange import PaperExchange, PaperSettings, PaperStateCorrupt
from daemon.adapters.paper_markets import DEFAULT_MARKETS_FILE, load_paper_markets
from daemon.domain.errors import ConfigError, NotFound, OrderRejected
from daemon.domain.models import (
    Candle,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
)
from daemon.domain.paper_model import FLAT, Holding, apply_fill, limit_triggered
from daemon.ports import CandlesClosed, ExchangeGateway

D = Decimal
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
ACCOUNT = "paper1"
T0 = datetime(2025, 5, 10, tzinfo=UTC)
SETTINGS = PaperSettings(
    initial_balance=D(1000),
    taker_fee_rate=D("0.0005"),
    maker_fee_rate=D("0.0002"),
    slippage_bps=D(2),
    default_leverage=10,
)
MARKETS = {
    BTC: Market(BTC, D("0.001"), D("0.1"), D("0.001"), D(100), 125),
    ETH: Market(ETH, D("0.001"), D("0.01"), D("0.001"), D(20), 125),
}


class MemoryLedger:
    """The PaperLedger port as a dict, counting writes."""

    def __init__(self, saved: dict[str, str] | None = None) -> None:
        self.saved: dict[str, str] = dict(saved or {})
        self.writes = 0

    def load_paper_account(self, account: str) -> str | None:
        return self.saved.get(account)

    def save_paper_account(self, account: str, state_json: str) -> None:
        self.saved[account] = state_json
        self.writes += 1


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


async def started(ledger: MemoryLedger | None = None, **settings: Any) -> PaperExchange:
    ex = PaperExchange(
        ACCOUNT,
        dataclasses.replace(SETTINGS, **settings),
        ledger if ledger is not None else MemoryLedger(),
        MARKETS,
    )
    await ex.start()
    return ex


def candle_event(
    minute: int,
    close: str,
    high: str | None = None,
    low: str | None = None,
    symbol: str = BTC,
) -> CandlesClosed:
    """The 1m candle that opened `minute` minutes after T0 closed."""
    c, h, lo = D(close), D(high or close), D(low or close)
    opened = T0 + timedelta(minutes=minute)
    candle = Candle(symbol, "1m", opened, c, max(h, c), min(lo, c), c, D(1))
    return CandlesClosed(symbol, opened + timedelta(minutes=1), (candle,))


def closed_at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute + 1)


def intent(
    cid: str,
    side: Side,
    qty: str,
    price: str | None = None,
    *,
    reduce_only: bool = False,
    symbol: str = BTC,
    account: str = ACCOUNT,
) -> OrderIntent:
    return OrderIntent(
        bot="bot-a",
        account=account,
        symbol=symbol,
        client_order_id=cid,
        side=side,
        type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        qty=D(qty),
        price=D(price) if price is not None else None,
        reduce_only=reduce_only,
        created_at=T0,
    )


def _is_a_gateway(ex: PaperExchange) -> ExchangeGateway:
    return ex  # mypy checks that the paper exchange satisfies the port


# --- market orders -----------------------------------------------------------------------------


@run_async
async def test_market_buy_fills_at_last_close_plus_slippage_and_charges_taker_fee() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))

    order = await ex.submit_order(intent("c1", Side.BUY, "0.01"))

    # 50000 * 1.0002 = 50010; fee 0.01 * 50010 * 0.0005 = 0.25005
    assert order.status is OrderStatus.FILLED
    assert (order.filled_qty, order.avg_fill_price) == (D("0.01"), D("50010"))
    assert order.bot == "bot-a"
    assert order.created_at == order.updated_at == closed_at(0)
    [fill] = await ex.fetch_fills(BTC)
    assert fill.fill_id == "paper1-1"
    assert (fill.price, fill.fee, fill.realized_pnl) == (D("50010"), D("0.25005"), D(0))
    assert fill.timestamp == closed_at(0)
    [position] = await ex.fetch_positions()
    assert (position.qty, position.entry_price, position.mark_price) == (
        D("0.01"),
        D("50010"),
        D("50000"),
    )
    assert (position.leverage, position.margin) == (10, D("50.01"))
    balance = await ex.fetch_balance()
    assert balance.total == D("999.74995")
    assert balance.free == D("999.74995") - D("50.01")
    assert balance.unrealized_pnl == D("-0.1")  # (50000 - 50010) * 0.01


@run_async
async def test_market_sell_fills_below_last_close_and_opens_a_short() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))

    order = await ex.submit_order(intent("c1", Side.SELL, "0.01"))

    assert order.avg_fill_price == D("49990")  # 50000 * 0.9998
    [position] = await ex.fetch_positions(BTC)
    assert position.qty == D("-0.01")
    assert position.side == "short"
    assert (await ex.fetch_balance()).unrealized_pnl == D("-0.1")  # (50000 - 49990) * -0.01


@run_async
async def test_price_comes_from_the_lowest_timeframe_candle() -> None:
    ex = await started()
    one_minute = candle_event(4, "50000").candles[0]
    five_minutes = Candle(BTC, "5m", T0, D(48000), D(48000), D(48000), D(48000), D(5))
    await ex.on_candles(CandlesClosed(BTC, closed_at(4), (one_minute, five_minutes)))

    order = await ex.submit_order(intent("c1", Side.BUY, "0.01"))

    assert order.avg_fill_price == D("50010")


@run_async
async def test_resend_of_same_client_order_id_does_not_fill_twice() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))

    first = await ex.submit_order(intent("c1", Side.BUY, "0.01"))
    await ex.on_candles(candle_event(1, "51000"))
    again = await ex.submit_order(intent("c1", Side.BUY, "0.01"))

    assert again == first
    assert len(await ex.fetch_fills(BTC)) == 1
    [position] = await ex.fetch_positions()
    assert position.qty == D("0.01")


# --- rejections --------------------------------------------------------------------------------


@run_async
async def test_insufficient_margin_is_rejected_and_remembered() -> None:
    ledger = MemoryLedger()
    ex = await started(ledger)
    await ex.on_candles(candle_event(0, "50000"))

    # 0.2 at 50010 needs 1000.2 margin + 5.001 fee > 1000 free
    with pytest.raises(OrderRejected, match="insufficient margin"):
        await ex.submit_order(intent("big", Side.BUY, "0.2"))

    stored = await ex.fetch_order(BTC, "big")
    assert stored is not None
    assert stored.status is OrderStatus.REJECTED
    assert stored.reason is not None and "insufficient margin" in stored.reason
    assert await ex.submit_order(intent("big", Side.BUY, "0.2")) == stored  # no second raise
    assert await ex.fetch_fills(BTC) == []
    assert await ex.fetch_positions() == []
    assert (await ex.fetch_balance()).total == D(1000)

    restarted = await started(ledger)
    assert await restarted.fetch_order(BTC, "big") == stored

    # 0.19 needs 950.19 margin + 4.75095 fee: fits
    ok = await ex.submit_order(intent("fits", Side.BUY, "0.19"))
    assert ok.status is OrderStatus.FILLED


@run_async
async def test_resting_limit_margin_is_reserved_against_later_orders() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))

    # rests: reserves 0.15 * 49000 / 10 = 735
    await ex.submit_order(intent("bid", Side.BUY, "0.15", "49000"))
    assert (await ex.fetch_balance()).free == D(265)

    # 0.06 at market needs 300.06 margin: only 265 free
    with pytest.raises(OrderRejected, match="insufficient margin"):
        await ex.submit_order(intent("mkt", Side.BUY, "0.06"))


@pytest.mark.parametrize(
    ("order", "why"),
    [
        (intent("x", Side.BUY, "0.01", symbol="DOGE/USDT:USDT"), "unknown symbol"),
        (intent("x", Side.BUY, "0"), "must be positive"),
        (intent("x", Side.BUY, "-0.01"), "must be positive"),
        (intent("x", Side.BUY, "0.0015"), "not a multiple of the step 0.001"),
        (intent("x", Side.BUY, "0.001"), "below the minimum 100"),  # 50.01 USDT
        (intent("x", Side.BUY, "0.01", "49000.05"), "not a multiple of the tick 0.1"),
        (intent("x", Side.BUY, "0.01", "0"), "needs a positive price"),
        (intent("x", Side.BUY, "0.01", symbol=ETH), "no price for ETH/USDT:USDT yet"),
        (intent("x", Side.BUY, "0.01", account="other"), "for account 'other'"),
        (intent("x", Side.SELL, "0.01", reduce_only=True), "would not reduce the position"),
    ],
)
@run_async
async def test_orders_the_exchange_would_refuse_are_rejected_with_the_reason(
    order: OrderIntent, why: str
) -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))

    with pytest.raises(OrderRejected, match=re.escape(why)):
        await ex.submit_order(order)

    stored = await ex.fetch_order(order.symbol, "x")
    assert stored is not None
    assert stored.status is OrderStatus.REJECTED
    assert stored.reason is not None and why in stored.reason


@run_async
async def test_quantity_below_the_minimum_amount_is_rejected() -> None:
    markets = {BTC: Market(BTC, D("0.001"), D("0.1"), D("0.01"), D(5), 125)}
    ex = PaperExchange(ACCOUNT, SETTINGS, MemoryLedger(), markets)
    await ex.start()
    await ex.on_candles(candle_event(0, "50000"))

    with pytest.raises(OrderRejected, match=re.escape("quantity 0.005 is below the minimum 0.01")):
        await ex.submit_order(intent("x", Side.BUY, "0.005"))


# --- reduce-only -------------------------------------------------------------------------------


@run_async
async def test_reduce_only_never_flips_the_position() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.01"))  # long at 50010

    close = await ex.submit_order(intent("close", Side.SELL, "0.05", reduce_only=True))

    assert close.status is OrderStatus.FILLED
    assert close.filled_qty == D("0.01")
    assert close.reason is not None and "clipped" in close.reason
    assert await ex.fetch_positions() == []
    fill = (await ex.fetch_fills(BTC))[-1]
    assert (fill.qty, fill.price) == (D("0.01"), D("49990"))
    assert fill.realized_pnl == D("-0.2")  # (49990 - 50010) * 0.01
    # fees 0.25005 + 0.24995; nothing left in margin
    balance = await ex.fetch_balance()
    assert balance.total == balance.free == D("1000") - D("0.2") - D("0.5")

    with pytest.raises(OrderRejected, match="would not reduce"):
        await ex.submit_order(intent("again", Side.SELL, "0.01", reduce_only=True))


@run_async
async def test_reduce_only_on_the_same_side_as_the_position_is_rejected() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.01"))

    with pytest.raises(OrderRejected, match="would not reduce"):
        await ex.submit_order(intent("more", Side.BUY, "0.01", reduce_only=True))


@run_async
async def test_reduce_only_close_below_the_minimum_notional_is_allowed() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.003"))  # 150.03 USDT

    part = await ex.submit_order(intent("part", Side.SELL, "0.001", reduce_only=True))

    assert part.status is OrderStatus.FILLED  # 49.99 USDT: below 100, but it only closes
    [position] = await ex.fetch_positions()
    assert position.qty == D("0.002")


@run_async
async def test_resting_reduce_only_limit_is_clipped_to_what_is_left_when_it_fills() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.02"))  # long 0.02 at 50010
    await ex.submit_order(intent("tp", Side.SELL, "0.02", "51000", reduce_only=True))
    balance = await ex.fetch_balance()
    assert balance.free == balance.total - D("100.02")  # the position's margin, none for tp
    await ex.submit_order(intent("half", Side.SELL, "0.01"))  # at 49990, long 0.01 left

    await ex.on_candles(candle_event(1, "50900", high="51000"))

    tp = await ex.fetch_order(BTC, "tp")
    assert tp is not None
    assert (tp.status, tp.filled_qty, tp.avg_fill_price) == (
        OrderStatus.FILLED,
        D("0.01"),
        D("51000"),
    )
    fill = (await ex.fetch_fills(BTC))[-1]
    assert fill.realized_pnl == D("9.9")  # (51000 - 50010) * 0.01
    assert fill.fee == D("0.102")  # 0.01 * 51000 * 0.0002, maker
    assert await ex.fetch_positions() == []


@run_async
async def test_resting_reduce_only_limit_is_cancelled_when_nothing_is_left_to_reduce() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.01"))
    await ex.submit_order(intent("tp", Side.SELL, "0.01", "51000", reduce_only=True))
    await ex.submit_order(intent("flat", Side.SELL, "0.01"))

    await ex.on_candles(candle_event(1, "51000", high="51100"))

    tp = await ex.fetch_order(BTC, "tp")
    assert tp is not None
    assert tp.status is OrderStatus.CANCELED
    assert tp.reason == "reduce-only: no position left to reduce"
    assert await ex.fetch_positions() == []
    assert len(await ex.fetch_fills(BTC)) == 2


# --- limit orders ------------------------------------------------------------------------------


@run_async
async def test_resting_limit_fills_when_a_later_candle_trades_through() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))

    bid = await ex.submit_order(intent("bid", Side.BUY, "0.01", "49900"))
    assert bid.status is OrderStatus.OPEN
    assert bid.exchange_order_id is not None
    assert (await ex.fetch_balance()).free == D("950.1")  # 49.9 reserved

    await ex.on_candles(candle_event(1, "49990", low="49950"))
    assert [o.client_order_id for o in await ex.fetch_open_orders(BTC)] == ["bid"]

    await ex.on_candles(candle_event(2, "49950", low="49850"))

    filled = await ex.fetch_order(BTC, "bid")
    assert filled is not None
    assert (filled.status, filled.avg_fill_price) == (OrderStatus.FILLED, D("49900"))
    assert filled.updated_at == closed_at(2)
    [fill] = await ex.fetch_fills(BTC)
    assert (fill.price, fill.fee, fill.timestamp) == (D("49900"), D("0.0998"), closed_at(2))
    assert await ex.fetch_open_orders() == []
    balance = await ex.fetch_balance()
    assert balance.total == D("999.9002")
    assert balance.free == D("999.9002") - D("49.9")
    assert balance.unrealized_pnl == D("0.5")  # (49950 - 49900) * 0.01


@run_async
async def test_resting_sell_limit_fills_at_its_price_when_the_high_reaches_it() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("ask", Side.SELL, "0.01", "50500"))

    await ex.on_candles(candle_event(1, "50100", high="50500"))

    [position] = await ex.fetch_positions()
    assert (position.qty, position.entry_price) == (D("-0.01"), D("50500"))


@run_async
async def test_marketable_limit_fills_at_once_at_last_price_as_a_taker() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))

    order = await ex.submit_order(intent("cross", Side.BUY, "0.01", "50100"))

    assert (order.status, order.avg_fill_price) == (OrderStatus.FILLED, D("50000"))
    [fill] = await ex.fetch_fills(BTC)
    assert fill.fee == D("0.25")  # 0.01 * 50000 * 0.0005


@pytest.mark.parametrize(
    ("side", "limit", "fills"),
    [
        (Side.BUY, "99", True),  # low touches the bid
        (Side.BUY, "98.9", False),
        (Side.SELL, "103", True),  # high touches the ask
        (Side.SELL, "103.1", False),
    ],
)
def test_a_limit_fills_only_if_the_candle_range_reaches_it(
    side: Side, limit: str, fills: bool
) -> None:
    candle = Candle(BTC, "1m", T0, D(100), D(103), D(99), D(101), D(1))
    assert limit_triggered(side, D(limit), candle) is fills


@run_async
async def test_cancel_releases_reserved_margin_and_cancelling_twice_is_harmless() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("bid", Side.BUY, "0.01", "49900"))

    canceled = await ex.cancel_order(BTC, "bid")

    assert canceled is not None and canceled.status is OrderStatus.CANCELED
    assert await ex.cancel_order(BTC, "bid") == canceled
    assert await ex.cancel_order(BTC, "nope") is None
    assert (await ex.fetch_balance()).free == D(1000)
    await ex.on_candles(candle_event(1, "49000", low="48000"))
    assert await ex.fetch_fills(BTC) == []


# --- position arithmetic -----------------------------------------------------------------------


@run_async
async def test_flip_realises_pnl_on_the_closed_part() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("long", Side.BUY, "0.01"))  # at 50010, fee 0.25005
    await ex.on_candles(candle_event(1, "51000"))

    await ex.submit_order(intent("flip", Side.SELL, "0.03"))  # at 50989.8

    fill = (await ex.fetch_fills(BTC))[-1]
    assert fill.realized_pnl == D("9.798")  # (50989.8 - 50010) * 0.01
    assert fill.fee == D("0.764847")  # 0.03 * 50989.8 * 0.0005
    [position] = await ex.fetch_positions()
    assert (position.qty, position.entry_price) == (D("-0.02"), D("50989.8"))
    balance = await ex.fetch_balance()
    assert balance.total == D("1008.783103")  # 1000 - 0.25005 + 9.798 - 0.764847
    assert balance.free == D("1008.783103") - D("101.9796")  # 0.02 * 50989.8 / 10


@run_async
async def test_entry_price_averages_on_increase_and_a_partial_close_keeps_it() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("a", Side.BUY, "0.01"))  # 50010
    await ex.on_candles(candle_event(1, "51000"))
    await ex.submit_order(intent("b", Side.BUY, "0.01"))  # 51010.2

    [position] = await ex.fetch_positions()
    assert position.entry_price == D("50510.1")  # (500.1 + 510.102) / 0.02

    await ex.on_candles(candle_event(2, "52000"))
    await ex.submit_order(intent("c", Side.SELL, "0.005"))  # 51989.6

    [position] = await ex.fetch_positions()
    assert (position.qty, position.entry_price) == (D("0.015"), D("50510.1"))
    assert (await ex.fetch_fills(BTC))[-1].realized_pnl == D("7.3975")  # 1479.5 * 0.005


@run_async
async def test_closing_a_losing_position_is_allowed_even_when_the_loss_exceeds_the_free() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.19"))  # margin 950.19, 45.05905 free
    await ex.on_candles(candle_event(1, "44000"))

    close = await ex.submit_order(intent("close", Side.SELL, "0.19"))  # at 43991.2

    assert close.status is OrderStatus.FILLED
    assert (await ex.fetch_fills(BTC))[-1].realized_pnl == D("-1143.572")  # -6018.8 * 0.19
    assert (await ex.fetch_balance()).total < 0  # no liquidation on paper


@run_async
async def test_a_flip_may_pay_its_new_margin_out_of_the_profit_it_realises() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.19"))  # 45.05905 free
    await ex.on_candles(candle_event(1, "55000"))

    # at 54989: realises 946.01; new margin 1044.791 - 950.19 + fee 10.44791 > 45.06 free
    flip = await ex.submit_order(intent("flip", Side.SELL, "0.38"))

    assert flip.status is OrderStatus.FILLED
    [position] = await ex.fetch_positions()
    assert (position.qty, position.entry_price) == (D("-0.19"), D("54989"))


@pytest.mark.parametrize(
    ("before", "side", "qty", "price", "after", "realized"),
    [
        (FLAT, Side.SELL, "2", "10", Holding(D(-2), D(10)), "0"),
        (Holding(D(-2), D(10)), Side.SELL, "2", "13", Holding(D(-4), D("11.5")), "0"),
        (Holding(D(-4), D(10)), Side.BUY, "1", "8", Holding(D(-3), D(10)), "2"),
        (Holding(D(-4), D(10)), Side.BUY, "4", "12", FLAT, "-8"),
        (Holding(D(-1), D(10)), Side.BUY, "3", "9", Holding(D(2), D(9)), "1"),
    ],
)
def test_short_position_arithmetic(
    before: Holding, side: Side, qty: str, price: str, after: Holding, realized: str
) -> None:
    change = apply_fill(before, side, D(qty), D(price))
    assert change.holding == after
    assert change.realized_pnl == D(realized)


# --- leverage ----------------------------------------------------------------------------------


@run_async
async def test_leverage_is_bounded_and_frozen_while_a_position_is_open() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))

    for bad in (0, 126):
        with pytest.raises(OrderRejected, match=r"outside 1\.\.125"):
            await ex.set_leverage(BTC, bad)
    with pytest.raises(NotFound, match="DOGE"):
        await ex.set_leverage("DOGE/USDT:USDT", 5)

    await ex.set_leverage(BTC, 20)
    await ex.submit_order(intent("open", Side.BUY, "0.01"))
    [position] = await ex.fetch_positions()
    assert (position.leverage, position.margin) == (20, D("25.005"))  # 500.1 / 20

    with pytest.raises(OrderRejected, match="while a position is open"):
        await ex.set_leverage(BTC, 5)
    await ex.set_leverage(BTC, 20)  # unchanged: fine


@run_async
async def test_default_leverage_is_capped_by_the_market() -> None:
    ex = await started(default_leverage=200)
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.01"))

    [position] = await ex.fetch_positions()
    assert position.leverage == 125


# --- persistence -------------------------------------------------------------------------------


@run_async
async def test_position_and_balance_survive_a_restart_from_the_ledger() -> None:
    ledger = MemoryLedger()
    ex = await started(ledger)
    await ex.on_candles(candle_event(0, "50000"))
    await ex.set_leverage(BTC, 5)
    await ex.submit_order(intent("open", Side.BUY, "0.01"))
    await ex.submit_order(intent("bid", Side.BUY, "0.01", "49000"))
    await ex.close()

    restarted = await started(ledger, initial_balance=D(5))  # the saved money wins

    assert await restarted.fetch_balance() == await ex.fetch_balance()
    assert await restarted.fetch_positions() == await ex.fetch_positions()
    assert await restarted.fetch_open_orders() == await ex.fetch_open_orders()
    assert await restarted.fetch_fills(BTC) == await ex.fetch_fills(BTC)
    again = await restarted.submit_order(intent("open", Side.BUY, "0.01"))
    assert again == await ex.fetch_order(BTC, "open")

    await restarted.on_candles(candle_event(1, "49500", low="48900"))
    fills = await restarted.fetch_fills(BTC)
    assert [f.fill_id for f in fills] == ["paper1-1", "paper1-2"]
    [position] = await restarted.fetch_positions()
    assert (position.qty, position.leverage) == (D("0.02"), 5)
    assert position.entry_price == D("49505")  # (500.1 + 490) / 0.02


@run_async
async def test_an_open_position_keeps_its_leverage_when_the_default_changes() -> None:
    ledger = MemoryLedger()
    ex = await started(ledger)
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("open", Side.BUY, "0.01"))

    restarted = await started(ledger, default_leverage=20)

    [position] = await restarted.fetch_positions()
    assert (position.leverage, position.margin) == (10, D("50.01"))


@run_async
async def test_a_new_account_starts_with_the_initial_balance_and_is_saved() -> None:
    ledger = MemoryLedger()
    ex = await started(ledger)

    balance = await ex.fetch_balance()
    assert (balance.currency, balance.total, balance.free) == ("USDT", D(1000), D(1000))
    assert json.loads(ledger.saved[ACCOUNT])["initial_balance"] == "1000"


@run_async
async def test_a_candle_without_fills_does_not_write_the_ledger() -> None:
    ledger = MemoryLedger()
    ex = await started(ledger)
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("bid", Side.BUY, "0.01", "49000"))
    writes = ledger.writes

    await ex.on_candles(candle_event(1, "49500", low="49100"))
    assert ledger.writes == writes

    await ex.on_candles(candle_event(2, "49100", low="49000"))
    assert ledger.writes == writes + 1


@run_async
async def test_a_candle_seen_before_a_restart_does_not_fill_orders_placed_after_it() -> None:
    ledger = MemoryLedger()
    ex = await started(ledger)
    await ex.on_candles(candle_event(0, "50000", low="48000"))
    await ex.submit_order(intent("bid", Side.BUY, "0.01", "49000"))

    restarted = await started(ledger)
    await restarted.on_candles(candle_event(0, "50000", low="48000"))  # delivered again

    assert await restarted.fetch_fills(BTC) == []
    assert len(await restarted.fetch_open_orders(BTC)) == 1


def _corrupt(field: str, value: object) -> str:
    state = {
        "version": 1,
        "account": ACCOUNT,
        "initial_balance": "1000",
        "realized_pnl": "0",
        "fees_paid": "0",
        "fill_seq": 0,
        "order_seq": 0,
        "market_time": None,
        "last_prices": {},
        "last_candle_at": {},
        "leverage": {},
        "positions": {},
        "orders": [],
        "fills": [],
    }
    if value is _DROP:
        del state[field]
    else:
        state[field] = value
    return json.dumps(state)


_DROP = object()


@pytest.mark.parametrize(
    "saved",
    [
        "{not json",
        "[]",
        _corrupt("realized_pnl", "lots"),
        _corrupt("fees_paid", 1.5),
        _corrupt("initial_balance", "NaN"),
        _corrupt("positions", {BTC: {"qty": "0.01"}}),
        _corrupt("market_time", "2025-05-10T00:00:00"),
        _corrupt("orders", [{"client_order_id": "c1"}]),
        _corrupt("fills", _DROP),
        _corrupt("account", "someone-else"),
        _corrupt("version", 99),
    ],
)
@run_async
async def test_corrupt_ledger_state_is_an_error_not_a_reset(saved: str) -> None:
    ledger = MemoryLedger({ACCOUNT: saved})
    ex = PaperExchange(ACCOUNT, SETTINGS, ledger, MARKETS)

    with pytest.raises(PaperStateCorrupt, match=f"paper account '{ACCOUNT}'"):
        await ex.start()

    assert ledger.saved[ACCOUNT] == saved
    assert ledger.writes == 0
    with pytest.raises(RuntimeError, match="before start"):
        await ex.fetch_balance()


def test_a_valid_saved_state_loads() -> None:
    """Guards the corruption table above: its base state must be good."""

    async def body() -> None:
        ledger = MemoryLedger({ACCOUNT: _corrupt("realized_pnl", "2.5")})
        ex = PaperExchange(ACCOUNT, SETTINGS, ledger, MARKETS)
        await ex.start()
        assert (await ex.fetch_balance()).total == D("1002.5")

    asyncio.run(body())


@run_async
async def test_saved_state_keeps_only_the_newest_terminal_orders_and_fills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(paper_exchange, "MAX_TERMINAL_ORDERS", 2)
    monkeypatch.setattr(paper_exchange, "MAX_FILLS", 3)
    ledger = MemoryLedger()
    ex = await started(ledger)
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("bid", Side.BUY, "0.01", "40000"))  # stays open
    for n in range(5):
        await ex.submit_order(intent(f"m{n}", Side.BUY if n % 2 == 0 else Side.SELL, "0.01"))

    saved = json.loads(ledger.saved[ACCOUNT])
    assert [o["client_order_id"] for o in saved["orders"]] == ["bid", "m3", "m4"]
    assert [f["fill_id"] for f in saved["fills"]] == ["paper1-3", "paper1-4", "paper1-5"]
    assert saved["fill_seq"] == 5
    assert await ex.fetch_order(BTC, "m0") is None


@run_async
async def test_fetch_fills_since_returns_later_fills_oldest_first() -> None:
    ex = await started()
    await ex.on_candles(candle_event(0, "50000"))
    await ex.submit_order(intent("a", Side.BUY, "0.01"))
    await ex.on_candles(candle_event(1, "50100"))
    await ex.submit_order(intent("b", Side.BUY, "0.01"))
    await ex.on_candles(candle_event(2, "50200"))
    await ex.submit_order(intent("c", Side.SELL, "0.02"))

    later = await ex.fetch_fills(BTC, since=closed_at(0))

    assert [f.client_order_id for f in later] == ["b", "c"]
    assert await ex.fetch_fills(ETH) == []


@run_async
async def test_using_the_exchange_before_start_is_an_error() -> None:
    ledger = MemoryLedger()
    ex = PaperExchange(ACCOUNT, SETTINGS, ledger, MARKETS)

    with pytest.raises(RuntimeError, match="before start"):
        await ex.on_candles(candle_event(0, "50000"))
    assert ledger.writes == 0


@run_async
async def test_market_lookup_names_the_unknown_symbol() -> None:
    ex = await started()
    assert await ex.market(BTC) == MARKETS[BTC]
    with pytest.raises(NotFound, match="DOGE/USDT:USDT"):
        await ex.market("DOGE/USDT:USDT")


def test_orders_round_trip_through_the_saved_json() -> None:
    async def body() -> Order:
        ledger = MemoryLedger()
        ex = await started(ledger)
        await ex.on_candles(candle_event(0, "50000"))
        await ex.submit_order(intent("bid", Side.BUY, "0.01", "49000"))
        restarted = await started(ledger)
        order = await restarted.fetch_order(BTC, "bid")
        assert order == await ex.fetch_order(BTC, "bid")
        assert order is not None
        return order

    order = asyncio.run(body())
    assert order.created_at is not None and order.created_at.tzinfo is not None


# --- market rules file -------------------------------------------------------------------------


def test_shipped_markets_file_has_binance_rules_for_btc_and_eth() -> None:
    markets = load_paper_markets()

    assert DEFAULT_MARKETS_FILE.is_file()
    assert markets[BTC] == Market(BTC, D("0.001"), D("0.1"), D("0.001"), D(100), 125)
    assert markets[ETH] == Market(ETH, D("0.001"), D("0.01"), D("0.001"), D(20), 125)
    assert "_source" in json.loads(DEFAULT_MARKETS_FILE.read_text())


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "does not exist"),
        ("{oops", "not valid JSON"),
        ('{"markets": {}}', "is empty"),
        ('{"markets": {"X": {"amount_step": 0.001}}}', "amount_step must be a decimal string"),
        (
            '{"markets": {"X": {"amount_step": "0.001", "price_step": "0.1", '
            '"min_amount": "0.001", "min_notional": "5", "max_leverage": "20"}}}',
            "max_leverage must be an integer",
        ),
    ],
)
def test_a_missing_or_malformed_markets_file_is_a_clear_error(
    tmp_path: Path, content: str | None, why: str
) -> None:
    path = tmp_path / "markets.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(ConfigError, match=re.escape(why)) as caught:
        load_paper_markets(path)
    assert str(path) in str(caught.value)
