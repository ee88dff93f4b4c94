"""Exchange API credentials: from systemd's CREDENTIALS_DIRECTORY or the environment.

Never from config.toml (the config only names them) and never logged: the values
live in a SecretStr-like holder whose repr hides them.

An account with `credentials = "binance-main"` looks, in order, for:
1. `$CREDENTIALS_DIRECTORY/tradectl_binance-main` (the unit's `LoadCredential=
   tradectl:/etc/tradectl/credentials` loads each file of that folder with the
   `tradectl_` prefix), then `$CREDENTIALS_DIRECTORY/binance-main`: a TOML file with
   `api_key`, `secret` and, for Bitget, `password`;
2. the environment: `TRADECTL_BINANCE_MAIN_API_KEY`, `..._SECRET`, `..._PASSWORD`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from daemon.domain.errors import ConfigError
from daemon.redaction import register_secret


@dataclass(frozen=True, slots=True)
class ApiCredentials:
    name: str
    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for value in (self.api_key, self.secret, self.password):
            register_secret(value)  # masked wherever it might show up from now on


def _env_prefix(name: str) -> str:
    return "TRADECTL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_"


def load_credentials(name: str, environ: Mapping[str, str] = os.environ) -> ApiCredentials:
    """The named credentials, or a ConfigError that says where it looked (never a value)."""
    folder = environ.get("CREDENTIALS_DIRECTORY")
    looked: list[str] = []
    if folder:
        for candidate in (Path(folder) / f"tradectl_{name}", Path(folder) / name):
            looked.append(str(candidate))
            if candidate.is_file():
                return _from_file(name, candidate)
    prefix = _env_prefix(name)
    looked.append(f"${prefix}API_KEY / ${prefix}SECRET")
    key, secret = environ.get(prefix + "API_KEY"), environ.get(prefix + "SECRET")
    if key and secret:
        return ApiCredentials(name, key, secret, environ.get(prefix + "PASSWORD") or None)
    raise ConfigError(f"credentials {name!r} not found (looked in {', '.join(looked)})")


def _from_file(name: str, path: Path) -> ApiCredentials:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        # The error text of a TOML parser can quote the file: never pass it on.
        raise ConfigError(
            f"{path}: not a readable TOML credentials file ({type(e).__name__})"
        ) from None
    unknown = sorted(set(raw) - {"api_key", "secret", "password"})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(unknown)} (api_key, secret, password)")
    key, secret, password = raw.get("api_key"), raw.get("secret"), raw.get("password")
    if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
        raise ConfigError(f"{path}: needs non-empty string values for api_key and secret")
    if password is not None and not isinstance(password, str):
        raise ConfigError(f"{path}: password must be a string")
    return ApiCredentials(name, key, secret, password)
