"""What people read: money to the cent, counts in the right number."""

from __future__ import annotations

from typing import Any

from tradectl.render import flatten_text, plural, positions_text, status_text


def a_status(realized_pnl: str) -> dict[str, Any]:
    daemon = {"pid": 1, "version": "0.1.0", "uptime_s": 5, "socket": "s", "state_dir": "d"}
    bot = {
        "name": "eth-ema",
        "state": "running",
        "symbol": "ETH/USDT:USDT",
        "strategy": "ema_cross",
        "last_candle_age_s": 1.0,
        "position_side": "flat",
        "open_orders": 0,
        "realized_pnl": realized_pnl,
    }
    return {"daemon": daemon, "bots": [bot]}


def test_pnl_is_printed_to_the_cent() -> None:
    row = status_text(a_status("-1.234567891")).splitlines()[-1]
    assert row.endswith(" -1.23") and "1.2345" not in row
    position = {
        "bot": "eth-ema",
        "account": "paper",
        "symbol": "ETH/USDT:USDT",
        "side": "long",
        "qty": "0.02",
        "entry_price": "2500.12",
        "mark_price": "2510.5",
        "unrealized_pnl": "0.207600000",
        "leverage": 3,
    }
    row = positions_text([position]).splitlines()[-1]
    assert " 0.21 " in row and "0.2076" not in row
    assert " 2500.12 " in row and " 0.02 " in row, "prices and quantities as the exchange has them"


def test_counts_read_right_in_the_singular_and_the_plural() -> None:
    assert [plural(n, "account") for n in (0, 1, 2)] == ["0 accounts", "1 account", "2 accounts"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == (
        "3 entries"
    )
    one = {
        "account": "paper",
        "symbol": "ETH/USDT:USDT",
        "owner": "eth-ema",
        "cancelled": ["tc-1"],
        "closed_qty": "0.02",
        "flat": False,
        "remaining_qty": "0.01",
        "remaining_orders": 1,
        "errors": [],
    }
    text = flatten_text({"symbols": [one], "flat": False})
    assert "0.01 left, 1 open order; cancelled 1 order, closed 0.02" in text
