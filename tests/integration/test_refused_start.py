"""A daemon that refuses to start touches nothing: not another daemon's socket, not a file
that happens to sit where its socket would go, not a folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.daemon_process import DaemonProcess
from tests.store_under_test import current

MakeDaemon = Callable[..., DaemonProcess]
EXIT_FAILED, EXIT_CONFIG = 1, 78


def run_once(daemon: DaemonProcess, **env: str) -> subprocess.CompletedProcess[str]:
    """`tradectl daemon` that is expected to refuse: it must exit by itself, quickly."""
    return subprocess.run(
        [sys.executable, "-m", "tradectl.cli", "daemon"],
        env={**daemon.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=daemon.config.parent,
    )


def test_a_second_daemon_with_its_own_state_folder_leaves_the_first_one_reachable(
    make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    first = make_daemon().start()
    inode = os.lstat(first.socket).st_ino
    second = run_once(first, TRADECTL_STATE_DIR=str(tmp_path / "elsewhere"))
    assert second.returncode == EXIT_FAILED, second.stderr
    assert f"another daemon answers on {first.socket}" in second.stderr
    assert "Traceback" not in second.stderr
    assert os.lstat(first.socket).st_ino == inode, "the first daemon's socket was replaced"
    assert first.cli("health").returncode in (0, 1), "the first daemon must still answer"
    assert first.cli_json("status")["daemon"]["pid"] == first.proc.pid  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["file", "symlink", "dangling_symlink", "folder"])
def test_whatever_sits_at_the_socket_path_is_refused_and_left_as_it_was(
    make_daemon: MakeDaemon, kind: str
) -> None:
    daemon = make_daemon()
    daemon.socket.parent.mkdir(parents=True, exist_ok=True)
    notes = daemon.socket.parent / "notes.txt"
    notes.write_text("my notes\n")
    if kind == "file":
        daemon.socket.write_text("my notes\n")
    elif kind == "symlink":
        daemon.socket.symlink_to(notes)
    elif kind == "dangling_symlink":
        daemon.socket.symlink_to(daemon.socket.parent / "nothing-here")
    else:
        daemon.socket.mkdir()
    before = os.lstat(daemon.socket)
    result = run_once(daemon)
    assert result.returncode == EXIT_CONFIG, result.stdout + result.stderr
    assert "refusing to replace it" in result.stderr and "Traceback" not in result.stderr
    after = os.lstat(daemon.socket)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert notes.read_text() == "my notes\n"
    assert not current().touched(daemon.state_dir), "a refusal comes before the store"


def test_a_stale_socket_left_by_a_crash_is_replaced(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    daemon.socket.parent.mkdir(parents=True, exist_ok=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(daemon.socket))  # bound, never listening: what a kill -9 leaves
    dead.close()
    daemon.start()
    assert daemon.cli("status").returncode == 0


def test_a_socket_path_too_long_for_unix_sockets_is_a_config_error(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon()
    long_path = daemon.socket.parent / ("x" * 120 + ".sock")
    result = run_once(daemon, TRADECTL_SOCKET=str(long_path))
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "at most 107" in result.stderr and "Traceback" not in result.stderr


def test_a_stopping_daemon_removes_only_its_own_socket(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    daemon.socket.unlink()  # someone else takes the path while it runs
    daemon.socket.write_text("not yours\n")
    daemon.stop()
    assert daemon.socket.read_text() == "not yours\n"
