"""One daemon per state folder, enforced by an flock the kernel releases on any exit."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from daemon.adapters.safe_files import open_private
from daemon.domain.errors import StateLocked, StorageError


class StateDirLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "daemon.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = open_private(self.path, "lock file")  # never through a planted symlink
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLocked(
                f"another tradectl daemon (pid {holder}) already uses the state folder "
                f"{self.path.parent}; stop it first or give this one its own TRADECTL_STATE_DIR"
            ) from None
        except OSError as e:
            os.close(fd)
            raise StorageError(f"lock file {self.path}: cannot lock it: {e.strerror}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise StorageError(f"lock file {self.path}: cannot write it: {e.strerror}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
