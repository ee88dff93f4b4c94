"""The state store a test's daemons use: the SQLite file of each state folder, or a fresh
PostgreSQL database per state folder on the session's throw-away server.

`TRADECTL_TEST_STORES` (comma-separated, default `sqlite`) lists the stores the daemon
tests run on; `sqlite,postgresql` runs every one of them on both. A daemon's environment
gets `TRADECTL_STORE_URL` from here, and a test reads what a daemon stored through
`open_store` / `query`, whatever the store, instead of opening `state.db` itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.ports import StateStore
    from tests.postgres_server import PostgresServer

STORES_ENV = "TRADECTL_TEST_STORES"
KNOWN = ("sqlite", "postgresql")
TEST_NODE = "test-node"  # the node name a test's own store connection writes as


def chosen_stores() -> list[str]:
    """The stores named by TRADECTL_TEST_STORES, checked (a typo must not silently skip)."""
    names = [s.strip() for s in os.environ.get(STORES_ENV, "sqlite").split(",") if s.strip()]
    wrong = [s for s in names if s not in KNOWN]
    if wrong or not names:
        raise ValueError(f"{STORES_ENV}={os.environ.get(STORES_ENV)!r}: use {', '.join(KNOWN)}")
    return names


@dataclass
class StoreUnderTest:
    """One test's store: `kind` is sqlite or postgresql; one database per state folder, as
    a daemon on SQLite has one file per state folder."""

    kind: str
    server: PostgresServer | None = None
    _urls: dict[Path, str] = field(default_factory=dict)

    def url(self, state_dir: Path) -> str | None:
        """The TRADECTL_STORE_URL of a daemon on this state folder (None: its SQLite file)."""
        if self.server is None:
            return None
        key = state_dir.absolute()
        if key not in self._urls:
            self._urls[key] = self.server.database()
        return self._urls[key]

    @contextlib.contextmanager
    def opened(self, state_dir: Path) -> Iterator[StateStore]:
        """The store a daemon on `state_dir` uses, opened by the test. On PostgreSQL the test
        takes the lease of a bot it records an intent for (else it is fenced off) and gives
        every lease back on leaving, so the daemon started next takes its bots at once."""
        url = self.url(state_dir)
        if url is None:
            from daemon.adapters.sqlite_store import SqliteStore

            sqlite = SqliteStore(state_dir / "state.db")
            try:
                yield sqlite
            finally:
                sqlite.close()
            return
        from daemon.adapters.postgres_store import PostgresStore
        from daemon.adapters.postgres_url import store_target
        from tests.conftest import HoldingEveryBot

        store = PostgresStore(store_target(url, {}), HoldingEveryBot(TEST_NODE, url))  # type: ignore[arg-type]
        try:
            yield store
        finally:
            store.close()
            self.query(
                state_dir,
                "UPDATE leases SET holder = NULL, expires_at = now() WHERE holder = ?",
                (TEST_NODE,),
            )

    def touched(self, state_dir: Path) -> bool:
        """Did a daemon on `state_dir` open its store (make the file, or migrate the database)?"""
        if self.url(state_dir) is None:
            return (state_dir / "state.db").exists()
        found = self.query(state_dir, "SELECT to_regclass('schema_version') IS NOT NULL")
        return bool(found[0][0])

    def query(self, state_dir: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of `sql` (SQLite's `?` placeholders) run on the daemon's store, autocommitted."""
        url = self.url(state_dir)
        if url is None:
            db = sqlite3.connect(state_dir / "state.db")
            try:
                with db:
                    return list(db.execute(sql, params))
            finally:
                db.close()
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(re.sub(r"\?", "%s", sql), params)  # type: ignore[call-overload]
            return list(cur.fetchall()) if cur.description is not None else []

    def dump(self, state_dir: Path) -> str:
        """Every row of every table, as text (to look for what must never be stored)."""
        url = self.url(state_dir)
        if url is None:
            db = sqlite3.connect(state_dir / "state.db")
            try:
                return "\n".join(db.iterdump())
            finally:
                db.close()
        import psycopg

        lines: list[str] = []
        with psycopg.connect(url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
            for (table,) in tables:
                for row in conn.execute(f'SELECT * FROM "{table}"').fetchall():
                    lines.append(f"{table}: {row!r}")
        return "\n".join(lines)


_current: StoreUnderTest | None = None


def current() -> StoreUnderTest:
    """The running test's store (SQLite unless a fixture chose PostgreSQL)."""
    return _current if _current is not None else StoreUnderTest("sqlite")


def use(store: StoreUnderTest | None) -> None:
    global _current
    _current = store
