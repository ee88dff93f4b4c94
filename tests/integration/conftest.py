from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon_process import DaemonProcess, remove, short_socket_dir, write_config

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here starts real daemons, CLIs or systemd: `slow`, so that
    `pytest -m "not slow"` is the inner loop (unit and component tests, in seconds)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
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
