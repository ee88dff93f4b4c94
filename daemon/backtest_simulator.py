"""The backtest's fast engine: the bot runner's decisions over a whole history, in one plain loop.

Why a second engine: the replay engine runs the daemon's own asyncio runner, replay feed and
SQLite store, so every candle pays for an event loop hop, a polars frame rebuild, a strategy
evaluation and a dozen store queries (about 2.5 ms); a week of 1m candles takes half a minute.
This engine makes the same decisions without that machinery:

- signals come from the strategy's `signal_series` (every signal of the history at once, equal
  to `evaluate` on the live windows by the strategy's contract), or else from `evaluate` on
  zero-copy slices of whole-history frames that hold exactly the live windows' candles;
- every rule is the daemon's own pure function: `check_intent`, `entry_quantity`,
  `loss_breach` and `day_start` from `daemon.domain.risk`, `apply_fill`, `slipped_price` and
  `isolated_margin` from the paper fill model, `round_trips` for the trades;
- what it restates is the order in which `BotRunner` applies them on each 1m close:

  1. the paper account marks the position at the close;
  2. loss limits: today's realised PnL net of fees plus the unrealised, for the bot and the
     account (one bot here, so the same figure); a breach halts the bot and flattens it at the
     close with a reduce-only market order, and the rest of the run only marks equity;
  3. exits: with a position and its plan, the candle's low/high against the stop first, then
     the take-profit; a hit closes at the close, reduce-only;
  4. on a close of the strategy's base timeframe, once every window is warm: a signal in the
     position's direction is ignored; against it the position is closed ("reversal"), then an
     entry sized by `entry_quantity` on the equity after that close is risk-checked (with the
     account figures taken at step 2, as the runner does) and filled like the paper account
     fills a market order (minimums, margin and fee out of the free balance);
  5. equity (wallet plus unrealised) is marked at the close.

`tests/component/test_backtest_engines.py` holds this engine to the replay engine trade for trade,
and `tests/integration/test_backtest_parity.py` holds the backtest to a real daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import numpy as np
import polars as pl

from daemon.adapters.candle_files import (
    CandleFile,
    aggregate,
    timeframe_minutes,
)
from daemon.domain.errors import OrderRejected, RiskRejected
from daemon.domain.models import (
    ZERO,
    ClientOrderIds,
    Direction,
    Fill,
    Market,
    OrderIntent,
    OrderType,
    Side,
    Signal,
)
from daemon.domain.paper_model import (
    FLAT,
    Holding,
    apply_fill,
    check_fill_margin,
    check_minimums,
    check_step,
    executed_quantity,
    isolated_margin,
    slipped_price,
)
from daemon.domain.risk import (
    AccountExposure,
    RiskLimits,
    check_intent,
    entry_quantity,
    loss_breach,
)
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


@dataclass(slots=True)
class Outcome:
    """What the run did, for `daemon.backtest` to turn into a `BacktestResult`."""

    candles: int = 0
    signals: int = 0
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
    """The paper account of one bot on one symbol: a net holding, a wallet and the fills.

    Float mirrors of the wallet, today's PnL and the holding are kept beside the Decimals
    for the loop's pre-screens; they never decide anything on their own.
    """

    def __init__(
        self, costs: Costs, market: Market, outcome: Outcome, symbol: str, limits: RiskLimits
    ) -> None:
        self.costs = costs
        self.market = market
        self.market_limits = limits
        self.outcome = outcome
        self.symbol = symbol
        self.holding = FLAT
        self.wallet = costs.initial_balance
        self.wallet_f = float(self.wallet)
        self._day_net = ZERO  # realised net of fees in the current risk day
        self.day_net_f = 0.0
        self.qty_f = 0.0
        self.entry_f = 0.0

    @property
    def day_net(self) -> Decimal:
        return self._day_net

    @day_net.setter
    def day_net(self, value: Decimal) -> None:
        self._day_net = value
        self.day_net_f = float(value)

    def fill(
        self, cid: str, side: Side, qty: Decimal, close: Decimal, at: datetime, reduce_only: bool
    ) -> None:
        """A market order as `PaperExchange` fills it; OrderRejected as it would refuse it."""
        market, costs = self.market, self.costs
        holding = self.holding
        check_step(qty, market)
        qty = executed_quantity(holding, side, qty, reduce_only)
        price = slipped_price(side, close, costs.slippage_bps, market)
        fee = qty * price * costs.taker_fee_rate
        if not reduce_only:
            check_minimums(qty, price, market)
            # free as the paper account has it: no resting orders here, one symbol
            free = self.wallet - isolated_margin(holding, costs.margin_leverage)
            check_fill_margin(holding, side, qty, price, fee, free, costs.margin_leverage)
        change = apply_fill(holding, side, qty, price)
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


@dataclass(slots=True)
class _Plan:
    long: bool
    stop: Decimal
    take_profit: Decimal
    stop_f: float
    take_profit_f: float


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

    The loop is the hot path: floats pre-screen the loss limits and the exits on every
    candle, and Decimals decide whenever the floats come near (or tie).
    """
    frame = data.frame.slice(first, end - first)
    closes = frame["close"].to_list()
    close_f = frame["close"].cast(pl.Float64).to_list()
    high_f = frame["high"].cast(pl.Float64).to_list()
    low_f = frame["low"].cast(pl.Float64).to_list()
    total = end - first
    times = _close_times(data.first_minute + first + 1, total)
    outcome = Outcome(candles=total)
    equity = outcome.equity
    account = _Account(costs, market, outcome, symbol, limits)
    orders = _OrderDesk(account, bot, symbol, costs, limits, market)
    plan: _Plan | None = None
    reset = limits.daily_reset.hour * 60 + limits.daily_reset.minute
    min_limit = float(min(limits.daily_loss_limit_usdt, limits.account_daily_loss_limit_usdt))
    first_close = data.first_minute + first + 1
    day = None
    for k in range(total):
        today = (first_close + k - reset) // DAY_MINUTES
        if today != day:
            day, account.day_net = today, ZERO
        holding = account.holding
        close = closes[k]
        # 2. loss limits, on the figures the runner reads at this close
        orders.checked = (holding, account.day_net, close)  # what the runner's check saw
        if holding.qty:
            pnl_f = account.day_net_f + (close_f[k] - account.entry_f) * account.qty_f
        else:
            pnl_f = account.day_net_f
        if -pnl_f >= min_limit - _LOSS_CHECK_SLACK:
            pnl = account.day_net + _unrealized(holding, close)
            breach = loss_breach(pnl, pnl, limits)
            if breach is not None:
                _halt(outcome, account, bot, breach.scope, breach.reason, close, times[k])
                equity.extend((t, float(account.wallet)) for t in times[k:])
                if progress is not None:
                    progress(total, total)
                return outcome
        # 3. exits
        if plan is not None:
            if not holding.qty:
                plan = None
            else:
                hit = _exit_hit(plan, high_f[k], low_f[k], frame, k)
                if hit is not None:
                    side = Side.SELL if holding.qty > 0 else Side.BUY
                    if orders.submit(side, abs(holding.qty), close, times[k], hit, True):
                        plan = None
        # 4. signals
        signal = signals.get(first + k)
        if signal is not None:
            outcome.signals += 1
            plan = _on_signal(signal, plan, orders, account, close, times[k])
        # 5. equity
        if account.holding.qty:
            marked = account.wallet + _unrealized(account.holding, close)
            equity.append((times[k], float(marked)))
        else:
            equity.append((times[k], account.wallet_f))
    if progress is not None:
        progress(total, total)
    holding = account.holding
    if holding.qty:
        last = closes[-1]
        outcome.open_position = {
            "side": "long" if holding.qty > 0 else "short",
            "qty": str(abs(holding.qty)),
            "entry_price": str(holding.entry_price),
            "mark_price": str(last),
            "unrealized_pnl": str(_unrealized(holding, last)),
        }
    return outcome


