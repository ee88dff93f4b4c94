"""Timeframe names and their lengths."""

from __future__ import annotations

from datetime import timedelta

_UNITS = {"m": 60, "h": 3600, "d": 86400}


def timeframe_seconds(timeframe: str) -> int:
    """Seconds in a timeframe such as '1m', '15m', '1h', '1d'."""
    if len(timeframe) < 2 or timeframe[-1] not in _UNITS or not timeframe[:-1].isdigit():
        raise ValueError(f"unknown timeframe {timeframe!r}: use forms like 1m, 5m, 15m, 1h, 1d")
    count = int(timeframe[:-1])
    if count <= 0:
        raise ValueError(f"unknown timeframe {timeframe!r}: the count must be positive")
    return count * _UNITS[timeframe[-1]]


def timeframe_delta(timeframe: str) -> timedelta:
    return timedelta(seconds=timeframe_seconds(timeframe))
