from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir, write_config
from tests.store_under_test import StoreUnderTest, chosen_stores, use

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here starts real daemons, CLIs or systemd: `slow`, so that
    `pytest -m "not slow"` is the inner loop (unit and component tests, in seconds)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test whose daemons use `daemon_store` runs once per store of TRADECTL_TEST_STORES;
    one marked `sqlite_only(reason)` (it is about the SQLite file itself) on SQLite alone."""
    if "daemon_store" not in metafunc.fixturenames:
        return
    stores = chosen_stores()
    if metafunc.definition.get_closest_marker("sqlite_only") is not None:
        stores = ["sqlite"]
    metafunc.parametrize("daemon_store", stores, indirect=True)


@pytest.fixture
def daemon_store(request: pytest.FixtureRequest) -> Iterator[StoreUnderTest]:
    """The store of every daemon this test starts: each state folder's SQLite file, or a
    fresh database per state folder on the worker's PostgreSQL server."""
    kind = getattr(request, "param", "sqlite")
    store = StoreUnderTest(kind, request.getfixturevalue("postgres") if kind != "sqlite" else None)
    use(store)
    try:
        yield store
    finally:
        use(None)


@pytest.fixture
def make_daemon(
    tmp_path: Path, daemon_store: StoreUnderTest
) -> Iterator[Callable[..., DaemonProcess]]:
    """Build daemons on a copy of the shipped config, each with its own state and socket."""
    made: list[DaemonProcess] = []
    socket_dirs: list[Path] = []

    def make(
        overrides: str = "", *, speed: float = 600, bots: str | None = None, name: str = "d"
    ) -> DaemonProcess:
        socket_dir = short_socket_dir()
        socket_dirs.append(socket_dir)
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        config = write_config(folder / "config.toml", overrides, speed=speed, bots=bots)
        daemon = DaemonProcess(
            config, folder / "state", socket_dir / "control.sock", folder / "daemon.log"
        )
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()
    for folder in socket_dirs:
        remove(folder)
