"""Where the config, the state folder and the control socket are, by one set of rules.

The daemon and the CLI both use this module, so they always agree on the socket.
Standard library only: `tradectl status` must stay fast.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradectl.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/tradectl/config.toml")
DEFAULT_STATE_DIR = "state"
DEFAULT_SOCKET = "state/control.sock"
MAX_CONFIG_BYTES = 1024 * 1024


class ConfigNotFound(ConfigError):
    """No file at the config path; `not_found_message` says where else was looked."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: config file not found")
        self.path = path


def not_found_message(
    explicit: Path | None, path: Path, environ: Mapping[str, str] = os.environ
) -> str:
    """Every place the config was looked for, and how to name one."""
    if explicit is not None:
        return f"{path}: config file not found (named by --config)"
    if environ.get("TRADECTL_CONFIG"):
        return f"{path}: config file not found (named by $TRADECTL_CONFIG)"
    tried = [f"./config.toml (in {Path.cwd()})"]
    if environ.get("CONFIGURATION_DIRECTORY"):
        tried.append(str(Path(environ["CONFIGURATION_DIRECTORY"].split(":")[0]) / "config.toml"))
    tried.append(str(SYSTEM_CONFIG))
    return (
        f"no config file found; looked for {', '.join(tried)}; name one with --config PATH "
        "or $TRADECTL_CONFIG"
    )


def find_config(explicit: Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    """`--config`, else TRADECTL_CONFIG, else ./config.toml, else systemd's or /etc's."""
    if explicit is not None:
        return explicit
    if environ.get("TRADECTL_CONFIG"):
        return Path(environ["TRADECTL_CONFIG"])
    local = Path("config.toml")
    if local.is_file():
        return local
    if environ.get("CONFIGURATION_DIRECTORY"):
        return Path(environ["CONFIGURATION_DIRECTORY"].split(":")[0]) / "config.toml"
    return SYSTEM_CONFIG


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; every failure becomes a ConfigError naming the file. Only a
    regular file of at most MAX_CONFIG_BYTES is read: a link to /dev/zero, a FIFO or a
    huge file is refused before it can eat memory or hang the reader."""
    text = _read_bounded(path)
    try:
        return tomllib.loads(text.decode())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None


def _read_bounded(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigNotFound(path) from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot open it: {e.strerror or e}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path}: is a directory, not a config file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: is not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {info.st_size} bytes; a config file may have at most {MAX_CONFIG_BYTES}"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: a config file may have at most {MAX_CONFIG_BYTES} bytes")
    return data


def resolve_against(base: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def state_dir(config_path: Path, configured: str | Path, environ: Mapping[str, str]) -> Path:
    """TRADECTL_STATE_DIR, else systemd's STATE_DIRECTORY, else the config's."""
    if environ.get("TRADECTL_STATE_DIR"):
        return Path(environ["TRADECTL_STATE_DIR"]).absolute()
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    return resolve_against(config_path.absolute().parent, configured)


def socket_path(config_path: Path, configured: str | Path, environ: Mapping[str, str]) -> Path:
    """TRADECTL_SOCKET, else $RUNTIME_DIRECTORY/control.sock, else the config's."""
    if environ.get("TRADECTL_SOCKET"):
        return Path(environ["TRADECTL_SOCKET"]).absolute()
    if environ.get("RUNTIME_DIRECTORY"):
        return Path(environ["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock"
    return resolve_against(config_path.absolute().parent, configured)


def client_paths(
    explicit_config: Path | None, environ: Mapping[str, str] = os.environ
) -> tuple[Path, Path | None]:
    """The socket the CLI should dial, and the state folder whose owner the real daemon is.

    The environment wins without touching the file, so a missing config does not stop
    `tradectl status` when TRADECTL_SOCKET says where to look; the state folder is then
    None unless the environment or a readable config names it.
    """
    socket_from_env = bool(environ.get("TRADECTL_SOCKET") or environ.get("RUNTIME_DIRECTORY"))
    state_from_env = bool(environ.get("TRADECTL_STATE_DIR") or environ.get("STATE_DIRECTORY"))
    config_path = find_config(explicit_config, environ)
    daemon: Any = {}
    config_read = False
    if not (socket_from_env and state_from_env):
        try:
            daemon = read_toml(config_path).get("daemon", {})
            config_read = True
        except ConfigError:
            if not socket_from_env:
                raise
    if not isinstance(daemon, dict):
        daemon = {}
    if socket_from_env:
        socket = socket_path(Path("."), DEFAULT_SOCKET, environ)
    else:
        configured = daemon.get("socket_path", DEFAULT_SOCKET)
        if not isinstance(configured, str):
            raise ConfigError(f"{config_path}: daemon.socket_path: must be a string path")
        socket = socket_path(config_path, configured, environ)
    if state_from_env:
        return socket, state_dir(Path("."), DEFAULT_STATE_DIR, environ)
    state = daemon.get("state_dir", DEFAULT_STATE_DIR)
    if not config_read or not isinstance(state, str):
        return socket, None
    return socket, state_dir(config_path, state, environ)


def client_socket_path(
    explicit_config: Path | None, environ: Mapping[str, str] = os.environ
) -> Path:
    """The socket the CLI should dial, by the daemon's rules (see `client_paths`)."""
    return client_paths(explicit_config, environ)[0]
