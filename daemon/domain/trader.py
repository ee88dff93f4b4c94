"""The trading core: one bot's decisions, pure and synchronous, for live, paper and backtest.

`step(state, event, config, now) -> (state, actions)` is the only place a bot decides
anything. The shells around it do the I/O: `BotRunner` (the daemon) reads the exchange and
the store, feeds what it read as events and carries the actions out through the gateway and
the store; the fast backtest does the same on its paper account in a plain loop. Neither
restates the order of decisions, which lives here:

on a closed candle (fresh: closed no longer than `max_candle_age` before `now`):
  1. loss limits: today's realised PnL net of fees plus the unrealised, for the bot and for
     its account; a breach halts (the supervisor then flattens);
  2. the plan: activated at the first fill of the entry that carried it, whatever the entry's
     reply said; cleared when the position is gone; a position whose stop does not rest is
     closed at market when the candle crossed the stop (the safety net behind the exchange);
  3. protection (`daemon.domain.protection`): the reduce-only stop and take-profit that should
     rest for the position, amended by cancel-then-place when it grew or shrank;
  4. the strategy's signal: ignored in the position's direction; against it the position is
     closed ("reversal") and, once flat, protection cleared and a new entry sized on the
     equity after that close, risk-checked and sent with its plan; then 2 and 3 again.
A stale candle (replayed after downtime) only keeps the plan and the protection in order:
the resting orders covered the gap, nothing is opened or closed on old prices.

Requests that change the exchange (Submit, Cancel) come last in the list: one at a time,
or a stop and its take-profit together (both new, or both to cancel when nothing should
rest); the shell carries each out and feeds its `Outcome` back, in order, before anything
else happens, so every decision sees what the previous ones did. Client order ids come
from the state's sequence, which the shell stores with each intent. A stop refused because
the price is already beyond it (`WOULD_TRIGGER`) means the stop was hit: the position is
closed at market.
A protective order refused or left unknown is retried at the next event, never twice in one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from daemon.domain import protection
from daemon.domain.errors import RiskRejected
from daemon.domain.models import (
    ZERO,
    Direction,
    Market,
    Order,
    OrderIntent,
    OrderType,
    Side,
    Signal,
    TradePlan,
    bot_tag,
    closing_side,
)
from daemon.domain.risk import (
    AccountExposure,
    RiskLimits,
    Sizing,
    check_intent,
    loss_breach,
    size_entry,
)

REVERSAL = "reversal"
ENTRY = "entry"


@dataclass(frozen=True, slots=True)
class TraderConfig:
    """What a bot trades, by which rules."""

    bot: str
    account: str
    symbol: str
    market: Market
    leverage: int
    limits: RiskLimits
    max_candle_age: timedelta
    tag: str = ""

    def __post_init__(self) -> None:
        if not self.tag:
            object.__setattr__(self, "tag", bot_tag(self.bot))

    def client_order_id(self, sequence: int) -> str:
        """`tc` + the bot's tag + the sequence: see `models.ClientOrderIds`."""
        return f"tc{self.tag}-{sequence:08d}"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the shell read from the exchange and the store just before an event."""

    position_qty: Decimal = ZERO  # signed
    entry_price: Decimal = ZERO
    mark: Decimal = ZERO  # the price the position is marked at
    bot_realized: Decimal = ZERO  # realised PnL net of fees since the risk day began
    orders: tuple[Order, ...] = ()  # the bot's live orders (entries, protection), as stored
    equity: Decimal | None = None  # wallet + unrealised; read when an entry may follow

    @property
    def unrealized(self) -> Decimal:
        return (self.mark - self.entry_price) * self.position_qty


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """The shell has reconciled the bot with the exchange: put the protection in order."""

    facts: Facts


@dataclass(frozen=True, slots=True)
class CandleClosed:
    """A 1m close, with the strategy's signal when its base timeframe closed too."""

    closed_at: datetime
    high: Decimal
    low: Decimal
    close: Decimal
    signal: Signal | None
    facts: Facts
    account: AccountExposure = field(default_factory=AccountExposure)


