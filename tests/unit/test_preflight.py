"""The checks before the store is touched, called directly: each refusal names the file, the
field and what is wrong; each limit is accepted exactly at its bound and refused one step past.
(`tests/integration/test_config_verdicts.py` proves the CLI and the daemon agree on them.)"""

from __future__ import annotations

import grp
import pwd
import re
from dataclasses import replace
from pathlib import Path

import pytest

from daemon import preflight
from daemon.adapters.paper_markets import load_paper_markets
from daemon.control.server import MAX_SOCKET_PATH_BYTES
from daemon.domain.errors import ConfigError
from daemon.preflight import Checked, check_config
from tests.integration.daemon_process import write_config
from tradectl.config import load_config

BOT_LINE = "leverage = 3\n\n[bots.eth-ema.params]"
BINANCE = '[accounts.binance]\nkind = "binanceusdm"\ncredentials = "preflight-test"\n'
NO_CREDENTIALS = {"CREDENTIALS_DIRECTORY": "/nonexistent"}


def config(
    tmp_path: Path,
    *edits: tuple[str, str],
    extra: str = "",
    environ: dict[str, str] | None = None,
) -> Checked:
    """check_config on the shipped config with `edits` (old, new) applied and `extra` added."""
    path = write_config(tmp_path / "config.toml")
    text = path.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text + "\n" + extra + "\n")
    env = {"TRADECTL_SOCKET": "/tmp/tc-preflight/c.sock"} if environ is None else environ
    return check_config(load_config(path, env))


def refused(tmp_path: Path, *edits: tuple[str, str], extra: str = "", **kw: object) -> str:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, *edits, extra=extra, **kw)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'config.toml'}: "), message
    return message


def test_the_shipped_config_passes_with_no_owners_and_no_admin_group(tmp_path: Path) -> None:
    assert config(tmp_path) == Checked(owners={}, admin_gid=None)


def test_owners_and_the_admin_group_resolve_to_ids(tmp_path: Path) -> None:
    root_user, root_group = pwd.getpwuid(0).pw_name, grp.getgrgid(0).gr_name
    checked = config(
        tmp_path,
        (BOT_LINE, f'leverage = 3\nowner = "{root_user}"\n\n[bots.eth-ema.params]'),
        ('log_level = "info"', f'log_level = "info"\nadmin_group = "{root_group}"'),
    )
    assert checked == Checked(owners={"eth-ema": 0}, admin_gid=0)
    by_number = config(
        tmp_path,
        (BOT_LINE, "leverage = 3\nowner = 4321\n\n[bots.eth-ema.params]"),
        ('log_level = "info"', 'log_level = "info"\nadmin_group = 4322'),
    )
    assert by_number == Checked(owners={"eth-ema": 4321}, admin_gid=4322)


def test_an_unknown_owner_or_group_is_named(tmp_path: Path) -> None:
    owner = refused(
        tmp_path, (BOT_LINE, 'leverage = 3\nowner = "no-such-user-tc12"\n\n[bots.eth-ema.params]')
    )
    assert owner.endswith("bots.eth-ema.owner: no user named 'no-such-user-tc12'"), owner
    group = refused(
        tmp_path, ('log_level = "info"', 'log_level = "info"\nadmin_group = "no-such-group-tc12"')
    )
    assert group.endswith("daemon.admin_group: no group named 'no-such-group-tc12'"), group


def test_the_socket_path_may_be_as_long_as_a_unix_socket_allows_and_no_longer(
    tmp_path: Path,
) -> None:
    longest = "/tmp/" + "s" * (MAX_SOCKET_PATH_BYTES - len("/tmp/"))
    assert len(longest) == MAX_SOCKET_PATH_BYTES == 107
    config(tmp_path, environ={"TRADECTL_SOCKET": longest})
    message = refused(tmp_path, environ={"TRADECTL_SOCKET": longest + "s"})
    assert (
        f"daemon.socket_path: the control socket {longest}s (from the config or TRADECTL_SOCKET) "
        f"is 108 bytes long; a Unix socket path may have at most 107"
    ) in message


