"""The state store: one SQLite file in WAL mode, versioned by PRAGMA user_version.

Everything that matters is committed here before it is acted on: a bot's desired
state, an order intent with its client order id, a fill, a halt. The journal
(`events`) is append-only, enforced by triggers. Several processes may open the
file at once (the daemon, and later a CLI flatten run); WAL and a busy timeout make
that safe.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.adapters.safe_files import open_private, secure_existing
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import StorageError
from daemon.domain.models import (
    ZERO,
    Direction,
    Fill,
    FundingPayment,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TradePlan,
)
from daemon.domain.store_records import BotRecord
from daemon.redaction import scrub, scrub_value

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE bots (
        name TEXT PRIMARY KEY,
        desired_state TEXT NOT NULL,
        halt_reason TEXT,
        owner_uid INTEGER,
        order_seq INTEGER NOT NULL DEFAULT 0,
        plan TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        bot TEXT,
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        type TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT,
        reduce_only INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        status TEXT NOT NULL,
        filled_qty TEXT NOT NULL DEFAULT '0',
        avg_fill_price TEXT,
        exchange_order_id TEXT,
        reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX orders_by_bot ON orders(bot, created_at);
    CREATE INDEX orders_live ON orders(status)
        WHERE status IN ('pending_submit', 'open', 'partially_filled');
    CREATE TABLE fills (
        account TEXT NOT NULL,
        fill_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        bot TEXT,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT NOT NULL,
        fee TEXT NOT NULL,
        realized_pnl TEXT NOT NULL,
        ts TEXT NOT NULL,
        PRIMARY KEY (account, fill_id)
    );
    CREATE INDEX fills_by_bot ON fills(bot, ts);
    CREATE TABLE positions (
        bot TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        qty TEXT NOT NULL,
        entry_price TEXT NOT NULL,
        mark_price TEXT NOT NULL,
        leverage INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        bot TEXT,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_bot ON events(bot, id);
    CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event journal is append-only'); END;
    CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event journal is append-only'); END;
    CREATE TABLE feed_cursors (feed_key TEXT PRIMARY KEY, closed_at TEXT NOT NULL);
    CREATE TABLE paper_accounts (
        account TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: today's PnL is asked on every candle; find a day's fills without reading them all
    """
    CREATE INDEX fills_by_account ON fills(account, ts);
    """,
    # 3: resting stop / take-profit orders carry a trigger price; an entry carries the plan
    # (stop, target) it opens, committed with its intent so it survives a crash before the reply
    """
    ALTER TABLE orders ADD COLUMN trigger_price TEXT;
    ALTER TABLE orders ADD COLUMN plan TEXT;
    """,
    # 4: real accounts: liquidation and ADL fills told apart, funding payments counted in
    # realised PnL, and how far each history (fills, funding) has been read
    """
    ALTER TABLE fills ADD COLUMN kind TEXT NOT NULL DEFAULT 'trade';
    CREATE TABLE funding (
        account TEXT NOT NULL,
        payment_id TEXT NOT NULL,
        bot TEXT,
        symbol TEXT NOT NULL,
        amount TEXT NOT NULL,
        ts TEXT NOT NULL,
        PRIMARY KEY (account, payment_id)
    );
    CREATE INDEX funding_by_bot ON funding(bot, ts);
    CREATE INDEX funding_by_account ON funding(account, ts);
    CREATE TABLE history_cursors (
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        stream TEXT NOT NULL,
        read_until TEXT NOT NULL,
        PRIMARY KEY (account, symbol, stream)
    );
    """,
    # 5: the scheduler's duties (rollover, drift check) remember their last run across
    # restarts, so a run missed while the daemon was down is made up once at start
    """
    CREATE TABLE duty_runs (name TEXT PRIMARY KEY, last_run TEXT NOT NULL);
    """,
    # 6: a cancel is written before it is sent, like an intent (on PostgreSQL the same
    # table is fenced by the bot's lease), with who asked (`bot`: its runner, `reconcile`);
    # a cancel may be asked for again after a timeout
    """
    CREATE TABLE cancel_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        client_order_id TEXT NOT NULL,
        bot TEXT NOT NULL,
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        cause TEXT NOT NULL,
        requested_at TEXT NOT NULL
    );
    CREATE INDEX cancel_requests_by_order ON cancel_requests(client_order_id);
    """,
)

LIVE_STATUSES = (
    OrderStatus.PENDING_SUBMIT.value,
    OrderStatus.OPEN.value,
    OrderStatus.PARTIALLY_FILLED.value,
)


class StoreError(StorageError):
    """The state file cannot be used (newer schema, corrupt, unwritable)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class SqliteStore:
    """The daemon's state store. Synchronous: each call is a short local transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Sync the log on the commits that matter (docs/architecture.md, "Durability").
        # A daemon with only paper accounts turns it off: its exchange lives in this same
        # file, so a power cut rolls both back to the same moment.
        self.sync_critical_writes = True
        # What status, health and every candle ask of each bot, kept in memory: filled from
        # the file on first use, dropped by this connection's own writes of that bot, and
        # dropped whole once another process has written (`notice_other_writers`).
        self._bot_cache: dict[str, BotRecord | None] = {}
        self._live_cache: dict[str, list[Order]] = {}
        self._realized_cache: dict[str, Decimal] = {}
        self._position_cache: dict[str, Position | None] = {}
        if str(path) != ":memory:":
            _private_files(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL: in WAL mode every commit survives a crash of the process; only the
            # writes that must also survive a power cut (intents, fills, desired states and
            # halts, plans, order sequence numbers) sync the log, see `_transaction`.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._migrate()
            self._check_integrity(path)
            self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise StoreError(f"state store {path} cannot be opened: {e}") from None

    def _check_integrity(self, path: Path | str) -> None:
        """Refuse a damaged file at open, not at the first read of a broken page: with what
        the daemon keeps in memory, that read may come hours later, in the middle of a
        trade. quick_check reads every page once (milliseconds for a store of megabytes)."""
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise StoreError(
                f"state store {path} is damaged (database disk image is malformed): "
                + "; ".join(problems)
            )

    def close(self) -> None:
        self._db.close()

    def notice_other_writers(self) -> None:
        """Forget what is kept in memory when another process (a direct flatten from the
        CLI) has committed since the last look; one cheap query, asked once per status
        call or candle rather than per read."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._bot_cache.clear()
            self._live_cache.clear()
            self._realized_cache.clear()
            self._position_cache.clear()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {current} is newer than this tradectl "
                f"understands ({len(MIGRATIONS)}); upgrade tradectl"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            with self._transaction() as db:
                for statement in _statements(MIGRATIONS[version - 1]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version}")

    @contextmanager
    def _transaction(self, *, critical: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. `critical`: its commit is synced to the disk (FULL), so it
        survives a power cut as well as a crash; the others (order status echoes, positions,
        the feed cursor, the journal of routine events) can be rebuilt or lose nothing."""
        full = critical and self.sync_critical_writes
        if full:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            if full:
                self._db.execute("PRAGMA synchronous=NORMAL")

    # -- journal -------------------------------------------------------------

    def _journal(
        self, db: sqlite3.Connection, kind: str, bot: str | None, data: dict[str, Any]
    ) -> None:
        db.execute(
            "INSERT INTO events (ts, bot, kind, data) VALUES (?, ?, ?, ?)",
            (_now(), bot, kind, json.dumps(scrub_value(data), default=str, sort_keys=True)),
        )

    def journal(self, kind: str, bot: str | None = None, **data: Any) -> None:
        with self._transaction() as db:
            self._journal(db, kind, bot, data)

    def events(self, bot: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if bot is None:
            rows = self._db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                "SELECT * FROM events WHERE bot = ? ORDER BY id DESC LIMIT ?", (bot, limit)
            )
        return [
            {
                "id": r["id"],
                "ts": r["ts"],
                "bot": r["bot"],
                "kind": r["kind"],
                **json.loads(r["data"]),
            }
            for r in reversed(rows.fetchall())
        ]

    # -- bots ----------------------------------------------------------------

    def bot(self, name: str) -> BotRecord | None:
        if name in self._bot_cache:
            return self._bot_cache[name]
        row = self._db.execute("SELECT * FROM bots WHERE name = ?", (name,)).fetchone()
        record = None if row is None else _bot_record(row)
        self._bot_cache[name] = record
        return record

    def bots(self) -> list[BotRecord]:
        return [_bot_record(r) for r in self._db.execute("SELECT * FROM bots ORDER BY name")]

    def set_desired_state(
        self,
        name: str,
        state: DesiredState,
        *,
        reason: str | None = None,
        owner_uid: int | None = None,
        cause: str = "operator",
    ) -> None:
        """Persist what the operator (or a risk rule) wants, with a journal entry, atomically."""
        self._bot_cache.pop(name, None)
        with self._transaction(critical=True) as db:
            self._set_desired(db, name, state, reason, owner_uid, cause)

    def record_halt(self, names: list[str], reason: str, *, for_bot: str) -> None:
        """A runner's halt of `names` (a loss limit breached by `for_bot`), in one
        transaction; `for_bot` matters only in a fleet (one node holds every bot here)."""
        for name in names:
            self._bot_cache.pop(name, None)
        with self._transaction(critical=True) as db:
            for name in names:
                self._set_desired(db, name, DesiredState.HALTED, reason, None, "risk")

    def _set_desired(
        self,
        db: sqlite3.Connection,
        name: str,
        state: DesiredState,
        reason: str | None,
        owner_uid: int | None,
        cause: str,
    ) -> None:
        db.execute(
            """INSERT INTO bots (name, desired_state, halt_reason, owner_uid, updated_at)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT(name) DO UPDATE SET desired_state = excluded.desired_state,
                   halt_reason = excluded.halt_reason,
                   owner_uid = COALESCE(bots.owner_uid, excluded.owner_uid),
                   updated_at = excluded.updated_at""",
            (name, state.value, reason, owner_uid, _now()),
        )
        self._journal(
            db,
            "desired_state_changed",
            name,
            {"state": state.value, "reason": reason, "cause": cause},
        )

    def next_order_sequence(self, bot: str) -> int:
        with self._transaction(critical=True) as db:
            row = db.execute(
                "UPDATE bots SET order_seq = order_seq + 1 WHERE name = ? RETURNING order_seq",
                (bot,),
            ).fetchone()
            if row is None:
                raise StoreError(f"bot {bot!r} has no record in the store")
            return int(row[0])

    def order_sequence(self, bot: str) -> int:
        """The last client order sequence number handed out to `bot` (0 before the first)."""
        row = self._db.execute("SELECT order_seq FROM bots WHERE name = ?", (bot,)).fetchone()
        return 0 if row is None else int(row[0])

    def save_plan(self, bot: str, plan: TradePlan | None) -> None:
        """The bot's active plan (or none). Either way any plan still waiting on an entry
        order is used up: activated, or dropped with a position that never came."""
        with self._transaction(critical=True) as db:
            db.execute("UPDATE bots SET plan = ? WHERE name = ?", (_plan_json(plan), bot))
            db.execute("UPDATE orders SET plan = NULL WHERE bot = ? AND plan IS NOT NULL", (bot,))

    def plan(self, bot: str) -> TradePlan | None:
        row = self._db.execute("SELECT plan FROM bots WHERE name = ?", (bot,)).fetchone()
        return None if row is None else _plan(row[0])

    def entry_plan(self, bot: str) -> tuple[Order, TradePlan] | None:
        """The entry order whose plan is still waiting for its first fill, with that plan
        (see `record_intent`; `save_plan` uses it up)."""
        row = self._db.execute(
            "SELECT * FROM orders WHERE bot = ? AND plan IS NOT NULL ORDER BY rowid DESC LIMIT 1",
            (bot,),
        ).fetchone()
        if row is None:
            return None
        plan = _plan(row["plan"])
        return None if plan is None else (_order(row), plan)

    # -- orders --------------------------------------------------------------

    def record_intent(
        self, intent: OrderIntent, plan: TradePlan | None = None, sequence: int | None = None
    ) -> None:
        """Commit the intent before the request leaves: a crash after this is recoverable.

        `plan`: the stop and target an entry opens, stored with it, so a position found after
        a crash still gets its protection. `sequence`: the bot's client order sequence number
        the id was made from, remembered in the same transaction so ids never repeat.
        """
        if intent.bot is not None:
            self._live_cache.pop(intent.bot, None)
        with self._transaction(critical=True) as db:
            if sequence is not None and intent.bot is not None:
                db.execute(
                    "UPDATE bots SET order_seq = max(order_seq, ?) WHERE name = ?",
                    (sequence, intent.bot),
                )
            db.execute(
                """INSERT INTO orders (client_order_id, bot, account, symbol, side, type, qty,
                       price, reduce_only, purpose, status, created_at, updated_at,
                       trigger_price, plan)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    intent.client_order_id,
                    intent.bot,
                    intent.account,
                    intent.symbol,
                    intent.side.value,
                    intent.type.value,
                    str(intent.qty),
                    None if intent.price is None else str(intent.price),
                    int(intent.reduce_only),
                    intent.purpose,
                    OrderStatus.PENDING_SUBMIT.value,
                    intent.created_at.isoformat(),
                    _now(),
                    None if intent.trigger_price is None else str(intent.trigger_price),
                    _plan_json(plan),
                ),
            )
            self._journal(
                db,
                "order_intent_recorded",
                intent.bot,
                {
                    "cid": intent.client_order_id,
                    "symbol": intent.symbol,
                    "side": intent.side.value,
                    "type": intent.type.value,
                    "qty": str(intent.qty),
                    "price": None if intent.price is None else str(intent.price),
                    "reduce_only": intent.reduce_only,
                    "purpose": intent.purpose,
                    **(
                        {}
                        if intent.trigger_price is None
                        else {"trigger_price": str(intent.trigger_price)}
                    ),
                    **({} if plan is None else {"plan": json.loads(_plan_json(plan) or "{}")}),
                },
            )

    def record_cancel(self, order: Order, bot: str, cause: str = "bot") -> None:
        """Commit the request to cancel `order` before it leaves, journalled. Not synced to
        the disk: a cancel lost with a power cut is asked for again by the bot's next look
        at its orders, and asking twice is harmless. `cause` matters only in a fleet."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO cancel_requests (client_order_id, bot, account, symbol, cause, "
                "requested_at) VALUES (?, ?, ?, ?, ?, ?)",
                (order.client_order_id, bot, order.account, order.symbol, cause, _now()),
            )
            self._journal(
                db,
                "order_cancel_requested",
                bot,
                {
                    "cid": order.client_order_id,
                    "symbol": order.symbol,
                    "purpose": order.purpose,
                    "cause": cause,
                },
            )

    def update_order(self, order: Order) -> None:
        """Write what the exchange says of an order; journal status changes."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT status, bot FROM orders WHERE client_order_id = ?",
                (order.client_order_id,),
            ).fetchone()
            previous = None if row is None else row[0]
            for bot in (None if row is None else row[1], order.bot):
                if bot is not None:
                    self._live_cache.pop(bot, None)
            db.execute(
                """UPDATE orders SET status = ?, filled_qty = ?, avg_fill_price = ?,
                       exchange_order_id = COALESCE(?, exchange_order_id), reason = ?,
                       updated_at = ?
                   WHERE client_order_id = ?""",
                (
                    order.status.value,
                    str(order.filled_qty),
                    None if order.avg_fill_price is None else str(order.avg_fill_price),
                    order.exchange_order_id,
                    None if order.reason is None else scrub(order.reason),
                    _now(),
                    order.client_order_id,
                ),
            )
            if previous != order.status.value:
                self._journal(
                    db,
                    "order_status_changed",
                    order.bot,
                    {
                        "cid": order.client_order_id,
                        "from": previous,
                        "to": order.status.value,
                        "reason": None if order.reason is None else scrub(order.reason),
                    },
                )

    def order(self, client_order_id: str) -> Order | None:
        row = self._db.execute(
            "SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()
        return None if row is None else _order(row)

    def live_orders(self, bot: str | None = None) -> list[Order]:
        """Orders not known to be finished: pending submit, open, partially filled."""
        if bot is not None:
            cached = self._live_cache.get(bot)
            if cached is None:
                cached = self._live_cache[bot] = self._live_orders(bot)
            return list(cached)
        return self._live_orders(None)

    def _live_orders(self, bot: str | None) -> list[Order]:
        placeholders = ",".join("?" * len(LIVE_STATUSES))
        sql = f"SELECT * FROM orders WHERE status IN ({placeholders})"
        params: tuple[Any, ...] = LIVE_STATUSES
        if bot is not None:
            sql += " AND bot = ?"
            params = (*params, bot)
        return [_order(r) for r in self._db.execute(sql + " ORDER BY created_at", params)]

    def recent_orders(self, bot: str | None = None, limit: int = 50) -> list[Order]:
        if bot is None:
            rows = self._db.execute("SELECT * FROM orders ORDER BY rowid DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                "SELECT * FROM orders WHERE bot = ? ORDER BY rowid DESC LIMIT ?", (bot, limit)
            )
        return [_order(r) for r in rows]

    # -- fills and positions -------------------------------------------------

    def record_fill(self, fill: Fill, bot: str | None) -> bool:
        """Record a fill once; True when it was new. Recording it again is harmless.

        A liquidation or auto-deleveraging fill is journalled under its own name."""
        with self._transaction(critical=True) as db:
            cursor = db.execute(
                """INSERT OR IGNORE INTO fills (account, fill_id, client_order_id, bot, symbol,
                       side, qty, price, fee, realized_pnl, ts, kind)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    fill.account,
                    fill.fill_id,
                    fill.client_order_id,
                    bot,
                    fill.symbol,
                    fill.side.value,
                    str(fill.qty),
                    str(fill.price),
                    str(fill.fee),
                    str(fill.realized_pnl),
                    fill.timestamp.isoformat(),
                    fill.kind,
                ),
            )
            if cursor.rowcount == 0:
                return False
            if bot is not None:
                self._realized_cache.pop(bot, None)
            self._journal(
                db,
                "order_filled" if fill.kind == "trade" else f"{fill.kind}_filled",
                bot,
                {
                    "cid": fill.client_order_id,
                    "fill_id": fill.fill_id,
                    "symbol": fill.symbol,
                    "side": fill.side.value,
                    "qty": str(fill.qty),
                    "price": str(fill.price),
                    "fee": str(fill.fee),
                    "realized_pnl": str(fill.realized_pnl),
                },
            )
            return True

    def last_fill_time(self, account: str, symbol: str) -> datetime | None:
        row = self._db.execute(
            "SELECT max(ts) FROM fills WHERE account = ? AND symbol = ?", (account, symbol)
        ).fetchone()
        return _time(row[0])

    def fills(self, bot: str) -> list[Fill]:
        rows = self._db.execute("SELECT * FROM fills WHERE bot = ? ORDER BY ts, fill_id", (bot,))
        return [
            Fill(
                account=r["account"],
                fill_id=r["fill_id"],
                client_order_id=r["client_order_id"],
                symbol=r["symbol"],
                side=Side(r["side"]),
                qty=Decimal(r["qty"]),
                price=Decimal(r["price"]),
                fee=Decimal(r["fee"]),
                realized_pnl=Decimal(r["realized_pnl"]),
                timestamp=datetime.fromisoformat(r["ts"]),
                kind=r["kind"],
            )
            for r in rows
        ]

    def record_funding(self, payment: FundingPayment, bot: str | None) -> bool:
        """Record a funding payment once; True when it was new."""
        with self._transaction() as db:
            cursor = db.execute(
                """INSERT OR IGNORE INTO funding (account, payment_id, bot, symbol, amount, ts)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (
                    payment.account,
                    payment.payment_id,
                    bot,
                    payment.symbol,
                    str(payment.amount),
                    payment.timestamp.isoformat(),
                ),
            )
            if cursor.rowcount == 0:
                return False
            if bot is not None:
                self._realized_cache.pop(bot, None)
            self._journal(
                db,
                "funding_recorded",
                bot,
                {
                    "payment_id": payment.payment_id,
                    "symbol": payment.symbol,
                    "amount": str(payment.amount),
                    "at": payment.timestamp.isoformat(),
                },
            )
            return True

    def funding(self, bot: str) -> list[FundingPayment]:
        rows = self._db.execute(
            "SELECT * FROM funding WHERE bot = ? ORDER BY ts, payment_id", (bot,)
        )
        return [
            FundingPayment(
                account=r["account"],
                payment_id=r["payment_id"],
                symbol=r["symbol"],
                amount=Decimal(r["amount"]),
                timestamp=datetime.fromisoformat(r["ts"]),
            )
            for r in rows
        ]

    def history_cursor(self, account: str, symbol: str, stream: str) -> datetime | None:
        """How far a history (`fills`, `funding`) of one symbol has been read completely."""
        row = self._db.execute(
            "SELECT read_until FROM history_cursors WHERE account = ? AND symbol = ? "
            "AND stream = ?",
            (account, symbol, stream),
        ).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def save_history_cursor(self, account: str, symbol: str, stream: str, until: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO history_cursors (account, symbol, stream, read_until) "
                "VALUES (?, ?, ?, ?)",
                (account, symbol, stream, until.isoformat()),
            )

    def realized_pnl(self, bot: str, since: datetime | None = None) -> Decimal:
        """Realised PnL net of fees plus funding received (since a time, by fill or funding
        time), summed exactly in Decimal; the total (no `since`) is kept in memory."""
        if since is not None:
            return self._realized("bot", bot, since)
        cached = self._realized_cache.get(bot)
        if cached is None:
            cached = self._realized_cache[bot] = self._realized("bot", bot, None)
        return cached

    def account_realized_pnl(self, account: str, since: datetime | None = None) -> Decimal:
        """The same for a whole account, fills of no bot (manual, flatten) included."""
        return self._realized("account", account, since)

    def _realized(self, column: str, value: str, since: datetime | None) -> Decimal:
        # ISO 8601 UTC text sorts by time; _net_since checks each row exactly again.
        where = f"{column} = ?" + ("" if since is None else " AND ts >= ?")
        params: tuple[Any, ...] = (value,)
        if since is not None:
            params = (value, since.astimezone(UTC).isoformat()[:19])
        fills = self._db.execute(
            f"SELECT realized_pnl, fee, ts FROM fills WHERE {where}", params
        ).fetchall()
        funding = self._db.execute(
            f"SELECT amount, '0', ts FROM funding WHERE {where}", params
        ).fetchall()
        return _net_since(fills, since) + _net_since(funding, since)

    def save_position(self, bot: str, position: Position) -> None:
        self._position_cache.pop(bot, None)
        with self._transaction() as db:
            db.execute(
                """INSERT OR REPLACE INTO positions (bot, account, symbol, qty, entry_price,
                       mark_price, leverage, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    bot,
                    position.account,
                    position.symbol,
                    str(position.qty),
                    str(position.entry_price),
                    str(position.mark_price),
                    position.leverage,
                    _now(),
                ),
            )

    def position(self, bot: str) -> Position | None:
        if bot in self._position_cache:
            return self._position_cache[bot]
        position = self._position_cache[bot] = self._position(bot)
        return position

    def _position(self, bot: str) -> Position | None:
        r = self._db.execute("SELECT * FROM positions WHERE bot = ?", (bot,)).fetchone()
        if r is None:
            return None
        return Position(
            account=r["account"],
            symbol=r["symbol"],
            qty=Decimal(r["qty"]),
            entry_price=Decimal(r["entry_price"]),
            mark_price=Decimal(r["mark_price"]),
            leverage=int(r["leverage"]),
        )

    # -- adapters' corners: paper accounts, feed cursors, meta ----------------

    def load_paper_account(self, account: str) -> str | None:
        row = self._db.execute(
            "SELECT state FROM paper_accounts WHERE account = ?", (account,)
        ).fetchone()
        return None if row is None else str(row[0])

    def save_paper_account(self, account: str, state_json: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO paper_accounts (account, state, updated_at) "
                "VALUES (?, ?, ?)",
                (account, state_json, _now()),
            )

    def load_feed_cursor(self, feed_key: str) -> datetime | None:
        row = self._db.execute(
            "SELECT closed_at FROM feed_cursors WHERE feed_key = ?", (feed_key,)
        ).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def save_feed_cursor(self, feed_key: str, closed_at: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO feed_cursors (feed_key, closed_at) VALUES (?, ?)",
                (feed_key, closed_at.isoformat()),
            )

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def duty_last_run(self, name: str) -> datetime | None:
        row = self._db.execute("SELECT last_run FROM duty_runs WHERE name = ?", (name,)).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def set_duty_last_run(self, name: str, at: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO duty_runs (name, last_run) VALUES (?, ?)",
                (name, at.astimezone(UTC).isoformat()),
            )


def _private_files(path: Path) -> None:
    """The store is the daemon's alone (0600: every owner's journal, orders and ownership);
    SQLite gives its -wal and -shm files the same mode. Never opened through a symlink."""
    os.close(open_private(path, "state store"))
    for suffix in ("-wal", "-shm"):
        secure_existing(path.with_name(path.name + suffix), "state store")


def _net_since(rows: list[sqlite3.Row], since: datetime | None) -> Decimal:
    total = ZERO
    for pnl, fee, ts in rows:
        if since is None or datetime.fromisoformat(ts) >= since:
            total += Decimal(pnl) - Decimal(fee)
    return total


def _statements(script: str) -> list[str]:
    """Split a migration into statements; trigger bodies keep their inner semicolons."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def _bot_record(row: sqlite3.Row) -> BotRecord:
    return BotRecord(
        name=row["name"],
        desired_state=DesiredState(row["desired_state"]),
        halt_reason=row["halt_reason"],
        owner_uid=row["owner_uid"],
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _order(row: sqlite3.Row) -> Order:
    return Order(
        account=row["account"],
        symbol=row["symbol"],
        client_order_id=row["client_order_id"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        qty=Decimal(row["qty"]),
        price=_dec(row["price"]),
        reduce_only=bool(row["reduce_only"]),
        status=OrderStatus(row["status"]),
        filled_qty=Decimal(row["filled_qty"]),
        avg_fill_price=_dec(row["avg_fill_price"]),
        exchange_order_id=row["exchange_order_id"],
        bot=row["bot"],
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
        reason=row["reason"],
        trigger_price=_dec(row["trigger_price"]),
        purpose=row["purpose"],
    )


def _plan_json(plan: TradePlan | None) -> str | None:
    if plan is None:
        return None
    return json.dumps(
        {
            "direction": plan.direction.value,
            "stop": str(plan.stop),
            "take_profit": str(plan.take_profit),
            "opened_at": plan.opened_at.isoformat(),
        }
    )


def _plan(text: str | None) -> TradePlan | None:
    if text is None:
        return None
    raw = json.loads(text)
    return TradePlan(
        direction=Direction(raw["direction"]),
        stop=Decimal(raw["stop"]),
        take_profit=Decimal(raw["take_profit"]),
        opened_at=datetime.fromisoformat(raw["opened_at"]),
    )
