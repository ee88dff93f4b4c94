"""Flatten against a paper account through an exchange that misbehaves on purpose, with
the SQLite file and the PostgreSQL store (the `open_store` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters.paper_exchange import PaperExchange, PaperSettings
from daemon.adapters.paper_markets import load_paper_markets
from daemon.adapters.sqlite_store import SqliteStore
from daemon.clock import SystemClock
from daemon.domain.errors import NotFound, OrderRejected, RetryableExchangeError
from daemon.domain.models import (
    Candle,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    bot_tag,
)
from daemon.ports import CandlesClosed, StateStore
from daemon.runtime.flatten import Flattener, SymbolFlatten, flatten_order_id
from tests.conftest import StoreOpener

T0 = datetime(2025, 5, 10, tzinfo=UTC)
D = Decimal
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


async def paper_with_positions(open_store: StoreOpener) -> tuple[PaperExchange, StateStore]:
    store: StateStore = open_store()
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
    open_store: StoreOpener, seed: int
) -> None:
    async def story() -> None:
        paper, store = await paper_with_positions(open_store)
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


def test_flatten_never_reports_flat_when_it_is_not(open_store: StoreOpener) -> None:
    async def story() -> None:
        paper, store = await paper_with_positions(open_store)
        refusing = FaultyExchange(paper, seed=1, fault_rate=1.0)  # every call fails
        flattener = Flattener(store, SystemClock(), sleep=lambda s: asyncio.sleep(0.01))
        [eth] = await flattener.flatten(refusing, [ETH], no_owner, timeout_s=0.5)
        assert not eth.flat and eth.errors and eth.attempts > 1
        assert {p.symbol for p in await paper.fetch_positions()} == {ETH, BTC}

    asyncio.run(story())


def test_flatten_orders_are_reduce_only_and_written_to_the_store_first(
    open_store: StoreOpener,
) -> None:
    async def story() -> None:
        paper, store = await paper_with_positions(open_store)
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


# --- every path on a fake clock: time passes only when the flattener sleeps ----------------


class FakeClock:
    """Monotonic time that moves only through `sleep`, which records every delay asked for."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class Scripted:
    """The paper account with misbehaviour chosen per test: calls that fail a given number
    of times, cancels that are acknowledged but do not happen, fills capped per order."""

    def __init__(self, inner: PaperExchange) -> None:
        self.inner = inner
        self.account = inner.account
        self.failures: dict[str, int] = {}  # method -> how many more calls fail
        self.stuck_cancels = False
        self.cancel_not_found = False
        self.fill_cap: Decimal | None = None
        self.refusals = 0  # how many more submits the exchange refuses outright
        self.extra_positions: list[Position] = []
        self.cancels: list[str] = []
        self.submitted: list[OrderIntent] = []
        self.asked: list[tuple[str, str | None]] = []  # (what, symbol) of every read
        self.trigger_flags: list[tuple[str, str, bool]] = []  # (call, cid, trigger=)

    def _fail(self, method: str) -> None:
        if self.failures.get(method, 0) > 0:
            self.failures[method] -= 1
            raise RetryableExchangeError(f"{method}: timed out")

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        self.asked.append(("orders", symbol))
        self._fail("fetch_open_orders")
        return await self.inner.fetch_open_orders(symbol)

    async def fetch_positions(self, symbol: str | None = None) -> list[Position]:
        self.asked.append(("positions", symbol))
        self._fail("fetch_positions")
        return [*await self.inner.fetch_positions(symbol), *self.extra_positions]

    async def cancel_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        self._fail("cancel_order")
        self.cancels.append(client_order_id)
        self.trigger_flags.append(("cancel", client_order_id, trigger))
        if self.cancel_not_found:
            await self.inner.cancel_order(symbol, client_order_id, trigger=trigger)
            raise NotFound(f"{client_order_id}: unknown order")
        if self.stuck_cancels:  # acknowledged, yet the order stays on the book
            order = await self.inner.fetch_order(symbol, client_order_id, trigger=trigger)
            return None if order is None else order.with_status(OrderStatus.CANCELED)
        return await self.inner.cancel_order(symbol, client_order_id, trigger=trigger)

    async def fetch_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        self.trigger_flags.append(("fetch", client_order_id, trigger))
        return await self.inner.fetch_order(symbol, client_order_id, trigger=trigger)

    async def submit_order(self, intent: OrderIntent) -> Order:
        self._fail("submit_order")
        self.submitted.append(intent)
        if self.refusals > 0:
            self.refusals -= 1
            raise OrderRejected(f"{intent.client_order_id}: margin is insufficient")
        if self.fill_cap is not None and intent.qty > self.fill_cap:
            return await self.inner.submit_order(replace(intent, qty=self.fill_cap))
        return await self.inner.submit_order(intent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def on_fake_clock(
    open_store: StoreOpener, body: Callable[[PaperExchange, StateStore, Scripted, FakeClock], Any]
) -> None:
    async def main() -> None:
        paper, store = await paper_with_positions(open_store)
        clock = FakeClock()
        await body(paper, store, Scripted(paper), clock)

    asyncio.run(main())


def eth_bot(symbol: str) -> str | None:
    return "eth-bot" if symbol == ETH else None


def test_backoff_doubles_to_its_cap_and_the_flatten_gives_up_at_its_deadline(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.failures["fetch_open_orders"] = 1000
        began = clock.t
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 10)
        assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 1.0])
        assert clock.t == pytest.approx(began + 10), "gave up at the deadline, not later"
        assert not eth.flat and eth.attempts == 9 and len(eth.errors) == 9
        assert (eth.account, eth.symbol, eth.owner) == ("paper", ETH, "eth-bot")
        assert eth.errors[0] == "RetryableExchangeError: fetch_open_orders: timed out"
        assert {p.symbol for p in await paper.fetch_positions()} == {ETH, BTC}

    on_fake_clock(open_store, body)


