"""The fast backtest marks an open position in Python integers: it must give, float for float,
the equity the Decimal code gives (`float(wallet + (close - entry) * qty)`), including where
28 digits (Decimal's precision) no longer hold the sum and it falls back to Decimals."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.backtest_simulator import EquityCurve, _Decimals, _Marker
from daemon.domain.paper_model import Holding

DIGITS = st.integers(-(10**12), 10**12)


def decimal(units: int, exponent: int) -> Decimal:
    return Decimal(units).scaleb(exponent)


@settings(max_examples=300, deadline=None)
@given(
    closes=st.lists(st.integers(1, 10**9), min_size=1, max_size=30),
    scale=st.integers(0, 8),
    wallet=st.tuples(DIGITS, st.integers(-16, 2)),
    entry=st.tuples(st.integers(1, 10**30), st.integers(-30, 1)),
    qty=st.tuples(DIGITS.filter(bool), st.integers(-12, 1)),
)
def test_integer_marking_is_the_decimal_equity(
    closes: list[int],
    scale: int,
    wallet: tuple[int, int],
    entry: tuple[int, int],
    qty: tuple[int, int],
) -> None:
    column = pl.Series([decimal(u, -scale) for u in closes], dtype=pl.Decimal(38, scale))
    prices = _Decimals(column)
    holding = Holding(decimal(*qty), decimal(*entry))
    cash = decimal(*wallet)
    values = np.full(len(closes), np.nan)
    _Marker(prices).mark(values, 0, len(closes), cash, holding)
    expected = [
        float(cash + (prices[k] - holding.entry_price) * holding.qty) for k in range(len(closes))
    ]
    assert values.tolist() == expected


def test_the_equity_curve_reads_like_the_list_of_closes_it_stands_for() -> None:
    minute = 29_106_214  # 2025-05-04 15:34 UTC, in epoch minutes
    curve = EquityCurve(minute, np.array([1000.0, 1001.5, 999.25]))
    listed = list(curve)
    assert curve == listed and listed == curve[:]
    assert curve[-1] == listed[2] and len(curve) == 3
    assert listed[0][0].isoformat() == "2025-05-04T15:34:00+00:00"
    assert curve != listed[:2]
