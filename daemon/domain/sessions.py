"""Trading sessions ("kill zones"): when a bot may open new positions, as pure time arithmetic.

A session is written as an operator reads it: `"Mon-Fri 07:00-10:00 Europe/London"` (an
optional day list, a local time range, an IANA zone). The zone does the daylight-saving work:
London's 07:00 is 06:00 UTC in summer and 07:00 UTC in winter. A range whose end is not after
its start runs past midnight and belongs to the day it starts on (`Fri 22:00-02:00` ends on
Saturday). Windows are half-open: a candle that closes exactly at 10:00 closes after the
session. `24:00` as an end means midnight, so `00:00-24:00` is the whole day. A start at a
local time that a spring-forward skips is taken at the offset before the
change, the way `zoneinfo` reads such a wall time.

Nothing here reads a clock: the trading core passes each candle's close time, so a backtest,
the paper replay and live trading agree on every decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(
    r"^\s*(?:(?P<days>[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?(?:\s*,\s*[A-Za-z]{3}"
    r"(?:\s*-\s*[A-Za-z]{3})?)*)\s+)?"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s+(?P<zone>\S+)\s*$"
)
_LOOKAHEAD_DAYS = 9  # every weekly pattern repeats within a week; a margin for long windows


class SessionSpecError(ValueError):
    """A session string that cannot be read; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class SessionWindow:
    weekdays: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: time
    end: time
    zone: ZoneInfo
    text: str  # as the operator wrote it, for messages

    def intervals_around(self, moment: datetime) -> list[tuple[datetime, datetime]]:
        """UTC intervals of this window that start from the day before `moment` (local)
        up to `_LOOKAHEAD_DAYS` after it."""
        local_day = moment.astimezone(self.zone).date()
        found = []
        for offset in range(-1, _LOOKAHEAD_DAYS):
            day = local_day + timedelta(days=offset)
            if day.weekday() in self.weekdays:
                found.append(self._interval(day))
        return found

    def _interval(self, day: date) -> tuple[datetime, datetime]:
        start = datetime.combine(day, self.start, tzinfo=self.zone)
        end_day = day if self.end > self.start else day + timedelta(days=1)
        end = datetime.combine(end_day, self.end, tzinfo=self.zone)
        return start.astimezone(UTC), end.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SessionState:
    in_session: bool
    next_change: datetime | None  # None: always in session (no windows)


def parse_session(text: str) -> SessionWindow:
    """One session string as a window, or SessionSpecError naming what is wrong."""
    match = _SPEC.match(text)
    if match is None:
        raise SessionSpecError(
            f"session {text!r}: expected '[days] HH:MM-HH:MM Zone', "
            "e.g. 'Mon-Fri 07:00-10:00 Europe/London'"
        )
    weekdays = _weekdays(text, match["days"]) if match["days"] else frozenset(range(7))
    start, end = _clock(text, match["start"]), _clock(text, match["end"])
    if start == end and match["end"] != "24:00":
        raise SessionSpecError(f"session {text!r}: start and end are the same time")
    try:
        zone = ZoneInfo(match["zone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise SessionSpecError(
            f"session {text!r}: unknown time zone {match['zone']!r} "
            "(an IANA name such as Europe/London, America/New_York or UTC)"
        ) from None
    return SessionWindow(weekdays, start, end, zone, text.strip())


def parse_sessions(texts: Iterable[str]) -> tuple[SessionWindow, ...]:
    return tuple(parse_session(t) for t in texts)


def session_state(windows: Sequence[SessionWindow], moment: datetime) -> SessionState:
    """Whether `moment` is inside any window, and when that next changes.

    No windows means no restriction: always in session, nothing ever changes.
    """
    if not windows:
        return SessionState(True, None)
    merged = _merged(iv for w in windows for iv in w.intervals_around(moment))
    for start, end in merged:
        if start <= moment < end:
            return SessionState(True, end)
        if start > moment:
            return SessionState(False, start)
    return SessionState(False, None)  # unreachable for windows on at least one weekday


def in_session(windows: Sequence[SessionWindow], moment: datetime) -> bool:
    return session_state(windows, moment).in_session


def session_ended(windows: Sequence[SessionWindow], previous: datetime, moment: datetime) -> bool:
    """A session ended after `previous` and no later than `moment` (what `session_end =
    "flatten"` acts on). Windows that touch count as one session."""
    if not windows or previous >= moment:
        return False
    state = session_state(windows, previous)
    return state.in_session and state.next_change is not None and state.next_change <= moment


def _merged(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _clock(text: str, value: str) -> time:
    hours, minutes = (int(part) for part in value.split(":"))
    if hours == 24 and minutes == 0:
        return time(0, 0)
    if not (0 <= hours <= 23 and 0 <= minutes <= 59):
        raise SessionSpecError(f"session {text!r}: {value} is not a time of day")
    return time(hours, minutes)


def _weekdays(text: str, days: str) -> frozenset[int]:
    chosen: set[int] = set()
    for part in days.split(","):
        ends = [d.strip().lower() for d in part.split("-")]
        for name in ends:
            if name not in DAYS:
                raise SessionSpecError(
                    f"session {text!r}: {name!r} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"
                )
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        span = (last - first) % 7
        chosen.update((first + i) % 7 for i in range(span + 1))
    return frozenset(chosen)