def test_a_flatten_with_no_time_left_tries_once_and_reports_what_is_left(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.failures["submit_order"] = 1000  # orders cancel, the position cannot be closed
        [btc] = await Flattener(store, clock, clock.sleep).flatten(gw, [BTC], no_owner, 0)
        assert clock.sleeps == [] and btc.attempts == 1 and not btc.flat
        assert btc.errors == ["RetryableExchangeError: submit_order: timed out"]

    on_fake_clock(open_store, body)


def test_a_position_that_will_not_close_is_reported_with_its_size(open_store: StoreOpener) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.failures["submit_order"] = 3  # the first three closes fail; a short position
        [btc] = await Flattener(store, clock, clock.sleep).flatten(gw, [BTC], no_owner, 0.5)
        assert not btc.flat and btc.attempts == 3, btc.as_dict()
        assert clock.sleeps == pytest.approx([0.2, 0.3])  # the last sleep ends at the deadline
        gw.failures.clear()
        await Flattener(store, clock, clock.sleep).flatten(gw, [BTC], no_owner, 0)
        assert await paper.fetch_positions(BTC) == []

    on_fake_clock(open_store, body)


def test_an_order_still_listed_after_its_cancel_was_acknowledged_is_not_flat(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.stuck_cancels = True
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 3)
        assert not eth.flat
        assert eth.remaining_orders == 1 and eth.remaining_qty == 0 and eth.closed_qty == D("0.05")
        assert gw.cancels.count("tcx-rest") == eth.attempts > 1, "cancelled again on every pass"
        assert eth.cancelled == ["tcx-rest"], "each cancelled id is reported once"
        assert eth.as_dict()["remaining_orders"] == 1 and eth.as_dict()["flat"] is False

    on_fake_clock(open_store, body)


def test_an_order_gone_before_its_cancel_counts_as_cancelled(open_store: StoreOpener) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.cancel_not_found = True
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 3)
        assert eth.flat and eth.cancelled == ["tcx-rest"] and eth.errors == []

    on_fake_clock(open_store, body)


