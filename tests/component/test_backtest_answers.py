"""A backtest that explains itself: why signals were not taken, what the warm-up lacked,
which statistics the data can carry, and a picture with everything a trader looks at."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.backtest import (
    SHARPE_MIN_DAYS,
    BacktestInputError,
    BacktestResult,
    BacktestSetup,
    run_backtest,
    setup_from_config,
)
from daemon.backtest_plot import (
    TIMEFRAMES,
    build_picture,
    check_plot_dependency,
    html_figure,
    png_figure,
    write_html,
    write_png,
)
from tests.conftest import REPO
from tradectl.config import load_config

pytestmark = pytest.mark.slow  # runs whole backtests through the CLI and draws their charts

DATA = REPO / "data" / "candles"
ETH = DATA / "ETH_USDT_USDT-1m-futures.feather"
BTC = DATA / "BTC_USDT_USDT-1m-futures.feather"


def shipped(symbol: str) -> BacktestSetup:
    return setup_from_config(load_config(REPO / "config.toml").config, symbol)


def tradectl(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess; `prelude` runs first (e.g. to hide a library)."""
    code = f"import sys\n{prelude}\nfrom tradectl.cli import main\nsys.argv[0] = 'tradectl'\nmain()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_btc_trades_on_the_shipped_paper_account_within_the_first_hours() -> None:
    start = datetime(2025, 5, 10, tzinfo=UTC)  # the shipped replay's start
    result = run_backtest(
        "ema_cross",
        {},
        BTC,
        "BTC/USDT:USDT",
        shipped("BTC/USDT:USDT"),
        start,
        start.replace(hour=3),
    )
    assert result.trades, result.summary()["skipped"]
    assert result.trades[0].entry_time < start.replace(hour=2)


def test_a_backtest_with_no_trades_names_the_reasons_and_counts() -> None:
    setup = shipped("BTC/USDT:USDT")
    small = dataclasses.replace(
        setup,
        limits=dataclasses.replace(setup.limits, max_position_usdt=Decimal(50)),
    )
    result = run_backtest(
        "ema_cross",
        {},
        BTC,
        "BTC/USDT:USDT",
        small,
        datetime(2025, 5, 10, tzinfo=UTC),
        datetime(2025, 5, 11, tzinfo=UTC),
    )
    report = result.summary()
    assert report["trades"] == 0 and report["entries"] == 0 and report["signals"] > 10
    assert report["skipped"] == {
        "max_position": {
            "count": report["signals"],
            "example": "max_position_usdt 50 < BTC/USDT:USDT minimum order 100 USDT",
        }
    }


def test_orders_the_account_cap_refuses_are_counted_with_the_numbers() -> None:
    """Entries a bot may size but the account cap refuses: counted, not silent."""
    setup = shipped("BTC/USDT:USDT")
    tight = dataclasses.replace(
        setup,
        limits=dataclasses.replace(setup.limits, max_account_position_usdt=Decimal(120)),
    )
    report = run_backtest(
        "ema_cross",
        {},
        BTC,
        "BTC/USDT:USDT",
        tight,
        datetime(2025, 5, 10, tzinfo=UTC),
        datetime(2025, 5, 11, tzinfo=UTC),
    ).summary()
    assert report["entries"] == 0 and report["signals"] > 10
    refused = report["skipped"]["max_account_position"]
    assert refused["count"] == report["signals"]
    assert refused["example"].startswith(
        "max_account_position_usdt 120 < the account's positions after the order ("
    )
    assert "this bot" in refused["example"] and "others 0.00" in refused["example"]


