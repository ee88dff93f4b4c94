"""What the daemon tells systemd, recorded on a real NOTIFY_SOCKET: READY only once it
works, WATCHDOG only while every running bot makes progress, STATUS a person can read."""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.integration.daemon_process import DaemonProcess
from tests.integration.notify_socket import Notice, NotifyRecorder

MakeDaemon = Callable[..., DaemonProcess]
WATCHDOG_USEC = 1_500_000  # pings every 0.5 s
FAST_HEALTH = "\n[health]\nstale_floor_s = 2\nloop_lag_max_s = 1\n"

SLEEPY_PLUGIN = '''
"""A strategy with two bugs an operator might write: it can block, and it can raise."""
import time
from pathlib import Path

from strategies.ema_cross import EmaCross, EmaCrossParams


class SleepyParams(EmaCrossParams):
    block_flag: str
    raise_flag: str


class Sleepy(EmaCross):
    name = "sleepy"
    Params = SleepyParams

    def evaluate(self, frames):
        block, fail = Path(self.params.block_flag), Path(self.params.raise_flag)
        if block.exists():
            seconds = float(block.read_text())
            block.unlink()
            time.sleep(seconds)  # blocks the whole event loop, as a careless plugin would
        if fail.exists():
            raise RuntimeError("plugin bug")
        return super().evaluate(frames)
'''


def sleepy_bot(folder: Path) -> str:
    return f"""
[strategies]
user_dir = "{folder}"

[bots.eth-sleepy]
account = "paper"
symbol = "ETH/USDT:USDT"
strategy = "sleepy"
timeframes = ["1m", "5m"]
autostart = true

[bots.eth-sleepy.params]
block_flag = "{folder / "block"}"
raise_flag = "{folder / "raise"}"
"""


@pytest.fixture
def recorder(make_daemon: MakeDaemon) -> Iterator[Callable[[DaemonProcess], NotifyRecorder]]:
    made: list[NotifyRecorder] = []

    def attach(daemon: DaemonProcess) -> NotifyRecorder:
        rec = NotifyRecorder(
            daemon.socket.with_name("notify.sock"),
            on_ready=lambda: daemon.cli("status", "--json").returncode,
        )
        daemon.extra_env.update(NOTIFY_SOCKET=str(rec.path), WATCHDOG_USEC=str(WATCHDOG_USEC))
        made.append(rec)
        return rec

    yield attach
    for rec in made:
        rec.close()


def test_ready_is_sent_only_once_the_control_socket_answers(
    make_daemon: MakeDaemon, recorder: Callable[[DaemonProcess], NotifyRecorder]
) -> None:
    daemon = make_daemon()
    rec = recorder(daemon)
    daemon.start(wait=False)
    eventually(lambda: rec.with_key("READY"), timeout=30)
    assert rec.ready_probe == 0, "READY=1 arrived while the control socket did not answer yet"
    assert len(rec.with_key("READY")) == 1
    first_ping = rec.with_key("WATCHDOG")
    assert not first_ping or first_ping[0].at >= rec.with_key("READY")[0].at
    assert rec.with_key("READY")[0].fields["STATUS"].startswith("healthy; bots: 1 running")
    assert any(s.startswith("starting:") for s in rec.statuses())


def test_watchdog_is_fed_while_healthy_and_stops_while_the_daemon_is_frozen(
    make_daemon: MakeDaemon, recorder: Callable[[DaemonProcess], NotifyRecorder]
) -> None:
    daemon = make_daemon(FAST_HEALTH)
    rec = recorder(daemon)
    daemon.start()
    eventually(lambda: len(pings_in_the_last(rec, 2.5)) >= 3, timeout=20)  # every ~0.5 s
    daemon.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    time.sleep(3)  # how long the daemon stays frozen: the stimulus, not a wait for a result
    daemon.signal(signal.SIGCONT)
    thawed_at = time.monotonic()
    # The pings resume: the recorder was listening all along, so the silence was real.
    eventually(lambda: rec.pings_between(thawed_at, time.monotonic()), timeout=10)
    pings = rec.pings_between(frozen_at - 5, time.monotonic())
    longest = max(b - a for a, b in itertools.pairwise(pings))
    assert longest >= 2.5, f"the pings went on while the daemon was frozen: {pings}"
    eventually(lambda: daemon.cli("health").returncode == 0, timeout=10)