def test_partial_closes_add_up_to_the_whole_position(open_store: StoreOpener) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.fill_cap = D("0.02")  # the exchange fills at most 0.02 of any order
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 10)
        assert eth.flat and eth.closed_qty == D("0.05") and eth.remaining_qty == 0
        assert [i.qty for i in gw.submitted] == [D("0.05"), D("0.03"), D("0.01")]
        assert clock.sleeps == pytest.approx([0.2, 0.4]), "one back-off per pass that left some"
        assert eth.attempts == 3 and eth.as_dict()["closed_qty"] == "0.05"

    on_fake_clock(open_store, body)


def test_the_flatten_order_closes_reduce_only_on_the_opposite_side_and_is_stored_first(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        reports = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH, BTC], eth_bot, 5)
        assert [(r.symbol, r.owner, r.flat) for r in reports] == [
            (BTC, None, True),
            (ETH, "eth-bot", True),
        ]
        by_symbol = {i.symbol: i for i in gw.submitted}
        eth, btc = by_symbol[ETH], by_symbol[BTC]
        assert (eth.side, eth.qty, btc.side, btc.qty) == (
            Side.SELL,
            D("0.05"),
            Side.BUY,
            D("0.004"),
        )
        for sent, owner in ((eth, "eth-bot"), (btc, "paper")):
            assert sent.type is OrderType.MARKET and sent.price is None and sent.reduce_only
            assert sent.purpose == "flatten" and sent.created_at == clock.now()
            assert sent.account == "paper" and sent.bot == (None if owner == "paper" else owner)
            assert re.fullmatch(f"tcfx{bot_tag(owner)}-[0-9a-f]{{12}}", sent.client_order_id)
        [recorded] = [e for e in store.events("eth-bot") if e["kind"] == "order_intent_recorded"]
        assert recorded["purpose"] == "flatten" and recorded["reduce_only"] is True
        stored = store.order(eth.client_order_id)
        assert stored is not None and stored.status is OrderStatus.FILLED
        assert stored.filled_qty == D("0.05")

    on_fake_clock(open_store, body)


def test_the_flattens_own_fill_is_in_the_store_afterwards(open_store: StoreOpener) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 5)
        assert eth.flat
        [sent] = gw.submitted
        fills = {f.client_order_id: f for f in store.fills("eth-bot")}
        assert sent.client_order_id in fills, "recorded for the bot that owned the position"
        assert fills[sent.client_order_id].qty == D("0.05")
        assert "tcx-0" in fills, "the entry fill no one had recorded yet is there too"

    on_fake_clock(open_store, body)


def test_a_resting_order_the_store_knows_is_marked_cancelled_there(open_store: StoreOpener) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        known = await paper.submit_order(
            OrderIntent(
                "eth-bot",
                "paper",
                ETH,
                "tcx-known",
                Side.SELL,
                OrderType.LIMIT,
                D("0.01"),
                D(3000),
                True,
                T0,
            )
        )
        store.record_intent(
            OrderIntent(
                "eth-bot",
                "paper",
                ETH,
                "tcx-known",
                Side.SELL,
                OrderType.LIMIT,
                D("0.01"),
                D(3000),
                True,
                T0,
            )
        )
        store.update_order(known)
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 5)
        assert sorted(eth.cancelled) == ["tcx-known", "tcx-rest"]
        stored = store.order("tcx-known")
        assert stored is not None and stored.status is OrderStatus.CANCELED
        assert store.order("tcx-rest") is None, "an order the store never knew is not invented"
        changed = [
            e["cid"] for e in store.events(limit=1000) if e["kind"] == "order_status_changed"
        ]
        assert "tcx-rest" not in changed

    on_fake_clock(open_store, body)


def test_a_flatten_without_a_store_works_the_same(open_store: StoreOpener) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        events_before = len(store.events(limit=10_000))
        reports = await Flattener(None, clock, clock.sleep).flatten(gw, [ETH, BTC], no_owner, 5)
        assert all(r.flat for r in reports)
        assert await paper.fetch_positions() == []
        kinds = {e["kind"] for e in store.events(limit=10_000)[events_before:]}
        assert not kinds & {"order_intent_recorded", "order_filled", "order_status_changed"}

    on_fake_clock(open_store, body)


