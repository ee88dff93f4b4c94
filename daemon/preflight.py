"""Every check the daemon makes before it touches the store, in one function.

`tradectl config check` runs exactly this, so a config it passes is one the daemon
starts on, and one it refuses the daemon refuses with the same words (exit 78):
strategies and their parameters; the socket path's length; for each replay account the
candle file of every symbol its bots trade, the timeframes the replay must build, and a
`start` inside the data; owners and the admin group that exist on this host; exchange
credentials that are present (not whether the exchange accepts them); trading sessions
that parse; alert URLs Apprise can use, with their secrets present; and what the
paper exchange's market rules make of the risk limits (a position cap below a market's
minimum order value means a bot that can never trade); a PostgreSQL store's URL (never
with a password in it) and what a fleet needs (one paper account per bot). Not checked
here: who owns the state and socket folders, which depends on the user the daemon runs as.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from daemon.adapters.candle_files import load_candles, replay_file
from daemon.adapters.paper_markets import load_paper_markets
from daemon.adapters.postgres_url import store_target
from daemon.adapters.replay_feed import check_timeframes, start_index
from daemon.control.server import MAX_SOCKET_PATH_BYTES
from daemon.credentials import load_credentials
from daemon.domain.errors import ConfigError
from daemon.domain.sessions import SessionSpecError, parse_sessions
from daemon.domain.timeframes import timeframe_seconds
from tradectl.config import ExchangeAccount, LoadedConfig, PaperAccount, check_strategies


@dataclass(frozen=True, slots=True)
class Checked:
    """What the checks resolved, for the daemon to use as is."""

    owners: dict[str, int]  # bot -> uid, for bots with a configured owner
    admin_gid: int | None


def check_config(loaded: LoadedConfig) -> Checked:
    """Raise ConfigError naming the file and field of the first problem found."""
    strategies = check_strategies(loaded)
    _check_socket_path(loaded)
    _check_replay_data(loaded, strategies)
    _check_paper_markets(loaded)
    _check_credentials(loaded)
    _check_store(loaded)
    _check_sessions(loaded)
    _check_alerts(loaded)
    owners = {
        name: _uid(loaded, name, bot.owner)
        for name, bot in loaded.config.bots.items()
        if bot.owner is not None
    }
    group = loaded.config.daemon.admin_group
    return Checked(owners, None if group is None else _gid(loaded, group))


def _check_socket_path(loaded: LoadedConfig) -> None:
    size = len(os.fsencode(loaded.socket_path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"{loaded.path}: daemon.socket_path: the control socket {loaded.socket_path} (from "
            f"the config or TRADECTL_SOCKET) is {size} bytes long; a Unix socket path may have "
            f"at most {MAX_SOCKET_PATH_BYTES}"
        )


def _check_replay_data(loaded: LoadedConfig, strategies: dict[str, Any]) -> None:
    config = loaded.config
    for account_name, account in config.accounts.items():
        if not isinstance(account, PaperAccount) or account.market_data != "replay":
            continue
        replay = account.replay
        bots = {name: bot for name, bot in config.bots.items() if bot.account == account_name}
        for symbol in sorted({bot.symbol for bot in bots.values()}):
            data_file = replay_file(loaded.resolve(replay.data_dir), symbol)
            if not data_file.exists():
                raise ConfigError(
                    f"{loaded.path}: accounts.{account_name}.replay.data_dir: no candles for "
                    f"{symbol} (looked for {data_file})"
                )
            where = f"{loaded.path}: accounts.{account_name}.replay"
            try:
                data = load_candles(data_file)
            except ConfigError as e:
                raise ConfigError(f"{where}.data_dir: {e}") from None
            if replay.start is not None:
                try:
                    start_index(data_file, data.first_minute, data.height, replay.start)
                except ConfigError as e:
                    raise ConfigError(f"{where}.start: {e}") from None
            # One bot per symbol and account (the schema's rule): the feed is this bot's.
            [name] = [n for n, b in bots.items() if b.symbol == symbol]
            timeframes = {"1m", *bots[name].timeframes, *strategies[name].timeframes}
            try:
                check_timeframes(sorted(timeframes, key=timeframe_seconds))
            except ValueError as e:
                raise ConfigError(f"{loaded.path}: bots.{name}.timeframes: {e}") from None


def _check_paper_markets(loaded: LoadedConfig) -> None:
    config = loaded.config
    paper = [n for n, a in config.accounts.items() if isinstance(a, PaperAccount)]
    if not paper:
        return
    markets = load_paper_markets()
    risk = config.risk
    for name, bot in config.bots.items():
        if bot.account not in paper:
            continue
        market = markets.get(bot.symbol)
        if market is None:
            raise ConfigError(
                f"{loaded.path}: bots.{name}.symbol: the paper exchange has no market "
                f"{bot.symbol} (it knows {', '.join(sorted(markets))})"
            )
        for field, cap in (
            ("max_position_usdt", risk.max_position_usdt),
            ("max_account_position_usdt", risk.max_account_position_usdt),
        ):
            if cap < market.min_notional:
                raise ConfigError(
                    f"{loaded.path}: risk.{field}: {_usdt(cap)} USDT is below the minimum "
                    f"order value of {bot.symbol} ({_usdt(market.min_notional)} USDT): bot "
                    f"{name} could never open a position"
                )
        if bot.leverage > market.max_leverage:
            raise ConfigError(
                f"{loaded.path}: bots.{name}.leverage: {bot.leverage} exceeds the "
                f"{market.max_leverage}x that {bot.symbol} allows"
            )


def _check_credentials(loaded: LoadedConfig) -> None:
    for name, account in loaded.config.accounts.items():
        if isinstance(account, ExchangeAccount):
            try:
                load_credentials(account.credentials)
            except ConfigError as e:
                raise ConfigError(f"{loaded.path}: accounts.{name}.credentials: {e}") from None


def _check_store(loaded: LoadedConfig) -> None:
    """A PostgreSQL store: a URL without a password, and what a fleet needs of the config."""
    config = loaded.config
    url = loaded.store_url
    if url is None:
        for name, bot in config.bots.items():
            if bot.nodes is not None:
                raise ConfigError(
                    f"{loaded.path}: bots.{name}.nodes: placing a bot on nodes needs a fleet "
                    '(store.url = "postgresql://..."); the SQLite store is one node'
                )
        return
    try:
        store_target(url)
    except ConfigError as e:
        where = "TRADECTL_STORE_URL" if url != config.store.url else "store.url"
        raise ConfigError(f"{loaded.path}: {str(e).replace('store.url', where, 1)}") from None
    users: dict[str, list[str]] = {}
    for name, bot in config.bots.items():
        if isinstance(config.accounts[bot.account], PaperAccount):
            users.setdefault(bot.account, []).append(name)
    for account, bots in sorted(users.items()):
        if len(bots) > 1:
            raise ConfigError(
                f"{loaded.path}: accounts.{account}: a fleet moves a paper account with its "
                f"bot, so each bot needs its own paper account; {', '.join(sorted(bots))} "
                "share this one"
            )


def _check_sessions(loaded: LoadedConfig) -> None:
    for name, bot in loaded.config.bots.items():
        try:
            parse_sessions(bot.sessions)
        except SessionSpecError as e:
            raise ConfigError(f"{loaded.path}: bots.{name}.sessions: {e}") from None
        if bot.session_end == "flatten" and not bot.sessions:
            raise ConfigError(
                f'{loaded.path}: bots.{name}.session_end: "flatten" needs sessions to end'
            )


def _check_alerts(loaded: LoadedConfig) -> None:
    """Every secret present and every URL one Apprise can use (nothing is sent)."""
    from daemon.alerting import build_alerter

    build_alerter(loaded, None)


def _uid(loaded: LoadedConfig, bot: str, owner: str | int) -> int:
    if isinstance(owner, int):
        return owner
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise ConfigError(f"{loaded.path}: bots.{bot}.owner: no user named {owner!r}") from None


def _gid(loaded: LoadedConfig, group: str | int) -> int:
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"{loaded.path}: daemon.admin_group: no group named {group!r}") from None


def _usdt(value: Decimal) -> str:
    return f"{value.normalize():f}"