def test_a_replay_without_candles_for_a_symbol_names_the_file_it_looked_for(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    data_dir = str(Path(__file__).resolve().parents[2] / "data" / "candles")
    message = refused(tmp_path, (data_dir, str(empty)))
    assert (
        f"accounts.paper.replay.data_dir: no candles for ETH/USDT:USDT (looked for {empty}/"
    ) in message


def test_a_candle_file_that_is_not_one_is_refused_under_data_dir(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ETH_USDT_USDT-1m-futures.feather").write_bytes(b"not arrow at all")
    data_dir = str(Path(__file__).resolve().parents[2] / "data" / "candles")
    message = refused(tmp_path, (data_dir, str(broken)))
    assert ": accounts.paper.replay.data_dir: " in message and "feather" in message, message


def test_a_replay_start_outside_the_data_is_refused_under_start(tmp_path: Path) -> None:
    message = refused(tmp_path, ("start = 2025-05-10", "start = 2024-05-10"))
    assert re.search(r": accounts\.paper\.replay\.start: .* is outside the data", message), message


def test_a_timeframe_the_replay_cannot_build_is_named_with_its_bot(tmp_path: Path) -> None:
    message = refused(tmp_path, ('timeframes = ["1m", "5m"]', 'timeframes = ["1m", "5m", "7m"]'))
    assert ": bots.eth-ema.timeframes: timeframe '7m' does not divide a day" in message, message


def test_the_strategy_s_own_timeframes_count_for_the_replay(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        ('timeframes = ["1m", "5m"]', 'timeframes = ["1m", "5m", "7m"]'),
        ('trend_timeframe = "5m"', 'trend_timeframe = "7m"'),
    )
    assert "'7m'" in message, message


def test_a_live_priced_paper_account_needs_no_candle_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    data_dir = str(Path(__file__).resolve().parents[2] / "data" / "candles")
    checked = config(
        tmp_path,
        ('kind = "paper"\n', 'kind = "paper"\nmarket_data = "binanceusdm"\n'),
        (data_dir, str(empty)),
    )
    assert checked == Checked(owners={}, admin_gid=None)


def test_a_paper_bot_on_a_market_the_paper_exchange_lacks_is_refused(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        ('kind = "paper"\n', 'kind = "paper"\nmarket_data = "binanceusdm"\n'),
        ('symbol = "ETH/USDT:USDT"', 'symbol = "SOL/USDT:USDT"'),
    )
    assert message.endswith(
        "bots.eth-ema.symbol: the paper exchange has no market SOL/USDT:USDT "
        "(it knows BTC/USDT:USDT, ETH/USDT:USDT)"
    ), message


@pytest.mark.parametrize("field", ["max_position_usdt", "max_account_position_usdt"])
def test_a_position_cap_at_the_minimum_order_value_passes_and_below_it_is_refused(
    tmp_path: Path, field: str
) -> None:
    def cap(value: str) -> tuple[str, str]:
        shipped = {"max_position_usdt": "250", "max_account_position_usdt": "500"}[field]
        return (f"{field} = {shipped}", f"{field} = {value}")

    config(tmp_path, cap("20"))  # ETH's minimum order value is 20 USDT
    message = refused(tmp_path, cap("19.5"))
    assert message.endswith(
        f"risk.{field}: 19.5 USDT is below the minimum order value of ETH/USDT:USDT (20 USDT): "
        "bot eth-ema could never open a position"
    ), message


def test_a_leverage_the_market_allows_passes_and_one_more_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped markets allow 125x, the schema's own cap; a market allowing 20x shows
    the rule (the market table is data, swapped here for a smaller one)."""
    eth = load_paper_markets()["ETH/USDT:USDT"]
    monkeypatch.setattr(
        preflight, "load_paper_markets", lambda: {eth.symbol: replace(eth, max_leverage=20)}
    )
    risk = ("max_leverage = 3", "max_leverage = 50")
    config(tmp_path, risk, (BOT_LINE, "leverage = 20\n\n[bots.eth-ema.params]"))
    message = refused(tmp_path, risk, (BOT_LINE, "leverage = 21\n\n[bots.eth-ema.params]"))
    assert message.endswith(
        "bots.eth-ema.leverage: 21 exceeds the 20x that ETH/USDT:USDT allows"
    ), message


def test_bots_on_an_exchange_account_are_not_held_to_the_paper_markets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADECTL_PREFLIGHT_TEST_API_KEY", "k")
    monkeypatch.setenv("TRADECTL_PREFLIGHT_TEST_SECRET", "s")
    doge = (
        '[bots.doge]\naccount = "binance"\nsymbol = "DOGE/USDT:USDT"\nstrategy = "ema_cross"\n'
        'timeframes = ["1m", "5m"]\nleverage = 3\n'
    )
    assert config(tmp_path, extra=BINANCE + doge) == Checked(owners={}, admin_gid=None)


def test_missing_credentials_are_named_with_their_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRADECTL_PREFLIGHT_TEST_API_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    message = refused(tmp_path, extra=BINANCE)
    assert ": accounts.binance.credentials: credentials 'preflight-test' not found" in message


def test_the_first_problem_is_the_one_reported_in_a_fixed_order(tmp_path: Path) -> None:
    """Socket path before data before markets: the same config, the same first words."""
    empty = tmp_path / "empty"
    empty.mkdir()
    data_dir = str(Path(__file__).resolve().parents[2] / "data" / "candles")
    both = refused(tmp_path, (data_dir, str(empty)), environ={"TRADECTL_SOCKET": "/" + "s" * 200})
    assert "daemon.socket_path" in both
    data_first = refused(
        tmp_path, (data_dir, str(empty)), ("max_position_usdt = 250", "max_position_usdt = 1")
    )
    assert "replay.data_dir" in data_first


def test_of_two_timeframes_the_replay_cannot_build_the_shorter_is_named(tmp_path: Path) -> None:
    message = refused(
        tmp_path, ('timeframes = ["1m", "5m"]', 'timeframes = ["1m", "5m", "11m", "7m"]')
    )
    assert "timeframe '7m' does not divide a day" in message, message


def test_a_replay_start_outside_the_data_names_the_candle_file(tmp_path: Path) -> None:
    message = refused(tmp_path, ("start = 2025-05-10", "start = 2024-05-10"))
    assert "ETH_USDT_USDT-1m-futures.feather: replay start 2024-05-10" in message, message


def test_a_replay_account_after_a_live_priced_one_is_still_checked(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    data_dir = str(Path(__file__).resolve().parents[2] / "data" / "candles")
    live_first = (
        '[accounts.live]\nkind = "paper"\nmarket_data = "binanceusdm"\n\n[accounts.paper]\n'
    )
    message = refused(tmp_path, ("[accounts.paper]\n", live_first), (data_dir, str(empty)))
    assert "accounts.paper.replay.data_dir: no candles for ETH/USDT:USDT" in message, message


def test_a_paper_bot_after_an_exchange_bot_is_still_held_to_the_paper_markets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADECTL_PREFLIGHT_TEST_API_KEY", "k")
    monkeypatch.setenv("TRADECTL_PREFLIGHT_TEST_SECRET", "s")
    doge_first = (
        '[bots.doge]\naccount = "binance"\nsymbol = "DOGE/USDT:USDT"\nstrategy = "ema_cross"\n'
        'timeframes = ["1m", "5m"]\nleverage = 3\n\n[bots.eth-ema]\n'
    )
    message = refused(
        tmp_path,
        ("[bots.eth-ema]\n", doge_first),
        ("max_position_usdt = 250", "max_position_usdt = 19.5"),
        extra=BINANCE,
    )
    assert "risk.max_position_usdt: 19.5 USDT is below" in message, message


STORE = 'log_level = "info"\n\n[store]\nurl = "{url}"\n'
FLEET_URL = "postgresql://tradectl@db.internal:5432/tradectl"
BTC_BOT = (
    '[bots.btc-ema]\naccount = "{account}"\nsymbol = "BTC/USDT:USDT"\nstrategy = "ema_cross"\n'
    'timeframes = ["1m", "5m"]\nleverage = 3\n'
)
SECOND_PAPER = '\n[accounts.paper2]\nkind = "paper"\nmarket_data = "binanceusdm"\n'


def store(url: str) -> tuple[str, str]:
    return ('log_level = "info"\n', STORE.format(url=url))


def on_nodes(*nodes: str) -> tuple[str, str]:
    listed = ", ".join(f'"{n}"' for n in nodes)
    return (BOT_LINE, f"leverage = 3\nnodes = [{listed}]\n\n[bots.eth-ema.params]")


@pytest.fixture
def no_store_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's password is looked for in the credentials folder: none here."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_a_bot_placed_on_nodes_needs_a_fleet_store(tmp_path: Path) -> None:
    message = refused(tmp_path, on_nodes("a", "b"))
    assert message.endswith(
        'bots.eth-ema.nodes: placing a bot on nodes needs a fleet (store.url = "postgresql://'
        '..."); the SQLite store is one node'
    ), message


@pytest.mark.usefixtures("no_store_password")
def test_a_bot_placed_on_nodes_of_a_fleet_store_passes(tmp_path: Path) -> None:
    checked = config(tmp_path, on_nodes("a", "b"), store(FLEET_URL))
    assert checked == Checked(owners={}, admin_gid=None)


@pytest.mark.usefixtures("no_store_password")
def test_a_fleet_store_from_the_environment_counts_for_placed_bots(tmp_path: Path) -> None:
    environ = {"TRADECTL_SOCKET": "/tmp/tc-preflight/c.sock", "TRADECTL_STORE_URL": FLEET_URL}
    assert config(tmp_path, on_nodes("a"), environ=environ) == Checked({}, None)


@pytest.mark.usefixtures("no_store_password")
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "postgresql://tradectl:hunter2@db.internal/tradectl",
            "carries a password; the password belongs in the credentials folder "
            "(tradectl_store-password) or PGPASSWORD, never in the config or the environment "
            "variable TRADECTL_STORE_URL",
        ),
        (
            "postgresql://tradectl@db.internal:5432/",
            "names no database (postgresql://user@host:5432/tradectl)",
        ),
        (
            "postgresql://tradectl@db.internal:port/tradectl",
            "not a valid URL (Port could not be cast to integer value as 'port')",
        ),
        (  # only the field's name is replaced, never the user's own words
            "postgresql://tradectl@db.internal:store.url/tradectl",
            "not a valid URL (Port could not be cast to integer value as 'store.url')",
        ),
    ],
)
def test_a_bad_store_url_is_named_where_it_was_set(tmp_path: Path, url: str, problem: str) -> None:
    """The same problem under the name the user wrote it: the file's `store.url`, or the
    environment variable that overrides it."""
    in_file = refused(tmp_path, store(url))
    assert in_file == f"{tmp_path / 'config.toml'}: store.url: {problem}", in_file
    environ = {"TRADECTL_SOCKET": "/tmp/tc-preflight/c.sock", "TRADECTL_STORE_URL": url}
    from_env = refused(tmp_path, environ=environ)
    assert from_env == f"{tmp_path / 'config.toml'}: TRADECTL_STORE_URL: {problem}", from_env
    overriding = refused(tmp_path, store(FLEET_URL), environ=environ)
    assert overriding == from_env, overriding
    same = refused(tmp_path, store(url), environ=environ)
    assert same == in_file, same


@pytest.mark.usefixtures("no_store_password")
def test_a_fleet_needs_a_paper_account_per_bot(tmp_path: Path) -> None:
    """A paper account moves with its bot from node to node: two bots cannot share one.
    The bots are named in order whatever the config's order."""
    shared = BTC_BOT.format(account="paper")
    eth_last = ("[bots.eth-ema]\n", shared + "\n[bots.eth-ema]\n")
    message = refused(tmp_path, eth_last, store(FLEET_URL))
    assert message == (
        f"{tmp_path / 'config.toml'}: accounts.paper: a fleet moves a paper account with its "
        "bot, so each bot needs its own paper account; btc-ema, eth-ema share this one"
    ), message
    config(tmp_path, eth_last)  # the SQLite store: one node, nothing moves
    own = BTC_BOT.format(account="paper2")
    assert config(tmp_path, store(FLEET_URL), extra=SECOND_PAPER + own) == Checked({}, None)


@pytest.mark.usefixtures("no_store_password")
def test_a_fleet_lets_bots_share_an_exchange_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADECTL_PREFLIGHT_TEST_API_KEY", "k")
    monkeypatch.setenv("TRADECTL_PREFLIGHT_TEST_SECRET", "s")
    bots = (
        BTC_BOT.format(account="binance")
        + "\n"
        + BTC_BOT.format(account="binance").replace("btc-ema", "btc-two").replace("BTC/", "DOGE/")
    )
    assert config(tmp_path, store(FLEET_URL), extra=BINANCE + bots) == Checked({}, None)


def test_a_bad_trading_session_is_named_with_its_bot(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        (BOT_LINE, 'leverage = 3\nsessions = ["Mon-Fri 10:00-10:00 UTC"]\n\n[bots.eth-ema.params]'),
    )
    assert message == (
        f"{tmp_path / 'config.toml'}: bots.eth-ema.sessions: session 'Mon-Fri 10:00-10:00 UTC': "
        "start and end are the same time"
    ), message


def test_flattening_at_the_session_end_needs_sessions(tmp_path: Path) -> None:
    flatten = 'leverage = 3\nsession_end = "flatten"\n'
    message = refused(tmp_path, (BOT_LINE, flatten + "\n[bots.eth-ema.params]"))
    assert message == (
        f'{tmp_path / "config.toml"}: bots.eth-ema.session_end: "flatten" needs sessions to end'
    ), message
    with_sessions = flatten + 'sessions = ["Mon-Fri 07:00-10:00 Europe/London"]\n'
    assert config(tmp_path, (BOT_LINE, with_sessions + "\n[bots.eth-ema.params]")) == Checked(
        {}, None
    )
    keep = 'leverage = 3\nsession_end = "keep"\n\n[bots.eth-ema.params]'
    assert config(tmp_path, (BOT_LINE, keep)) == Checked({}, None)
