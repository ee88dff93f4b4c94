"""Start-up reconciliation of an account: the exchange is the truth, the store learns it.

Runs for every account before READY, the same after a clean stop, a crash or a
kill -9 (crash-only start). The rules for what the store does not know:
- an open order with our client-id prefix (`tc`) that the store has no record of is
  cancelled: no bot can say why it exists, and its bot will decide afresh;
- an open order without our prefix (placed by hand, or by another program) on a
  bot's symbol is left alone and reported (orders on other symbols are not looked
  at here; `flatten --all` finds and cancels them);
- a position on a symbol no bot trades is left alone and reported (`flatten --all`
  closes it); a bot's position that differs from the store's last snapshot is
  adopted from the exchange, and the difference is journalled;
- a bot whose position is gone (its stop or take-profit filled while the daemon was down)
  has its plan cleared and its other protective orders cancelled, running or stopped; a
  running bot's own start-up then finds nothing to place (never a second stop). Each
  cancel is written to the store first; in a fleet the store refuses it while another
  node holds the bot (this node was paused meanwhile): those orders are left to it;
- every order the store still has in flight on this account (an intent committed but
  never confirmed, `pending_submit`, or one it thinks open) is looked up by its client
  id, whatever its bot's desired state: what the exchange knows is recorded, and an
  intent the exchange never saw is rejected ("never reached the exchange"). A stopped
  bot would otherwise leave it pending until it runs again.
Every difference is journalled and listed in `tradectl status`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

import structlog

from daemon.domain.errors import LeaseLost, NotFound
from daemon.domain.models import CLIENT_ORDER_PREFIX, ZERO, OrderStatus
from daemon.domain.protection import PURPOSES
from daemon.ports import ExchangeGateway, StateStore
from daemon.runtime.fills import record_new_fills


async def reconcile_account(
    gateway: ExchangeGateway,
    store: StateStore,
    owner_of: Callable[[str], str | None],
    bot_symbols: Mapping[str, str],
    *,
    in_flight_of: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """`bot_symbols`: symbol -> the bot trading it on this account; `in_flight_of`: the
    bots whose orders in flight are looked up (None: every order of the account; a fleet
    node names the bots it reconciles, the others' belong to their holders)."""
    log = structlog.get_logger().bind(account=gateway.account)
    differences: list[dict[str, Any]] = []

    def report(kind: str, bot: str | None, **data: Any) -> None:
        entry = {"kind": kind, "account": gateway.account, "bot": bot, **data}
        differences.append(entry)
        store.journal(kind, bot, account=gateway.account, **data)
        log.warning(kind, bot=bot, **data)

    # Per bot symbol: our orders only ever live there, and an all-symbol query costs
    # Binance 40x the weight (ccxt then throttles the next call for seconds).
    open_orders = [
        o for symbol in sorted(bot_symbols) for o in await gateway.fetch_open_orders(symbol)
    ]
    for order in open_orders:
        known = store.order(order.client_order_id)
        if known is not None:
            if known.status != order.status or known.filled_qty != order.filled_qty:
                store.update_order(order.with_status(order.status, bot=known.bot))
            continue
        owner = owner_of(order.symbol)
        if order.client_order_id.startswith(CLIENT_ORDER_PREFIX):
            with contextlib.suppress(NotFound):  # gone already: same outcome
                await gateway.cancel_order(
                    order.symbol, order.client_order_id, trigger=order.type.is_trigger
                )
            report(
                "unknown_order_cancelled",
                owner,
                cid=order.client_order_id,
                symbol=order.symbol,
                side=order.side.value,
                qty=str(order.qty),
            )
        else:
            report(
                "foreign_order_seen",
                owner,
                cid=order.client_order_id,
                symbol=order.symbol,
                side=order.side.value,
                qty=str(order.qty),
            )

    await _resolve_in_flight(gateway, store, report, in_flight_of)

    positions = {p.symbol: p for p in await gateway.fetch_positions()}
    for symbol, position in positions.items():
        if owner_of(symbol) is None:
            report("foreign_position_seen", None, symbol=symbol, qty=str(position.qty))
    for symbol, owner in sorted(bot_symbols.items()):
        await record_new_fills(gateway, store, symbol, funding_owner=owner, force_funding=True)
        last = store.position(owner)
        held = positions.get(symbol)
        held_qty = held.qty if held is not None else ZERO
        if last is not None and last.qty != held_qty:
            report(
                "position_adopted",
                owner,
                symbol=symbol,
                store_qty=str(last.qty),
                exchange_qty=str(held_qty),
            )
        if held is not None:
            store.save_position(owner, held)
            continue
        if last is not None and last.qty != 0:
            store.save_position(owner, replace(last, qty=ZERO, entry_price=ZERO))
        if store.plan(owner) is not None:
            store.save_plan(owner, None)
            report("plan_cleared", owner, symbol=symbol, reason="no position on the exchange")
        for order in store.live_orders(owner):
            if order.purpose not in PURPOSES or order.status is OrderStatus.PENDING_SUBMIT:
                continue  # a pending one is resolved by its bot, by client order id
            try:
                store.record_cancel(order, owner, cause="reconcile")
            except LeaseLost as e:  # a fleet: another node took the bot meanwhile
                report("protection_left_to_holder", owner, cid=order.client_order_id, reason=str(e))
                break
            final = None
            with contextlib.suppress(NotFound):
                final = await gateway.cancel_order(
                    symbol, order.client_order_id, trigger=order.type.is_trigger
                )
            if final is None:
                final = order.with_status(OrderStatus.CANCELED, reason="not found on the exchange")
            store.update_order(final.with_status(final.status, bot=owner))
            if final.status is OrderStatus.CANCELED:
                report(
                    "protection_cancelled",
                    owner,
                    cid=order.client_order_id,
                    purpose=order.purpose,
                    reason="the position is gone",
                )
    return differences


async def _resolve_in_flight(
    gateway: ExchangeGateway,
    store: StateStore,
    report: Callable[..., None],
    bots: Collection[str] | None,
) -> None:
    """Every live order of this account in the store (of `bots`, when named), asked for
    by its client id."""
    for order in store.live_orders():
        if order.account != gateway.account or (bots is not None and order.bot not in bots):
            continue
        known = await gateway.fetch_order(
            order.symbol, order.client_order_id, trigger=order.type.is_trigger
        )
        if known is None:
            if order.status is OrderStatus.PENDING_SUBMIT:
                store.update_order(
                    order.with_status(OrderStatus.REJECTED, reason="never reached the exchange")
                )
                report(
                    "pending_intent_rejected",
                    order.bot,
                    cid=order.client_order_id,
                    symbol=order.symbol,
                    reason="never reached the exchange",
                )
            continue
        if known.status != order.status or known.filled_qty != order.filled_qty:
            store.update_order(known.with_status(known.status, bot=order.bot))
            if order.status is OrderStatus.PENDING_SUBMIT:
                report(
                    "pending_intent_resolved",
                    order.bot,
                    cid=order.client_order_id,
                    symbol=order.symbol,
                    status=known.status.value,
                )
