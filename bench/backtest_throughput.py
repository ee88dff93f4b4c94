"""Throughput of the ICT indicators and of `tradectl backtest`, beside backtesting.py.

Over the 60k ETH 1m candles in data/candles:

1. each indicator of `strategies.indicators` on the whole frame (best of 3): candles/s;
2. `tradectl backtest ema_cross -p trend_timeframe=null` over the whole file:
   - the fast engine in-process (`daemon.backtest.run_backtest`, best of 3, loading and
     checking the file included): the strategy's vectorised signals, then the daemon's
     trading core, risk rules and paper fills (resting stops and take-profits) candle by
     candle;
   - the same through the CLI as a new user runs it (a subprocess: interpreter, imports and
     JSON report included);
   - with `--replay`, the replay engine too (the daemon's own asyncio runner, feed and SQLite
     store, candle by candle: minutes for the whole file, so over `--replay-days`, default 2);
3. backtesting.py (https://kernc.github.io/backtesting.py/) running the same rule: EMA(9)
   crossing EMA(21) on 1m closes, stop 1.5 * Wilder ATR(14), take-profit at 2R, one position,
   entered at the next bar's open (its fill model); `Backtest.run` timed, best of 3 (its data
   frame is built beforehand, not timed), and the ratio ours / theirs.

4. `--months N` (default 6): the same over N months of 1m candles, beside backtesting.py on
   the same candles. The shipped files hold six weeks, so the long series is built for the
   benchmark only, by the replay's own scheme: laps of the ETH file, forwards then backwards
   in time (open and close swapped), time running on (written to a temporary file);
   - `ema_cross` (no filter): ours, theirs, ratio (target >= 10);
   - `ict` (defaults: 5m entries in the 1h trend) on the fast engine, with its whole-series
     signals, against backtesting.py's EMA cross on the same candles (target >= 1), and ict
     as it ran before its whole-series path (`evaluate` per 5m close, over 2 days here:
     it takes minutes a month) for the speed-up;
   - a scaling table over 1 day, 1 week, 1 month, 3 months and N months of history: seconds
     and candles/s of each, so a growth faster than linear would show.

backtesting.py is not a dependency of tradectl. When it is missing the bench says the pip
command, or runs it with --install (the CI never runs benchmarks). The comparison is of speed
only: backtesting.py has no risk rules, no loss limits, no order ids and no margin model;
ours runs all of them. `--days N` limits parts 2 and 3 to the first N days of the file (both
sides alike). Times are best of 3 in-process, in CPU seconds of the process (all threads;
`--wall` for wall-clock), the candle file cached after its first load as in the daemon;
backtesting.py's data frame is built beforehand. The CLI figure is wall-clock.
Usage: python bench/backtest_throughput.py [--install] [--days N] [--replay] [--replay-days N]
       [--months N] [--skip-file] [--wall]
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from strategies import indicators  # noqa: E402

DATA = REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"
SYMBOL = "ETH/USDT:USDT"
PIP = [sys.executable, "-m", "pip", "install", "backtesting"]


def candles() -> pl.DataFrame:
    return (
        pl.read_ipc(DATA)
        .rename({"date": "timestamp"})
        .select("timestamp", "open", "high", "low", "close", "volume")
    )


# CPU seconds of this process (all its threads) by default: on a machine other work shares,
# wall-clock times swing by 2x from one run to the next while CPU times hold; --wall for those.
CLOCK = time.perf_counter if "--wall" in sys.argv else time.process_time


def best_of(runs: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        began = CLOCK()
        work()
        times.append(CLOCK() - began)
    return min(times)


def bench_indicators(df: pl.DataFrame) -> None:
    print(f"indicators on {df.height} ETH 1m candles (best of 3):")
    cases: dict[str, Callable[[], Any]] = {
        "swings": lambda: indicators.swings(df),
        "structure": lambda: indicators.structure(df),
        "trend": lambda: indicators.trend(df),
        "fair_value_gaps": lambda: indicators.fair_value_gaps(df),
        "order_blocks": lambda: indicators.order_blocks(df),
        "breaker_blocks": lambda: indicators.breaker_blocks(df),
        "liquidity": lambda: indicators.liquidity(df),
    }
    for name, work in cases.items():
        work()  # warm caches and polars' thread pool
        seconds = best_of(3, work)
        print(f"  {name:<16} {seconds * 1000:8.1f} ms  {df.height / seconds:>14,.0f} candles/s")


def bench_ours(first_open: str, end: str | None) -> float:
    from datetime import datetime

    from daemon.backtest import BacktestSetup, run_backtest, setup_from_config
    from tradectl.config import load_config

    setup: BacktestSetup = setup_from_config(load_config(REPO / "config.toml").config, SYMBOL)
    start = datetime.fromisoformat(first_open)
    stop = datetime.fromisoformat(end) if end else None
    params = {"trend_timeframe": None}
    reports = []

    def run() -> None:
        reports.append(run_backtest("ema_cross", params, DATA, SYMBOL, setup, start, stop))

    seconds = best_of(3, run)
    result = reports[-1]
    summary = result.summary()
    rate = result.candles / seconds
    print(
        f"  tradectl backtest   {seconds:8.3f} s   {rate:>10,.0f} candles/s   "
        f"{summary['trades']} trades, net {summary['net_pnl']:.2f} USDT  (fast engine)"
    )
    return rate


def bench_cli(first_open: str, end: str | None) -> None:
    command = [
        sys.executable,
        "-m",
        "tradectl.cli",
        "backtest",
        "ema_cross",
        *("--data", str(DATA), "--symbol", SYMBOL, "--from", first_open),
        *("-p", "trend_timeframe=null", "--json"),
        *(("--to", end) if end else ()),
    ]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"tradectl backtest failed ({done.returncode}): {done.stderr}")
    report = json.loads(done.stdout)
    print(
        f"  the same via CLI    {seconds:8.3f} s   {report['candles'] / seconds:>10,.0f} candles/s"
        "   (new process: interpreter, imports, report)"
    )


def bench_replay(first_open: str, days: int) -> None:
    from datetime import datetime

    from daemon.backtest import run_backtest, setup_from_config
    from tradectl.config import load_config

    setup = setup_from_config(load_config(REPO / "config.toml").config, SYMBOL)
    start = datetime.fromisoformat(first_open)
    stop = start + timedelta(days=days)
    params = {"trend_timeframe": None}
    timed = {}
    for engine in ("replay", "fast"):
        began = time.perf_counter()
        result = run_backtest("ema_cross", params, DATA, SYMBOL, setup, start, stop, engine=engine)
        timed[engine] = (time.perf_counter() - began, result)
    (slow, replayed), (quick, fast) = timed["replay"], timed["fast"]
    same = fast.summary() == replayed.summary()
    print(
        f"  replay engine       {slow:8.3f} s   {replayed.candles / slow:>10,.0f} candles/s   "
        f"over {days} days; fast engine {quick:.3f} s, {slow / quick:,.0f}x faster, "
        f"same report: {same}"
    )


def bench_theirs(df: pl.DataFrame, label: str = "backtesting.py") -> float | None:
    if importlib.util.find_spec("backtesting") is None:
        if "--install" not in sys.argv:
            print("  backtesting.py      not installed: " + " ".join(PIP[2:]) + " (or --install)")
            return None
        subprocess.run(PIP, check=True)
    import pandas as pd
    from backtesting import Backtest, Strategy

    frame = df.to_pandas().set_index("timestamp")
    frame.columns = ["Open", "High", "Low", "Close", "Volume"]

    def ema(values: Any, span: int) -> Any:
        return pd.Series(values).ewm(span=span, adjust=False).mean().to_numpy()

    def atr(high: Any, low: Any, close: Any, n: int) -> Any:
        high, low, close = pd.Series(high), pd.Series(low), pd.Series(close)
        prev = close.shift(1)
        tr = pd.concat([high - low, (high - prev).abs(), (low - prev).abs()], axis=1).max(axis=1)
        return tr.ewm(alpha=1 / n, adjust=False).mean().to_numpy()

    class EmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(ema, self.data.Close, 9)
            self.slow = self.I(ema, self.data.Close, 21)
            self.atr = self.I(atr, self.data.High, self.data.Low, self.data.Close, 14)

        def next(self) -> None:
            if len(self.data) < 63:  # ema_cross's warm-up: 3 * max(slow, atr)
                return
            before = self.fast[-2] - self.slow[-2]
            now = self.fast[-1] - self.slow[-1]
            close, risk = self.data.Close[-1], 1.5 * self.atr[-1]
            if before <= 0 < now:
                self.position.close()
                self.buy(size=0.01, sl=close - risk, tp=close + 2 * risk)
            elif before >= 0 > now:
                self.position.close()
                self.sell(size=0.01, sl=close + risk, tp=close - 2 * risk)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = Backtest(frame, EmaCross, cash=1_000_000, commission=0.0005)
        runs: list[Any] = []
        seconds = best_of(3, lambda: runs.append(test.run()))
        stats = runs[-1]
    rate = len(frame) / seconds
    print(f"  {label:<19} {seconds:8.3f} s   {rate:>10,.0f} candles/s   {stats['# Trades']} trades")
    return rate


def long_series(months: float, folder: Path) -> Path:
    """At least `months` of 1m candles from the ETH file by the replay's ping-pong laps."""
    source = candles()
    n = source.height
    want = int(months * 30.4375 * 1440)
    laps = []
    for lap in range(-(-want // n)):
        part = source if lap % 2 == 0 else source.reverse()
        if lap % 2:
            part = part.with_columns(open=pl.col("close"), close=pl.col("open"))
        laps.append(part.drop("timestamp"))
    series = pl.concat(laps).head(want)
    first = source["timestamp"][0]
    series = series.with_columns(
        date=pl.datetime_range(
            first, first + timedelta(minutes=want - 1), "1m", time_unit="ns", eager=True
        )
    ).select("date", "open", "high", "low", "close", "volume")
    path = folder / "ETH_USDT_USDT-1m-futures.feather"
    series.write_ipc(path)
    return path


def timed_backtest(
    strategy: str, params: dict[str, Any], path: Path, start: Any, end: Any, runs: int = 3
) -> tuple[float, Any]:
    from daemon.backtest import run_backtest, setup_from_config
    from tradectl.config import load_config

    setup = setup_from_config(load_config(REPO / "config.toml").config, SYMBOL)
    results = []
    seconds = best_of(
        runs,
        lambda: results.append(run_backtest(strategy, params, path, SYMBOL, setup, start, end)),
    )
    return seconds, results[-1]


def ict_per_candle_rate(path: Path, days: int) -> float:
    """ict as it ran before its whole-series path: `evaluate` on every 5m close's windows."""
    from daemon.adapters.candle_files import load_candles
    from daemon.backtest_simulator import signals_by_candle
    from strategies.ict import Ict, IctParams

    class PerCandle(Ict):
        def signal_series(self, frames: Any, windows: Any) -> None:  # type: ignore[override]
            return None

    data = load_candles(path)
    first = 3 * 1440
    strategy = PerCandle(IctParams())
    seconds = best_of(1, lambda: signals_by_candle(strategy, data, first, first + days * 1440))
    return days * 1440 / seconds


def bench_months(months: float) -> None:
    from datetime import datetime

    with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
        path = long_series(months, Path(tmp))
        frame = pl.read_ipc(path).rename({"date": "timestamp"})
        print(
            f"\n{months:g} months of 1m candles ({frame.height:,}; ETH laps forwards and "
            "backwards, built for the benchmark):"
        )
        first = frame["timestamp"][0]
        start = datetime.fromisoformat(first.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
        seconds, result = timed_backtest("ema_cross", {"trend_timeframe": None}, path, start, None)
        ours = result.candles / seconds
        print(
            f"  tradectl ema_cross  {seconds:8.3f} s   {ours:>10,.0f} candles/s   "
            f"{len(result.trades)} trades"
        )
        theirs = bench_theirs(frame, "backtesting.py ema")
        seconds, result = timed_backtest("ict", {}, path, start, None)
        ict = result.candles / seconds
        print(
            f"  tradectl ict        {seconds:8.3f} s   {ict:>10,.0f} candles/s   "
            f"{len(result.trades)} trades (whole-series signals)"
        )
        before = ict_per_candle_rate(path, 2)
        print(
            f"  ict before          {'':8}     {before:>10,.0f} candles/s   (evaluate per 5m "
            f"close, 2 days): the whole-series path is {ict / before:,.0f}x faster"
        )
        if theirs is not None:
            print(f"  ratio ema_cross ours / theirs {ours / theirs:6.2f}   (target >= 10)")
            print(f"  ratio ict ours / theirs' ema  {ict / theirs:6.2f}   (target >= 1)")
        scaling(path, start, months)


def scaling(path: Path, start: Any, months: float) -> None:
    """Seconds and candles/s per history length: linear growth keeps candles/s flat. The
    cost of a run is mostly per trade (the core's steps, the paper account's Decimals), so
    the time per trade is printed too: flat when nothing grows faster than linearly."""
    print(
        "\n  history    candles   ema_cross s  candles/s  us/trade     ict s  candles/s  us/trade"
    )
    spans = [("1 day", 1), ("1 week", 7), ("1 month", 30), ("3 months", 91)]
    spans.append((f"{months:g} months", int(months * 30.4375) - 3))
    for label, days in spans:
        begin = start + timedelta(days=3)  # three days of warm-up before, as by default
        end = begin + timedelta(days=days)
        runs = 3 if days < 100 else 1
        ema_s, ema = timed_backtest("ema_cross", {"trend_timeframe": None}, path, begin, end, runs)
        ict_s, ict = timed_backtest("ict", {}, path, begin, end, runs)
        print(
            f"  {label:<9} {ema.candles:>9,} {ema_s:11.3f} {ema.candles / ema_s:>10,.0f} "
            f"{ema_s / max(1, len(ema.trades)) * 1e6:9.0f} "
            f"{ict_s:9.3f} {ict.candles / ict_s:>10,.0f} "
            f"{ict_s / max(1, len(ict.trades)) * 1e6:9.0f}"
        )


def main() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"machine: {os.cpu_count()} cores, {os.uname().machine}, python {sys.version.split()[0]}")
    months = 6.0
    if "--months" in sys.argv:
        months = float(sys.argv[sys.argv.index("--months") + 1])
    if "--skip-file" not in sys.argv:
        df = candles()
        bench_indicators(df)
        first = df["timestamp"][0]
        first_open = first.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        end = None
        if "--days" in sys.argv:
            days = int(sys.argv[sys.argv.index("--days") + 1])
            df = df.head(days * 1440)
            end = (first + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        print(f"\nEMA 9/21 cross, ATR stop, 2R target, over {df.height} candles:")
        ours = bench_ours(first_open, end)
        bench_cli(first_open, end)
        if "--replay" in sys.argv:
            days = 2
            if "--replay-days" in sys.argv:
                days = int(sys.argv[sys.argv.index("--replay-days") + 1])
            bench_replay(first_open, days)
        theirs = bench_theirs(df)
        if theirs is not None:
            print(f"  ratio ours / theirs {ours / theirs:.2f}  (same run, same machine)")
    if months > 0:
        bench_months(months)


if __name__ == "__main__":
    main()