class Result(enum.StrEnum):
    DONE = "done"  # the exchange answered; `order` is its view of the order
    REJECTED = "rejected"
    WOULD_TRIGGER = "would_trigger"  # a trigger order refused: the price is beyond it
    UNKNOWN = "unknown"  # no answer after retries; resolved by client order id later


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of the request the core is waiting for, and the facts after it."""

    client_order_id: str
    result: Result
    facts: Facts
    order: Order | None = None
    reason: str = ""


Event = Started | CandleClosed | Outcome


# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """Store the intent (with its plan and sequence), then send it; an Outcome is due."""

    intent: OrderIntent
    sequence: int
    plan: TradePlan | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel a live order by client order id; an Outcome is due."""

    order: Order


@dataclass(frozen=True, slots=True)
class SavePlan:
    """The bot's active plan, or None; stored before anything relies on it."""

    plan: TradePlan | None


@dataclass(frozen=True, slots=True)
class Journal:
    kind: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Halt:
    """A loss limit was reached: halt the bot (scope "bot") or its whole account."""

    reason: str
    scope: str


Action = Submit | Cancel | SavePlan | Journal | Halt


# -- state ------------------------------------------------------------------------------


@dataclass
class TraderState:
    """Everything the core remembers between events. `step` never changes the one it gets."""

    sequence: int = 0  # the last client order sequence number handed out
    plan: TradePlan | None = None  # active: protects the open position
    pending: tuple[str, TradePlan] | None = None  # an entry's cid and plan, until its first fill
    facts: Facts = field(default_factory=Facts)
    account: AccountExposure = field(default_factory=AccountExposure)
    closed_at: datetime | None = None
    high: Decimal = ZERO
    low: Decimal = ZERO
    close: Decimal = ZERO
    signal: Signal | None = None  # handed by the candle being decided
    todo: tuple[str, ...] = ()
    # (cid, purpose, "submit"|"cancel") of each request in flight, in the order sent
    awaiting: tuple[tuple[str, str, str], ...] = ()
    blocked: frozenset[str] = frozenset()  # protective purposes that failed in this pass
    halted: bool = False
    last_problem: str | None = None
    now: datetime | None = None  # of the event being decided
    wants_for: tuple[Decimal, TradePlan | None] | None = None  # what `wants` was made for
    wants: tuple[protection.Wanted, ...] = ()

    @property
    def busy(self) -> bool:
        """A request is in flight or work is queued: the shell must not feed a new candle."""
        return bool(self.awaiting) or bool(self.todo)

    @property
    def protected(self) -> bool:
        return protection.is_protected(self.facts.position_qty, self.facts.orders)

    def copy(self) -> TraderState:
        """A shallow copy (every field is immutable or replaced whole): cheap, as a backtest
        steps tens of thousands of times."""
        twin = object.__new__(TraderState)
        twin.__dict__.update(self.__dict__)
        return twin


def initial_state(
    sequence: int, plan: TradePlan | None, entry: tuple[Order, TradePlan] | None
) -> TraderState:
    """The state a bot starts from: its stored sequence and plan, and the plan of an entry
    sent before a crash that has not been activated yet."""
    pending = None if entry is None else (entry[0].client_order_id, entry[1])
    return TraderState(sequence=sequence, plan=plan, pending=pending)


def needs_attention(state: TraderState, config: TraderConfig) -> bool:
    """Whether a candle without a signal and far from the loss limits could still lead to an
    action: the protection is not what it should be, or a plan waits to be activated or
    cleared. A backtest skips `step` on candles where this is False and nothing fired."""
    facts = state.facts
    if state.pending is not None or (state.plan is not None and facts.position_qty == 0):
        return True
    return protection.next_change(_wants(state, config), facts.orders) is not None


# -- the step ---------------------------------------------------------------------------


