"""The health verdict that drives both the watchdog and `tradectl health`."""

from __future__ import annotations

from daemon.domain.health import BotProgress, FeedProgress, HealthLimits, assess

LIMITS = HealthLimits(loop_lag_max_s=2, stale_floor_s=10, stale_candles=3, start_timeout_s=60)


def bot(
    age: float | None, state: str = "running", should_run: bool = True, interval: float = 60
) -> BotProgress:
    return BotProgress("b1", should_run, state, age, interval)


def feed(age: float | None, consumers: bool = True, interval: float = 60) -> FeedProgress:
    return FeedProgress("paper:ETH/USDT:USDT", consumers, age, interval)


def test_bound_comes_from_the_feeds_pace() -> None:
    assert LIMITS.stale_after(60) == 190  # a live 1m feed: 3 missed candles plus slack
    assert LIMITS.stale_after(0.2) == 10.6  # a fast replay: mostly the slack


def test_fresh_bots_and_feeds_are_healthy() -> None:
    verdict = assess(0.01, [bot(5)], [feed(5)], LIMITS)
    assert verdict.healthy and verdict.reasons == ()


def test_a_running_bot_without_a_candle_within_the_bound_is_stale() -> None:
    verdict = assess(0.01, [bot(191)], [feed(1)], LIMITS)
    assert not verdict.healthy
    assert verdict.reasons == ("stale bot b1: last candle 191s ago, bound 190s (running)",)
    assert assess(0.01, [bot(189)], [feed(1)], LIMITS).healthy


def test_an_errored_bot_counts_once_it_has_been_without_progress_too_long() -> None:
    errored = BotProgress("b1", True, "errored", 200, 60, error="ValueError: boom")
    verdict = assess(0.0, [errored], [], LIMITS)
    assert verdict.reasons == (
        "stale bot b1: last candle 200s ago, bound 190s (errored: ValueError: boom)",
    )
    assert assess(0.0, [BotProgress("b1", True, "errored", 30, 60, "x")], [], LIMITS).healthy


def test_stopped_and_halted_bots_are_not_expected_to_progress() -> None:
    assert assess(0, [bot(None, "stopped", False), bot(9999, "halted", False)], [], LIMITS).healthy


def test_a_bot_starting_for_too_long_is_stuck() -> None:
    assert assess(0, [bot(59, "starting")], [], LIMITS).healthy
    assert assess(0, [bot(61, "starting")], [], LIMITS).reasons == (
        "bot b1 stuck starting for 61s",
    )


def test_loop_lag_and_a_silent_feed_are_reasons_too() -> None:
    verdict = assess(2.5, [], [feed(500), feed(500, consumers=False)], LIMITS)
    assert verdict.reasons == (
        "event loop lag 2.5s > 2s",
        "feed paper:ETH/USDT:USDT silent for 500s",
    )
