"""Runs every bot as its own task, restarts crashed ones with backoff, answers for them.

Desired state lives in the store and is written before acting: a start is persisted,
then the task is launched; a stop is persisted, then the task is cancelled. A daemon
shutdown cancels tasks without touching desired state, so a restart resumes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog

from daemon.domain.bot_state import BotState, DesiredState, Trigger, transition
from daemon.domain.errors import HaltRequested, LeaseLost, NotFound, Refused, StorageError
from daemon.domain.models import Order, Position
from daemon.domain.protection import is_protected
from daemon.domain.sessions import SessionWindow, parse_sessions, session_state
from daemon.domain.store_records import BotRecord
from daemon.ports import Clock, StateStore
from daemon.runtime.bot_runner import BotRunner, BotSpec

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
STOP_TIMEOUT_S = 5.0
BOOTSTRAPPED = "bootstrapped"

# A bot without sessions: always in session, nothing ever changes.
_ALWAYS = {"sessions": [], "session_end": "keep", "in_session": True, "next_session_change": None}

RunnerFactory = Callable[[BotSpec, Callable[[], None]], BotRunner]
# Flattens the positions and orders of the named bots (on their accounts); returns reports.
FlattenBots = Callable[[list[str], str], Awaitable[list[dict[str, Any]]]]
# A fleet: whether this node holds the bot's lease (a bot runs only where it is held).
Placement = Callable[[str], bool]

# Hears what a person should be told: (event, bot, details); must not raise or wait.
Tell = Callable[[str, str, dict[str, Any]], None]


@dataclass(slots=True)
class BotSlot:
    spec: BotSpec
    autostart: bool
    state: BotState = BotState.STOPPED
    task: asyncio.Task[None] | None = None
    runner: BotRunner | None = None
    error: str | None = None
    restarts: int = 0
    failures_in_a_row: int = 0
    launched_monotonic: float | None = None  # when the operator (or a resume) last started it
    blocked: str | None = None  # why the account preflight holds it back (see preflight.py)

    def last_progress_monotonic(self) -> float | None:
        """The last candle this bot processed, else when it was launched."""
        candle = self.runner.snapshot.last_candle_monotonic if self.runner is not None else None
        if candle is not None and (
            self.launched_monotonic is None or candle > self.launched_monotonic
        ):
            return candle
        return self.launched_monotonic


class Supervisor:
    def __init__(
        self,
        specs: dict[str, tuple[BotSpec, bool]],
        runner_factory: RunnerFactory,
        store: StateStore,
        clock: Clock,
        flatten_bots: FlattenBots | None = None,
        placement: Placement | None = None,
        tell: Tell | None = None,
    ) -> None:
        self._flatten_bots = flatten_bots
        self._placement = placement
        self._tell = tell or (lambda event, bot, details: None)
        self._slots = {name: BotSlot(spec, autostart) for name, (spec, autostart) in specs.items()}
        self._factory = runner_factory
        self._store = store
        self._clock = clock
        self._windows: dict[str, tuple[SessionWindow, ...]] = {}
        self._log = structlog.get_logger()
        # What status last read from the store per bot, shown while the store does not
        # answer (a fleet node cut off from PostgreSQL), with the reason in store_problem.
        self._last_read: dict[str, _StoreView] = {}
        self.store_problem: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def bootstrap(self) -> None:
        """Autostart on the very first start; afterwards resume what was running."""
        autostarted = set()
        if self._store.meta(BOOTSTRAPPED) is None:
            for name, slot in self._slots.items():
                if slot.autostart and self._store.bot(name) is None:
                    self._store.set_desired_state(name, DesiredState.RUNNING, cause="autostart")
                    autostarted.add(name)
            self._store.set_meta(BOOTSTRAPPED, self._clock.now().isoformat())
        configured = set(self._slots)
        for record in self._store.bots():
            if record.name not in configured:
                self._store.journal(
                    "bot_not_resumed",
                    record.name,
                    reason="no longer in the config",
                    desired_state=record.desired_state.value,
                )
                self._log.warning("bot_not_resumed", bot=record.name, reason="not in config")
                continue
            if record.desired_state is DesiredState.RUNNING and self._placement is not None:
                continue  # the lease keeper launches it here once this node holds it
            if record.desired_state is DesiredState.RUNNING:
                # A bot that never ran is started (its runner logs bot_started), not resumed.
                if record.name in autostarted:
                    self._store.journal("bot_autostarted", record.name, reason="first start")
                    self._log.info("bot_autostarted", bot=record.name, reason="first start")
                else:
                    self._store.journal(
                        "bot_resumed", record.name, reason="desired state is running"
                    )
                    self._log.info("bot_resumed", bot=record.name)
                self._launch(self._slots[record.name])
            elif record.desired_state is DesiredState.HALTED:
                self._move(self._slots[record.name], Trigger.HALT)
                self._store.journal(
                    "bot_not_resumed", record.name, reason=f"halted: {record.halt_reason}"
                )
                self._log.info(
                    "bot_not_resumed", bot=record.name, reason=f"halted: {record.halt_reason}"
                )

    async def shutdown(self) -> None:
        """Stop every task; desired states stay as they are."""
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)

    # -- commands ------------------------------------------------------------------

    def _slot(self, name: str) -> BotSlot:
        try:
            return self._slots[name]
        except KeyError:
            raise NotFound(
                f"no bot named {name!r}; configured: {', '.join(sorted(self._slots)) or 'none'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._slots)

    async def start_bot(self, name: str, uid: int | None = None) -> dict[str, Any]:
        self._store.notice_other_writers()
        slot = self._slot(name)
        record = self._store.bot(name)
        if record is not None and record.desired_state is DesiredState.HALTED:
            raise Refused(
                f"bot {name!r} is halted ({record.halt_reason}); it needs an explicit resume"
            )
        if slot.task is not None and not slot.task.done():
            self._store.set_desired_state(name, DesiredState.RUNNING, owner_uid=uid)
            return {"bot": name, "state": slot.state.value, "changed": False}
        self._store.set_desired_state(name, DesiredState.RUNNING, owner_uid=uid)
        self._launch(slot)
        return {"bot": name, "state": slot.state.value, "changed": True}

    async def stop_bot(self, name: str, uid: int | None = None) -> dict[str, Any]:
        self._store.notice_other_writers()
        slot = self._slot(name)
        record = self._store.bot(name)
        if record is not None and record.desired_state is DesiredState.HALTED:
            return {"bot": name, "state": slot.state.value, "changed": False}
        self._store.set_desired_state(name, DesiredState.STOPPED, owner_uid=uid)
        changed = await self._stop_task(slot)
        return {"bot": name, "state": slot.state.value, "changed": changed}

    async def halt(self, names: list[str], reason: str, *, cause: str) -> None:
        """Persist the halt first, then stop each bot's task; needs an explicit resume.
        Not fenced: the operator's halt (and flatten) must work whoever holds the bots."""
        for name in names:
            self._slot(name)
        for name in names:
            self._store.set_desired_state(name, DesiredState.HALTED, reason=reason, cause=cause)
        await self._halted(names, reason, cause)

    async def _halted(self, names: list[str], reason: str, cause: str) -> None:
        """The halt of `names` is written: stop each bot's task here."""
        for name in names:
            slot = self._slots[name]
            task = slot.task
            if slot.state is not BotState.HALTED:
                self._move(slot, Trigger.HALT)
            self._log.warning("bot_halted", bot=name, reason=reason, cause=cause)
            if task is not None and task is not asyncio.current_task() and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)

    async def resume_bot(self, name: str, uid: int | None = None) -> dict[str, Any]:
        """Clear a halt and start the bot again; say which halt was cleared."""
        self._store.notice_other_writers()
        slot = self._slot(name)
        record = self._store.bot(name)
        if record is None or record.desired_state is not DesiredState.HALTED:
            # Idempotent, like `start` on a running bot: nothing to do is not a failure.
            desired = record.desired_state.value if record else "stopped"
            hint = "" if desired == "running" else "; `tradectl start` starts it"
            return {
                "bot": name,
                "cleared": None,
                "changed": False,
                "state": slot.state.value,
                "note": f"not halted (it should be {desired}): nothing to clear{hint}",
            }
        self._store.set_desired_state(name, DesiredState.RUNNING, owner_uid=uid, cause="resume")
        self._store.journal("halt_cleared", name, reason=record.halt_reason)
        if slot.state is BotState.HALTED:
            self._move(slot, Trigger.RESUME)
        self._launch(slot)
        return {
            "bot": name,
            "cleared": record.halt_reason,
            "changed": True,
            "state": slot.state.value,
            "note": None,
        }

    def bots_on_account(self, account: str) -> list[str]:
        return [n for n, s in sorted(self._slots.items()) if s.spec.account == account]

    async def _stop_task(self, slot: BotSlot) -> bool:
        task = slot.task
        if task is None or task.done():
            if slot.state is BotState.ERRORED:
                self._move(slot, Trigger.STOP)
            return False
        if slot.state in (BotState.STARTING, BotState.RUNNING):
            self._move(slot, Trigger.STOP)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        if not done:
            self._log.warning("bot_stop_slow", bot=slot.spec.name, timeout_s=STOP_TIMEOUT_S)
        return True

    # -- the task around each runner --------------------------------------------

    def _move(self, slot: BotSlot, trigger: Trigger) -> None:
        new = transition(slot.state, trigger)
        self._log.info(
            "bot_state_changed",
            bot=slot.spec.name,
            old=slot.state.value,
            new=new.value,
            trigger=trigger.value,
        )
        slot.state = new

    def _launch(self, slot: BotSlot) -> None:
        if self._placement is not None and not self._placement(slot.spec.name):
            return  # held by another node (or by none yet): it runs where it is held
        slot.error = None
        slot.failures_in_a_row = 0
        slot.launched_monotonic = self._clock.monotonic()
        self._move(slot, Trigger.RETRY if slot.state is BotState.ERRORED else Trigger.START)
        if slot.blocked is not None:  # held by the preflight: errored, no task, no restarts
            slot.error = slot.blocked
            self._move(slot, Trigger.FAIL)
            self._log.error("bot_held_by_preflight", bot=slot.spec.name, reason=slot.blocked)
            return
        slot.task = asyncio.create_task(self._run(slot), name=f"bot:{slot.spec.name}")

    # -- the account preflight ----------------------------------------------------

    def hold(self, name: str, reason: str) -> None:
        """The preflight refused this bot: it may not start until `release`; say why."""
        slot = self._slot(name)
        if slot.blocked != reason:
            self._store.journal("bot_held_by_preflight", name, reason=reason)
        slot.blocked = reason
        if slot.state is BotState.ERRORED and (slot.task is None or slot.task.done()):
            slot.error = reason

    def release(self, name: str) -> None:
        """The preflight passes now: start the bot if it should run."""
        slot = self._slot(name)
        if slot.blocked is None:
            return
        slot.blocked = None
        self._store.journal("bot_released_by_preflight", name)
        running = slot.task is not None and not slot.task.done()
        if self.desired_state(name) is DesiredState.RUNNING and not running:
            self._launch(slot)

    async def _run(self, slot: BotSlot) -> None:
        name = slot.spec.name
        try:
            while True:

                def started() -> None:
                    self._move(slot, Trigger.STARTED)
                    self._store.journal("bot_started", name, symbol=slot.spec.symbol)
                    self._log.info(
                        "bot_started",
                        bot=name,
                        symbol=slot.spec.symbol,
                        strategy=slot.spec.strategy,
                    )

                slot.runner = self._factory(slot.spec, started)
                began = self._clock.monotonic()
                try:
                    await slot.runner.run()
                    raise RuntimeError("bot runner returned without being stopped")
                except asyncio.CancelledError:
                    raise
                except HaltRequested as halt:
                    await self._on_halt(slot, halt)
                    return
                except LeaseLost as lost:
                    self._lost(slot, str(lost))
                    return
                except Exception as e:  # a bot may fail; the daemon and other bots must not
                    slot.error = f"{type(e).__name__}: {e}"
                    if self._clock.monotonic() - began > BACKOFF_MAX_S:
                        slot.failures_in_a_row = 0  # it ran a good while: start the backoff afresh
                    slot.failures_in_a_row += 1
                    self._move(slot, Trigger.FAIL)
                    self._store.journal("bot_errored", name, error=slot.error)
                    self._log.error("bot_errored", bot=name, error=slot.error, exc_info=e)
                delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (slot.failures_in_a_row - 1))
                self._tell("bot_errored", name, {"error": slot.error, "retry_in_s": delay})
                self._log.info("bot_restart_scheduled", bot=name, delay_s=delay)
                await asyncio.sleep(delay)
                slot.restarts += 1
                self._move(slot, Trigger.RETRY)
        except asyncio.CancelledError:
            if slot.state is BotState.STOPPING:
                self._move(slot, Trigger.STOPPED)
                self._store.journal("bot_stopped", name)
                self._log.info("bot_stopped", bot=name)
            raise

    # -- a fleet: the lease keeper hands bots to this node and takes them away ------

    def adopt(self, name: str) -> None:
        """This node now holds the bot's lease: run it if it should run (reconciled with
        its exchange on start, as after any restart)."""
        slot = self._slot(name)
        if slot.task is not None and not slot.task.done():
            return
        if self.desired_state(name) is not DesiredState.RUNNING:
            return
        if slot.state is BotState.ERRORED:
            self._move(slot, Trigger.STOP)
        if slot.state is BotState.HALTED:  # halted here once, resumed from another node
            self._move(slot, Trigger.RESUME)
        if slot.state is BotState.STOPPED:
            self._store.journal("bot_adopted", name, reason="this node took its lease")
            self._log.info("bot_adopted", bot=name)
            self._launch(slot)

    async def give_up(self, name: str, reason: str) -> None:
        """Stop the bot's runner at once, desired state untouched: its lease is gone (or
        given up); whoever holds it now runs it."""
        slot = self._slot(name)
        self._log.warning("bot_released", bot=name, reason=reason)
        task = slot.task
        try:
            halted = self.desired_state(name) is DesiredState.HALTED
        except StorageError:
            halted = False  # the store is away (that may be why): stop it all the same
        if halted:
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
            if slot.state is not BotState.HALTED:
                self._move(slot, Trigger.HALT)
            return
        await self._stop_task(slot)

    def _lost(self, slot: BotSlot, reason: str) -> None:
        """The store refused an intent: the lease moved on. Stop here, send nothing."""
        if slot.state in (BotState.STARTING, BotState.RUNNING):
            self._move(slot, Trigger.STOP)
            self._move(slot, Trigger.STOPPED)
        self._log.warning("bot_lease_lost", bot=slot.spec.name, reason=reason)
        with contextlib.suppress(StorageError):
            self._store.journal("bot_lease_lost", slot.spec.name, reason=reason)

    def slots(self) -> list[BotSlot]:
        """Read-only view for health checks; callers must not change what they get."""
        self._store.notice_other_writers()
        return [self._slots[name] for name in sorted(self._slots)]

    def should_run_here(self, name: str) -> bool:
        """Desired running, and (in a fleet) held by this node."""
        if self._placement is not None and not self._placement(name):
            return False
        return self.desired_state(name) is DesiredState.RUNNING

    def desired_state(self, name: str) -> DesiredState:
        record = self._store.bot(name)
        return record.desired_state if record is not None else DesiredState.STOPPED

    async def wait_started(
        self, on_wait: Callable[[list[str]], None], every_s: float = 2.0
    ) -> None:
        """Wait until every launched bot has finished starting (running or errored)."""
        told = self._clock.monotonic()
        while True:
            starting = [s.spec.name for s in self._slots.values() if s.state is BotState.STARTING]
            if not starting:
                return
            if self._clock.monotonic() - told >= every_s:
                on_wait(starting)
                told = self._clock.monotonic()
            await asyncio.sleep(0.02)

    async def _on_halt(self, slot: BotSlot, halt: HaltRequested) -> None:
        """A runner asked to halt: itself, or (account limit) every bot on its account."""
        if halt.scope == "external":  # already persisted by whoever wrote it
            self._move(slot, Trigger.HALT)
            self._log.warning(
                "bot_halted", bot=slot.spec.name, reason=halt.reason, cause="external"
            )
            return
        names = (
            self.bots_on_account(slot.spec.account) if halt.scope == "account" else [slot.spec.name]
        )
        try:  # fenced: a node woken from a pause may no longer hold the bot
            self._store.record_halt(names, halt.reason, for_bot=slot.spec.name)
        except LeaseLost as lost:  # its holder trades on: no halt, no flatten from here
            self._lost(slot, str(lost))
            return
        await self._halted(names, halt.reason, "risk")
        for name in names:
            self._tell("bot_halted", name, {"reason": halt.reason, "cause": "loss limit"})
        if self._flatten_bots is not None:
            await self._flatten_bots(names, halt.reason)

    # -- what status shows -----------------------------------------------------

    def position(self, name: str) -> Position | None:
        """What the bot holds: its live runner's view; once the runner has ended (stopped,
        halted, flattened), the store's, as the last flatten or reconciliation wrote it,
        never the ended runner's last snapshot."""
        slot = self._slot(name)
        if slot.runner is not None and slot.task is not None and not slot.task.done():
            return slot.runner.snapshot.position
        return self._store.position(name)

    def _store_view(self, name: str) -> _StoreView:
        """The store's side of a bot's status; while the store does not answer, the last
        one read (the running runner's position from memory), and the reason kept."""
        try:
            view = _StoreView(
                self._store.bot(name),
                self.position(name),
                self._store.live_orders(name),
                self._store.realized_pnl(name),
            )
        except StorageError as e:
            self.store_problem = str(e)
            slot = self._slot(name)
            last = self._last_read.get(name, _StoreView(None, None, [], Decimal(0)))
            running = slot.runner is not None and slot.task is not None and not slot.task.done()
            if running and slot.runner is not None:
                return _StoreView(last.record, slot.runner.snapshot.position, last.live, last.pnl)
            return last
        self._last_read[name] = view
        return view

    def bot_status(self, name: str) -> dict[str, Any]:
        slot = self._slot(name)
        stored = self._store_view(name)
        record = stored.record
        runner = slot.runner
        position = stored.position
        last_mono = runner.snapshot.last_candle_monotonic if runner is not None else None
        last_close = runner.snapshot.last_candle_close if runner is not None else None
        qty = position.qty if position is not None else Decimal(0)
        live = stored.live
        return {
            "name": name,
            "state": slot.state.value,
            "desired_state": record.desired_state.value if record else DesiredState.STOPPED.value,
            "halt_reason": record.halt_reason if record else None,
            "account": slot.spec.account,
            "symbol": slot.spec.symbol,
            "strategy": slot.spec.strategy,
            "timeframes": list(slot.spec.timeframes),
            "last_candle_age_s": None
            if last_mono is None
            else round(self._clock.monotonic() - last_mono, 3),
            "last_candle_close": None if last_close is None else last_close.isoformat(),
            "candles_processed": runner.snapshot.candles_processed if runner else 0,
            "position_qty": str(qty),
            "position_side": position.side if position is not None else "flat",
            "entry_price": str(position.entry_price) if position is not None and qty else None,
            "unrealized_pnl": str(position.unrealized_pnl) if position is not None and qty else "0",
            "open_orders": len(live),
            # flat, or a resting reduce-only stop covers the whole position
            "protected": is_protected(qty, live),
            "realized_pnl": str(stored.pnl),
            "error": slot.error,
            "held_by_preflight": slot.blocked,
            "last_problem": runner.snapshot.last_problem if runner is not None else None,
            "restarts": slot.restarts,
            **self.session(name),
        }

    def session(self, name: str) -> dict[str, Any]:
        """Whether the bot is in one of its sessions now (by its feed's clock, the one its
        candles close by) and when that next changes; no sessions: always, never."""
        slot = self._slot(name)
        if not slot.spec.sessions:
            return _ALWAYS
        windows = self._windows.get(name)
        if windows is None:
            windows = self._windows[name] = parse_sessions(slot.spec.sessions)
        runner = slot.runner
        moment = runner.feed.now() if runner is not None else self._clock.now()
        state = session_state(windows, moment)
        change = state.next_change
        return {
            "sessions": list(slot.spec.sessions),
            "session_end": slot.spec.session_end,
            "in_session": state.in_session,
            "next_session_change": None if change is None else change.isoformat(),
        }

    def protected(self, name: str) -> bool:
        """Flat, or a resting reduce-only stop covers the bot's whole position."""
        position = self.position(name)
        qty = position.qty if position is not None else Decimal(0)
        return is_protected(qty, self._store.live_orders(name))

    def status(self, bot: str | None = None) -> list[dict[str, Any]]:
        """Every bot's status from memory: the runners' snapshots and what the store keeps
        of each bot (read from the file once, then kept current by its writes). A store
        that does not answer leaves the last reads standing, and `store_problem` says why."""
        self.store_problem = None
        with contextlib.suppress(StorageError):
            self._store.notice_other_writers()
        names = [bot] if bot is not None else sorted(self._slots)
        return [self.bot_status(n) for n in names]


@dataclass(frozen=True, slots=True)
class _StoreView:
    """What a bot's status reads from the store."""

    record: BotRecord | None
    position: Position | None
    live: list[Order]
    pnl: Decimal