def _on_signal(
    signal: Signal,
    plan: _Plan | None,
    orders: _OrderDesk,
    account: _Account,
    close: Decimal,
    at: datetime,
) -> _Plan | None:
    """The runner's `_evaluate` after a signal; returns the plan in force afterwards."""
    held = account.holding.qty
    if held:
        if (held > 0) == (signal.direction is Direction.LONG):
            return plan
        side = Side.SELL if held > 0 else Side.BUY
        if orders.submit(side, abs(held), close, at, "reversal", True):
            plan = None
        if account.holding.qty:
            return plan
    qty = entry_quantity(signal, account.wallet, account.market_limits, account.market)
    if qty > 0 and orders.submit(signal.direction.entry_side, qty, close, at, "entry", False):
        stop, target = signal.stop, signal.take_profit
        return _Plan(signal.direction is Direction.LONG, stop, target, float(stop), float(target))
    return plan


def _halt(
    outcome: Outcome,
    account: _Account,
    bot: str,
    scope: str,
    reason: str,
    close: Decimal,
    at: datetime,
) -> None:
    """A loss limit reached: halted for the rest of the run, flattened as the supervisor does."""
    outcome.halted = {"at": at.isoformat(), "scope": scope, "reason": reason}
    held = account.holding.qty
    if held:
        cid = flatten_order_id(bot)
        outcome.purposes[cid] = "flatten"
        account.fill(cid, Side.SELL if held > 0 else Side.BUY, abs(held), close, at, True)


