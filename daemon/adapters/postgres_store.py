"""The state store on PostgreSQL: one database shared by a fleet of daemons (psycopg 3).

The same schema and the same behaviour as the SQLite store (text columns for Decimals
and times, an append-only journal enforced by triggers), versioned by the `schema`
table and migrated at start under an advisory lock, so nodes starting together migrate
once. A database newer than this code is refused by name.

Calling convention: synchronous, like the SQLite store, on the event loop. Each call is
one short transaction from a small psycopg pool: a round trip of well under a
millisecond to a database on the LAN, less than SQLite's fsync with synchronous=FULL.
What could block for long is bounded: connecting (connect_timeout), waiting for a pooled
connection (pool timeout), a statement or a lock (statement_timeout, lock_timeout) and a
dead peer (TCP keepalives, tcp_user_timeout); a failure becomes a StoreError, and for
two seconds after a lost connection every call fails at once instead of waiting again
(the pool reconnects in its own thread meanwhile), so a database that went away costs
the loop at most a second now and then, never a stall. Leases
and LISTEN/NOTIFY use an asyncio connection of their own (postgres_leases.py).

Fencing: every order intent of a bot carries this node's name and the epoch of its
lease on the bot (from the shared LeaseBook); a trigger on `orders` checks it against
the lease row, locked, in the same transaction, and refuses the insert (LeaseLost) when
the lease has moved on or expired. A flatten intent (purpose `flatten`) passes unless
another node holds a live lease on the bot. A bot's cancel is fenced the same way: its
request is written to `cancel_requests` first, under the same check, so a node that woke
from a pause cannot cancel the new holder's protective orders; a reconciliation's cancel
(cause `reconcile`, for a bot this node may not hold) and a runner's halt's flatten's
(cause `flatten`) pass unless another node holds a live lease on the bot, as a flatten
intent does. A runner's halt (its loss limit) is
fenced too: `record_halt` reads the lease row FOR SHARE in the halt's own transaction and
writes nothing (LeaseLost) unless this node holds it, live, at its epoch; an operator's
halt, stop or flatten (`set_desired_state`) is never fenced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from daemon.adapters.postgres_url import StoreTarget
from daemon.domain.bot_state import DesiredState
from daemon.domain.errors import LeaseLost, StorageError
from daemon.domain.fleet import LeaseBook
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

FENCE_SQLSTATE = "TCL01"  # raised by the orders_fence trigger
NOTIFY_CHANNEL = "tradectl_bots"  # payload: a bot's name; its desired state changed
MIGRATION_LOCK = 0x7472_6164  # pg_advisory_lock key while migrating ("trad")
CHECKOUT_TIMEOUT_S = 1.0  # the longest a call waits for a pooled connection
UNREACHABLE_PAUSE_S = 2.0  # after a lost connection, calls fail at once for this long


def _cancel_fence(create: str, lenient: str) -> str:
    """The fence on cancel requests: a cause in `lenient` (SQL literals) passes unless another
    node holds a live lease on the bot; any other needs this node's live lease at its epoch.
    Migrations 4 and 5 differ only in the lenient causes."""
    return f"""
    {create} cancel_requests_fence() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        l leases%ROWTYPE;
    BEGIN
        SELECT * INTO l FROM leases WHERE bot = NEW.bot FOR SHARE;
        IF NEW.cause IN ({lenient}) THEN
            IF FOUND AND l.holder IS NOT NULL AND l.holder <> NEW.lease_node
                    AND l.expires_at > clock_timestamp() THEN
                RAISE EXCEPTION 'bot % is held by node % until %: the cancel of % is left '
                    'to it', NEW.bot, l.holder, l.expires_at, NEW.client_order_id
                    USING ERRCODE = 'TCL01';
            END IF;
            RETURN NEW;
        END IF;
        IF NOT FOUND OR l.holder IS DISTINCT FROM NEW.lease_node
                OR l.epoch IS DISTINCT FROM NEW.lease_epoch
                OR l.expires_at <= clock_timestamp() THEN
            RAISE EXCEPTION 'bot %: node % (epoch %) no longer holds its lease (holder %, '
                'epoch %, expires %): the cancel of % is not sent', NEW.bot, NEW.lease_node,
                NEW.lease_epoch, l.holder, l.epoch, l.expires_at, NEW.client_order_id
                USING ERRCODE = 'TCL01';
        END IF;
        RETURN NEW;
    END $$;
