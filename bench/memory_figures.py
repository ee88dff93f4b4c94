"""Memory of replay feeds and of the paper daemon, 1 -> 10 -> 100 -> 1,000 bots.

1. Feeds alone, in a fresh interpreter per figure (RSS after the files are loaded, then after
   N feeds, half on the ETH file, half on BTC, as the daemon's many-bot config has them, each
   past its first events): what N feeds add. Baseline in the same run: the same feeds each
   also holding what a feed held before its events were built from the shared columns, its
   current UTC day as ready-made events (Candle objects with Decimal prices), built here the
   way the feed built it.
2. The daemon (a real subprocess, paper accounts on the replay at 1 candle a second per feed,
   `ema_cross` per bot): RSS and CPU with N bots, with ccxt imported (as daemon/app.py does
   today) and without it (ccxt replaced by an empty stand-in before start-up: a paper-only
   daemon never calls it), so the figure a lazy ccxt import would give is measured rather
   than guessed. With `--baseline REV` (e.g. the merge this branch started from), the same at
   100 bots for the code of REV (`git archive`d to a temporary folder, run through
   PYTHONPATH): the before figure from the same run.

Usage: python bench/memory_figures.py [seconds per daemon] [--bots 1,10,100,1000]
       [--baseline REV] [--skip-daemon]
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CANDLES = REPO / "data" / "candles"
FILES = [CANDLES / "ETH_USDT_USDT-1m-futures.feather", CANDLES / "BTC_USDT_USDT-1m-futures.feather"]
TIMEFRAMES = ["1m", "5m"]

# Put in front of sys.path of a daemon measured without ccxt: any ccxt name resolves to an
# inert stand-in, so the adapter module imports and nothing of ccxt is loaded.
NO_CCXT = """
import sys, types

class _Inert(types.ModuleType):
    __path__: list[str] = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (Exception,), {})
        setattr(self, name, value)
        return value

for _name in ("ccxt", "ccxt.async_support", "ccxt.base", "ccxt.base.errors",
              "ccxt.base.decimal_to_precision"):
    sys.modules[_name] = _Inert(_name)
