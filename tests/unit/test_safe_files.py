"""The daemon's folders and files: only its own user (or root) may control them, and
nothing is opened through a link someone planted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from daemon.adapters.safe_files import check_folder, prepare_folder
from daemon.adapters.sqlite_store import SqliteStore
from daemon.adapters.state_lock import StateDirLock
from daemon.domain.errors import StorageError, UntrustedPath
from tradectl.client import trusted_server_uids

STRANGER = 42002
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to other uids")


def folder(base: Path, mode: int, uid: int | None = None, gid: int | None = None) -> Path:
    path = base / "state"
    path.mkdir()
    os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    os.chmod(path, mode)
    return path


def private_base(tmp_path: Path) -> Path:
    """pytest's tmp_path may sit under group-writable folders on some hosts; start clean."""
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    return base


@as_root
def test_a_folder_of_another_user_is_refused_naming_that_uid(tmp_path: Path) -> None:
    path = folder(private_base(tmp_path), 0o777, uid=STRANGER)
    with pytest.raises(UntrustedPath, match=f"belongs to uid {STRANGER}"):
        prepare_folder(path, "state folder")


def test_a_folder_writable_by_every_user_is_refused(tmp_path: Path) -> None:
    path = folder(private_base(tmp_path), 0o777)
    with pytest.raises(UntrustedPath, match="writable by every user"):
        check_folder(path, "state folder")


@as_root
def test_a_group_writable_folder_passes_only_for_our_own_group_with_setgid(tmp_path: Path) -> None:
    base = private_base(tmp_path)
    path = folder(base, 0o770, gid=os.getegid())
    with pytest.raises(UntrustedPath, match="writable by group"):
        check_folder(path, "state folder")
    os.chmod(path, 0o2770)
    check_folder(path, "state folder")
    os.chown(path, -1, 42100)
    os.chmod(path, 0o2770)
    with pytest.raises(UntrustedPath, match="writable by group 42100"):
        check_folder(path, "state folder")


def test_the_folders_systemd_makes_pass(tmp_path: Path) -> None:
    path = folder(private_base(tmp_path), 0o750)  # StateDirectoryMode=0750, the service's user
    check_folder(path, "state folder")
    created = tmp_path / "base" / "fresh" / "state"
    prepare_folder(created, "state folder")
    assert stat.S_IMODE(created.stat().st_mode) == 0o750


@as_root
def test_a_parent_folder_another_user_controls_is_refused(tmp_path: Path) -> None:
    base = private_base(tmp_path)
    os.chown(base, STRANGER, -1)
    path = folder(base, 0o750)
    with pytest.raises(UntrustedPath, match=f"parent folder {base} belongs to uid {STRANGER}"):
        check_folder(path, "state folder")


def test_a_world_writable_parent_passes_only_with_the_sticky_bit(tmp_path: Path) -> None:
    base = private_base(tmp_path)
    path = folder(base, 0o750)
    os.chmod(base, 0o777)
    with pytest.raises(UntrustedPath, match="writable by every user"):
        check_folder(path, "state folder")
    os.chmod(base, 0o1777)  # like /tmp: nobody may rename what is not theirs
    check_folder(path, "state folder")


@pytest.mark.parametrize("where", ["regular file", "/proc", "/sys"])
def test_a_state_folder_that_cannot_be_made_is_a_storage_error(tmp_path: Path, where: str) -> None:
    if where == "regular file":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "state"
    else:
        path = Path(where) / "tradectl-state"
    with pytest.raises(StorageError, match=f"state folder {path}"):
        prepare_folder(path, "state folder")


def test_a_symlink_planted_at_the_lock_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    state = folder(private_base(tmp_path), 0o750)
    (state / "daemon.lock").symlink_to(victim)
    with pytest.raises(UntrustedPath, match="symbolic link"):
        StateDirLock(state).acquire()
    assert victim.read_text() == "precious\n"


def test_a_fifo_at_the_lock_or_the_store_is_refused_without_blocking(tmp_path: Path) -> None:
    state = folder(private_base(tmp_path), 0o750)
    os.mkfifo(state / "daemon.lock")
    os.mkfifo(state / "state.db")
    with pytest.raises(UntrustedPath, match="not a regular file"):
        StateDirLock(state).acquire()
    with pytest.raises(UntrustedPath, match="not a regular file"):
        SqliteStore(state / "state.db")


def test_a_symlinked_store_is_refused(tmp_path: Path) -> None:
    state = folder(private_base(tmp_path), 0o750)
    SqliteStore(tmp_path / "elsewhere.db").close()
    (state / "state.db").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(UntrustedPath, match="symbolic link"):
        SqliteStore(state / "state.db")


def test_store_and_lock_are_private_even_when_an_older_version_made_them_readable(
    tmp_path: Path,
) -> None:
    state = folder(private_base(tmp_path), 0o750)
    lock = StateDirLock(state)
    lock.acquire()
    store = SqliteStore(state / "state.db")
    store.journal("hello")
    for name in ("daemon.lock", "state.db", "state.db-wal", "state.db-shm"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    store.close()
    lock.release()
    for name in ("daemon.lock", "state.db"):
        os.chmod(state / name, 0o644)
    StateDirLock(state).acquire()
    SqliteStore(state / "state.db").close()
    for name in ("daemon.lock", "state.db"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name


def test_the_cli_trusts_root_itself_and_the_state_folders_owner(tmp_path: Path) -> None:
    state = folder(private_base(tmp_path), 0o750)
    expected = {0, os.getuid(), os.geteuid(), state.stat().st_uid}
    assert trusted_server_uids(state) == expected
    assert trusted_server_uids(tmp_path / "missing") == {0, os.getuid(), os.geteuid()}
    if os.geteuid() == 0:
        os.chown(state, STRANGER, -1)
        assert STRANGER in trusted_server_uids(state)
