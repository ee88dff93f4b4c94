"""sd_notify through sdnotify: READY, STATUS, WATCHDOG, STOPPING. A no-op without NOTIFY_SOCKET."""

from __future__ import annotations

import os
from collections.abc import Mapping

import sdnotify

from daemon.redaction import scrub


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        watchdog_for_us = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 1e6 if watchdog_for_us else None

    def _send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(scrub(message))  # STATUS= shows in systemctl status

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def stopping(self, status: str = "stopping") -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")
