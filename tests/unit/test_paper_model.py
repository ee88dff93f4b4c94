"""The paper fill model as a table: what a fill does to a position, and what the account refuses,
each at its edge. Numbers done by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from daemon.domain.errors import OrderRejected
from daemon.domain.models import Candle, Market, Side
from daemon.domain.paper_model import (
    FLAT,
    Holding,
    PositionChange,
    apply_fill,
    check_fill_margin,
    check_minimums,
    check_step,
    executed_quantity,
    is_marketable,
    isolated_margin,
    limit_triggered,
    require_margin,
    slipped_price,
)

D = Decimal
ETH = Market("ETH/USDT:USDT", D("0.001"), D("0.01"), D("0.001"), D(20), 125)
BUY, SELL = Side.BUY, Side.SELL


def held(qty: str, entry: str) -> Holding:
    return Holding(D(qty), D(entry))


@pytest.mark.parametrize(
    ("before", "side", "qty", "price", "after", "realized", "closed", "opened"),
    [
        (FLAT, BUY, "0.1", "2000", held("0.1", "2000"), "0", "0", "0.1"),
        (FLAT, SELL, "0.1", "2000", held("-0.1", "2000"), "0", "0", "0.1"),
        (held("0.1", "2000"), BUY, "0.3", "3000", held("0.4", "2750"), "0", "0", "0.3"),
        (held("-0.1", "2000"), SELL, "0.1", "3000", held("-0.2", "2500"), "0", "0", "0.1"),
        (held("0.4", "2000"), SELL, "0.1", "2100", held("0.3", "2000"), "10", "0.1", "0"),
        (held("-0.4", "2000"), BUY, "0.1", "2100", held("-0.3", "2000"), "-10", "0.1", "0"),
        (held("0.1", "2000"), SELL, "0.1", "1900", FLAT, "-10", "0.1", "0"),
        (held("-0.1", "2000"), BUY, "0.1", "1900", FLAT, "10", "0.1", "0"),
        (held("0.1", "2000"), SELL, "0.3", "2200", held("-0.2", "2200"), "20", "0.1", "0.2"),
        (held("-0.1", "2000"), BUY, "0.3", "2200", held("0.2", "2200"), "-20", "0.1", "0.2"),
        (held("1", "2000"), SELL, "0.5", "2100", held("0.5", "2000"), "50", "0.5", "0"),
    ],
    ids=[
        "open-long",
        "open-short",
        "add-long-averages",
        "add-short-averages",
        "reduce-long",
        "reduce-short",
        "close-long",
        "close-short",
        "flip-long-to-short",
        "flip-short-to-long",
        "reduce-exactly-one-unit",
    ],
)
def test_a_fill_opens_averages_reduces_closes_or_flips(
    before: Holding,
    side: Side,
    qty: str,
    price: str,
    after: Holding,
    realized: str,
    closed: str,
    opened: str,
) -> None:
    assert apply_fill(before, side, D(qty), D(price)) == PositionChange(
        after, D(realized), D(closed), D(opened)
    )


def test_margin_is_the_position_at_entry_over_the_leverage() -> None:
    assert isolated_margin(held("-0.3", "2000"), 3) == D(200)
    assert isolated_margin(FLAT, 10) == 0


def test_a_taker_pays_the_slippage_rounded_to_the_tick() -> None:
    assert slipped_price(BUY, D(2500), D(2), ETH) == D("2500.5")
    assert slipped_price(SELL, D(2500), D(2), ETH) == D("2499.5")
    assert slipped_price(BUY, D("2500.01"), D(0), ETH) == D("2500.01")
    assert slipped_price(BUY, D(1234), D("0.1"), ETH) == D("1234.01")  # 1234.01234 to the tick


def test_a_limit_at_the_last_price_is_marketable() -> None:
    assert is_marketable(BUY, D(2500), D(2500)) and is_marketable(SELL, D(2500), D(2500))
    assert is_marketable(BUY, D("2500.01"), D(2500)) and not is_marketable(
        BUY, D("2499.99"), D(2500)
    )
    assert is_marketable(SELL, D("2499.99"), D(2500))
    assert not is_marketable(SELL, D("2500.01"), D(2500))


def test_a_resting_limit_fills_when_the_candle_reaches_it_even_just() -> None:
    candle = Candle(
        "ETH/USDT:USDT",
        "1m",
        datetime(2025, 5, 10, tzinfo=UTC),
        D(2500),
        D(2510),
        D(2490),
        D(2505),
        D(1),
    )
    assert limit_triggered(BUY, D(2490), candle) and not limit_triggered(BUY, D("2489.99"), candle)
    assert limit_triggered(SELL, D(2510), candle) and not limit_triggered(
        SELL, D("2510.01"), candle
    )


def test_a_quantity_must_sit_on_the_markets_step() -> None:
    check_step(D("0.012"), ETH)
    with pytest.raises(OrderRejected, match=r"quantity 0.0125 is not a multiple of the step 0.001"):
        check_step(D("0.0125"), ETH)


@pytest.mark.parametrize(
    ("holding", "side", "qty", "reduce_only", "executed"),
    [
        (FLAT, BUY, "0.5", False, "0.5"),
        (held("0.2", "2000"), BUY, "0.5", False, "0.5"),
        (held("0.2", "2000"), SELL, "0.1", True, "0.1"),
        (held("0.2", "2000"), SELL, "0.5", True, "0.2"),  # clipped to the position
        (held("-0.2", "2000"), BUY, "0.2", True, "0.2"),
    ],
)
def test_what_of_an_order_executes(
    holding: Holding, side: Side, qty: str, reduce_only: bool, executed: str
) -> None:
    assert executed_quantity(holding, side, D(qty), reduce_only) == D(executed)


@pytest.mark.parametrize(
    ("holding", "side"),
    [(FLAT, BUY), (FLAT, SELL), (held("0.2", "2000"), BUY), (held("-0.2", "2000"), SELL)],
)
def test_a_reduce_only_order_with_nothing_to_reduce_is_refused(
    holding: Holding, side: Side
) -> None:
    with pytest.raises(OrderRejected) as caught:
        executed_quantity(holding, side, D("0.1"), True)
    assert str(caught.value) == "reduce-only order would not reduce the position"


def test_the_minimums_are_inclusive_and_named() -> None:
    check_minimums(D("0.008"), D(2500), ETH)  # exactly 20 USDT
    check_minimums(D("0.001"), D(20000), ETH)  # exactly the minimum amount
    with pytest.raises(OrderRejected, match=r"notional 19\.992 USDT is below the minimum 20 USDT"):
        check_minimums(D("0.008"), D(2499), ETH)
    with pytest.raises(OrderRejected, match=r"quantity 0\.0009 is below the minimum 0\.001"):
        check_minimums(D("0.0009"), D(100_000), ETH)


def test_margin_plus_fee_may_use_the_free_balance_to_the_cent_and_no_further() -> None:
    # 0.1 ETH at 3000 and 10x: 30 USDT margin + 0.15 fee.
    check_fill_margin(FLAT, BUY, D("0.1"), D(3000), D("0.15"), D("30.15"), 10)
    with pytest.raises(OrderRejected) as caught:
        check_fill_margin(FLAT, BUY, D("0.1"), D(3000), D("0.15"), D("30.14"), 10)
    assert str(caught.value) == (
        "insufficient margin: needs 30.15 USDT (margin 30.0 at 10x + fee 0.15), free 30.14 USDT"
    )


def test_an_increase_needs_only_its_extra_margin() -> None:
    before = held("0.1", "3000")  # 30 USDT already set aside
    check_fill_margin(before, BUY, D("0.1"), D(3000), D(0), D(30), 10)
    with pytest.raises(OrderRejected):
        check_fill_margin(before, BUY, D("0.1"), D(3000), D(0), D("29.99"), 10)


def test_a_reduction_never_needs_margin_even_at_a_loss_beyond_the_free_balance() -> None:
    check_fill_margin(held("0.1", "3000"), SELL, D("0.1"), D(1000), D(5), D(-500), 10)
    check_fill_margin(held("-0.1", "3000"), BUY, D("0.05"), D(5000), D(5), D(-500), 10)


def test_a_flip_may_pay_its_new_margin_out_of_what_it_realises() -> None:
    # Long 0.1 from 2000 (20 margin) sold 0.2 at 3000: +100 realised, a 0.1 short needing 30.
    check_fill_margin(held("0.1", "2000"), SELL, D("0.2"), D(3000), D(0), D(-90), 10)
    with pytest.raises(OrderRejected):
        check_fill_margin(held("0.1", "2000"), SELL, D("0.2"), D(3000), D(0), D("-90.01"), 10)


def test_require_margin_counts_the_fee() -> None:
    require_margin(D(10), D(1), D(11), 5)
    with pytest.raises(OrderRejected, match=r"needs 11 USDT \(margin 10 at 5x \+ fee 1\), free 10"):
        require_margin(D(10), D(1), D("10.99"), 5)
