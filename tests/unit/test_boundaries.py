"""Import boundaries: the light CLI path and the pure core stay what they promise."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# pydantic is not listed: Typer itself loads it when it parses arguments.
HEAVY = ("ccxt", "polars", "pyarrow", "daemon", "strategies", "structlog", "sqlite3", "asyncio")


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["--wait", "0.5", "status"],
        ["start", "b"],
        ["stop", "--all"],
        ["positions"],
        ["orders"],
    ],
)
def test_cli_control_commands_import_neither_ccxt_polars_nor_the_daemon(args: list[str]) -> None:
    """Run the command for real (against a socket nobody serves) and list what it loaded."""
    code = (
        "import sys, os, tradectl.cli\n"
        "heavy = os.environ['HEAVY'].split(',')\n"
        "sys.argv = ['tradectl', *sys.argv[1:]]\n"
        "try:\n    tradectl.cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "print(code, ','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={
            "HEAVY": ",".join(HEAVY),
            "TRADECTL_SOCKET": "/nonexistent/tc.sock",
            "PATH": "/usr/bin",
        },
    )
    # The last line is ours; a --json failure prints its JSON error object above it.
    exit_code, _, loaded = result.stdout.strip().splitlines()[-1].partition(" ")
    assert exit_code == "3", result.stdout + result.stderr  # it really went to the socket
    assert loaded == "", f"tradectl {' '.join(args)} imported {loaded}"


def imported_modules(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_domain_is_pure() -> None:
    forbidden = {
        "asyncio",
        "sqlite3",
        "ccxt",
        "polars",
        "structlog",
        "socket",
        "time",
        "daemon.adapters",
    }
    used = imported_modules(REPO / "daemon" / "domain")
    assert not used & forbidden, f"the domain imports {used & forbidden}"


def test_strategies_do_no_io() -> None:
    forbidden = {"asyncio", "sqlite3", "ccxt", "socket", "structlog", "time", "os"}
    used = imported_modules(REPO / "strategies")
    assert not used & forbidden, f"strategies import {used & forbidden}"


def test_only_the_wiring_knows_the_paper_adapter() -> None:
    for path in (REPO / "daemon" / "runtime").rglob("*.py"):
        text = path.read_text()
        assert "paper" not in text.lower(), (
            f"{path.name} mentions paper: trading must not branch on it"
        )