def test_the_whole_account_finds_every_symbol_with_an_order_or_a_position(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        await paper.submit_order(
            OrderIntent(
                None,
                "paper",
                BTC,
                "web-1",
                Side.BUY,
                OrderType.LIMIT,
                D("0.002"),
                D(90_000),
                False,
                T0,
            )
        )
        [btc] = await Flattener(store, clock, clock.sleep).flatten(gw, [BTC], no_owner, 5)
        assert btc.cancelled == ["web-1"], "only the symbol's own orders"
        assert {p.symbol for p in await paper.fetch_positions()} == {ETH}
        assert set(gw.asked) == {("orders", BTC), ("positions", BTC)}, "never the whole account"
        gw.extra_positions = [Position("paper", "SOL/USDT:USDT", D(0), D(0), D(0), 3)]
        gw.failures.update(fetch_open_orders=1, fetch_positions=1)
        reports = await Flattener(store, clock, clock.sleep).flatten(
            gw, [BTC], no_owner, 5, whole_account=True
        )
        assert [r.symbol for r in reports] == [BTC, ETH], "a zero position is no reason to flatten"
        assert reports[0].flat and reports[0].closed_qty == 0, "a named symbol is reported flat"
        reports = reports[1:]
        assert clock.sleeps[:2] == pytest.approx([0.2, 0.4]), "discovery retried with back-off"
        assert reports[0].flat and reports[0].cancelled == ["tcx-rest"]

    on_fake_clock(open_store, body)


def test_discovery_that_keeps_failing_past_the_deadline_raises(open_store: StoreOpener) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.failures["fetch_positions"] = 1000
        with pytest.raises(RetryableExchangeError):
            await Flattener(store, clock, clock.sleep).flatten(
                gw, [], no_owner, 3, whole_account=True
            )
        assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6])
        assert {p.symbol for p in await paper.fetch_positions()} == {ETH, BTC}

    on_fake_clock(open_store, body)


def test_a_report_reads_as_plain_data() -> None:
    report = SymbolFlatten("paper", ETH, None, ["a"], D("0.5"), D("0.25"), 1, False, 2, ["x"])
    assert report.as_dict() == {
        "account": "paper",
        "symbol": ETH,
        "owner": None,
        "cancelled": ["a"],
        "closed_qty": "0.5",
        "remaining_qty": "0.25",
        "remaining_orders": 1,
        "flat": False,
        "attempts": 2,
        "errors": ["x"],
        "known": False,
    }
    assert SymbolFlatten("paper", ETH, "eth-bot").as_dict()["known"] is True
    assert re.fullmatch(f"tcfx{bot_tag('eth-bot')}-[0-9a-f]{{12}}", flatten_order_id("eth-bot"))
    assert flatten_order_id("eth-bot") != flatten_order_id("eth-bot")


def test_a_resting_stop_is_cancelled_and_read_back_as_a_trigger_order(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        stop = OrderIntent(
            "eth-bot",
            "paper",
            ETH,
            "tcx-stop",
            Side.SELL,
            OrderType.STOP_MARKET,
            D("0.05"),
            None,
            True,
            T0,
            purpose="stop",
            trigger_price=D(2400),
        )
        store.record_intent(stop)
        store.update_order(await paper.submit_order(stop))
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 5)
        assert eth.flat
        assert sorted(gw.trigger_flags) == [
            ("cancel", "tcx-rest", False),
            ("cancel", "tcx-stop", True),
            ("fetch", "tcx-stop", True),
        ]
        stored = store.order("tcx-stop")
        assert stored is not None and stored.status is OrderStatus.CANCELED

    on_fake_clock(open_store, body)


