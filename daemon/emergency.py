"""Flatten without the daemon: for when it is down or does not answer.

The CLI calls this directly against the exchange accounts in the config. Halts are
written to the state store first, so a daemon that comes back keeps those bots
halted. The store takes this safely while a (hung) daemon still holds it: WAL and
a busy timeout. A paper account's state, though, lives in that daemon's memory;
while the daemon holds the state lock, a paper account is refused, not raced.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import structlog

from daemon import alerting
from daemon.adapters.paper_exchange import PaperExchange
from daemon.adapters.postgres_store import PostgresStore
from daemon.adapters.postgres_url import store_target
from daemon.adapters.safe_files import prepare_folder
from daemon.adapters.sqlite_store import SqliteStore
from daemon.adapters.state_lock import StateDirLock
from daemon.adapters.store_identity import STORE_FILE, store_missing_warning
from daemon.alerting import build_alerter, user_name
from daemon.clock import SystemClock
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import Refused, StateLocked
from daemon.domain.fleet import LeaseBook
from daemon.gateways import build_gateways, owner_of
from daemon.ports import StateStore
from daemon.redaction import scrub_value
from daemon.runtime.flatten import Flattener
from tradectl.config import LoadedConfig

DIRECT_REASON = "flatten requested by the operator (direct: {why})"
ALERT_TIMEOUT_S = 5.0


def _open_store(loaded: LoadedConfig) -> SqliteStore | PostgresStore:
    """The daemon's store: the state folder's SQLite file, or the fleet's database (as a
    node of its own name: its flatten intents hold no lease, and wait for none)."""
    if loaded.store_url is None:
        return SqliteStore(loaded.state_dir / STORE_FILE)
    return PostgresStore(store_target(loaded.store_url), LeaseBook(f"{loaded.node}-flatten"))


async def _wait_let_go(store: PostgresStore, bots: list[str], timeout_s: float) -> None:
    """A fleet: the halt reaches live holders by NOTIFY, a hung one's lease runs out; the
    store refuses a flatten's intents for a bot still held, so wait for that."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while held := store.live_holders(bots):
        if asyncio.get_running_loop().time() >= deadline:
            raise Refused(
                "flatten: still held after the halt: "
                + ", ".join(f"{b} by {n}" for b, n in sorted(held.items()))
                + "; its lease has not run out yet, try again"
            )
        await asyncio.sleep(0.2)


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
    store = _open_store(loaded)
    try:
        for name in bots:
            store.set_desired_state(
                name, DesiredState.HALTED, reason=DIRECT_REASON.format(why=why), cause="flatten"
            )
        if isinstance(store, PostgresStore):
            await _wait_let_go(store, bots, timeout_s)
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
            "alerts": await _tell(loaded, store, bots, rows, why),
        }
        return dict(scrub_value(result))
    finally:
        store.close()
        lock.release()


async def _tell(
    loaded: LoadedConfig, store: StateStore, bots: list[str], rows: list[dict[str, Any]], why: str
) -> list[dict[str, Any]]:
    """Send the flatten's alert now (no daemon queues it); the flatten is done whatever
    becomes of it, and a receiver that hangs holds the command at most `ALERT_TIMEOUT_S`."""
    try:
        alerter = build_alerter(loaded, store, timeout_s=ALERT_TIMEOUT_S, retries=1)
        if not len(alerter):
            return []
        asked_by = f"{user_name(os.getuid())} from the command line ({why})"
        alert = alerting.flattened(bots, rows, asked_by=asked_by, direct=True)
        deliveries = await asyncio.wait_for(alerter.deliver(alert), ALERT_TIMEOUT_S + 1)
    except Exception as e:  # never a reason to report the flatten as failed
        structlog.get_logger().error("flatten_alert_failed", error=f"{type(e).__name__}: {e}")
        return [{"target": "*", "ok": False, "status": f"{type(e).__name__}", "attempts": 0}]
    return [alerting.delivery_row(d) for d in deliveries]


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
