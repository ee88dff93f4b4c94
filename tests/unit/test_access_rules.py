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
        (OTHER, (), "schedule", False, OWNER, ALLOWED),  # reading the schedule
        (OWNER, (), "alerts_test", False, OWNER, FORBIDDEN),  # messages people: admins only
        (OTHER, (ADMIN_GID,), "alerts_test", False, OWNER, ALLOWED),
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


def test_a_refusal_says_why_and_names_the_caller_and_owner() -> None:
    def reason(uid: int, command: str, *, every: bool = False, owner: int | None = OWNER) -> str:
        with pytest.raises(Forbidden) as refused:
            authorize(
                uid,
                (),
                command,
                daemon_uid=DAEMON,
                admin_gid=None,
                every=every,
                bot="b1",
                owner=owner,
            )
        return str(refused.value)

    assert (
        reason(OWNER, "stop", every=True)
        == f"stop --all is for administrators (uid {OWNER} is not)"
    )
    assert reason(OWNER, "alerts_test") == f"alerts_test is for administrators (uid {OWNER} is not)"
    assert (
        reason(OTHER, "flatten", owner=None)
        == "bot 'b1' has no owner yet; its first start makes one"
    )
    assert reason(OTHER, "stop") == f"bot 'b1' belongs to uid {OWNER}; uid {OTHER} may only read it"


def test_a_command_for_one_bot_is_not_taken_for_all_of_them() -> None:
    """`every` defaults to False: an owner acting on their own bot is not an `--all`."""
    authorize(OWNER, (), "stop", daemon_uid=DAEMON, admin_gid=None, bot="b1", owner=OWNER)


def test_a_command_naming_no_configured_bot_is_left_to_its_handler() -> None:
    """Nothing to own: the handler answers with the precise error (unknown bot, bad args)."""
    authorize(OTHER, (), "stop", daemon_uid=DAEMON, admin_gid=None, bot=None, owner=OWNER)
    authorize(OTHER, (), "start", daemon_uid=DAEMON, admin_gid=None)
