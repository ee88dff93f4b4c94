"""A bot the exchange keeps refusing waits longer each time, and says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.runtime.refusals import MAX_PAUSE, RefusalBackoff

NOW = datetime(2025, 5, 10, 12, 0, tzinfo=UTC)


def test_the_first_refusal_only_tells_the_second_pauses_and_each_next_doubles() -> None:
    backoff = RefusalBackoff()
    backoff.refused("position_mode: hedge mode", NOW)
    assert backoff.allows(NOW) and backoff.until is None
    backoff.refused("position_mode: hedge mode", NOW)
    assert not backoff.allows(NOW + timedelta(seconds=59))
    assert backoff.allows(NOW + timedelta(minutes=1))
    backoff.refused("position_mode: hedge mode", NOW)
    assert backoff.until == NOW + timedelta(minutes=2)
    assert backoff.describe() == (
        "refused 3 time(s) in a row: position_mode: hedge mode; "
        "no new entries until 2025-05-10T12:02:00+00:00"
    )
    for _ in range(20):
        backoff.refused("again", NOW)
    assert backoff.until == NOW + MAX_PAUSE


def test_an_accepted_order_clears_the_backoff() -> None:
    backoff = RefusalBackoff()
    backoff.refused("leverage_bracket: -2027", NOW)
    backoff.refused("leverage_bracket: -2027", NOW)
    backoff.accepted()
    assert backoff.allows(NOW) and backoff.in_a_row == 0 and backoff.reason is None
