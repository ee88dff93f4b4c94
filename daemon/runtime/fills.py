"""Fills from the exchange into the store, each exactly once: the one way all callers do it."""

from __future__ import annotations

from datetime import timedelta

from daemon.domain.models import Fill
from daemon.ports import ExchangeGateway, StateStore

FILL_LOOKBACK = timedelta(minutes=5)  # fills may share a timestamp; fill ids deduplicate


async def record_new_fills(
    gateway: ExchangeGateway, store: StateStore, symbol: str, default_owner: str | None = None
) -> list[Fill]:
    """Ask the exchange for fills since the last one recorded; return those that were new.

    A fill belongs to the bot whose order it filled, else to `default_owner`.
    """
    since = store.last_fill_time(gateway.account, symbol)
    new = []
    for fill in await gateway.fetch_fills(symbol, None if since is None else since - FILL_LOOKBACK):
        order = store.order(fill.client_order_id)
        if store.record_fill(fill, order.bot if order is not None else default_owner):
            new.append(fill)
    return new