def test_a_loss_limits_flatten_writes_each_cancel_first_and_an_operators_does_not(
    open_store: StoreOpener,
) -> None:
    """A runner's halt flattens `fenced`: each cancel of its bot's symbol is in the store
    (cause `flatten`) before it is sent; the operator's flatten sends them as today."""

    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        [eth] = await Flattener(store, clock, clock.sleep).flatten(
            gw, [ETH], eth_bot, 5, fenced=True
        )
        assert eth.flat and eth.cancelled == ["tcx-rest"]
        asked = [
            (e["cid"], e["cause"])
            for e in store.events("eth-bot")
            if e["kind"] == "order_cancel_requested"
        ]
        assert asked == [("tcx-rest", "flatten")]
        again = await paper.submit_order(
            OrderIntent(
                "b",
                "paper",
                ETH,
                "tcx-rest-2",
                Side.BUY,
                OrderType.LIMIT,
                D("0.01"),
                D(2000),
                False,
                T0,
            )
        )
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 5)
        assert eth.flat and eth.cancelled == [again.client_order_id]
        asked_now = [e for e in store.events("eth-bot") if e["kind"] == "order_cancel_requested"]
        assert len(asked_now) == 1, "the operator's cancel is not written first"

    on_fake_clock(open_store, body)


def test_the_owning_bots_position_in_the_store_is_what_the_read_back_found(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        store.save_position("eth-bot", Position("paper", ETH, D("0.05"), D(2400), D(2450), 5))
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 5)
        assert eth.flat
        assert store.position("eth-bot") == Position("paper", ETH, D(0), D(0), D(0), 5)

    on_fake_clock(open_store, body)


def test_a_position_left_open_is_stored_as_found_keeping_its_entry_and_leverage(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.fill_cap = D("0.001")  # one pass closes only a sliver
        owners = {ETH: "eth-bot", BTC: "btc-bot"}.get
        store.save_position("eth-bot", Position("paper", ETH, D("0.08"), D(2400), D(2450), 5))
        store.save_position("btc-bot", Position("paper", BTC, D("-0.003"), D(1), D(2), 7))
        await Flattener(store, clock, clock.sleep).flatten(gw, [ETH, BTC], owners, 0)
        assert store.position("eth-bot") == Position("paper", ETH, D("0.049"), D(2400), D(2400), 5)
        assert store.position("btc-bot") == Position("paper", BTC, D("-0.003"), D(1), D(2), 7), (
            "already right: left as it was"
        )

    on_fake_clock(open_store, body)


def test_a_bot_the_store_knew_no_position_of_gets_the_one_found_without_an_entry(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.fill_cap = D("0.001")
        await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 0)
        assert store.position("eth-bot") == Position("paper", ETH, D("0.049"), D(0), D(0), 0)

    on_fake_clock(open_store, body)


def test_a_refused_flatten_order_is_stored_as_rejected_with_the_exchanges_words(
    open_store: StoreOpener,
) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.refusals = 1
        [eth] = await Flattener(store, clock, clock.sleep).flatten(gw, [ETH], eth_bot, 5)
        assert eth.flat, "the next pass tries afresh"
        refused, _ = gw.submitted
        words = f"{refused.client_order_id}: margin is insufficient"
        assert eth.errors == [f"OrderRejected: {words}"]
        stored = store.order(refused.client_order_id)
        assert stored is not None and stored.status is OrderStatus.REJECTED
        assert stored.reason == words
        [change] = [
            e
            for e in store.events(limit=1000)
            if e["kind"] == "order_status_changed" and e["cid"] == refused.client_order_id
        ]
        assert (change["bot"], change["to"], change["reason"]) == ("eth-bot", "rejected", words)

    on_fake_clock(open_store, body)


def test_no_position_row_is_made_up_for_a_symbol_no_bot_owns(tmp_path: Path) -> None:
    async def body(paper: PaperExchange, store: StateStore, gw: Scripted, clock: FakeClock) -> None:
        gw.fill_cap = D("0.001")  # left open: the read-back finds a position
        [btc] = await Flattener(store, clock, clock.sleep).flatten(gw, [BTC], no_owner, 0)
        assert btc.remaining_qty == D("0.003")
        with contextlib.closing(sqlite3.connect(tmp_path / "state.db")) as db:
            assert db.execute("SELECT count(*) FROM positions").fetchone() == (0,)

    on_fake_clock(lambda: SqliteStore(tmp_path / "state.db"), body)  # reads the file
