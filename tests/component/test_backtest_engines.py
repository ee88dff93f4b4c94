"""The fast backtest engine decides exactly as the replay engine, which is the daemon's own runner.

Each case runs one window through both engines and compares everything a user reads: the
summary with every trade, the fills with their fees, the equity marked at every close, the
halt. The cases reach the runner's less travelled paths: short warm-up windows at the data's
first candle, a strategy on 5m with a 1h filter evaluated per candle, a daily loss limit that
halts and flattens, an account too small for the market's minimums, and a leverage the risk
rules refuse.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from daemon.adapters.candle_files import load_candles, minute_to_datetime
from daemon.backtest import (
    BacktestInputError,
    BacktestResult,
    BacktestSetup,
    run_backtest,
    setup_from_config,
)
from tests.conftest import REPO
from tradectl.config import load_config

pytestmark = pytest.mark.slow  # both engines replay days of real candles

ETH = REPO / "data" / "candles" / "ETH_USDT_USDT-1m-futures.feather"


def shipped_setup(symbol: str = "ETH/USDT:USDT") -> BacktestSetup:
    return setup_from_config(load_config(REPO / "config.toml").config, symbol)


def both_engines(
    strategy: str,
    params: dict[str, Any],
    start: str,
    hours: float,
    setup: BacktestSetup | None = None,
    data: Any = ETH,
    symbol: str = "ETH/USDT:USDT",
) -> tuple[BacktestResult, BacktestResult]:
    begin = datetime.fromisoformat(start)
    end = begin + timedelta(hours=hours)
    chosen = setup or shipped_setup(symbol)
    return tuple(  # type: ignore[return-value]
        run_backtest(strategy, params, data, symbol, chosen, begin, end, engine=engine)
        for engine in ("fast", "replay")
    )


def assert_same(fast: BacktestResult, replay: BacktestResult) -> None:
    assert fast.summary() == replay.summary()
    assert [dataclasses.replace(f, fill_id="", client_order_id="") for f in fast.fills] == [
        dataclasses.replace(f, fill_id="", client_order_id="") for f in replay.fills
    ]
    assert fast.equity == replay.equity
    assert fast.signals == replay.signals


def test_ema_cross_with_its_5m_filter_trades_alike_for_a_day() -> None:
    fast, replay = both_engines("ema_cross", {}, "2025-05-10T00:00:00+00:00", 24)
    assert len(fast.trades) >= 10, "the day must hold trades to compare"
    assert_same(fast, replay)
    assert [f.client_order_id for f in fast.fills] == [f.client_order_id for f in replay.fills]


def test_exits_fill_at_their_trigger_inside_the_candle_not_at_its_close() -> None:
    """Stops and take-profits rest on the paper account: a candle whose range reaches one
    fills it at the trigger (or at the open after a gap), moved by the slippage."""
    fast, replay = both_engines("ema_cross", {}, "2025-05-10T00:00:00+00:00", 24)
    assert_same(fast, replay)
    frame = load_candles(ETH).frame
    first = minute_to_datetime(load_candles(ETH).first_minute)
    slip = Decimal("0.0002")
    by_reason: dict[str, int] = {}
    inside = 0
    for trade in fast.trades:
        if trade.exit_reason not in ("stop", "take_profit"):
            continue
        by_reason[trade.exit_reason] = by_reason.get(trade.exit_reason, 0) + 1
        row = (trade.exit_time - timedelta(minutes=1) - first) // timedelta(minutes=1)
        low, high, close = (frame[c][row] for c in ("low", "high", "close"))
        price = trade.exit_price
        assert low * (1 - slip) - Decimal("0.01") <= price <= high * (1 + slip) + Decimal("0.01")
        inside += abs(price - close) > close * slip + Decimal("0.01")
    assert by_reason.get("stop", 0) >= 3 and by_reason.get("take_profit", 0) >= 1, by_reason
    assert inside >= 3, "exits must fill at their triggers, not at the candle's close"


def test_warm_up_from_the_data_s_first_candle_alike() -> None:
    """Windows still filling, so the rolling averages are seeded at the data's start."""
    first = "2025-05-04T15:33:00+00:00"  # mid-bucket: the first 5m candle is partial
    fast, replay = both_engines("ema_cross", {"fast": 5, "slow": 13}, first, 10)
    assert fast.start == replay.start
    assert len(fast.trades) >= 5
    assert_same(fast, replay)


