"""One bot: closed candles in, strategy, risk rules, orders out, fills and position back.

A runner is the only writer for its bot. Candles arrive through its own queue; the
feed waits until the runner is done with each event (lock-step), so a replay is
deterministic. Every order intent is committed to the store before it is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import structlog

from daemon.adapters.sqlite_store import SqliteStore
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import (
    HaltRequested,
    OrderNeverPlaced,
    OrderRejected,
    RetryableExchangeError,
    RiskRejected,
)
from daemon.domain.models import (
    ZERO,
    ClientOrderIds,
    Direction,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Signal,
    TradePlan,
)
from daemon.domain.risk import (
    AccountExposure,
    RiskLimits,
    check_intent,
    day_start,
    entry_quantity,
    loss_breach,
)
from daemon.ports import CandlesClosed, Clock, ExchangeGateway, MarketFeed
from daemon.runtime.fills import record_new_fills
from daemon.runtime.refusals import RefusalBackoff
from daemon.runtime.unknown_outcome import resolve_pending
from strategies.base import Strategy
from strategies.frames import CandleWindow

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


@dataclass(slots=True)
class BotSnapshot:
    """What the runner last knew, for status: read without touching the exchange."""

    last_candle_monotonic: float | None = None
    last_problem: str | None = None  # the last refusal by the exchange or the risk rules
    last_candle_close: datetime | None = None
    candles_processed: int = 0
    position: Position | None = None
    signals: int = 0


class BotRunner:
    def __init__(
        self,
        spec: BotSpec,
        strategy: Strategy,
        gateway: ExchangeGateway,
        feed: MarketFeed,
        store: SqliteStore,
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
        self._ids = ClientOrderIds(spec.name)
        self._queue: asyncio.Queue[tuple[CandlesClosed, asyncio.Future[None]]] = asyncio.Queue(1)
        self._windows = {tf: CandleWindow(tf, n) for tf, n in window_lengths(strategy).items()}
        self._market: Market | None = None
        self._last_close = ZERO
        self._exposure = AccountExposure()
        self._account_positions: list[Position] = []
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

    # -- start-up: crash-only, the same path after a clean stop or a kill -9 --

    async def _prepare(self) -> None:
        self._market = await self.gateway.market(self.spec.symbol)
        try:
            await self.gateway.set_leverage(self.spec.symbol, self.spec.leverage)
        except OrderRejected as e:
            self.log.warning("leverage_not_changed", reason=str(e))
        await self._reconcile()
        for tf, window in self._windows.items():
            window.extend(self.feed.history(tf, window.maxlen))
        self.log.info(
            "bot_prepared",
            strategy=self.spec.strategy,
            warm={tf: len(w) for tf, w in self._windows.items()},
        )

    async def _reconcile(self) -> None:
        """Make the store agree with the exchange before anything new is sent."""
        await self._resolve_live_orders()
        await self._sync_fills()
        position = await self._refresh_position()
        plan = self.store.plan(self.spec.name)
        if position is None and plan is not None:
            self.store.save_plan(self.spec.name, None)
            self.store.journal("plan_cleared", self.spec.name, reason="no position on the exchange")
        elif position is not None and plan is None:
            self.store.journal(
                "position_without_plan",
                self.spec.name,
                qty=str(position.qty),
                note="kept; the bot exits it only on an opposite signal",
            )

    async def _resolve_live_orders(self) -> None:
        for order in self.store.live_orders(self.spec.name):
            if order.status is OrderStatus.PENDING_SUBMIT:  # outcome unknown: look it up
                resolved = await resolve_pending(self.gateway, order, self.clock)
                self.store.update_order(_with_bot(resolved, self.spec.name))
                continue
            known = await self.gateway.fetch_order(order.symbol, order.client_order_id)
            if known is not None:
                self.store.update_order(_with_bot(known, self.spec.name))

    async def _sync_fills(self) -> None:
        new = await record_new_fills(
            self.gateway,
            self.store,
            self.spec.symbol,
            funding_owner=self.spec.name,
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
        self.store.save_position(
            self.spec.name,
            position
            or Position(self.spec.account, self.spec.symbol, ZERO, ZERO, ZERO, self.spec.leverage),
        )
        return position

    # -- the candle path --------------------------------------------------------

    async def _on_candles(self, event: CandlesClosed) -> None:
        for candle in event.candles:
            window = self._windows.get(candle.timeframe)
            if window is not None and (
                window.last_timestamp is None or candle.timestamp > window.last_timestamp
            ):
                window.append(candle)
        first = event.candles[0]
        self._last_close = first.close
        self.log.info("candle_closed", close=str(first.close), at=event.closed_at.isoformat())
        self._check_not_halted()
        await self._resolve_live_orders()
        await self._sync_fills()
        position = await self._refresh_position()
        await self._check_loss_limits(event.closed_at)
        position = await self._manage_exits(position, first.high, first.low, event.closed_at)
        if any(c.timeframe == self.strategy.timeframes[0] for c in event.candles):
            await self._evaluate(position, event.closed_at)
        self.snapshot.last_candle_monotonic = self.clock.monotonic()
        self.snapshot.last_candle_close = event.closed_at
        self.snapshot.candles_processed += 1

    def _check_not_halted(self) -> None:
        """A halt written by someone else (a direct flatten from the CLI) stops us too."""
        record = self.store.bot(self.spec.name)
        if record is not None and record.desired_state is DesiredState.HALTED:
            raise HaltRequested(record.halt_reason or "halted", scope="external")

    async def _check_loss_limits(self, now: datetime) -> None:
        """Today's realised plus unrealised PnL, for this bot and its whole account."""
        since = day_start(now, self.limits.daily_reset)
        self._exposure = await self._account_exposure(since)
        breach = loss_breach(self._daily_pnl(since), self._exposure.daily_pnl, self.limits)
        if breach is not None:
            self.store.journal(
                "loss_limit_reached",
                self.spec.name,
                scope=breach.scope,
                pnl=str(breach.pnl),
                limit=str(breach.limit),
            )
            self.log.error("loss_limit_reached", scope=breach.scope, pnl=str(breach.pnl))
            raise HaltRequested(breach.reason, scope=breach.scope)

    async def _account_exposure(self, since: datetime) -> AccountExposure:
        positions = self._account_positions  # read by _refresh_position on this candle
        others = sum((p.notional for p in positions if p.symbol != self.spec.symbol), ZERO)
        unrealized = sum((p.unrealized_pnl for p in positions), ZERO)
        realized = self.store.account_realized_pnl(self.spec.account, since)
        return AccountExposure(other_positions_notional=others, daily_pnl=realized + unrealized)

    async def _manage_exits(
        self, position: Position | None, high: Decimal, low: Decimal, now: datetime
    ) -> Position | None:
        plan = self.store.plan(self.spec.name)
        if position is None:
            if plan is not None:
                self.store.save_plan(self.spec.name, None)
            return None
        if plan is None:
            return position
        long = position.qty > 0
        hit = None
        if (long and low <= plan.stop) or (not long and high >= plan.stop):
            hit = "stop"
        elif (long and high >= plan.take_profit) or (not long and low <= plan.take_profit):
            hit = "take_profit"
        if hit is None:
            return position
        self.log.info(
            "exit_triggered", why=hit, stop=str(plan.stop), take_profit=str(plan.take_profit)
        )
        await self._close(position, now, purpose=hit)
        return await self._refresh_position()

    async def _evaluate(self, position: Position | None, now: datetime) -> None:
        if any(len(self._windows[tf]) < n for tf, n in self.strategy.warmup.items()):
            return
        signal = self.strategy.evaluate({tf: w.frame() for tf, w in self._windows.items()})
        if signal is None:
            return
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
        if position is not None:
            same = (position.qty > 0) == (signal.direction is Direction.LONG)
            if same:
                return
            await self._close(position, now, purpose="reversal")
            position = await self._refresh_position()
            if position is not None:
                return
        await self._enter(signal, now)

    async def _enter(self, signal: Signal, now: datetime) -> None:
        assert self._market is not None
        balance = await self.gateway.fetch_balance()
        qty = entry_quantity(signal, balance.equity, self.limits, self._market)
        if qty <= 0:
            self.store.journal(
                "signal_skipped",
                self.spec.name,
                reason="size below the market minimum after risk limits",
                equity=str(balance.equity),
            )
            self.log.info("signal_skipped", reason="size below market minimum")
            return
        order = await self._submit(signal.direction.entry_side, qty, now, purpose="entry")
        if order is not None and order.status is OrderStatus.FILLED:
            self.store.save_plan(
                self.spec.name,
                TradePlan(signal.direction, signal.stop, signal.take_profit, opened_at=now),
            )
            await self._refresh_position()

    async def _close(self, position: Position, now: datetime, purpose: str) -> None:
        side = Side.SELL if position.qty > 0 else Side.BUY
        order = await self._submit(side, abs(position.qty), now, purpose=purpose, reduce_only=True)
        if order is not None and order.status is OrderStatus.FILLED:
            self.store.save_plan(self.spec.name, None)

    async def _submit(
        self, side: Side, qty: Decimal, now: datetime, *, purpose: str, reduce_only: bool = False
    ) -> Order | None:
        """Risk-check, commit the intent, send it, record the outcome."""
        position = self.snapshot.position
        price = self._last_close
        intent = OrderIntent(
            bot=self.spec.name,
            account=self.spec.account,
            symbol=self.spec.symbol,
            client_order_id=self._ids.make(self.store.next_order_sequence(self.spec.name)),
            side=side,
            type=OrderType.MARKET,
            qty=qty,
            price=None,
            reduce_only=reduce_only,
            created_at=self.clock.now(),
            purpose=purpose,
        )
        assert self._market is not None
        if not reduce_only and not self._refusals.allows(now):
            self.log.info("order_held_back", purpose=purpose, why=self._refusals.describe())
            return None
        try:
            check_intent(
                intent,
                position_qty=position.qty if position is not None else ZERO,
                price=price,
                leverage=self.spec.leverage,
                limits=self.limits,
                market=self._market,
                daily_pnl=self._daily_pnl(day_start(now, self.limits.daily_reset)),
                account=self._exposure,
            )
        except RiskRejected as e:
            self.store.journal(
                "order_refused",
                self.spec.name,
                rule=e.rule,
                reason=str(e),
                cid=intent.client_order_id,
            )
            self.log.warning("order_refused", rule=e.rule, reason=str(e))
            self.snapshot.last_problem = f"risk rule {e.rule}: {e}"
            return None
        self.store.record_intent(intent)
        self.log.info(
            "order_submitted",
            cid=intent.client_order_id,
            side=side.value,
            qty=str(qty),
            reduce_only=reduce_only,
            purpose=purpose,
        )
        try:
            order = await self.gateway.submit_order(intent)
        except OrderRejected as e:
            rejected = await self.gateway.fetch_order(self.spec.symbol, intent.client_order_id)
            self.store.update_order(
                _with_bot(rejected, self.spec.name)
                if rejected is not None
                else _intent_order(intent, OrderStatus.REJECTED, str(e))
            )
            check = getattr(e, "check", None)
            self.log.warning(
                "order_rejected", cid=intent.client_order_id, check=check, reason=str(e)
            )
            self.store.journal(
                "order_rejected",
                self.spec.name,
                cid=intent.client_order_id,
                check=check,
                reason=str(e),
            )
            if isinstance(e, OrderNeverPlaced):
                self.snapshot.last_problem = f"order never placed: {e}"
                return None
            self._refusals.refused(f"{check or 'rejected'}: {e}", now)
            self.snapshot.last_problem = f"order {self._refusals.describe()}"
            return None
        except RetryableExchangeError as e:
            self.log.warning("order_outcome_unknown", cid=intent.client_order_id, reason=str(e))
            return None  # resolved by _resolve_live_orders before anything new is sent
        order = _with_bot(order, self.spec.name)
        self.store.update_order(order)
        self._refusals.accepted()
        await self._sync_fills()
        return order

    def _daily_pnl(self, since: datetime) -> Decimal:
        realized = self.store.realized_pnl(self.spec.name, since=since)
        position = self.snapshot.position
        return realized + (position.unrealized_pnl if position is not None else ZERO)


def _with_bot(order: Order, bot: str) -> Order:
    return order if order.bot == bot else order.with_status(order.status, bot=bot)


def _intent_order(intent: OrderIntent, status: OrderStatus, reason: str) -> Order:
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
    )
