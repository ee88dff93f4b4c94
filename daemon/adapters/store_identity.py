"""The store cannot vanish silently: a marker beside it remembers which store lived here.

A start that finds no store (or another one) where the marker says a store lived would
otherwise take it for a first start: bots the operator stopped autostart, history, PnL
and paper balances are gone, and nothing says so. Such a start is refused until the
operator says otherwise (`tradectl daemon --new-store`). The marker holds the store's
id, which the store keeps in its meta table too.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import structlog

from daemon.adapters.safe_files import open_private
from daemon.adapters.sqlite_store import SqliteStore
from daemon.domain.errors import StorageError, StoreMissing

STORE_FILE = "state.db"
MARKER_FILE = "store.id"
STORE_ID = "store_id"
NEW_STORE_FLAG = "--new-store"


def open_state_store(state_dir: Path, *, new_store: bool = False) -> SqliteStore:
    """Open the daemon's store if it is the one this folder had; else refuse (StoreMissing)
    unless `new_store` accepts what is there (or a new, empty store) on purpose."""
    path = state_dir / STORE_FILE
    marker = read_marker(state_dir)
    existed = os.path.lexists(path)
    if not existed and marker is not None:
        if not new_store:
            raise StoreMissing(
                f"state store {path} is gone, but {state_dir / MARKER_FILE} says one lived here "
                f"(id {marker}). Starting afresh would silently reset every bot's desired state, "
                "the orders, the PnL history and the paper balances, so nothing was started. "
                f"Restore the store from a backup, or start afresh on purpose: tradectl daemon "
                f"{NEW_STORE_FLAG}"
            )
        _set_aside_leftovers(path)
        structlog.get_logger().warning(
            "store_accepted", store=str(path), lost=marker, note=f"{NEW_STORE_FLAG}: a new store"
        )
    store = SqliteStore(path)
    try:
        found = store.meta(STORE_ID)
        if marker is not None and found != marker and not new_store:
            raise StoreMissing(
                f"state store {path} is not the store that lived here: it is "
                f"{'a store without an id' if found is None else f'store {found}'}, "
                f"{state_dir / MARKER_FILE} says {marker}. It was replaced (or made by a direct "
                "flatten after the store was lost); nothing was started. Put the right store "
                f"back, or accept this one on purpose: tradectl daemon {NEW_STORE_FLAG}"
            )
        if marker is not None and found != marker:
            structlog.get_logger().warning(
                "store_accepted", store=str(path), lost=marker, found=found, note=NEW_STORE_FLAG
            )
        if found is None:
            found = uuid.uuid4().hex
            store.set_meta(STORE_ID, found)
        if found != marker:
            write_marker(state_dir, found)
    except BaseException:
        store.close()
        raise
    return store


def store_missing_warning(state_dir: Path) -> str | None:
    """For a direct flatten, which must work anyway: what to tell about a lost store."""
    marker = read_marker(state_dir)
    if marker is None or os.path.lexists(state_dir / STORE_FILE):
        return None
    return (
        f"state store {state_dir / STORE_FILE} is gone (the marker says store {marker} lived "
        "here); the halts go into a new store, and the daemon will not start on it until "
        f"someone runs tradectl daemon {NEW_STORE_FLAG}"
    )


def read_marker(state_dir: Path) -> str | None:
    path = state_dir / MARKER_FILE
    if not os.path.lexists(path):
        return None
    fd = open_private(path, "store marker", create=False)
    try:
        text = os.read(fd, 256).decode(errors="replace").strip()
    finally:
        os.close(fd)
    return text or None


def write_marker(state_dir: Path, store_id: str) -> None:
    path = state_dir / MARKER_FILE
    fd = open_private(path, "store marker")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{store_id}\n".encode(), 0)
        os.fsync(fd)
    except OSError as e:
        raise StorageError(f"store marker {path}: cannot write it: {e.strerror}") from None
    finally:
        os.close(fd)


def _set_aside_leftovers(path: Path) -> None:
    """A -wal or -shm file of the lost store must not be replayed into the new one."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in ("-wal", "-shm"):
        leftover = path.with_name(path.name + suffix)
        if os.path.lexists(leftover):
            os.rename(leftover, leftover.with_name(f"{leftover.name}.orphaned-{stamp}"))