def test_the_cli_report_explains_zero_trades_in_words(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[risk]\nmax_position_usdt = 50\n[accounts.paper]\nkind = "paper"\n')
    result = tradectl(
        "backtest",
        "ema_cross",
        *("--data", str(BTC), "--symbol", "BTC/USDT:USDT"),
        *("--from", "2025-05-10", "--to", "2025-05-11", "--config", str(config)),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    signals = next(line for line in lines if line.startswith("signals"))
    count = int(signals.split()[1].rstrip(":"))
    assert signals == f"signals       {count}: 0 entries, {count} not taken"
    assert (
        f"{count:>8} x max_position: max_position_usdt 50 < BTC/USDT:USDT minimum order 100 USDT"
        in lines
    )
    assert "n/a" not in result.stdout


def test_warm_up_comes_from_before_the_start_and_a_short_one_is_reported() -> None:
    setup = shipped("ETH/USDT:USDT")
    first_candle = datetime(2025, 5, 4, 15, 33, tzinfo=UTC)
    cold = run_backtest(
        "ict",
        {},
        ETH,
        "ETH/USDT:USDT",
        setup,
        first_candle,
        first_candle.replace(day=5),
    )
    warm_up = cold.summary()["warm_up"]
    assert warm_up["history_minutes"] == 0 and warm_up["needed_minutes"] == 100 * 60
    assert warm_up["lost_evaluations"] > 0 and "evaluations were lost" in warm_up["note"]
    warm = run_backtest(
        "ict",
        {},
        ETH,
        "ETH/USDT:USDT",
        setup,
        datetime(2025, 5, 12, tzinfo=UTC),
        datetime(2025, 5, 12, 6, tzinfo=UTC),
    )
    assert warm.summary()["warm_up"]["lost_evaluations"] == 0
    assert "note" not in warm.summary()["warm_up"]
    assert warm.signals > 0, "history before --from warmed the strategy up"


def test_sharpe_only_from_enough_days_and_it_says_on_what() -> None:
    setup = shipped("ETH/USDT:USDT")
    short = run_backtest(
        "ema_cross",
        {},
        ETH,
        "ETH/USDT:USDT",
        setup,
        datetime(2025, 5, 10, tzinfo=UTC),
        datetime(2025, 5, 12, tzinfo=UTC),
    ).summary()
    assert short["sharpe"] is None and short["sharpe_periods"] == 2
    assert f"needs at least {SHARPE_MIN_DAYS}" in short["sharpe_basis"]
    long = run_backtest(
        "ema_cross",
        {},
        ETH,
        "ETH/USDT:USDT",
        setup,
        datetime(2025, 5, 8, tzinfo=UTC),
    ).summary()
    assert long["sharpe_periods"] >= SHARPE_MIN_DAYS and long["sharpe"] is not None
    assert f"over {long['sharpe_periods']} days" in long["sharpe_basis"]


def test_data_named_for_another_market_is_refused() -> None:
    with pytest.raises(BacktestInputError, match="holds ETH/USDT:USDT candles"):
        run_backtest("ema_cross", {}, ETH, "BTC/USDT:USDT", shipped("BTC/USDT:USDT"))
    result = tradectl("backtest", "ema_cross", "--data", str(ETH), "--symbol", "BTC/USDT:USDT")
    assert result.returncode == 2 and "not --symbol BTC/USDT:USDT" in result.stderr


def test_plot_refuses_before_the_run_without_its_library_or_with_an_unknown_type(
    tmp_path: Path,
) -> None:
    args = ("backtest", "ema_cross", "--data", str(ETH), "--symbol", "ETH/USDT:USDT")
    hidden = tradectl(
        *args, "--plot", str(tmp_path / "run.html"), prelude="sys.modules['plotly'] = None"
    )
    assert hidden.returncode == 2
    assert "plotly, which is not installed: pip install -e '.[plot]'" in hidden.stderr
    assert "backtest:" not in hidden.stderr, "refused before the run, not after it"
    unknown = tradectl(*args, "--plot", str(tmp_path / "run.svg"), "--json")
    assert unknown.returncode == 2
    assert "name a .png or an .html file" in json.loads(unknown.stdout)["error"]["message"]
    with pytest.raises(BacktestInputError):
        check_plot_dependency(tmp_path / "run.jpg")


@pytest.fixture(scope="module")
def ict_run() -> BacktestResult:
    return run_backtest(
        "ict",
        {},
        ETH,
        "ETH/USDT:USDT",
        shipped("ETH/USDT:USDT"),
        datetime(2025, 5, 12, tzinfo=UTC),
        datetime(2025, 5, 13, 12, tzinfo=UTC),
    )


def test_the_picture_holds_candles_trades_stops_zones_and_sweeps(ict_run: BacktestResult) -> None:
    picture = build_picture(ict_run, ETH)
    assert set(picture.candles) == set(TIMEFRAMES)
    assert picture.candles["1m"].height == 36 * 60
    assert picture.trades and len(picture.levels) == len(picture.trades)
    assert {z.kind for z in picture.zones} == {"fvg", "order block"}
    assert all(z.start < z.end and z.bottom < z.top for z in picture.zones)
    assert picture.sweeps and all(s.start < s.swept for s in picture.sweeps)
    assert min(picture.drawdown()) < 0 == max(picture.drawdown())


def test_the_png_has_price_equity_and_drawdown_panels(
    ict_run: BacktestResult, tmp_path: Path
) -> None:
    picture = build_picture(ict_run, ETH)
    figure = png_figure(picture)
    price, equity, drawdown = figure.axes
    labels = set(price.get_legend_handles_labels()[1])
    assert {"long entry", "short entry", "exit, won", "exit, lost", "stop", "target"} <= labels
    assert {"fair value gap acted on", "order block acted on", "liquidity swept"} <= labels
    assert "equity" in equity.get_ylabel() and "drawdown" in drawdown.get_ylabel()
    png = tmp_path / "run.png"
    write_png(picture, png)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 50_000


def test_the_html_page_is_interactive_and_carries_every_timeframe(
    ict_run: BacktestResult, tmp_path: Path
) -> None:
    picture = build_picture(ict_run, ETH)
    names = [trace.name for trace in html_figure(picture).data]
    assert names[0].startswith("candles ")
    assert {
        "fair value gaps acted on",
        "order blocks acted on",
        "liquidity swept",
        "stops",
        "targets",
        "long entries",
        "short entries",
        "exits",
        "equity",
        "drawdown",
    } <= set(names)
    page = tmp_path / "run.html"
    write_html(picture, page)
    text = page.read_text()
    assert "Plotly.newPlot" in text and "plotly_relayout" in text
    start = text.index('id="tradectl-backtest-candles">') + len('id="tradectl-backtest-candles">')
    series = json.loads(text[start : text.index("</script>", start)])
    assert [s["tf"] for s in series] == list(TIMEFRAMES)
    assert len(series[0]["x"]) == 36 * 60 and len(series[0]["c"]) == 36 * 60
