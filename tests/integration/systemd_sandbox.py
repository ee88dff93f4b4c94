"""A real, throw-away systemd (../shared/tools/systemd-sandbox.sh) driven from Python.

A bash process sources the sandbox script, boots it and waits on stdin; commands
run inside with nsenter into its namespaces; closing stdin shuts it down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

SANDBOX_SCRIPT = REPO.parent / "shared" / "tools" / "systemd-sandbox.sh"
CANNOT_BOOT = ("unshare not permitted", "must run as root")


class SandboxUnavailable(Exception):
    """The sandbox itself says it cannot boot here (no root or no CAP_SYS_ADMIN)."""


@dataclass
class Sandbox:
    proc: subprocess.Popen[str]
    pid: int

    @classmethod
    def boot(cls, inject_dir: Path, bind: list[Path]) -> Sandbox:
        if not SANDBOX_SCRIPT.exists():
            raise FileNotFoundError(f"{SANDBOX_SCRIPT} is missing: the tests need ../shared")
        script = (
            f'source "{SANDBOX_SCRIPT}"\n'
            "sdns_boot || exit 97\n"
            'echo "SDNS_PID=$SDNS_PID"\n'
            "read -r _\n"
        )
        env = dict(os.environ, SDNS_INJECT_DIR=str(inject_dir), SDNS_BIND=" ".join(map(str, bind)))
        proc = subprocess.Popen(
            ["bash", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("SDNS_PID="):
            _, err = proc.communicate(timeout=60)
            if any(reason in err for reason in CANNOT_BOOT):
                raise SandboxUnavailable(err.strip())
            raise RuntimeError(f"systemd sandbox did not boot (exit {proc.returncode}): {err}")
        return cls(proc, int(line.strip().split("=", 1)[1]))

    def run(
        self, *command: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--all", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)}: exit {result.returncode}\n{result.stdout}{result.stderr}"
            )
        return result

    def prop(self, unit: str, name: str) -> str:
        return self.run("systemctl", "show", "-P", name, unit).stdout.strip()

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout

    def shutdown(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def wait_for(check, timeout: float = 60.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not reached within {timeout} s (last: {last!r})")


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=True)
