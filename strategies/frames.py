"""Rolling windows of closed candles, turned into the polars frames strategies read."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import polars as pl

from daemon.domain.models import Candle
from daemon.domain.timeframes import timeframe_seconds

FRAME_SCHEMA = pl.Schema(
    {
        "timestamp": pl.Datetime("us", "UTC"),
        "open": pl.Float64(),
        "high": pl.Float64(),
        "low": pl.Float64(),
        "close": pl.Float64(),
        "volume": pl.Float64(),
    }
)
"""The column layout every strategy frame has: open time, OHLCV as floats."""

_Row = tuple[int, float, float, float, float, float]  # open time in epoch microseconds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class CandleWindow:
    """The last `maxlen` closed candles of one symbol and timeframe.

    Appends are O(1) (a deque of plain tuples, Decimals turned into floats once); the
    polars frame is built on demand and cached until the next append, since a runner
    asks for it once per candle while backfills append thousands in a row. Times are kept
    as integer microseconds because building a polars column from ints is many times
    faster than from datetime objects.
    """

    def __init__(self, timeframe: str, maxlen: int) -> None:
        timeframe_seconds(timeframe)  # refuse "7x" here rather than on the first candle
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        self.timeframe = timeframe
        self.maxlen = maxlen
        self._rows: deque[_Row] = deque(maxlen=maxlen)
        self._symbol: str | None = None
        self._frame: pl.DataFrame | None = None

    def append(self, candle: Candle) -> None:
        """Add the next closed candle; one not newer than the last raises ValueError.

        Also refused: another timeframe or symbol, and naive timestamps, since each
        would silently corrupt every indicator computed from the window.
        """
        if candle.timeframe != self.timeframe:
            raise ValueError(f"candle timeframe {candle.timeframe} in a {self.timeframe} window")
        if self._symbol is not None and candle.symbol != self._symbol:
            raise ValueError(f"candle for {candle.symbol} in a window of {self._symbol}")
        if candle.timestamp.tzinfo is None:
            raise ValueError(f"candle timestamp {candle.timestamp} is naive; expected UTC")
        ts = (candle.timestamp - _EPOCH) // _MICROSECOND
        last = self.last_timestamp
        if last is not None and candle.timestamp <= last:
            raise ValueError(f"candle at {candle.timestamp} is not newer than the last, {last}")
        self._symbol = candle.symbol
        self._rows.append(
            (
                ts,
                float(candle.open),
                float(candle.high),
                float(candle.low),
                float(candle.close),
                float(candle.volume),
            )
        )
        self._frame = None

    def extend(self, candles: Iterable[Candle]) -> None:
        """Append candles in order; stops at the first refused one (earlier ones stay)."""
        for candle in candles:
            self.append(candle)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def last_timestamp(self) -> datetime | None:
        """Open time of the newest candle, or None while empty."""
        return _EPOCH + self._rows[-1][0] * _MICROSECOND if self._rows else None

    def frame(self) -> pl.DataFrame:
        """The window as a frame in FRAME_SCHEMA, oldest first."""
        if self._frame is None:
            columns = list(zip(*self._rows, strict=True)) if self._rows else [()] * 6
            self._frame = pl.DataFrame(
                dict(zip(FRAME_SCHEMA.names(), map(list, columns), strict=True)),
                schema={**FRAME_SCHEMA, "timestamp": pl.Int64()},
            ).with_columns(pl.col("timestamp").cast(FRAME_SCHEMA["timestamp"]))
        return self._frame
