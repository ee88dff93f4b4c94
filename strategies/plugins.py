"""The operator's own strategies: every `*.py` file in a configured folder.

A plugin module defines one or more `Strategy` subclasses with a `name`; they run
exactly like the built-ins. A plugin that fails to import, or reuses a built-in's
name, is a configuration error naming the file: an operator must know at start-up,
not when a bot first evaluates.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from strategies.base import Strategy, StrategyConfigError

MODULE_PREFIX = "tradectl_user_strategies."


def load_user_strategies(folder: Path) -> list[type[Strategy]]:
    if not folder.is_dir():
        raise StrategyConfigError(f"strategy folder {folder}: not a directory")
    found: list[type[Strategy]] = []
    for path in sorted(folder.glob("*.py")):
        module_name = MODULE_PREFIX + path.stem
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise StrategyConfigError(f"strategy plugin {path}: cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[module_name]
            raise StrategyConfigError(f"strategy plugin {path}: {type(e).__name__}: {e}") from None
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, Strategy)
                and cls.__module__ == module_name
                and not inspect.isabstract(cls)
            ):
                found.append(cls)
    return found
