"""Who may do what on the control socket: one pure decision, the same for every command.

Root, the daemon's own user and members of `[daemon] admin_group` may do anything.
Anyone else who reaches the socket may read (status, positions, orders, health) and
act only on the bots they own; `--all` is for administrators.
"""

from __future__ import annotations

from collections.abc import Collection

from daemon.domain.errors import TradectlError
from tradectl.protocol import Command

READ_ONLY_COMMANDS = frozenset(
    {Command.PING, Command.STATUS, Command.POSITIONS, Command.ORDERS, Command.HEALTH}
)


class Forbidden(TradectlError):
    """The peer may not do this."""


def is_admin(uid: int, groups: Collection[int], *, daemon_uid: int, admin_gid: int | None) -> bool:
    """Root, the daemon's user, or a member of the admin group: served first, allowed all."""
    return uid in (0, daemon_uid) or (admin_gid is not None and admin_gid in groups)


def authorize(
    uid: int,
    groups: Collection[int],
    command: str,
    *,
    daemon_uid: int,
    admin_gid: int | None,
    every: bool = False,
    bot: str | None = None,
    owner: int | None = None,
) -> None:
    """Raise Forbidden unless `uid` may run `command`.

    `bot`: the configured bot the command names (None: none, or not a configured one;
    the handler then answers with the precise error). `owner`: that bot's owner, None
    while nobody owns it (its first start makes the caller the owner).
    """
    if is_admin(uid, groups, daemon_uid=daemon_uid, admin_gid=admin_gid):
        return
    if command in READ_ONLY_COMMANDS:
        return
    if every:
        raise Forbidden(f"{command} --all is for administrators (uid {uid} is not)")
    if bot is None:
        return
    if owner is None:
        if command == Command.START:
            return
        raise Forbidden(f"bot {bot!r} has no owner yet; its first start makes one")
    if owner != uid:
        raise Forbidden(f"bot {bot!r} belongs to uid {owner}; uid {uid} may only read it")
