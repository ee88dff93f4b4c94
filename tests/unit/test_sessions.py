"""Trading sessions read from the operator's strings, decided on candle close times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from daemon.domain.sessions import (
    SessionSpecError,
    in_session,
    parse_session,
    parse_sessions,
    session_ended,
    session_state,
)

LONDON_OPEN = "Mon-Fri 07:00-10:00 Europe/London"
NEW_YORK_OPEN = "Mon-Fri 13:30-16:00 America/New_York"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_london_open_follows_british_summer_time_across_the_march_change() -> None:
    windows = parse_sessions([LONDON_OPEN])
    # Friday 28 March 2025: GMT, the session is 07:00-10:00 UTC.
    assert not in_session(windows, utc(2025, 3, 28, 6, 59))
    assert in_session(windows, utc(2025, 3, 28, 7, 0))
    assert in_session(windows, utc(2025, 3, 28, 9, 59))
    assert not in_session(windows, utc(2025, 3, 28, 10, 0))
    # Clocks go forward on Sunday 30 March; Monday 31 March: BST, 06:00-09:00 UTC.
    assert in_session(windows, utc(2025, 3, 31, 6, 0))
    assert not in_session(windows, utc(2025, 3, 31, 9, 0))
    assert session_state(windows, utc(2025, 3, 28, 10, 0)).next_change == utc(2025, 3, 31, 6, 0)


def test_new_york_open_moves_back_an_hour_after_the_november_change() -> None:
    windows = parse_sessions([NEW_YORK_OPEN])
    # Friday 31 October 2025: EDT (UTC-4), 17:30-20:00 UTC.
    assert in_session(windows, utc(2025, 10, 31, 17, 30))
    assert not in_session(windows, utc(2025, 10, 31, 17, 29))
    # Monday 3 November 2025: EST (UTC-5), 18:30-21:00 UTC.
    assert not in_session(windows, utc(2025, 11, 3, 17, 30))
    assert in_session(windows, utc(2025, 11, 3, 18, 30))
    state = session_state(windows, utc(2025, 11, 3, 19, 0))
    assert state == session_state(windows, utc(2025, 11, 3, 20, 59))
    assert state.in_session and state.next_change == utc(2025, 11, 3, 21, 0)


def test_london_close_in_october_when_europe_changes_a_week_before_america() -> None:
    windows = parse_sessions([LONDON_OPEN, NEW_YORK_OPEN])
    # Monday 27 October 2025: London on GMT already, New York still on EDT.
    day = [utc(2025, 10, 27, 0, 0) + timedelta(minutes=m) for m in range(24 * 60)]
    open_minutes = [t for t in day if in_session(windows, t)]
    assert open_minutes[0] == utc(2025, 10, 27, 7, 0)
    assert utc(2025, 10, 27, 9, 59) in open_minutes
    assert utc(2025, 10, 27, 10, 0) not in open_minutes
    assert utc(2025, 10, 27, 17, 29) not in open_minutes
    assert utc(2025, 10, 27, 17, 30) in open_minutes  # 13:30 EDT
    assert open_minutes[-1] == utc(2025, 10, 27, 19, 59)
    assert len(open_minutes) == 180 + 150


def test_a_weekend_has_no_monday_to_friday_session() -> None:
    windows = parse_sessions([LONDON_OPEN, NEW_YORK_OPEN])
    saturday = utc(2025, 5, 10, 0, 0)
    assert not any(in_session(windows, saturday + timedelta(minutes=m)) for m in range(2 * 24 * 60))
    assert session_state(windows, saturday).next_change == utc(2025, 5, 12, 6, 0)  # BST


def test_a_range_past_midnight_belongs_to_the_day_it_starts_on() -> None:
    windows = parse_sessions(["Fri 22:00-02:00 UTC"])
    assert in_session(windows, utc(2025, 5, 9, 23, 0))  # Friday night
    assert in_session(windows, utc(2025, 5, 10, 1, 59))  # Saturday early
    assert not in_session(windows, utc(2025, 5, 10, 2, 0))
    assert not in_session(windows, utc(2025, 5, 8, 23, 0))  # Thursday night


def test_touching_windows_are_one_session_and_end_once() -> None:
    windows = parse_sessions(["07:00-10:00 UTC", "10:00-12:00 UTC"])
    assert session_state(windows, utc(2025, 5, 7, 8, 0)).next_change == utc(2025, 5, 7, 12, 0)
    assert not session_ended(windows, utc(2025, 5, 7, 9, 59), utc(2025, 5, 7, 10, 0))
    assert session_ended(windows, utc(2025, 5, 7, 11, 59), utc(2025, 5, 7, 12, 0))
    assert not session_ended(windows, utc(2025, 5, 7, 12, 0), utc(2025, 5, 7, 12, 1))


def test_a_session_end_is_seen_even_when_candles_skip_past_it() -> None:
    windows = parse_sessions([LONDON_OPEN])
    assert session_ended(windows, utc(2025, 5, 7, 8, 55), utc(2025, 5, 7, 9, 5))  # 10:00 BST
    assert not session_ended(windows, utc(2025, 5, 7, 8, 0), utc(2025, 5, 7, 8, 59))


def test_no_sessions_means_always_in_session() -> None:
    state = session_state((), utc(2025, 5, 10, 3, 0))
    assert state.in_session and state.next_change is None
    assert not session_ended((), utc(2025, 5, 10, 3, 0), utc(2025, 5, 11, 3, 0))


def test_whole_days_and_day_lists() -> None:
    windows = parse_sessions(["Sat,Sun 00:00-24:00 UTC"])
    assert in_session(windows, utc(2025, 5, 10, 0, 0))
    assert in_session(windows, utc(2025, 5, 11, 23, 59))
    assert not in_session(windows, utc(2025, 5, 12, 0, 0))
    assert parse_session("Fri-Mon 01:00-02:00 UTC").weekdays == frozenset({4, 5, 6, 0})


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Mon-Fri 07:00-10:00", "expected '[days] HH:MM-HH:MM Zone'"),
        ("Mon-Fri 07:00-10:00 Europe/Londres", "unknown time zone 'Europe/Londres'"),
        ("Mon-Fro 07:00-10:00 UTC", "'fro' is not a day"),
        ("Mon-Fri 25:00-10:00 UTC", "25:00 is not a time of day"),
        ("Mon-Fri 07:60-10:00 UTC", "07:60 is not a time of day"),
        ("Mon-Fri 07:00-07:00 UTC", "start and end are the same time"),
        ("07:00 UTC", "expected '[days] HH:MM-HH:MM Zone'"),
    ],
)
def test_a_bad_session_is_refused_naming_what_is_wrong(text: str, names: str) -> None:
    with pytest.raises(SessionSpecError, match=re.escape(names)) as refused:
        parse_session(text)
    assert repr(text) in str(refused.value)
