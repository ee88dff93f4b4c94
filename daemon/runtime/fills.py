"""Fills and funding from the exchange into the store, each exactly once: the one way all
callers do it.

Each history keeps a cursor in the store: the time up to which it was read completely.
The next read starts a little before it (`LOOKBACK`: an execution may become visible a
moment after its own timestamp; ids deduplicate), so a bot idle for ten days, or a daemon
down for three months, reads the whole gap in windows the exchange accepts, and the
cursor moves on every read, even when nothing happened.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.domain.models import Fill
from daemon.ports import ExchangeGateway, StateStore

LOOKBACK = timedelta(minutes=5)
FILL_LOOKBACK = LOOKBACK  # the name older callers know
FUNDING_EVERY = timedelta(minutes=10)  # funding settles every 1-8 h; no need to ask per candle
FILLS, FUNDING = "fills", "funding"


async def record_new_fills(
    gateway: ExchangeGateway,
    store: StateStore,
    symbol: str,
    default_owner: str | None = None,
    *,
    funding_owner: str | None = None,
    force_funding: bool = False,
) -> list[Fill]:
    """Ask the exchange for fills since the cursor; record them; return those that were new.

    A fill belongs to the bot whose order it filled, else to `default_owner`. Funding
    payments on `symbol` are read too (at most every `FUNDING_EVERY`) and belong to
    `funding_owner` (the bot trading the symbol) or, without one, to `default_owner`;
    `force_funding` reads them now (start-up: whatever was paid while the daemon was down).
    Cursors are in the exchange's own time (a simulated market's: its last candle).
    """
    now = _exchange_now(gateway)
    cursor = store.history_cursor(gateway.account, symbol, FILLS)
    if cursor is None:
        cursor = store.last_fill_time(gateway.account, symbol)
    new = []
    for fill in await gateway.fetch_fills(symbol, None if cursor is None else cursor - LOOKBACK):
        order = store.order(fill.client_order_id)
        if store.record_fill(fill, order.bot if order is not None else default_owner):
            new.append(fill)
    store.save_history_cursor(gateway.account, symbol, FILLS, now)
    await record_new_funding(
        gateway, store, symbol, funding_owner or default_owner, force=force_funding
    )
    return new


async def record_new_funding(
    gateway: ExchangeGateway,
    store: StateStore,
    symbol: str,
    owner: str | None,
    *,
    force: bool = False,
) -> int:
    """Record funding payments on `symbol` since the cursor; return how many were new.

    Asked at most every `FUNDING_EVERY` unless `force` (the user-data stream said a
    funding payment just happened)."""
    now = _exchange_now(gateway)
    cursor = store.history_cursor(gateway.account, symbol, FUNDING)
    if cursor is not None and not force and now - cursor < FUNDING_EVERY:
        return 0
    new = 0
    for payment in await gateway.fetch_funding(
        symbol, None if cursor is None else cursor - LOOKBACK
    ):
        new += store.record_funding(payment, owner)
    store.save_history_cursor(gateway.account, symbol, FUNDING, now)
    return new


def _exchange_now(gateway: ExchangeGateway) -> datetime:
    return datetime.fromtimestamp(gateway.exchange_time_ms() / 1000, UTC)
