"""Shared test helpers: polling instead of sleeping, repository paths."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

from hypothesis import HealthCheck, Phase, settings

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # recorded data copied into the repo (see its README)

T = TypeVar("T")
StoreOpener = Callable[[], Any]

# bench/mutation.py runs the tests against each mutant with this profile: the same examples
# every time (a score must not depend on luck), no deadline (mutated code runs slower through
# mutmut's trampolines), no example database carried from one mutant to the next, and no
# shrinking (a failure is all a mutant run needs to know, not the smallest example).
settings.register_profile(
    "mutation",
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


def eventually(check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail with its last error or value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except AssertionError as e:
            last = e
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last: {last!r}")


# -- the two state stores, for tests that must hold on both -------------------------------------

import pytest  # noqa: E402  (the helpers above stay importable without pytest's fixtures)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session; skipped, saying why, where none is installed."""
    from tests.postgres_server import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH or in "
            "/usr/lib/postgresql/*/bin; install Debian's postgresql package (.ci/run does)"
        )
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    """Opens the store under test, again and again (a reopen is a restart): the SQLite file
    in tmp_path, or one fresh PostgreSQL database whose every bot lease this node holds."""
    opened: list[Any] = []
    if request.param == "sqlite":
        from daemon.adapters.sqlite_store import SqliteStore

        def open_sqlite() -> Any:
            opened.append(SqliteStore(tmp_path / "state.db"))
            return opened[-1]

        opener = open_sqlite
    else:
        server = request.getfixturevalue("postgres")
        url = server.database()

        def open_postgres() -> Any:
            from daemon.adapters.postgres_store import PostgresStore
            from daemon.adapters.postgres_url import store_target

            book = HoldingEveryBot("test-node", url)
            opened.append(PostgresStore(store_target(url, {}), book))
            return opened[-1]

        opener = open_postgres
    yield opener
    for store in opened:
        with contextlib.suppress(Exception):
            store.close()


class HoldingEveryBot:
    """A lease book for store-level tests: this node takes a long lease on any bot it is
    asked about (the lease keeper's job in a daemon), so fenced intents pass."""

    def __init__(self, node: str, url: str) -> None:
        from daemon.domain.fleet import LeaseBook

        self.node = node
        self._url = url
        self._book = LeaseBook(node)

    def epoch(self, bot: str) -> int | None:
        held = self._book.epoch(bot)
        if held is not None:
            return held
        import psycopg

        with psycopg.connect(self._url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO leases (bot, holder, epoch, expires_at, acquired_at) "
                "VALUES (%s, %s, 1, now() + interval '1 hour', now()) "
                "ON CONFLICT (bot) DO UPDATE SET holder = excluded.holder, "
                "epoch = leases.epoch + 1, expires_at = excluded.expires_at RETURNING epoch",
                (bot, self.node),
            ).fetchone()
        assert row is not None
        self._book.hold(bot, int(row[0]))
        return int(row[0])

    def hold(self, bot: str, epoch: int) -> None:
        self._book.hold(bot, epoch)

    def drop(self, bot: str) -> None:
        self._book.drop(bot)

    def held(self) -> dict[str, int]:
        return self._book.held()
