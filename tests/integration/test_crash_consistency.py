"""The daemon killed at random moments of the order flow never sends an order twice,
never forgets one, and ends with the store agreeing with the exchange, on Binance and on
Bitget."""

from __future__ import annotations

from pathlib import Path

from tests.integration.crash_harness import run_crash_test
from tests.store_under_test import StoreUnderTest


def test_kill_9_at_random_moments_leaves_store_and_exchange_in_agreement(
    tmp_path: Path, daemon_store: StoreUnderTest
) -> None:
    report = run_crash_test(tmp_path, kills=24)
    print(report.summary())
    # Enough order flow to mean something: orders and the stops and take-profits they carry.
    assert report.kills == 24, report.summary()
    assert report.exchange_orders + report.trigger_orders > 20, report.summary()
    assert report.unknown_to_store == [], "every order on the exchange must be known to the store"
    assert report.pending_left == [], "no intent may stay unresolved"
    assert report.missing_fills == [], "every fill must be in the journal"
    assert report.position_exchange == report.position_store, report.summary()


def test_flatten_all_flattens_a_loopback_account_after_kills(
    tmp_path: Path, daemon_store: StoreUnderTest
) -> None:
    report = run_crash_test(tmp_path, kills=3, seed=3, finish_with_flatten=True)
    assert report.flattened is not None and report.flattened["flat"], report.flattened
    assert report.position_exchange == report.position_store == 0, report.summary()
    assert report.mismatches == 0, report.summary()


def test_kill_9_on_bitget_leaves_store_and_exchange_in_agreement(
    tmp_path: Path, daemon_store: StoreUnderTest
) -> None:
    report = run_crash_test(tmp_path, kills=16, seed=5, exchange="bitget")
    print(report.summary())
    assert report.kills == 16, report.summary()
    assert report.exchange_orders + report.trigger_orders > 15, report.summary()
    assert report.resends == 0, "an intent is sent once, never again under its id"
    assert report.mismatches == 0, report.summary()
