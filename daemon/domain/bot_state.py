"""The bot lifecycle as an explicit state machine: (state, trigger) -> state."""

from __future__ import annotations

import enum

from daemon.domain.errors import IllegalTransition


class DesiredState(enum.StrEnum):
    """What the operator asked for; persisted, survives restarts."""

    RUNNING = "running"
    STOPPED = "stopped"
    HALTED = "halted"


class BotState(enum.StrEnum):
    """What the bot is doing right now in this process."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    ERRORED = "errored"  # crashed; restarted with backoff
    HALTED = "halted"  # stopped by a risk breach or a flatten; needs an explicit resume


class Trigger(enum.StrEnum):
    START = "start"
    STARTED = "started"
    STOP = "stop"
    STOPPED = "stopped"
    FAIL = "fail"
    RETRY = "retry"
    HALT = "halt"
    RESUME = "resume"


_S = BotState
_T = Trigger
TRANSITIONS: dict[tuple[BotState, Trigger], BotState] = {
    (_S.STOPPED, _T.START): _S.STARTING,
    (_S.STARTING, _T.STARTED): _S.RUNNING,
    (_S.STARTING, _T.FAIL): _S.ERRORED,
    (_S.STARTING, _T.STOP): _S.STOPPING,
    (_S.STARTING, _T.HALT): _S.HALTED,
    (_S.RUNNING, _T.STOP): _S.STOPPING,
    (_S.RUNNING, _T.FAIL): _S.ERRORED,
    (_S.RUNNING, _T.HALT): _S.HALTED,
    (_S.STOPPING, _T.STOPPED): _S.STOPPED,
    (_S.STOPPING, _T.FAIL): _S.STOPPED,
    (_S.STOPPING, _T.HALT): _S.HALTED,
    (_S.ERRORED, _T.RETRY): _S.STARTING,
    (_S.ERRORED, _T.STOP): _S.STOPPED,
    (_S.ERRORED, _T.HALT): _S.HALTED,
    (_S.HALTED, _T.RESUME): _S.STOPPED,
    (_S.HALTED, _T.HALT): _S.HALTED,
    (_S.STOPPED, _T.HALT): _S.HALTED,
    (_S.STOPPED, _T.STOP): _S.STOPPED,
}


def transition(state: BotState, trigger: Trigger) -> BotState:
    """The next state, or IllegalTransition naming both."""
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise IllegalTransition(f"cannot {trigger.value} a bot that is {state.value}") from None
