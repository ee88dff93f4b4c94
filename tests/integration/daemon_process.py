"""The daemon as a real subprocess on a real socket, and the CLI as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import REPO, eventually
from tests.store_under_test import current


def write_config(
    path: Path, overrides: str = "", *, speed: float = 600, bots: str | None = None
) -> Path:
    """The shipped config.toml with the data folder made absolute and the replay sped up."""
    text = (REPO / "config.toml").read_text()
    text = text.replace('data_dir = "data/candles"', f'data_dir = "{REPO / "data" / "candles"}"')
    text = text.replace("speed = 300 ", f"speed = {speed} ")
    if bots is not None:
        text = text[: text.index("[bots.")] + bots
    path.write_text(text + "\n" + overrides)
    tomllib.loads(path.read_text())  # the test's own edit must stay valid TOML
    return path


@dataclass
class DaemonProcess:
    config: Path
    state_dir: Path
    socket: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    prefix: tuple[str, ...] = ()  # run the daemon under this (e.g. unshare and a mount)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADECTL_", "NOTIFY_"))}
        env.update(
            TRADECTL_CONFIG=str(self.config),
            TRADECTL_STATE_DIR=str(self.state_dir),
            TRADECTL_SOCKET=str(self.socket),
            PYTHONUNBUFFERED="1",
        )
        url = current().url(self.state_dir)  # the test's store: None is the state folder's file
        if url is not None:
            env["TRADECTL_STORE_URL"] = url
        env.update(self.extra_env)
        return env

    def start(self, wait: bool = True, *args: str) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "tradectl.cli", "daemon", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.config.parent,
        )
        log.close()
        if wait:
            eventually(self._answers, timeout=30)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        return self.cli("status", "--json").returncode == 0

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tradectl.cli", *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.config.parent,
        )

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, f"{args}: exit {result.returncode}: {result.stderr}"
        return json.loads(result.stdout)

    def bot(self, name: str) -> dict[str, Any]:
        bots = self.cli_json("status")["bots"]
        return next(b for b in bots if b["name"] == name)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def short_socket_dir() -> Path:
    """Unix socket paths must stay under ~107 bytes; pytest's tmp_path may not."""
    return Path(tempfile.mkdtemp(prefix="tc-", dir="/tmp"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
