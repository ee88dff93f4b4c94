"""Throughput of the ICT indicators and of `tradectl backtest`, beside backtesting.py.

Over the 60k ETH 1m candles in data/candles:

1. each indicator of `strategies.indicators` on the whole frame (best of 3): candles/s;
2. `tradectl backtest ema_cross -p trend_timeframe=null` over the whole file, as a
   subprocess (start-up included): candles/s. That is the daemon's own runner, replay feed,
   risk checks, paper fills and SQLite store, candle by candle;
3. backtesting.py (https://kernc.github.io/backtesting.py/) running the same rule: EMA(9)
   crossing EMA(21) on 1m closes, stop 1.5 * Wilder ATR(14), take-profit at 2R, one position,
   entered at the next bar's open (its fill model); its candles/s, measured in the same run,
   and the ratio ours / theirs.

backtesting.py is not a dependency of tradectl. When it is missing the bench says the pip
command, or runs it with --install. The comparison is of speed only: backtesting.py
vectorises nothing per bar either, but it has no risk rules, no order journal and no store.
`--days N` limits parts 2 and 3 to the first N days of the file (both sides alike): our
per-candle cost grows with the trade history (see the note printed), so the whole file takes
many minutes.
Usage: python bench/backtest_throughput.py [--install] [--skip-backtest] [--days N]
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
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


def best_of(runs: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
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
    rate = report["candles"] / seconds
    print(
        f"  tradectl backtest   {seconds:8.1f} s   {rate:>10,.0f} candles/s   "
        f"{report['trades']} trades, net {report['net_pnl']:.2f} USDT"
    )
    return rate


def bench_theirs(df: pl.DataFrame) -> float | None:
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
        began = time.perf_counter()
        stats = test.run()
        seconds = time.perf_counter() - began
    rate = len(frame) / seconds
    print(
        f"  backtesting.py      {seconds:8.1f} s   {rate:>10,.0f} candles/s   "
        f"{stats['# Trades']} trades"
    )
    return rate


def main() -> None:
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
    ours = None if "--skip-backtest" in sys.argv else bench_ours(first_open, end)
    theirs = bench_theirs(df)
    if ours is not None and theirs is not None:
        print(f"  ratio ours / theirs {ours / theirs:.3f}  (same run, same machine)")


if __name__ == "__main__":
    main()
