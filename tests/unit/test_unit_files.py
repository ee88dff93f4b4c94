"""The shipped unit files pass systemd's own checks (no running systemd needed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT_FILES = sorted((REPO / "systemd").glob("*.service")) + sorted(
    (REPO / "systemd").glob("*.timer")
)
INSTALL_PREFIX = "/opt/tradectl/.venv/bin/"


def with_local_prefix(unit: Path, folder: Path) -> Path:
    """verify insists ExecStart= exists; point the install prefix at this checkout's venv."""
    text = unit.read_text().replace(INSTALL_PREFIX, f"{REPO}/.venv/bin/")
    copy = folder / unit.name
    copy.write_text(text)
    return copy


@pytest.mark.parametrize("unit", UNIT_FILES, ids=lambda p: p.name)
def test_systemd_analyze_verify_says_nothing(unit: Path, tmp_path: Path) -> None:
    for sibling in UNIT_FILES:  # a timer needs its service beside it
        with_local_prefix(sibling, tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit.name)], capture_output=True, text=True
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output  # it exits 0 on some parse errors


def test_security_exposure_is_ok_or_better() -> None:
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            str(REPO / "systemd" / "tradectl.service"),
        ],
        capture_output=True,
        text=True,
    )
    match = re.search(
        r"Overall exposure level for tradectl\.service: ([\d.]+) (\w+)", result.stdout
    )
    assert match, result.stdout + result.stderr
    score, verdict = float(match.group(1)), match.group(2)
    assert verdict in ("OK", "SAFE") and score < 4.0, f"{score} {verdict}"
    readme = (REPO / "README.md").read_text()
    assert f"{score} {verdict}" in readme, "the README states the current rating"


def test_unit_restarts_on_failure_but_not_on_a_bad_config() -> None:
    text = (REPO / "systemd" / "tradectl.service").read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "RestartPreventExitStatus=78",
        "StateDirectory=tradectl",
        "RuntimeDirectory=tradectl",
        "ConfigurationDirectory=tradectl",
        "User=tradectl",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "SystemCallFilter=@system-service",
    ):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    assert re.search(r"^WatchdogSec=\d+", text, re.M)
    assert re.search(r"^LoadCredential=", text, re.M)
