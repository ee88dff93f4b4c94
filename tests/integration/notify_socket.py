"""A real datagram socket standing in for systemd's NOTIFY_SOCKET, recording what arrives."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Notice:
    at: float  # time.monotonic() on arrival
    fields: dict[str, str]


@dataclass
class NotifyRecorder:
    path: Path
    on_ready: Callable[[], object] | None = None
    notices: list[Notice] = field(default_factory=list)
    ready_probe: object = None

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            notice = Notice(time.monotonic(), fields)
            if "READY" in fields and self.on_ready is not None and self.ready_probe is None:
                self.ready_probe = (
                    self.on_ready()
                )  # what the world looks like the instant READY lands
            self.notices.append(notice)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def with_key(self, key: str) -> list[Notice]:
        return [n for n in list(self.notices) if key in n.fields]

    def statuses(self) -> list[str]:
        return [n.fields["STATUS"] for n in self.with_key("STATUS")]

    def pings_between(self, start: float, end: float) -> list[float]:
        return [n.at for n in self.with_key("WATCHDOG") if start <= n.at <= end]