def step(
    state: TraderState, event: Event, config: TraderConfig, now: datetime
) -> tuple[TraderState, list[Action]]:
    """Apply one event; return the new state and the actions to carry out, in order."""
    s = state.copy()
    s.now = now
    actions: list[Action] = []
    if isinstance(event, Outcome):
        _on_outcome(s, event, actions)
    elif s.awaiting:
        raise ValueError(f"an outcome for {s.awaiting[0][0]} is due before any other event")
    elif isinstance(event, CandleClosed):
        _on_candle(s, event, config, now)
    else:
        s.facts = event.facts
        s.blocked = frozenset()
        if not s.halted:
            s.todo = ("guard", "protect")
            if event.facts.position_qty and s.plan is None and s.pending is None:
                actions.append(
                    Journal(
                        "position_without_plan",
                        {
                            "qty": str(event.facts.position_qty),
                            "note": "kept unprotected; the bot exits it on an opposite signal",
                        },
                    )
                )
    _run(s, config, actions)
    return s, actions


def _on_candle(s: TraderState, e: CandleClosed, config: TraderConfig, now: datetime) -> None:
    s.facts, s.account = e.facts, e.account
    s.closed_at, s.high, s.low, s.close = e.closed_at, e.high, e.low, e.close
    s.blocked = frozenset()
    if s.halted:
        s.todo = ()
        return
    if now - e.closed_at > config.max_candle_age:
        s.signal = None
        s.todo = ("guard", "protect")  # keep the books and the protection; decide nothing
    else:
        s.signal = e.signal
        s.todo = ("loss", "guard", "exit_net", "protect", "signal")


def _on_outcome(s: TraderState, e: Outcome, actions: list[Action]) -> None:
    if not s.awaiting or s.awaiting[0][0] != e.client_order_id:
        raise ValueError(f"unexpected outcome for {e.client_order_id}; awaiting {s.awaiting}")
    (_, purpose, kind), s.awaiting = s.awaiting[0], s.awaiting[1:]
    s.facts = e.facts
    protective = purpose in protection.PURPOSES
    if e.result is Result.WOULD_TRIGGER and protective:
        actions.append(
            Journal(
                f"{purpose}_hit_on_placement",
                {"cid": e.client_order_id, "reason": e.reason, "action": "closed at market"},
            )
        )
        s.todo = (f"exit_{purpose}", "guard", "protect", *s.todo)
        return
    if e.result in (Result.REJECTED, Result.WOULD_TRIGGER):
        s.last_problem = f"{purpose} order rejected: {e.reason}"
    elif e.result is Result.UNKNOWN:
        s.last_problem = f"{purpose} order outcome unknown: {e.reason}"
    if not protective:
        return
    if e.result is not Result.DONE:
        s.blocked = s.blocked | {purpose}
        if kind == "submit":
            actions.append(
                Journal(
                    "protection_not_placed",
                    {"cid": e.client_order_id, "purpose": purpose, "reason": e.reason},
                )
            )
    elif kind == "cancel" and _live(s, e.client_order_id):
        s.blocked = s.blocked | {purpose}  # answered, yet still live: never loop on it


def _run(s: TraderState, config: TraderConfig, actions: list[Action]) -> None:
    """Advance through `todo` until a request is in flight or nothing is left."""
    while s.todo and not s.awaiting:
        stage, s.todo = s.todo[0], s.todo[1:]
        _STAGES[stage](s, config, actions)


def _after_reversal(s: TraderState, config: TraderConfig, actions: list[Action]) -> None:
    """Flat after the reversal's close: clear the protection, then enter; else stay put."""
    if s.facts.position_qty == 0:
        s.todo = ("guard", "protect", "enter", "guard", "protect", *s.todo)
    else:
        s.signal = None
        s.todo = ("guard", "protect", *s.todo)


def _loss(s: TraderState, config: TraderConfig, actions: list[Action]) -> None:
    facts = s.facts
    breach = loss_breach(facts.bot_realized + facts.unrealized, s.account.daily_pnl, config.limits)
    if breach is None:
        return
    s.halted = True
    s.todo = ()
    actions.append(
        Journal(
            "loss_limit_reached",
            {"scope": breach.scope, "pnl": str(breach.pnl), "limit": str(breach.limit)},
        )
    )
    actions.append(Halt(breach.reason, breach.scope))


