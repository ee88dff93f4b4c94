"""The config is strict: numbers are numbers, finite, ids are 0 and up, and the file is
read with a bound; every refusal names the file and the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tradectl.config import load_config
from tradectl.errors import ConfigError
from tradectl.paths import MAX_CONFIG_BYTES

MINIMAL = """
[accounts.paper]
kind = "paper"

[accounts.paper.replay]
speed = 60

[bots.b1]
account = "paper"
symbol = "ETH/USDT:USDT"
strategy = "ema_cross"
timeframes = ["1m", "5m"]
"""


def load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


@pytest.mark.parametrize(
    ("section", "line", "field", "problem"),
    [
        ("[risk]", 'max_leverage = "3"', "risk.max_leverage", "not text ('3')"),
        ("[risk]", "max_leverage = true", "risk.max_leverage", "not a boolean"),
        ("[risk]", "max_position_usdt = inf", "risk.max_position_usdt", "finite"),
        ("[health]", "loop_lag_max_s = inf", "health.loop_lag_max_s", "finite"),
        ("[health]", "stale_floor_s = nan", "health.stale_floor_s", "finite"),
        ("[bots.b1]", "owner = -5", "bots.b1.owner", "from 0"),
        ("[bots.b1]", "owner = -1", "bots.b1.owner", "from 0"),
        ("[bots.b1]", 'autostart = "yes"', "bots.b1.autostart", "boolean"),
        ("[daemon]", "admin_group = -1", "daemon.admin_group", "from 0"),
    ],
)
def test_numbers_booleans_and_ids_are_what_they_say(
    tmp_path: Path, section: str, line: str, field: str, problem: str
) -> None:
    text = MINIMAL.replace(section, f"{section}\n{line}") if section in MINIMAL else MINIMAL
    if section not in MINIMAL:
        text += f"\n{section}\n{line}\n"
    message = load(tmp_path, text)
    assert field in message and problem in message, message


def test_a_paper_account_error_names_the_account_once(tmp_path: Path) -> None:
    message = load(tmp_path, MINIMAL.replace("speed = 60", 'speed = 60\nstart = "soon"'))
    assert "accounts.paper.replay.start" in message and "paper.paper" not in message, message


def test_files_that_are_not_configs_are_refused_without_reading_them(tmp_path: Path) -> None:
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    assert "not a regular file" in load_path(zero)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    assert "not a regular file" in load_path(fifo)
    big = tmp_path / "big.toml"
    big.write_text(MINIMAL + "#" * MAX_CONFIG_BYTES)
    assert f"at most {MAX_CONFIG_BYTES}" in load_path(big)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000)
    assert "nested too deeply" in load_path(deep)


def load_path(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return str(caught.value)
