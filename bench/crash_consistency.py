"""Hundreds of kill -9 at random moments of the order flow against a loopback exchange.

Prints the figures: kills, orders on the exchange, resends, lost replies, mismatches.
Usage: python bench/crash_consistency.py [kills] [seed] [binanceusdm|bitget]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.crash_harness import run_crash_test


def main() -> None:
    kills = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 11
    exchange = sys.argv[3] if len(sys.argv) > 3 else "binanceusdm"
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tc-crash-") as folder:
        report = run_crash_test(Path(folder), kills=kills, seed=seed, exchange=exchange)
    print(f"{exchange}: {report.summary()}")
    print(f"wall time {time.monotonic() - began:.0f} s")
    sys.exit(0 if report.mismatches == 0 else 1)


if __name__ == "__main__":
    main()
