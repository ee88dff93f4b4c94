"""Flatten without the daemon: for when it is down or does not answer.

The CLI calls this directly against the exchange accounts in the config. Halts are
written to the state store first, so a daemon that comes back keeps those bots
halted. The store takes this safely while a (hung) daemon still holds it: WAL and
a busy timeout. A paper account's state, though, lives in that daemon's memory;
while the daemon holds the state lock, a paper account is refused, not raced.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from daemon.adapters.paper_exchange import PaperExchange
from daemon.adapters.safe_files import prepare_folder
from daemon.adapters.sqlite_store import SqliteStore
from daemon.adapters.state_lock import StateDirLock
from daemon.adapters.store_identity import STORE_FILE, store_missing_warning
from daemon.clock import SystemClock
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import StateLocked
from daemon.gateways import build_gateways, owner_of
from daemon.redaction import scrub_value
from daemon.runtime.flatten import Flattener
from tradectl.config import LoadedConfig

DIRECT_REASON = "flatten requested by the operator (direct: {why})"


async def flatten_direct(
    loaded: LoadedConfig,
    bots: list[str],
    *,
    whole_account: bool,
    timeout_s: float,
    why: str = "daemon unreachable",
) -> dict[str, Any]:
    """Halt exactly `bots` (never others: with --all the caller names them all), then
    flatten their symbols, or with `whole_account` every symbol of their accounts."""
    config = loaded.config
    prepare_folder(loaded.state_dir, "state folder")
    lock = StateDirLock(loaded.state_dir)
    holder: str | None = None
    try:
        lock.acquire()
    except StateLocked as e:
        holder = str(e)
    lost = store_missing_warning(loaded.state_dir)
    if lost is not None:
        structlog.get_logger().critical("state_store_missing", problem=lost)
    store = SqliteStore(loaded.state_dir / STORE_FILE)
    try:
        for name in bots:
            store.set_desired_state(
                name, DesiredState.HALTED, reason=DIRECT_REASON.format(why=why), cause="flatten"
            )
        gateways = build_gateways(loaded, store)
        accounts = (
            sorted(gateways) if whole_account else sorted({config.bots[n].account for n in bots})
        )
        flattener = Flattener(store, SystemClock())
        rows: list[dict[str, Any]] = []

        async def one(account: str) -> list[dict[str, Any]]:
            gateway = gateways[account]
            if holder is not None and isinstance(gateway, PaperExchange):
                return [
                    _refused(account, f"paper account state is held by a live daemon: {holder}")
                ]
            await gateway.start()
            try:
                symbols = [config.bots[n].symbol for n in bots if config.bots[n].account == account]
                reports = await flattener.flatten(
                    gateway,
                    symbols,
                    lambda symbol: owner_of(config, account, symbol),
                    timeout_s,
                    whole_account=whole_account,
                )
                return [r.as_dict() for r in reports]
            finally:
                await gateway.close()

        for per_account in await asyncio.gather(*(one(a) for a in accounts)):
            rows.extend(per_account)
        store.journal(
            "flatten_finished",
            None,
            bots=bots,
            direct=True,
            why=why,
            flat=all(r["flat"] for r in rows),
        )
        result = {
            "halted": bots,
            "symbols": rows,
            "flat": all(r["flat"] for r in rows),
            "direct": True,
            "direct_reason": why,
            "store_warning": lost,
        }
        return dict(scrub_value(result))
    finally:
        store.close()
        lock.release()


def _refused(account: str, why: str) -> dict[str, Any]:
    return {
        "account": account,
        "symbol": "*",
        "owner": None,
        "known": False,
        "cancelled": [],
        "closed_qty": "0",
        "remaining_qty": "unknown",
        "remaining_orders": 0,
        "flat": False,
        "attempts": 0,
        "errors": [why],
    }
