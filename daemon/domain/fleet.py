"""A fleet of daemons on one database: which node holds which bot, and who takes a free one.

Pure: the lease keeper (runtime/leases.py) feeds it what the database said, with the
database's clock, and carries out what it decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


class LeaseBook:
    """The leases this node believes it holds: bot -> epoch. The store stamps each order
    intent with the epoch found here; the database decides whether it still stands."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._held: dict[str, int] = {}

    def epoch(self, bot: str) -> int | None:
        return self._held.get(bot)

    def hold(self, bot: str, epoch: int) -> None:
        self._held[bot] = epoch

    def drop(self, bot: str) -> None:
        self._held.pop(bot, None)

    def held(self) -> dict[str, int]:
        return dict(self._held)


@dataclass(frozen=True, slots=True)
class Lease:
    bot: str
    holder: str | None
    epoch: int
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        return self.holder is not None and self.expires_at > now


@dataclass(frozen=True, slots=True)
class FleetView:
    """One read of the fleet's tables, all times by the database's clock."""

    now: datetime
    heartbeats: Mapping[str, datetime]  # node -> last heartbeat
    leases: Mapping[str, Lease]  # bot -> its lease row
    wanted: frozenset[str]  # bots whose desired state is running

    def live_nodes(self, ttl: timedelta) -> set[str]:
        return {n for n, beat in self.heartbeats.items() if beat > self.now - ttl}

    def holder(self, bot: str) -> str | None:
        lease = self.leases.get(bot)
        return lease.holder if lease is not None and lease.live(self.now) else None


def bot_to_take(
    me: str,
    view: FleetView,
    allowed: Mapping[str, tuple[str, ...] | None],
    ttl: timedelta,
) -> str | None:
    """The first free bot (wanted, no live lease) that this node should take: the one for
    which this node is the least-loaded live node allowed to hold it (ties by name), so
    nodes that see the same view agree and bots spread. Held bots never move: a node
    joining takes only free bots, so as few bots move as possible."""
    live = view.live_nodes(ttl) | {me}
    load = dict.fromkeys(live, 0)
    for lease in view.leases.values():
        if lease.live(view.now) and lease.holder in load:
            load[lease.holder] += 1
    for bot in sorted(view.wanted):
        if bot not in allowed or view.holder(bot) is not None:
            continue
        nodes = allowed[bot]
        eligible = sorted(live if nodes is None else live & set(nodes))
        if me not in eligible:
            continue
        if min(eligible, key=lambda n: (load[n], n)) == me:
            return bot
    return None
