"""Who may do what on the control socket, as a table: (caller, command, bot's owner) ->
allowed or forbidden. The same pure function decides for the daemon."""

from __future__ import annotations

import pytest

from daemon.control.access import Forbidden, authorize, is_admin

DAEMON, ADMIN_GID, OWNER, OTHER = 990, 4200, 1001, 1002
ALLOWED, FORBIDDEN = True, False


@pytest.mark.parametrize(
    ("uid", "groups", "command", "every", "owner", "expected"),
    [
        (0, (), "flatten", True, OWNER, ALLOWED),  # root
        (DAEMON, (), "stop", True, OWNER, ALLOWED),  # the daemon's own user
        (OTHER, (ADMIN_GID,), "stop", True, OWNER, ALLOWED),  # admin group member
        (OTHER, (), "status", False, OWNER, ALLOWED),  # anyone reads
        (OTHER, (), "health", False, OWNER, ALLOWED),
        (OTHER, (), "stop", False, OWNER, FORBIDDEN),  # not theirs
        (OWNER, (), "stop", False, OWNER, ALLOWED),
        (OWNER, (), "flatten", False, OWNER, ALLOWED),
        (OWNER, (), "stop", True, OWNER, FORBIDDEN),  # --all is for administrators
        (OTHER, (), "start", False, None, ALLOWED),  # the first start makes an owner
        (OTHER, (), "stop", False, None, FORBIDDEN),  # nobody owns it yet
        (OTHER, (ADMIN_GID + 1,), "resume", False, OWNER, FORBIDDEN),  # another group
    ],
)
def test_who_may_do_what(
    uid: int,
    groups: tuple[int, ...],
    command: str,
    every: bool,
    owner: int | None,
    expected: bool,
) -> None:
    def decide() -> None:
        authorize(
            uid,
            groups,
            command,
            daemon_uid=DAEMON,
            admin_gid=ADMIN_GID,
            every=every,
            bot="b1",
            owner=owner,
        )

    if expected:
        decide()
    else:
        with pytest.raises(Forbidden):
            decide()


def test_administrators_are_root_the_daemons_user_and_the_admin_group() -> None:
    assert is_admin(0, (), daemon_uid=DAEMON, admin_gid=None)
    assert is_admin(DAEMON, (), daemon_uid=DAEMON, admin_gid=None)
    assert is_admin(OTHER, (ADMIN_GID,), daemon_uid=DAEMON, admin_gid=ADMIN_GID)
    assert not is_admin(OTHER, (ADMIN_GID,), daemon_uid=DAEMON, admin_gid=None)
