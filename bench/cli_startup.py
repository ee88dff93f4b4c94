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
import resource
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


def timed(
    commands: list[tuple[list[str], dict[str, str]]], runs: int, cwd: Path
) -> list[tuple[float, float]]:
    """Median wall time and median CPU time (user + system) of each command. The commands
    take turns, run after run, so a change in the machine's load falls on all alike; CPU
    time is what the command costs whatever else runs. `cwd` outside the repository, so a
    baseline on PYTHONPATH is not shadowed by the checkout in the current folder."""
    walls: list[list[float]] = [[] for _ in commands]
    cpus: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for i, (command, env) in enumerate(commands):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True, cwd=cwd)
            walls[i].append(time.perf_counter() - began)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[i].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus, strict=True)]


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
            bare, program, status, status_json, *before = timed(commands, runs, base)
        finally:
            daemon.stop()
    print(f"runs per command           {runs}; wall ms, CPU ms, ratio of each to import typer")

    def row(label: str, value: tuple[float, float]) -> None:
        wall, cpu = value
        print(
            f"{label:<26} {wall * 1000:7.1f} {cpu * 1000:7.1f}   "
            f"{wall / bare[0]:5.2f} {cpu / bare[1]:5.2f}"
        )

    row("python -c 'import typer'", bare)
    row("bare one-command Typer app", program)
    row("tradectl status", status)
    row("tradectl status --json", status_json)
    for value in before:
        row(f"status, {baseline}", value)


if __name__ == "__main__":
    main()
