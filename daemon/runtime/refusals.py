"""What a bot does when the exchange keeps refusing its orders: wait longer each time.

An exchange refusal (hedge mode, a leverage bracket, margin) is not a crash: the bot keeps
running, journals each refusal, and after the second in a row stops sending new entries
for a while that doubles with every further refusal, saying why in `status`. Orders that
only reduce a position are never held back. The first accepted order clears it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FIRST_PAUSE = timedelta(minutes=1)
MAX_PAUSE = timedelta(hours=1)


@dataclass(slots=True)
class RefusalBackoff:
    in_a_row: int = 0
    until: datetime | None = None
    reason: str | None = None

    def allows(self, now: datetime) -> bool:
        return self.until is None or now >= self.until

    def refused(self, reason: str, now: datetime) -> None:
        self.in_a_row += 1
        self.reason = reason
        if self.in_a_row >= 2:
            pause = min(MAX_PAUSE, FIRST_PAUSE * 2 ** (self.in_a_row - 2))
            self.until = now + pause

    def accepted(self) -> None:
        self.in_a_row, self.until, self.reason = 0, None, None

    def describe(self) -> str:
        """One line for status: the last refusal and how long new entries wait."""
        text = f"refused {self.in_a_row} time(s) in a row: {self.reason}"
        if self.until is not None:
            text += f"; no new entries until {self.until.isoformat(timespec='seconds')}"
        return text
