"""What the state store answers about a bot: shared by every store adapter and the port."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from daemon.domain.bot_state import DesiredState


@dataclass(frozen=True, slots=True)
class BotRecord:
    name: str
    desired_state: DesiredState
    halt_reason: str | None
    owner_uid: int | None
    updated_at: datetime
