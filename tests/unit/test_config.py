"""The config: the shipped file is valid, bad files are refused naming file and field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import REPO
from tradectl import paths
from tradectl.config import PaperAccount, check_strategies, load_config
from tradectl.errors import ConfigError

MINIMAL = """
[accounts.paper]
kind = "paper"

[bots.b1]
account = "paper"
symbol = "ETH/USDT:USDT"
strategy = "ema_cross"
timeframes = ["1m", "5m"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid_with_the_documented_risk_defaults() -> None:
    loaded = load_config(REPO / "config.toml", environ={})
    check_strategies(loaded)
    risk = loaded.config.risk
    assert (risk.max_leverage, risk.max_position_usdt) == (3, 250)
    assert (risk.risk_per_trade_pct, risk.daily_loss_limit_usdt) == (Decimal("0.5"), Decimal(20))
    assert loaded.config.bots["eth-ema"].autostart


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, MINIMAL), environ={})
    assert loaded.state_dir == tmp_path / "state"
    assert loaded.socket_path == tmp_path / "state" / "control.sock"
    account = loaded.config.accounts["paper"]
    assert isinstance(account, PaperAccount)
    assert loaded.resolve(account.replay.data_dir) == tmp_path / "data" / "candles"


def test_environment_overrides_state_folder_and_socket(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    systemd = load_config(
        path, environ={"STATE_DIRECTORY": "/var/lib/tc", "RUNTIME_DIRECTORY": "/run/tc"}
    )
    assert systemd.state_dir == Path("/var/lib/tc")
    assert systemd.socket_path == Path("/run/tc/control.sock")
    ours = load_config(
        path,
        environ={
            "STATE_DIRECTORY": "/var/lib/tc",
            "TRADECTL_STATE_DIR": "/srv/s",
            "RUNTIME_DIRECTORY": "/run/tc",
            "TRADECTL_SOCKET": "/tmp/x.sock",
        },
    )
    assert (ours.state_dir, ours.socket_path) == (Path("/srv/s"), Path("/tmp/x.sock"))


def test_cli_finds_the_socket_by_the_same_rules_as_the_daemon(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[daemon]\nsocket_path = "run/c.sock"\n')
    daemon_side = load_config(path, environ={}).socket_path
    assert paths.client_socket_path(path, environ={}) == daemon_side == tmp_path / "run" / "c.sock"
    assert paths.client_socket_path(None, environ={"TRADECTL_CONFIG": str(path)}) == daemon_side


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (("[bots.b1]", '[bots.b1]\nleverage = "three"'), "bots.b1.leverage", "integer"),
        (("[bots.b1]", "[bots.b1]\nleverage = 5"), "bots.b1.leverage", "exceeds risk.max_leverage"),
        (('symbol = "ETH/USDT:USDT"', 'symbol = "ETHUSDT"'), "bots.b1.symbol", "perpetual symbol"),
        (('account = "paper"', 'account = "nope"'), "bots.b1.account", "no account 'nope'"),
        (('kind = "paper"', 'kind = "paper"\napi_secret = "x"'), "accounts.paper", "unknown field"),
        (('kind = "paper"', 'kind = "kraken"'), "accounts.paper", "kind"),
        (
            ("[bots.b1]", "[risk]\nmax_position_usdt = -5\n[bots.b1]"),
            "risk.max_position_usdt",
            "greater than 0",
        ),
    ],
)
def test_invalid_config_names_the_file_and_the_field(
    tmp_path: Path, edit: tuple[str, str], field: str, problem: str
) -> None:
    path = write(tmp_path, MINIMAL.replace(*edit))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert str(path) in message and field in message and problem in message, message


def test_broken_toml_names_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.toml: not valid TOML: .*line 2"):
        load_config(write(tmp_path, "[daemon]\nstate_dir = \n"), environ={})


def test_bad_strategy_parameter_names_the_bot_and_parameter(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, MINIMAL + "\n[bots.b1.params]\nfast = 50\n"), environ={})
    with pytest.raises(ConfigError, match=r"bots\.b1: .*ema_cross.*fast"):
        check_strategies(loaded)


def test_two_bots_on_one_symbol_and_account_are_refused(tmp_path: Path) -> None:
    twin = MINIMAL + MINIMAL[MINIMAL.index("[bots.b1]") :].replace("b1", "b2")
    with pytest.raises(ConfigError, match="already trades ETH/USDT:USDT"):
        load_config(write(tmp_path, twin), environ={})
