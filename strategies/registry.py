"""Strategy names to classes, and building a validated strategy from a bot's config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from strategies.base import Strategy, StrategyConfigError, parse_params
from strategies.ema_cross import EmaCross
from strategies.ict import Ict
from strategies.plugins import load_user_strategies

BUILTIN_STRATEGIES: tuple[type[Strategy], ...] = (EmaCross, Ict)
"""Registered explicitly: what can run is visible here, not decided by import side effects."""


def available_strategies(user_dir: Path | None = None) -> dict[str, type[Strategy]]:
    """Every strategy a bot may name, by name: built-ins, then the operator's plugins.

    A plugin reusing a built-in's name is refused rather than shadowing it.
    """
    plugins = load_user_strategies(user_dir) if user_dir is not None else []
    return _index([*BUILTIN_STRATEGIES, *plugins])


def build_strategy(
    name: str,
    params: Mapping[str, object],
    timeframes: Sequence[str] | None = None,
    user_dir: Path | None = None,
) -> Strategy:
    """Build strategy `name` from raw config values.

    `timeframes`, when given, are those the bot subscribes to; they must cover every
    timeframe the strategy needs. Every refusal is a StrategyConfigError naming the strategy.
    """
    strategies = available_strategies(user_dir)
    cls = strategies.get(name)
    if cls is None:
        raise StrategyConfigError(
            f"strategy {name}: unknown strategy (available: {', '.join(sorted(strategies))})"
        )
    strategy = cls(parse_params(cls, params))
    if timeframes is not None:
        missing = [tf for tf in strategy.timeframes if tf not in timeframes]
        if missing:
            raise StrategyConfigError(
                f"strategy {name}: needs timeframes {', '.join(missing)} "
                f"that the bot does not have (it has: {', '.join(timeframes) or 'none'})"
            )
    return strategy


def _index(classes: Iterable[type[Strategy]]) -> dict[str, type[Strategy]]:
    """Classes by name; two classes under one name is a configuration error."""
    index: dict[str, type[Strategy]] = {}
    for cls in classes:
        if cls.name in index:
            raise StrategyConfigError(
                f"strategy {cls.name}: defined twice ({index[cls.name].__qualname__} "
                f"and {cls.__qualname__})"
            )
        index[cls.name] = cls
    return index
