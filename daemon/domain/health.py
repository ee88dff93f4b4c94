"""The health verdict: one pure function that both the watchdog and `tradectl health` use.

Healthy means the daemon is doing its job right now: the event loop answers within
a bound, every feed that bots listen to delivers, every bot whose desired
state is running has processed a candle within a bound derived from its feed's
pace, and no bot's position (running or stopped) has gone without a resting stop
covering it for longer than a short grace (one exchange round trip, so a normal
entry followed by its stop is never flagged). A process that is merely up is not
healthy. `alive` leaves the last rule out: it feeds the systemd watchdog, since a
restart would not place a refused stop any sooner.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HealthLimits:
    loop_lag_max_s: float = 5.0
    stale_floor_s: float = 30.0  # slack above the feed's pace before a bot counts as stalled
    stale_candles: float = 3.0  # how many missed candle intervals make a bot stale
    start_timeout_s: float = 120.0  # a bot still starting (reconciling) after this is stuck
    unprotected_grace_s: float = 5.0  # a position may wait this long for its resting stop

    def stale_after(self, interval_s: float) -> float:
        """How long a bot may go without a candle, given the feed's interval between candles."""
        return self.stale_floor_s + self.stale_candles * interval_s


@dataclass(frozen=True, slots=True)
class BotProgress:
    name: str
    should_run: bool  # desired state is running
    state: str  # BotState value
    seconds_since_progress: float | None  # since the last candle, or since this run began
    feed_interval_s: float
    error: str | None = None
    unprotected_s: float | None = None  # how long its position has had no covering stop


@dataclass(frozen=True, slots=True)
class FeedProgress:
    name: str
    has_consumers: bool
    seconds_since_event: float | None  # None: not started yet
    interval_s: float


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    healthy: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)
    alive: bool = True  # everything but unprotected positions is fine: feed the watchdog


def assess(
    loop_lag_s: float,
    bots: list[BotProgress],
    feeds: list[FeedProgress],
    limits: HealthLimits,
) -> HealthVerdict:
    reasons: list[str] = []
    if loop_lag_s > limits.loop_lag_max_s:
        reasons.append(f"event loop lag {loop_lag_s:.1f}s > {limits.loop_lag_max_s:g}s")
    for feed in feeds:
        bound = limits.stale_after(feed.interval_s)
        if (
            feed.has_consumers
            and feed.seconds_since_event is not None
            and feed.seconds_since_event > bound
        ):
            reasons.append(f"feed {feed.name} silent for {feed.seconds_since_event:.0f}s")
    unprotected = [
        f"unprotected position of bot {bot.name}: no resting stop covers it "
        f"for {bot.unprotected_s:.0f}s"
        for bot in bots
        if bot.unprotected_s is not None and bot.unprotected_s > limits.unprotected_grace_s
    ]
    for bot in bots:
        if not bot.should_run:
            continue
        age = bot.seconds_since_progress
        if bot.state == "starting":
            if age is not None and age > limits.start_timeout_s:
                reasons.append(f"bot {bot.name} stuck starting for {age:.0f}s")
            continue
        bound = limits.stale_after(bot.feed_interval_s)
        if age is None or age > bound:
            shown = "never" if age is None else f"{age:.0f}s ago"
            detail = f" ({bot.state}: {bot.error})" if bot.error else f" ({bot.state})"
            reasons.append(f"stale bot {bot.name}: last candle {shown}, bound {bound:.0f}s{detail}")
    return HealthVerdict(
        healthy=not reasons and not unprotected,
        reasons=(*reasons, *unprotected),
        alive=not reasons,
    )