def test_a_blocking_strategy_stops_the_pings_and_health_says_why(
    make_daemon: MakeDaemon, recorder: Callable[[DaemonProcess], NotifyRecorder], tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "sleepy.py").write_text(SLEEPY_PLUGIN)
    daemon = make_daemon(FAST_HEALTH, bots=sleepy_bot(plugins))
    rec = recorder(daemon)
    daemon.start()
    eventually(lambda: daemon.cli("health").returncode == 0, timeout=20)
    (plugins / "block").write_text("5")
    eventually(lambda: not (plugins / "block").exists(), timeout=10)
    blocked_at = time.monotonic()
    verdicts: list[subprocess.CompletedProcess[str]] = []
    asker = threading.Thread(target=lambda: verdicts.append(daemon.cli("health")))
    asker.start()
    asker.join(30)
    [during] = verdicts
    assert during.returncode == 1 and "event loop lag" in during.stdout, during.stdout
    eventually(lambda: rec.pings_between(blocked_at + 4, time.monotonic()), timeout=10)
    assert rec.pings_between(blocked_at + 0.5, blocked_at + 4) == [], "no ping while blocked"
    eventually(lambda: daemon.cli("health").returncode == 0, timeout=10)


def test_a_bot_that_stops_making_progress_stops_the_pings_until_it_recovers(
    make_daemon: MakeDaemon, recorder: Callable[[DaemonProcess], NotifyRecorder], tmp_path: Path
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "sleepy.py").write_text(SLEEPY_PLUGIN)
    daemon = make_daemon(FAST_HEALTH, bots=sleepy_bot(plugins))
    rec = recorder(daemon)
    daemon.start()
    eventually(lambda: daemon.cli("health").returncode == 0, timeout=20)
    (plugins / "raise").write_text("")
    unhealthy = eventually(lambda: (r := daemon.cli("health")).returncode == 1 and r, timeout=20)
    assert "stale bot eth-sleepy" in unhealthy.stdout and "plugin bug" in unhealthy.stdout
    seen_at = time.monotonic()
    # Two more UNHEALTHY statuses prove the report loop and the recorder are alive meanwhile.
    reports = eventually(lambda: len(r := unhealthy_statuses(rec, seen_at)) >= 2 and r, timeout=10)
    assert rec.pings_between(seen_at, reports[-1].at) == [], "pings must stop while a bot is stale"
    assert any("stale bot eth-sleepy" in n.fields["STATUS"] for n in reports)
    (plugins / "raise").unlink()
    eventually(lambda: daemon.cli("health").returncode == 0, timeout=30)
    eventually(lambda: rec.pings_between(time.monotonic() - 1, time.monotonic()), timeout=10)
    assert "health_failed" in daemon.log() and "health_recovered" in daemon.log()


def pings_in_the_last(rec: NotifyRecorder, seconds: float) -> list[float]:
    now = time.monotonic()
    return rec.pings_between(now - seconds, now)


def unhealthy_statuses(rec: NotifyRecorder, since: float) -> list[Notice]:
    return [
        n for n in rec.with_key("STATUS") if n.at >= since and "UNHEALTHY" in n.fields["STATUS"]
    ]


def test_sigterm_sends_stopping(
    make_daemon: MakeDaemon, recorder: Callable[[DaemonProcess], NotifyRecorder]
) -> None:
    daemon = make_daemon()
    rec = recorder(daemon)
    daemon.start()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    [stopping] = rec.with_key("STOPPING")
    assert stopping.fields["STOPPING"] == "1"
