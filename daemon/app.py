"""The composition root and the process lifecycle: start-up, signals, shutdown.

The only place that knows which adapter serves which port: paper accounts get a
PaperExchange fed by a ReplayFeed; nothing else in the daemon asks "is it paper?".
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

import tradectl
from daemon import alerting
from daemon.adapters.apprise_alerts import AppriseAlerter
from daemon.adapters.candle_files import replay_file
from daemon.adapters.exchange_feed import ExchangeFeed
from daemon.adapters.paper_exchange import PaperExchange
from daemon.adapters.postgres_leases import PostgresLeases
from daemon.adapters.postgres_store import PostgresStore
from daemon.adapters.postgres_url import DEFAULT_TIMEOUT_S, store_target
from daemon.adapters.replay_feed import ReplayFeed
from daemon.adapters.safe_files import prepare_folder
from daemon.adapters.sqlite_store import SqliteStore
from daemon.adapters.state_lock import StateDirLock
from daemon.adapters.store_identity import STORE_FILE, open_state_store
from daemon.alerting import user_name
from daemon.clock import SystemClock
from daemon.control.access import authorize, is_admin
from daemon.control.server import (
    ArgumentError,
    ControlServer,
    Handler,
    Peer,
    arg,
    claim_socket_path,
    current_peer,
)
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import NotFound, Refused
from daemon.domain.fleet import LeaseBook
from daemon.domain.health import HealthLimits
from daemon.domain.timeframes import timeframe_seconds
from daemon.duties import Duties
from daemon.gateways import build_gateways, ccxt_gateway_class, is_ccxt_gateway, owner_of
from daemon.ports import (
    CandleConsumer,
    CandlesClosed,
    Clock,
    ExchangeGateway,
    MarketFeed,
    StateStore,
)
from daemon.preflight import check_config
from daemon.runtime.bot_runner import WINDOW_SLACK, BotRunner, BotSpec
from daemon.runtime.flatten import Flattener
from daemon.runtime.health import HealthMonitor
from daemon.runtime.leases import LeaseKeeper
from daemon.runtime.preflight import BotNeeds, PreflightReport, preflight
from daemon.runtime.reconcile import reconcile_account
from daemon.runtime.supervisor import Supervisor
from daemon.runtime.user_stream import UserStream
from daemon.settings import risk_limits
from daemon.systemd import SystemdNotifier
from strategies.base import Strategy
from strategies.registry import build_strategy
from tradectl.config import ExchangeAccount, LoadedConfig, PaperAccount

if TYPE_CHECKING:
    from daemon.adapters.ccxt_gateway import CcxtGateway
from tradectl.protocol import Command, Request

FEED_RESTART_DELAY_S = 2.0
FLATTEN_ON_HALT_TIMEOUT_S = 60.0
STATE_FILE = STORE_FILE
RUN_MARKER = "run"  # meta key: "running since ..." while up, "stopped ..." after a clean end
ALERT_DRAIN_S = 5.0  # at shutdown, queued alerts get this long to go out
ALERT_TEST_TIMEOUT_S = 60.0
PREFLIGHT_RETRY_S = 60.0  # a refused account is checked again this often


@dataclass(frozen=True, slots=True)
class FeedKey:
    account: str
    symbol: str

    def __str__(self) -> str:
        return f"{self.account}:{self.symbol}"


class Daemon:
    def __init__(
        self,
        loaded: LoadedConfig,
        clock: Clock | None = None,
        notifier: SystemdNotifier | None = None,
        *,
        new_store: bool = False,
    ) -> None:
        self.loaded = loaded
        self.new_store = new_store  # accept a missing or replaced store on purpose
        self.config = loaded.config
        self.clock = clock or SystemClock()
        self.notifier = notifier or SystemdNotifier()
        self.started_monotonic = self.clock.monotonic()
        self.started_at = self.clock.now()
        self.log = structlog.get_logger()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._supervisor: Supervisor | None = None
        self.reconciliation: list[dict[str, Any]] = []  # what start-up found and fixed
        self.preflights: dict[str, PreflightReport] = {}  # per exchange account, the last one
        self.user_streams: dict[str, UserStream] = {}
        self._brought_up: set[str] = set()  # exchange accounts reconciled, feeds running
        self.limits = risk_limits(self.config.risk)
        # A fleet (PostgreSQL store): the leases this node holds, and the keeper of them.
        self.lease_book: LeaseBook | None = None
        self.keeper: LeaseKeeper | None = None

    # -- wiring ------------------------------------------------------------------

    def _build(self, store: StateStore) -> None:
        self.strategies: dict[str, Strategy] = {
            name: build_strategy(bot.strategy, bot.params, bot.timeframes, self.loaded.strategy_dir)
            for name, bot in self.config.bots.items()
        }
        self.gateways = build_gateways(self.loaded, store)
        wanted: dict[FeedKey, set[str]] = {}
        for name, bot in self.config.bots.items():
            tfs = wanted.setdefault(FeedKey(bot.account, bot.symbol), {"1m"})
            tfs.update(bot.timeframes, self.strategies[name].timeframes)
        self.feeds: dict[FeedKey, MarketFeed] = {}
        self.data_gateways: dict[str, CcxtGateway] = {}  # public prices for paper accounts
        for key, timeframes in wanted.items():
            feed = self._build_feed(key, sorted(timeframes, key=timeframe_seconds), store)
            gateway = self.gateways[key.account]
            if isinstance(gateway, PaperExchange):
                # the exchange learns each price before any bot
                feed.subscribe(self._paper_prices(key.account, gateway))
            self.feeds[key] = feed

        def make_runner(spec: BotSpec, on_started: Any) -> BotRunner:
            return BotRunner(
                spec,
                self.strategies[spec.name],
                self.gateways[spec.account],
                self.feeds[FeedKey(spec.account, spec.symbol)],
                store,
                self.limits,
                self.clock,
                on_started,
            )

        specs = {
            name: (
                BotSpec(
                    name=name,
                    account=bot.account,
                    symbol=bot.symbol,
                    strategy=bot.strategy,
                    timeframes=tuple(bot.timeframes),
                    leverage=bot.leverage,
                    max_candle_age=None
                    if bot.max_candle_age_s is None
                    else timedelta(seconds=bot.max_candle_age_s),
                    sessions=bot.sessions,
                    session_end=bot.session_end,
                ),
                bot.autostart,
            )
            for name, bot in self.config.bots.items()
        }
        self.flattener = Flattener(store, self.clock)
        self._supervisor = Supervisor(
            specs,
            make_runner,
            store,
            self.clock,
            self._flatten_halted,
            placement=None if self.lease_book is None else self._holds,
            tell=self._tell,
        )
        self.duties = Duties(
            self.config,
            store,
            self.gateways,
            self._supervisor,
            self.alerter,
            self.clock,
            self._owner,
        )
        health = self.config.health
        self.health = HealthMonitor(
            self._supervisor,
            {str(key): feed for key, feed in self.feeds.items()},
            {name: str(FeedKey(bot.account, bot.symbol)) for name, bot in self.config.bots.items()},
            HealthLimits(
                loop_lag_max_s=health.loop_lag_max_s,
                stale_floor_s=health.stale_floor_s,
                stale_candles=health.stale_candles,
                start_timeout_s=health.start_timeout_s,
                unprotected_grace_s=health.unprotected_grace_s,
            ),
            self.clock,
            self.notifier,
            store_file=store.path,
        )

    def _holds(self, bot: str) -> bool:
        return self.lease_book is not None and self.lease_book.epoch(bot) is not None

    def _holds_account(self, account: str) -> bool:
        """Single node: every account. A fleet: an account one of whose bots is held here."""
        if self.lease_book is None:
            return True
        held = self.lease_book.held()
        return any(bot.account == account for name, bot in self.config.bots.items() if name in held)

    def _paper_prices(self, account: str, gateway: PaperExchange) -> CandleConsumer:
        """In a fleet a paper account lives in the store and moves with its bot: only the
        node holding the bot moves its simulated book (and saves it)."""

        async def on_candles(event: CandlesClosed) -> None:
            if self._holds_account(account):
                await gateway.on_candles(event)

        return on_candles

    def _open_store(self) -> StateStore:
        """The SQLite file of the state folder, or the fleet's PostgreSQL database."""
        url = self.loaded.store_url
        if url is None:
            return open_state_store(self.loaded.state_dir, new_store=self.new_store)
        ttl_s = self.config.fleet.lease_ttl_s
        target = replace(store_target(url), idle_in_transaction_s=min(DEFAULT_TIMEOUT_S, ttl_s / 3))
        self.lease_book = LeaseBook(self.loaded.node)
        store = PostgresStore(target, self.lease_book)
        self.fleet_table = PostgresLeases(target, self.loaded.node, ttl_s)
        self.log.info("fleet_store_opened", store=str(target), node=self.loaded.node)
        return store

    async def _adopt(self, bot: str) -> None:
        """A bot taken over from another node: its paper account as that node left it, and
        its symbol reconciled with the exchange as a single node does at start (a stop that
        fired meanwhile clears the plan and cancels the take-profit, journalled alike)."""
        spec = self.config.bots[bot]
        gateway = self.gateways[spec.account]
        if isinstance(gateway, PaperExchange):
            await gateway.start()
        if not self._account_up(spec.account):
            return
        try:
            self.reconciliation += await reconcile_account(
                gateway,
                self.store,
                functools.partial(self._owner, spec.account),
                {spec.symbol: bot},
                in_flight_of=frozenset([bot]),
            )
        except Exception as e:  # the runner's own start looks at its orders again
            self.log.error("reconcile_failed", bot=bot, error=f"{type(e).__name__}: {e}")

    def _build_feed(self, key: FeedKey, timeframes: list[str], store: StateStore) -> MarketFeed:
        """Replay for paper accounts on recorded data, else the exchange: websocket or REST."""
        account = self.config.accounts[key.account]
        if isinstance(account, PaperAccount) and account.market_data == "replay":
            replay = account.replay
            data_file = replay_file(self.loaded.resolve(replay.data_dir), key.symbol)
            return ReplayFeed(  # the file, its start and timeframes passed check_config
                symbol=key.symbol,
                data_file=data_file,
                timeframes=timeframes,
                speed=replay.speed,
                cursor_store=store,
                feed_key=str(key),
                start=replay.start,
            )
        if isinstance(account, PaperAccount):  # paper fills on live public prices
            source = self.data_gateways.get(key.account)
            if source is None:
                source = ccxt_gateway_class()(
                    key.account, account.market_data, None, api_base_url=account.api_base_url
                )
                self.data_gateways[key.account] = source
        else:
            gateway = self.gateways[key.account]
            assert is_ccxt_gateway(gateway)
            source = gateway
        watch = None
        if account.market_data_transport == "websocket" and source.can_watch_ohlcv:
            watch = source.watch_ohlcv  # REST polling stays the fallback
        return ExchangeFeed(
            key.symbol,
            source.fetch_ohlcv,
            timeframes,
            store,
            str(key),
            poll_interval_s=account.poll_interval_s,
            watch_ohlcv=watch,
            exchange_time_ms=source.exchange_time_ms,
        )

    def _warmup_needs(self, key: FeedKey) -> dict[str, int]:
        needs: dict[str, int] = {}
        for name, bot in self.config.bots.items():
            if FeedKey(bot.account, bot.symbol) == key:
                for tf, n in self.strategies[name].warmup.items():
                    needs[tf] = max(needs.get(tf, 0), n + WINDOW_SLACK)
        return needs

    @property
    def supervisor(self) -> Supervisor:
        assert self._supervisor is not None, "the daemon is not built yet"
        return self._supervisor

    # -- lifecycle -----------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def refuse_reload(self) -> None:
        """SIGHUP must not kill a trading daemon; config changes take a restart."""
        self.log.warning(
            "reload_not_supported", hint="systemctl restart tradectl applies a new config"
        )

    async def run(self) -> None:
        self.checked = check_config(self.loaded)  # all of it, before any file or exchange
        state_dir = self.loaded.state_dir
        socket_path = self.loaded.socket_path
        prepare_folder(socket_path.parent, "socket folder")
        claim_socket_path(socket_path)  # before store and exchanges: a refusal touches nothing
        prepare_folder(state_dir, "state folder")
        lock = StateDirLock(state_dir)
        lock.acquire()
        try:
            store = self._open_store()
        except BaseException:
            lock.release()
            raise
        # Paper-only: the exchange's own state is in this file, so there is nothing a
        # synced log protects that a power cut would not roll back with it.
        if isinstance(store, SqliteStore):  # PostgreSQL: the server's commit is durable
            store.sync_critical_writes = any(
                isinstance(a, ExchangeAccount) for a in self.config.accounts.values()
            )
        self.store = store
        server: ControlServer | None = None
        started_gateways: list[ExchangeGateway] = []
        failed = False
        try:
            self.alerter: AppriseAlerter = alerting.build_alerter(self.loaded, store)
            self._tasks.append(asyncio.create_task(self.alerter.run(), name="alerts"))
            self._check_last_end(store)
            self._build(store)
            for alert in self._pending_alerts:
                self.duties.alert(alert)
            self._resolve_access()
            for gateway in [*self.gateways.values(), *self.data_gateways.values()]:
                started_gateways.append(gateway)
                if not self._is_exchange_account(gateway.account, gateway):
                    await gateway.start()
            self.notifier.status("starting: checking the exchange accounts")
            for account, gateway in self.gateways.items():
                if self._is_exchange_account(account, gateway):
                    await self._preflight(account)
            for key, feed in self.feeds.items():
                if self._account_up(key.account):
                    await feed.prepare(self._warmup_needs(key))
            self.notifier.status("starting: reconciling accounts with their exchanges")
            for account in self.gateways:
                if self._account_up(account):
                    await self._reconcile(account)
            server = ControlServer(
                socket_path, self._handlers(), self._authorize, privileged=self._is_admin
            )
            await server.start()
            await self.supervisor.bootstrap()
            self.notifier.status("starting: reconciling bots with their exchanges")
            await self.supervisor.wait_started(self._still_starting)
            if self.lease_book is not None:
                self.keeper = LeaseKeeper(
                    self.fleet_table,
                    self.lease_book,
                    self.supervisor,
                    {name: bot.nodes for name, bot in self.config.bots.items()},
                    self.clock,
                    on_adopt=self._adopt,
                )
                # The first round before the feeds run: a bot this node takes at start sees
                # every candle from the first, as on a single node (a replay keeps parity).
                try:
                    await self.keeper.tick()
                except Exception as e:  # the keeper's loop below tries again
                    self.log.error("lease_keeper_failed", error=f"{type(e).__name__}: {e}")
                await self.supervisor.wait_started(self._still_starting)
                self._tasks.append(asyncio.create_task(self.keeper.run(), name="lease-keeper"))
            for key, feed in self.feeds.items():
                if self._account_up(key.account):
                    self._start_feed(key, feed)
            for account in self.preflights:
                if self._account_up(account):
                    self._start_user_stream(account)
                    self._brought_up.add(account)
            if self.preflights:
                self._tasks.append(
                    asyncio.create_task(self._recheck_accounts(), name="preflight-recheck")
                )
            self._tasks.append(asyncio.create_task(self.health.probe_loop(), name="loop-probe"))
            self.notifier.ready(self.health.summary(self.health.verdict()))
            self._tasks.append(asyncio.create_task(self.health.report(), name="health-report"))
            self.duties.start()
            self._tasks.append(asyncio.create_task(self.duties.watch(), name="unprotected-watch"))
            self.log.info(
                "daemon_ready",
                pid=os.getpid(),
                version=tradectl.__version__,
                bots=len(self.config.bots),
                state_dir=str(state_dir),
                socket=str(self.loaded.socket_path),
            )
            if sys.stdout.isatty():  # one line for the person who started it by hand
                print(
                    f"tradectl daemon ready: pid {os.getpid()}, {len(self.config.bots)} "
                    f"bot{'' if len(self.config.bots) == 1 else 's'}, socket "
                    f"{self.loaded.socket_path} (tradectl status; Ctrl-C stops it)",
                    flush=True,
                )
            await self._stop.wait()
            self.notifier.stopping("stopping: bots keep their desired state")
            self.log.info("daemon_stopping")
        except BaseException:
            failed = True
            raise
        finally:
            problem = await self._shutdown(server, started_gateways, store, lock)
            if problem is not None and not failed:
                raise problem  # the first fault of the shutdown, when nothing else failed

    async def _shutdown(
        self,
        server: ControlServer | None,
        gateways: list[ExchangeGateway],
        store: StateStore,
        lock: StateDirLock,
    ) -> BaseException | None:
        """Every step runs even when one fails (a full disk, a broken store): the socket
        goes, the lock is released, and the first fault is returned to be reported."""
        problems: list[BaseException] = []

        async def step(what: str, action: Any) -> None:
            try:
                result = action()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as e:
                problems.append(e)
                self.log.error("shutdown_step_failed", step=what, error=f"{type(e).__name__}: {e}")

        duties: Duties | None = getattr(self, "duties", None)
        if duties is not None:
            duties.shutdown()
        if self._supervisor is not None:
            await step("stop bots", self._supervisor.shutdown)
        alerter: AppriseAlerter | None = getattr(self, "alerter", None)
        if alerter is not None:  # what is queued (a halt's flatten) gets a moment to go out
            await alerter.drain(ALERT_DRAIN_S)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        if self.keeper is not None:
            await step("give the leases up", self.keeper.shutdown)
        if server is not None:
            await step("close the control socket", server.close)
        for gateway in gateways:
            if isinstance(gateway, PaperExchange) and self.keeper is not None:
                continue  # its book is in the store as the last holder saved it
            await step(f"close {gateway.account}", gateway.close)
        await step(
            "mark a clean end",
            lambda: store.set_meta(RUN_MARKER, f"stopped at {self.clock.now().isoformat()}"),
        )
        await step("close the store", store.close)
        lock.release()
        self.log.info("daemon_stopped")
        return problems[0] if problems else None

    def _check_last_end(self, store: StateStore) -> None:
        """A run that never marked its end crashed, was killed or was stopped by the watchdog:
        say so (journal, alert once the alerter runs), then mark this run as running."""
        last = store.meta(RUN_MARKER)
        self.unclean_start = last is not None and last.startswith("running")
        if last is not None and self.unclean_start:
            previous = last.removeprefix("running since ")
            store.journal("unclean_start", None, previous_run=previous)
            self.log.warning("unclean_start", previous_run=previous)
            self._pending_alerts = [alerting.unclean_start(previous)]
        else:
            self._pending_alerts = []
        store.set_meta(RUN_MARKER, f"running since {self.started_at.isoformat()}")

    def _tell(self, event: str, bot: str, details: dict[str, Any]) -> None:
        """What the supervisor reports, as alerts."""
        if event == "bot_halted":
            self.duties.alert(alerting.halted(bot, details["reason"], details["cause"]))
        elif event == "bot_errored":
            self.duties.alert(alerting.errored(bot, details["error"], details["retry_in_s"]))

    # -- exchange accounts: preflight, reconcile, and again once fixed -----------------

    def _is_exchange_account(self, account: str, gateway: ExchangeGateway) -> bool:
        return (
            is_ccxt_gateway(gateway)
            and account in self.gateways
            and (self.gateways[account] is gateway)
        )

    def _account_up(self, account: str) -> bool:
        """Paper accounts always; exchange accounts once their preflight passed account-wide."""
        report = self.preflights.get(account)
        return report is None or report.account_ok

    def _start_feed(self, key: FeedKey, feed: MarketFeed) -> None:
        self._tasks.append(asyncio.create_task(self._run_feed(key, feed), name=f"feed:{key}"))

    def _start_user_stream(self, account: str) -> None:
        """Fills and order updates as they happen, where the account streams them."""
        gateway = self.gateways[account]
        settings = self.config.accounts[account]
        if not is_ccxt_gateway(gateway) or not isinstance(settings, ExchangeAccount):
            return
        if settings.market_data_transport != "websocket" or not gateway.can_watch_user_data:
            return
        bot_symbols = {
            bot.symbol: name for name, bot in self.config.bots.items() if bot.account == account
        }
        stream = UserStream(gateway, self.store, bot_symbols)
        self.user_streams[account] = stream
        self._tasks.append(asyncio.create_task(stream.run(), name=f"user-stream:{account}"))

    def _stream_status(self, account: str) -> dict[str, Any] | None:
        stream = self.user_streams.get(account)
        if stream is None:
            return None
        return {
            "connected": stream.connected,
            "fills_recorded": stream.fills_recorded,
            "error": stream.last_error,
        }

    async def _reconcile(self, account: str) -> None:
        bots = [name for name, bot in self.config.bots.items() if bot.account == account]
        if self.lease_book is not None:
            # A fleet: a bot that should run is reconciled by the node that takes it, when
            # it takes it. One that should not (stopped, halted) and that no node holds is
            # reconciled here, as on a single node: its intents in flight and a position
            # its stop closed while down must not wait for its next run.
            assert isinstance(self.store, PostgresStore)
            held = self.store.live_holders(bots)
            bots = [name for name in bots if name not in held and not self._wanted(name)]
            if not bots:
                return
        self.reconciliation += await reconcile_account(
            self.gateways[account],
            self.store,
            functools.partial(self._owner, account),
            {self.config.bots[name].symbol: name for name in bots},
            in_flight_of=None if self.lease_book is None else frozenset(bots),
        )

    def _wanted(self, bot: str) -> bool:
        record = self.store.bot(bot)
        return record is not None and record.desired_state is DesiredState.RUNNING

    async def _preflight(self, account: str) -> PreflightReport:
        """Check the account; hold the bots it refuses, journal what changed since last time."""
        gateway = self.gateways[account]
        assert is_ccxt_gateway(gateway)
        bots = [
            BotNeeds(name, bot.symbol, bot.leverage)
            for name, bot in self.config.bots.items()
            if bot.account == account
        ]
        previous = self.preflights.get(account)
        started = previous is not None and previous.connected
        report = await preflight(gateway, bots, self.limits.max_position_usdt, started=started)
        self.preflights[account] = report
        known = set() if previous is None else {(f.check, f.bot) for f in previous.failures}
        for failure in report.failures:
            if (failure.check, failure.bot) not in known:
                self.store.journal(
                    "preflight_failed",
                    failure.bot,
                    account=account,
                    check=failure.check,
                    reason=failure.reason,
                )
            self.log.error(
                "preflight_failed",
                account=account,
                bot=failure.bot,
                check=failure.check,
                reason=failure.reason,
            )
        if previous is None:  # loud at every start, quiet on rechecks
            for warning in report.warnings:
                self.store.journal(
                    "preflight_warning",
                    warning.bot,
                    account=account,
                    check=warning.check,
                    reason=warning.reason,
                )
                self.log.warning(
                    "preflight_warning", account=account, check=warning.check, reason=warning.reason
                )
        if not report.failures:
            self.store.journal(
                "preflight_passed",
                None,
                account=account,
                time_difference_ms=report.time_difference_ms,
                leverage_brackets=report.brackets,
            )
            self.log.info(
                "preflight_passed", account=account, time_difference_ms=report.time_difference_ms
            )
        for bot in bots:
            reason = report.refusal(bot.name)
            if reason is not None:
                self.supervisor.hold(bot.name, reason)
        return report

    async def _recheck_accounts(self) -> None:
        """Check refused accounts again; bring an account up once it passes, then its bots."""
        while True:
            await asyncio.sleep(PREFLIGHT_RETRY_S)
            for account, previous in list(self.preflights.items()):
                if not previous.failures and account in self._brought_up:
                    continue
                try:
                    report = await self._preflight(account) if previous.failures else previous
                    if report.account_ok and account not in self._brought_up:
                        await self._bring_up(account)
                except Exception as e:  # a bad account must not take the daemon down
                    self.log.error("preflight_recheck_failed", account=account, error=str(e))
                    continue
                if report.account_ok:
                    for name, bot in self.config.bots.items():
                        if bot.account == account and report.refusal(name) is None:
                            self.supervisor.release(name)

    async def _bring_up(self, account: str) -> None:
        """An account that passes now: its feeds' history, a reconcile, then feeds and stream."""
        for key, feed in self.feeds.items():
            if key.account == account:
                await feed.prepare(self._warmup_needs(key))
        await self._reconcile(account)
        for key, feed in self.feeds.items():
            if key.account == account:
                self._start_feed(key, feed)
        self._start_user_stream(account)
        self._brought_up.add(account)

    def _still_starting(self, bots: list[str]) -> None:
        """Start-up is making progress: ask systemd for more time, say who we wait for."""
        self.notifier.extend_timeout(30)
        self.notifier.status(f"starting: reconciling {', '.join(bots)}")
        self.log.info("startup_waiting", bots=bots)

    async def _run_feed(self, key: FeedKey, feed: MarketFeed) -> None:
        while True:
            try:
                await feed.run()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.log.error(
                    "feed_failed", feed=str(key), error=f"{type(e).__name__}: {e}", exc_info=e
                )
                await asyncio.sleep(FEED_RESTART_DELAY_S)

    # -- the control commands ------------------------------------------------------

    def _resolve_access(self) -> None:
        """Names in the config became ids in check_config; an unknown one was refused there."""
        self.admin_gid = self.checked.admin_gid
        self.config_owners = self.checked.owners

    def bot_owner(self, name: str) -> int | None:
        """The config's owner, else whoever first started it, else the daemon's own user;
        None while nobody owns it (its first start makes the caller the owner)."""
        if name in self.config_owners:
            return self.config_owners[name]
        record = self.store.bot(name)
        if record is not None and record.owner_uid is not None:
            return record.owner_uid
        return os.getuid() if record is not None else None

    def _is_admin(self, peer: Peer) -> bool:
        return is_admin(peer.uid, peer.groups(), daemon_uid=os.getuid(), admin_gid=self.admin_gid)

    def _authorize(self, peer: Peer, request: Request) -> None:
        """Root, the daemon's user and the admin group: anything. Others: read, and act on
        the bots they own (see daemon/control/access.py)."""
        bot = request.args.get("bot")
        known = bot if isinstance(bot, str) and bot in self.config.bots else None
        authorize(
            peer.uid,
            peer.groups(),
            request.cmd,
            daemon_uid=os.getuid(),
            admin_gid=self.admin_gid,
            every=bool(request.args.get("all")),
            bot=known,
            owner=None if known is None else self.bot_owner(known),
        )

    def _handlers(self) -> dict[str, Handler]:
        return {
            Command.PING: self._ping,
            Command.STATUS: self._status,
            Command.START: self._start,
            Command.STOP: self._stop_bots,
            Command.POSITIONS: self._positions,
            Command.ORDERS: self._orders,
            Command.HEALTH: self._health,
            Command.FLATTEN: self._flatten,
            Command.RESUME: self._resume,
            Command.SCHEDULE: self._schedule,
            Command.ALERTS_TEST: self._alerts_test,
        }

    async def _ping(self, request: Request) -> dict[str, Any]:
        return {"pong": True, "version": tradectl.__version__}

    async def _status(self, request: Request) -> dict[str, Any]:
        bot = arg(request, "bot", str, None)
        if self.keeper is not None:
            await self.keeper.refresh()
        bots = [self._with_lease(row) for row in self.supervisor.status(bot)]
        return {
            "daemon": {
                "pid": os.getpid(),
                "version": tradectl.__version__,
                "started_at": self.started_at.isoformat(),
                "uptime_s": round(self.clock.monotonic() - self.started_monotonic, 3),
                "config": str(self.loaded.path),
                "state_dir": str(self.loaded.state_dir),
                "socket": str(self.loaded.socket_path),
                "reconciliation": self.reconciliation + self.duties.drift_rows(),
                "node": self.loaded.node,
                "store": "sqlite" if self.loaded.store_url is None else "postgresql",
                # None, or why the bots' stored fields are the last ones read (from memory)
                "store_unreachable": self.supervisor.store_problem,
                "accounts": {
                    name: {**r.as_dict(), "user_stream": self._stream_status(name)}
                    for name, r in self.preflights.items()
                },
            },
            "bots": bots,
            **({} if self.keeper is None else {"nodes": self.keeper.nodes()}),
        }

    def _with_lease(self, row: dict[str, Any]) -> dict[str, Any]:
        """Which node holds the bot, until when (single node: this one, no expiry)."""
        if self.lease_book is None:
            return {**row, "node": self.loaded.node, "lease_expires_at": None}
        if self.keeper is None:
            return {**row, "node": None, "lease_expires_at": None}
        return {**row, **self.keeper.lease_of(row["name"])}

    async def _health(self, request: Request) -> dict[str, Any]:
        verdict = self.health.verdict()
        reasons = list(verdict.reasons)
        healthy = verdict.healthy
        if arg(request, "fleet", bool, False) and self.keeper is not None:
            await self.keeper.refresh()
            orphans = self.keeper.orphans()
            reasons += [f"{bot}: should run but no live node holds it" for bot in orphans]
            healthy = healthy and not orphans
        return {
            "healthy": healthy,
            "reasons": reasons,
            "summary": self.health.summary(verdict),
            "loop_lag_s": round(self.health.loop_lag_s, 3),
            "watchdog_interval_s": self.notifier.watchdog_interval_s,
            # shown, not a verdict: drift is for a person to look at, not a watchdog restart
            "drift": [f"{d['account']}: {d['what']}" for d in self.duties.drift_rows()],
        }

    async def _schedule(self, request: Request) -> dict[str, Any]:
        return self.duties.schedule()

    async def _alerts_test(self, request: Request) -> dict[str, Any]:
        """Send a test alert to every target now, bypassing the queue; report each delivery."""
        deliveries = await asyncio.wait_for(
            self.alerter.deliver(alerting.test_alert()), ALERT_TEST_TIMEOUT_S
        )
        self.store.journal(
            "alert_test",
            None,
            delivered=[d.target for d in deliveries if d.ok],
            failed=[d.target for d in deliveries if not d.ok],
        )
        return {"deliveries": [alerting.delivery_row(d) for d in deliveries]}

    async def flatten_accounts(
        self,
        bots: list[str],
        timeout_s: float,
        whole_account: bool,
        asked_by: str,
        *,
        fenced: bool = False,
    ) -> list[dict[str, Any]]:
        """Flatten the bots' symbols, account by account, all symbols concurrently;
        `fenced` (a loss limit's) leaves a bot another node holds now to that node."""
        accounts = sorted({self.config.bots[n].account for n in bots})
        if whole_account:
            accounts = sorted(self.gateways)

        async def one(account: str) -> list[dict[str, Any]]:
            symbols = [
                self.config.bots[n].symbol for n in bots if self.config.bots[n].account == account
            ]
            reports = await self.flattener.flatten(
                self.gateways[account],
                symbols,
                lambda symbol: self._owner(account, symbol),
                timeout_s,
                whole_account=whole_account,
                fenced=fenced,
            )
            return [r.as_dict() for r in reports]

        results = await asyncio.gather(*(one(a) for a in accounts))
        rows = [row for per_account in results for row in per_account]
        self.store.journal(
            "flatten_finished",
            None,
            bots=bots,
            flat=all(r["flat"] for r in rows),
            symbols=[f"{r['account']}:{r['symbol']}" for r in rows],
            asked_by=asked_by,
        )
        self.duties.alert(alerting.flattened(bots, rows, asked_by=asked_by, direct=False))
        return rows

    async def _flatten_halted(self, bots: list[str], reason: str) -> list[dict[str, Any]]:
        return await self.flatten_accounts(
            bots,
            FLATTEN_ON_HALT_TIMEOUT_S,
            whole_account=False,
            asked_by=f"the daemon ({reason})",
            fenced=True,
        )

    async def _flatten(self, request: Request) -> dict[str, Any]:
        bots = self._targets(request)
        every = arg(request, "all", bool, False)
        timeout_s = float(arg(request, "timeout", (int, float), 30.0))
        if not 0 < timeout_s <= 3600:
            raise ArgumentError("flatten: timeout must be within 0..3600 s")
        await self.supervisor.halt(bots, "flatten requested by the operator", cause="flatten")
        await self._wait_let_go(bots, timeout_s)
        rows = await self.flatten_accounts(
            bots, timeout_s, whole_account=every, asked_by=user_name(current_peer.get().uid)
        )
        return {"halted": bots, "symbols": rows, "flat": all(r["flat"] for r in rows)}

    async def _wait_let_go(self, bots: list[str], timeout_s: float) -> None:
        """A fleet: the halt reaches the bots' holders by NOTIFY; wait until none of them
        holds a lease (the store refuses a flatten's intents before), then take their paper
        books as the store has them."""
        if self.keeper is None:
            return
        deadline = self.clock.monotonic() + timeout_s
        while True:
            view = await self.fleet_table.view()
            held = {b: h for b in bots if (h := view.holder(b)) not in (None, self.loaded.node)}
            if not held:
                break
            if self.clock.monotonic() >= deadline:
                raise Refused(
                    "flatten: still held by other nodes after the halt: "
                    + ", ".join(f"{b} by {h}" for b, h in sorted(held.items()))
                )
            await asyncio.sleep(0.1)
        for account in sorted({self.config.bots[b].account for b in bots}):
            gateway = self.gateways[account]
            if isinstance(gateway, PaperExchange):
                await gateway.start()

    async def _resume(self, request: Request) -> dict[str, Any]:
        return await self.supervisor.resume_bot(arg(request, "bot", str), current_peer.get().uid)

    def _targets(self, request: Request) -> list[str]:
        bot = arg(request, "bot", str, None)
        every = arg(request, "all", bool, False)
        if every == (bot is not None):
            raise ArgumentError(f"{request.cmd}: give either a bot name or all=true")
        return self.supervisor.names() if every else [bot]

    async def _start(self, request: Request) -> dict[str, Any]:
        uid = current_peer.get().uid
        return {"bots": [await self.supervisor.start_bot(n, uid) for n in self._targets(request)]}

    async def _stop_bots(self, request: Request) -> dict[str, Any]:
        uid = current_peer.get().uid
        return {"bots": [await self.supervisor.stop_bot(n, uid) for n in self._targets(request)]}

    def _owner(self, account: str, symbol: str) -> str | None:
        return owner_of(self.config, account, symbol)

    def _bot_filter(self, request: Request) -> str | None:
        bot: str | None = arg(request, "bot", str, None)
        if bot is not None and bot not in self.config.bots:
            raise NotFound(f"no bot named {bot!r}")
        return bot

    async def _positions(self, request: Request) -> list[dict[str, Any]]:
        bot = self._bot_filter(request)
        rows = []
        for account, gateway in self.gateways.items():
            if not self._account_up(account):
                continue
            for p in await gateway.fetch_positions():
                owner = self._owner(account, p.symbol)
                if bot is not None and owner != bot:
                    continue
                rows.append(
                    {
                        "bot": owner,
                        "account": account,
                        "symbol": p.symbol,
                        "side": p.side,
                        "qty": str(abs(p.qty)),
                        "entry_price": str(p.entry_price),
                        "mark_price": str(p.mark_price),
                        "unrealized_pnl": str(p.unrealized_pnl),
                        "leverage": p.leverage,
                    }
                )
        return rows

    async def _orders(self, request: Request) -> list[dict[str, Any]]:
        bot = self._bot_filter(request)
        history = arg(request, "all", bool, False)
        seen: set[str] = set()
        rows = []
        for account, gateway in self.gateways.items():
            if not self._account_up(account):
                continue
            for o in await gateway.fetch_open_orders():
                known = self.store.order(o.client_order_id)
                owner = known.bot if known is not None else None
                if bot is not None and owner != bot:
                    continue
                seen.add(o.client_order_id)
                purpose = known.purpose if known is not None else None
                rows.append(_order_row(o, owner, account, known is not None, purpose))
        local = self.store.recent_orders(bot, 50) if history else self.store.live_orders(bot)
        for o in local:
            if o.client_order_id not in seen:
                rows.append(_order_row(o, o.bot, o.account, True, o.purpose))
        return rows


def _order_row(
    o: Any, bot: str | None, account: str, known: bool, purpose: str | None
) -> dict[str, Any]:
    """One order for `tradectl orders`: resting stops and take-profits show their trigger
    price and purpose (stop, take_profit), entries and exits theirs."""
    return {
        "bot": bot,
        "account": account,
        "symbol": o.symbol,
        "client_order_id": o.client_order_id,
        "side": o.side.value,
        "type": o.type.value,
        "qty": str(o.qty),
        "price": None if o.price is None else str(o.price),
        "filled_qty": str(o.filled_qty),
        "avg_fill_price": None if o.avg_fill_price is None else str(o.avg_fill_price),
        "reduce_only": o.reduce_only,
        "trigger_price": None if o.trigger_price is None else str(o.trigger_price),
        "purpose": purpose,
        "status": o.status.value,
        "known_to_store": known,
        "created_at": None if o.created_at is None else o.created_at.isoformat(),
    }


def run_daemon(loaded: LoadedConfig, *, new_store: bool = False) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    daemon = Daemon(loaded, new_store=new_store)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        loop.add_signal_handler(signal.SIGHUP, daemon.refuse_reload)
        await daemon.run()

    asyncio.run(main())
    return 0
