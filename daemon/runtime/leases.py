"""The lease keeper: this node's side of the fleet, one asyncio task.

Every `ttl/5` seconds, or at once when NOTIFY says a desired state changed, it
heartbeats the node and renews the leases it holds; a lease that did not renew is lost
and its bot's runner stops at once. Bots held here whose desired state is no longer
"running" are stopped and their lease given up. Then it takes at most one free bot, if
this node is the least-loaded live node allowed to hold it (domain/fleet.py), and the
supervisor launches it (reconciled as on any start); a bot whose launch fails is handed
back at once, to be taken again, rather than held where it does not run.

A node cut off from the database stops its bots before their leases can expire: it
counts from the start of its last good renewal (the database's expiry is later than
that) and stops them `ttl/3` before. The database's fence refuses their intents anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from daemon.domain.errors import StorageError
from daemon.domain.fleet import FleetView, LeaseBook, bot_to_take
from daemon.ports import Clock


class FleetTable(Protocol):
    """The fleet's shared tables (postgres_leases.py)."""

    node: str
    ttl: timedelta

    async def beat(self, held: dict[str, int]) -> dict[str, int]: ...
    async def view(self) -> FleetView: ...
    async def acquire(self, bot: str) -> int | None: ...
    async def release(self, bot: str, epoch: int) -> None: ...
    def watch(self) -> None: ...
    async def changed(self, timeout_s: float) -> bool: ...
    async def close(self) -> None: ...


class BotHost(Protocol):
    """Where this node's bots run (runtime/supervisor.py): what the keeper starts and stops."""

    def adopt(self, name: str) -> None: ...
    async def give_up(self, name: str, reason: str) -> None: ...


class LeaseKeeper:
    def __init__(
        self,
        table: FleetTable,
        book: LeaseBook,
        supervisor: BotHost,
        allowed: Mapping[str, tuple[str, ...] | None],
        clock: Clock,
        on_adopt: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._on_adopt = on_adopt
        self.table = table
        self.book = book
        self.node = book.node
        self._supervisor = supervisor
        self._allowed = dict(allowed)
        self._clock = clock
        ttl_s = table.ttl.total_seconds()
        self.renew_every_s = ttl_s / 5
        self._margin_s = ttl_s / 3
        self._valid_until: float | None = None  # monotonic: our leases surely live until then
        self.view: FleetView | None = None
        self._log = structlog.get_logger().bind(node=self.node)
        self._failing_since: float | None = None

    async def run(self) -> None:
        self.table.watch()
        while True:
            try:
                await self.tick()
            except Exception as e:  # the keeper must outlive any one failure
                self._log.error("lease_keeper_failed", error=f"{type(e).__name__}: {e}", exc_info=e)
                await self._stop_before_expiry()
            await self.table.changed(self._next_wait())

    def _next_wait(self) -> float:
        wait = self.renew_every_s
        if self.book.held() and self._valid_until is not None:
            wait = min(wait, self._valid_until - self._margin_s - self._clock.monotonic())
        return max(0.05, wait)

    async def tick(self) -> None:
        started = self._clock.monotonic()
        try:
            held = self.book.held()
            still = await self.table.beat(held)
            self._valid_until = started + self.table.ttl.total_seconds()
            for bot in sorted(set(held) - set(still)):
                await self._lose(bot, "the lease expired or another node took it over")
            view = await self.table.view()
            self.view = view
            if self._failing_since is not None:
                self._log.info("store_reachable_again")
                self._failing_since = None
            await self._give_up_unwanted(view)
            await self._take_one(view)
        except StorageError as e:
            if self._failing_since is None:
                self._failing_since = started
                self._log.error("lease_renewal_failed", error=str(e))
        await self._stop_before_expiry()

    async def _stop_before_expiry(self) -> None:
        if not self.book.held() or self._valid_until is None:
            return
        if self._clock.monotonic() < self._valid_until - self._margin_s:
            return
        for bot in sorted(self.book.held()):
            await self._lose(
                bot, "no lease renewal reached the store; stopping before the lease expires"
            )

    async def _lose(self, bot: str, reason: str) -> None:
        self.book.drop(bot)
        self._log.warning("lease_lost", bot=bot, reason=reason)
        try:
            await self._supervisor.give_up(bot, reason)
        except Exception as e:  # the next bot must still be stopped
            self._log.error("bot_release_failed", bot=bot, error=f"{type(e).__name__}: {e}")

    async def _give_up_unwanted(self, view: FleetView) -> None:
        """Stopped or halted anywhere in the fleet: stop here and free the lease."""
        for bot, epoch in sorted(self.book.held().items()):
            if bot in view.wanted and bot in self._allowed:
                continue
            self.book.drop(bot)
            await self._supervisor.give_up(bot, "its desired state is no longer running")
            await self.table.release(bot, epoch)
            self._log.info("lease_released", bot=bot)

    async def _take_one(self, view: FleetView) -> None:
        bot = bot_to_take(self.node, view, self._allowed, self.table.ttl)
        if bot is None:
            return
        epoch = await self.table.acquire(bot)
        if epoch is None:
            return  # another node was quicker
        self.book.hold(bot, epoch)  # safe until _valid_until: this round's renewal set it
        self._log.info("lease_taken", bot=bot, epoch=epoch)
        try:
            if self._on_adopt is not None:
                await self._on_adopt(bot)
            self._supervisor.adopt(bot)
        except Exception:
            # Not launched: a lease kept here would be renewed for good while the bot runs
            # nowhere (and no orphan shows). Hand it back; it is taken again next round.
            self.book.drop(bot)
            with contextlib.suppress(StorageError):
                await self.table.release(bot, epoch)
            raise

    async def shutdown(self) -> None:
        """A clean stop gives every lease up, so other nodes take the bots at once."""
        for bot, epoch in sorted(self.book.held().items()):
            self.book.drop(bot)
            with contextlib.suppress(StorageError):
                await self.table.release(bot, epoch)
        await self.table.close()

    # -- what status shows ---------------------------------------------------------

    async def refresh(self) -> None:
        """A fresh view for status and health (the last tick's may be ttl/5 old); the last
        one stands when the store does not answer."""
        with contextlib.suppress(StorageError):
            self.view = await self.table.view()

    def lease_of(self, bot: str) -> dict[str, Any]:
        view = self.view
        lease = None if view is None else view.leases.get(bot)
        live = lease is not None and view is not None and lease.live(view.now)
        return {
            "node": lease.holder if live and lease is not None else None,
            "lease_expires_at": _iso(lease.expires_at) if live and lease is not None else None,
            "lease_epoch": lease.epoch if lease is not None else None,
        }

    def nodes(self) -> list[dict[str, Any]]:
        view = self.view
        if view is None:
            return []
        live = view.live_nodes(self.table.ttl)
        load = {n: 0 for n in view.heartbeats}
        for lease in view.leases.values():
            if lease.live(view.now) and lease.holder in load:
                load[lease.holder] += 1
        return [
            {
                "node": node,
                "heartbeat_at": _iso(beat),
                "live": node in live,
                "bots": load[node],
            }
            for node, beat in sorted(view.heartbeats.items())
        ]

    def orphans(self) -> list[str]:
        """Bots that should run but have no live holder (for `health --fleet`)."""
        view = self.view
        if view is None:
            return sorted(b for b in self._allowed)
        return sorted(b for b in view.wanted if b in self._allowed and view.holder(b) is None)

    def holds(self, bot: str) -> bool:
        return self.book.epoch(bot) is not None


def _iso(value: datetime) -> str:
    return value.isoformat()