"""


def rss_mb(pid: int | str = "self") -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------- 1. feeds, in a child


def child(mode: str, count: int) -> None:
    """Print the RSS N feeds add, as JSON; `mode` "shared" (now) or "day" (the baseline)."""
    from daemon.adapters.candle_files import load_candles
    from daemon.adapters.replay_feed import ReplayFeed
    from daemon.ports import CandlesClosed

    class Cursors:
        def load_feed_cursor(self, key: str) -> None:
            return None

        def save_feed_cursor(self, key: str, at: object) -> None:
            pass

    for path in FILES:
        load_candles(path).columns()
    day_before(load_candles(FILES[0]), 4320)  # polars warmed up in both modes
    gc.collect()
    before = rss_mb()
    feeds, days = [], []
    for i in range(count):
        path = FILES[i % 2]
        feed = ReplayFeed(path.name[:3] + "/USDT:USDT", path, TIMEFRAMES, 0, Cursors(), str(i))
        run_events(feed, 3)
        feeds.append(feed)
        if mode == "day":
            days.append(day_before(load_candles(path), 4320 + 3))
    gc.collect()
    held: list[Any] = [feeds, days, CandlesClosed]
    print(json.dumps({"added_mb": rss_mb() - before, "objects": len(held[0])}))


def run_events(feed: Any, count: int) -> None:
    seen: list[object] = []

    async def main() -> None:
        task = asyncio.create_task(feed.run())

        async def record(event: object) -> None:
            seen.append(event)
            if len(seen) == count:
                task.cancel()

        feed.subscribe(record)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def day_before(data: Any, index: int) -> tuple[Any, ...]:
    """What a feed held before: the ready-made events of the UTC day of virtual minute `index`,
    built as it built them (polars, then one Candle per candle and timeframe)."""
    import polars as pl

    from daemon.adapters.candle_files import aggregate, frame_to_candles, minute_to_datetime
    from daemon.ports import CandlesClosed

    t0, n = data.first_minute, data.height
    day_start = (t0 + index) // 1440 * 1440
    first = max(0, day_start - t0)
    i = pl.int_range(first, day_start + 1440 - t0, dtype=pl.Int64, eager=True)
    backwards = pl.Series((i // n) % 2 == 1)
    row = pl.select(pl.when(backwards).then(n - 1 - i % n).otherwise(i % n)).to_series()
    rows = data.frame.select(pl.all().gather(row))
    frame = rows.with_columns(
        minute=t0 + i,
        open=pl.when(backwards).then(pl.col("close")).otherwise(pl.col("open")),
        close=pl.when(backwards).then(pl.col("open")).otherwise(pl.col("close")),
    )
    fives = aggregate(frame, 1, 5)
    closing = {
        m + 5: c for m, c in zip(fives["minute"], frame_to_candles(fives, "X", "5m"), strict=True)
    }
    return tuple(
        CandlesClosed(
            "X",
            minute_to_datetime(t0 + first + k + 1),
            (c, *((closing[t0 + first + k + 1],) if t0 + first + k + 1 in closing else ())),
        )
        for k, c in enumerate(frame_to_candles(frame, "X", "1m"))
    )


def feeds_table(counts: list[int]) -> None:
    print("replay feeds alone (RSS they add, fresh interpreter each):")
    print("   feeds   shared columns (now)   own day of events (before)")
    for count in counts:
        added = {}
        for mode in ("shared", "day"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(count)],
                capture_output=True,
                text=True,
                check=True,
            )
            added[mode] = json.loads(done.stdout.strip().splitlines()[-1])["added_mb"]
        print(f"  {count:>6} {added['shared']:>17.1f} MB {added['day']:>22.1f} MB")


# ---------------------------------------------------------------- 2. the daemon


def daemon_figures(counts: list[int], seconds: float, baseline: str | None) -> None:
    from bench.daemon_figures import daemon_with

    with tempfile.TemporaryDirectory(prefix="tc-mem-") as tmp:
        base = Path(tmp)
        shim = base / "no_ccxt"
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(NO_CCXT)
        old = None
        if baseline is not None:
            old = base / "baseline"
            old.mkdir()
            archive = subprocess.run(
                ["git", "archive", baseline], cwd=REPO, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        print("\ndaemon, paper bots on the replay, 1 candle/s per feed (RSS, CPU of one core):")
        print("    bots   with ccxt             without ccxt          start-up to READY=1")
        runs: list[tuple[str, int, Path | None]] = [("now", n, None) for n in counts]
        if old is not None:
            runs.append((f"{baseline}", 100, old))
        for label, bots, code in runs:
            figures = []
            for ccxt in (True, False):
                paths = [str(p) for p in (None if ccxt else shim, code) if p is not None]
                folder = base / f"{label}-{bots}-{ccxt}".replace("/", "_")
                daemon = daemon_with(folder, bots, speed=60)
                if paths:
                    daemon.extra_env["PYTHONPATH"] = os.pathsep.join(paths)
                ready = notify_socket(folder / "n.sock")
                daemon.extra_env["NOTIFY_SOCKET"] = str(folder / "n.sock")
                began = time.monotonic()
                daemon.start(wait=False)
                try:
                    wait_ready(ready, daemon, timeout=60 + bots * 0.5)
                    up = time.monotonic() - began
                    assert daemon.proc is not None
                    figures.append((*usage(daemon.proc.pid, seconds), up))
                finally:
                    ready.close()
                    daemon.stop()
            (rss, cpu, up), (rss_free, cpu_free, _) = figures
            print(
                f"  {bots:>6}   {rss:7.1f} MB {cpu:5.1f} %    {rss_free:7.1f} MB {cpu_free:5.1f} %"
                f"    {up:6.1f} s  {'' if code is None else '(' + label + ')'}"
            )


def notify_socket(path: Path) -> socket.socket:
    """Where the daemon says READY=1 (sd_notify) once every bot is set up: read here instead
    of asking the control socket, which a thousand bots keep busy."""
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(path))
    sink.settimeout(1)
    return sink


def wait_ready(sink: socket.socket, daemon: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {daemon.proc.returncode}:\n{daemon.log()}")
        with contextlib.suppress(TimeoutError):
            if b"READY=1" in sink.recv(65536):
                return
    raise RuntimeError(f"the daemon was not ready within {timeout:.0f} s")


def usage(pid: int, seconds: float) -> tuple[float, float]:
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    began, used = time.monotonic(), cpu()
    time.sleep(seconds)
    share = (cpu() - used) / (time.monotonic() - began)
    return rss_mb(pid), share * 100


def main() -> None:
    if "--child" in sys.argv:
        at = sys.argv.index("--child")
        child(sys.argv[at + 1], int(sys.argv[at + 2]))
        return
    counts = [1, 10, 100, 1000]
    if "--bots" in sys.argv:
        counts = [int(n) for n in sys.argv[sys.argv.index("--bots") + 1].split(",")]
    baseline = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else None
    numbers = [a for a in sys.argv[1:2] if a.replace(".", "").isdigit()]
    seconds = float(numbers[0]) if numbers else 8.0
    print(f"machine: {os.cpu_count()} cores, {os.uname().machine}, python {sys.version.split()[0]}")
    feeds_table(counts)
    if "--skip-daemon" not in sys.argv:
        daemon_figures(counts, seconds, baseline)


if __name__ == "__main__":
    main()
