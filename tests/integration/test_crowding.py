"""Nobody can crowd out the people in charge: other users holding every connection they
can get leave root and the administrators served, and `busy` is never "unreachable".
Real other uids, forked from the root test process (a uid needs no passwd entry)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.conftest import REPO
from tests.integration.daemon_process import DaemonProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other uids")

MakeDaemon = Callable[..., DaemonProcess]
BOT = "eth-ema"
STRANGERS = tuple(range(42010, 42020))  # ten users with no rights on any bot


@dataclass
class Crowd:
    pid: int
    held: int  # connections the server kept open for this user
    dropped_after_s: float | None = None  # when the server hung up on the idle ones


def _hold_as(uid: int, path: str, count: int, report: int) -> None:
    """In a forked child: become `uid`, open `count` connections, say how many the server
    kept, then wait to see how long it lets them idle."""
    os.setgroups([])
    os.setgid(0)  # group 0 may use the 0660 socket, as the daemon's group would
    os.setuid(uid)
    held: list[socket.socket] = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        held.append(s)
    time.sleep(1.0)
    kept = []
    for s in held:
        s.setblocking(False)
        try:
            if s.recv(4096):  # a busy answer: refused
                continue
        except BlockingIOError:
            kept.append(s)  # silence: the server holds a slot for it
    os.write(report, json.dumps({"held": len(kept)}).encode() + b"\n")
    began = time.monotonic()
    for s in kept:
        s.setblocking(True)
        s.settimeout(60)
        s.recv(4096)  # b"" once the server drops the idle connection
    os.write(report, json.dumps({"dropped_after_s": time.monotonic() - began}).encode() + b"\n")
    time.sleep(3600)


@contextmanager
def crowd(daemon: DaemonProcess, uids: tuple[int, ...], each: int) -> Iterator[list[Crowd]]:
    crowds: list[Crowd] = []
    pipes = []
    for uid in uids:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                _hold_as(uid, str(daemon.socket), each, write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        pipe = os.fdopen(read_end, "rb")
        pipes.append(pipe)
        crowds.append(Crowd(pid, json.loads(pipe.readline())["held"]))
    try:
        yield crowds
        for c, pipe in zip(crowds, pipes, strict=True):
            line = pipe.readline()
            if line:
                c.dropped_after_s = json.loads(line)["dropped_after_s"]
    finally:
        for c in crowds:
            os.kill(c.pid, signal.SIGKILL)
            os.waitpid(c.pid, 0)
        for pipe in pipes:
            pipe.close()


def flatten(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradectl.cli", "flatten", *args],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=daemon.config.parent,
    )


def test_strangers_holding_every_slot_they_can_do_not_lock_out_root(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon()
    os.chmod(daemon.socket.parent, 0o755)
    daemon.start()
    with crowd(daemon, STRANGERS, each=20) as crowds:
        held = [c.held for c in crowds]
        assert max(held) <= 8, f"one user holds {max(held)} connections"
        assert sum(held) <= 48, f"strangers hold {sum(held)} connections"
        began = time.monotonic()
        assert daemon.cli("status").returncode == 0
        assert daemon.cli("health", "--grace", "30").returncode in (0, 1)
        assert time.monotonic() - began < 20
        done = flatten(daemon, BOT, "--yes", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert not result.get("direct"), "the daemon answered: no reason to go around it"
        assert result["halted"] == [BOT]
    drops = [c.dropped_after_s for c in crowds if c.held]
    assert drops and all(d is not None and d < 20 for d in drops), drops


def test_busy_is_waited_out_not_taken_for_unreachable(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    held = []
    for _ in range(64):  # every administrator slot, as root: status must wait, not fail
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(daemon.socket))
        held.append(s)
    time.sleep(0.5)
    threading.Timer(2.0, lambda: [s.close() for s in held]).start()
    began = time.monotonic()
    status = daemon.cli("status")
    assert status.returncode == 0, status.stderr
    assert time.monotonic() - began >= 1.0, "it was busy at first and waited"

    held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(64)]
    for s in held:
        s.connect(str(daemon.socket))
    time.sleep(0.5)
    threading.Timer(2.0, lambda: [s.close() for s in held]).start()
    health = daemon.cli("health", "--grace", "20")
    assert health.returncode in (0, 1) and "busy" not in health.stderr, health.stderr

    held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(64)]
    for s in held:
        s.connect(str(daemon.socket))
    time.sleep(0.5)
    threading.Timer(2.0, lambda: [s.close() for s in held]).start()
    done = flatten(daemon, BOT, "--yes", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not json.loads(done.stdout).get("direct"), "busy is not a reason to go direct"
    assert "flattening directly" not in done.stderr


TWO_BOTS = """
[accounts.other]
kind = "paper"

[accounts.other.replay]
data_dir = "{data}"
speed = 600
start = 2025-05-10T00:00:00Z

[bots.eth-ema]
account = "paper"
symbol = "ETH/USDT:USDT"
strategy = "ema_cross"
timeframes = ["1m", "5m"]
autostart = true

[bots.eth-other]
account = "other"
symbol = "ETH/USDT:USDT"
strategy = "ema_cross"
timeframes = ["1m", "5m"]
autostart = true
"""


def test_a_direct_flatten_halts_only_the_bot_it_was_asked_for_and_says_why(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon(bots=TWO_BOTS.format(data=REPO / "data" / "candles")).start()
    daemon.signal(signal.SIGKILL)
    daemon.wait()
    done = flatten(daemon, BOT, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no socket file" in done.stderr or "connection refused" in done.stderr
    assert "flattened directly against the exchanges (daemon not reachable" in done.stdout
    daemon.start()
    assert daemon.bot(BOT)["state"] == "halted"
    assert "direct: daemon not reachable" in daemon.bot(BOT)["halt_reason"]
    assert daemon.bot("eth-other")["state"] in ("starting", "running"), "not asked: not halted"
