"""Emergency flatten: cancel every order (resting stops and take-profits included), close
every position reduce-only, verify flat.

Used by halts on a loss limit, by `tradectl flatten` through the daemon, and by the
CLI directly when the daemon is down. Symbols are handled concurrently; exchange
faults are retried with backoff until flat or the deadline; a symbol is reported
flat only after a read-back shows no position and no open order.

A loss limit's flatten is `fenced`: each cancel is written first (cause `flatten`), and
in a fleet a symbol whose bot another node holds now is left to that node (its cancel or
its closing order refused, nothing sent). The operator's flatten is not fenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from daemon.domain.errors import ExchangeError, LeaseLost, NotFound, OrderRejected
from daemon.domain.models import (
    ZERO,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    bot_tag,
    closing_side,
)
from daemon.ports import Clock, ExchangeGateway, StateStore
from daemon.runtime.fills import record_new_fills

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 2.0

OwnerOf = Callable[[str], str | None]  # symbol -> the configured bot trading it on this account


@dataclass(slots=True)
class SymbolFlatten:
    """What a flatten did on one symbol of one account, and whether it is flat now."""

    account: str
    symbol: str
    owner: str | None
    cancelled: list[str] = field(default_factory=list)
    closed_qty: Decimal = ZERO
    remaining_qty: Decimal = ZERO
    remaining_orders: int = 0
    flat: bool = False
    attempts: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            closed_qty=str(self.closed_qty),
            remaining_qty=str(self.remaining_qty),
            known=self.owner is not None,
        )
        return data


class Flattener:
    def __init__(
        self,
        store: StateStore | None,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._log = structlog.get_logger()

    async def flatten(
        self,
        gateway: ExchangeGateway,
        symbols: Iterable[str],
        owner_of: OwnerOf,
        timeout_s: float,
        *,
        whole_account: bool = False,
        fenced: bool = False,
    ) -> list[SymbolFlatten]:
        """Flatten `symbols` on one account; with `whole_account`, also every other symbol
        that holds an order or a position there, whoever placed it. `fenced` (a loss
        limit's): leave a symbol whose bot another node holds to that node."""
        deadline = self._clock.monotonic() + timeout_s
        wanted = set(symbols)
        if whole_account:
            wanted |= await self._discover(gateway, deadline)
        jobs = [
            self._flatten_symbol(gateway, s, owner_of(s), deadline, fenced) for s in sorted(wanted)
        ]
        return list(await asyncio.gather(*jobs))

    async def _discover(self, gateway: ExchangeGateway, deadline: float) -> set[str]:
        """Every symbol with an open order or a position, retried like the rest."""
        delay = BACKOFF_FIRST_S
        while True:
            try:
                orders = await gateway.fetch_open_orders()
                positions = await gateway.fetch_positions()
                return {o.symbol for o in orders} | {p.symbol for p in positions if p.qty}
            except ExchangeError as e:
                self._log.warning("flatten_discovery_failed", account=gateway.account, error=str(e))
                if self._clock.monotonic() + delay > deadline:
                    raise
                await self._sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def _flatten_symbol(
        self,
        gateway: ExchangeGateway,
        symbol: str,
        owner: str | None,
        deadline: float,
        fenced: bool = False,
    ) -> SymbolFlatten:
        report = SymbolFlatten(gateway.account, symbol, owner)
        log = self._log.bind(account=gateway.account, symbol=symbol, bot=owner)
        delay = BACKOFF_FIRST_S
        while True:
            report.attempts += 1
            try:
                await self._one_pass(gateway, symbol, report, fenced)
                orders = await gateway.fetch_open_orders(symbol)
                position = await _position_qty(gateway, symbol)
                report.remaining_orders, report.remaining_qty = len(orders), abs(position)
                self._record_position(gateway.account, symbol, owner, position)
                if not orders and position == 0:
                    report.flat = True
                    if self._store is not None:
                        await record_new_fills(gateway, self._store, symbol, owner)
                    log.info(
                        "symbol_flat",
                        cancelled=len(report.cancelled),
                        closed=str(report.closed_qty),
                    )
                    return report
            except ExchangeError as e:
                report.errors.append(f"{type(e).__name__}: {e}")
                log.warning("flatten_attempt_failed", attempt=report.attempts, error=str(e))
            except LeaseLost as e:
                if not fenced:
                    raise
                report.errors.append(f"left to its holder: {e}")
                log.warning("flatten_left_to_holder", reason=str(e))
                return report
            left = deadline - self._clock.monotonic()
            if left <= 0:
                log.error(
                    "flatten_incomplete",
                    remaining_qty=str(report.remaining_qty),
                    remaining_orders=report.remaining_orders,
                )
                return report
            await self._sleep(min(delay, left))
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _record_position(self, account: str, symbol: str, owner: str | None, qty: Decimal) -> None:
        """The owning bot's position as the read-back found it: what status shows for a
        halted bot, whose runner no longer looks."""
        if self._store is None or owner is None:
            return
        last = self._store.position(owner)
        if last is not None and last.qty == qty:
            return
        entry = last.entry_price if last is not None and qty != 0 else ZERO
        leverage = last.leverage if last is not None else 0
        self._store.save_position(owner, Position(account, symbol, qty, entry, entry, leverage))

    async def _one_pass(
        self, gateway: ExchangeGateway, symbol: str, report: SymbolFlatten, fenced: bool
    ) -> None:
        for order in await gateway.fetch_open_orders(symbol):  # resting stops too
            trigger = order.type.is_trigger
            if fenced and self._store is not None and report.owner is not None:
                self._store.record_cancel(order, report.owner, cause="flatten")
            with contextlib.suppress(NotFound):  # already gone: what we wanted
                await gateway.cancel_order(symbol, order.client_order_id, trigger=trigger)
            if order.client_order_id not in report.cancelled:
                report.cancelled.append(order.client_order_id)
            if self._store is not None and self._store.order(order.client_order_id) is not None:
                cancelled = await gateway.fetch_order(
                    symbol, order.client_order_id, trigger=trigger
                )
                if cancelled is not None:
                    self._store.update_order(cancelled)
        qty = await _position_qty(gateway, symbol)
        if qty == 0:
            return
        intent = OrderIntent(
            bot=report.owner,
            account=gateway.account,
            symbol=symbol,
            client_order_id=flatten_order_id(report.owner or gateway.account),
            side=closing_side(qty),
            type=OrderType.MARKET,
            qty=abs(qty),
            price=None,
            reduce_only=True,  # can never overshoot into a new position, even if sent twice
            created_at=self._clock.now(),
            purpose="flatten",
        )
        if self._store is not None:
            self._store.record_intent(intent)
        try:
            order = await gateway.submit_order(intent)
        except OrderRejected as e:  # never placed, or refused: the next pass tries afresh
            if self._store is not None:
                self._store.update_order(_refused(intent, str(e)))
            raise
        if self._store is not None:
            self._store.update_order(order)
        report.closed_qty += order.filled_qty


def _refused(intent: OrderIntent, reason: str) -> Order:
    return Order(
        account=intent.account,
        symbol=intent.symbol,
        client_order_id=intent.client_order_id,
        side=intent.side,
        type=intent.type,
        qty=intent.qty,
        price=intent.price,
        reduce_only=intent.reduce_only,
        status=OrderStatus.REJECTED,
        bot=intent.bot,
        reason=reason,
    )


def flatten_order_id(owner: str) -> str:
    """Random, not sequential: a flatten order is reduce-only, so a resend cannot overshoot."""
    return f"tcfx{bot_tag(owner)}-{uuid.uuid4().hex[:12]}"


async def _position_qty(gateway: ExchangeGateway, symbol: str) -> Decimal:
    positions = await gateway.fetch_positions(symbol)
    return sum((p.qty for p in positions if p.symbol == symbol), ZERO)
