"""The loopback Binance in a thread of the test process, with a market that moves.

A daemon in another process trades against it over real HTTP while a pusher feeds
it one real 1m candle every `interval_s`. The candles keep their prices but are moved in
time so that the preloaded ones end at the current minute, as on a real exchange: a
daemon judges a candle by its age on the exchange's clock (old ones were missed during
downtime and decide nothing), and the pushed ones run ahead of the clock, never behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from tests.loopback.binance_usdm import LoopbackBinance
from tests.loopback.binance_ws import LoopbackBinanceWs

T = TypeVar("T")
API_KEY, API_SECRET = "crash-key", "crash-secret"


def real_candles(
    path: Path, symbol_rows: int = 20_000
) -> list[tuple[int, float, float, float, float, float]]:
    frame = pl.read_ipc(path).head(symbol_rows)
    ms = frame["date"].dt.epoch("ms").to_list()
    cols = [frame[c].to_list() for c in ("open", "high", "low", "close", "volume")]
    return list(zip(ms, *cols, strict=True))


class ServerThread:
    def __init__(
        self,
        symbol: str,
        candles: list[tuple[int, float, float, float, float, float]],
        interval_s: float,
        preload: int = 100,
        server: Any = None,
        retime: bool = True,
    ) -> None:
        """`retime=False` keeps the candles' own times (an exchange whose ccxt never asks
        for candles after its own clock, like Bitget's, needs them all in the past)."""
        self.symbol = symbol
        self._candles = _now_based(candles, preload) if retime else candles
        self._interval = interval_s
        self._preload = preload
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._pushing = threading.Event()
        self._pushing.set()
        # Any loopback exchange with start/close/push_candle (Binance, with its market and
        # user-data websockets, unless given).
        self.server = server if server is not None else LoopbackBinanceWs(API_KEY, API_SECRET)
        self.url = ""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("loopback server did not start")
        return self.url

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.url = await self.server.start()
        for row in self._candles[: self._preload]:
            self.server.push_candle(self.symbol, *row)
        self._ready.set()
        self._stop = asyncio.Event()
        for row in self._candles[self._preload :]:
            if self._stop.is_set():
                break
            while not self._pushing.is_set() and not self._stop.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # paused from another thread: poll, no shared event
            self.server.push_candle(self.symbol, *row)
            with contextlib.suppress(TimeoutError):  # the next candle is due
                await asyncio.wait_for(self._stop.wait(), self._interval)
        await self._stop.wait()
        await self.server.close()

    def pause_market(self) -> None:
        self._pushing.clear()

    def resume_market(self) -> None:
        self._pushing.set()

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(server)` on the server's own thread and return its result."""

        async def inner() -> T:
            return fn(self.server)

        return asyncio.run_coroutine_threadsafe(inner(), self._loop).result(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)
        self._loop.close()


def _now_based(
    candles: list[tuple[int, float, float, float, float, float]], preload: int
) -> list[tuple[int, float, float, float, float, float]]:
    """The same candles, one a minute, the first pushed one opening at the current minute."""
    if not candles:
        return candles
    minute = 60_000
    first = int(time.time() * 1000) // minute * minute - min(preload, len(candles)) * minute
    return [(first + i * minute, *row[1:]) for i, row in enumerate(candles)]


def faults(server: LoopbackBinance, kind: str, **opts: Any) -> None:
    server.faults.add(kind, **opts)
