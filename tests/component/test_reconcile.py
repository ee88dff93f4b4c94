"""Start-up reconciliation called directly: a paper account that moved on while the daemon was
down, a real SQLite file that remembers the world as it was, and what the store learns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from daemon.adapters.paper_exchange import PaperExchange, PaperSettings
from daemon.adapters.paper_markets import load_paper_markets
from daemon.domain.errors import NotFound
from daemon.domain.models import (
    Candle,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from daemon.ports import CandlesClosed, StateStore
from daemon.runtime.reconcile import reconcile_account
from tests.conftest import StoreOpener

T0 = datetime(2025, 5, 10, tzinfo=UTC)
ETH, BTC = "ETH/USDT:USDT", "BTC/USDT:USDT"
PRICES = {ETH: Decimal(2500), BTC: Decimal(100_000)}
BOTS = {ETH: "eth-bot"}  # the one bot on this account; BTC belongs to nobody


def owner_of(symbol: str) -> str | None:
    return BOTS.get(symbol)


def order(
    cid: str,
    symbol: str = ETH,
    side: Side = Side.BUY,
    qty: str = "0.01",
    price: str | None = None,
    bot: str | None = "eth-bot",
) -> OrderIntent:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderIntent(
        bot,
        "paper",
        symbol,
        cid,
        side,
        kind,
        Decimal(qty),
        None if price is None else Decimal(price),
        False,
        T0,
    )


class Account:
    """A paper account and the daemon's store (the SQLite file, or PostgreSQL)."""

    def __init__(self, open_store: StoreOpener) -> None:
        self.store: StateStore = open_store()
        self.paper = PaperExchange(
            "paper",
            PaperSettings(Decimal(10_000), Decimal("0.0005"), Decimal("0.0002"), Decimal(0), 3),
            self.store,
            load_paper_markets(),
        )

    async def open(self) -> Account:
        await self.paper.start()
        for symbol, price in PRICES.items():
            candle = Candle(symbol, "1m", T0, price, price, price, price, Decimal(1))
            await self.paper.on_candles(CandlesClosed(symbol, T0 + timedelta(minutes=1), (candle,)))
        return self

    async def reconcile(self, gateway: Any = None) -> list[dict[str, Any]]:
        return await reconcile_account(gateway or self.paper, self.store, owner_of, BOTS)

    def journal(self, kind: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in e.items() if k not in ("id", "ts", "node")}  # node: a fleet's
            for e in self.store.events(limit=1000)
            if e["kind"] == kind
        ]


def story(body: Callable[[Account], Awaitable[None]], open_store: StoreOpener) -> None:
    async def main() -> None:
        await body(await Account(open_store).open())

    asyncio.run(main())


def test_an_order_the_store_knows_as_pending_is_learnt_open(open_store: StoreOpener) -> None:
    async def body(acc: Account) -> None:
        resting = order("tcaaaa-00000001", price="2000")
        acc.store.record_intent(resting)  # the daemon died before it heard the reply
        await acc.paper.submit_order(resting)
        pending = acc.store.order(resting.client_order_id)
        assert pending is not None and pending.status is OrderStatus.PENDING_SUBMIT

        assert await acc.reconcile() == []  # a known order is no difference
        known = acc.store.order(resting.client_order_id)
        assert known is not None and known.status is OrderStatus.OPEN and known.bot == "eth-bot"
        assert [o.client_order_id for o in await acc.paper.fetch_open_orders()] == [
            resting.client_order_id
        ], "a known order is never cancelled"

    story(body, open_store)


