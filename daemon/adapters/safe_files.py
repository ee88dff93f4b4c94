"""The daemon's folders and files, which no other local user may tamper with.

The state folder holds the store and the lock, the socket folder the control socket.
Both must belong to the daemon's user (or root) and be writable by nobody else, or
another user could swap the store, plant a symlink where the lock goes, or put their
own socket where the CLI looks. The one exception is a folder of the daemon's own group
with the setgid bit, as a group-shared folder is usually made. systemd's
StateDirectory= and RuntimeDirectory= (0750, owned by the service's user) pass; a
folder the daemon creates itself is born 0750. Files are opened without following
symlinks and kept private (0600).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from daemon.domain.errors import StorageError, UntrustedPath

FOLDER_MODE = 0o750
FILE_MODE = 0o600


def prepare_folder(path: Path, what: str) -> None:
    """Create `path` (0750) if missing, then refuse it unless only we (or root) control it."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    except FileExistsError:
        raise StorageError(f"{what} {path}: exists and is not a folder") from None
    except NotADirectoryError:
        raise StorageError(f"{what} {path}: part of the path is a file, not a folder") from None
    except OSError as e:
        raise StorageError(f"{what} {path}: cannot create it: {_reason(e)}") from None
    check_folder(path, what)


def check_folder(path: Path, what: str) -> None:
    """Refuse a folder (or a parent of it) that another user owns or may write to."""
    euid, egid = os.geteuid(), os.getegid()
    try:
        resolved = path.resolve(strict=True)
        own = os.stat(resolved)
    except OSError as e:
        raise StorageError(f"{what} {path}: cannot use it: {_reason(e)}") from None
    if not stat.S_ISDIR(own.st_mode):
        raise StorageError(f"{what} {path}: is not a folder")
    problem = _untrusted(own, euid, egid, parent=False)
    if problem:
        raise UntrustedPath(
            f"{what} {path}: {problem}; another user could tamper with it "
            f"(make it belong to uid {euid} with mode 0750, or let systemd create it)"
        )
    for parent in resolved.parents:
        try:
            info = os.stat(parent)
        except OSError as e:
            raise StorageError(f"{what} {path}: cannot check {parent}: {_reason(e)}") from None
        problem = _untrusted(info, euid, egid, parent=True)
        if problem:
            raise UntrustedPath(
                f"{what} {path}: its parent folder {parent} {problem}; another user could "
                "replace the whole folder"
            )


def _untrusted(info: os.stat_result, euid: int, egid: int, *, parent: bool) -> str | None:
    mode = info.st_mode
    if info.st_uid not in (0, euid):
        return f"belongs to uid {info.st_uid}, neither this daemon's user (uid {euid}) nor root"
    if mode & stat.S_IWOTH and not (parent and mode & stat.S_ISVTX):  # /tmp is fine as a parent
        return f"is writable by every user (mode {stat.S_IMODE(mode):04o})"
    if mode & stat.S_IWGRP:
        shared = info.st_gid == egid and (parent or mode & stat.S_ISGID)
        if not (shared or (parent and info.st_gid == 0)):
            return (
                f"is writable by group {info.st_gid} (mode {stat.S_IMODE(mode):04o}); only "
                f"this daemon's own group {egid} with the setgid bit may share it"
            )
    return None


def open_private(path: Path, what: str, *, create: bool = True) -> int:
    """Open (and maybe create, 0600) a file of ours for reading and writing: never through
    a symlink, never anything but a regular file, never one another user owns. The caller
    closes the descriptor."""
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | (os.O_CREAT if create else 0), FILE_MODE)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UntrustedPath(
                f"{what} {path}: is a symbolic link; refusing to follow it"
            ) from None
        raise StorageError(f"{what} {path}: cannot open it: {_reason(e)}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedPath(f"{what} {path}: is not a regular file")
        if info.st_uid not in (0, os.geteuid()):
            raise UntrustedPath(
                f"{what} {path}: belongs to uid {info.st_uid}, not to this daemon's user"
            )
        if stat.S_IMODE(info.st_mode) & ~FILE_MODE and info.st_uid == os.geteuid():
            os.fchmod(fd, FILE_MODE)  # an older tradectl made it readable by the group
    except BaseException:
        os.close(fd)
        raise
    return fd


def secure_existing(path: Path, what: str) -> bool:
    """Check (and tighten to 0600) a file of ours if it exists; False when it does not."""
    try:
        fd = open_private(path, what, create=False)
    except StorageError:
        if not os.path.lexists(path):
            return False
        raise
    os.close(fd)
    return True


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
