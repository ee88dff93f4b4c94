"""Trust on the filesystem is checked, not assumed: the daemon refuses folders another user
controls, keeps its files private, and the CLI takes no word from a server that is not
the daemon. Run as root, acting as other uids (a uid needs no passwd entry)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.integration.daemon_process import DaemonProcess
from tests.store_under_test import StoreUnderTest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other uids")

MakeDaemon = Callable[..., DaemonProcess]
ATTACKER = 42002
EXIT_UNTRUSTED, EXIT_CONFIG = 77, 78


def run_once(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradectl.cli", *args],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=daemon.config.parent,
    )


def test_a_state_folder_another_user_owns_and_anyone_may_write_is_refused(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon()
    daemon.state_dir.mkdir()
    os.chown(daemon.state_dir, ATTACKER, ATTACKER)
    os.chmod(daemon.state_dir, 0o777)
    result = run_once(daemon, "daemon")
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert f"state folder {daemon.state_dir}: belongs to uid {ATTACKER}" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(daemon.state_dir.iterdir()) == [], "nothing is written into it"


def test_a_socket_folder_another_user_owns_is_refused(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    os.chown(daemon.socket.parent, ATTACKER, ATTACKER)
    result = run_once(daemon, "daemon")
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert f"socket folder {daemon.socket.parent}: belongs to uid {ATTACKER}" in result.stderr


def test_the_daemons_files_are_its_own(
    make_daemon: MakeDaemon, daemon_store: StoreUnderTest
) -> None:
    daemon = make_daemon().start()
    # On PostgreSQL the store is a database, not a file here: the lock is all there is.
    names = ["state.db", "state.db-wal", "daemon.lock"] if daemon_store.kind == "sqlite" else []
    names = names or ["daemon.lock"]
    modes = {name: stat.S_IMODE((daemon.state_dir / name).stat().st_mode) for name in names}
    assert modes == dict.fromkeys(names, 0o600)
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o660


@pytest.fixture
def impostor(make_daemon: MakeDaemon) -> Iterator[DaemonProcess]:
    """A user who owns the socket's folder answers on the socket, as if all were well."""
    daemon = make_daemon()
    os.chown(daemon.socket.parent, ATTACKER, ATTACKER)
    pid = os.fork()
    if pid == 0:  # the attacker: never returns into pytest
        try:
            os.setgroups([])
            os.setgid(ATTACKER)
            os.setuid(ATTACKER)
            _serve_lies(daemon.socket)
        finally:
            os._exit(0)
    eventually(daemon.socket.exists, timeout=10)
    yield daemon
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _serve_lies(path: Path) -> None:
    lies = {
        "ping": {"pong": True, "version": "0.1.0"},
        "health": {"healthy": True, "reasons": [], "summary": "healthy; all is well"},
        "flatten": {"halted": [], "symbols": [], "flat": True},
        "status": {"daemon": {"pid": os.getpid()}, "bots": []},
    }
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    while True:
        conn, _ = server.accept()
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if not data:
                continue
            request = json.loads(data)
            reply = {"v": 1, "id": request["id"], "ok": True, "result": lies[request["cmd"]]}
            conn.sendall(json.dumps(reply).encode() + b"\n")


def test_the_cli_refuses_an_impostor_on_the_socket_naming_its_uid(
    impostor: DaemonProcess,
) -> None:
    impostor.state_dir.mkdir(mode=0o750)  # the real daemon's folder: root's
    for args in (("health",), ("status",), ("health", "--grace", "2")):
        result = run_once(impostor, *args)
        assert result.returncode == EXIT_UNTRUSTED, (args, result.stdout, result.stderr)
        assert f"runs as uid {ATTACKER}" in result.stderr
        assert "healthy" not in result.stdout


def test_flatten_does_not_believe_an_impostor_and_flattens_directly_saying_why(
    impostor: DaemonProcess,
) -> None:
    impostor.state_dir.mkdir(mode=0o750)
    result = run_once(impostor, "flatten", "--all", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"runs as uid {ATTACKER}" in result.stderr and "flattening directly" in result.stderr
    assert "flattened directly" in result.stdout and f"uid {ATTACKER}" in result.stdout
    refused = run_once(impostor, "flatten", "--all", "--yes", "--no-direct")
    assert refused.returncode == EXIT_UNTRUSTED, refused.stderr