def _guard(s: TraderState, config: TraderConfig, actions: list[Action]) -> None:
    """Keep the plan in step with the position."""
    qty = s.facts.position_qty
    if qty == 0:
        if s.plan is not None:
            s.plan = None
            actions.append(SavePlan(None))
            actions.append(Journal("plan_cleared", {"reason": "the position is closed"}))
        if s.pending is not None and not _live(s, s.pending[0]):
            s.pending = None
            actions.append(SavePlan(None))
        return
    long = qty > 0
    if s.plan is not None and (s.plan.direction is Direction.LONG) != long:
        s.plan = None
        actions.append(SavePlan(None))
        actions.append(Journal("plan_cleared", {"reason": "the position is the other way"}))
    if s.plan is None and s.pending is not None:
        cid, plan = s.pending
        if (plan.direction is Direction.LONG) == long:
            s.plan, s.pending = plan, None
            actions.append(SavePlan(plan))
            actions.append(
                Journal(
                    "plan_activated",
                    {
                        "cid": cid,
                        "qty": str(qty),
                        "stop": str(plan.stop),
                        "take_profit": str(plan.take_profit),
                    },
                )
            )


def _wants(s: TraderState, config: TraderConfig) -> tuple[protection.Wanted, ...]:
    """`protection.wanted`, remembered for the position and plan it was made for."""
    qty, plan = s.facts.position_qty, s.plan
    key = s.wants_for
    if key is None or key[1] is not plan or key[0] != qty:
        s.wants_for = (qty, plan)
        s.wants = protection.wanted(qty, plan, config.market)
    return s.wants


def _live(s: TraderState, cid: str) -> bool:
    return any(o.client_order_id == cid for o in s.facts.orders)


def _exit_net(s: TraderState, config: TraderConfig, actions: list[Action]) -> None:
    """No stop rests (refused, unknown) but the candle crossed the plan's stop: close now."""
    plan, qty = s.plan, s.facts.position_qty
    if plan is None or qty == 0 or s.protected:
        return
    crossed = s.low <= plan.stop if qty > 0 else s.high >= plan.stop
    if crossed:
        actions.append(Journal("stop_crossed_unprotected", {"stop": str(plan.stop)}))
        _close(s, config, actions, protection.STOP)


def _protect(s: TraderState, config: TraderConfig, actions: list[Action]) -> None:
    facts = s.facts
    if not facts.orders and (s.plan is None or facts.position_qty == 0):
        return  # nothing rests and nothing should
    wants = _wants(s, config)
    change = protection.next_change(wants, facts.orders, s.blocked)
    if change is None:
        return
    s.todo = ("protect", *s.todo)
    _protective_request(s, config, actions, change)
    # The take-profit goes with the stop when both are new, and the two go together when
    # nothing should rest; an amendment stays one purpose at a time (the stop's gap short).
    also = protection.next_change(wants, facts.orders, s.blocked | {change.purpose or ""})
    cancelling = isinstance(change, Order)
    if also is not None and isinstance(also, Order) == cancelling and (not cancelling or not wants):
        _protective_request(s, config, actions, also)


def _protective_request(
    s: TraderState, config: TraderConfig, actions: list[Action], change: Order | protection.Wanted
) -> None:
    if isinstance(change, Order):
        purpose = change.purpose or protection.STOP
        s.awaiting = (*s.awaiting, (change.client_order_id, purpose, "cancel"))
        actions.append(Cancel(change))
        return
    intent = _intent(
        s, config, change.side, change.qty, change.purpose, change.type, change.trigger
    )
    s.awaiting = (*s.awaiting, (intent.client_order_id, change.purpose, "submit"))
    actions.append(Submit(intent, s.sequence))


def _signal(s: TraderState, config: TraderConfig, actions: list[Action]) -> None:
    signal = s.signal
    if signal is None:
        return
    qty = s.facts.position_qty
    if qty == 0:
        s.todo = ("enter", "guard", "protect", *s.todo)
        return
    if (qty > 0) == (signal.direction is Direction.LONG):
        s.signal = None
        side = "long" if qty > 0 else "short"
        actions.append(
            Journal(
                "signal_ignored",
                {"rule": "same_direction", "reason": f"the bot is already {side} ({qty})"},
            )
        )
        return
    s.todo = ("after_reversal", *s.todo)
    if not _close(s, config, actions, REVERSAL):
        s.signal = None
        s.todo = s.todo[1:]


