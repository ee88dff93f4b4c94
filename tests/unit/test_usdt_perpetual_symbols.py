"""Which symbols the account preflight lets trade: USDT-margined perpetuals only, the others
refused by name with their margin coin (and, on Bitget, their product type)."""

from __future__ import annotations

import pytest

from daemon.runtime.preflight import not_a_usdt_perpetual


@pytest.mark.parametrize("kind", ["binanceusdm", "bitget"])
def test_a_usdt_margined_perpetual_passes(kind: str) -> None:
    assert not_a_usdt_perpetual("ETH/USDT:USDT", kind) is None
    assert not_a_usdt_perpetual("1000PEPE/USDT:USDT", kind) is None


@pytest.mark.parametrize(
    ("symbol", "kind", "named"),
    [
        ("BTC/USDC:USDC", "binanceusdm", "(margin coin USDC)"),
        ("BTC/USDC:USDC", "bitget", "(margin coin USDC, Bitget product type USDC-FUTURES)"),
        ("ETH/USD:ETH", "bitget", "(margin coin ETH, Bitget product type COIN-FUTURES)"),
        ("ETH/USDT:USDT-261225", "binanceusdm", "(margin coin USDT, a future delivered on"),
        ("ETH/USDT", "bitget", "(a spot pair, no margin coin)"),
        ("ETH/BTC:USDT", "bitget", "(quoted in BTC)"),
    ],
)
def test_anything_else_is_refused_naming_what_it_is(symbol: str, kind: str, named: str) -> None:
    reason = not_a_usdt_perpetual(symbol, kind)
    assert reason is not None and reason.startswith(f"{symbol} is not a USDT-margined perpetual")
    assert named in reason
    assert reason.endswith("(Bitget: product type USDT-FUTURES, margin coin USDT)")
