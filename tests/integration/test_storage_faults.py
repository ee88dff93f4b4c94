"""Messages, not tracebacks: a damaged store, a state folder that cannot be written or made,
and a disk that stops taking writes each end in one line naming the path, with the
documented exit code (74), for the daemon and for the emergency flatten alike."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.integration.daemon_process import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]
EXIT_STORAGE = 74
PAGE = 4096


def tradectl(
    daemon: DaemonProcess, *args: str, prefix: tuple[str, ...] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tradectl.cli", *args],
        env={**daemon.env, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=daemon.config.parent,
    )


def a_message(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    for word in words:
        assert word in result.stderr, output


def a_store_that_lived(make_daemon: MakeDaemon) -> DaemonProcess:
    daemon = make_daemon().start()
    daemon.stop()
    return daemon


def damage(store: Path, tables: str | None) -> None:
    """Overwrite pages with garbage: every page but the header's, or the pages at the root
    of the named table and its indexes (so the store opens, and breaks when that is read)."""
    if tables is None:
        pages = range(1, store.stat().st_size // PAGE)
    else:
        db = sqlite3.connect(store)
        pages = [
            root - 1
            for (root,) in db.execute(
                "SELECT rootpage FROM sqlite_master WHERE tbl_name = ? AND rootpage > 0",
                (tables,),
            )
        ]
        db.close()
    with store.open("r+b") as f:
        for page in pages:
            f.seek(page * PAGE)
            f.write(os.urandom(PAGE))


@pytest.mark.sqlite_only("garbage written over the SQLite file's pages")
@pytest.mark.parametrize("where", ["every_page", "fills", "bots"])
def test_a_damaged_store_is_named_not_a_traceback(make_daemon: MakeDaemon, where: str) -> None:
    daemon = a_store_that_lived(make_daemon)
    store = daemon.state_dir / "state.db"
    damage(store, None if where == "every_page" else where)
    result = tradectl(daemon, "daemon")
    a_message(result, EXIT_STORAGE, f"state store {store}", "malformed")
    direct = tradectl(daemon, "flatten", "--all", "--yes", "--direct")
    assert direct.returncode in (EXIT_STORAGE, 1), direct.stdout + direct.stderr
    assert "Traceback" not in direct.stdout + direct.stderr


@pytest.mark.parametrize("where", ["under_a_file", "proc", "sys"])
def test_a_state_folder_that_cannot_be_made_is_named(
    make_daemon: MakeDaemon, tmp_path: Path, where: str
) -> None:
    daemon = make_daemon()
    if where == "under_a_file":
        (tmp_path / "a-file").write_text("not a folder\n")
        folder = tmp_path / "a-file" / "state"
    else:
        folder = Path(f"/{where}/tradectl-state")
    for args in (("daemon",), ("flatten", "--all", "--yes", "--direct")):
        result = tradectl(daemon, *args, TRADECTL_STATE_DIR=str(folder))
        a_message(result, EXIT_STORAGE, f"state folder {folder}")


def private_mount(folder: Path, options: str) -> tuple[str, ...]:
    """A command prefix: run in a mount namespace of its own, with a tmpfs on `folder`
    (gone with the process; nothing else on the host sees it)."""
    mount = f"mount -t tmpfs -o {options},mode=0750 tmpfs {folder}"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount here ({mount}): {probe.stderr.decode().strip()}")
    return ("unshare", "-m", "sh", "-c", f'{mount} && exec "$@"', "-")


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount needs root")
def test_a_read_only_state_folder_is_named_for_the_daemon_and_the_emergency_flatten(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon()
    daemon.state_dir.mkdir(mode=0o750)
    prefix = private_mount(daemon.state_dir, "ro")
    a_message(
        tradectl(daemon, "daemon", prefix=prefix), EXIT_STORAGE, f"{daemon.state_dir}", "Read-only"
    )
    direct = tradectl(daemon, "flatten", "--all", "--yes", "--direct", prefix=prefix)
    a_message(direct, EXIT_STORAGE, f"{daemon.state_dir}", "Read-only")


@pytest.mark.skipif(os.geteuid() != 0, reason="a private mount needs root")
@pytest.mark.sqlite_only("the SQLite file fills the state folder's disk, not the server's")
def test_a_disk_that_fills_up_before_shutdown_ends_in_a_message(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(speed=0)  # flat out: the store grows fast
    daemon.state_dir.mkdir(mode=0o750)
    daemon.prefix = private_mount(daemon.state_dir, "size=384k")
    daemon.start()
    eventually(lambda: "database or disk is full" in daemon.log(), timeout=60)
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(30)
    log = daemon.log()
    assert code == EXIT_STORAGE, log[-3000:]  # the shutdown could not save the paper account
    assert f"tradectl: state store {daemon.state_dir / 'state.db'}: database or disk is full" in log
    assert "Traceback" not in log and "daemon_stopped" in log
    assert not daemon.socket.exists(), "the socket goes even when the store fails"
