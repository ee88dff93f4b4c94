"""Shared test helpers: polling instead of sleeping, repository paths."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, Phase, settings

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # recorded data copied into the repo (see its README)

T = TypeVar("T")

# bench/mutation.py runs the tests against each mutant with this profile: the same examples
# every time (a score must not depend on luck), no deadline (mutated code runs slower through
# mutmut's trampolines), no example database carried from one mutant to the next, and no
# shrinking (a failure is all a mutant run needs to know, not the smallest example).
settings.register_profile(
    "mutation",
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


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