"""


MIGRATIONS: tuple[str, ...] = (
    # 1: the SQLite store's schema (its migrations 1-3), plus the fleet: nodes, leases and
    # the fence on order intents
    """
    CREATE TABLE bots (
        name TEXT PRIMARY KEY,
        desired_state TEXT NOT NULL,
        halt_reason TEXT,
        owner_uid BIGINT,
        order_seq BIGINT NOT NULL DEFAULT 0,
        plan TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE orders (
        row_id BIGSERIAL UNIQUE,
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
        updated_at TEXT NOT NULL,
        trigger_price TEXT,
        plan TEXT,
        lease_node TEXT,
        lease_epoch BIGINT
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
    CREATE INDEX fills_by_account ON fills(account, ts);
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
        id BIGSERIAL PRIMARY KEY,
        ts TEXT NOT NULL,
        bot TEXT,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        node TEXT
    );
    CREATE INDEX events_by_bot ON events(bot, id);
    CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the event journal is append-only';
    END $$;
    CREATE TRIGGER events_append_only_update BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION events_append_only();
    CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
    CREATE TABLE feed_cursors (feed_key TEXT PRIMARY KEY, closed_at TEXT NOT NULL);
    CREATE TABLE paper_accounts (
        account TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE nodes (
        node TEXT PRIMARY KEY,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        pid INTEGER,
        version TEXT
    );
    CREATE TABLE leases (
        bot TEXT PRIMARY KEY,
        holder TEXT,
        epoch BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        acquired_at TIMESTAMPTZ NOT NULL
    );
    CREATE FUNCTION orders_fence() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        l leases%ROWTYPE;
    BEGIN
        IF NEW.bot IS NULL OR NEW.lease_node IS NULL THEN
            RETURN NEW;
        END IF;
        SELECT * INTO l FROM leases WHERE bot = NEW.bot FOR SHARE;
        IF NEW.purpose = 'flatten' THEN
            IF FOUND AND l.holder IS NOT NULL AND l.holder <> NEW.lease_node
                    AND l.expires_at > clock_timestamp() THEN
                RAISE EXCEPTION 'bot % is held by node % until %: the flatten waits for it',
                    NEW.bot, l.holder, l.expires_at USING ERRCODE = 'TCL01';
            END IF;
            RETURN NEW;
        END IF;
        IF NOT FOUND OR l.holder IS DISTINCT FROM NEW.lease_node
                OR l.epoch IS DISTINCT FROM NEW.lease_epoch
                OR l.expires_at <= clock_timestamp() THEN
            RAISE EXCEPTION 'bot %: node % (epoch %) no longer holds its lease (holder %, '
                'epoch %, expires %)', NEW.bot, NEW.lease_node, NEW.lease_epoch,
                l.holder, l.epoch, l.expires_at USING ERRCODE = 'TCL01';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER orders_fence BEFORE INSERT ON orders
        FOR EACH ROW EXECUTE FUNCTION orders_fence();
    """,
    # 2: real accounts (SQLite's 4): liquidation and ADL fills told apart, funding payments
    # counted in realised PnL, and how far each history (fills, funding) has been read
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
    # 3 (SQLite's 5): the scheduler's duties (rollover, drift check) remember their last run
    """
    CREATE TABLE duty_runs (name TEXT PRIMARY KEY, last_run TEXT NOT NULL);
    """,
    # 4 (SQLite's 6): a cancel is written before it is sent, fenced by the bot's lease like
    # an intent, so a node that lost the lease cannot cancel the new holder's stop; a
    # reconciliation's cancel (cause `reconcile`), like a flatten's intent, passes unless
    # another node holds a live lease on the bot
    """
    CREATE TABLE cancel_requests (
        id BIGSERIAL PRIMARY KEY,
        client_order_id TEXT NOT NULL,
        bot TEXT NOT NULL,
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        cause TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        lease_node TEXT NOT NULL,
        lease_epoch BIGINT
    );
    CREATE INDEX cancel_requests_by_order ON cancel_requests(client_order_id);
    """
    + _cancel_fence("CREATE FUNCTION", "'reconcile'")
    + """
    CREATE TRIGGER cancel_requests_fence BEFORE INSERT ON cancel_requests
        FOR EACH ROW EXECUTE FUNCTION cancel_requests_fence();
    """,
    # 5 (no SQLite counterpart: one node there): the cancels of a runner's halt's flatten
    # (cause `flatten`) pass, as a reconciliation's do, unless another node holds a live
    # lease on the bot (the halting node may have released it, or paused past it)
    _cancel_fence("CREATE OR REPLACE FUNCTION", "'reconcile', 'flatten'"),
)

LIVE_STATUSES = (
    OrderStatus.PENDING_SUBMIT.value,
    OrderStatus.OPEN.value,
    OrderStatus.PARTIALLY_FILLED.value,
)


class StoreError(StorageError):
    """The database cannot be used (unreachable, newer schema, refused)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class PostgresStore:
    """The daemon's state store in a shared PostgreSQL database; see the module docstring."""

    path = None  # no file: the health check's "store file replaced" test does not apply

    def __init__(self, target: StoreTarget, leases: LeaseBook, *, pool_size: int = 3) -> None:
        self.target = target
        self.leases = leases
        self.node = leases.node
        self._unreachable_until = 0.0
        self._unreachable_reason = ""
        try:
            self._pool = ConnectionPool(
                target.conninfo,
                kwargs=target.connect_kwargs(application_name=f"tradectl:{leases.node}"),
                min_size=1,
                max_size=pool_size,
                timeout=target.timeout_s,
                open=False,
            )
            self._pool.open(wait=True, timeout=target.timeout_s)
        except (psycopg.Error, PoolTimeout) as e:
            self._close_quietly()
            raise StoreError(f"{target}: cannot connect to the state store: {_reason(e)}") from None
        try:
            self._migrate()
        except BaseException:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        try:
            self._pool.close(timeout=1.0)
        except Exception:  # the pool may not even exist; closing is best effort here
            return

    def close(self) -> None:
        self._pool.close(timeout=2.0)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """One pooled connection in one transaction (committed on leaving, rolled back on an
        error); database failures become a StoreError naming the store, never its password."""
        if time.monotonic() < self._unreachable_until:
            raise StoreError(f"{self.target}: unreachable ({self._unreachable_reason})")
        try:
            with self._pool.connection(timeout=CHECKOUT_TIMEOUT_S) as conn, conn.transaction():
                yield conn
        except psycopg.Error as e:
            if e.sqlstate == FENCE_SQLSTATE:
                raise LeaseLost(_reason(e)) from None
            if isinstance(e, psycopg.IntegrityError):
                raise
            if isinstance(e, psycopg.OperationalError | psycopg.InterfaceError):
                self._unreachable(_reason(e))
            raise StoreError(f"{self.target}: {_reason(e)}") from None
        except PoolTimeout:
            self._unreachable("no connection within the pool's timeout")
            raise StoreError(f"{self.target}: no connection to the state store") from None

    def _unreachable(self, reason: str) -> None:
        self._unreachable_until = time.monotonic() + UNREACHABLE_PAUSE_S
        self._unreachable_reason = reason

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def _row(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    @property
    def schema_version(self) -> int:
        row = self._row(
            "SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN 0 "
            "ELSE (SELECT coalesce(max(version), 0) FROM schema_version) END AS v"
        )
        return 0 if row is None else int(row["v"])

    def _migrate(self) -> None:
        with self._conn() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            current = 0 if row is None else int(row[0])
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"{self.target}: schema version {current} is newer than this tradectl "
                    f"understands ({len(MIGRATIONS)}); upgrade tradectl on this node"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                conn.execute(MIGRATIONS[version - 1])
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    # -- journal -------------------------------------------------------------

    def _journal(
        self, conn: psycopg.Connection[Any], kind: str, bot: str | None, data: dict[str, Any]
    ) -> None:
        conn.execute(
            "INSERT INTO events (ts, bot, kind, data, node) VALUES (%s, %s, %s, %s, %s)",
            (
                _now(),
                bot,
                kind,
                json.dumps(scrub_value(data), default=str, sort_keys=True),
                self.node,
            ),
        )

    def journal(self, kind: str, bot: str | None = None, **data: Any) -> None:
        with self._conn() as conn:
            self._journal(conn, kind, bot, data)

    def events(self, bot: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if bot is None:
            rows = self._rows("SELECT * FROM events ORDER BY id DESC LIMIT %s", (limit,))
        else:
            rows = self._rows(
                "SELECT * FROM events WHERE bot = %s ORDER BY id DESC LIMIT %s", (bot, limit)
            )
        return [
            {
                "id": r["id"],
                "ts": r["ts"],
                "bot": r["bot"],
                "kind": r["kind"],
                "node": r["node"],
                **json.loads(r["data"]),
            }
            for r in reversed(rows)
        ]

    # -- bots ----------------------------------------------------------------

    def bot(self, name: str) -> BotRecord | None:
        row = self._row("SELECT * FROM bots WHERE name = %s", (name,))
        return None if row is None else _bot_record(row)

    def bots(self) -> list[BotRecord]:
        return [_bot_record(r) for r in self._rows("SELECT * FROM bots ORDER BY name")]

    def set_desired_state(
        self,
        name: str,
        state: DesiredState,
        *,
        reason: str | None = None,
        owner_uid: int | None = None,
        cause: str = "operator",
    ) -> None:
        """Persist what the operator (or a risk rule) wants, with a journal entry, atomically;
        the fleet hears of it at commit (NOTIFY), so the bot's holder acts at once. Not
        fenced: an operator's stop, halt or flatten is the emergency brake."""
        with self._conn() as conn:
            self._set_desired(conn, name, state, reason, owner_uid, cause)

    def record_halt(self, names: list[str], reason: str, *, for_bot: str) -> None:
        """A runner's halt (a loss limit breached by `for_bot`'s candle) of `names`, in one
        transaction, fenced like `for_bot`'s intents: LeaseLost (nothing written) unless
        this node holds its live lease, so a node woken from a pause cannot halt the bot
        of the node that took it over (nor, by an account limit, its other bots)."""
        epoch = self.leases.epoch(for_bot)
        with self._conn() as conn:
            lease = conn.execute(
                """SELECT holder, epoch, expires_at, expires_at > clock_timestamp() AS live
                   FROM leases WHERE bot = %s FOR SHARE""",
                (for_bot,),
            ).fetchone()
            if (
                lease is None
                or lease[0] != self.node
                or lease[1] != epoch
                or epoch is None
                or not lease[3]
            ):
                holder, held_epoch, expires = (None, None, None) if lease is None else lease[:3]
                raise LeaseLost(
                    f"bot {for_bot}: node {self.node} (epoch {epoch}) no longer holds its lease "
                    f"(holder {holder}, epoch {held_epoch}, expires {expires}): its halt "
                    f"({reason}) is not written"
                )
            for name in names:
                self._set_desired(conn, name, DesiredState.HALTED, reason, None, "risk")

    def _set_desired(
        self,
        conn: psycopg.Connection[Any],
        name: str,
        state: DesiredState,
        reason: str | None,
        owner_uid: int | None,
        cause: str,
    ) -> None:
        conn.execute(
            """INSERT INTO bots (name, desired_state, halt_reason, owner_uid, updated_at)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT(name) DO UPDATE SET desired_state = excluded.desired_state,
                   halt_reason = excluded.halt_reason,
                   owner_uid = COALESCE(bots.owner_uid, excluded.owner_uid),
                   updated_at = excluded.updated_at""",
            (name, state.value, reason, owner_uid, _now()),
        )
        self._journal(
            conn,
            "desired_state_changed",
            name,
            {"state": state.value, "reason": reason, "cause": cause},
        )
        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, name))

    def next_order_sequence(self, bot: str) -> int:
        with self._conn() as conn:
            row = conn.execute(
                "UPDATE bots SET order_seq = order_seq + 1 WHERE name = %s RETURNING order_seq",
                (bot,),
            ).fetchone()
            if row is None:
                raise StoreError(f"bot {bot!r} has no record in the store")
            return int(row[0])

    def order_sequence(self, bot: str) -> int:
        """The last client order sequence number handed out to `bot` (0 before the first)."""
        row = self._row("SELECT order_seq FROM bots WHERE name = %s", (bot,))
        return 0 if row is None else int(row["order_seq"])

    def save_plan(self, bot: str, plan: TradePlan | None) -> None:
        """The bot's active plan (or none); any plan still waiting on an entry is used up."""
        with self._conn() as conn:
            conn.execute("UPDATE bots SET plan = %s WHERE name = %s", (_plan_json(plan), bot))
            conn.execute(
                "UPDATE orders SET plan = NULL WHERE bot = %s AND plan IS NOT NULL", (bot,)
            )

    def plan(self, bot: str) -> TradePlan | None:
        row = self._row("SELECT plan FROM bots WHERE name = %s", (bot,))
        return None if row is None else _plan(row["plan"])

    def entry_plan(self, bot: str) -> tuple[Order, TradePlan] | None:
        """The entry order whose plan still waits for its first fill, with that plan."""
        row = self._row(
            "SELECT * FROM orders WHERE bot = %s AND plan IS NOT NULL ORDER BY row_id DESC LIMIT 1",
            (bot,),
        )
        if row is None:
            return None
        plan = _plan(row["plan"])
        return None if plan is None else (_order(row), plan)

    # -- orders --------------------------------------------------------------

    def record_intent(
        self, intent: OrderIntent, plan: TradePlan | None = None, sequence: int | None = None
    ) -> None:
        """Commit the intent before the request leaves, fenced by this node's lease on the
        bot: LeaseLost (and nothing written) when the lease has moved on."""
        epoch = None if intent.bot is None else self.leases.epoch(intent.bot)
        with self._conn() as conn:
            if sequence is not None and intent.bot is not None:
                conn.execute(
                    "UPDATE bots SET order_seq = GREATEST(order_seq, %s) WHERE name = %s",
                    (sequence, intent.bot),
                )
            conn.execute(
                """INSERT INTO orders (client_order_id, bot, account, symbol, side, type, qty,
                       price, reduce_only, purpose, status, created_at, updated_at,
                       trigger_price, plan, lease_node, lease_epoch)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
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
                    self.node,
                    epoch,
                ),
            )
            self._journal(
                conn,
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
                    "epoch": epoch,
                    **(
                        {}
                        if intent.trigger_price is None
                        else {"trigger_price": str(intent.trigger_price)}
                    ),
                    **({} if plan is None else {"plan": json.loads(_plan_json(plan) or "{}")}),
                },
            )

    def record_cancel(self, order: Order, bot: str, cause: str = "bot") -> None:
        """Commit the request to cancel `order` before it leaves, fenced by this node's
        lease on the bot: LeaseLost (and nothing written) when it moved on. `cause`
        `reconcile`: refused only while another node holds a live lease on the bot."""
        epoch = self.leases.epoch(bot)
        with self._conn() as conn:
            conn.execute(
                """INSERT INTO cancel_requests (client_order_id, bot, account, symbol, cause,
                       requested_at, lease_node, lease_epoch)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    order.client_order_id,
                    bot,
                    order.account,
                    order.symbol,
                    cause,
                    _now(),
                    self.node,
                    epoch,
                ),
            )
            self._journal(
                conn,
                "order_cancel_requested",
                bot,
                {
                    "cid": order.client_order_id,
                    "symbol": order.symbol,
                    "purpose": order.purpose,
                    "cause": cause,
                    "epoch": epoch,
                },
            )

    def update_order(self, order: Order) -> None:
        """Write what the exchange says of an order; journal status changes."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT status FROM orders WHERE client_order_id = %s FOR UPDATE",
                (order.client_order_id,),
            ).fetchone()
            previous = None if row is None else row[0]
            conn.execute(
                """UPDATE orders SET status = %s, filled_qty = %s, avg_fill_price = %s,
                       exchange_order_id = COALESCE(%s, exchange_order_id), reason = %s,
                       updated_at = %s
                   WHERE client_order_id = %s""",
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
                    conn,
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
        row = self._row("SELECT * FROM orders WHERE client_order_id = %s", (client_order_id,))
        return None if row is None else _order(row)

    def live_orders(self, bot: str | None = None) -> list[Order]:
        """Orders not known to be finished: pending submit, open, partially filled."""
        sql = "SELECT * FROM orders WHERE status = ANY(%s)"
        params: list[Any] = [list(LIVE_STATUSES)]
        if bot is not None:
            sql += " AND bot = %s"
            params.append(bot)
        return [_order(r) for r in self._rows(sql + " ORDER BY created_at, row_id", params)]

    def recent_orders(self, bot: str | None = None, limit: int = 50) -> list[Order]:
        if bot is None:
            rows = self._rows("SELECT * FROM orders ORDER BY row_id DESC LIMIT %s", (limit,))
        else:
            rows = self._rows(
                "SELECT * FROM orders WHERE bot = %s ORDER BY row_id DESC LIMIT %s", (bot, limit)
            )
        return [_order(r) for r in rows]

    # -- fills and positions -------------------------------------------------

    def record_fill(self, fill: Fill, bot: str | None) -> bool:
        """Record a fill once; True when it was new. Recording it again is harmless.

        A liquidation or auto-deleveraging fill is journalled under its own name."""
        with self._conn() as conn:
            cursor = conn.execute(
                """INSERT INTO fills (account, fill_id, client_order_id, bot, symbol,
                       side, qty, price, fee, realized_pnl, ts, kind)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT DO NOTHING""",
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
            self._journal(
                conn,
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
        row = self._row(
            "SELECT max(ts) AS ts FROM fills WHERE account = %s AND symbol = %s",
            (account, symbol),
        )
        return None if row is None else _time(row["ts"])

    def fills(self, bot: str) -> list[Fill]:
        rows = self._rows("SELECT * FROM fills WHERE bot = %s ORDER BY ts, fill_id", (bot,))
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
        with self._conn() as conn:
            cursor = conn.execute(
                """INSERT INTO funding (account, payment_id, bot, symbol, amount, ts)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT DO NOTHING""",
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
            self._journal(
                conn,
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
        rows = self._rows("SELECT * FROM funding WHERE bot = %s ORDER BY ts, payment_id", (bot,))
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
        row = self._row(
            "SELECT read_until FROM history_cursors WHERE account = %s AND symbol = %s "
            "AND stream = %s",
            (account, symbol, stream),
        )
        return None if row is None else datetime.fromisoformat(row["read_until"])

    def save_history_cursor(self, account: str, symbol: str, stream: str, until: datetime) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO history_cursors (account, symbol, stream, read_until) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (account, symbol, stream) "
                "DO UPDATE SET read_until = excluded.read_until",
                (account, symbol, stream, until.isoformat()),
            )

    def realized_pnl(self, bot: str, since: datetime | None = None) -> Decimal:
        """Realised PnL net of fees plus funding received (since a time, by fill or funding
        time), summed exactly in Decimal."""
        return self._net("bot", bot, since)

    def account_realized_pnl(self, account: str, since: datetime | None = None) -> Decimal:
        """The same for a whole account, fills of no bot (manual, flatten) included."""
        return self._net("account", account, since)

    def _net(self, column: str, value: str, since: datetime | None) -> Decimal:
        where = f"{column} = %s"
        params: list[Any] = [value]
        if since is not None:  # ISO 8601 UTC text sorts by time; each row is checked again
            where += " AND ts >= %s"
            params.append(since.astimezone(UTC).isoformat()[:19])
        rows = self._rows(
            f"SELECT realized_pnl AS gain, fee AS cost, ts FROM fills WHERE {where} "
            f"UNION ALL SELECT amount, '0', ts FROM funding WHERE {where}",
            params + params,
        )
        total = ZERO
        for r in rows:
            if since is None or datetime.fromisoformat(r["ts"]) >= since:
                total += Decimal(r["gain"]) - Decimal(r["cost"])
        return total

    def save_position(self, bot: str, position: Position) -> None:
        with self._conn() as conn:
            conn.execute(
                """INSERT INTO positions (bot, account, symbol, qty, entry_price,
                       mark_price, leverage, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (bot) DO UPDATE SET account = excluded.account,
                       symbol = excluded.symbol, qty = excluded.qty,
                       entry_price = excluded.entry_price, mark_price = excluded.mark_price,
                       leverage = excluded.leverage, updated_at = excluded.updated_at""",
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
        r = self._row("SELECT * FROM positions WHERE bot = %s", (bot,))
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

    # -- the fleet, for a direct flatten ----------------------------------------

    def live_holders(self, bots: list[str]) -> dict[str, str]:
        """Bots among `bots` that some node holds a live lease on: bot -> node."""
        rows = self._rows(
            "SELECT bot, holder FROM leases WHERE bot = ANY(%s) AND holder IS NOT NULL "
            "AND expires_at > clock_timestamp()",
            (bots,),
        )
        return {r["bot"]: r["holder"] for r in rows}

    # -- adapters' corners: paper accounts, feed cursors, meta ----------------

    def load_paper_account(self, account: str) -> str | None:
        row = self._row("SELECT state FROM paper_accounts WHERE account = %s", (account,))
        return None if row is None else str(row["state"])

    def save_paper_account(self, account: str, state_json: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO paper_accounts (account, state, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (account) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at",
                (account, state_json, _now()),
            )

    def load_feed_cursor(self, feed_key: str) -> datetime | None:
        row = self._row("SELECT closed_at FROM feed_cursors WHERE feed_key = %s", (feed_key,))
        return None if row is None else datetime.fromisoformat(row["closed_at"])

    def save_feed_cursor(self, feed_key: str, closed_at: datetime) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO feed_cursors (feed_key, closed_at) VALUES (%s, %s) "
                "ON CONFLICT (feed_key) DO UPDATE SET closed_at = excluded.closed_at",
                (feed_key, closed_at.isoformat()),
            )

    def notice_other_writers(self) -> None:
        """Nothing to forget: every read asks the database, which other nodes write too."""

    def duty_last_run(self, name: str) -> datetime | None:
        row = self._row("SELECT last_run FROM duty_runs WHERE name = %s", (name,))
        return None if row is None else datetime.fromisoformat(row["last_run"])

    def set_duty_last_run(self, name: str, at: datetime) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO duty_runs (name, last_run) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET last_run = excluded.last_run",
                (name, at.astimezone(UTC).isoformat()),
            )

    def meta(self, key: str) -> str | None:
        row = self._row("SELECT value FROM meta WHERE key = %s", (key,))
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _reason(e: BaseException) -> str:
    """A driver error's first line, scrubbed: libpq quotes hosts and users, never passwords,
    but the scrubber masks anything shaped like one anyway."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return scrub(text)


def _bot_record(row: dict[str, Any]) -> BotRecord:
    return BotRecord(
        name=row["name"],
        desired_state=DesiredState(row["desired_state"]),
        halt_reason=row["halt_reason"],
        owner_uid=row["owner_uid"],
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _order(row: dict[str, Any]) -> Order:
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
