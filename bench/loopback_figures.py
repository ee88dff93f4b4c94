"""Figures against the loopback Binance (real ccxt, real HTTP), measured in one run:

- candle-close-to-order-sent latency p50/p99 of a daemon trading the loopback;
- flatten of 10 symbols with positions and resting orders, command to flat
  (`tradectl flatten --all --yes --direct`, a fresh process, as cron would run it).

With `--flatten-only [--baseline REV] [--rounds N]`: only the flatten, alternately for
the code of now and of REV (`git archive`d, run through PYTHONPATH), N times each.

Usage: python bench/loopback_figures.py [seconds of trading] [--flatten-only]
       [--baseline REV] [--rounds N]
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.daemon_figures import candle_to_order_latency, percentile  # noqa: E402
from daemon.adapters.ccxt_gateway import CcxtGateway  # noqa: E402
from daemon.credentials import ApiCredentials  # noqa: E402
from daemon.domain.models import OrderIntent, OrderType, Side  # noqa: E402
from tests.integration.crash_harness import FLIPPER, config_text  # noqa: E402
from tests.integration.daemon_process import DaemonProcess, short_socket_dir  # noqa: E402
from tests.loopback.binance_usdm import add_symbol_like  # noqa: E402
from tests.loopback.server_thread import API_KEY, API_SECRET, ServerThread, real_candles  # noqa: E402

EXTRA = ["SOL", "XRP", "DOGE", "ADA", "LINK", "AVAX", "DOT", "LTC"]
ENV = {"TRADECTL_LOOPBACK_API_KEY": API_KEY, "TRADECTL_LOOPBACK_SECRET": API_SECRET}


def trading_latency(folder: Path, seconds: float) -> list[float]:
    plugins = folder / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "flipper.py").write_text(FLIPPER)
    candles = real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather")
    market = ServerThread("ETHUSDT", candles, interval_s=0.25)
    url = market.start()
    config = folder / "config.toml"
    config.write_text(config_text(url, plugins))
    daemon = DaemonProcess(
        config,
        folder / "state",
        short_socket_dir() / "c.sock",
        folder / "daemon.log",
        extra_env=dict(ENV),
    )
    try:
        daemon.start()
        time.sleep(seconds)
    finally:
        daemon.stop()
        market.stop()
    return candle_to_order_latency(daemon.log_path)


async def open_positions(url: str, symbols: list[str]) -> None:
    gateway = CcxtGateway(
        "binance",
        "binanceusdm",
        ApiCredentials("b", API_KEY, API_SECRET),
        api_base_url=url,
        requests_per_s=1000,
    )
    await gateway.start()
    try:
        for n, symbol in enumerate(symbols):
            side = Side.BUY if n % 2 else Side.SELL
            now = datetime.now(UTC)
            await gateway.submit_order(
                OrderIntent(
                    None,
                    "binance",
                    symbol,
                    f"bench-{n}",
                    side,
                    OrderType.MARKET,
                    Decimal("0.03"),
                    None,
                    False,
                    now,
                )
            )
            await gateway.submit_order(
                OrderIntent(
                    None,
                    "binance",
                    symbol,
                    f"bench-rest-{n}",
                    side,
                    OrderType.LIMIT,
                    Decimal("0.03"),
                    Decimal(1000),
                    False,
                    now,
                )
            )
    finally:
        await gateway.close()


def flatten_ten(folder: Path, code: Path | None = None) -> tuple[float, str]:
    folder.mkdir(parents=True, exist_ok=True)
    for base in EXTRA:
        add_symbol_like(f"{base}USDT", base)
    candles = real_candles(REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather", 200)
    market = ServerThread("ETHUSDT", candles, interval_s=3600)
    url = market.start()
    try:
        for base in EXTRA:
            market.call(lambda s, b=base: s.push_candle(f"{b}USDT", *candles[0]))
        symbols = [f"{b}/USDT:USDT" for b in ["ETH", *EXTRA]] + ["BTC/USDT:USDT"]
        market.call(
            lambda s: s.push_candle("BTCUSDT", candles[0][0], 100_000, 100_000, 100_000, 100_000, 1)
        )
        asyncio.run(open_positions(url, [s for s in symbols if not s.startswith("BTC")]))
        config = folder / "flatten.toml"
        config.write_text(
            f'[accounts.binance]\nkind = "binanceusdm"\ncredentials = "loopback"\n'
            f'api_base_url = "{url}"\nrequests_per_s = 1000\n'
        )
        env = dict(
            DaemonProcess(config, folder / "fstate", folder / "x.sock", folder / "f.log").env, **ENV
        )
        if code is not None:
            env["PYTHONPATH"] = str(code)
        began = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "-m", "tradectl.cli", "flatten", "--all", "--yes", "--direct"],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=folder,  # not the checkout, which would shadow a baseline on PYTHONPATH
        )
        took = time.monotonic() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        left = market.call(lambda s: [sym for sym in s._symbols if s.position(sym)[0] != 0])
        verdict = f"CPU {cpu:.2f} s, exit {done.returncode}, positions left: {left or 'none'}"
        return took, verdict
    finally:
        market.stop()


def flatten_rounds() -> None:
    baseline = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    with tempfile.TemporaryDirectory(prefix="tc-loop-", dir="/tmp") as tmp:
        codes: list[tuple[str, Path | None]] = [("now", None)]
        if baseline is not None:
            old = Path(tmp) / "baseline"
            old.mkdir()
            archive = subprocess.run(
                ["git", "archive", baseline], cwd=REPO, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            codes.append((baseline, old))
        for r in range(rounds):
            for label, code in codes:
                took, verdict = flatten_ten(Path(tmp) / f"{label}-{r}", code)
                print(f"{label:>10}: flatten --all of 10 symbols: {took:.2f} s; {verdict}")


def main() -> None:
    if "--flatten-only" in sys.argv:
        flatten_rounds()
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory(prefix="tc-loop-") as tmp:
        lat = trading_latency(Path(tmp) / "latency", seconds)
        took, verdict = flatten_ten(Path(tmp))
    print(
        f"candle close to order sent (loopback): p50 {statistics.median(lat) * 1000:.1f} ms, "
        f"p99 {percentile(lat, 0.99) * 1000:.1f} ms ({len(lat)} orders)"
    )
    print(
        "flatten --all of 10 symbols (positions + resting orders), command to flat: "
        f"{took:.2f} s; {verdict}"
    )


if __name__ == "__main__":
    main()
