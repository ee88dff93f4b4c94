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

import bisect
import decimal
import gc
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import polars as pl

from daemon.adapters.candle_files import (
    CandleFile,
    aggregate,
    minute_at_or_after,
    minute_to_datetime,
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
from daemon.domain.sessions import SessionWindow
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
    equity: EquityCurve = field(default_factory=lambda: EquityCurve(0, np.empty(0)))
    halted: dict[str, str] | None = None
    open_position: dict[str, str] | None = None


class EquityCurve(Sequence[tuple[datetime, float]]):
    """Equity marked at every 1m close, kept as one float array: the (close time, equity)
    pairs are made only when read, since a run of months would otherwise build a datetime
    and a tuple per candle that most callers (the summary's metrics) never look at."""

    def __init__(self, first_close_minute: int, values: npt.NDArray[np.float64]) -> None:
        self.first_close_minute = first_close_minute
        self.values = values

    def __len__(self) -> int:
        return int(self.values.size)

    @overload
    def __getitem__(self, index: int) -> tuple[datetime, float]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[datetime, float]]: ...

    def __getitem__(
        self, index: int | slice
    ) -> tuple[datetime, float] | list[tuple[datetime, float]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return minute_to_datetime(self.first_close_minute + index), float(self.values[index])

    def __iter__(self) -> Iterator[tuple[datetime, float]]:
        minute = self.first_close_minute
        return (
            (minute_to_datetime(minute + i), value) for i, value in enumerate(self.values.tolist())
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EquityCurve):
            return self.first_close_minute == other.first_close_minute and bool(
                np.array_equal(self.values, other.values)
            )
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it stands for

    def day_closes(self) -> list[float]:
        """The equity at each UTC day's last 1m close, in order (a close at 00:00 ends the
        day before)."""
        if not len(self):
            return []
        days = (np.arange(len(self)) + self.first_close_minute - 1) // DAY_MINUTES
        last = [*np.flatnonzero(np.diff(days)).tolist(), len(self) - 1]
        closes: list[float] = self.values[last].tolist()
        return closes


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
        self.triggers_f: list[tuple[float, bool]] = []  # (trigger, fires on a rise)

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
        for trigger, rises in self.triggers_f:
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
        self.triggers_f.clear()
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
        self.triggers_f.append((float(trigger), trigger_rises(intent.type, intent.side)))
        return order

    def _unrest(self, order: Order) -> None:
        for i, resting in enumerate(self.resting):
            if resting.client_order_id == order.client_order_id:
                del self.resting[i]
                del self.triggers_f[i]
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
    sessions: tuple[SessionWindow, ...] = (),
    session_end: str = trader.KEEP,
) -> Outcome:
    """Run the 1m candles `first <= i < end` of `data` (see the module docstring).

    `progress` hears only the end: the loop takes about a second for a month of candles.
    The cyclic garbage collector is paused meanwhile: the loop makes no reference cycles, and
    each of its passes would walk every fill and order made so far again (15 % of a run of
    six months).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _simulate(
            data,
            first,
            end,
            signals,
            symbol,
            bot,
            costs,
            limits,
            market,
            progress,
            sessions,
            session_end,
        )
    finally:
        if collecting:
            gc.enable()


def _simulate(
    data: CandleFile,
    first: int,
    end: int,
    signals: Mapping[int, Signal],
    symbol: str,
    bot: str,
    costs: Costs,
    limits: RiskLimits,
    market: Market,
    progress: Progress | None,
    sessions: tuple[SessionWindow, ...],
    session_end: str,
) -> Outcome:
    frame = data.frame.slice(first, end - first)
    closes = _Decimals(frame["close"])
    arrays = tuple(frame[c].cast(pl.Float64).to_numpy() for c in ("high", "low", "close"))
    high_f, low_f, close_f = (a.tolist() for a in arrays)
    opens, highs, lows = _Decimals(frame["open"]), _Decimals(frame["high"]), _Decimals(frame["low"])
    total = end - first
    first_close = data.first_minute + first + 1
    outcome = Outcome(candles=total)
    curve = outcome.equity = EquityCurve(first_close, np.empty(total))
    values = curve.values
    account = _Account(costs, market, outcome, symbol)
    config = trader.TraderConfig(
        bot,
        "paper",
        symbol,
        market,
        costs.leverage,
        limits,
        timedelta(minutes=2),
        sessions=sessions,
        session_end=session_end,
    )
    state = trader.TraderState()
    attention = False
    reset = limits.daily_reset.hour * 60 + limits.daily_reset.minute
    limit_f = float(min(limits.daily_loss_limit_usdt, limits.account_daily_loss_limit_usdt))
    near_f = limit_f - _LOSS_CHECK_SLACK  # a loss of this much (floats) asks the Decimals
    days = (np.arange(first_close - reset, first_close - reset + total) // DAY_MINUTES).tolist()
    signalled = sorted(i - first for i in signals if first <= i < end)
    marker = _Marker(closes)
    day = None
    k = 0
    while k < total:
        today = days[k]
        if today != day:
            day, account.day_net = today, ZERO
        if not attention:  # candles where nothing can happen are marked, not stepped
            skip_to = _quiet_until(
                account, k, total, signalled, days, near_f, high_f, low_f, close_f, arrays
            )
            if sessions:  # entering or leaving a session is a decision: never skipped over
                if state.session_since is None:
                    skip_to = k
                elif state.session_until is not None:
                    change = minute_at_or_after(state.session_until) - first_close
                    skip_to = min(skip_to, max(k, change))
            if skip_to > k:
                held = account.holding
                if held.qty:
                    marker.mark(values, k, skip_to, account.wallet, held)
                else:
                    values[k:skip_to] = account.wallet_f
                k = skip_to
                continue
        at = minute_to_datetime(first_close + k)
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
        close = closes[k]
        session = bool(sessions) and trader.session_due(state, config, at)
        if fired or signal is not None or -pnl_f >= near_f or attention or session:
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
                values[k:] = float(account.wallet)
                if progress is not None:
                    progress(total, total)
                return outcome
            attention = trader.needs_attention(state, config)
        if account.holding.qty:
            marker.mark(values, k, k + 1, account.wallet, account.holding)
        else:
            values[k] = account.wallet_f
        k += 1
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


_SCAN_FIRST = 8  # candles of a quiet stretch looked at in Python, before numpy takes over


def _quiet_until(
    account: _Account,
    k: int,
    total: int,
    signalled: list[int],
    days: list[int],
    near_f: float,
    high_f: list[float],
    low_f: list[float],
    close_f: list[float],
    arrays: tuple[npt.NDArray[np.float64], ...],
) -> int:
    """The first candle from k on that the loop must look at: one with a signal, one whose
    range may reach a resting trigger, one whose floats come near the loss limits, or a new
    risk day (it resets the day's PnL); the pre-screens are the loop's own, on arrays.

    Only asked while the core needs no attention: then a candle without any of these cannot
    lead to an action (`trader.needs_attention`), and only its equity is marked.
    """
    stop = total
    i = bisect.bisect_left(signalled, k)
    if i < len(signalled):
        stop = signalled[i]
    if stop <= k:
        return k
    qty_f, day_net_f = account.qty_f, account.day_net_f
    if not qty_f and not account.resting:  # flat and nothing rests: only the limit is left
        if -day_net_f >= near_f or near_f <= 0:
            return k
        return stop
    day = days[k]
    triggers, entry_f = account.triggers_f, account.entry_f
    # A trade lasts a few candles as a rule: look at the first ones in plain Python before
    # paying numpy's fixed cost per call.
    for j in range(k, min(stop, k + _SCAN_FIRST)):
        if days[j] != day:
            return j
        high, low = high_f[j], low_f[j]
        for trigger, rises in triggers:
            if (high >= trigger) if rises else (low <= trigger):
                return j
        pnl = day_net_f + (close_f[j] - entry_f) * qty_f if qty_f else day_net_f
        if -pnl >= near_f:
            return j
    scan, width = k + _SCAN_FIRST, _SCAN_FIRST * 4
    highs, lows, closes = arrays
    while scan < stop:
        upto = min(stop, scan + width)
        busy = np.zeros(upto - scan, dtype=bool)
        for trigger, rises in triggers:
            if rises:
                busy |= highs[scan:upto] >= trigger
            else:
                busy |= lows[scan:upto] <= trigger
        if qty_f:
            busy |= -(day_net_f + (closes[scan:upto] - entry_f) * qty_f) >= near_f
        elif -day_net_f >= near_f:
            return k
        hit = int(np.argmax(busy)) if busy.any() else upto - scan
        end_of_day = bisect.bisect_right(days, day, scan, scan + hit)
        if end_of_day < scan + hit:
            return end_of_day
        if hit < upto - scan:
            return scan + hit
        scan, width = upto, width * 2
    return stop


class _Marker:
    """Equity of an open position at each close, exactly `float(wallet + (close - entry) *
    qty)` as the Decimal code computes it, in Python integers (cheaper than a Decimal per
    candle); falls back to Decimals where 28 digits (Decimal's precision) might not hold it."""

    def __init__(self, closes: _Decimals) -> None:
        self._closes = closes
        self._units = closes.units
        self._exponent = closes.exponent
        self._for: tuple[Decimal, Holding] | None = None
        self._terms = (0, 0, 0, 0, 0, 0)

    def mark(
        self,
        values: npt.NDArray[np.float64],
        begin: int,
        end: int,
        wallet: Decimal,
        holding: Holding,
    ) -> None:
        units = self._units
        if self._for is None or self._for[0] is not wallet or self._for[1] is not holding:
            self._for = (wallet, holding)
            self._terms = self._integer_terms(wallet, holding)
        c_scale, e_scaled, q_int, p_scale, w_scaled, b = self._terms
        stretch: list[int] = units[begin:end].tolist()
        biggest = max(max(stretch), -min(stretch)) * c_scale + abs(e_scaled)
        exact = (
            biggest < _DIGITS
            and biggest * abs(q_int) < _DIGITS
            and biggest * abs(q_int) * p_scale + abs(w_scaled) < _DIGITS
        )
        if not exact:
            closes = self._closes
            for j in range(begin, end):
                values[j] = float(wallet + _unrealized(holding, closes[j]))
            return
        if b < 0:
            divisor = 10**-b
            values[begin:end] = [
                ((u * c_scale - e_scaled) * q_int * p_scale + w_scaled) / divisor for u in stretch
            ]
        else:
            factor = 10**b
            values[begin:end] = [
                float(((u * c_scale - e_scaled) * q_int * p_scale + w_scaled) * factor)
                for u in stretch
            ]

    def _integer_terms(
        self, wallet: Decimal, holding: Holding
    ) -> tuple[int, int, int, int, int, int]:
        """close * c_scale - e_scaled is (close - entry) in units of 10**a; times q_int *
        p_scale plus w_scaled, the equity in units of 10**b."""
        q_int, q_exp = _integer(holding.qty)
        e_int, e_exp = _integer(holding.entry_price)
        w_int, w_exp = _integer(wallet)
        c_exp = self._exponent
        a = min(c_exp, e_exp)
        b = min(a + q_exp, w_exp)
        return (
            10 ** (c_exp - a),
            e_int * 10 ** (e_exp - a),
            q_int,
            10 ** (a + q_exp - b),
            w_int * 10 ** (w_exp - b),
            b,
        )


_DIGITS = 10**28  # Decimal's default precision: below it, its sums and products are exact


def _integer(value: Decimal) -> tuple[int, int]:
    """`value` as (integer, exponent): value == integer * 10**exponent."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return int(value.scaleb(-exponent, _EXACT)), exponent


_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


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
    theirs, and polars' own Decimal conversion costs more than the whole loop. Held as
    integers in units of the column's scale (a strict cast: a value beyond int64 raises)."""

    def __init__(self, column: pl.Series) -> None:
        dtype = column.dtype
        assert isinstance(dtype, pl.Decimal) and dtype.scale is not None
        self.units: npt.NDArray[np.int64] = column.to_physical().cast(pl.Int64).to_numpy()
        self.exponent = -dtype.scale

    def __getitem__(self, k: int) -> Decimal:
        return Decimal(int(self.units[k])).scaleb(self.exponent)


def _unrealized(holding: Holding, mark: Decimal) -> Decimal:
    return (mark - holding.entry_price) * holding.qty
