"""Where the PostgreSQL store lives, and its password, kept out of config and logs.

The URL (`[store] url` or TRADECTL_STORE_URL) names user, host, port and database and may
carry libpq options (sslmode, sslrootcert...); a password in it is refused. The password
comes from systemd's credentials folder (`tradectl_store-password`, then
`store-password`), else libpq's own PGPASSWORD / PGPASSFILE (~/.pgpass). It is
registered with the scrubber, so no log line or error reply can show it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from daemon.domain.errors import ConfigError
from daemon.redaction import register_secret

PASSWORD_CREDENTIALS = ("tradectl_store-password", "store-password")
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class StoreTarget:
    url: str
    password: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    # A node paused inside a transaction holds row locks (a lease row among them): the
    # server ends such a session after this long, so a takeover is never held up longer.
    idle_in_transaction_s: float = DEFAULT_TIMEOUT_S

    @property
    def conninfo(self) -> str:
        return self.url

    def connect_kwargs(self, application_name: str) -> dict[str, Any]:
        """Every wait bounded: connecting, statements, locks, and a dead peer (keepalives)."""
        bound_ms = int(self.timeout_s * 1000)
        kwargs: dict[str, Any] = {
            "connect_timeout": max(1, int(self.timeout_s)),
            "application_name": application_name[:63],
            "keepalives": 1,
            "keepalives_idle": 2,
            "keepalives_interval": 1,
            "keepalives_count": 2,
            "tcp_user_timeout": bound_ms,
            "options": f"-c statement_timeout={bound_ms} -c lock_timeout={bound_ms} "
            "-c idle_in_transaction_session_timeout="
            f"{max(100, int(self.idle_in_transaction_s * 1000))}",
        }
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    def __str__(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"  # no query: it may name files


def store_target(url: str, environ: Mapping[str, str] = os.environ) -> StoreTarget:
    """The store's URL checked, with the password found (or None: libpq's own sources)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError as e:
        raise ConfigError(f"store.url: not a valid URL ({e})") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("store.url: must be a postgresql:// URL")
    if parts.password is not None:
        raise ConfigError(
            "store.url: carries a password; the password belongs in the credentials folder "
            f"({PASSWORD_CREDENTIALS[0]}) or PGPASSWORD, never in the config or the environment"
            " variable TRADECTL_STORE_URL"
        )
    if not parts.path.strip("/"):
        raise ConfigError("store.url: names no database (postgresql://user@host:5432/tradectl)")
    password = _password(environ)
    register_secret(password)
    register_secret(environ.get("PGPASSWORD"))
    return StoreTarget(url, password)


def _password(environ: Mapping[str, str]) -> str | None:
    folder = environ.get("CREDENTIALS_DIRECTORY")
    if folder:
        for name in PASSWORD_CREDENTIALS:
            path = Path(folder) / name
            if path.is_file():
                try:
                    text = path.read_text().strip()
                except (OSError, UnicodeDecodeError) as e:
                    raise ConfigError(f"{path}: cannot read the store password: {e}") from None
                if not text:
                    raise ConfigError(f"{path}: the store password file is empty")
                return text
    return None  # libpq reads PGPASSWORD / PGPASSFILE itself
