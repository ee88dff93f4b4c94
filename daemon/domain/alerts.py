"""Alerts as the domain sees them: what happened, how bad, and which repeats to hold back.

Pure: the daemon decides what is worth telling a person; an alerter adapter delivers it. The
throttle takes `now` (monotonic seconds) from its caller, so it is table-tested without a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    """Ordered, so a target's threshold is a comparison."""

    INFO = 10
    WARNING = 20
    CRITICAL = 30

    @classmethod
    def named(cls, name: str) -> Severity:
        try:
            return cls[name.upper()]
        except KeyError:
            known = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {name!r} (one of {known})") from None


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing a person should hear about. `kind` is the journal's event name."""

    kind: str
    severity: Severity
    title: str
    body: str
    bot: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str]:
        """Alerts with the same key say the same thing again."""
        return (self.kind, self.bot, self.body)


@dataclass(slots=True)
class AlertThrottle:
    """Identical alerts within `window_s` are held back; the next one that passes says how many
    were. Different alerts are never held back, and neither are critical ones."""

    window_s: float = 300.0
    _last_sent: dict[tuple[str, str | None, str], float] = field(default_factory=dict)
    _held: dict[tuple[str, str | None, str], int] = field(default_factory=dict)

    def admit(self, alert: Alert, now: float) -> Alert | None:
        """The alert to send now (with a note of what was held back), or None to hold it."""
        key = alert.key
        last = self._last_sent.get(key)
        if alert.severity < Severity.CRITICAL and last is not None and now - last < self.window_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last_sent[key] = now
        held = self._held.pop(key, 0)
        if held:
            note = f"\n({held} identical alert{'s' if held != 1 else ''} held back before this)"
            return Alert(alert.kind, alert.severity, alert.title, alert.body + note, alert.bot)
        return alert
