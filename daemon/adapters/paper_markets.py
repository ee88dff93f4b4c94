"""Market rules for the paper exchange, read from a JSON file shipped with the repository.

The paper account must refuse what the real exchange would refuse (step sizes, minimum
notional, leverage caps), otherwise a bot that works on paper fails on its first live order.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from daemon.domain.errors import ConfigError
from daemon.domain.models import Market

# Shipped inside the package, so a plain (non-editable) install finds it too.
DEFAULT_MARKETS_FILE = Path(__file__).resolve().with_name("binance_usdm_markets.json")

_DECIMAL_FIELDS = ("amount_step", "price_step", "min_amount", "min_notional")


def load_paper_markets(path: Path | None = None) -> dict[str, Market]:
    """Read `{"markets": {symbol: {...}}}`; any problem is a ConfigError naming the file."""
    file = path if path is not None else DEFAULT_MARKETS_FILE
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"markets file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"markets file {file} cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"markets file {file} is not valid JSON: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("markets"), dict):
        raise ConfigError(f"markets file {file}: expected an object with a 'markets' object")
    markets: dict[str, Market] = {}
    for symbol, spec in raw["markets"].items():
        try:
            markets[symbol] = _market(symbol, spec)
        except ValueError as e:
            raise ConfigError(f"markets file {file}: markets.{symbol}: {e}") from None
    if not markets:
        raise ConfigError(f"markets file {file}: 'markets' is empty")
    return markets


def _market(symbol: str, spec: Any) -> Market:
    if not isinstance(spec, dict):
        raise ValueError("expected an object")
    unknown = set(spec) - {*_DECIMAL_FIELDS, "max_leverage"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    values: dict[str, Decimal] = {}
    for name in _DECIMAL_FIELDS:
        value = spec.get(name)
        # Strings only: a JSON float such as 0.1 would already have lost its exactness.
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a decimal string, got {value!r}")
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{name} is not a number: {value!r}") from None
        if not number.is_finite() or number < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        values[name] = number
    for name in ("amount_step", "price_step"):
        if values[name] == 0:
            raise ValueError(f"{name} must be positive")
    leverage = spec.get("max_leverage")
    if not isinstance(leverage, int) or isinstance(leverage, bool) or leverage < 1:
        raise ValueError(f"max_leverage must be an integer >= 1, got {leverage!r}")
    return Market(
        symbol=symbol,
        amount_step=values["amount_step"],
        price_step=values["price_step"],
        min_amount=values["min_amount"],
        min_notional=values["min_notional"],
        max_leverage=leverage,
    )