class _OrderDesk:
    """The runner's `_submit`: a sequential client order id, the risk rules, then the fill."""

    def __init__(
        self,
        account: _Account,
        bot: str,
        symbol: str,
        costs: Costs,
        limits: RiskLimits,
        market: Market,
    ) -> None:
        self.account = account
        self.bot = bot
        self.symbol = symbol
        self.costs = costs
        self.limits = limits
        self.market = market
        self.ids = ClientOrderIds(bot)
        self.sequence = 0
        self.checked: tuple[Holding, Decimal, Decimal] = (FLAT, ZERO, ZERO)  # at the loss check

    def submit(
        self, side: Side, qty: Decimal, close: Decimal, at: datetime, purpose: str, reduce: bool
    ) -> bool:
        """Whether the order filled; refusals by the rules or the account are not errors."""
        self.sequence += 1
        cid = self.ids.make(self.sequence)
        account = self.account
        holding, day_net, checked_close = self.checked
        try:
            check_intent(
                OrderIntent(
                    bot=self.bot,
                    account="paper",
                    symbol=self.symbol,
                    client_order_id=cid,
                    side=side,
                    type=OrderType.MARKET,
                    qty=qty,
                    price=None,
                    reduce_only=reduce,
                    created_at=at,
                    purpose=purpose,
                ),
                position_qty=account.holding.qty,
                price=close,
                leverage=self.costs.leverage,
                limits=self.limits,
                market=self.market,
                daily_pnl=account.day_net + _unrealized(account.holding, close),
                account=AccountExposure(daily_pnl=day_net + _unrealized(holding, checked_close)),
            )
        except RiskRejected:
            return False
        account.outcome.purposes[cid] = purpose
        try:
            account.fill(cid, side, qty, close, at, reduce)
        except OrderRejected:
            return False
        return True


def _unrealized(holding: Holding, mark: Decimal) -> Decimal:
    return (mark - holding.entry_price) * holding.qty


def _exit_hit(plan: _Plan, high: float, low: float, frame: pl.DataFrame, k: int) -> str | None:
    """The runner's exit test; floats decide unless they tie, then the exact Decimals do."""
    if plan.long:
        if low < plan.stop_f or (low == plan.stop_f and frame["low"][k] <= plan.stop):
            return "stop"
        if high > plan.take_profit_f or (
            high == plan.take_profit_f and frame["high"][k] >= plan.take_profit
        ):
            return "take_profit"
        return None
    if high > plan.stop_f or (high == plan.stop_f and frame["high"][k] >= plan.stop):
        return "stop"
    if low < plan.take_profit_f or (
        low == plan.take_profit_f and frame["low"][k] <= plan.take_profit
    ):
        return "take_profit"
    return None


def _close_times(first_close_minute: int, count: int) -> list[datetime]:
    """Close times as UTC datetimes, built by polars rather than one timedelta at a time."""
    minutes = pl.int_range(first_close_minute, first_close_minute + count, eager=True)
    return (minutes * 60_000_000).cast(FRAME_SCHEMA["timestamp"]).to_list()
