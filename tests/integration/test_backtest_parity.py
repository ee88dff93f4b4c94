"""`tradectl backtest` trades exactly as the daemon does on the same replayed candles.

The daemon runs as a real subprocess on a copy of the shipped config, its replay at speed 0
(flat out) from the config's fixed `start`. Once its bot has handled enough candles it is
stopped through the CLI, which freezes the bot's last handled candle; the backtest then runs
over exactly that window, through the CLI as well, and both must hold the same trades.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.backtest import round_trips
from tests.conftest import REPO, eventually
from tests.integration.daemon_process import DaemonProcess
from tests.store_under_test import StoreUnderTest

BOT = "eth-ema"
ETH = REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"
START = "2025-05-10T00:00:00+00:00"  # the shipped config's replay start
CANDLES = 1500  # about a day: a few dozen trades
MakeDaemon = Callable[..., DaemonProcess]


def backtest_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tradectl.cli", "backtest", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def trade_key(trade: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        str(trade[k])
        for k in (
            "entry_time",
            "exit_time",
            "side",
            "qty",
            "entry_price",
            "exit_price",
            "exit_reason",
        )
    )


def test_backtest_makes_the_same_trades_as_the_daemon_on_the_same_window(
    make_daemon: MakeDaemon, daemon_store: StoreUnderTest
) -> None:
    daemon = make_daemon(speed=0).start()
    eventually(lambda: daemon.bot(BOT)["candles_processed"] >= CANDLES, timeout=60)
    assert daemon.cli("stop", BOT).returncode == 0  # the runner stops between two candles
    bot = daemon.bot(BOT)
    last_close = bot["last_candle_close"]
    position = (bot["position_side"], bot["position_qty"], bot["entry_price"])
    daemon.stop()

    with daemon_store.opened(daemon.state_dir) as store:
        fills = sorted(store.fills(BOT), key=lambda f: (f.timestamp, f.client_order_id))
        purposes = {
            e["cid"]: e["purpose"]
            for e in store.events(BOT, limit=1 << 30)
            if e["kind"] == "order_intent_recorded"
        }
    live = [t.as_dict() for t in round_trips(fills, purposes)]
    assert len(live) >= 5, "the window must hold real trades to compare"

    result = backtest_cli(
        "ema_cross",
        "--config",
        str(daemon.config),
        "--data",
        str(ETH),
        "--symbol",
        "ETH/USDT:USDT",
        "--from",
        START,
        "--to",
        last_close,
        *("-p", "fast=9", "-p", "slow=21", "-p", "trend_timeframe=5m"),
        "--json",
        cwd=daemon.config.parent,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["start"] == START and report["end"] == last_close
    assert report["candles"] == bot["candles_processed"]
    assert [trade_key(t) for t in report["trade_list"]] == [trade_key(t) for t in live]
    assert [t["net_pnl"] for t in report["trade_list"]] == [t["net_pnl"] for t in live]
    held = report["open_position"]
    if position[0] == "flat":
        assert held is None
    else:
        assert held is not None
        assert (held["side"], held["qty"], held["entry_price"]) == (
            position[0],
            position[1].lstrip("-"),
            position[2],
        )


def test_cli_backtest_reports_json_metrics_and_plots_a_png(tmp_path: Path) -> None:
    png = tmp_path / "equity.png"
    result = backtest_cli(
        "ema_cross",
        *("--data", str(ETH), "--symbol", "ETH/USDT:USDT"),
        *("--from", "2025-05-10", "--to", "2025-05-12"),
        "--json",
        *("--plot", str(png)),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in (
        "trades",
        "net_pnl",
        "win_rate",
        "profit_factor",
        "max_drawdown",
        "sharpe",
        "trade_list",
    ):
        assert key in report, key
    assert report["trades"] > 0 and len(report["trade_list"]) == report["trades"]
    assert report["candles"] == 2 * 24 * 60
    assert png.stat().st_size > 1000
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "100%" in result.stderr  # progress went to stderr, never into the JSON


def test_cli_backtest_refuses_bad_input_with_the_documented_exit_codes() -> None:
    data = ("--data", str(ETH), "--symbol", "ETH/USDT:USDT")
    cases = [
        (("ema_cross", "--data", "/nonexistent.feather", "--symbol", "X/Y:Y"), 2, "no such file"),
        (("ema_cross", *data, "--from", "10 May"), 2, "not an ISO 8601"),
        (("ema_cross", *data, "--from", "2024-01-01"), 2, "outside the data"),
        (("ema_cross", *data, "-p", "fast"), 2, "expected name=value"),
        (("ema_cross", *data[:2], "--symbol", "DOGE/USDT:USDT"), 2, "no paper market"),
        (("ema_cross", *data, "--engine", "warp"), 2, "unknown engine 'warp'"),
        (("ema_cros", *data), 78, "unknown strategy (available: ema_cross, ict"),
        (("ema_cross", *data, "-p", "fastt=3"), 78, "parameter 'fastt': unknown parameter"),
    ]
    for args, code, words in cases:
        result = backtest_cli(*args)
        assert result.returncode == code, (args, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr, result.stderr
