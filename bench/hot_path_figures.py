"""The daemon's hot paths on paper, now against a baseline revision in the same run:

- candle close -> first order sent, p50/p99 (1 bot, the replay as fast as it goes; from the
  daemon's own JSON log: `candle_closed` to `order_submitted`);
- the `status` round trip with a raw client (one socket, a request line out, the reply line
  in; no CLI, no client library), p50/p99, at 100 bots, and `ping` beside it;
- RSS and CPU at 100 bots;
- with `--scaling`: 1 -> 10 -> 100 -> 1,000 bots for the code of now (RSS, CPU, status),
  each feed at one candle a second, and 1,000 bots at one candle every ten seconds;
  `--only-thousand` for the last alone.

The baseline (`--baseline REV`, e.g. the merge this work started from) is `git archive`d to
a temporary folder and run through PYTHONPATH; runs alternate, now and baseline.

Usage: python bench/hot_path_figures.py [seconds] [--baseline REV] [--scaling] [--rounds N]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.daemon_figures import candle_to_order_latency, daemon_with, percentile  # noqa: E402
from bench.memory_figures import notify_socket, usage, wait_ready  # noqa: E402


class RawClient:
    """A request line out, the reply line in: what the socket itself costs, nothing else."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buffer = b""
        self.seq = 0

    def call(self, cmd: str) -> dict[str, object]:
        self.seq += 1
        line = json.dumps({"v": 1, "id": str(self.seq), "cmd": cmd, "args": {}}) + "\n"
        self.sock.sendall(line.encode())
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the daemon closed the socket")
            self.buffer += chunk
        reply, self.buffer = self.buffer.split(b"\n", 1)
        decoded: dict[str, object] = json.loads(reply)
        return decoded

    def close(self) -> None:
        self.sock.close()


def trips(client: RawClient, cmd: str, seconds: float) -> list[float]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        reply = client.call(cmd)
        samples.append(time.perf_counter() - began)
        assert reply["ok"], reply
    return samples


def started(folder: Path, bots: int, speed: float, code: Path | None, log_level: str):  # type: ignore[no-untyped-def]
    daemon = daemon_with(folder, bots, speed=speed, log_level=log_level)
    if code is not None:
        daemon.extra_env["PYTHONPATH"] = str(code)
    sink = notify_socket(folder / "n.sock")
    daemon.extra_env["NOTIFY_SOCKET"] = str(folder / "n.sock")
    began = time.monotonic()
    daemon.start(wait=False)
    try:
        wait_ready(sink, daemon, timeout=120 + bots * 0.5)
    finally:
        sink.close()
    return daemon, time.monotonic() - began


def all_running(client: RawClient, bots: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = client.call("status")["result"]
        assert isinstance(result, dict)
        if sum(b["state"] == "running" for b in result["bots"]) == bots:
            return
        time.sleep(0.2)
    raise RuntimeError("the bots did not all start")


def latency(folder: Path, code: Path | None, seconds: float) -> str:
    daemon, _ = started(folder, 1, 0, code, "info")
    try:
        time.sleep(seconds)
    finally:
        daemon.stop()
    lat = candle_to_order_latency(daemon.log_path)
    return (
        f"candle->order p50 {statistics.median(lat) * 1000:6.3f} ms, "
        f"p99 {percentile(lat, 0.99) * 1000:6.3f} ms ({len(lat)} orders)"
    )


def load(folder: Path, bots: int, code: Path | None, seconds: float, speed: float = 60) -> str:
    daemon, up = started(folder, bots, speed, code, "warning")
    try:
        client = RawClient(daemon.socket)
        all_running(client, bots, 120 + bots * 0.2)
        assert daemon.proc is not None
        rss, cpu = usage(daemon.proc.pid, min(seconds, 5.0))
        status = trips(client, "status", seconds)
        ping = trips(client, "ping", min(seconds, 3.0))
        client.close()
    finally:
        daemon.stop()
    return (
        f"{bots:>5} bots{'' if speed == 60 else f' at speed {speed:g}'}: "
        f"RSS {rss:6.1f} MB, CPU {cpu:5.1f} %, status p50 "
        f"{statistics.median(status) * 1000:6.3f} ms p99 {percentile(status, 0.99) * 1000:6.3f}"
        f" ms ({len(status)} calls), ping p99 {percentile(ping, 0.99) * 1000:5.3f} ms, "
        f"start-up to READY=1 {up:5.1f} s"
    )


def main() -> None:
    numbers = [a for a in sys.argv[1:2] if a.replace(".", "").isdigit()]
    seconds = float(numbers[0]) if numbers else 10.0
    baseline = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 1
    print(f"machine: {os.cpu_count()} cores, {os.uname().machine}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="tc-hot-", dir="/tmp") as tmp:
        base = Path(tmp)
        codes: list[tuple[str, Path | None]] = [("now", None)]
        if baseline is not None:
            old = base / "baseline"
            old.mkdir()
            archive = subprocess.run(
                ["git", "archive", baseline], cwd=REPO, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            codes.append((baseline, old))
        for r in range(0 if "--only-thousand" in sys.argv else rounds):
            for label, code in codes:
                tag = f"{label}-{r}".replace("/", "_")
                print(f"{label:>10}: {latency(base / f'lat-{tag}', code, seconds)}", flush=True)
                print(f"{label:>10}: {load(base / f'load-{tag}', 100, code, seconds)}", flush=True)
        if "--only-thousand" in sys.argv:
            print(f"       now: {load(base / 'slow-1000', 1000, None, seconds, 6)}", flush=True)
        if "--scaling" in sys.argv:
            print(f"       now: {load(base / 'slow-1000', 1000, None, seconds, 6)}", flush=True)
            for bots in (1, 10, 100, 1000):
                print(
                    f"       now: {load(base / f'scale-{bots}', bots, None, seconds)}", flush=True
                )


if __name__ == "__main__":
    main()
