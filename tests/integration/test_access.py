"""Who may do what on the control socket: the kernel's word on the peer (SO_PEERCRED),
checked with real other uids (the suite runs as root; a uid needs no passwd entry)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.daemon_process import DaemonProcess
from tradectl.client import ControlClient, DaemonError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other uids")

MakeDaemon = Callable[..., DaemonProcess]
OWNER, STRANGER, ADMIN, ADMIN_GID = 42001, 42002, 42003, 42100


def as_user(
    daemon: DaemonProcess, uid: int, cmd: str, groups: tuple[int, ...] = (), **args: Any
) -> dict[str, Any]:
    """One request from a child process that really runs as `uid` (primary group 0, so the
    0660 socket lets it in). Forked, not exec'd: this machine's Python lives under /root."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the user, ask, report, vanish
        try:
            os.setgroups(list(groups))
            os.setgid(0)
            os.setuid(uid)
            try:
                outcome = {"ok": True, "result": ControlClient(daemon.socket).call(cmd, **args)}
            except DaemonError as e:
                outcome = {"ok": False, "code": e.code, "message": e.message}
            os.write(write_end, json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_owners_act_on_their_bots_others_only_read_admins_do_anything(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon()
    text = daemon.config.read_text()
    text = text.replace(
        "leverage = 3\n\n[bots.eth-ema.params]",
        f"leverage = 3\nowner = {OWNER}\n\n[bots.eth-ema.params]",
    )
    text = text.replace('log_level = "info"', f'log_level = "info"\nadmin_group = {ADMIN_GID}')
    daemon.config.write_text(text)
    os.chmod(daemon.socket.parent, 0o755)  # the folder is the admin's choice; the socket stays 0660
    daemon.start()

    status = as_user(daemon, STRANGER, "status")
    assert status["ok"] and status["result"]["bots"][0]["name"] == "eth-ema"
    refused = as_user(daemon, STRANGER, "stop", bot="eth-ema")
    assert refused["code"] == "forbidden" and f"uid {OWNER}" in refused["message"]
    assert as_user(daemon, STRANGER, "stop", all=True)["code"] == "forbidden"
    assert as_user(daemon, STRANGER, "flatten", bot="eth-ema")["code"] == "forbidden"
    assert daemon.bot("eth-ema")["state"] in ("starting", "running"), "a refusal changes nothing"

    assert as_user(daemon, OWNER, "stop", bot="eth-ema")["ok"]
    assert daemon.bot("eth-ema")["state"] == "stopped"
    assert as_user(daemon, OWNER, "start", bot="eth-ema")["ok"]
    assert as_user(daemon, OWNER, "stop", all=True)["code"] == "forbidden", "--all is for admins"

    assert as_user(daemon, ADMIN, "stop", groups=(ADMIN_GID,), all=True)["ok"]
    assert "control_forbidden" in daemon.log()


def test_the_first_to_start_an_unowned_bot_owns_it(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    daemon.config.write_text(
        daemon.config.read_text().replace("autostart = true", "autostart = false")
    )
    os.chmod(daemon.socket.parent, 0o755)
    daemon.start()
    assert as_user(daemon, OWNER, "start", bot="eth-ema")["ok"]
    assert as_user(daemon, STRANGER, "stop", bot="eth-ema")["code"] == "forbidden"
    assert as_user(daemon, OWNER, "stop", bot="eth-ema")["ok"]


def test_a_stranger_may_not_stop_flatten_or_resume_a_bot_nobody_owns_yet(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon()
    daemon.config.write_text(
        daemon.config.read_text().replace("autostart = true", "autostart = false")
    )
    os.chmod(daemon.socket.parent, 0o755)
    daemon.start()
    for cmd in ("stop", "flatten", "resume"):
        refused = as_user(daemon, STRANGER, cmd, bot="eth-ema")
        assert refused["code"] == "forbidden", (cmd, refused)
    assert as_user(daemon, STRANGER, "flatten", all=True)["code"] == "forbidden"
    assert daemon.bot("eth-ema")["state"] == "stopped", "a refusal changes nothing"
    assert as_user(daemon, STRANGER, "status")["ok"], "reading stays open to everyone"


def test_an_owner_with_a_uid_above_two_to_the_31_is_recognised(make_daemon: MakeDaemon) -> None:
    """uid_t is unsigned: a uid of 3e9 (LDAP and container ranges) must not read as negative."""
    high = 3_000_000_000
    daemon = make_daemon()
    text = daemon.config.read_text().replace(
        "leverage = 3\n\n[bots.eth-ema.params]",
        f"leverage = 3\nowner = {high}\n\n[bots.eth-ema.params]",
    )
    daemon.config.write_text(text)
    os.chmod(daemon.socket.parent, 0o755)
    daemon.start()
    assert as_user(daemon, STRANGER, "stop", bot="eth-ema")["code"] == "forbidden"
    stopped = as_user(daemon, high, "stop", bot="eth-ema")
    assert stopped["ok"], stopped
    assert daemon.bot("eth-ema")["state"] == "stopped"
