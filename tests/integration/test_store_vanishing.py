"""The store cannot vanish silently: deleted under a running daemon it turns unhealthy at
once, naming it; a restart without it refuses to start afresh until told to."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import eventually
from tests.integration.daemon_process import DaemonProcess

MakeDaemon = Callable[..., DaemonProcess]
pytestmark = pytest.mark.sqlite_only(
    "the SQLite file deleted or replaced in the state folder; a PostgreSQL database is not there"
)
BOT = "eth-ema"
EXIT_STORE_MISSING = 66


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


def delete_store(daemon: DaemonProcess) -> None:
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (daemon.state_dir / name).unlink(missing_ok=True)


def test_deleting_the_store_under_a_running_daemon_makes_it_unhealthy_at_once(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon().start()
    eventually(lambda: daemon.cli("health").returncode == 0, timeout=60)
    (daemon.state_dir / "state.db").unlink()
    health = daemon.cli("health")
    assert health.returncode == 1, health.stdout + health.stderr
    assert f"state store {daemon.state_dir / 'state.db'} was deleted" in health.stdout
    eventually(lambda: "health_failed" in daemon.log() and "was deleted" in daemon.log())


def test_replacing_the_store_under_a_running_daemon_makes_it_unhealthy(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon().start()
    store = daemon.state_dir / "state.db"
    shutil.copy(store, daemon.state_dir / "copy.db")
    (daemon.state_dir / "copy.db").replace(store)
    health = daemon.cli("health")
    assert health.returncode == 1 and "was replaced" in health.stdout, health.stdout


def test_a_restart_without_the_store_refuses_to_start_afresh_until_told_to(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon().start()
    assert daemon.cli("stop", BOT).returncode == 0  # the operator's choice, in the store
    daemon.stop()
    delete_store(daemon)

    refused = run_once(daemon, "daemon")
    assert refused.returncode == EXIT_STORE_MISSING, refused.stdout + refused.stderr
    assert "is gone" in refused.stderr and "--new-store" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (daemon.state_dir / "state.db").exists(), "nothing autostarted, nothing written"
    assert daemon.cli("health").returncode == 3, "it did not stay up"

    direct = run_once(daemon, "flatten", "--all", "--yes", "--direct")
    assert direct.returncode == 0, direct.stdout + direct.stderr
    assert "WARNING: state store" in direct.stdout and "--new-store" in direct.stdout
    again = run_once(daemon, "daemon")
    assert again.returncode == EXIT_STORE_MISSING, "a store a direct flatten made is not the one"
    assert "is not the store that lived here" in again.stderr

    daemon.start(True, "--new-store")  # on purpose: the store the flatten made is accepted
    assert daemon.bot(BOT)["state"] == "halted", "the direct flatten's halt is in the store taken"
    assert "store_accepted" in daemon.log()
    daemon.stop()
    daemon.start()  # the marker now names the accepted store: an ordinary restart
    assert daemon.bot(BOT)["state"] == "halted"
