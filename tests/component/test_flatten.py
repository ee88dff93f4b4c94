"""Flatten against a paper account through an exchange that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters.paper_exchange import PaperExchange, PaperSettings
from daemon.adapters.paper_markets import load_paper_markets
from daemon.adapters.sqlite_store import SqliteStore
from daemon.clock import SystemClock
from daemon.domain.errors import OrderRejected, RetryableExchangeError
from daemon.domain.models import Candle, Order, OrderIntent, OrderStatus, OrderType, Side
from daemon.ports import CandlesClosed
from daemon.runtime.flatten import Flattener

T0 = datetime(2025, 5, 10, tzinfo=UTC)
ETH, BTC = "ETH/USDT:USDT", "BTC/USDT:USDT"


class FaultyExchange:
    """The paper exchange behind a door that times out, rate-limits, rejects, loses
    replies after acting and fills only part of an order, at random but reproducibly."""

    def __init__(self, inner: PaperExchange, seed: int, fault_rate: float) -> None:
        self.inner = inner
        self.account = inner.account
        self.random = random.Random(seed)
        self.fault_rate = fault_rate
        self.faults: dict[str, int] = {}

    def _maybe_fail(self, where: str) -> None:
        if self.random.random() < self.fault_rate:
            kind = self.random.choice(["timeout", "rate_limited", "rejected"])
            self.faults[kind] = self.faults.get(kind, 0) + 1
            if kind == "rejected":
                raise OrderRejected(f"{where}: exchange overloaded, try later")
            raise RetryableExchangeError(f"{where}: {kind}")

    async def submit_order(self, intent: OrderIntent) -> Order:
        self._maybe_fail("submit")
        roll = self.random.random()
        if roll < self.fault_rate and intent.qty > Decimal("0.002"):
            self.faults["partial_fill"] = self.faults.get("partial_fill", 0) + 1
            half = (intent.qty / 2).quantize(Decimal("0.001"))
            return await self.inner.submit_order(replace(intent, qty=half))
        if roll > 1 - self.fault_rate:
            self.faults["reply_lost"] = self.faults.get("reply_lost", 0) + 1
            await self.inner.submit_order(intent)  # it happened; the caller never hears
            raise RetryableExchangeError("connection reset after the order was accepted")
        return await self.inner.submit_order(intent)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        self._maybe_fail("open orders")
        return await self.inner.fetch_open_orders(symbol)

    async def fetch_positions(self, symbol: str | None = None) -> list[Any]:
        self._maybe_fail("positions")
        return await self.inner.fetch_positions(symbol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def paper_with_positions(folder: Path) -> tuple[PaperExchange, SqliteStore]:
    store = SqliteStore(folder / "state.db")
    paper = PaperExchange(
        "paper",
        PaperSettings(Decimal(10_000), Decimal("0.0005"), Decimal("0.0002"), Decimal(2), 3),
        store,
        load_paper_markets(),
    )
    await paper.start()
    for symbol, price in ((ETH, Decimal(2500)), (BTC, Decimal(100_000))):
        candle = Candle(symbol, "1m", T0, price, price, price, price, Decimal(1))
        await paper.on_candles(CandlesClosed(symbol, T0, (candle,)))
    for n, (symbol, side, qty) in enumerate([(ETH, Side.BUY, "0.05"), (BTC, Side.SELL, "0.004")]):
        await paper.submit_order(
            OrderIntent(
                "b",
                "paper",
                symbol,
                f"tcx-{n}",
                side,
                OrderType.MARKET,
                Decimal(qty),
                None,
                False,
                T0,
            )
        )
    resting = OrderIntent(
        "b",
        "paper",
        ETH,
        "tcx-rest",
        Side.BUY,
        OrderType.LIMIT,
        Decimal("0.01"),
        Decimal(2000),
        False,
        T0,
    )
    await paper.submit_order(resting)
    return paper, store


def no_owner(symbol: str) -> str | None:
    return None


@pytest.mark.parametrize("seed", range(8))
def test_flatten_ends_flat_through_timeouts_rate_limits_rejections_and_partial_fills(
    tmp_path: Path, seed: int
) -> None:
    async def story() -> None:
        paper, store = await paper_with_positions(tmp_path)
        faulty = FaultyExchange(paper, seed, fault_rate=0.3)
        flattener = Flattener(store, SystemClock(), sleep=lambda s: asyncio.sleep(0))
        reports = await flattener.flatten(faulty, [], no_owner, timeout_s=20, whole_account=True)
        assert {r.symbol for r in reports} == {ETH, BTC}
        assert all(r.flat for r in reports), [r.as_dict() for r in reports]
        assert await paper.fetch_positions() == [] and await paper.fetch_open_orders() == []
        # Safe to run twice: nothing left, nothing sent.
        again = await Flattener(store, SystemClock()).flatten(paper, [ETH, BTC], no_owner, 5)
        assert all(r.flat and r.closed_qty == 0 and not r.cancelled for r in again)
        assert sum(faulty.faults.values()) > 0, "the faults must really have happened"

    asyncio.run(story())


def test_flatten_never_reports_flat_when_it_is_not(tmp_path: Path) -> None:
    async def story() -> None:
        paper, store = await paper_with_positions(tmp_path)
        refusing = FaultyExchange(paper, seed=1, fault_rate=1.0)  # every call fails
        flattener = Flattener(store, SystemClock(), sleep=lambda s: asyncio.sleep(0.01))
        [eth] = await flattener.flatten(refusing, [ETH], no_owner, timeout_s=0.5)
        assert not eth.flat and eth.errors and eth.attempts > 1
        assert {p.symbol for p in await paper.fetch_positions()} == {ETH, BTC}

    asyncio.run(story())


def test_flatten_orders_are_reduce_only_and_written_to_the_store_first(tmp_path: Path) -> None:
    async def story() -> None:
        paper, store = await paper_with_positions(tmp_path)
        [eth] = await Flattener(store, SystemClock()).flatten(paper, [ETH], lambda s: "eth-bot", 5)
        assert eth.flat and eth.cancelled == ["tcx-rest"] and eth.closed_qty == Decimal("0.05")
        flatten_orders = [
            o for o in store.recent_orders("eth-bot") if o.client_order_id.startswith("tcfx")
        ]
        assert len(flatten_orders) == 1
        assert flatten_orders[0].reduce_only and flatten_orders[0].status is OrderStatus.FILLED
        kinds = [e["kind"] for e in store.events("eth-bot")]
        assert kinds.index("order_intent_recorded") < kinds.index("order_status_changed")

    asyncio.run(story())
