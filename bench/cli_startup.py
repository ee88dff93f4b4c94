"""How long `tradectl status` takes against bare Typer programs, measured in the same run.

Two baselines: `python -c "import typer"`, and a one-command Typer program that
parses its arguments (what "a bare Typer program" costs: Typer loads pydantic then).

Prints median wall times over N runs and their ratio. The daemon is started on a
copy of the shipped config so `status` does a real round trip.
With `--baseline REV`, `tradectl status` of that revision too (`git archive`d, run
through PYTHONPATH), taking its turn with the others.
Usage: python bench/cli_startup.py [runs] [--baseline REV]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.daemon_process import DaemonProcess, write_config  # noqa: E402

BARE_PROGRAM = """
import typer
app = typer.Typer()
@app.command()
def hello(name: str = "world") -> None:
    print(name)
app()
"""


def timed(commands: list[tuple[list[str], dict[str, str]]], runs: int) -> list[float]:
    """Median wall time of each command; the commands take turns, run after run, so a
    change in the machine's load falls on all of them alike."""
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, env in commands:
            began = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            samples[commands.index((command, env))].append(time.perf_counter() - began)
    return [statistics.median(s) for s in samples]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 15
    baseline = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None
    with tempfile.TemporaryDirectory(prefix="tc-bench-", dir="/tmp") as folder:
        base = Path(folder)
        config = write_config(base / "config.toml")
        daemon = DaemonProcess(config, base / "state", base / "c.sock", base / "daemon.log").start()
        try:
            env = daemon.env
            plain = dict(os.environ)
            commands = [
                ([sys.executable, "-c", "import typer"], plain),
                ([sys.executable, "-c", BARE_PROGRAM, "--name", "x"], plain),
                ([sys.executable, "-m", "tradectl.cli", "status"], env),
                ([sys.executable, "-m", "tradectl.cli", "status", "--json"], env),
            ]
            if baseline is not None:
                old = base / "baseline"
                old.mkdir()
                archive = subprocess.run(
                    ["git", "archive", baseline], cwd=REPO, capture_output=True, check=True
                ).stdout
                subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
                old_env = dict(env, PYTHONPATH=str(old))
                commands.append(([sys.executable, "-m", "tradectl.cli", "status"], old_env))
            bare, program, status, status_json, *before = timed(commands, runs)
        finally:
            daemon.stop()
    print(f"runs per command           {runs}")
    print(f"python -c 'import typer'   {bare * 1000:7.1f} ms")
    print(f"bare one-command Typer app {program * 1000:7.1f} ms")
    for label, value in (("tradectl status", status), ("tradectl status --json", status_json)):
        print(
            f"{label:<26} {value * 1000:7.1f} ms   "
            f"ratio {value / bare:.2f} to import, {value / program:.2f} to the bare app"
        )
    for value in before:
        print(
            f"{'status, ' + str(baseline):<26} {value * 1000:7.1f} ms   "
            f"ratio {value / bare:.2f} to import, {value / program:.2f} to the bare app"
        )


if __name__ == "__main__":
    main()
