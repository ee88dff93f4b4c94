"""Leases, heartbeats and LISTEN/NOTIFY on PostgreSQL, through asyncio connections.

Two connections of its own, apart from the store's pool: one for the lease statements,
one that only LISTENs, so a holder wakes within a round trip of a desired-state change
written by any node. Every statement runs under `asyncio.wait_for`; a failure or a
timeout closes the connection (the next call reconnects) and raises StoreError, so the
keeper can count how long it has gone without a renewal.

All times are the database's: a lease expires at `now() + ttl` of the transaction that
took or renewed it, and the fence trigger compares with the database's clock too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import psycopg

import tradectl
from daemon.adapters.postgres_store import NOTIFY_CHANNEL, StoreError
from daemon.adapters.postgres_url import StoreTarget
from daemon.domain.fleet import FleetView, Lease

T = TypeVar("T")
LISTEN_RETRY_S = 1.0


class PostgresLeases:
    """The fleet's tables for one node: heartbeat, take, renew, release, watch."""

    def __init__(self, target: StoreTarget, node: str, ttl_s: float) -> None:
        self.node = node
        self.ttl = timedelta(seconds=ttl_s)
        self._target = target
        # A statement may take at most a third of the lease: two tries fit in one lease.
        self._timeout_s = max(0.5, min(target.timeout_s, ttl_s / 3))
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._changed = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._target.conninfo,
                autocommit=True,
                **self._target.connect_kwargs(application_name=f"tradectl-lease:{self.node}"),
            )
        return self._conn

    async def _bounded(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        async def one_at_a_time() -> T:
            async with self._lock:  # the keeper and a status request share the connection
                return await work()

        try:
            return await asyncio.wait_for(one_at_a_time(), self._timeout_s)
        except (psycopg.Error, OSError, TimeoutError) as e:
            await self._drop()
            reason = "timed out" if isinstance(e, TimeoutError) else str(e).strip().split("\n")[0]
            raise StoreError(f"{self._target}: {what}: {reason}") from None

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 1.0)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self._drop()

    # -- the fleet's statements --------------------------------------------------

    async def beat(self, held: dict[str, int]) -> dict[str, int]:
        """Heartbeat this node and renew the leases it holds at the epochs it holds them;
        return those that still stand (an expired lease is not renewed: it is gone)."""

        async def work() -> dict[str, int]:
            conn = await self._connection()
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO nodes (node, heartbeat_at, started_at, pid, version) "
                    "VALUES (%s, now(), now(), %s, %s) ON CONFLICT (node) DO UPDATE SET "
                    "heartbeat_at = now(), pid = excluded.pid, version = excluded.version",
                    (self.node, os.getpid(), tradectl.__version__),
                )
                if not held:
                    return {}
                cur = await conn.execute(
                    "UPDATE leases SET expires_at = now() + %s WHERE holder = %s "
                    "AND bot = ANY(%s) AND expires_at > now() RETURNING bot, epoch",
                    (self.ttl, self.node, list(held)),
                )
                rows = await cur.fetchall()
            return {bot: int(epoch) for bot, epoch in rows if held.get(bot) == int(epoch)}

        return await self._bounded("lease renewal", work)

    async def view(self) -> FleetView:
        async def work() -> FleetView:
            conn = await self._connection()
            async with conn.transaction():
                now_row = await (await conn.execute("SELECT now()")).fetchone()
                beats = await (
                    await conn.execute("SELECT node, heartbeat_at FROM nodes")
                ).fetchall()
                leases = await (
                    await conn.execute("SELECT bot, holder, epoch, expires_at FROM leases")
                ).fetchall()
                wanted = await (
                    await conn.execute("SELECT name FROM bots WHERE desired_state = 'running'")
                ).fetchall()
            assert now_row is not None
            return FleetView(
                now=now_row[0],
                heartbeats={node: beat for node, beat in beats},
                leases={b: Lease(b, h, int(e), x) for b, h, e, x in leases},
                wanted=frozenset(name for (name,) in wanted),
            )

        return await self._bounded("fleet view", work)

    async def acquire(self, bot: str) -> int | None:
        """Take the bot's lease if nobody holds a live one: a new epoch, or None."""

        async def work() -> int | None:
            conn = await self._connection()
            cur = await conn.execute(
                "INSERT INTO leases (bot, holder, epoch, expires_at, acquired_at) "
                "VALUES (%s, %s, 1, now() + %s, now()) ON CONFLICT (bot) DO UPDATE SET "
                "holder = excluded.holder, epoch = leases.epoch + 1, "
                "expires_at = excluded.expires_at, acquired_at = excluded.acquired_at "
                "WHERE leases.holder IS NULL OR leases.expires_at <= now() RETURNING epoch",
                (bot, self.node, self.ttl),
            )
            row = await cur.fetchone()
            return None if row is None else int(row[0])

        return await self._bounded("lease take-over", work)

    async def release(self, bot: str, epoch: int) -> None:
        """Give the lease up now (stopped, halted, shutting down): another node may take
        it at once instead of after its expiry."""

        async def work() -> None:
            conn = await self._connection()
            await conn.execute(
                "UPDATE leases SET holder = NULL, expires_at = now() "
                "WHERE bot = %s AND holder = %s AND epoch = %s",
                (bot, self.node, epoch),
            )

        await self._bounded("lease release", work)

    # -- LISTEN/NOTIFY --------------------------------------------------------------

    def watch(self) -> None:
        """Start listening for desired-state changes (NOTIFY from set_desired_state)."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="fleet-listen")

    async def changed(self, timeout_s: float) -> bool:
        """Wait until a desired state changed somewhere in the fleet, or `timeout_s`."""
        try:
            await asyncio.wait_for(self._changed.wait(), max(0.0, timeout_s))
        except TimeoutError:
            return False
        self._changed.clear()
        return True

    async def _listen(self) -> None:
        while True:
            try:
                conn = await asyncio.wait_for(
                    psycopg.AsyncConnection.connect(
                        self._target.conninfo,
                        autocommit=True,
                        **self._target.connect_kwargs(
                            application_name=f"tradectl-listen:{self.node}"
                        ),
                    ),
                    self._timeout_s * 2,
                )
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._changed.set()  # anything missed while not listening
                    async for _ in conn.notifies():
                        self._changed.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # the keeper's own calls report the store being away
                await asyncio.sleep(LISTEN_RETRY_S)
