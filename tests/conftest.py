"""Shared test helpers: polling instead of sleeping, repository paths."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # recorded data copied into the repo (see its README)

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail with its last error or value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except AssertionError as e:
            last = e
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last: {last!r}")
