"""The backtest's fast engine: the daemon's trading core over a whole history, in one plain loop.

Why a second engine: the replay engine runs the daemon's own asyncio runner, replay feed and
SQLite store, so every candle pays for an event loop hop, a polars frame rebuild, a strategy
evaluation and a dozen store queries (about 2.5 ms); a week of 1m candles takes half a minute.
This engine feeds the same decisions without that machinery:

- the decisions are `daemon.domain.trader.step`, the core `BotRunner` drives: this loop only
  hands it each candle with the facts of a paper account and carries its actions out on that
  account, feeding every outcome back, as the runner does through the gateway and the store;
- signals come from the strategy's `signal_series` (every signal of the history at once, equal
  to `evaluate` on the live windows by the strategy's contract), or else from `evaluate` on
  zero-copy slices of whole-history frames that hold exactly the live windows' candles;
- the account fills as `PaperExchange` does, with the same pure functions of
  `daemon.domain.paper_model`: market orders at the close moved by the slippage, resting
  stops and take-profits by `fired_triggers` (the trigger or the gap's open, stop first)
  before the bot sees the candle, the same refusals (`check_step`, `executed_quantity`,
  `check_minimums`, `check_fill_margin`, `triggers_at`).

What is its own is speed: a candle without a signal, with nothing resting near its range,
far from the loss limits and with the protection in order (`trader.needs_attention`) cannot
lead to an action, so `step` is not called on it; floats pre-screen those tests and Decimals
decide whenever the floats come near (or tie). A loss-limit halt flattens as the supervisor
does (resting orders cancelled, the position closed at the close) and the rest of the run
only marks equity.

`tests/component/test_backtest_engines.py` holds this engine to the replay engine trade for trade,
and `tests/integration/test_backtest_parity.py` holds the backtest to a real daemon.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from daemon.adapters.candle_files import (
    CandleFile,
    aggregate,
    timeframe_minutes,
)
from daemon.adapters.paper_exchange import rejection
from daemon.domain import trader
from daemon.domain.errors import OrderRejected, WouldTrigger
from daemon.domain.models import (
    ZERO,
    Fill,
    Market,
    Order,
    OrderIntent,
    OrderStatus,
    Side,
    Signal,
    closing_side,
)
from daemon.domain.paper_model import (
    FLAT,
    Holding,
    apply_fill,
    check_fill_margin,
    check_minimums,
    check_step,
    executed_quantity,
    fired_triggers,
    isolated_margin,
    slipped_price,
    trigger_rises,
    triggers_at,
)
from daemon.domain.risk import AccountExposure, RiskLimits
from daemon.runtime.bot_runner import window_lengths
from daemon.runtime.flatten import flatten_order_id
from strategies.base import Strategy
from strategies.frames import FRAME_SCHEMA

DAY_MINUTES = 1440
PROGRESS_EVERY = 24  # per-candle evaluations between progress callbacks
_LOSS_CHECK_SLACK = 1e-6  # USDT: floats only pre-screen, Decimals decide

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Costs:
    """The paper account's money and costs, and the bot's leverage."""

    initial_balance: Decimal
    taker_fee_rate: Decimal
    slippage_bps: Decimal
    leverage: int  # the bot's, as checked by the risk rules
    margin_leverage: int  # what the paper account applies after the runner's set_leverage


# The trading core's journal entries that say why a signal led to no entry, and the
# exchange's refusals (`order_rejected`, journalled by the runner in the daemon).
SKIP_JOURNALS = frozenset({"signal_skipped", "signal_ignored", "order_refused", "order_rejected"})


@dataclass(slots=True)
class Decisions:
    """What became of the signals: entries sent, and the rest counted by rule with the first
    reason given (the rule and its numbers), so "802 signals, 0 trades" explains itself."""

    entries: int = 0
    skipped: dict[str, list[Any]] = field(default_factory=dict)  # rule -> [count, reason]
    # The signal behind each entry sent, at the close it was sent on: for the plot's stops,
    # targets and zones (the fast engine's; the replay engine leaves it empty).
    entry_signals: list[tuple[datetime, Signal]] = field(default_factory=list)

    def note(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind not in SKIP_JOURNALS:
            return
        rule = str(data.get("rule") or ("exchange" if kind == "order_rejected" else kind))
        counted = self.skipped.setdefault(rule, [0, str(data.get("reason", ""))])
        counted[0] += 1

    def as_dict(self) -> dict[str, dict[str, Any]]:
        ranked = sorted(self.skipped.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return {rule: {"count": n, "example": reason} for rule, (n, reason) in ranked}


@dataclass(slots=True)
class Outcome:
    """What the run did, for `daemon.backtest` to turn into a `BacktestResult`."""

    candles: int = 0
    signals: int = 0
    decisions: Decisions = field(default_factory=Decisions)
    fills: list[Fill] = field(default_factory=list)
    purposes: dict[str, str] = field(default_factory=dict)  # client order id -> why
    equity: list[tuple[datetime, float]] = field(default_factory=list)
    halted: dict[str, str] | None = None
    open_position: dict[str, str] | None = None


def strategy_frames(candles: pl.DataFrame, timeframes: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    """Frames per timeframe in the layout strategies read, floats as live.

    `candles` is laid out like `CandleFile.frame` (1m, Decimal prices).

    Higher timeframes are the replay feed's own buckets (`aggregate`: epoch-aligned, complete
    only). Prices become floats with polars' Decimal cast, which equals Python's
    `float(Decimal)` that `CandleWindow` applies (tested on the shipped files).
    """
    frames = {}
    for tf in timeframes:
        minutes = timeframe_minutes(tf)
        source = candles if minutes == 1 else aggregate(candles, 1, minutes)
        frames[tf] = source.select(
            timestamp=(pl.col("minute") * 60_000_000).cast(FRAME_SCHEMA["timestamp"]),
            **{c: pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")},
        )
    return frames


def signals_by_candle(
    strategy: Strategy, data: CandleFile, first: int, end: int, progress: Progress | None = None
) -> dict[int, Signal]:
    """Signals keyed by the index of the 1m candle whose close hands them to the runner.

    Only where the runner would evaluate: on a close of the base timeframe, with every
    window holding its warm-up. Without `signal_series` this is the slow part of a run (one
    `evaluate` per base candle), so it is what `progress` follows, in 1m candles done.
    """
    timeframes = strategy.timeframes
    windows = window_lengths(strategy)
    # History enough for every window at the first candle (plus a bucket for alignment):
    # a short backtest of a long file then costs what its own stretch costs.
    lead = max((windows[tf] + 1) * timeframe_minutes(tf) for tf in timeframes)
    begin = max(0, first - lead)
    frames = strategy_frames(data.frame.slice(begin, end - begin), timeframes)
    t0 = data.first_minute
    close_minutes = {  # close time (epoch minutes) of every candle, per timeframe
        tf: (frames[tf]["timestamp"].dt.epoch("s").to_numpy() // 60) + timeframe_minutes(tf)
        for tf in timeframes
    }
    base = timeframes[0]
    base_close = close_minutes[base]
    # rows of the base timeframe that close on a 1m candle inside [first, end)
    lo = int(np.searchsorted(base_close, t0 + first + 1))
    hi = int(np.searchsorted(base_close, t0 + end, side="right"))
    # candles of each timeframe closed by each base row's close (the live window's source)
    known = {
        tf: np.searchsorted(close_minutes[tf], base_close[lo:hi], side="right") for tf in timeframes
    }
    warm = np.ones(hi - lo, dtype=bool)
    for tf in timeframes:
        warm &= np.minimum(known[tf], windows[tf]) >= strategy.warmup.get(tf, 0)
    rows = lo + np.flatnonzero(warm)

    series = strategy.signal_series(frames, windows)
    if series is None:
        series = {}
        for n, row in enumerate(rows.tolist()):
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(min(int(base_close[row]) - t0 - 1 - first, end - first - 1), end - first)
            handed = {}
            for tf in timeframes:
                count = int(known[tf][row - lo])
                start = max(0, count - windows[tf])
                handed[tf] = frames[tf].slice(start, count - start)
            signal = strategy.evaluate(handed)
            if signal is not None:
                series[row] = signal
    wanted = set(rows.tolist())
    return {
        int(base_close[row]) - t0 - 1: signal for row, signal in series.items() if row in wanted
    }


class _Account:
    """The paper account of one bot on one symbol: a net holding, a wallet, resting trigger
    orders and the fills, as `PaperExchange` keeps them.

    Float mirrors of the wallet, today's PnL, the holding and the triggers are kept beside the
    Decimals for the loop's pre-screens; they never decide anything on their own.
    """

    def __init__(self, costs: Costs, market: Market, outcome: Outcome, symbol: str) -> None:
        self.costs = costs
        self.market = market
        self.outcome = outcome
        self.symbol = symbol
        self.holding = FLAT
        self.wallet = costs.initial_balance
        self.wallet_f = float(self.wallet)
        self._day_net = ZERO  # realised net of fees in the current risk day
        self.day_net_f = 0.0
        self.qty_f = 0.0
        self.entry_f = 0.0
        self.resting: list[Order] = []
        self._triggers_f: list[tuple[float, bool]] = []  # (trigger, fires on a rise)

    @property
    def day_net(self) -> Decimal:
        return self._day_net

    @day_net.setter
    def day_net(self, value: Decimal) -> None:
        self._day_net = value
        self.day_net_f = float(value)

    def facts(self, close: Decimal) -> trader.Facts:
        """What the runner would read from the paper exchange and the store now."""
        holding = self.holding
        unrealized = (close - holding.entry_price) * holding.qty
        return trader.Facts(
            position_qty=holding.qty,
            entry_price=holding.entry_price,
            mark=close,
            bot_realized=self._day_net,
            orders=tuple(self.resting),
            equity=self.wallet + unrealized,
        )

    def may_fire(self, high: float, low: float) -> bool:
        """False only when no resting trigger can have been reached (floats never decide)."""
        for trigger, rises in self._triggers_f:
            if (high >= trigger) if rises else (low <= trigger):
                return True
        return False

    def fire(self, open_: Decimal, high: Decimal, low: Decimal, at: datetime) -> bool:
        """Fill the resting triggers this candle reached, as `PaperExchange` does."""
        fired = fired_triggers(self.resting, open_, high, low)
        for order, hit in fired:
            self._unrest(order)
            if self.holding.qty * order.side.sign >= 0:
                continue  # reduce-only with nothing left to reduce: cancelled
            price = slipped_price(order.side, hit, self.costs.slippage_bps, self.market)
            qty = min(order.qty, abs(self.holding.qty))
            self._book(order.client_order_id, order.side, qty, price, at)
        return bool(fired)

    def submit(self, intent: OrderIntent, close: Decimal, at: datetime) -> trader.Outcome:
        """Fill or rest an order as `PaperExchange` would, or refuse it as it would."""
        self.outcome.purposes[intent.client_order_id] = intent.purpose
        try:
            if intent.type.is_trigger:
                order = self._rest(intent, close, at)
            else:
                order = self._fill_market(intent, close, at)
        except WouldTrigger as e:
            return self._outcome(intent.client_order_id, trader.Result.WOULD_TRIGGER, close, e)
        except OrderRejected as e:
            return self._outcome(intent.client_order_id, trader.Result.REJECTED, close, e)
        return trader.Outcome(intent.client_order_id, trader.Result.DONE, self.facts(close), order)

    def cancel(self, order: Order, close: Decimal) -> trader.Outcome:
        """Cancelled at once (the core reads the outcome, not the order's new status)."""
        self._unrest(order)
        return trader.Outcome(order.client_order_id, trader.Result.DONE, self.facts(close))

    def flatten(self, cid: str, close: Decimal, at: datetime) -> None:
        """A flatten: every resting order cancelled, the position closed at market."""
        self.resting.clear()
        self._triggers_f.clear()
        held = self.holding.qty
        if held:
            self.outcome.purposes[cid] = "flatten"
            side = closing_side(held)
            price = slipped_price(side, close, self.costs.slippage_bps, self.market)
            self._book(cid, side, abs(held), price, at)

    def _outcome(
        self, cid: str, result: trader.Result, close: Decimal, error: Exception
    ) -> trader.Outcome:
        return trader.Outcome(cid, result, self.facts(close), None, str(error))

    def _fill_market(self, intent: OrderIntent, close: Decimal, at: datetime) -> Order:
        market, costs, holding = self.market, self.costs, self.holding
        side, reduce_only = intent.side, intent.reduce_only
        check_step(intent.qty, market)
        qty = executed_quantity(holding, side, intent.qty, reduce_only)
        price = slipped_price(side, close, costs.slippage_bps, market)
        if not reduce_only:
            fee = qty * price * costs.taker_fee_rate
            check_minimums(qty, price, market)
            # free as the paper account has it: resting orders here are reduce-only
            free = self.wallet - isolated_margin(holding, costs.margin_leverage)
            check_fill_margin(holding, side, qty, price, fee, free, costs.margin_leverage)
        self._book(intent.client_order_id, side, qty, price, at)
        return _order(intent, OrderStatus.FILLED, filled_qty=qty, avg_fill_price=price)

    def _rest(self, intent: OrderIntent, close: Decimal, at: datetime) -> Order:
        check_step(intent.qty, self.market)
        executed_quantity(self.holding, intent.side, intent.qty, intent.reduce_only)
        trigger = intent.trigger_price
        assert trigger is not None and intent.reduce_only  # as the core makes them
        if trigger % self.market.price_step != 0:
            raise OrderRejected(f"trigger price {trigger} is not a multiple of the tick")
        if triggers_at(intent.type, intent.side, trigger, close):
            raise WouldTrigger(f"order would immediately trigger at {trigger}, last {close}")
        order = _order(intent, OrderStatus.OPEN)
        self.resting.append(order)
        self._triggers_f.append((float(trigger), trigger_rises(intent.type, intent.side)))
        return order

    def _unrest(self, order: Order) -> None:
        for i, resting in enumerate(self.resting):
            if resting.client_order_id == order.client_order_id:
                del self.resting[i]
                del self._triggers_f[i]
                return

    def _book(self, cid: str, side: Side, qty: Decimal, price: Decimal, at: datetime) -> None:
        """One taker fill: holding, wallet, today's PnL, the fill record."""
        fee = qty * price * self.costs.taker_fee_rate
        change = apply_fill(self.holding, side, qty, price)
        self.holding = change.holding if change.holding.qty != 0 else FLAT
        self.qty_f, self.entry_f = float(self.holding.qty), float(self.holding.entry_price)
        self.wallet = self.wallet + change.realized_pnl - fee
        self.wallet_f = float(self.wallet)
        self.day_net = self.day_net + (change.realized_pnl - fee)
        self.outcome.fills.append(
            Fill(
                account="paper",
                fill_id=f"paper-{len(self.outcome.fills) + 1}",
                client_order_id=cid,
                symbol=self.symbol,
                side=side,
                qty=qty,
                price=price,
                fee=fee,
                realized_pnl=change.realized_pnl,
                timestamp=at,
            )
        )


def _order(
    intent: OrderIntent,
    status: OrderStatus,
    filled_qty: Decimal = ZERO,
    avg_fill_price: Decimal | None = None,
) -> Order:
    return Order(
        account=intent.account,
        symbol=intent.symbol,
        client_order_id=intent.client_order_id,
        side=intent.side,
        type=intent.type,
        qty=intent.qty,
        price=None,
        reduce_only=intent.reduce_only,
        status=status,
        filled_qty=filled_qty,
        avg_fill_price=avg_fill_price,
        bot=intent.bot,
        trigger_price=intent.trigger_price,
        purpose=intent.purpose,
    )


def simulate(
    data: CandleFile,
    first: int,
    end: int,
    signals: Mapping[int, Signal],
    symbol: str,
    bot: str,
    costs: Costs,
    limits: RiskLimits,
    market: Market,
    progress: Progress | None = None,
) -> Outcome:
    """Run the 1m candles `first <= i < end` of `data` (see the module docstring).

    `progress` hears only the end: the loop takes well under a second for a month of candles.
    """
    frame = data.frame.slice(first, end - first)
    closes = _Decimals(frame["close"])
    close_f = frame["close"].cast(pl.Float64).to_list()
    high_f = frame["high"].cast(pl.Float64).to_list()
    low_f = frame["low"].cast(pl.Float64).to_list()
    opens, highs, lows = _Decimals(frame["open"]), _Decimals(frame["high"]), _Decimals(frame["low"])
    total = end - first
    times = _close_times(data.first_minute + first + 1, total)
    outcome = Outcome(candles=total)
    equity = outcome.equity
    account = _Account(costs, market, outcome, symbol)
    config = trader.TraderConfig(
        bot, "paper", symbol, market, costs.leverage, limits, timedelta(minutes=2)
    )
    state = trader.TraderState()
    attention = False
    reset = limits.daily_reset.hour * 60 + limits.daily_reset.minute
    min_limit = float(min(limits.daily_loss_limit_usdt, limits.account_daily_loss_limit_usdt))
    first_close = data.first_minute + first + 1
    day = None
    for k in range(total):
        today = (first_close + k - reset) // DAY_MINUTES
        if today != day:
            day, account.day_net = today, ZERO
        at = times[k]
        fired = bool(account.resting) and account.may_fire(high_f[k], low_f[k])
        if fired:
            fired = account.fire(opens[k], highs[k], lows[k], at)
        signal = signals.get(first + k)
        if signal is not None:
            outcome.signals += 1
        if account.qty_f:
            pnl_f = account.day_net_f + (close_f[k] - account.entry_f) * account.qty_f
        else:
            pnl_f = account.day_net_f
        near_limit = -pnl_f >= min_limit - _LOSS_CHECK_SLACK
        close = closes[k]
        if fired or signal is not None or near_limit or attention:
            facts = account.facts(close)
            event = trader.CandleClosed(
                at,
                highs[k],
                lows[k],
                close,
                signal,
                facts,
                AccountExposure(daily_pnl=facts.bot_realized + facts.unrealized),
            )
            state, halt = _decide(state, event, config, account, close, outcome.decisions)
            if halt is not None:
                outcome.halted = {"at": at.isoformat(), "scope": halt.scope, "reason": halt.reason}
                account.flatten(flatten_order_id(bot), close, at)
                equity.extend((t, float(account.wallet)) for t in times[k:])
                if progress is not None:
                    progress(total, total)
                return outcome
            attention = trader.needs_attention(state, config)
        if account.holding.qty:
            marked = account.wallet + _unrealized(account.holding, close)
            equity.append((at, float(marked)))
        else:
            equity.append((at, account.wallet_f))
    if progress is not None:
        progress(total, total)
    holding = account.holding
    if holding.qty:
        last = closes[total - 1]
        outcome.open_position = {
            "side": "long" if holding.qty > 0 else "short",
            "qty": str(abs(holding.qty)),
            "entry_price": str(holding.entry_price),
            "mark_price": str(last),
            "unrealized_pnl": str(_unrealized(holding, last)),
        }
    return outcome


def _decide(
    state: trader.TraderState,
    event: trader.CandleClosed,
    config: trader.TraderConfig,
    account: _Account,
    close: Decimal,
    decisions: Decisions,
) -> tuple[trader.TraderState, trader.Halt | None]:
    """Step the core with a candle and carry its actions out on the account, as the runner
    does through the gateway: each outcome goes back to the core before anything else."""
    now = event.closed_at
    state, actions = trader.step(state, event, config, now)
    pending = deque(actions)
    while pending:
        action = pending.popleft()
        if isinstance(action, trader.Submit):
            result = account.submit(action.intent, close, now)
            if action.intent.purpose == trader.ENTRY:
                decisions.entries += 1
                if event.signal is not None:
                    decisions.entry_signals.append((now, event.signal))
            if result.result in (trader.Result.REJECTED, trader.Result.WOULD_TRIGGER):
                reason = rejection(
                    action.intent.account, action.intent.client_order_id, result.reason
                )
                decisions.note("order_rejected", {"reason": reason})
        elif isinstance(action, trader.Cancel):
            result = account.cancel(action.order, close)
        elif isinstance(action, trader.Halt):
            return state, action
        else:
            if isinstance(action, trader.Journal):
                decisions.note(action.kind, action.data)
            continue  # the stored plan has no place in a backtest
        state, more = trader.step(state, result, config, now)
        pending.extend(more)
    return state, None


class _Decimals:
    """A Decimal column's values, made one at a time when asked: most candles never need
    theirs, and polars' own Decimal conversion costs more than the whole loop."""

    def __init__(self, column: pl.Series) -> None:
        dtype = column.dtype
        assert isinstance(dtype, pl.Decimal) and dtype.scale is not None
        self._units = column.to_physical().to_list()
        self._exponent = -dtype.scale

    def __getitem__(self, k: int) -> Decimal:
        return Decimal(self._units[k]).scaleb(self._exponent)


def _unrealized(holding: Holding, mark: Decimal) -> Decimal:
    return (mark - holding.entry_price) * holding.qty


def _close_times(first_close_minute: int, count: int) -> list[datetime]:
    """Close times as UTC datetimes, built by polars rather than one timedelta at a time."""
    minutes = pl.int_range(first_close_minute, first_close_minute + count, eager=True)
    return (minutes * 60_000_000).cast(FRAME_SCHEMA["timestamp"]).to_list()
