"""A newcomer's first hour: what the README says works when pasted, and every answer the
CLI gives explains itself, to people and to programs alike."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tradectl
from tests.conftest import REPO, eventually
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tradectl.cli import app

MakeDaemon = Callable[..., DaemonProcess]
BOT = "eth-ema"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADECTL_", "NOTIFY_"))}
    env.update(extra)
    return env


def tradectl_cli(
    *args: str, env: dict[str, str], cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradectl.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def readme_snippet(after: str) -> str:
    """The first ```sh block after the line containing `after`."""
    text = (REPO / "README.md").read_text()
    start = text.index("```sh\n", text.index(after)) + len("```sh\n")
    return text[start : text.index("```", start)]


def test_the_readme_isolated_run_snippet_exits_0_as_a_shell_script(tmp_path: Path) -> None:
    snippet = readme_snippet("an isolated run is just:")
    assert "--wait" in snippet and "tradectl daemon" in snippet
    ours = str(Path(sys.executable).parent / "tradectl")  # the README's .venv, wherever it is
    script = tmp_path / "snippet.sh"
    cleanup = (
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"  # no daemon left behind on a failure
    )
    script.write_text("set -e\n" + cleanup + snippet.replace(".venv/bin/tradectl", ours))
    temp = short_socket_dir()  # the snippet's mktemp -d lands here: a short socket path
    try:
        result = subprocess.run(
            ["bash", str(script)],
            env=clean_env(TMPDIR=str(temp)),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
    finally:
        remove(temp)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "daemon pid" in result.stdout and BOT in result.stdout


def test_a_command_can_wait_for_a_starting_daemon(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start(wait=False)
    answered = daemon.cli("--wait", "60", "status", "--json")
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["bots"][0]["name"] == BOT


def test_the_daemon_says_in_one_line_when_it_is_ready_in_a_terminal(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon()
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradectl.cli", "daemon"],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=subprocess.DEVNULL,
        cwd=daemon.config.parent,
    )
    os.close(child)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"\n" not in seen.partition(b"ready")[2] and time.monotonic() < deadline:
            if select.select([main], [], [], 1.0)[0]:
                try:
                    seen += os.read(main, 4096)
                except OSError:
                    break
        ready = [line for line in seen.decode().splitlines() if "ready" in line]
        assert len(ready) == 1, seen
        assert re.fullmatch(
            rf"tradectl daemon ready: pid {proc.pid}, 1 bot, socket {re.escape(str(daemon.socket))}"
            r" \(tradectl status; Ctrl-C stops it\)\s*",
            ready[0],
        ), ready
        assert daemon.cli("status").returncode == 0, "ready means it answers"
    finally:
        proc.terminate()
        proc.wait(15)
        os.close(main)


def test_idempotent_commands_answer_alike_and_global_options_go_anywhere(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon().start()
    eventually(lambda: daemon.bot(BOT)["state"] == "running")
    env = clean_env(TRADECTL_STATE_DIR=str(daemon.state_dir), TRADECTL_SOCKET=str(daemon.socket))
    config = str(daemon.config)
    for args in (
        ("status", "--config", config),
        ("--config", config, "status"),
        ("health", "-c", config),
        ("positions", "--config=" + config, "--json"),
        ("--json", "orders", "--config", config),
    ):
        result = tradectl_cli(*args, env=env, cwd=Path("/"))
        assert result.returncode == 0, (args, result.stderr)
    started = daemon.cli("start", BOT)
    assert started.returncode == 0
    assert started.stdout.strip() == f"{BOT}: started already, nothing to do, now running"
    resumed = daemon.cli("resume", BOT)
    assert resumed.returncode == 0, resumed.stderr
    assert "not halted (it should be running): nothing to clear" in resumed.stdout
    assert daemon.cli_json("resume", BOT)["changed"] is False
    unknown = daemon.cli("start", "no-such-bot", "--json")
    assert unknown.returncode == 1, "the daemon's own refusal, as JSON too"
    error = json.loads(unknown.stdout)["error"]
    assert (error["code"], error["exit_code"]) == ("not_found", 1), error
    first = [line for line in daemon.log().splitlines() if f"bot={BOT}" in line or BOT in line]
    assert not any("bot_resumed" in line for line in first), "a first start resumes nothing"
    assert any("bot_started" in line for line in first)


@pytest.mark.sqlite_only("two bots share one paper account: a fleet refuses it, see README")
def test_btc_trades_on_the_shipped_paper_account_within_the_first_hours(
    make_daemon: MakeDaemon,
) -> None:
    """The BTC bot the shipped config offers (commented out) trades under its limits."""
    text = (REPO / "config.toml").read_text()
    block = text[text.index("# [bots.btc-ema]") :]
    btc = "\n".join(line.removeprefix("# ") for line in block.splitlines() if line.strip())
    daemon = make_daemon(btc.replace("autostart = false", "autostart = true"))
    checked = daemon.cli("config", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    daemon.start()

    def btc_entry_filled() -> dict[str, object] | None:
        orders = daemon.cli_json("orders", "--all", "--bot", "btc-ema")
        return next(
            (o for o in orders if o["status"] == "filled" and o.get("purpose") == "entry"), None
        )

    entry = eventually(btc_entry_filled, timeout=120)
    assert entry["symbol"] == "BTC/USDT:USDT"
    replayed_to = daemon.bot("btc-ema")["last_candle_close"]  # a little past the fill
    assert replayed_to < "2025-05-10T04:00", f"first BTC entry seen at {replayed_to}"


def every_command() -> set[str]:
    names = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}
    return names | {
        f"{g.name} {c.name}"
        for g in app.registered_groups
        if g.typer_instance is not None
        for c in g.typer_instance.registered_commands
    }


UNREACHABLE = "unreachable"  # a socket nobody serves
NO_CONFIG = "no config"  # $TRADECTL_CONFIG names a file that is not there

# One failure per command (--json in front, behind or in between), with its exit code and
# error code; then failures that happen before any command is known.
JSON_FAILURES = {
    "status": (["status", "--json"], UNREACHABLE, 3, "daemon_unreachable"),
    "start": (["--json", "start", BOT], UNREACHABLE, 3, "daemon_unreachable"),
    "stop": (["stop", "--json", "--all"], UNREACHABLE, 3, "daemon_unreachable"),
    "positions": (["positions", "--json"], NO_CONFIG, 78, "config"),
    "orders": (["orders", "--bogus", "--json"], UNREACHABLE, 2, "usage"),
    "health": (["--json", "health"], UNREACHABLE, 3, "daemon_unreachable"),
    "resume": (["resume", "--json"], UNREACHABLE, 2, "usage"),
    "flatten": (
        ["flatten", BOT, "--yes", "--no-direct", "--json"],
        UNREACHABLE,
        3,
        "daemon_unreachable",
    ),
    "daemon": (["daemon", "--json"], NO_CONFIG, 78, "config"),
    "backtest": (["backtest", "ema_cross", "--json"], UNREACHABLE, 2, "usage"),
    "config check": (["config", "check", "--json"], NO_CONFIG, 78, "config"),
    "schedule": (["schedule", "--json"], UNREACHABLE, 3, "daemon_unreachable"),
    "alerts test": (["alerts", "test", "--json"], NO_CONFIG, 78, "config"),
}
BEFORE_ANY_COMMAND = {
    "no command": (["--json"], UNREACHABLE, 2, "usage"),
    "no config subcommand": (["config", "--json"], UNREACHABLE, 2, "usage"),
    "unknown command": (["--json", "statsu"], UNREACHABLE, 2, "usage"),
    "bad --wait before --json": (["--wait", "soon", "status", "--json"], UNREACHABLE, 2, "usage"),
}


def test_the_json_failure_cases_cover_every_command() -> None:
    assert set(JSON_FAILURES) == every_command()


@pytest.mark.parametrize(
    ("args", "where", "code", "kind"),
    list({**JSON_FAILURES, **BEFORE_ANY_COMMAND}.values()),
    ids=list({**JSON_FAILURES, **BEFORE_ANY_COMMAND}),
)
def test_json_failures_parse_as_json_for_every_command(
    tmp_path: Path, args: list[str], where: str, code: int, kind: str
) -> None:
    """stdout is one JSON error object and the exit code is the documented one."""
    socket_dir = short_socket_dir()
    try:
        env = {
            UNREACHABLE: clean_env(
                TRADECTL_SOCKET=str(socket_dir / "control.sock"),
                TRADECTL_STATE_DIR=str(socket_dir / "state"),
            ),
            NO_CONFIG: clean_env(TRADECTL_CONFIG=str(tmp_path / "nowhere.toml")),
        }[where]
        result = tradectl_cli(*args, env=env, cwd=tmp_path)
    finally:
        remove(socket_dir)
    assert result.returncode == code, (result.stdout, result.stderr)
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["exit_code"]) == (kind, code), error
    assert error["message"].strip()


def test_a_missing_config_names_every_place_tried_and_the_way_to_name_one(tmp_path: Path) -> None:
    result = tradectl_cli("status", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 78
    message = result.stderr
    assert f"./config.toml (in {tmp_path})" in message and "/etc/tradectl/config.toml" in message
    assert "--config PATH" in message and "$TRADECTL_CONFIG" in message


def test_version_and_help_that_read_well_in_80_columns() -> None:
    version = tradectl_cli("--version", env=clean_env())
    assert version.returncode == 0 and version.stdout.strip() == f"tradectl {tradectl.__version__}"
    for command in ("", "config", *sorted(every_command())):
        result = tradectl_cli(*command.split(), "--help", env=clean_env(COLUMNS="80"))
        assert result.returncode == 0, command
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80, (command, result.stdout)
        assert "<bool>" not in result.stdout and "--config" in result.stdout, command
        cut = [line for line in lines[1:] if line.endswith("...")]
        assert not cut, f"a summary cut mid-sentence: {cut}"
