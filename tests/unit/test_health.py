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


def test_loop_lag_exactly_at_the_maximum_is_healthy() -> None:
    assert assess(2.0, [], [], LIMITS).healthy
    assert assess(2.01, [], [], LIMITS).reasons == ("event loop lag 2.0s > 2s",)


def test_a_running_bot_exactly_at_its_bound_is_healthy_and_one_second_past_is_stale() -> None:
    assert assess(0, [bot(190)], [], LIMITS).healthy
    assert not assess(0, [bot(190.5)], [], LIMITS).healthy


def test_a_bot_that_should_run_but_never_made_progress_is_stale() -> None:
    verdict = assess(0, [bot(None)], [], LIMITS)
    assert verdict.reasons == ("stale bot b1: last candle never, bound 190s (running)",)


def test_the_stale_bound_follows_the_feeds_own_pace() -> None:
    fast = bot(20, interval=1)  # a 1 s feed silent for 20 s: 3 missed candles plus 10 s slack
    assert assess(0, [fast], [], LIMITS).reasons == (
        "stale bot b1: last candle 20s ago, bound 13s (running)",
    )
    assert assess(0, [bot(20, interval=60)], [], LIMITS).healthy  # a 1m feed: not yet


def test_a_bot_starting_for_exactly_the_timeout_is_healthy_however_its_feed_paces() -> None:
    assert assess(0, [bot(60, "starting", interval=1)], [], LIMITS).healthy
    assert assess(0, [bot(None, "starting")], [], LIMITS).healthy  # this run has just begun
    assert assess(0, [bot(60.5, "starting")], [], LIMITS).reasons == (
        "bot b1 stuck starting for 60s",
    )


def test_a_bot_that_should_not_run_is_never_a_reason_whatever_its_state() -> None:
    stopped = [
        bot(None, "running", False),
        bot(10**6, "starting", False),
        bot(None, "errored", False),
    ]
    assert assess(0, stopped, [], LIMITS).healthy


def test_a_feed_is_judged_only_once_started_and_while_a_bot_listens() -> None:
    assert assess(0, [], [feed(None)], LIMITS).healthy  # not started yet
    assert assess(0, [], [feed(10**6, consumers=False)], LIMITS).healthy
    assert assess(0, [], [feed(190)], LIMITS).healthy  # exactly at its bound
    assert assess(0, [], [feed(20, interval=1)], LIMITS).reasons == (
        "feed paper:ETH/USDT:USDT silent for 20s",
    )


def test_every_reason_is_listed_in_order() -> None:
    verdict = assess(
        3, [bot(None), BotProgress("b2", True, "starting", 100, 60)], [feed(500)], LIMITS
    )
    assert not verdict.healthy
    assert verdict.reasons == (
        "event loop lag 3.0s > 2s",
        "feed paper:ETH/USDT:USDT silent for 500s",
        "stale bot b1: last candle never, bound 190s (running)",
        "bot b2 stuck starting for 100s",
    )


def test_a_bot_that_is_not_judged_never_hides_the_bots_after_it() -> None:
    bots = [
        BotProgress("off", False, "stopped", None, 60),
        BotProgress("boot", True, "starting", 5, 60),
        BotProgress("late", True, "running", 500, 60),
    ]
    assert assess(0, bots, [], LIMITS).reasons == (
        "stale bot late: last candle 500s ago, bound 190s (running)",
    )


def test_an_unprotected_position_is_unhealthy_past_its_grace_yet_the_daemon_stays_alive() -> None:
    """Alive feeds the watchdog: a missing stop is a loud problem, not a reason to restart."""
    at_grace = BotProgress("b1", True, "running", 1, 60, unprotected_s=5.0)
    assert assess(0, [at_grace], [], LIMITS).healthy
    past = BotProgress("b1", True, "running", 1, 60, unprotected_s=6.0)
    verdict = assess(0, [past], [], LIMITS)
    assert (verdict.healthy, verdict.alive) == (False, True)
    assert verdict.reasons == ("unprotected position of bot b1: no resting stop covers it for 6s",)
    stale = assess(0, [bot(1000), past], [], LIMITS)
    assert (stale.healthy, stale.alive) == (False, False)
    assert assess(0, [bot(1)], [], LIMITS).alive is True