def test_ict_on_5m_with_a_1h_filter_alike() -> None:
    fast, replay = both_engines("ict", {}, "2025-05-12T00:00:00+00:00", 10)
    assert fast.signals >= 3 and fast.trades, "the window must hold ICT signals and trades"
    assert_same(fast, replay)


def test_daily_loss_limit_halts_and_flattens_alike() -> None:
    setup = shipped_setup()
    tight = dataclasses.replace(
        setup, limits=dataclasses.replace(setup.limits, daily_loss_limit_usdt=Decimal("0.3"))
    )
    fast, replay = both_engines("ema_cross", {}, "2025-05-10T20:00:00+00:00", 8, setup=tight)
    assert fast.halted is not None and "daily loss limit" in fast.halted["reason"]
    assert_same(fast, replay)


def test_an_account_too_small_for_the_minimums_and_refused_leverage_alike() -> None:
    setup = shipped_setup()
    small = dataclasses.replace(
        setup, paper=dataclasses.replace(setup.paper, initial_balance=Decimal("40"))
    )
    fast, replay = both_engines(
        "ema_cross", {"trend_timeframe": None}, "2025-05-11T00:00:00+00:00", 6, setup=small
    )
    assert_same(fast, replay)
    refused = dataclasses.replace(setup, leverage=setup.limits.max_leverage + 1)
    fast, replay = both_engines(
        "ema_cross", {"trend_timeframe": None}, "2025-05-11T00:00:00+00:00", 3, setup=refused
    )
    assert fast.signals > 0 and not fast.trades, "every entry is refused by the leverage rule"
    assert_same(fast, replay)


@pytest.mark.parametrize("engine", ["fast", "replay"])
def test_an_unknown_market_is_refused_by_either_engine(engine: str) -> None:
    with pytest.raises(BacktestInputError, match="no paper market 'DOGE/USDT:USDT'"):
        run_backtest(
            "ema_cross",
            {},
            ETH,
            "DOGE/USDT:USDT",
            shipped_setup(),
            datetime.fromisoformat("2025-05-10T00:00:00+00:00"),
            datetime.fromisoformat("2025-05-10T01:00:00+00:00"),
            engine=engine,
        )


def test_an_end_between_two_minutes_keeps_the_candle_opening_before_it_alike() -> None:
    fast, replay = both_engines("ema_cross", {}, "2025-05-10T00:00:00+00:00", 3 + 0.5 / 60)
    assert fast.candles == replay.candles == 181  # 00:00 .. 03:00 open before 03:00:30
    assert_same(fast, replay)


LONDON_AND_NEW_YORK = ("Mon-Fri 07:00-10:00 Europe/London", "Mon-Fri 13:30-16:00 America/New_York")


def test_sessions_that_flatten_at_their_end_trade_alike() -> None:
    setup = dataclasses.replace(
        shipped_setup(), sessions=LONDON_AND_NEW_YORK, session_end="flatten"
    )
    fast, replay = both_engines("ema_cross", {}, "2025-05-13T04:00:00+00:00", 18, setup=setup)
    assert_same(fast, replay)
    assert fast.trades, "the sessions must hold trades"
    for trade in fast.trades:  # London opens 06:00 UTC in May, New York 13:30 local = 17:30 UTC
        opened = trade.entry_time.strftime("%H:%M")
        assert "06:00" <= opened < "09:00" or "17:30" <= opened < "20:00", trade
    reasons = {t.exit_reason for t in fast.trades}
    assert "session_end" in reasons, reasons
    for trade in (t for t in fast.trades if t.exit_reason == "session_end"):
        assert trade.exit_time.strftime("%H:%M") in ("09:00", "20:00"), trade


def test_a_weekend_replay_with_a_monday_to_friday_session_opens_nothing() -> None:
    setup = dataclasses.replace(shipped_setup(), sessions=("Mon-Fri 00:00-24:00 UTC",))
    start = "2025-05-10T00:00:00+00:00"  # a Saturday
    fast, replay = both_engines("ema_cross", {}, start, 47, setup=setup)
    assert_same(fast, replay)
    assert fast.signals >= 3, "the strategy signals over the weekend"
    assert fast.trades == [] and fast.fills == [] and fast.open_position is None
    free, _ = both_engines("ema_cross", {}, start, 47)
    assert free.trades, "without the session the same weekend trades"
