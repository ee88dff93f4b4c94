"""The shipped unit under a real systemd: notify start-up, restarts after kill -9 and
after a frozen daemon trips the watchdog, bots back to running, a clean stop."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.systemd_sandbox import Sandbox, SandboxUnavailable, wait_for

UNIT = "tradectl.service"
CLI = ["/opt/tradectl/.venv/bin/tradectl", "--config", "/etc/tradectl/config.toml"]


def drop_in_for_this_machine(base_prefix: Path, *extra: str) -> str:
    """Test-only adjustments; the units themselves are installed exactly as shipped.

    /opt/tradectl is a link to this checkout, which may live under /tmp (hidden by
    PrivateTmp=) or /home or /root (hidden by ProtectHome=), and so may this machine's
    Python; a real install has both under /opt and /usr. Bind them in read-only.
    """
    lines = ["[Service]", *extra, f"BindReadOnlyPaths={base_prefix} {REPO}"]
    if any(str(p).startswith(("/root", "/home")) for p in (base_prefix, REPO)):
        lines.append("ProtectHome=tmpfs")
    return "\n".join(lines) + "\n"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A booted systemd with tradectl installed by systemd/install.sh from this checkout."""
    if os.geteuid() != 0:
        pytest.skip("the systemd sandbox needs root (CAP_SYS_ADMIN)")
    root = tmp_path / "inject"
    python = Path(sys.base_prefix).resolve()
    extras = {
        UNIT: ("WatchdogSec=3", "RestartSec=1"),  # a fast watchdog: the test takes seconds
        "tradectl-deadman.service": ("Environment=TRADECTL_DEADMAN_GRACE=0",),
        "tradectl-cutoff.service": (),
    }
    for unit, extra in extras.items():
        drop_ins = root / "etc" / "systemd" / "system" / f"{unit}.d"
        drop_ins.mkdir(parents=True)
        (drop_ins / "10-test.conf").write_text(drop_in_for_this_machine(python, *extra))
    (root / "opt").mkdir()
    (root / "opt" / "tradectl").symlink_to(REPO)  # the checkout where the README puts it
    try:
        box = Sandbox.boot(root, bind=[REPO])
    except SandboxUnavailable as e:
        pytest.skip(f"systemd sandbox cannot boot here (needs CAP_SYS_ADMIN for unshare): {e}")
    try:
        installed = box.run("/opt/tradectl/systemd/install.sh", check=False)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        yield box
    finally:
        box.shutdown()


def bots(box: Sandbox) -> dict[str, dict[str, object]]:
    status = json.loads(box.run(*CLI, "status", "--json").stdout)
    return {b["name"]: b for b in status["bots"]}


def restarted(box: Sandbox, count: int) -> bool:
    return box.prop(UNIT, "NRestarts") == str(count) and box.prop(UNIT, "ActiveState") == "active"


def test_systemd_supervises_the_daemon_through_kills_and_stalls(sandbox: Sandbox) -> None:
    verify = sandbox.run("systemd-analyze", "verify", f"/etc/systemd/system/{UNIT}", check=False)
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify.stderr

    started = sandbox.run("systemctl", "start", UNIT, check=False)  # returns once READY=1 came
    assert started.returncode == 0, started.stderr + sandbox.journal(UNIT)
    assert sandbox.prop(UNIT, "ActiveState") == "active"
    assert sandbox.prop(UNIT, "StatusText").startswith("healthy; bots: 1 running")
    assert bots(sandbox)["eth-ema"]["state"] == "running"  # the socket answered at READY
    health = sandbox.run(*CLI, "health", check=False)
    assert health.returncode == 0, health.stdout + health.stderr

    first = int(sandbox.prop(UNIT, "MainPID"))
    sandbox.run("kill", "-9", str(first))
    wait_for(lambda: restarted(sandbox, 1))
    wait_for(lambda: bots(sandbox)["eth-ema"]["state"] == "running")
    second = int(sandbox.prop(UNIT, "MainPID"))
    assert second != first

    sandbox.run("kill", "-STOP", str(second))  # frozen: no more WATCHDOG=1
    wait_for(lambda: restarted(sandbox, 2), timeout=60)
    assert int(sandbox.prop(UNIT, "MainPID")) != second
    wait_for(lambda: bots(sandbox)["eth-ema"]["state"] == "running")
    journal = sandbox.journal(UNIT)
    assert "Watchdog timeout" in journal
    resumed = [json.loads(line) for line in journal.splitlines() if '"bot_resumed"' in line]
    assert len(resumed) >= 2 and all(r["bot"] == "eth-ema" for r in resumed)

    sandbox.run("systemctl", "stop", UNIT)
    assert sandbox.prop(UNIT, "ActiveState") == "inactive"
    assert sandbox.prop(UNIT, "Result") == "success"
    assert '"daemon_stopped"' in sandbox.journal(UNIT)


def test_a_bad_config_fails_once_without_a_restart_loop(sandbox: Sandbox) -> None:
    sandbox.run("sh", "-c", "echo 'max_leverage = \"x\"' >> /etc/tradectl/config.toml")
    started = sandbox.run("systemctl", "start", UNIT, check=False)
    assert started.returncode != 0
    wait_for(lambda: sandbox.prop(UNIT, "ActiveState") == "failed")
    assert sandbox.prop(UNIT, "NRestarts") == "0"
    assert sandbox.prop(UNIT, "ExecMainStatus") == "78"
    assert "/etc/tradectl/config.toml" in sandbox.journal(UNIT)


def test_the_dead_mans_switch_flattens_directly_when_the_daemon_is_gone(sandbox: Sandbox) -> None:
    sandbox.run("sed", "-i", "s/^speed = 300 /speed = 3000 /", "/etc/tradectl/config.toml")
    sandbox.run("systemctl", "start", UNIT)
    wait_for(lambda: bots(sandbox)["eth-ema"]["position_side"] != "flat", timeout=90)
    healthy = sandbox.run("systemctl", "start", "tradectl-deadman.service", check=False)
    assert healthy.returncode == 0 and bots(sandbox)["eth-ema"]["state"] == "running"

    sandbox.run("systemctl", "stop", UNIT)  # gone, as after a crash past the start limit
    fired = sandbox.run("systemctl", "start", "tradectl-deadman.service", check=False)
    journal = sandbox.journal("tradectl-deadman.service")
    assert fired.returncode == 0, journal
    assert "flattening directly" in journal and "all flat" in journal

    sandbox.run("systemctl", "start", UNIT)
    assert bots(sandbox)["eth-ema"]["state"] == "halted"
    assert json.loads(sandbox.run(*CLI, "positions", "--json").stdout) == []
