"""The daily report: one risk day's fills per bot and per account, from a real SQLite store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from daemon.adapters.apprise_alerts import AppriseAlerter
from daemon.domain.models import Fill, FundingPayment, Side
from daemon.duties import Duties
from daemon.runtime.supervisor import Supervisor
from tests.conftest import StoreOpener
from tradectl.config import Config

D = Decimal
DAY = datetime(2025, 5, 12, 0, 0, tzinfo=UTC)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return 0.0


def config() -> Config:
    return Config.model_validate(
        {
            "risk": {"daily_reset_utc": time(0, 0)},
            "accounts": {"paper": {"kind": "paper"}},
            "bots": {
                "eth": {"account": "paper", "symbol": "ETH/USDT:USDT", "strategy": "ema_cross"},
                "btc": {"account": "paper", "symbol": "BTC/USDT:USDT", "strategy": "ema_cross"},
            },
        }
    )


def fill(n: int, at: datetime, pnl: str, fee: str, symbol: str = "ETH/USDT:USDT") -> Fill:
    return Fill("paper", f"f{n}", f"c{n}", symbol, Side.SELL, D(1), D(2500), D(fee), D(pnl), at)


def test_the_report_sums_one_risk_day_per_bot_and_account_with_its_drawdown(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    try:
        hour = timedelta(hours=1)
        store.record_fill(fill(1, DAY - hour, "100", "1"), "eth")  # the day before: not counted
        store.record_fill(fill(2, DAY + hour, "10", "1"), "eth")
        store.record_fill(fill(3, DAY + 2 * hour, "-15", "1"), "eth")  # 9 -> -7: drawdown 16
        store.record_fill(fill(4, DAY + 3 * hour, "4", "0.5"), "eth")
        store.record_fill(fill(5, DAY + 4 * hour, "-2", "0", "BTC/USDT:USDT"), "btc")
        store.record_fill(fill(6, DAY + 5 * hour, "3", "0.5", "SOL/USDT:USDT"), None)  # by hand
        store.record_fill(fill(7, DAY + 25 * hour, "50", "1"), "eth")  # the next day
        clock = FixedClock(DAY + timedelta(days=1, minutes=1))
        supervisor = Supervisor({}, lambda spec, started: None, store, clock)  # type: ignore
        duties = Duties(
            config(), store, {}, supervisor, AppriseAlerter([]), clock, lambda a, s: None
        )
        report = duties.daily_report(DAY, DAY + timedelta(days=1))
    finally:
        store.close()
    eth = report["bots"]["eth"]
    assert (eth["net_pnl"], eth["trades"], eth["fees"], eth["max_drawdown"]) == (
        "-3.5",
        3,
        "2.5",
        "16",
    )
    assert report["bots"]["btc"] == {
        "net_pnl": "-2",
        "trades": 1,
        "fees": "0",
        "funding": "0",
        "max_drawdown": "2",
    }
    account = report["accounts"]["paper"]
    assert account["net_pnl"] == "-3", "the bots' -5.5 and the hand trade's 2.5"
    assert (account["trades"], account["fees"]) == (4, "2.5")


def test_the_rollover_journals_the_day_that_ended(open_store: StoreOpener) -> None:
    store = open_store()
    try:
        store.record_fill(fill(1, DAY + timedelta(hours=1), "10", "1"), "eth")
        clock = FixedClock(DAY + timedelta(days=1, hours=5))  # a late (caught-up) run
        supervisor = Supervisor({}, lambda spec, started: None, store, clock)  # type: ignore
        duties = Duties(
            config(), store, {}, supervisor, AppriseAlerter([]), clock, lambda a, s: None
        )
        asyncio.run(duties.rollover())
        [event] = [e for e in store.events() if e["kind"] == "daily_report"]
    finally:
        store.close()
    assert event["day"] == "2025-05-12"
    assert event["bots"]["eth"]["net_pnl"] == "9"


def test_funding_of_the_day_counts_in_the_bots_and_the_accounts_net(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    try:
        hour = timedelta(hours=1)
        store.record_fill(fill(1, DAY + hour, "10", "1"), "eth")
        for n, at, amount in ((1, DAY - hour, "-9"), (2, DAY + 8 * hour, "-1.25")):
            store.record_funding(
                FundingPayment("paper", f"p{n}", "ETH/USDT:USDT", D(amount), at), "eth"
            )
        clock = FixedClock(DAY + timedelta(days=1, minutes=1))
        supervisor = Supervisor({}, lambda spec, started: None, store, clock)  # type: ignore
        duties = Duties(
            config(), store, {}, supervisor, AppriseAlerter([]), clock, lambda a, s: None
        )
        report = duties.daily_report(DAY, DAY + timedelta(days=1))
    finally:
        store.close()
    eth = report["bots"]["eth"]
    assert (eth["funding"], eth["net_pnl"]) == ("-1.25", "7.75"), "only the day's payment"
    account = report["accounts"]["paper"]
    assert (account["funding"], account["net_pnl"]) == ("-1.25", "7.75")
