"""100 bots on one daemon while clients hammer status: cadence kept, nothing lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir
from tests.integration.load_config import many_bots_config
from tradectl.client import ControlClient

BOTS, SPEED, WINDOW_S = 100, 60, 15.0  # each feed: one 1m candle a second


@pytest.mark.usefixtures("daemon_store")
@pytest.mark.sqlite_only("bots share paper accounts, which a fleet refuses (see README)")
def test_a_hundred_bots_keep_their_cadence_while_clients_hammer_status(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(many_bots_config(BOTS, SPEED))
    socket_dir = short_socket_dir()
    daemon = DaemonProcess(
        config, tmp_path / "state", socket_dir / "c.sock", tmp_path / "daemon.log"
    )
    try:
        daemon.start()
        eventually(
            lambda: all(b["state"] == "running" for b in daemon.cli_json("status")["bots"]),
            timeout=60,
        )
        client = ControlClient(daemon.socket)
        before = {b["name"]: b["candles_processed"] for b in client.call("status")["bots"]}
        latencies: list[float] = []
        errors: list[Exception] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    client.call("status")
                except Exception as e:  # any failure is a finding, counted below
                    errors.append(e)
                latencies.append(time.perf_counter() - began)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(WINDOW_S)
        stop.set()
        for t in threads:
            t.join()
        after = {b["name"]: b for b in client.call("status")["bots"]}
        health = client.call("health")
        gained = {name: after[name]["candles_processed"] - before[name] for name in before}
        expected = WINDOW_S * SPEED / 60
        latencies.sort()
        p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
        least, most = min(gained.values()), max(gained.values())
        print(
            f"bots={BOTS} status calls={len(latencies)} "
            f"p50={p50 * 1000:.1f}ms p99={p99 * 1000:.1f}ms "
            f"candles per bot min={least} max={most} expected~{expected:.0f}"
        )
        assert not errors, errors[:3]
        assert all(b["state"] == "running" for b in after.values())
        assert min(gained.values()) >= 0.8 * expected, gained
        assert max(gained.values()) - min(gained.values()) <= 3, (
            "every bot sees every candle of its feed"
        )
        assert health["healthy"], health["reasons"]
    finally:
        daemon.stop()
        remove(socket_dir)
