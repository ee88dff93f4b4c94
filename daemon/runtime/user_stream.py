"""An account's user-data stream: fills and order updates recorded as they happen.

Without it a fill between two candles (a resting order, a liquidation, a trade placed by
hand) is learnt only at the next candle's REST poll. The stream (ccxt.pro ``watch_my_trades``
and ``watch_orders``; ccxt keeps Binance's listen key alive and logs in to Bitget's private
websocket) records them at once. REST stays:
the runner still reads fills on every candle (fill ids make a second recording harmless),
and after the stream fails, the gap is read by REST before it reconnects.

Recording from here and from the runner is safe: each write is one SQLite transaction on the
one event loop, fills are recorded at most once by id, and an order's status is only moved
to what the exchange reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import structlog

from daemon.domain.errors import ExchangeError
from daemon.domain.models import Fill, Order
from daemon.ports import ExchangeGateway, StateStore
from daemon.runtime.fills import record_new_fills

RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0


class UserDataSource(ExchangeGateway, Protocol):
    async def watch_fills(self) -> list[Fill]: ...
    async def watch_order_updates(self) -> list[Order]: ...


class UserStream:
    def __init__(
        self,
        gateway: UserDataSource,
        store: StateStore,
        bot_symbols: Mapping[str, str],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`bot_symbols`: symbol -> the bot trading it on this account (owner of fills and
        funding no order of ours explains: a liquidation, a trade placed by hand)."""
        self._gateway = gateway
        self._store = store
        self._bot_symbols = dict(bot_symbols)
        self._sleep = sleep
        self.fills_recorded = 0
        self.connected = False
        self.last_error: str | None = None  # why the stream is down, until it is up again
        self.log = structlog.get_logger().bind(account=gateway.account)

    async def run(self) -> None:
        await asyncio.gather(self._watch_fills(), self._watch_orders())

    async def _watch_fills(self) -> None:
        delay = RECONNECT_FIRST_S
        gap = False
        while True:
            try:
                if gap:
                    await self._fill_gap()
                    gap = False
                fills = await self._gateway.watch_fills()
            except ExchangeError as e:
                self.connected = False
                self.last_error = str(e)[:300]
                gap = True
                self.log.warning("user_stream_failed", error=self.last_error, retry_in_s=delay)
                await self._sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            if not self.connected:
                self.connected = True
                self.last_error = None
                self.log.info("user_stream_connected")
            delay = RECONNECT_FIRST_S
            for fill in fills:
                self._record(fill)

    async def _watch_orders(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            try:
                orders = await self._gateway.watch_order_updates()
            except ExchangeError:
                await self._sleep(delay)  # the fills loop says why and fills the gap
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_FIRST_S
            for order in orders:
                known = self._store.order(order.client_order_id)
                if known is None or known.status.is_terminal:
                    continue
                if known.status != order.status or known.filled_qty != order.filled_qty:
                    self._store.update_order(order.with_status(order.status, bot=known.bot))

    def _record(self, fill: Fill) -> None:
        order = self._store.order(fill.client_order_id)
        owner = order.bot if order is not None else self._bot_symbols.get(fill.symbol)
        if self._store.record_fill(fill, owner):
            self.fills_recorded += 1
            self.log.info(
                "order_filled",
                source="user_stream",
                bot=owner,
                cid=fill.client_order_id,
                kind=fill.kind,
                side=fill.side.value,
                qty=str(fill.qty),
                price=str(fill.price),
            )

    async def _fill_gap(self) -> None:
        """What happened while the stream was down, by REST."""
        for symbol, bot in sorted(self._bot_symbols.items()):
            await record_new_fills(self._gateway, self._store, symbol, bot, funding_owner=bot)