class WithoutBots:
    """The paper account as a real exchange answers: it knows orders, not the bots behind them."""

    def __init__(self, inner: PaperExchange) -> None:
        self.inner = inner
        self.account = inner.account

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        return [replace(o, bot=None) for o in await self.inner.fetch_open_orders(symbol)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_known_orders_change_is_journalled_for_its_bot_though_the_exchange_knows_none(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        resting = order("tcaaaa-00000008", price="2000")
        acc.store.record_intent(resting)
        await acc.paper.submit_order(resting)
        await acc.reconcile(WithoutBots(acc.paper))
        [change] = [
            e for e in acc.journal("order_status_changed") if e["cid"] == resting.client_order_id
        ]
        assert (change["bot"], change["from"], change["to"]) == (
            "eth-bot",
            "pending_submit",
            "open",
        )

    story(body, open_store)


def test_a_known_order_does_not_stop_the_look_at_the_orders_after_it(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        known = order("tcaaaa-00000009", price="2000")
        acc.store.record_intent(known)
        await acc.paper.submit_order(known)
        await acc.paper.submit_order(order("tcdead-00000013", price="2001"))
        differences = await acc.reconcile()
        assert [(d["kind"], d["cid"]) for d in differences] == [
            ("unknown_order_cancelled", "tcdead-00000013")
        ]
        assert [o.client_order_id for o in await acc.paper.fetch_open_orders()] == [
            known.client_order_id
        ]

    story(body, open_store)


def test_a_known_order_whose_fill_the_store_got_wrong_is_corrected(open_store: StoreOpener) -> None:
    async def body(acc: Account) -> None:
        resting = order("tcaaaa-00000002", price="2000")
        acc.store.record_intent(resting)
        placed = await acc.paper.submit_order(resting)
        # The store believes the same status but a different filled quantity.
        acc.store.update_order(placed.with_status(OrderStatus.OPEN, filled_qty=Decimal("0.004")))
        await acc.reconcile()
        known = acc.store.order(resting.client_order_id)
        assert known is not None and known.filled_qty == 0 and known.status is OrderStatus.OPEN

    story(body, open_store)


def test_an_order_the_store_already_agrees_with_is_not_rewritten(open_store: StoreOpener) -> None:
    async def body(acc: Account) -> None:
        resting = order("tcaaaa-00000003", price="2000")
        acc.store.record_intent(resting)
        acc.store.update_order(await acc.paper.submit_order(resting))
        changes_before = len(acc.journal("order_status_changed"))
        store_order = acc.store.order(resting.client_order_id)
        await acc.reconcile()
        assert len(acc.journal("order_status_changed")) == changes_before
        assert acc.store.order(resting.client_order_id) == store_order

    story(body, open_store)


def test_an_unknown_order_of_ours_is_cancelled_and_a_hand_placed_one_left_alone(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        ours = order("tcdead-00000009", side=Side.SELL, qty="0.02", price="3000")
        by_hand = order("web-12345", qty="0.03", price="2100", bot=None)
        await acc.paper.submit_order(ours)  # sent by a daemon whose store was lost
        await acc.paper.submit_order(by_hand)
        elsewhere = order("tcbeef-00000001", symbol=BTC, price="90000", qty="0.002", bot=None)
        await acc.paper.submit_order(elsewhere)  # on a symbol no bot trades

        differences = await acc.reconcile()

        assert differences == [
            {
                "kind": "unknown_order_cancelled",
                "account": "paper",
                "bot": "eth-bot",
                "cid": "tcdead-00000009",
                "symbol": ETH,
                "side": "sell",
                "qty": "0.02",
            },
            {
                "kind": "foreign_order_seen",
                "account": "paper",
                "bot": "eth-bot",
                "cid": "web-12345",
                "symbol": ETH,
                "side": "buy",
                "qty": "0.03",
            },
        ]
        still_open = {o.client_order_id for o in await acc.paper.fetch_open_orders()}
        assert still_open == {"web-12345", "tcbeef-00000001"}, "only ours on a bot symbol goes"
        assert acc.journal("unknown_order_cancelled") == [
            {
                "bot": "eth-bot",
                "kind": "unknown_order_cancelled",
                "account": "paper",
                "cid": "tcdead-00000009",
                "symbol": ETH,
                "side": "sell",
                "qty": "0.02",
            }
        ]
        assert [e["cid"] for e in acc.journal("foreign_order_seen")] == ["web-12345"]

    story(body, open_store)


class VanishingCancels:
    """The paper account, where every order is gone by the time a cancel arrives."""

    def __init__(self, inner: PaperExchange) -> None:
        self.inner = inner
        self.account = inner.account
        self.cancels: list[str] = []

    async def cancel_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        self.cancels.append(client_order_id)
        raise NotFound(f"order {client_order_id} does not exist")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_unknown_order_already_gone_when_cancelled_is_still_reported(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        await acc.paper.submit_order(order("tcdead-00000010", price="2000"))
        gateway = VanishingCancels(acc.paper)
        differences = await acc.reconcile(gateway)
        assert gateway.cancels == ["tcdead-00000010"]
        assert [(d["kind"], d["cid"]) for d in differences] == [
            ("unknown_order_cancelled", "tcdead-00000010")
        ]

    story(body, open_store)


def test_only_a_position_on_a_symbol_no_bot_trades_is_foreign(open_store: StoreOpener) -> None:
    async def body(acc: Account) -> None:
        await acc.paper.submit_order(order("manual-1", symbol=BTC, qty="0.002", bot=None))
        await acc.paper.submit_order(order("tcaaaa-00000004", qty="0.04"))  # the bot's own
        acc.store.record_intent(order("tcaaaa-00000004", qty="0.04"))

        differences = await acc.reconcile()

        assert [d for d in differences if d["kind"] == "foreign_position_seen"] == [
            {
                "kind": "foreign_position_seen",
                "account": "paper",
                "bot": None,
                "symbol": BTC,
                "qty": "0.002",
            }
        ]
        [journalled] = acc.journal("foreign_position_seen")
        assert journalled["bot"] is None and journalled["symbol"] == BTC
        assert journalled["account"] == "paper" and journalled["qty"] == "0.002"

    story(body, open_store)


def test_fills_made_while_the_daemon_was_down_are_recorded_for_their_bot(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        entry = order("tcaaaa-00000005", qty="0.03")
        acc.store.record_intent(entry)
        await acc.paper.submit_order(entry)  # filled; the reply never reached the store
        await acc.paper.submit_order(order("manual-2", symbol=BTC, qty="0.002", bot=None))
        assert acc.store.fills("eth-bot") == []

        await acc.reconcile()

        [fill] = acc.store.fills("eth-bot")
        assert (fill.client_order_id, fill.qty, fill.price) == (
            "tcaaaa-00000005",
            Decimal("0.03"),
            Decimal(2500),
        )
        assert acc.store.last_fill_time("paper", BTC) is None, "a symbol no bot trades is not read"
        await acc.reconcile()  # twice is harmless: no fill recorded twice
        assert len(acc.store.fills("eth-bot")) == 1

    story(body, open_store)


def test_a_position_that_changed_while_down_is_adopted_and_journalled(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        await acc.paper.submit_order(order("tcaaaa-00000006", qty="0.05"))
        held = (await acc.paper.fetch_positions(ETH))[0]
        acc.store.save_position("eth-bot", replace(held, qty=Decimal("0.02")))  # stale memory

        differences = await acc.reconcile()

        assert [d for d in differences if d["kind"] == "position_adopted"] == [
            {
                "kind": "position_adopted",
                "account": "paper",
                "bot": "eth-bot",
                "symbol": ETH,
                "store_qty": "0.02",
                "exchange_qty": "0.05",
            }
        ]
        assert [e["store_qty"] for e in acc.journal("position_adopted")] == ["0.02"]
        adopted = acc.store.position("eth-bot")
        assert adopted is not None and adopted.qty == Decimal("0.05")
        assert adopted.entry_price == Decimal(2500) and adopted.symbol == ETH

    story(body, open_store)


def test_a_position_the_store_already_knows_is_no_difference(open_store: StoreOpener) -> None:
    async def body(acc: Account) -> None:
        await acc.paper.submit_order(order("tcaaaa-00000007", side=Side.SELL, qty="0.05"))
        held = (await acc.paper.fetch_positions(ETH))[0]
        acc.store.save_position("eth-bot", replace(held, mark_price=Decimal(1)))
        assert await acc.reconcile() == []
        assert acc.journal("position_adopted") == []
        refreshed = acc.store.position("eth-bot")
        assert refreshed is not None and refreshed.mark_price == Decimal(2500), "saved afresh"

    story(body, open_store)


def test_a_position_closed_while_the_daemon_was_down_is_zeroed_in_the_store(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        acc.store.save_position(
            "eth-bot",
            Position("paper", ETH, Decimal("0.05"), Decimal(2400), Decimal(2450), 3),
        )
        acc.store.save_position(  # a second bot of this account, on BTC: a whole 1 BTC
            "btc-bot", Position("paper", BTC, Decimal(1), Decimal(90_000), Decimal(90_000), 3)
        )
        differences = await reconcile_account(
            acc.paper,
            acc.store,
            {ETH: "eth-bot", BTC: "btc-bot"}.get,
            {ETH: "eth-bot", BTC: "btc-bot"},
        )  # the paper account holds nothing
        btc = acc.store.position("btc-bot")
        assert btc is not None and btc.qty == 0, "a position of exactly 1 is zeroed too"
        differences = [d for d in differences if d["bot"] == "eth-bot"]
        assert differences == [
            {
                "kind": "position_adopted",
                "account": "paper",
                "bot": "eth-bot",
                "symbol": ETH,
                "store_qty": "0.05",
                "exchange_qty": "0",
            }
        ]
        zeroed = acc.store.position("eth-bot")
        assert zeroed is not None
        assert (zeroed.qty, zeroed.entry_price, zeroed.symbol) == (0, 0, ETH)
        assert zeroed.mark_price == Decimal(2450) and zeroed.leverage == 3

    story(body, open_store)


def test_a_bot_that_never_held_anything_gets_no_position_row(open_store: StoreOpener) -> None:
    async def body(acc: Account) -> None:
        assert await acc.reconcile() == []
        assert acc.store.position("eth-bot") is None

    story(body, open_store)


def test_a_flat_position_the_store_knows_as_flat_is_left_as_it_is(open_store: StoreOpener) -> None:
    async def body(acc: Account) -> None:
        flat = Position("paper", ETH, Decimal(0), Decimal(0), Decimal(2450), 3)
        acc.store.save_position("eth-bot", flat)
        assert await acc.reconcile() == []
        assert acc.store.position("eth-bot") == flat

    story(body, open_store)


def test_every_bot_symbol_of_the_account_is_reconciled(open_store: StoreOpener) -> None:
    bots = {ETH: "eth-bot", BTC: "btc-bot"}

    async def body(acc: Account) -> None:
        await acc.paper.submit_order(
            order("tcdead-00000011", symbol=BTC, qty="0.002", price="90000")
        )
        await acc.paper.submit_order(order("tcdead-00000012", price="2000"))
        for symbol, bot in bots.items():
            acc.store.save_position(
                bot, Position("paper", symbol, Decimal(1), Decimal(1), Decimal(1), 3)
            )
        differences = await reconcile_account(acc.paper, acc.store, bots.get, bots)
        assert [(d["kind"], d["bot"]) for d in differences] == [
            ("unknown_order_cancelled", "btc-bot"),
            ("unknown_order_cancelled", "eth-bot"),
            ("position_adopted", "btc-bot"),
            ("position_adopted", "eth-bot"),
        ]
        assert await acc.paper.fetch_open_orders() == []

    story(body, open_store)
