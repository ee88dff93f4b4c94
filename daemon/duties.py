"""The daemon's wall-clock duties and the alerts that tell a person about them.

Built once at start from the config, run in the daemon's loop on APScheduler
(`daemon.adapters.duty_scheduler`), their last runs kept in the store:
- `rollover`: at `risk.daily_reset_utc`, the risk day that just ended is reported per bot and
  per account (net PnL, fills, fees, funding, max drawdown of the day's realised PnL), written
  to the journal and sent as an alert; missed while the daemon was down, it runs once at start;
- `drift:<account>`: every `daemon.reconcile_every`, each exchange account's positions, open
  orders and recent trades (on the bots' symbols) are compared with the store: a position
  the store does not hold (or one on a symbol no bot trades), an open order either side does
  not know, a trade since the last check that tradectl did not place (by hand, a
  liquidation). A difference must be seen twice, `DRIFT_CONFIRM_S` apart, to count: a bot
  between its order and its next store write is not drift. A running bot adopts the
  exchange's position at its next candle, so the trade itself is what stays visible. A
  changed set of differences is journalled and alerted; the current ones are listed in
  `status` under `daemon.reconciliation` and by `tradectl health`.
- `funding:<account>`: a minute after each funding time (00:00, 08:00, 16:00 UTC), every
  bot's symbol on each exchange account has its funding payments recorded (running bots also
  ask every 10 minutes); missed while the daemon was down, it runs once at start.
A watcher alerts on positions left without a resting stop past the health grace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from daemon import alerting
from daemon.adapters.apprise_alerts import AppriseAlerter
from daemon.adapters.duty_scheduler import DutyScheduler
from daemon.domain.alerts import Alert
from daemon.domain.models import CLIENT_ORDER_PREFIX, ZERO, OrderStatus
from daemon.domain.risk import day_start
from daemon.ports import Clock, ExchangeGateway, StateStore
from daemon.runtime.fills import record_new_funding
from daemon.runtime.supervisor import Supervisor
from tradectl.config import Config, ExchangeAccount

ROLLOVER = "rollover"
DRIFT = "drift"
FUNDING = "funding"
FUNDING_DELAY_MIN = 1  # minutes after the funding time: the exchange settles, then we ask
DRIFT_CONFIRM_S = 2.0
TRADE_LOOKBACK_SLACK_S = 60  # trades since the last check, and a minute more
WATCH_INTERVAL_S = 2.0


class Duties:
    def __init__(
        self,
        config: Config,
        store: StateStore,
        gateways: Mapping[str, ExchangeGateway],
        supervisor: Supervisor,
        alerter: AppriseAlerter,
        clock: Clock,
        owner_of: Callable[[str, str], str | None],
    ) -> None:
        self._config = config
        self._store = store
        self._gateways = gateways
        self._supervisor = supervisor
        self.alerter = alerter
        self._clock = clock
        self._owner_of = owner_of
        self.drift: dict[str, list[dict[str, Any]]] = {}  # account -> current differences
        self._unprotected_since: dict[str, float] = {}
        self._told_unprotected: set[str] = set()
        self._log = structlog.get_logger()
        self.scheduler = DutyScheduler(store, clock.now)
        reset = config.risk.daily_reset_utc
        self.scheduler.add(
            ROLLOVER,
            f"daily risk-day rollover and report at {reset.strftime('%H:%M')} UTC",
            CronTrigger(hour=reset.hour, minute=reset.minute, timezone=UTC),
            self.rollover,
            catch_up=True,
        )
        every = config.daemon.reconcile_every_s
        for account, settings in sorted(config.accounts.items()):
            if isinstance(settings, ExchangeAccount):
                self.scheduler.add(
                    f"{DRIFT}:{account}",
                    f"drift check of account {account} every {config.daemon.reconcile_every}",
                    IntervalTrigger(seconds=every, timezone=UTC),
                    self._drift_duty(account),
                    catch_up=False,  # start-up has just reconciled every account
                )
                self.scheduler.add(
                    f"{FUNDING}:{account}",
                    f"funding collection of account {account} after each funding time "
                    "(00:00, 08:00, 16:00 UTC)",
                    CronTrigger(hour="0,8,16", minute=FUNDING_DELAY_MIN, timezone=UTC),
                    self._funding_duty(account),
                    catch_up=True,
                )

    def alert(self, alert: Alert) -> None:
        """Queue an alert; never raises, never waits (a trading action must not fail on it)."""
        try:
            self.alerter.notify(alert)
        except Exception as e:
            self._log.error("alert_not_queued", kind=alert.kind, error=f"{type(e).__name__}: {e}")

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        self.scheduler.shutdown()

    # -- what status, health and `tradectl schedule` show ---------------------------------

    def drift_rows(self) -> list[dict[str, Any]]:
        return [row for account in sorted(self.drift) for row in self.drift[account]]

    def schedule(self) -> dict[str, Any]:
        sessions = []
        for name in self._supervisor.names():
            row = self._supervisor.session(name)
            sessions.append({"bot": name, **row})
        return {
            "host_zone": str(self.scheduler.host_zone),
            "jobs": self.scheduler.as_rows(),
            "sessions": sessions,
        }

    # -- the daily rollover -----------------------------------------------------------

    async def rollover(self) -> None:
        """Report the risk day that ended last (the one before the current day's start)."""
        end = day_start(self._clock.now(), self._config.risk.daily_reset_utc)
        start = end - timedelta(days=1)
        report = self.daily_report(start, end)
        day = start.date().isoformat()
        self._store.journal("daily_report", None, day=day, start=start.isoformat(), **report)
        self._log.info("daily_report", day=day)
        self.alert(alerting.daily_report(day, report))

    def daily_report(self, start: datetime, end: datetime) -> dict[str, Any]:
        """Per bot and per account: net PnL, fills, fees, funding, max drawdown (realised)."""
        bots: dict[str, dict[str, Any]] = {}
        accounts: dict[str, dict[str, Any]] = {}
        for name, bot in sorted(self._config.bots.items()):
            fills = [f for f in self._store.fills(name) if start <= f.timestamp < end]
            paid = [p for p in self._store.funding(name) if start <= p.timestamp < end]
            funding = sum((p.amount for p in paid), ZERO)
            net, peak, drawdown = ZERO, ZERO, ZERO
            for fill in fills:
                net += fill.realized_pnl - fill.fee
                peak = max(peak, net)
                drawdown = max(drawdown, peak - net)
            fees = sum((f.fee for f in fills), ZERO)
            bots[name] = _row(net + funding, len(fills), fees, drawdown, funding)
            row = accounts.setdefault(bot.account, _row(ZERO, 0, ZERO, ZERO, ZERO))
            row["trades"] += len(fills)
            row["fees"] = alerting.money(Decimal(row["fees"]) + fees)
            row["funding"] = alerting.money(Decimal(row["funding"]) + funding)
            row["max_drawdown"] = alerting.money(
                max(Decimal(row["max_drawdown"]), Decimal(bots[name]["max_drawdown"]))
            )
        for account in sorted(self._config.accounts):
            row = accounts.setdefault(account, _row(ZERO, 0, ZERO, ZERO, ZERO))
            # fills of no bot (manual, flatten) count for the account
            net = self._store.account_realized_pnl(
                account, start
            ) - self._store.account_realized_pnl(account, end)
            row["net_pnl"] = alerting.money(net)
        return {"bots": bots, "accounts": accounts}

    # -- funding collection -------------------------------------------------------------

    def _funding_duty(self, account: str) -> Callable[[], Any]:
        async def duty() -> None:
            await self.collect_funding(account)

        return duty

    async def collect_funding(self, account: str) -> int:
        """Record what each bot's symbol paid or received since its cursor, bots running or
        not: a stopped bot's position pays funding too, and the loss limits count it."""
        gateway = self._gateways[account]
        new = 0
        for name, bot in sorted(self._config.bots.items()):
            if bot.account == account:
                new += await record_new_funding(gateway, self._store, bot.symbol, name, force=True)
        if new:
            self._log.info("funding_collected", account=account, payments=new)
        return new

    # -- the drift check ----------------------------------------------------------------

    def _drift_duty(self, account: str) -> Callable[[], Any]:
        async def duty() -> None:
            await self.check_drift(account)

        return duty

    async def check_drift(self, account: str) -> list[dict[str, Any]]:
        first = await self._differences(account)
        if first:
            await asyncio.sleep(DRIFT_CONFIRM_S)
            again = {d["key"]: d for d in await self._differences(account)}
            first = [again[d["key"]] for d in first if d["key"] in again]
        checked_at = self._clock.now().isoformat()
        rows = [{"kind": "drift", "account": account, "checked_at": checked_at, **d} for d in first]
        before = {d["key"] for d in self.drift.get(account, [])}
        self.drift[account] = rows
        now = {d["key"] for d in rows}
        if now != before:
            if rows:
                whats = [d["what"] for d in rows]
                self._store.journal(
                    "reconciliation_drift", None, account=account, differences=whats
                )
                self._log.warning("reconciliation_drift", account=account, differences=whats)
                self.alert(alerting.drift(account, rows))
            else:
                self._store.journal("reconciliation_drift_cleared", None, account=account)
                self._log.info("reconciliation_drift_cleared", account=account)
        return rows

    async def _differences(self, account: str) -> list[dict[str, Any]]:
        gateway = self._gateways[account]
        bots = {n: b for n, b in self._config.bots.items() if b.account == account}
        found: list[dict[str, Any]] = []
        lookback = self._config.daemon.reconcile_every_s + TRADE_LOOKBACK_SLACK_S

        def differ(key: str, bot: str | None, what: str) -> None:
            found.append({"key": key, "bot": bot, "what": what})

        held = {p.symbol: p.qty for p in await gateway.fetch_positions() if p.qty}
        for symbol, qty in sorted(held.items()):
            owner = self._owner_of(account, symbol)
            if owner is None:
                differ(f"position:{symbol}", None, f"{symbol}: position {qty} that no bot trades")
        for name, bot in sorted(bots.items()):
            since = self._clock.now() - timedelta(seconds=lookback)
            recorded = {f.fill_id for f in self._store.fills(name)}
            unrecorded = ZERO  # the bot's own fills it has not seen yet (its next candle)
            for fill in await gateway.fetch_fills(bot.symbol, since):
                ours = _ours(fill.client_order_id) or self._store.order(fill.client_order_id)
                if not ours:
                    differ(
                        f"trade:{fill.fill_id}",
                        name,
                        f"{bot.symbol}: trade {fill.side.value} {fill.qty} @ {fill.price} at "
                        f"{fill.timestamp.isoformat()} not placed by tradectl (by hand? a "
                        "liquidation?)",
                    )
                elif fill.fill_id not in recorded:
                    unrecorded += fill.side.sign * fill.qty
            stored = self._store.position(name)
            stored_qty = stored.qty if stored is not None else ZERO
            exchange_qty = held.get(bot.symbol, ZERO)
            if stored_qty + unrecorded != exchange_qty:
                differ(
                    f"position:{bot.symbol}",
                    name,
                    f"{bot.symbol} (bot {name}): the exchange holds {exchange_qty}, "
                    f"the store {stored_qty}",
                )
            open_orders = await gateway.fetch_open_orders(bot.symbol)
            on_exchange = {o.client_order_id for o in open_orders}
            for order in open_orders:
                if self._store.order(order.client_order_id) is None:  # ours, or by hand
                    differ(
                        f"order:{order.client_order_id}",
                        name,
                        f"{bot.symbol}: open order {order.client_order_id} ({order.side.value} "
                        f"{order.qty} {order.type.value}) unknown to the store",
                    )
            for order in self._store.live_orders(name):
                if (
                    order.status is OrderStatus.PENDING_SUBMIT
                    or order.client_order_id in on_exchange
                ):
                    continue  # in flight (its bot resolves it by client order id), or open
                known = await gateway.fetch_order(
                    order.symbol, order.client_order_id, trigger=order.type.is_trigger
                )
                if known is None:  # filled or cancelled since: its bot records that next
                    differ(
                        f"order:{order.client_order_id}",
                        name,
                        f"{bot.symbol}: the store has order {order.client_order_id} open, "
                        "the exchange does not know it",
                    )
        return found

    # -- unprotected positions --------------------------------------------------------

    async def watch(self) -> None:
        """Alert once per episode on a position left without a resting stop past the grace."""
        grace = self._config.health.unprotected_grace_s
        while True:
            now = self._clock.monotonic()
            for name in self._supervisor.names():
                held = self._supervisor.position(name)  # a running bot's: from memory
                if held is None or held.qty == 0 or self._supervisor.protected(name):
                    self._unprotected_since.pop(name, None)
                    self._told_unprotected.discard(name)
                    continue
                since = self._unprotected_since.setdefault(name, now)
                if now - since > grace and name not in self._told_unprotected:
                    self._told_unprotected.add(name)
                    self._store.journal("position_unprotected", name, seconds=round(now - since))
                    self.alert(alerting.unprotected(name, now - since))
            await asyncio.sleep(WATCH_INTERVAL_S)


def _ours(client_order_id: str) -> bool:
    """Sent by tradectl (a bot's order, or a flatten's, which the store does not keep)."""
    return client_order_id.startswith(CLIENT_ORDER_PREFIX)


def _row(
    net: Decimal, trades: int, fees: Decimal, drawdown: Decimal, funding: Decimal
) -> dict[str, Any]:
    """Net PnL counts funding (as the loss limits do); the drawdown is of fills alone."""
    return {
        "net_pnl": alerting.money(net),
        "trades": trades,
        "fees": alerting.money(fees),
        "funding": alerting.money(funding),
        "max_drawdown": alerting.money(drawdown),
    }
