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
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import NotFound
from daemon.domain.models import (
    Candle,
    Direction,
    FundingPayment,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TradePlan,
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


class Watched:
    """The paper account, with a note of every lookup and cancel the reconciliation makes
    (and whether it asked for a trigger order), answering as a real exchange does: with
    orders that know no bot, and with the funding `paid` says was settled."""

    def __init__(self, inner: PaperExchange, paid: tuple[FundingPayment, ...] = ()) -> None:
        self.inner = inner
        self.account = inner.account
        self.paid = paid
        self.lookups: list[tuple[str, bool]] = []
        self.cancels: list[tuple[str, bool]] = []

    async def fetch_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        self.lookups.append((client_order_id, trigger))
        found = await self.inner.fetch_order(symbol, client_order_id)
        return None if found is None else replace(found, bot=None)

    async def cancel_order(
        self, symbol: str, client_order_id: str, *, trigger: bool = False
    ) -> Order | None:
        self.cancels.append((client_order_id, trigger))
        found = await self.inner.cancel_order(symbol, client_order_id)
        return None if found is None else replace(found, bot=None)

    async def fetch_funding(
        self, symbol: str, since: datetime | None = None
    ) -> list[FundingPayment]:
        return [p for p in self.paid if p.symbol == symbol]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def protective(cid: str, kind: OrderType, trigger: str, side: Side = Side.SELL) -> OrderIntent:
    purpose = "stop" if kind is OrderType.STOP_MARKET else "take_profit"
    return replace(
        order(cid, side=side, qty="0.02"),
        type=kind,
        reduce_only=True,
        purpose=purpose,
        trigger_price=Decimal(trigger),
    )


async def placed(acc: Account, intent: OrderIntent) -> Order:
    """Sent the way a bot sends it: the intent stored first, then the exchange's answer."""
    acc.store.record_intent(intent)
    sent = await acc.paper.submit_order(intent)
    acc.store.update_order(sent)
    return sent


async def candle(acc: Account, symbol: str, minute: int, low: str, close: str) -> None:
    top = max(Decimal(close), PRICES[symbol])
    bar = Candle(
        symbol,
        "1m",
        T0 + timedelta(minutes=minute),
        top,
        top,
        Decimal(low),
        Decimal(close),
        Decimal(1),
    )
    await acc.paper.on_candles(CandlesClosed(symbol, T0 + timedelta(minutes=minute + 1), (bar,)))


def test_an_intent_that_never_reached_the_exchange_is_rejected_even_for_a_stopped_bot(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        elsewhere = replace(order("tcbbbb-00000001", price="2000"), account="other")
        acc.store.record_intent(elsewhere)  # another account's: not this reconciliation's
        lost = order("tcaaaa-00000020", price="2000")
        acc.store.record_intent(lost)  # committed, then the daemon died before sending it
        sent = order("tcaaaa-00000019", symbol=BTC, qty="0.002", bot="btc-bot")
        acc.store.record_intent(sent)  # a bot of this account no longer configured
        await acc.paper.submit_order(sent)
        gateway = Watched(acc.paper)

        differences = await acc.reconcile(gateway)

        assert differences == [
            {
                "kind": "pending_intent_rejected",
                "account": "paper",
                "bot": "eth-bot",
                "cid": "tcaaaa-00000020",
                "symbol": ETH,
                "reason": "never reached the exchange",
            },
            {
                "kind": "pending_intent_resolved",
                "account": "paper",
                "bot": "btc-bot",
                "cid": "tcaaaa-00000019",
                "symbol": BTC,
                "status": "filled",
            },
            {
                "kind": "foreign_position_seen",
                "account": "paper",
                "bot": None,
                "symbol": BTC,
                "qty": "0.002",
            },
        ]
        assert acc.journal("pending_intent_rejected") == [differences[0]]
        rejected = acc.store.order(lost.client_order_id)
        assert rejected is not None and rejected.status is OrderStatus.REJECTED
        assert rejected.reason == "never reached the exchange"
        assert gateway.lookups == [("tcaaaa-00000020", False), ("tcaaaa-00000019", False)], (
            "only this account's orders, every one of them"
        )
        other = acc.store.order(elsewhere.client_order_id)
        assert other is not None and other.status is OrderStatus.PENDING_SUBMIT

    story(body, open_store)


def test_a_fleet_node_looks_up_only_the_orders_in_flight_of_the_bots_it_reconciles(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        mine = order("tcaaaa-00000040", price="2000")
        acc.store.record_intent(mine)  # committed, then this node died before sending it
        theirs = order("tcaaaa-00000041", symbol=BTC, qty="0.002", price="90000", bot="btc-bot")
        acc.store.record_intent(theirs)  # another node's bot on the same account
        gateway = Watched(acc.paper)

        differences = await reconcile_account(
            gateway, acc.store, owner_of, BOTS, in_flight_of={"eth-bot"}
        )

        assert [(d["kind"], d.get("cid")) for d in differences] == [
            ("pending_intent_rejected", "tcaaaa-00000040")
        ]
        assert gateway.lookups == [("tcaaaa-00000040", False)], "the other bot's is its holder's"
        left = acc.store.order(theirs.client_order_id)
        assert left is not None and left.status is OrderStatus.PENDING_SUBMIT

    story(body, open_store)


def test_an_intent_that_filled_while_the_daemon_was_down_is_resolved_for_its_bot(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        entry = order("tcaaaa-00000021", qty="0.03")
        acc.store.record_intent(entry)
        await acc.paper.submit_order(entry)  # filled at once; the reply was lost

        differences = await acc.reconcile(Watched(acc.paper))

        assert [d for d in differences if d["kind"] == "pending_intent_resolved"] == [
            {
                "kind": "pending_intent_resolved",
                "account": "paper",
                "bot": "eth-bot",
                "cid": "tcaaaa-00000021",
                "symbol": ETH,
                "status": "filled",
            }
        ]
        assert [e["cid"] for e in acc.journal("pending_intent_resolved")] == ["tcaaaa-00000021"]
        filled = acc.store.order(entry.client_order_id)
        assert filled is not None and filled.status is OrderStatus.FILLED
        assert filled.filled_qty == Decimal("0.03")
        [change] = [
            e for e in acc.journal("order_status_changed") if e["cid"] == entry.client_order_id
        ]
        assert (change["bot"], change["from"], change["to"]) == (
            "eth-bot",
            "pending_submit",
            "filled",
        )

    story(body, open_store)


def test_an_order_cancelled_on_the_exchange_while_down_is_learnt_without_a_difference(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        resting = await placed(acc, order("tcaaaa-00000022", price="2000"))
        await acc.paper.cancel_order(ETH, resting.client_order_id)  # by hand, on the website
        unchanged = await placed(acc, order("tcaaaa-00000023", price="2050"))

        assert await acc.reconcile(Watched(acc.paper)) == []

        cancelled = acc.store.order(resting.client_order_id)
        assert cancelled is not None and cancelled.status is OrderStatus.CANCELED
        changes = [
            (e["bot"], e["from"], e["to"])
            for e in acc.journal("order_status_changed")
            if e["cid"] == resting.client_order_id
        ]
        assert changes[-1] == ("eth-bot", "open", "canceled")
        assert [
            e["to"]
            for e in acc.journal("order_status_changed")
            if e["cid"] == unchanged.client_order_id
        ] == ["open"]

    story(body, open_store)


def test_an_order_partly_filled_while_down_is_learnt_though_its_status_is_the_same(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        resting = await placed(acc, order("tcaaaa-00000024", price="2000"))
        acc.store.update_order(resting.with_status(OrderStatus.OPEN, filled_qty=Decimal("0.004")))

        assert await acc.reconcile(Watched(acc.paper)) == []

        known = acc.store.order(resting.client_order_id)
        assert known is not None and known.filled_qty == 0 and known.status is OrderStatus.OPEN

    story(body, open_store)


def test_an_unknown_trigger_order_of_ours_is_cancelled_as_a_trigger_order(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        await acc.paper.submit_order(order("tcaaaa-00000025", qty="0.02"))
        acc.store.record_intent(order("tcaaaa-00000025", qty="0.02"))
        await acc.paper.submit_order(protective("tcdead-00000026", OrderType.STOP_MARKET, "2400"))
        await acc.paper.submit_order(order("tcdead-00000027", price="2000"))
        gateway = Watched(acc.paper)

        await acc.reconcile(gateway)

        assert sorted(gateway.cancels) == [
            ("tcdead-00000026", True),
            ("tcdead-00000027", False),
        ]
        assert await acc.paper.fetch_open_orders() == []

    story(body, open_store)


def test_a_bot_whose_stop_filled_while_down_loses_its_plan_and_its_take_profit(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        await placed(acc, order("tcaaaa-00000030", qty="0.02"))
        acc.store.save_position("eth-bot", (await acc.paper.fetch_positions(ETH))[0])
        waiting = await placed(acc, order("tcaaaa-00000033", price="2000"))  # an entry
        stop = await placed(acc, protective("tcaaaa-00000031", OrderType.STOP_MARKET, "2400"))
        take = await placed(
            acc, protective("tcaaaa-00000032", OrderType.TAKE_PROFIT_MARKET, "2600")
        )
        theirs = replace(
            protective("tcsol-00000001", OrderType.STOP_MARKET, "90"), bot="sol-bot", account="b"
        )
        acc.store.record_intent(theirs)  # another account's bot: its protection is its own
        acc.store.update_order(
            Order(
                "b",
                ETH,
                theirs.client_order_id,
                theirs.side,
                theirs.type,
                theirs.qty,
                None,
                True,
                OrderStatus.OPEN,
                bot="sol-bot",
            )
        )
        acc.store.set_desired_state("eth-bot", DesiredState.STOPPED)  # its row holds the plan
        acc.store.save_plan("eth-bot", TradePlan(Direction.LONG, Decimal(2400), Decimal(2600), T0))
        await candle(acc, ETH, 1, low="2350", close="2360")  # the stop fills: flat
        gateway = Watched(acc.paper)

        differences = await acc.reconcile(gateway)

        assert [d for d in differences if d["kind"] != "position_adopted"] == [
            {
                "kind": "plan_cleared",
                "account": "paper",
                "bot": "eth-bot",
                "symbol": ETH,
                "reason": "no position on the exchange",
            },
            {
                "kind": "protection_cancelled",
                "account": "paper",
                "bot": "eth-bot",
                "cid": "tcaaaa-00000032",
                "purpose": "take_profit",
                "reason": "the position is gone",
            },
        ]
        assert [e["kind"] for e in acc.journal("plan_cleared")] == ["plan_cleared"]
        assert [e["cid"] for e in acc.journal("protection_cancelled")] == ["tcaaaa-00000032"]
        assert acc.store.plan("eth-bot") is None
        assert gateway.cancels == [("tcaaaa-00000032", True)], "the entry is its bot's business"
        assert [
            (e["bot"], e["cid"], e["purpose"], e["cause"])
            for e in acc.journal("order_cancel_requested")
        ] == [("eth-bot", "tcaaaa-00000032", "take_profit", "reconcile")], (
            "written before it is sent, as the reconciliation's (a fleet lets it through "
            "unless another node holds the bot)"
        )
        assert ("tcaaaa-00000031", True) in gateway.lookups
        assert ("tcaaaa-00000033", False) in gateway.lookups
        states = {
            o.client_order_id: o.status
            for o in (acc.store.order(x.client_order_id) for x in (stop, take, waiting))
            if o is not None
        }
        assert states == {
            "tcaaaa-00000031": OrderStatus.FILLED,
            "tcaaaa-00000032": OrderStatus.CANCELED,
            "tcaaaa-00000033": OrderStatus.OPEN,
        }
        changes = acc.journal("order_status_changed")
        assert [e["bot"] for e in changes if e["cid"] == take.client_order_id] == [
            "eth-bot",
            "eth-bot",
        ], "recorded, then cancelled: both for its bot"
        assert [o.client_order_id for o in await acc.paper.fetch_open_orders()] == [
            waiting.client_order_id
        ]
        kept = acc.store.order(theirs.client_order_id)
        assert kept is not None and kept.status is OrderStatus.OPEN

    story(body, open_store)


def test_a_bot_still_holding_does_not_stop_the_next_bot_from_being_zeroed(
    open_store: StoreOpener,
) -> None:
    bots = {ETH: "eth-bot", BTC: "btc-bot"}

    async def body(acc: Account) -> None:
        await placed(acc, order("tcaaaa-00000040", symbol=BTC, qty="0.002", bot="btc-bot"))
        acc.store.save_position(
            "eth-bot", Position("paper", ETH, Decimal("0.05"), Decimal(2400), Decimal(2450), 3)
        )
        differences = await reconcile_account(acc.paper, acc.store, bots.get, bots)
        assert [(d["kind"], d["bot"]) for d in differences] == [("position_adopted", "eth-bot")]
        btc, eth = acc.store.position("btc-bot"), acc.store.position("eth-bot")
        assert btc is not None and btc.qty == Decimal("0.002"), "BTC (sorted first) is held"
        assert eth is not None and eth.qty == 0

    story(body, open_store)


def test_protection_the_exchange_no_longer_has_is_closed_in_the_store_when_flat(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        lost = protective("tcaaaa-00000034", OrderType.STOP_MARKET, "2400")
        acc.store.record_intent(lost)
        acc.store.update_order(  # the store believes it rests; the exchange lost it
            Order(
                "paper",
                ETH,
                lost.client_order_id,
                lost.side,
                lost.type,
                lost.qty,
                None,
                True,
                OrderStatus.OPEN,
                exchange_order_id="paper-99",
                bot="eth-bot",
            )
        )

        differences = await acc.reconcile(VanishingCancels(acc.paper))

        assert differences == [
            {
                "kind": "protection_cancelled",
                "account": "paper",
                "bot": "eth-bot",
                "cid": "tcaaaa-00000034",
                "purpose": "stop",
                "reason": "the position is gone",
            }
        ]
        gone = acc.store.order("tcaaaa-00000034")
        assert gone is not None and gone.status is OrderStatus.CANCELED
        assert gone.reason == "not found on the exchange"
        [change] = acc.journal("order_status_changed")[-1:]
        assert (change["cid"], change["bot"], change["to"]) == (
            "tcaaaa-00000034",
            "eth-bot",
            "canceled",
        )

    story(body, open_store)


def test_funding_settled_while_down_is_recorded_for_the_bot_trading_the_symbol(
    open_store: StoreOpener,
) -> None:
    async def body(acc: Account) -> None:
        now = datetime.fromtimestamp(acc.paper.exchange_time_ms() / 1000, UTC)
        # read a moment before the daemon stopped: without forcing, too soon to ask again
        acc.store.save_history_cursor("paper", ETH, "funding", now)
        paid = FundingPayment("paper", "f-1", ETH, Decimal("-0.42"), now)

        await acc.reconcile(Watched(acc.paper, paid=(paid,)))

        assert acc.store.funding("eth-bot") == [paid]

    story(body, open_store)
