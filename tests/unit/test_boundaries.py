"""Import boundaries: the light CLI path and the pure core stay what they promise."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# pydantic too: Typer would load it to coerce even absent arguments (tradectl/typer_params.py).
HEAVY = (
    "ccxt",
    "polars",
    "pyarrow",
    "daemon",
    "strategies",
    "structlog",
    "sqlite3",
    "asyncio",
    "pydantic",
)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["status", "eth-1"],
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


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["flatten", "--yes", "--timeout", "abc", "b"], "'--timeout': Input should be a valid num"),
        (["flatten", "--yes", "--timeout", "0", "b"], "should be greater than or equal to 1"),
    ],
)
def test_bad_arguments_still_get_typers_own_messages(args: list[str], complaint: str) -> None:
    """Only absent values and plain text skip Typer's coercion; the rest keeps its checks."""
    result = subprocess.run(
        [sys.executable, "-m", "tradectl.cli", *args],
        capture_output=True,
        text=True,
        env={"TRADECTL_SOCKET": "/nonexistent/tc.sock", "PATH": "/usr/bin", "COLUMNS": "200"},
    )
    assert result.returncode == 2, result.stderr
    assert complaint in result.stderr, result.stderr


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


def loaded_after(code: str) -> list[str]:
    """The top-level and ccxt modules a fresh interpreter holds after running `code`."""
    probe = code + "\nimport sys\nprint(','.join(sorted(m for m in sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1].split(",")


def test_a_paper_only_daemon_and_a_direct_flatten_never_import_ccxt() -> None:
    loaded = loaded_after("import daemon.app, daemon.emergency")
    assert not [m for m in loaded if m.split(".")[0] == "ccxt"]
    assert "polars" not in loaded_after("import daemon.emergency")


def test_an_exchange_account_loads_only_its_own_ccxt_exchange() -> None:
    """ccxt's package would import all of its exchanges; we load the ones we build."""
    code = (
        "from daemon.adapters.ccxt_gateway import CcxtGateway, ccxt_errors\n"
        "from daemon.domain.models import Market\n"
        "ex = CcxtGateway('a', 'binanceusdm', None)._make_exchange()\n"
        "import ccxt.base.errors as real\n"
        "assert ccxt_errors.OrderNotFound is real.OrderNotFound\n"
        "assert type(ex).__name__ == 'binanceusdm' and ex.timeout_on_exit == 0\n"
    )
    exchanges = [
        m for m in loaded_after(code) if m.startswith("ccxt.async_support.") and ".base" not in m
    ]
    assert sorted(exchanges) == ["ccxt.async_support.binance", "ccxt.async_support.binanceusdm"]
