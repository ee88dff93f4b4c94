"""Load, validate and aggregate candle files in freqtrade's layout.

A file of its own because the replay feed, the benchmarks and the tests read the same files
and must refuse the same broken ones with the same words. Floats stay inside polars until
here: prices and volumes become polars Decimal columns at the file's own precision, so a
`Candle` gets exact `Decimal`s and a higher-timeframe volume is the exact sum of its parts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from daemon.domain.errors import ConfigError
from daemon.domain.models import Candle
from daemon.domain.timeframes import timeframe_seconds

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
REQUIRED_COLUMNS = ("date", *VALUE_COLUMNS)
MAX_SCALE = 12  # decimals kept when a column's floats are not short decimals (computed data)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE_MS = 60_000


class DataFileError(ConfigError):
    """A candle file is missing, unreadable or inconsistent; the message names file and problem.

    A ConfigError: the operator pointed the daemon at the wrong file, nothing to retry.
    """


@dataclass(frozen=True, slots=True)
class CandleColumns:
    """The values of a candle file as int64 arrays in units of their decimal scale: a
    price is `Decimal(units).scaleb(-price_scale)`, exactly the Decimal the frame holds.
    About 40 bytes a candle, shared by every reader of the file."""

    open: npt.NDArray[np.int64]
    high: npt.NDArray[np.int64]
    low: npt.NDArray[np.int64]
    close: npt.NDArray[np.int64]
    volume: npt.NDArray[np.int64]
    price_scale: int
    volume_scale: int


@dataclass(frozen=True, slots=True)
class CandleFile:
    """A validated candle file.

    `frame` has `minute` (Int64, epoch minutes of the candle's open), `open`, `high`, `low`,
    `close` (one Decimal dtype) and `volume` (Decimal), sorted, unique and without gaps.
    """

    path: Path
    timeframe: str
    frame: pl.DataFrame
    _columns: list[CandleColumns] = field(default_factory=list, compare=False, repr=False)

    def columns(self) -> CandleColumns:
        """The values as integer arrays (see CandleColumns), made once per loaded file."""
        if not self._columns:
            price = self.frame.schema["close"]
            volume = self.frame.schema["volume"]
            assert isinstance(price, pl.Decimal) and isinstance(volume, pl.Decimal)
            units = {
                c: self.frame[c].to_physical().cast(pl.Int64).to_numpy() for c in VALUE_COLUMNS
            }
            self._columns.append(
                CandleColumns(**units, price_scale=price.scale, volume_scale=volume.scale)
            )
        return self._columns[0]

    @property
    def first_minute(self) -> int:
        return int(self.frame["minute"][0])

    @property
    def height(self) -> int:
        return self.frame.height


def minute_to_datetime(minute: int) -> datetime:
    """The UTC instant `minute` minutes after the epoch."""
    return _EPOCH + timedelta(minutes=minute)


def minute_at_or_after(moment: datetime) -> int:
    """The first whole minute after the epoch at or after `moment` (minute_to_datetime's
    inverse, rounding up)."""
    return -((_EPOCH - moment) // timedelta(minutes=1))


def timeframe_minutes(timeframe: str) -> int:
    """Whole minutes in `timeframe`; ValueError naming it when it is not whole minutes."""
    seconds = timeframe_seconds(timeframe)
    if seconds % 60:
        raise ValueError(f"timeframe {timeframe!r} is not a whole number of minutes")
    return seconds // 60


def replay_file(data_dir: Path, symbol: str) -> Path:
    """freqtrade's naming: ETH/USDT:USDT -> ETH_USDT_USDT-1m-futures.feather (or .json)."""
    stem = symbol.replace("/", "_").replace(":", "_") + "-1m-futures"
    feather = data_dir / f"{stem}.feather"
    json_file = data_dir / f"{stem}.json"
    if feather.exists() or not json_file.exists():
        return feather
    return json_file


def load_candles(path: Path, timeframe: str = "1m") -> CandleFile:
    """Read a `.feather` (Arrow IPC) or freqtrade `.json` candle file and validate it.

    Loaded once per process and file version: a hundred bots replaying the same file
    share one immutable frame.
    """
    try:
        stat = path.stat()
    except OSError:
        return _load_candles(path, timeframe, 0, 0)  # _read names the missing file
    return _load_candles(path.resolve(), timeframe, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _load_candles(path: Path, timeframe: str, _mtime_ns: int, _size: int) -> CandleFile:
    """Read a `.feather` (Arrow IPC) or freqtrade `.json` candle file and validate it.

    Raises DataFileError naming the file and the first problem found: missing columns,
    empty, null/NaN/non-positive prices, negative volume, high < low, open or close
    outside high..low, timestamps off the timeframe grid, unsorted, duplicates, a different
    spacing than `timeframe`, gaps. Naive datetimes are taken as UTC (freqtrade's convention).
    """
    step_ms = timeframe_minutes(timeframe) * _MINUTE_MS
    raw = _read(path)
    frame = _normalise(path, raw)
    _check_values(path, frame)
    _check_times(path, frame, timeframe, step_ms)
    price_scale = _decimal_scale(frame, PRICE_COLUMNS)
    volume_scale = _decimal_scale(frame, ("volume",))
    frame = frame.select(
        (pl.col("ts") // _MINUTE_MS).alias("minute"),
        *[pl.col(c).cast(pl.Decimal(38, price_scale)) for c in PRICE_COLUMNS],
        volume=pl.col("volume").cast(pl.Decimal(38, volume_scale)),
    )
    return CandleFile(path=path, timeframe=timeframe, frame=frame)


def aggregate(frame: pl.DataFrame, base_minutes: int, minutes: int) -> pl.DataFrame:
    """Candles of `minutes` from contiguous candles of `base_minutes`, epoch-aligned.

    `frame` is laid out like `CandleFile.frame`. Only complete buckets are returned: a
    bucket cut by the start or the end of `frame` is dropped, never emitted half-built.
    """
    if minutes % base_minutes:
        raise ValueError(f"{minutes} minutes is not a multiple of {base_minutes} minutes")
    return (
        frame.group_by((pl.col("minute") // minutes * minutes).alias("bucket"), maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.len().alias("rows"),
        )
        .filter(pl.col("rows") == minutes // base_minutes)
        .select(pl.col("bucket").alias("minute"), *VALUE_COLUMNS)
    )


def frame_to_candles(frame: pl.DataFrame, symbol: str, timeframe: str) -> list[Candle]:
    """`Candle`s from a frame laid out like `CandleFile.frame`, in row order."""
    columns = [frame[c].to_list() for c in ("minute", *VALUE_COLUMNS)]
    return [
        Candle(symbol, timeframe, minute_to_datetime(m), o, h, low, c, v)
        for m, o, h, low, c, v in zip(*columns, strict=True)
    ]


def _read(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise DataFileError(f"{path}: no such candle file")
    suffix = path.suffix.lower()
    if suffix in (".feather", ".arrow", ".ipc"):
        try:
            return pl.read_ipc(path)
        except (OSError, pl.exceptions.PolarsError) as e:
            raise DataFileError(f"{path}: not a readable Arrow IPC (feather) file: {e}") from e
    if suffix == ".json":
        return _read_json(path)
    raise DataFileError(f"{path}: unknown candle file type {suffix!r}: use .feather or .json")


def _read_json(path: Path) -> pl.DataFrame:
    try:
        rows: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataFileError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(rows, list):
        raise DataFileError(f"{path}: expected a JSON list of [ts_ms, o, h, l, c, v] rows")
    for index, row in enumerate(rows):
        if not (
            isinstance(row, list)
            and len(row) >= 6
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row[:6])
            and isinstance(row[0], int)
        ):
            raise DataFileError(
                f"{path}: row {index} is not [ts_ms, open, high, low, close, volume]: {row!r:.80}"
            )
    return pl.DataFrame(
        [row[:6] for row in rows],
        schema={"ts": pl.Int64, **{c: pl.Float64 for c in VALUE_COLUMNS}},
        orient="row",
    )


def _normalise(path: Path, raw: pl.DataFrame) -> pl.DataFrame:
    """Columns `ts` (Int64 epoch ms) and the values as Float64, or DataFileError."""
    if "ts" not in raw.columns:  # feather: a datetime `date` column
        missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
        if missing:
            raise DataFileError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(raw.columns)}"
            )
        if not isinstance(raw.schema["date"], pl.Datetime):
            raise DataFileError(f"{path}: column date must be a datetime, not {raw.schema['date']}")
        raw = raw.with_columns(ts=pl.col("date").dt.epoch("ms"))
    for column in VALUE_COLUMNS:
        if not raw.schema[column].is_numeric():
            raise DataFileError(
                f"{path}: column {column} must be numeric, not {raw.schema[column]}"
            )
    frame = raw.select("ts", *[pl.col(c).cast(pl.Float64) for c in VALUE_COLUMNS])
    if frame.is_empty():
        raise DataFileError(f"{path}: no candles")
    return frame


def _check_values(path: Path, frame: pl.DataFrame) -> None:
    values = [pl.col(c) for c in VALUE_COLUMNS]
    checks: Sequence[tuple[pl.Expr, str]] = (
        (pl.any_horizontal(pl.col("ts").is_null(), *[v.is_null() for v in values]), "empty cell"),
        (pl.any_horizontal(*[~v.is_finite() for v in values]), "NaN or infinite value"),
        (pl.any_horizontal(*[pl.col(c) <= 0 for c in PRICE_COLUMNS]), "price not above zero"),
        (pl.col("volume") < 0, "negative volume"),
        (pl.col("high") < pl.col("low"), "high below low"),
        (
            pl.any_horizontal(
                *[
                    (pl.col(c) > pl.col("high")) | (pl.col(c) < pl.col("low"))
                    for c in ("open", "close")
                ]
            ),
            "open or close outside high..low",
        ),
    )
    for condition, problem in checks:
        _refuse_rows(path, frame, condition, problem)


def _check_times(path: Path, frame: pl.DataFrame, timeframe: str, step_ms: int) -> None:
    _refuse_rows(
        path, frame, pl.col("ts") % step_ms != 0, f"timestamp not on a {timeframe} boundary"
    )
    step = pl.col("ts").diff()
    _refuse_rows(path, frame, step < 0, "dates not sorted: earlier than the row before")
    _refuse_rows(path, frame, step == 0, "duplicate date: same as the row before")
    steps = frame.select(step.alias("step")).drop_nulls()
    if steps.is_empty():
        return
    usual = int(steps["step"].mode().sort()[0])
    if usual != step_ms:
        raise DataFileError(
            f"{path}: candles are mostly {usual // _MINUTE_MS} minutes apart, "
            f"expected {timeframe}: is this a file of another timeframe?"
        )
    gaps = frame.with_row_index("row").filter(step > step_ms)
    if gaps.height:
        row = int(gaps["row"][0])
        missing = (int(gaps["ts"][0]) - int(frame["ts"][row - 1])) // step_ms - 1
        raise DataFileError(
            f"{path}: {gaps.height} gap(s) in the dates; the first: {missing} candle(s) missing "
            f"before row {row} ({_when(int(gaps['ts'][0]))})"
        )


def _refuse_rows(path: Path, frame: pl.DataFrame, condition: pl.Expr, problem: str) -> None:
    bad = frame.with_row_index("row").filter(condition)
    if bad.height:
        row = int(bad["row"][0])
        ts = bad["ts"][0]
        when = _when(int(ts)) if ts is not None else "no date"
        raise DataFileError(
            f"{path}: {problem} in {bad.height} row(s); the first is row {row} ({when})"
        )


def _decimal_scale(frame: pl.DataFrame, columns: Sequence[str]) -> int:
    """Fewest decimals that hold every value exactly (the file's tick), at most MAX_SCALE."""
    for scale in range(MAX_SCALE + 1):
        exact = frame.select(
            pl.all_horizontal(*[(pl.col(c).round(scale) == pl.col(c)).all() for c in columns])
        )
        if exact.item():
            return scale
    return MAX_SCALE


def _when(ts_ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ts_ms)).isoformat()
