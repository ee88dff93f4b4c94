"""One daemon per state folder, enforced by an flock the kernel releases on any exit."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from daemon.domain.errors import StateLocked


class StateDirLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "daemon.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLocked(
                f"another tradectl daemon (pid {holder}) already uses the state folder "
                f"{self.path.parent}; stop it first or give this one its own TRADECTL_STATE_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
