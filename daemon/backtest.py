"""Backtests that trade exactly as the daemon does: the same candles, rules, fills and decisions.

Two engines, one report:

- "replay", parity by construction: the daemon's own parts wired in one event loop, as
  `daemon.app` does for a paper account on replayed data. `ReplayFeed` at speed 0 (the same
  multi-timeframe aggregation, warm-up history and lock-step delivery), `PaperExchange` on an
  in-memory `SqliteStore`, subscribed before the bot (so resting stops and take-profits fire
  on a candle before the bot sees it), and `BotRunner` around the trading core. About 2 ms a
  candle.
- "fast" (the default), parity by the same core and by test: `daemon.backtest_simulator`
  feeds the same `daemon.domain.trader.step` in one loop, carrying its actions out on a paper
  account with the same fill model, and computes the strategy's signals at once.
  `tests/component/test_backtest_engines.py` holds it to the replay engine on every figure
  of the report.

A daily loss limit halts the bot as in the daemon: its position is flattened with the daemon's
`Flattener` and it stays halted to the end of the run (nobody is there to resume it); the
result says when and why.

Window: the 1m candles opening in [start, end) of the file's own data (never the replay's
mirrored laps). `start` defaults to the replay's default (3 days after the first candle, so
there is history to warm up on); the warm-up reads candles before `start`, like the daemon.

Metrics (`BacktestResult.summary`):

- `signals`, `entries`, `skipped`: the strategy's signals, the entry orders they led to, and
  the rest counted by the rule that stopped them with the first reason given (the rule and
  its numbers: `max_position_usdt 50 < BTC/USDT:USDT minimum order 100 USDT`), the trading
  core's own journal entries (`signal_skipped`, `signal_ignored`, `order_refused`) and the
  exchange's refusals (`exchange`).
- `trades`: round trips, from a fill that opens a position to the fill that makes it flat.
  A position still open at the end is reported under `open_position`, not as a trade.
- `net_pnl`: sum over trades of realised PnL minus the fees of both fills (USDT).
- `win_rate`: share of trades with net PnL > 0 (null without trades).
- `profit_factor`: sum of winning trades' net PnL / |sum of losing trades' net PnL| (null
  without a losing trade).
- `max_drawdown`: the largest fall of equity (wallet + unrealised PnL, marked at every 1m
  close) from a previous peak, in USDT; `max_drawdown_pct` the same relative to that peak.
- `sharpe`: daily and annualised: the equity at each UTC day's last 1m close, returns day over
  day (the first against the starting equity), mean / sample standard deviation * sqrt(365)
  (crypto trades every day). Only from `SHARPE_MIN_DAYS` daily returns up (fewer say
  nothing: two days once gave -101.5); null otherwise or without variation.
  `sharpe_basis` says so in words, `sharpe_periods` counts the daily returns.
- `warm_up`: the history the strategy needs before its first evaluation, how much the data
  holds before the window's start (read as warm-up, as the daemon does), and how many
  evaluations of the window were lost for want of it (0 when the data had enough).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.adapters.candle_files import (
    CandleFile,
    load_candles,
    minute_to_datetime,
    timeframe_minutes,
)
from daemon.adapters.paper_exchange import PaperExchange, PaperSettings
from daemon.adapters.paper_markets import load_paper_markets
from daemon.adapters.replay_feed import DEFAULT_WARMUP, ReplayFeed
from daemon.adapters.sqlite_store import SqliteStore
from daemon.backtest_simulator import Costs, Decisions, EquityCurve, signals_by_candle, simulate
from daemon.clock import SystemClock
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import HaltRequested, TradectlError
from daemon.domain.models import ZERO, Fill, Side
from daemon.domain.risk import RiskLimits
from daemon.domain.timeframes import timeframe_seconds
from daemon.ports import CandlesClosed
from daemon.runtime.bot_runner import BotRunner, BotSpec
from daemon.runtime.flatten import Flattener
from daemon.settings import paper_settings, risk_limits
from strategies.registry import build_strategy
from tradectl.config import Config, PaperAccount

ACCOUNT = "paper"
BOT = "backtest"
FLATTEN_TIMEOUT_S = 10.0
SHARPE_MIN_DAYS = 30  # daily returns below which a Sharpe ratio is noise
_MINUTE = timedelta(minutes=1)

Progress = Callable[[int, int], None]  # candles done, candles in the window


class BacktestInputError(TradectlError):
    """The window asked for does not fit the data (the caller's input, not the config)."""


@dataclass(frozen=True, slots=True)
class BacktestSetup:
    """Everything a run needs besides the strategy and the data: money, costs, limits."""

    limits: RiskLimits
    paper: PaperSettings
    leverage: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip, flat to flat."""

    side: str  # long | short
    qty: Decimal
    entry_time: datetime
    entry_price: Decimal
    exit_time: datetime
    exit_price: Decimal  # quantity-weighted when the exit took several fills
    exit_reason: str  # stop | take_profit | reversal | flatten ...
    pnl: Decimal  # realised, before fees
    fees: Decimal

    @property
    def net_pnl(self) -> Decimal:
        return self.pnl - self.fees

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "qty": str(self.qty),
            "entry_time": self.entry_time.isoformat(),
            "entry_price": str(self.entry_price),
            "exit_time": self.exit_time.isoformat(),
            "exit_price": str(self.exit_price),
            "exit_reason": self.exit_reason,
            "pnl": str(self.pnl),
            "fees": str(self.fees),
            "net_pnl": str(self.net_pnl),
        }


@dataclass(slots=True)
class BacktestResult:
    strategy: str
    params: dict[str, Any]
    symbol: str
    start: datetime
    end: datetime
    initial_balance: Decimal
    candles: int = 0
    trades: list[Trade] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    # at every 1m close: a list from the replay engine, an EquityCurve from the fast one
    equity: list[tuple[datetime, float]] | EquityCurve = field(default_factory=list)
    open_position: dict[str, str] | None = None
    halted: dict[str, str] | None = None
    signals: int = 0
    decisions: Decisions = field(default_factory=Decisions)
    warm_up: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The metrics of the module docstring, plus the trades; JSON-ready."""
        nets = [float(t.net_pnl) for t in self.trades]
        wins = [n for n in nets if n > 0]
        losses = [n for n in nets if n <= 0]
        gross_loss = -sum(n for n in losses if n < 0)
        equity = self.equity
        values = (
            equity.values.tolist() if isinstance(equity, EquityCurve) else [e for _, e in equity]
        )
        drawdown, drawdown_pct = max_drawdown(values)
        end_equity = values[-1] if values else float(self.initial_balance)
        sharpe, periods = daily_sharpe(equity, float(self.initial_balance))
        return {
            "strategy": self.strategy,
            "params": self.params,
            "symbol": self.symbol,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "candles": self.candles,
            "signals": self.signals,
            "entries": self.decisions.entries,
            "skipped": self.decisions.as_dict(),
            "trades": len(self.trades),
            "net_pnl": _round(sum(nets)),
            "fees": _round(sum(float(t.fees) for t in self.trades)),
            "win_rate": _round(len(wins) / len(nets)) if nets else None,
            "profit_factor": _round(sum(wins) / gross_loss) if gross_loss > 0 else None,
            "max_drawdown": _round(drawdown),
            "max_drawdown_pct": _round(drawdown_pct),
            "sharpe": _opt_round(sharpe if periods >= SHARPE_MIN_DAYS else None),
            "sharpe_basis": _sharpe_basis(periods),
            "sharpe_periods": periods,
            "warm_up": self.warm_up,
            "initial_balance": _round(float(self.initial_balance)),
            "end_equity": _round(end_equity),
            "open_position": self.open_position,
            "halted": self.halted,
            "trade_list": [t.as_dict() for t in self.trades],
        }


def setup_from_config(config: Config, symbol: str) -> BacktestSetup:
    """Risk limits, paper costs and leverage as the daemon would use them for `symbol`.

    The paper account of the config's bot trading `symbol` if there is one, else the first
    paper account, else a paper account's defaults; the bot's leverage, else the risk cap.
    """
    risk = config.risk
    limits = risk_limits(risk)
    papers = {n: a for n, a in config.accounts.items() if isinstance(a, PaperAccount)}
    bot = next(
        (b for b in config.bots.values() if b.symbol == symbol and b.account in papers), None
    )
    if bot is not None:
        account, leverage = papers[bot.account], bot.leverage
    else:
        account = next(iter(papers.values()), PaperAccount(kind="paper"))
        leverage = risk.max_leverage
    paper = paper_settings(account, risk)
    return BacktestSetup(limits, paper, leverage)


def run_backtest(
    strategy_name: str,
    params: Mapping[str, object],
    data_file: Path,
    symbol: str,
    setup: BacktestSetup,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Progress | None = None,
    strategy_dir: Path | None = None,
    engine: str = "fast",
) -> BacktestResult:
    """Run one backtest to the end of its window (see the module docstring).

    `engine` is "fast" (`daemon.backtest_simulator`) or "replay" (the daemon's own runner,
    feed and store, candle by candle: the reference the fast engine is tested against).
    Raises StrategyConfigError (unknown strategy, bad params), DataFileError (the file) and
    BacktestInputError (a window outside the data, an unknown engine), all before the first
    candle.
    """
    markets = load_paper_markets()
    if symbol not in markets:
        raise BacktestInputError(
            f"no paper market {symbol!r} to trade on; known: {', '.join(sorted(markets))}"
        )
    check_data_symbol(data_file, symbol)
    if engine == "fast":
        return _run_fast(
            strategy_name, params, data_file, symbol, setup, start, end, progress, strategy_dir
        )
    if engine != "replay":
        raise BacktestInputError(f"unknown engine {engine!r}: expected fast or replay")
    return asyncio.run(
        _run(strategy_name, params, data_file, symbol, setup, start, end, progress, strategy_dir)
    )


def check_data_symbol(data_file: Path, symbol: str) -> None:
    """Refuse a candle file whose name (freqtrade's `BASE_QUOTE_SETTLE-1m-futures`) names
    another market: its candles would be traded under the wrong market's rules."""
    stem = data_file.name.split("-", 1)[0]
    parts = stem.split("_")
    if len(parts) not in (2, 3) or not all(p.isalnum() and p.isupper() for p in parts):
        return  # a name that names no market: nothing to compare
    named = f"{parts[0]}/{parts[1]}" + (f":{parts[2]}" if len(parts) == 3 else "")
    if named.split(":")[0] != symbol.split(":")[0] or (":" in named and named != symbol):
        raise BacktestInputError(
            f"--data {data_file.name} holds {named} candles (by its name), not --symbol "
            f"{symbol}: a backtest would trade them under the wrong market's rules"
        )


def warm_up_report(strategy: Any, history_minutes: int, window_minutes: int) -> dict[str, Any]:
    """What the strategy needs before it can evaluate, what the data held before the window,
    and about how many evaluations were lost for want of it."""
    needs = {tf: n * timeframe_minutes(tf) for tf, n in strategy.warmup.items() if n}
    needed = max(needs.values(), default=0)
    short = max(0, needed - history_minutes)
    base = timeframe_minutes(strategy.timeframes[0])
    lost = min(short, window_minutes) // base
    words = ", ".join(f"{n} x {tf}" for tf, n in strategy.warmup.items() if n)
    report: dict[str, Any] = {
        "needed_minutes": needed,
        "needed": words,
        "history_minutes": history_minutes,
        "lost_evaluations": lost,
    }
    if lost:
        report["note"] = (
            f"{strategy.name} needs {needed} minutes of history ({words}); the data holds "
            f"{history_minutes} before the start, so about {lost} of its "
            f"{strategy.timeframes[0]} evaluations were lost: start later (--from)"
        )
    return report


def _run_fast(
    strategy_name: str,
    params: Mapping[str, object],
    data_file: Path,
    symbol: str,
    setup: BacktestSetup,
    start: datetime | None,
    end: datetime | None,
    progress: Progress | None,
    strategy_dir: Path | None,
) -> BacktestResult:
    strategy = build_strategy(strategy_name, params, None, strategy_dir)
    for tf in strategy.timeframes:
        try:
            timeframe_minutes(tf)
        except ValueError as e:
            raise BacktestInputError(f"strategy {strategy_name}: {e}") from None
    data = load_candles(data_file)
    first, stop_at = _window(data, start, end)
    market = load_paper_markets()[symbol]  # checked by run_backtest
    first_open = minute_to_datetime(data.first_minute + first)
    count = -((first_open - stop_at) // _MINUTE)  # candles opening before stop_at
    leverage = setup.leverage
    if not 1 <= leverage <= market.max_leverage:  # the runner's set_leverage is refused
        margin_leverage = min(setup.paper.default_leverage, market.max_leverage)
    else:
        margin_leverage = leverage
    costs = Costs(
        setup.paper.initial_balance,
        setup.paper.taker_fee_rate,
        setup.paper.slippage_bps,
        leverage,
        margin_leverage,
    )
    signals = signals_by_candle(strategy, data, first, first + count, progress)
    outcome = simulate(
        data, first, first + count, signals, symbol, BOT, costs, setup.limits, market, progress
    )
    fills = sorted(outcome.fills, key=lambda f: (f.timestamp, f.client_order_id))
    return BacktestResult(
        strategy_name,
        dict(strategy.params.model_dump()),
        symbol,
        first_open,
        stop_at,
        setup.paper.initial_balance,
        candles=outcome.candles,
        trades=round_trips(fills, outcome.purposes),
        fills=fills,
        equity=outcome.equity,
        open_position=outcome.open_position,
        halted=outcome.halted,
        signals=outcome.signals,
        decisions=outcome.decisions,
        warm_up=warm_up_report(strategy, first, count),
    )


def _window(data: CandleFile, start: datetime | None, end: datetime | None) -> tuple[int, datetime]:
    """Index of the window's first 1m candle and the window's end, as the replay engine has them.

    The first candle is the first opening at or after `start` (default: 3 days into the data,
    the replay feed's default); the window holds the candles opening before `end`.
    """
    data_start = minute_to_datetime(data.first_minute)
    data_end = minute_to_datetime(data.first_minute + data.height)
    for name, when in (("start", start), ("end", end)):
        if when is not None and (when.tzinfo is None or when.utcoffset() is None):
            raise BacktestInputError(f"the {name} {when.isoformat()} must carry a timezone")
    if start is not None and not data_start <= start < data_end:
        raise BacktestInputError(
            f"start {start.isoformat()} is outside the data: the first candle opens at "
            f"{data_start.isoformat()}, the last closes at {data_end.isoformat()}"
        )
    if start is None:
        first = DEFAULT_WARMUP // _MINUTE
    else:
        first = -((data_start - start) // _MINUTE)  # rounded up to a whole minute
        if first >= data.height:
            raise BacktestInputError(
                f"start {start.isoformat()} is outside the data: the last candle opens at "
                f"{minute_to_datetime(data.first_minute + data.height - 1).isoformat()}"
            )
    first_open = minute_to_datetime(data.first_minute + first)
    stop_at = data_end if end is None else end
    if stop_at > data_end:
        raise BacktestInputError(
            f"end {stop_at.isoformat()} is after the data's last candle closes "
            f"({data_end.isoformat()})"
        )
    if stop_at <= first_open:
        raise BacktestInputError(
            f"end {stop_at.isoformat()} is not after the start {first_open.isoformat()}"
        )
    return first, stop_at


async def _run(
    strategy_name: str,
    params: Mapping[str, object],
    data_file: Path,
    symbol: str,
    setup: BacktestSetup,
    start: datetime | None,
    end: datetime | None,
    progress: Progress | None,
    strategy_dir: Path | None,
) -> BacktestResult:
    strategy = build_strategy(strategy_name, params, None, strategy_dir)
    timeframes = sorted({"1m", *strategy.timeframes}, key=timeframe_seconds)
    data = load_candles(data_file)
    first_index, stop_at = _window(data, start, end)
    store = SqliteStore(Path(":memory:"))
    try:
        failures: list[BaseException] = []
        try:
            feed = ReplayFeed(
                symbol,
                data_file,
                timeframes,
                0,
                store,
                f"{ACCOUNT}:{symbol}",
                start=minute_to_datetime(data.first_minute + first_index),
                on_consumer_error=lambda _, e: failures.append(e),
            )
        except ValueError as e:  # a timeframe the replay cannot build
            raise BacktestInputError(f"strategy {strategy_name}: {e}") from None
        first = feed.cursor  # open time of the first candle of the window
        total = (stop_at - first) // _MINUTE
        result = BacktestResult(
            strategy_name,
            dict(strategy.params.model_dump()),
            symbol,
            first,
            stop_at,
            setup.paper.initial_balance,
            warm_up=warm_up_report(
                strategy,
                (first - minute_to_datetime(data.first_minute)) // _MINUTE,
                -((first - stop_at) // _MINUTE),
            ),
        )
        await _drive(result, strategy, feed, store, setup, stop_at, total, progress, failures)
        _collect(result, store, feed.symbol)
        return result
    finally:
        store.close()


async def _drive(
    result: BacktestResult,
    strategy: Any,
    feed: ReplayFeed,
    store: SqliteStore,
    setup: BacktestSetup,
    stop_at: datetime,
    total: int,
    progress: Progress | None,
    failures: list[BaseException],
) -> None:
    """Wire the daemon's parts and run the feed until the window's last candle is handled."""
    clock = SystemClock()
    exchange = PaperExchange(ACCOUNT, setup.paper, store, load_paper_markets())
    await exchange.start()
    store.set_desired_state(BOT, DesiredState.RUNNING, cause="backtest")  # as a start does
    feed.subscribe(exchange.on_candles)  # the exchange learns each price before the bot
    spec = BotSpec(BOT, ACCOUNT, feed.symbol, strategy.name, feed.timeframes, setup.leverage)
    started = asyncio.Event()
    runner = BotRunner(spec, strategy, exchange, feed, store, setup.limits, clock, started.set)
    runner_task = asyncio.create_task(runner.run(), name="backtest-runner")
    finished = asyncio.Event()
    halt_seen = False
    equity: list[tuple[datetime, float]] = []
    result.equity = equity

    async def record(event: CandlesClosed) -> None:
        """After the bot: equity, progress, halts; holds the feed once the window is done."""
        nonlocal halt_seen
        if runner_task.done() and not halt_seen:
            halt_seen = True
            await _on_runner_end(result, runner_task, exchange, store, clock, event)
        balance = await exchange.fetch_balance()
        equity.append((event.closed_at, float(balance.equity)))
        result.candles += 1
        if progress is not None:
            progress(result.candles, total)
        if event.closed_at >= stop_at or failures:
            finished.set()
            await asyncio.Event().wait()  # lock-step: no further candle until cancelled

    feed_task: asyncio.Task[None] | None = None
    try:
        await _first_done(started.wait(), runner_task)
        if runner_task.done():
            runner_task.result()  # the runner failed to start: raise its error
        feed.subscribe(record)
        feed_task = asyncio.create_task(feed.run(), name="backtest-feed")
        await _first_done(finished.wait(), feed_task)
        if feed_task.done():
            feed_task.result()
        if failures:  # the feed shields consumers from each other; a backtest must not
            raise RuntimeError(f"backtest failed: {failures[0]!r}") from failures[0]
        result.signals = runner.snapshot.signals
    finally:
        for task in (feed_task, runner_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (feed_task, runner_task) if t is not None), return_exceptions=True
        )
    position = next(iter(await exchange.fetch_positions(feed.symbol)), None)
    if position is not None:
        result.open_position = {
            "side": position.side,
            "qty": str(abs(position.qty)),
            "entry_price": str(position.entry_price),
            "mark_price": str(position.mark_price),
            "unrealized_pnl": str(position.unrealized_pnl),
        }
    await exchange.close()


async def _first_done(waiting: Any, task: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _on_runner_end(
    result: BacktestResult,
    runner_task: asyncio.Task[None],
    exchange: PaperExchange,
    store: SqliteStore,
    clock: SystemClock,
    event: CandlesClosed,
) -> None:
    """The runner stopped: a halt flattens as the daemon's supervisor does; else re-raise."""
    error = runner_task.exception()
    if not isinstance(error, HaltRequested):
        raise RuntimeError(f"the bot stopped: {error!r}") from error
    at = event.closed_at.isoformat()
    result.halted = {"at": at, "scope": error.scope, "reason": error.reason}
    store.journal("bot_halted", BOT, reason=error.reason, scope=error.scope)
    await Flattener(store, clock).flatten(
        exchange, [event.symbol], lambda _: BOT, FLATTEN_TIMEOUT_S
    )


def _collect(result: BacktestResult, store: SqliteStore, symbol: str) -> None:
    """Fills (in execution order) and the round trips they make."""
    fills = [f for f in store.fills(BOT) if f.symbol == symbol]
    # Same-instant fills (a reversal: close, then enter) in the order they were sent;
    # client order ids carry a zero-padded per-bot sequence.
    fills.sort(key=lambda f: (f.timestamp, f.client_order_id))
    purposes: dict[str, str] = {}
    for e in store.events(BOT, limit=1 << 62):
        if e["kind"] == "order_intent_recorded":
            purposes[e["cid"]] = e["purpose"]
            if e["purpose"] == "entry":
                result.decisions.entries += 1
        else:
            result.decisions.note(e["kind"], e)
    result.fills = fills
    result.trades = round_trips(fills, purposes)


def round_trips(fills: list[Fill], purposes: Mapping[str, str]) -> list[Trade]:
    """Trades from fills in execution order; `purposes` maps client order ids to why."""
    trades: list[Trade] = []
    qty = ZERO
    opened: dict[str, Any] = {}
    exits: list[tuple[Decimal, Decimal]] = []
    pnl = fees = ZERO
    for fill in fills:
        signed = fill.qty * fill.side.sign
        if qty == 0 or (qty > 0) == (signed > 0):  # opens or adds
            if qty == 0:
                opened = {"side": "long" if fill.side is Side.BUY else "short", "time": fill}
                exits, pnl, fees = [], ZERO, ZERO
            qty += signed
            fees += fill.fee
            continue
        closing = min(abs(qty), fill.qty)
        share = closing / fill.qty
        exits.append((closing, fill.price))
        pnl += fill.realized_pnl
        fees += fill.fee * share
        qty += closing * fill.side.sign
        if qty == 0:
            entry: Fill = opened["time"]
            total = sum((q for q, _ in exits), ZERO)
            trades.append(
                Trade(
                    side=opened["side"],
                    qty=total,
                    entry_time=entry.timestamp,
                    entry_price=entry.price,
                    exit_time=fill.timestamp,
                    exit_price=sum((q * p for q, p in exits), ZERO) / total,
                    exit_reason=purposes.get(fill.client_order_id, "flatten"),
                    pnl=pnl,
                    fees=fees,
                )
            )
            rest = fill.qty - closing
            if rest > 0:  # a flip: the remainder opens the other way
                opened = {"side": "long" if fill.side is Side.BUY else "short", "time": fill}
                exits, pnl, fees = [], ZERO, fill.fee * (1 - share)
                qty = rest * fill.side.sign
    return trades


def max_drawdown(equity: list[float]) -> tuple[float, float]:
    """Largest peak-to-trough fall, in money and as a fraction of the peak."""
    peak = -math.inf
    worst = worst_pct = 0.0
    for value in equity:
        peak = max(peak, value)
        fall = peak - value
        if fall > worst:
            worst = fall
        if peak > 0 and fall / peak > worst_pct:
            worst_pct = fall / peak
    return worst, worst_pct


def _sharpe_basis(periods: int) -> str:
    basis = f"daily returns, annualised with sqrt(365), over {periods} days"
    if periods < SHARPE_MIN_DAYS:
        return f"{basis}: needs at least {SHARPE_MIN_DAYS}"
    return basis


def daily_sharpe(
    equity: list[tuple[datetime, float]] | EquityCurve, initial: float
) -> tuple[float | None, int]:
    """Annualised Sharpe of daily equity returns (see the module docstring), and how many
    daily returns it rests on."""
    if isinstance(equity, EquityCurve):
        days = equity.day_closes()
    else:
        closes: dict[date, float] = {}
        for when, value in equity:
            # a close at 00:00 ends the previous day's last candle
            closes[(when.astimezone(UTC) - _MINUTE).date()] = value
        days = list(closes.values())
    levels = [initial, *days]
    returns = [b / a - 1 for a, b in itertools.pairwise(levels) if a > 0]
    if len(returns) < 2:
        return None, len(returns)
    spread = statistics.stdev(returns)
    if spread == 0:
        return None, len(returns)
    return statistics.fmean(returns) / spread * math.sqrt(365), len(returns)


def _round(value: float) -> float:
    return round(value, 6)


def _opt_round(value: float | None) -> float | None:
    return None if value is None else _round(value)