def _close(s: TraderState, config: TraderConfig, actions: list[Action], purpose: str) -> bool:
    """A reduce-only market order for the whole position; False when none was sent."""
    qty = s.facts.position_qty
    if qty == 0:
        return False
    side = closing_side(qty)
    return _send(s, config, actions, side, abs(qty), purpose, reduce_only=True)


def _enter(s: TraderState, config: TraderConfig, actions: list[Action]) -> None:
    signal = s.signal
    s.signal = None
    if signal is None or s.facts.position_qty != 0:
        return
    equity = s.facts.equity
    if equity is None:
        sizing = Sizing(ZERO, "equity", "the account's equity was not read")
    else:
        sizing = size_entry(signal, equity, config.limits, config.market)
    qty = sizing.qty
    if qty <= 0:
        actions.append(
            Journal(
                "signal_skipped",
                {"rule": sizing.rule, "reason": sizing.reason, "equity": str(equity)},
            )
        )
        s.last_problem = f"signal skipped: {sizing.reason}"
        return
    plan = TradePlan(signal.direction, signal.stop, signal.take_profit, opened_at=_time(s))
    _send(s, config, actions, signal.direction.entry_side, qty, ENTRY, plan=plan)


def _send(
    s: TraderState,
    config: TraderConfig,
    actions: list[Action],
    side: Side,
    qty: Decimal,
    purpose: str,
    *,
    reduce_only: bool = False,
    plan: TradePlan | None = None,
) -> bool:
    """Risk-check a market order; emit it (awaiting its outcome) or journal the refusal."""
    intent = _intent(s, config, side, qty, purpose, OrderType.MARKET, None, reduce_only)
    facts = s.facts
    try:
        check_intent(
            intent,
            position_qty=facts.position_qty,
            price=s.close,
            leverage=config.leverage,
            limits=config.limits,
            market=config.market,
            daily_pnl=facts.bot_realized + facts.unrealized,
            account=s.account,
        )
    except RiskRejected as e:
        actions.append(
            Journal(
                "order_refused", {"rule": e.rule, "reason": str(e), "cid": intent.client_order_id}
            )
        )
        s.last_problem = f"risk rule {e.rule}: {e}"
        return False
    if plan is not None:
        s.pending = (intent.client_order_id, plan)
    s.awaiting = ((intent.client_order_id, purpose, "submit"),)
    actions.append(Submit(intent, s.sequence, plan))
    return True


def _intent(
    s: TraderState,
    config: TraderConfig,
    side: Side,
    qty: Decimal,
    purpose: str,
    order_type: OrderType,
    trigger: Decimal | None,
    reduce_only: bool = True,
) -> OrderIntent:
    s.sequence += 1
    return OrderIntent(
        bot=config.bot,
        account=config.account,
        symbol=config.symbol,
        client_order_id=config.client_order_id(s.sequence),
        side=side,
        type=order_type,
        qty=qty,
        price=None,
        reduce_only=reduce_only,
        created_at=_time(s),
        purpose=purpose,
        trigger_price=trigger,
    )


def _time(s: TraderState) -> datetime:
    """The candle being decided, else the event's `now` (start-up)."""
    when = s.closed_at or s.now
    assert when is not None
    return when


_Stage = Callable[[TraderState, TraderConfig, list[Action]], object]
_STAGES: dict[str, _Stage] = {
    "loss": _loss,
    "guard": _guard,
    "exit_net": _exit_net,
    "protect": _protect,
    "signal": _signal,
    "after_reversal": _after_reversal,
    "enter": _enter,
    "exit_stop": lambda s, c, a: _close(s, c, a, protection.STOP),
    "exit_take_profit": lambda s, c, a: _close(s, c, a, protection.TAKE_PROFIT),
}
