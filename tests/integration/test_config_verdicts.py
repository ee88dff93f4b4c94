"""`tradectl config check` and the daemon give the same verdict on every broken config:
a config that check passes is one the daemon starts on, and one the daemon refuses
(with 78, file and field, no traceback) is refused by check the same way.

Each command runs in a child forked from a warm server process (imports already done, so sixty
configs take seconds, not minutes); a daemon that does not exit on its own within the
timeout started, which is itself a verdict.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import daemon.app
import daemon.preflight  # noqa: F401
import tradectl.cli
from tests.conftest import REPO
from tests.integration.daemon_process import remove, write_config

EXIT_CONFIG = 78
STARTED = -1  # the daemon was still running when the timeout came: it accepted the config
NOBODY = 65534

Edit = Callable[[str, Path], str]


@dataclass(frozen=True)
class Case:
    name: str
    edit: Edit
    env: dict[str, str] = field(default_factory=dict)
    run_as: int | None = None
    special: str | None = None  # the config path is not a TOML file we write


def sub(old: str, new: str) -> Edit:
    def edit(text: str, _: Path) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


def add(extra: str) -> Edit:
    return lambda text, _: text + "\n" + extra + "\n"


def risk(line: str) -> Edit:
    return sub("[risk]\n", f"[risk]\n{line}\n")


def bot(line: str) -> Edit:
    return sub(
        "leverage = 3\n\n[bots.eth-ema.params]", f"leverage = 3\n{line}\n\n[bots.eth-ema.params]"
    )


def paper(line: str) -> Edit:
    return sub('kind = "paper"\n', f'kind = "paper"\n{line}\n')


def replay(line: str) -> Edit:
    return sub("[accounts.paper.replay]\n", f"[accounts.paper.replay]\n{line}\n")


def health(line: str) -> Edit:
    return add(f"[health]\n{line}")


def drop(line_start: str) -> Edit:
    return lambda text, _: re.sub(rf"(?m)^{re.escape(line_start)}.*\n", "", text, count=1)


BINANCE = '[accounts.binance]\nkind = "binanceusdm"\ncredentials = "verdict-test"\n'
BTC_BOT = (
    '[bots.btc-ema]\naccount = "paper"\nsymbol = "BTC/USDT:USDT"\nstrategy = "ema_cross"\n'
    'timeframes = ["1m", "5m"]\n'
)

CASES = [
    # Numbers are numbers: no text, no booleans, nothing infinite.
    Case("max_leverage_text", sub("max_leverage = 3", 'max_leverage = "3"')),
    Case("max_leverage_bool", sub("max_leverage = 3", "max_leverage = true")),
    Case("max_leverage_float", sub("max_leverage = 3", "max_leverage = 3.0")),
    Case("max_position_text", sub("max_position_usdt = 250", 'max_position_usdt = "50"')),
    Case("max_position_bool", sub("max_position_usdt = 250", "max_position_usdt = true")),
    Case("max_position_inf", sub("max_position_usdt = 250", "max_position_usdt = inf")),
    Case("max_position_nan", sub("max_position_usdt = 250", "max_position_usdt = nan")),
    Case("daily_loss_minus_inf", sub("daily_loss_limit_usdt = 20", "daily_loss_limit_usdt = -inf")),
    Case("risk_per_trade_text", sub("risk_per_trade_pct = 0.5", 'risk_per_trade_pct = "0.5"')),
    Case(
        "account_cap_bool",
        sub("max_account_position_usdt = 500", "max_account_position_usdt = false"),
    ),
    Case("loop_lag_inf", health("loop_lag_max_s = inf")),
    Case("stale_floor_nan", health("stale_floor_s = nan")),
    Case("stale_candles_text", health('stale_candles = "3"')),
    Case("start_timeout_bool", health("start_timeout_s = false")),
    Case("initial_balance_text", sub("initial_balance = 1000", 'initial_balance = "1000"')),
    Case("slippage_inf", sub("slippage_bps = 2", "slippage_bps = inf")),
    Case("taker_fee_bool", sub("taker_fee_rate = 0.0005", "taker_fee_rate = true")),
    Case("speed_inf", sub("speed = 600 ", "speed = inf ")),
    Case("speed_text", sub("speed = 600 ", 'speed = "fast" ')),
    Case("poll_interval_bool", paper("poll_interval_s = true")),
    Case("bot_leverage_text", sub("leverage = 3\n\n", 'leverage = "3"\n\n')),
    Case("bot_leverage_bool", sub("leverage = 3\n\n", "leverage = true\n\n")),
    Case("autostart_text", sub("autostart = true", 'autostart = "yes"')),
    Case("autostart_number", sub("autostart = true", "autostart = 1")),
    Case("testnet_text", add(BINANCE + 'testnet = "yes"')),
    Case("requests_per_s_inf", add(BINANCE + "requests_per_s = inf")),
    # Ids are 0 and up; names must exist here.
    Case("owner_negative", bot("owner = -5")),
    Case("owner_minus_one", bot("owner = -1")),
    Case("owner_bool", bot("owner = true")),
    Case("owner_too_big", bot("owner = 4294967295")),
    Case("owner_unknown_user", bot('owner = "no-such-user-tc11"')),
    Case("admin_group_negative", sub('log_level = "info"', 'log_level = "info"\nadmin_group = -1')),
    Case(
        "admin_group_unknown",
        sub('log_level = "info"', 'log_level = "info"\nadmin_group = "no-such-group-tc11"'),
    ),
    # What the config names must be there.
    Case("credentials_missing", add(BINANCE)),
    Case(
        "data_dir_missing", sub(f'data_dir = "{REPO}/data/candles"', 'data_dir = "/nonexistent/c"')
    ),
    Case("data_dir_without_the_symbol", lambda t, d: t.replace(f"{REPO}/data/candles", str(d))),
    Case("symbol_without_candles", sub('symbol = "ETH/USDT:USDT"', 'symbol = "SOL/USDT:USDT"')),
    Case("replay_start_before_data", sub("start = 2025-05-10", "start = 2024-05-10")),
    Case("replay_start_after_data", sub("start = 2025-05-10", "start = 2026-01-10")),
    Case("strategy_folder_missing", add('[strategies]\nuser_dir = "/nonexistent/plugins"')),
    Case(
        "live_paper_symbol_unknown",
        lambda t, _: t.replace(
            'kind = "paper"\n', 'kind = "paper"\nmarket_data = "binanceusdm"\n'
        ).replace('symbol = "ETH/USDT:USDT"', 'symbol = "SOL/USDT:USDT"'),
    ),
    # What the shipped market limits make of the risk limits.
    Case(
        "btc_bot_below_min_order_value",
        lambda t, d: add(BTC_BOT)(
            sub("max_position_usdt = 250", "max_position_usdt = 50")(t, d), d
        ),
    ),
    Case(
        "account_cap_below_min_order_value",
        sub("max_account_position_usdt = 500", "max_account_position_usdt = 10"),
    ),
    Case(
        "timeframe_the_replay_cannot_build",
        sub('timeframes = ["1m", "5m"]', 'timeframes = ["1m", "5m", "7m"]'),
    ),
    # The schema's own rules.
    Case("leverage_over_risk_limit", sub("leverage = 3\n\n", "leverage = 5\n\n")),
    Case("unknown_strategy", sub('strategy = "ema_cross"', 'strategy = "nope"')),
    Case("bad_strategy_parameter", sub("fast = 9", "fast = 50")),
    Case("unknown_daemon_field", sub('log_level = "info"', 'log_level = "info"\nverbose = true')),
    Case("unknown_account", sub('account = "paper"', 'account = "nope"')),
    Case("no_accounts", lambda t, _: t[: t.index("[accounts.paper]")]),
    Case("two_bots_one_symbol", add(BTC_BOT.replace("btc-ema", "eth-two").replace("BTC", "ETH"))),
    Case("market_data_unknown", paper('market_data = "kraken"')),
    Case("daily_reset_impossible", risk('daily_reset_utc = "25:00"')),
    Case("paper_replay_unknown_field", replay("rewind = true")),
    Case("socket_path_too_long", lambda t, _: t, env={"TRADECTL_SOCKET": "/tmp/" + "s" * 120}),
    # The file itself.
    Case("not_toml", lambda t, _: t + "\n[daemon\n"),
    Case("deeply_nested", lambda t, _: t + "\nx = " + "[" * 5000 + "]" * 5000 + "\n"),
    Case("over_a_mebibyte", lambda t, _: t + "#" + "x" * (1024 * 1024) + "\n"),
    Case("not_utf8", lambda t, _: t, special="not_utf8"),
    Case("link_to_dev_zero", lambda t, _: t, special="dev_zero"),
    Case("a_directory", lambda t, _: t, special="directory"),
    Case("missing", lambda t, _: t, special="missing"),
    Case("unreadable", lambda t, _: t, run_as=NOBODY),
]


def materialise(case: Case, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    empty = folder / "empty-data"
    empty.mkdir(exist_ok=True)
    if case.special == "missing":
        return config
    if case.special == "directory":
        config.mkdir()
        return config
    if case.special == "dev_zero":
        config.symlink_to("/dev/zero")
        return config
    base = write_config(folder / "base.toml").read_text()
    if case.special == "not_utf8":
        config.write_bytes(base.encode() + b"\n# \xff\xfe\n")
        return config
    config.write_text(case.edit(base, empty))
    if case.run_as is not None:
        os.chmod(config, 0o600)
    return config


def _run_in_child(args: list[str], env: dict[str, str], out: str, run_as: int | None) -> None:
    code = 70
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        os.environ.clear()
        os.environ.update(env)
        if run_as is not None:
            os.setgroups([])
            os.setgid(run_as)
            os.setuid(run_as)
        sys.argv = ["tradectl", *args]
        try:
            tradectl.cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    finally:
        os._exit(code)


# Children fork from a fresh server process with the CLI and daemon imported, never from
# this one: once an earlier test has used polars here, its thread pool makes a forked child
# deadlock.
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["tradectl.cli", "daemon.app", "daemon.preflight"])


def run_cli(args: list[str], env: dict[str, str], out: Path, run_as: int | None) -> int:
    """`tradectl ARGS` in a forked child; its exit code, or STARTED if it kept running."""
    child = _FORKS.Process(target=_run_in_child, args=(args, env, str(out), run_as))
    child.start()
    child.join(30)
    if child.exitcode is None:
        child.terminate()
        child.join()
        return STARTED
    return child.exitcode


@pytest.mark.skipif(os.geteuid() != 0, reason="the unreadable case runs as another uid")
def test_config_check_and_the_daemon_agree_on_every_broken_config(tmp_path: Path) -> None:
    assert len(CASES) >= 50
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADECTL_", "NOTIFY"))}
    disagreements = []
    for case in CASES:
        folder = tmp_path / case.name
        config = materialise(case, folder)
        sockets = Path(tempfile.mkdtemp(prefix="tc-", dir="/tmp"))
        os.chmod(sockets, 0o755)
        env = {
            **base_env,
            "TRADECTL_STATE_DIR": str(folder / "state"),
            "TRADECTL_SOCKET": str(sockets / "c.sock"),
            **case.env,
        }
        try:
            check = run_cli(
                ["config", "check", "--config", str(config)], env, folder / "check.out", case.run_as
            )
            started = run_cli(
                ["daemon", "--config", str(config)], env, folder / "daemon.out", case.run_as
            )
        finally:
            remove(sockets)
        outputs = {
            n: (folder / f"{n}.out").read_text(errors="replace") for n in ("check", "daemon")
        }
        if (check, started) != (EXIT_CONFIG, EXIT_CONFIG):
            disagreements.append(f"{case.name}: check {check}, daemon {started}: {outputs}")
            continue
        for name, text in outputs.items():
            if "Traceback" in text or str(config) not in text:
                disagreements.append(f"{case.name}: {name} said {text!r}")
        assert not (folder / "state" / "state.db").exists(), f"{case.name}: the store was touched"
    assert disagreements == [], "\n".join(disagreements)
