"""One bot's async shell around the trading core (`daemon.domain.trader`).

A runner is the only writer for its bot. Candles arrive through its own queue; the feed
waits until the runner is done with each event (lock-step), so a replay is deterministic.
For each event the runner reads what the core needs (orders resolved by client order id,
new fills, the position, today's PnL, the equity when an entry may follow), hands it to
`trader.step`, and carries the actions out: every intent is committed to the store (with
its plan and sequence number) before it is sent, every cancel request too, and each
outcome goes back to the core as an event before anything else happens. It decides
nothing itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from daemon.domain import trader
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import (
    ExchangeError,
    HaltRequested,
    OrderNeverPlaced,
    OrderRejected,
    RetryableExchangeError,
    WouldTrigger,
)
from daemon.domain.models import (
    ZERO,
    Order,
    OrderIntent,
    OrderStatus,
    Position,
    Signal,
)
from daemon.domain.risk import AccountExposure, RiskLimits, day_start
from daemon.domain.sessions import parse_sessions
from daemon.domain.timeframes import timeframe_seconds
from daemon.ports import CandlesClosed, Clock, ExchangeGateway, MarketFeed, StateStore
from daemon.runtime.fills import record_new_fills
from daemon.runtime.refusals import RefusalBackoff
from daemon.runtime.unknown_outcome import resolve_pending
from strategies.base import Strategy
from strategies.frames import CandleWindow

MARK_SAVE_INTERVAL_S = 60.0  # an open position's mark price is written at most this often
WINDOW_SLACK = 50  # candles kept beyond the warm-up, so indicators see a little more history


def window_lengths(strategy: Strategy) -> dict[str, int]:
    """Candles a runner keeps per timeframe: what the strategy sees on every evaluation."""
    return {tf: strategy.warmup.get(tf, 0) + WINDOW_SLACK for tf in strategy.timeframes}


@dataclass(frozen=True, slots=True)
class BotSpec:
    name: str
    account: str
    symbol: str
    strategy: str
    timeframes: tuple[str, ...]
    leverage: int
    # Exits and entries are decided only on candles closed within this age by the feed's
    # clock (older ones were replayed after downtime); None: two of the base timeframe.
    max_candle_age: timedelta | None = None
    sessions: tuple[str, ...] = ()  # "[days] HH:MM-HH:MM Zone"; none: always in session
    session_end: str = trader.KEEP


@dataclass(slots=True)
class BotSnapshot:
    """What the runner last knew, for status: read without touching the exchange."""

    last_candle_monotonic: float | None = None
    last_problem: str | None = None  # the last refusal by the exchange or the risk rules
    last_candle_close: datetime | None = None
    candles_processed: int = 0
    position: Position | None = None
    signals: int = 0
    stale_candles: int = 0  # decided nothing: closed too long ago by the feed's clock


class BotRunner:
    def __init__(
        self,
        spec: BotSpec,
        strategy: Strategy,
        gateway: ExchangeGateway,
        feed: MarketFeed,
        store: StateStore,
        limits: RiskLimits,
        clock: Clock,
        on_started: Callable[[], None] = lambda: None,
    ) -> None:
        self.spec = spec
        self.strategy = strategy
        self.gateway = gateway
        self.feed = feed
        self.store = store
        self.limits = limits
        self.clock = clock
        self.snapshot = BotSnapshot(position=store.position(spec.name))
        self._on_started = on_started
        self._queue: asyncio.Queue[tuple[CandlesClosed, asyncio.Future[None]]] = asyncio.Queue(1)
        self._windows = {tf: CandleWindow(tf, n) for tf, n in window_lengths(strategy).items()}
        self._account_positions: list[Position] = []
        self._saved_position: Position | None = None  # as last written to the store
        self._saved_monotonic = 0.0
        self._config: trader.TraderConfig | None = None
        self.state = trader.TraderState()
        self._refusals = RefusalBackoff()
        self.log = structlog.get_logger().bind(bot=spec.name, symbol=spec.symbol)

    async def run(self) -> None:
        """Prepare, then process candles until cancelled. Exceptions end the run."""
        await self._prepare()
        self.feed.subscribe(self._deliver)
        self._on_started()
        try:
            while True:
                event, done = await self._queue.get()
                try:
                    await self._on_candles(event)
                finally:
                    if not done.done():
                        done.set_result(None)
        finally:
            self.feed.unsubscribe(self._deliver)
            while not self._queue.empty():
                _, done = self._queue.get_nowait()
                if not done.done():
                    done.set_result(None)

    async def _deliver(self, event: CandlesClosed) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, done))
        await done

    @property
    def config(self) -> trader.TraderConfig:
        assert self._config is not None, "the runner is not prepared yet"
        return self._config

    # -- start-up: crash-only, the same path after a clean stop or a kill -9 --

    async def _prepare(self) -> None:
        spec = self.spec
        market = await self.gateway.market(spec.symbol)
        try:
            await self.gateway.set_leverage(spec.symbol, spec.leverage)
        except OrderRejected as e:
            self.log.warning("leverage_not_changed", reason=str(e))
        base = self.strategy.timeframes[0]
        max_age = spec.max_candle_age or timedelta(seconds=2 * timeframe_seconds(base))
        self._config = trader.TraderConfig(
            spec.name,
            spec.account,
            spec.symbol,
            market,
            spec.leverage,
            self.limits,
            max_age,
            sessions=parse_sessions(spec.sessions),
            session_end=spec.session_end,
        )
        self.store.notice_other_writers()
        await self._resolve_live_orders()
        await self._sync_fills()
        now = self.clock.now()
        facts = await self._facts(now, equity=False)
        entry = self.store.entry_plan(spec.name)
        self.state = trader.initial_state(
            self.store.order_sequence(spec.name), self.store.plan(spec.name), entry
        )
        await self._drive(trader.Started(facts), now)
        for tf, window in self._windows.items():
            window.extend(self.feed.history(tf, window.maxlen))
        self.log.info(
            "bot_prepared",
            strategy=spec.strategy,
            warm={tf: len(w) for tf, w in self._windows.items()},
            protected=self.state.protected,
        )

    async def _resolve_live_orders(self) -> None:
        """Ask the exchange about every order the store holds live: one list of the open
        ones, then a lookup by client order id for those no longer open."""
        live = self.store.live_orders(self.spec.name)
        if not live:
            return
        open_now = {
            o.client_order_id: o for o in await self.gateway.fetch_open_orders(self.spec.symbol)
        }
        for order in live:
            known = open_now.get(order.client_order_id)
            if known is None:
                known = await self.gateway.fetch_order(
                    order.symbol, order.client_order_id, trigger=order.type.is_trigger
                )
            if known is None and order.status is OrderStatus.PENDING_SUBMIT:
                # Outcome unknown: looked up until it could no longer exist (bounded).
                resolved = await resolve_pending(self.gateway, order, self.clock)
                self.store.update_order(_with_bot(resolved, self.spec.name))
                continue
            if known is None:
                if order.type.is_trigger:
                    self.store.update_order(
                        order.with_status(OrderStatus.CANCELED, reason="gone from the exchange")
                    )
                continue
            if (known.status, known.filled_qty) != (order.status, order.filled_qty):
                self.store.update_order(_with_bot(known, self.spec.name))

    async def _sync_fills(self) -> None:
        new = await record_new_fills(
            self.gateway, self.store, self.spec.symbol, funding_owner=self.spec.name
        )
        for fill in new:
            self.log.info(
                "order_filled",
                cid=fill.client_order_id,
                side=fill.side.value,
                qty=str(fill.qty),
                price=str(fill.price),
                fee=str(fill.fee),
                realized_pnl=str(fill.realized_pnl),
            )

    async def _refresh_position(self) -> Position | None:
        """This bot's position, and (from the same one request) the account's others."""
        positions = await self.gateway.fetch_positions()
        self._account_positions = positions
        position = next((p for p in positions if p.symbol == self.spec.symbol and p.qty), None)
        self.snapshot.position = position
        self._save_position(position)
        return position

    def _save_position(self, position: Position | None) -> None:
        """Write the position when it changed (size, entry, leverage); a move of the mark
        alone at most once a minute (what status shows for the bot once it has stopped)."""
        saved = position or Position(
            self.spec.account, self.spec.symbol, ZERO, ZERO, ZERO, self.spec.leverage
        )
        now = self.clock.monotonic()
        last = self._saved_position
        if last is not None:
            same = (saved.qty, saved.entry_price, saved.leverage) == (
                last.qty,
                last.entry_price,
                last.leverage,
            )
            if same and (
                saved.mark_price == last.mark_price
                or now - self._saved_monotonic < MARK_SAVE_INTERVAL_S
            ):
                return
        self.store.save_position(self.spec.name, saved)
        self._saved_position = saved
        self._saved_monotonic = now

    async def _facts(
        self, at: datetime, *, equity: bool, only_if_flat: bool = False
    ) -> trader.Facts:
        """What the core decides on: position, today's realised PnL, live orders, equity.

        `only_if_flat`: the equity only when flat, as a candle's entry can only follow from
        flat (after a reversal the close's outcome brings the equity read after it).
        """
        position = await self._refresh_position()
        equity = equity and not (only_if_flat and position is not None)
        since = day_start(at, self.limits.daily_reset)
        return trader.Facts(
            position_qty=position.qty if position is not None else ZERO,
            entry_price=position.entry_price if position is not None else ZERO,
            mark=position.mark_price if position is not None else ZERO,
            bot_realized=self.store.realized_pnl(self.spec.name, since=since),
            orders=tuple(self.store.live_orders(self.spec.name)),
            equity=(await self.gateway.fetch_balance()).equity if equity else None,
        )

    def _exposure(self, at: datetime) -> AccountExposure:
        """The account's other positions and today's PnL, from this candle's one read."""
        positions = self._account_positions
        others = sum((p.notional for p in positions if p.symbol != self.spec.symbol), ZERO)
        unrealized = sum((p.unrealized_pnl for p in positions), ZERO)
        since = day_start(at, self.limits.daily_reset)
        realized = self.store.account_realized_pnl(self.spec.account, since)
        return AccountExposure(other_positions_notional=others, daily_pnl=realized + unrealized)

    # -- the candle path --------------------------------------------------------

    async def _on_candles(self, event: CandlesClosed) -> None:
        for candle in event.candles:
            window = self._windows.get(candle.timeframe)
            if window is not None and (
                window.last_timestamp is None or candle.timestamp > window.last_timestamp
            ):
                window.append(candle)
        first = event.candles[0]
        self.log.info("candle_closed", close=str(first.close), at=event.closed_at.isoformat())
        self._check_not_halted()
        await self._resolve_live_orders()
        await self._sync_fills()
        now = self.feed.now()
        signal = None
        if now - event.closed_at > self.config.max_candle_age:
            self.snapshot.stale_candles += 1
        elif any(c.timeframe == self.strategy.timeframes[0] for c in event.candles):
            signal = self._evaluate()
        facts = await self._facts(event.closed_at, equity=signal is not None, only_if_flat=True)
        await self._drive(
            trader.CandleClosed(
                event.closed_at,
                first.high,
                first.low,
                first.close,
                signal,
                facts,
                self._exposure(event.closed_at),
            ),
            now,
        )
        self.snapshot.last_candle_monotonic = self.clock.monotonic()
        self.snapshot.last_candle_close = event.closed_at
        self.snapshot.candles_processed += 1

    def _check_not_halted(self) -> None:
        """A halt written by someone else (a direct flatten from the CLI) stops us too."""
        self.store.notice_other_writers()
        record = self.store.bot(self.spec.name)
        if record is not None and record.desired_state is DesiredState.HALTED:
            raise HaltRequested(record.halt_reason or "halted", scope="external")

    def _evaluate(self) -> Signal | None:
        if any(len(self._windows[tf]) < n for tf, n in self.strategy.warmup.items()):
            return None
        signal = self.strategy.evaluate({tf: w.frame() for tf, w in self._windows.items()})
        if signal is None:
            return None
        self.snapshot.signals += 1
        self.log.info(
            "signal_generated",
            direction=signal.direction.value,
            entry=str(signal.entry),
            stop=str(signal.stop),
            take_profit=str(signal.take_profit),
            confidence=round(signal.confidence, 3),
            reason=signal.reason,
        )
        return signal

    # -- carrying out the core's actions ------------------------------------------

    async def _drive(self, event: trader.Event, now: datetime) -> None:
        """Step the core with `event`, carry out its actions, feed each outcome back."""
        self.state, actions = trader.step(self.state, event, self.config, now)
        pending = deque(actions)
        try:
            while pending:
                outcome = await self._carry_out(pending.popleft())
                if outcome is not None:
                    self.state, more = trader.step(self.state, outcome, self.config, now)
                    pending.extend(more)
        finally:
            self.snapshot.last_problem = self.state.last_problem

    async def _carry_out(self, action: trader.Action) -> trader.Outcome | None:
        if isinstance(action, trader.Journal):
            self.store.journal(action.kind, self.spec.name, **action.data)
            self.log.info(action.kind, **action.data)
            return None
        if isinstance(action, trader.SavePlan):
            self.store.save_plan(self.spec.name, action.plan)
            return None
        if isinstance(action, trader.Halt):
            self.log.error("loss_limit_reached", scope=action.scope, reason=action.reason)
            raise HaltRequested(action.reason, scope=action.scope)
        if isinstance(action, trader.Submit):
            return await self._submit(action)
        return await self._cancel(action.order)

    async def _submit(self, action: trader.Submit) -> trader.Outcome:
        """Commit the intent (with its plan and sequence), send it, record the outcome."""
        intent = action.intent
        if intent.purpose == "entry" and not self._refusals.allows(self.clock.now()):
            held = f"held back: {self._refusals.describe()}"  # never sent, so not recorded
            self.log.info("order_held_back", cid=intent.client_order_id, why=held)
            return await self._outcome(intent, trader.Result.REJECTED, None, held, moved=False)
        self.store.record_intent(intent, action.plan, action.sequence)
        self.log.info(
            "order_submitted",
            cid=intent.client_order_id,
            side=intent.side.value,
            type=intent.type.value,
            qty=str(intent.qty),
            trigger_price=None if intent.trigger_price is None else str(intent.trigger_price),
            reduce_only=intent.reduce_only,
            purpose=intent.purpose,
        )
        cid = intent.client_order_id
        try:
            order = _with_bot(await self.gateway.submit_order(intent), self.spec.name)
        except OrderRejected as e:
            rejected = await self.gateway.fetch_order(
                intent.symbol, cid, trigger=intent.type.is_trigger
            )
            self.store.update_order(
                _with_bot(rejected, self.spec.name)
                if rejected is not None
                else _intent_order(intent, OrderStatus.REJECTED, str(e))
            )
            check = getattr(e, "check", None)  # AccountRefused names what to change
            self.log.warning("order_rejected", cid=cid, check=check, reason=str(e))
            self.store.journal(
                "order_rejected", self.spec.name, cid=cid, check=check, reason=str(e)
            )
            reason = str(e)
            if intent.purpose == "entry" and not isinstance(e, OrderNeverPlaced | WouldTrigger):
                self._refusals.refused(f"{check or 'rejected'}: {e}", self.clock.now())
                if self._refusals.until is not None:
                    reason = f"{e} ({self._refusals.describe()})"
            result = trader.Result.WOULD_TRIGGER if isinstance(e, WouldTrigger) else None
            return await self._outcome(
                intent, result or trader.Result.REJECTED, None, reason, moved=False
            )
        except RetryableExchangeError as e:
            self.log.warning("order_outcome_unknown", cid=cid, reason=str(e))
            return await self._outcome(intent, trader.Result.UNKNOWN, None, str(e), moved=False)
        self.store.update_order(order)
        if intent.purpose == "entry":
            self._refusals.accepted()
        return await self._outcome(
            intent, trader.Result.DONE, order, "", moved=not intent.type.is_trigger
        )

    async def _cancel(self, order: Order) -> trader.Outcome:
        """Commit the cancel request, then send it. In a fleet the store refuses the request
        (LeaseLost, nothing sent) once this node no longer holds the bot's lease: a node
        that woke from a pause must not cancel the new holder's protective orders."""
        cid = order.client_order_id
        self.store.record_cancel(order, self.spec.name)
        try:
            final = await self.gateway.cancel_order(
                order.symbol, cid, trigger=order.type.is_trigger
            )
        except ExchangeError as e:
            self.log.warning("order_cancel_failed", cid=cid, reason=str(e))
            result = (
                trader.Result.UNKNOWN
                if isinstance(e, RetryableExchangeError)
                else trader.Result.REJECTED
            )
            return await self._outcome(order, result, None, str(e), moved=False)
        if final is None:
            final = order.with_status(OrderStatus.CANCELED, reason="not found on the exchange")
        final = _with_bot(final, self.spec.name)
        self.store.update_order(final)
        self.log.info("order_cancelled", cid=cid, status=final.status.value)
        return await self._outcome(
            order, trader.Result.DONE, final, "", moved=final.filled_qty > order.filled_qty
        )

    async def _outcome(
        self,
        sent: OrderIntent | Order,
        result: trader.Result,
        order: Order | None,
        reason: str,
        *,
        moved: bool,
    ) -> trader.Outcome:
        """The outcome with fresh facts: all of them when the position may have moved."""
        at = self.state.closed_at or self.clock.now()
        if moved:
            await self._sync_fills()
            facts = await self._facts(at, equity=True)
        else:
            facts = replace(self.state.facts, orders=tuple(self.store.live_orders(self.spec.name)))
        return trader.Outcome(sent.client_order_id, result, facts, order, reason)


def _with_bot(order: Order, bot: str) -> Order:
    return order if order.bot == bot else order.with_status(order.status, bot=bot)


def _intent_order(intent: OrderIntent, status: OrderStatus, reason: str) -> Order:
    """What the store writes for an intent the exchange refused without naming the order."""
    return Order(
        account=intent.account,
        symbol=intent.symbol,
        client_order_id=intent.client_order_id,
        side=intent.side,
        type=intent.type,
        qty=intent.qty,
        price=intent.price,
        reduce_only=intent.reduce_only,
        status=status,
        bot=intent.bot,
        reason=reason,
        trigger_price=intent.trigger_price,
        purpose=intent.purpose,
    )
