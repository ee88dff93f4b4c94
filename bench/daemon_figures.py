"""The daemon's figures on the paper exchange and the replay, measured in one run:

- control round trip (status) p50/p99, idle (1 bot) and under the 100-bot load;
- candle-close-to-order-sent latency p50/p99 (from the daemon's own JSON log);
- resident memory and CPU with 1, 10 and 100 bots;
- start-up to READY=1 with 20 bots whose state must be reconciled (a second start).

Usage: python bench/daemon_figures.py [seconds per measurement]
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.daemon_process import DaemonProcess  # noqa: E402
from tests.integration.load_config import many_bots_config  # noqa: E402
from tradectl.client import ControlClient  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def daemon_with(folder: Path, bots: int, speed: float, log_level: str = "warning") -> DaemonProcess:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    config.write_text(many_bots_config(bots, speed, log_level))
    return DaemonProcess(
        config,
        folder / "state",
        Path(tempfile.mkdtemp(dir="/tmp")) / "c.sock",
        folder / "daemon.log",
    )


def round_trips(daemon: DaemonProcess, seconds: float) -> list[float]:
    client = ControlClient(daemon.socket)
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        client.call("status")
        samples.append(time.perf_counter() - began)
    return samples


def rss_and_cpu(pid: int, seconds: float) -> tuple[float, float]:
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    began, cpu0 = time.monotonic(), cpu()
    time.sleep(seconds)
    used = (cpu() - cpu0) / (time.monotonic() - began)
    rss_kb = next(
        int(row.split()[1])
        for row in Path(f"/proc/{pid}/status").read_text().splitlines()
        if row.startswith("VmRSS:")
    )
    return rss_kb / 1024, used * 100


def wait_running(daemon: DaemonProcess, bots: int) -> None:
    client = ControlClient(daemon.socket)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.call("status")["bots"]
        if len(status) == bots and all(b["state"] == "running" for b in status):
            return
        time.sleep(0.2)
    raise RuntimeError("bots did not all start")


def candle_to_order_latency(log: Path) -> list[float]:
    """For each candle that led to orders: the time from when its bot began processing it to
    its first order (later ones, such as the stop and take-profit after an entry, follow)."""
    last_candle: dict[str, datetime] = {}
    latencies = []
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        if event["event"] == "candle_closed":
            last_candle[event["bot"]] = at
        elif event["event"] == "order_submitted" and event.get("bot") in last_candle:
            latencies.append((at - last_candle.pop(event["bot"])).total_seconds())
    return latencies


def startup_to_ready(daemon: DaemonProcess) -> float:
    path = daemon.socket.with_name("notify.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(path))
    sink.settimeout(120)
    daemon.extra_env["NOTIFY_SOCKET"] = str(path)
    began = time.monotonic()
    daemon.start(wait=False)
    while b"READY=1" not in sink.recv(65536):
        pass
    took = time.monotonic() - began
    sink.close()
    return took


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
        base = Path(tmp)
        for bots in (1, 10, 100):
            daemon = daemon_with(base / f"b{bots}", bots, speed=60)
            daemon.start()
            try:
                wait_running(daemon, bots)
                assert daemon.proc is not None
                rss, cpu = rss_and_cpu(daemon.proc.pid, seconds)
                rows.append(
                    f"resources  {bots:>3} bots: RSS {rss:7.1f} MB, CPU {cpu:5.1f} % of one core"
                )
                if bots in (1, 100):
                    trips = round_trips(daemon, seconds)
                    p50 = statistics.median(trips) * 1000
                    p99 = percentile(trips, 0.99) * 1000
                    rows.append(
                        f"round trip {bots:>3} bots: status p50 {p50:6.2f} ms, "
                        f"p99 {p99:6.2f} ms ({len(trips)} calls)"
                    )
            finally:
                daemon.stop()
        fast = daemon_with(base / "latency", 1, speed=0, log_level="info")
        fast.start()
        time.sleep(seconds)
        fast.stop()
        lat = candle_to_order_latency(fast.log_path)
        rows.append(
            f"candle close to order sent (paper): p50 {statistics.median(lat) * 1000:6.2f} ms, "
            f"p99 {percentile(lat, 0.99) * 1000:6.2f} ms ({len(lat)} orders)"
        )
        twenty = daemon_with(base / "startup", 20, speed=600)
        twenty.start()
        wait_running(twenty, 20)
        time.sleep(3)
        twenty.stop()
        took = startup_to_ready(twenty)
        twenty.stop()
        rows.append(f"start-up to READY=1, 20 bots with state to reconcile: {took:.2f} s")
    print(f"machine: {os.cpu_count()} cores, {os.uname().machine}, python {sys.version.split()[0]}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
