"""Mutation testing of the modules that guard money and safety: do fast tests see a wrong line?

For each module, mutmut (3.x) makes single-point mutants (a flipped comparison, a changed
constant, a dropped argument, a string replaced) and runs the fast tests that cover the
module against each one. A mutant the tests do not fail on "survived": either a gap in the
tests, or a change that cannot alter behaviour (an equivalent mutant), which must then be
listed in EQUIVALENT below with the reason, and in docs/benchmarks.md.

Each group of modules runs in its own throw-away copy of the checkout (mutmut works in a
`mutants/` folder beside the code it copies), so the worktree is never touched and every
module gets exactly the test files mapped to it. Logging statements are not mutated: a
structlog event is observability, not a decision; what the store journals is mutated.

Prints, per module: mutants, killed, the score, and every survivor as `file:line` with the
line before and after. Exits 1 when a module is under the target or a survivor is unexplained.

Usage: python bench/mutation.py [module ...] [--jobs N] [--suite mapped|fast|full] [--keep]
       python bench/mutation.py --recheck FILE.json [FILE.json ...] [--jobs N]
  module   keys of MODULES (default: all); `--list` prints them
  --suite  mapped: the module's own fast test files (default); fast: every test not marked
           slow; full: the whole suite
  --recheck FILE.json ...
           the survivors recorded by earlier runs' --json, run against every slow test that
           runs in-process (tests/unit and tests/component marked slow): a survivor one of
           them kills is a mutant the full suite catches and the fast tests (`-m "not
           slow"`) may not. Integration tests are left out: they run the daemon and the CLI
           as subprocesses of the installed package, which never sees a mutant.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from difflib import unified_diff
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.90
PACKAGES = ["daemon/", "tradectl/", "strategies/"]
ALSO_COPY = ["data/", "config.toml", "systemd/", "README.md"]
# A structlog call is a report of a decision, not the decision: mutating its event name or
# fields would only measure whether tests read logs.
NOT_MUTATED = [
    r"^\s*(self\.)?_?log\w*\.(debug|info|warning|error|exception|critical)\(",
    r"^\s*log\s*=\s*(self\._log|structlog)",
]
PYTEST_ARGS = ["-p", "no:cacheprovider", "--hypothesis-profile=mutation", "-o", "addopts="]


@dataclass(frozen=True)
class Module:
    path: str
    tests: tuple[str, ...]  # files or globs under the repository
    note: str = ""


MODULES: dict[str, Module] = {
    "risk": Module(
        "daemon/domain/risk.py",
        ("tests/unit/test_risk.py", "tests/unit/test_leverage_brackets.py"),
        note="the leverage brackets (issue 15) are tested in their own file",
    ),
    "health": Module("daemon/domain/health.py", ("tests/unit/test_health.py",)),
    "health-monitor": Module(
        "daemon/runtime/health.py", ("tests/component/test_health_monitor.py",)
    ),
    "paper-model": Module(
        "daemon/domain/paper_model.py",
        (
            "tests/unit/test_paper_model.py",
            "tests/unit/test_paper_exchange.py",
            "tests/unit/test_trigger_orders.py",
            "tests/unit/test_trigger_model.py",
        ),
    ),
    "flatten": Module(
        "daemon/runtime/flatten.py",
        ("tests/component/test_flatten.py", "tests/component/test_fenced_halts.py"),
        note="a loss limit's flatten leaves a bot another node took to it (PostgreSQL)",
    ),
    "reconcile": Module(
        "daemon/runtime/reconcile.py",
        ("tests/component/test_reconcile*.py", "tests/component/test_fenced_cancels.py"),
        note="a fleet's reconciliation leaves a bot another node took to it (PostgreSQL)",
    ),
    "protocol": Module("tradectl/protocol.py", ("tests/unit/test_protocol.py",)),
    "control-server": Module(
        "daemon/control/server.py",
        ("tests/component/test_control_server.py",),
        note="issue 11 reworks it; re-measure after merging",
    ),
    "access": Module(
        "daemon/control/access.py",
        ("tests/unit/test_access*.py",),
        note="the authorisation policy as a pure function (issue 11)",
    ),
    "trader": Module(
        "daemon/domain/trader.py",
        ("tests/unit/test_trader*.py",),
        note="the trading core: (state, event) -> (state, actions) (issue 13)",
    ),
    "protection": Module(
        "daemon/domain/protection.py",
        ("tests/unit/test_protection.py", "tests/unit/test_trader*.py"),
        note="which stop and take-profit should rest, and the next change (issue 13)",
    ),
    "preflight": Module(
        "daemon/preflight.py",
        ("tests/unit/test_preflight.py",),
        note="every check before the store is touched; config check runs it (issue 11)",
    ),
    "runtime-preflight": Module(
        "daemon/runtime/preflight.py",
        ("tests/unit/test_account_preflight.py", "tests/unit/test_usdt_perpetual_symbols.py"),
        note="the account preflight before a real account's bots trade, on a scripted account",
    ),
    "fleet": Module(
        "daemon/domain/fleet.py",
        ("tests/unit/test_fleet_placement.py",),
        note="which node holds which bot, and who takes a free one (the lease book)",
    ),
    "leases": Module(
        "daemon/runtime/leases.py",
        ("tests/component/test_lease_keeper.py",),
        note="the lease keeper of a fleet node, on a fake clock and in-memory tables",
    ),
    **{
        name: Module(f"strategies/indicators/{name}.py", ("tests/unit/test_indicators.py",))
        for name in ("fvg", "swings", "blocks", "liquidity", "structure")
    },
    "indicators-common": Module(
        "strategies/indicators/_common.py",
        ("tests/unit/test_indicators.py",),
        note="first_hit and the input checks every indicator shares",
    ),
}


@dataclass(frozen=True)
class Equivalent:
    path: str  # a file, or a folder for every file in it
    before: str  # the changed part of the source line
    after: str | None  # what the mutant has there instead; None: any change (unreachable)
    reason: str


SIGN = "Side.sign is +1 or -1: multiplying by it and dividing by it give the same Decimal"
RISK, PAPER, PROTOCOL = (
    "daemon/domain/risk.py",
    "daemon/domain/paper_model.py",
    "tradectl/protocol.py",
)
SERVER, MONITOR = "daemon/control/server.py", "daemon/runtime/health.py"
TRADER = "daemon/domain/trader.py"
SIGNAL_READ = (
    "the signal is read only by the signal, after_reversal and enter stages of the candle that "
    "brought it; each of these places clears it after the last of them has read it (or on a "
    "stale candle, which queues none of them), and the next candle replaces it before any reads"
)
FLAT_RETURNED = "a flat position (qty == 0) returned a few lines above"
NEVER_REFUSED = (
    "unreachable: a reversal's close always shrinks the position, which check_intent never "
    "refuses (getting out must always be possible), so _close answers True there"
)
WANTS_CACHE = "a cache: recomputing `protection.wanted` every time gives the same tuple"
SHORTCUT = (
    "a shortcut: with no order resting and no plan (or no position) nothing is wanted, so "
    "next_change would find no change either"
)
HALTED_TODO = (
    "after a halt no request is in flight and none is sent, so nothing unpacks `todo`; None and "
    "() are both empty to `_run` and `busy`, and the next candle sets it again"
)
LIQUIDITY, BLOCKS = "strategies/indicators/liquidity.py", "strategies/indicators/blocks.py"
INDICATORS, STRUCTURE = "strategies/indicators/", "strategies/indicators/structure.py"
FIRST_ROW = (
    "shift's n is 1 by default; the fill only sets the trend before row 0, and row 0 can never "
    "break (a swing is known at row left + right >= 2 at the earliest)"
)
SAME_COLUMN = (
    "the column left undropped is the input's own high, low or close, so attaching it replaces "
    "that column with itself, in place"
)
JOIN_ORDER = (
    "polars' left join keeps the left order today, but documents its default as 'no order "
    "promised, may differ between runs'; maintain_order='left' turns what happens into a "
    "promise, which no test can tell apart from luck"
)
TYPED = (
    "the other branch of the same when/then chain keeps its Int8 literal, and polars types an "
    "integer literal without a dtype by the expression around it: the column stays Int8 (the "
    "documented types are tested) with the same values"
)
TUNING = "a tuning constant of a wait no test can observe without waiting that long"
COMMON = "strategies/indicators/_common.py"
ASKED = "asked = (start.is_not_null() & threshold.is_not_null() & (start < n)).fill_null(False)"
ASKED_WHY = (
    "the mask only spares work: a query it lets through with a null threshold (NaN: every "
    "block clears) or a start at the end (p starts past the last row and stays there) finds "
    "nothing either; it is never null (a null start makes it False before any null)"
)
INT64 = "ROW_DTYPE is Int64, which polars infers from numpy's int64 and int_range's default"
FLATTEN = "daemon/runtime/flatten.py"
ROW_KEPT = (
    "a refused flatten order goes to the store's update_order, which writes only the status, "
    "fills, exchange id and reason of the row its client order id names (both stores); the "
    "account, symbol, side, type, quantity, price and reduce-only flag stay as record_intent "
    "wrote them"
)
LOAD_ORDER = (
    "the load is only compared, to pick the least-loaded node: starting every node at 1, or "
    "counting each lease twice, keeps every node's order and every tie"
)
NEVER_BOUND = (
    "with no socket made (never started, or closed), the path's (device, inode) is compared "
    'with "" instead of skipped: a tuple never equals it, so nothing is removed either way'
)
CLOSE = (
    "close(): connection tasks end at once when cancelled and, on Python 3.11, a closed "
    "Server's wait_closed() returns at once; neither wait can be seen to matter"
)

# Survivors that cannot change behaviour, each with the reason. `before` and `after` are the
# changed part of the line: a survivor matches when its line has `before` and its mutated
# line is that line with `before` replaced by `after`.
EQUIVALENT: list[Equivalent] = [
    Equivalent(
        "daemon/domain/protection.py",
        "pending = False",
        "pending = None",
        "it is only tested for truth, where None and False agree",
    ),
    Equivalent(
        "daemon/domain/protection.py",
        "if (position_qty > 0) != (plan",
        "if (position_qty >= 0) != (plan",
        "a flat position (position_qty == 0) returned on the line above",
    ),
    Equivalent(
        PAPER,
        "open_ if open_ >= trigger else",
        "open_ if open_ > trigger else",
        "when the open equals the trigger, the open and the trigger are the same price",
    ),
    Equivalent(
        PAPER,
        "open_ if open_ <= trigger else",
        "open_ if open_ < trigger else",
        "when the open equals the trigger, the open and the trigger are the same price",
    ),
    Equivalent(TRADER, "return False", "return True", NEVER_REFUSED),
    Equivalent(TRADER, "s.todo = s.todo[1:]", "s.todo = None", NEVER_REFUSED),
    Equivalent(TRADER, "s.todo = s.todo[1:]", "s.todo = s.todo[2:]", NEVER_REFUSED),
    Equivalent(TRADER, "s.signal = None", 's.signal = ""', SIGNAL_READ),
    Equivalent(TRADER, "qty == 0 or s.protected", "qty == 1 or s.protected", FLAT_RETURNED),
    Equivalent(TRADER, "if qty > 0 else s.high", "if qty >= 0 else s.high", FLAT_RETURNED),
    Equivalent(TRADER, "long = qty > 0", "long = qty >= 0", FLAT_RETURNED),
    Equivalent(TRADER, "if (qty > 0) == (signal", "if (qty >= 0) == (signal", FLAT_RETURNED),
    Equivalent(TRADER, 'side = "long" if qty > 0', 'side = "long" if qty >= 0', FLAT_RETURNED),
    Equivalent(
        TRADER,
        "return None if moment is None else",
        "return None if (moment is None) and False else",
        "_iso is given only the time a bot outside its sessions may trade again; outside them "
        "that is always the next open (session_state has none only for windows on no weekday, "
        "and every parsed window has at least one; with no sessions a bot is always in one), "
        "so None never reaches it",
    ),
    Equivalent(TRADER, "s.todo = ()", "s.todo = None", HALTED_TODO),
    Equivalent(
        TRADER,
        "(s.plan is None or facts.position_qty == 0)",
        "(s.plan is None and facts.position_qty == 0)",
        SHORTCUT,
    ),
    Equivalent(TRADER, "facts.position_qty == 0):", "facts.position_qty == 1):", SHORTCUT),
    Equivalent(
        TRADER,
        '{change.purpose or ""}',
        '{change.purpose or "XXXX"}',
        "every change has a purpose (next_change returns only stop and take-profit orders, and "
        "a Wanted always has one): the fallback is never used",
    ),
    Equivalent(
        TRADER,
        "daily_pnl=facts.bot_realized + facts.unrealized,",
        "daily_pnl=facts.bot_realized - facts.unrealized,",
        "an entry is sent only when flat, where the unrealised PnL is 0; a close returns from "
        "check_intent before its loss rule",
    ),
    Equivalent(TRADER, "key = s.wants_for", "key = None", WANTS_CACHE),
    Equivalent(TRADER, "key[0] != qty", "key[1] != qty", WANTS_CACHE),
    Equivalent(TRADER, "s.wants_for = (qty, plan)", "s.wants_for = None", WANTS_CACHE),
    Equivalent(RISK, "intent.qty * intent.side.sign", "intent.qty / intent.side.sign", SIGN),
    Equivalent(
        RISK,
        "stop_distance <= 0 or equity <= 0",
        "stop_distance <= 0 and equity <= 0",
        "a Signal never has its stop at its entry, so stop_distance > 0 and the guard reduces to "
        "equity <= 0, whose size (0 or negative) the minimum-amount check refuses anyway",
    ),
    Equivalent(
        RISK,
        'return Sizing(ZERO, "stop", f"the signal\'s stop {signal.stop} is at its entry")',
        None,
        "unreachable: a Signal cannot be made with its stop at its entry (it checks "
        "stop < entry < take_profit, or the reverse for a short)",
    ),
    Equivalent(
        RISK,
        "stop_distance <= 0",
        "stop_distance < 0",
        "a Signal never has its stop at its entry (it checks stop < entry < take_profit)",
    ),
    Equivalent(
        RISK,
        "equity <= 0",
        "equity < 0",
        "with equity 0 the budget is 0, the size rounds to 0 and the minimum-amount check says 0",
    ),
    Equivalent(
        RISK,
        "(after > 0) == (position_qty > 0)",
        "(after >= 0) == (position_qty > 0)",
        "after == 0 is answered by the left side of the `or`; elsewhere >= 0 and > 0 agree",
    ),
    Equivalent(
        RISK,
        "(after > 0) == (position_qty > 0)",
        "(after > 0) == (position_qty >= 0)",
        "a position of 0 gets here only with after != 0, which the size test already refused",
    ),
    Equivalent(PAPER, "qty * side.sign", "qty / side.sign", SIGN),
    Equivalent(PAPER, "holding.qty * side.sign", "holding.qty / side.sign", SIGN),
    Equivalent(
        PAPER,
        "closed * direction",
        "closed / direction",
        "direction is +1 or -1: multiplying and dividing by it give the same Decimal",
    ),
    Equivalent(
        PAPER,
        "(old > 0) == (signed > 0)",
        "(old >= 0) == (signed > 0)",
        "old == 0 is answered by the left side of the `or`",
    ),
    Equivalent(
        PAPER,
        "(old > 0) == (signed > 0)",
        "(old > 0) == (signed >= 0)",
        "signed is 0 only for a zero quantity, which both branches turn into the same "
        "unchanged holding with nothing realised, closed or opened",
    ),
    Equivalent(
        PAPER,
        "direction = 1 if old > 0 else -1",
        "direction = 1 if old >= 0 else -1",
        "old == 0 never gets here: a fill from flat takes the first branch",
    ),
    Equivalent(
        PAPER,
        "elif (new > 0) == (old > 0):",
        "elif (new >= 0) == (old > 0):",
        "new == 0 is answered by the `if` above",
    ),
    Equivalent(
        PAPER,
        "elif (new > 0) == (old > 0):",
        "elif (new > 0) == (old >= 0):",
        "old == 0 never gets here: a fill from flat takes the first branch",
    ),
    Equivalent(
        PROTOCOL,
        "ensure_ascii=False",
        "ensure_ascii=None",
        "json.dumps only tests ensure_ascii for truth: None and False are the same",
    ),
    Equivalent(
        PROTOCOL,
        "args=args, v=version)",
        "args=args, )",
        "version is PROTOCOL_VERSION here (any other was refused above), which is the default",
    ),
    Equivalent(SERVER, 'calcsize("iII")', 'calcsize("iii")', "only the size is asked: 12 bytes"),
    Equivalent(SERVER, 'calcsize("iII")', 'calcsize("III")', "only the size is asked: 12 bytes"),
    Equivalent(
        SERVER,
        'unpack("iII", raw)',
        'unpack("III", raw)',
        "a pid is positive, so reading it signed or unsigned gives the same number",
    ),
    Equivalent(
        SERVER,
        "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)",
        "socket.socket(socket.SOCK_STREAM)",
        "on Linux SOCK_STREAM and AF_UNIX are both 1, and the type defaults to SOCK_STREAM",
    ),
    Equivalent(
        SERVER,
        "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)",
        "socket.socket(socket.AF_UNIX, )",
        "the type defaults to SOCK_STREAM",
    ),
    Equivalent(SERVER, "probe.settimeout(1.0)", "probe.settimeout(2.0)", TUNING),
    Equivalent(
        SERVER,
        "missing_ok=True",
        "missing_ok=None",
        "differs only if another process removes the stale socket between probe and unlink",
    ),
    Equivalent(
        SERVER,
        "missing_ok=True",
        "missing_ok=False",
        "differs only if another process removes the stale socket between probe and unlink",
    ),
    Equivalent(
        SERVER,
        "with contextlib.suppress(Exception):",
        "with contextlib.suppress(None):",
        "the suppressed call (a drain or wait_closed on a connection being dropped) raises in "
        "no test: asyncio's transport absorbs the errors a vanished client causes",
    ),
    Equivalent(SERVER, "writer.drain(), 1.0)", "writer.drain(), 2.0)", TUNING),
    Equivalent(SERVER, "timeout=2.0)", "timeout=None)", CLOSE),
    Equivalent(SERVER, ", timeout=2.0)", ", )", CLOSE),
    Equivalent(SERVER, "timeout=2.0)", "timeout=3.0)", CLOSE),
    Equivalent(SERVER, "self._server.wait_closed(), 2.0)", "None, 2.0)", CLOSE),
    Equivalent(
        SERVER, "self._server.wait_closed(), 2.0)", "self._server.wait_closed(), None)", CLOSE
    ),
    Equivalent(SERVER, "self._server.wait_closed(), 2.0)", "2.0)", CLOSE),
    Equivalent(
        SERVER, "self._server.wait_closed(), 2.0)", "self._server.wait_closed(), 3.0)", CLOSE
    ),
    Equivalent(
        SERVER,
        ", limit=MAX_REQUEST_BYTES + 1",
        ", )",
        "outside the contract: the stream limit only decides whether a frame a byte or two over "
        "the limit closes the connection or is refused by the parser; both answer "
        "frame_too_large (the default limit, 64 KiB, is MAX_REQUEST_BYTES itself)",
    ),
    Equivalent(
        SERVER,
        "limit=MAX_REQUEST_BYTES + 1",
        "limit=MAX_REQUEST_BYTES - 1",
        "outside the contract: a frame one byte over the limit is refused with frame_too_large "
        "either way; only whether the connection stays open afterwards differs",
    ),
    Equivalent(
        SERVER,
        "limit=MAX_REQUEST_BYTES + 1",
        "limit=MAX_REQUEST_BYTES + 2",
        "outside the contract: frames over the limit are refused by the parser either way",
    ),
    Equivalent(
        SERVER,
        "self._bound: tuple[int, int] | None = None",
        'self._bound: tuple[int, int] | None = ""',
        NEVER_BOUND,
    ),
    Equivalent(SERVER, "self._bound = None", 'self._bound = ""', NEVER_BOUND),
    Equivalent(
        SERVER,
        "error, reply.v)",
        "error, )",
        "every reply is made by ok_reply or error_reply with the protocol's one version, which "
        "is also Reply's default",
    ),
    Equivalent(
        SERVER,
        "self._connections.pop(task, None)",
        "self._connections.pop(task, )",
        "the task was added to the pool before the `try` and only this `finally` removes it "
        "(close() cancels tasks, it does not remove them): the key is always there",
    ),
    *(
        Equivalent(FLATTEN, f"{name}=intent.{name},", f"{name}=None,", ROW_KEPT)
        for name in ("account", "symbol", "side", "type", "qty", "price", "reduce_only")
    ),
    Equivalent(
        FLATTEN,
        "if p.symbol == symbol), ZERO)",
        "if p.symbol == symbol), )",
        "with no position the sum starts from int 0 instead of Decimal 0: equal to it, shown "
        "and stored as the same '0'; with one, int 0 + Decimal is that Decimal",
    ),
    Equivalent(
        "daemon/domain/fleet.py",
        "load = dict.fromkeys(live, 0)",
        "load = dict.fromkeys(live, 1)",
        LOAD_ORDER,
    ),
    Equivalent(
        "daemon/domain/fleet.py", "load[lease.holder] += 1", "load[lease.holder] += 2", LOAD_ORDER
    ),
    *(
        Equivalent(
            "daemon/runtime/preflight.py",
            'if difference > 0 else "behind"',
            f'if difference {after} else "behind"',
            "the direction is named only for a clock more than 2 s off; 0 and 1 ms never are",
        )
        for after in (">= 0", "> 1")
    ),
    Equivalent(
        MONITOR,
        "last_error = None",
        'last_error = ""',
        "it is only tested for truth (`if problem`), where None and an empty string agree",
    ),
    Equivalent(BLOCKS, '.drop("high", "low", "close")', '.drop("low", "close")', SAME_COLUMN),
    Equivalent(BLOCKS, '.drop("high", "low", "close")', '.drop("high", "close")', SAME_COLUMN),
    Equivalent(BLOCKS, '.drop("high", "low", "close")', '.drop("high", "low", )', SAME_COLUMN),
    Equivalent(
        INDICATORS,
        "*swing_exprs(left, right)[:2]",
        "*swing_exprs(left, right)[:3]",
        "the extra swing_high_known_at column is never read: what follows derives its own",
    ),
    Equivalent(
        LIQUIDITY,
        "highs=False)",
        "highs=None)",
        "the flag is only tested for truth, where None and False agree",
    ),
    Equivalent(INDICATORS, 'maintain_order="left", ', "maintain_order=None, ", JOIN_ORDER),
    Equivalent(INDICATORS, 'maintain_order="left", ', "", JOIN_ORDER),
    Equivalent(INDICATORS, 'maintain_order="left")', "maintain_order=None)", JOIN_ORDER),
    Equivalent(INDICATORS, ', maintain_order="left")', ", )", JOIN_ORDER),
    *(
        Equivalent(INDICATORS, f"pl.lit({sign}, SIGN_DTYPE)", f"pl.lit({sign}, {dropped})", TYPED)
        for sign in ("1", "-1")
        for dropped in ("None", "")
    ),
    Equivalent(STRUCTURE, "shift(1, fill_value=0)", "shift(1, fill_value=None)", FIRST_ROW),
    Equivalent(STRUCTURE, "shift(1, fill_value=0)", "shift(fill_value=0)", FIRST_ROW),
    Equivalent(STRUCTURE, "shift(1, fill_value=0)", "shift(1, )", FIRST_ROW),
    Equivalent(STRUCTURE, "shift(1, fill_value=0)", "shift(1, fill_value=1)", FIRST_ROW),
    Equivalent(
        INDICATORS,
        "strict=False,",
        "strict=None,",
        "first_hit only tests strict for truth, where None and False agree",
    ),
    Equivalent(
        INDICATORS,
        "strict=False)",
        "strict=None)",
        "first_hit only tests strict for truth, where None and False agree",
    ),
    *(
        Equivalent(COMMON, ASKED, ASKED.replace(old, new, 1), ASKED_WHY)
        for old, new in (
            ("threshold.is_not_null() & (start", "threshold.is_not_null() | (start"),
            ("start.is_not_null() & threshold", "start.is_not_null() | threshold"),
            ("(start < n)", "(start <= n)"),
            ("fill_null(False)", "fill_null(True)"),
        )
    ),
    Equivalent(
        COMMON, "pl.Series(answers, dtype=ROW_DTYPE)", "pl.Series(answers, dtype=None)", INT64
    ),
    Equivalent(COMMON, "pl.Series(answers, dtype=ROW_DTYPE)", "pl.Series(answers, )", INT64),
    Equivalent(COMMON, "int_range(pl.len(), dtype=ROW_DTYPE)", "int_range(pl.len(), )", INT64),
    Equivalent(
        FLATTEN,
        "fenced: bool = False,",
        "fenced: bool = True,",
        "_flatten_symbol's one caller always passes `fenced`: its default is never used",
    ),
    Equivalent(
        LIQUIDITY,
        'pools["liquidity_known_at"] + 1',
        'pools["liquidity_known_at"] - 1',
        "the rows from the touch to its known-at row are the swing's right-hand window, whose "
        "highs (lows) cannot pass the swing's own, let alone the pool's level: starting the "
        "sweep search two rows earlier finds the same first sweep",
    ),
    Equivalent(
        LIQUIDITY,
        ".fill_null(True).cum_sum()",
        ".fill_null(False).cum_sum()",
        "only the first swing has no previous one: its run is numbered 0 instead of 1, and "
        "every later run one lower; runs are only ever grouped by, never read as numbers",
    ),
]


@dataclass
class Survivor:
    name: str
    status: str
    line: int
    before: str
    after: str
    equivalent: Equivalent | None = None


@dataclass
class Outcome:
    module: str
    path: str
    total: int = 0
    killed: int = 0
    timeouts: int = 0  # counted as killed; shown so that a hang in the harness stands out
    survivors: list[Survivor] = field(default_factory=list)
    error: str = ""

    @property
    def score(self) -> float:
        return self.killed / self.total if self.total else 0.0

    @property
    def unexplained(self) -> list[Survivor]:
        return [s for s in self.survivors if s.equivalent is None]


def checkout_files() -> list[Path]:
    """Tracked and new files of the checkout (not ignored ones), as the tests would see them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return [Path(p.decode()) for p in listed if p and (REPO / p.decode()).is_file()]


def copy_checkout(into: Path) -> None:
    for relative in checkout_files():
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)


def test_files(module: Module) -> list[str]:
    found = sorted({str(p.relative_to(REPO)) for t in module.tests for p in REPO.glob(t)})
    return found


def mutmut_config(paths: list[str], tests: list[str], extra_args: list[str]) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return (
        "\n[tool.mutmut]\n"
        f"source_paths = {toml_list(PACKAGES)}\n"
        f"only_mutate = {toml_list(paths)}\n"
        f"also_copy = {toml_list(ALSO_COPY)}\n"
        f"pytest_add_cli_args = {toml_list(PYTEST_ARGS + extra_args)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        f"do_not_mutate_patterns = {toml_list(NOT_MUTATED)}\n"
        # Fork each mutant from a server that has imported nothing of ours when the tests import
        # polars: it starts threads when imported (jemalloc, its pool), and a child forked from a
        # process that has them can hang on a lock one of them held; a hung mutant would count
        # as a timeout (killed). Tests that never import polars are collected once in the server
        # and each mutant forks warm: seconds of imports saved per mutant.
        'process_isolation = "forkserver"\n'
        f'forkserver_warmup = "{"none" if imports_polars(tests) else "collect"}"\n'
    )


def imports_polars(tests: list[str]) -> bool:
    """Whether importing these test files (or anything under these folders) loads polars."""
    files = [
        p for t in tests for p in ([REPO / t] if t.endswith(".py") else (REPO / t).rglob("*.py"))
    ]
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in files]
    probe = (
        "import importlib, sys\n"
        + "".join(f"importlib.import_module({m!r})\n" for m in modules)
        + "print('polars' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    return result.stdout.strip() != "False"  # an import that fails: assume the worst


def without_mutmut_section(pyproject: str) -> str:
    return re.sub(r"\n\[tool\.mutmut\]\n(?:(?!\n\[).)*", "\n", pyproject, flags=re.S)


def prepare_work(work: Path, paths: list[str], tests: list[str], extra_args: list[str]) -> str:
    """Copy the checkout into `work`, configured to mutate `paths` against `tests`; the
    mutmut command to run there."""
    copy_checkout(work)
    pyproject = work / "pyproject.toml"
    config = mutmut_config(paths, tests, extra_args)
    pyproject.write_text(without_mutmut_section(pyproject.read_text()) + config)
    return str(Path(sys.executable).parent / "mutmut")


def run_group(
    keys: list[str], tests: list[str], extra_args: list[str], jobs: int, keep: bool
) -> list[Outcome]:
    """One mutmut run over the modules that share a test selection."""
    modules = [MODULES[k] for k in keys]
    outcomes = [Outcome(k, MODULES[k].path) for k in keys]
    work = Path(tempfile.mkdtemp(prefix="tc-mutation-"))
    try:
        mutmut = prepare_work(work, [m.path for m in modules], tests, extra_args)
        run = subprocess.run(
            [mutmut, "run", "--max-children", str(jobs)],
            cwd=work,
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            tail = (run.stdout + run.stderr)[-3000:]
            for outcome in outcomes:
                outcome.error = f"mutmut exited {run.returncode}:\n{without_spinner(tail)}"
            return outcomes
        for outcome in outcomes:
            collect(work, outcome)
        return outcomes
    finally:
        if keep:
            print(f"  (kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)


IN_PROCESS_SLOW = ["tests/unit", "tests/component"]


@dataclass
class Recheck:
    """A survivor of an earlier run, as its --json recorded it, and what the slow tests say."""

    module: str
    path: str
    name: str
    line: int
    before: str
    after: str
    status: str = "not run"


def recheck_survivors(files: list[Path], jobs: int, stop_after_s: float | None = None) -> bool:
    """Run the recorded survivors against the slow in-process tests, in one mutmut run (one
    collection of which test reaches which function). False when one is killed there, or a
    survivor no longer names the same change (the source moved since: run the module again).
    `stop_after_s`: stop mutmut then and report the survivors it has not reached as not run
    (it runs the quickest first)."""
    from mutmut.stats import status_by_exit_code

    rechecks = [
        Recheck(o["module"], o["path"], s["name"], s["line"], s["before"], s["after"])
        for f in files
        for o in json.loads(f.read_text())
        for s in o["survivors"]
    ]
    if not rechecks:
        print("no survivors recorded in " + " ".join(map(str, files)))
        return True
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tc-recheck-"))
    try:
        paths = sorted({r.path for r in rechecks})
        mutmut = prepare_work(work, paths, IN_PROCESS_SLOW, ["-m", "slow"])
        print(f"rechecking {len(rechecks)} survivors against the slow tests of {paths} ...")
        log = work / "recheck.log"
        with log.open("w") as out:
            run = subprocess.Popen(
                [mutmut, "run", "--max-children", str(jobs), *(r.name for r in rechecks)],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                run.wait(timeout=stop_after_s)
            except subprocess.TimeoutExpired:  # keep what was measured: mutmut saves as it goes
                print(f"  stopped after {stop_after_s:.0f} s; the rest is 'not run'")
                run.send_signal(signal.SIGINT)
                try:
                    run.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    run.kill()
                    run.wait()
        if run.returncode not in (0, -signal.SIGINT) and not stop_after_s:
            print(f"mutmut exited {run.returncode}:\n{without_spinner(log.read_text())}")
            return False
        good = True
        for path in paths:
            meta = json.loads((work / "mutants" / (path + ".meta")).read_text())
            source = (work / path).read_text()
            diff_of = mutant_diffs(work / "mutants" / path, path)
            for r in (r for r in rechecks if r.path == path):
                _, before, after = locate(source, r.name, diff_of(r.name))
                if (before, after) != (r.before, r.after):
                    r.status = f"MOVED: now {before!r} -> {after!r}"
                    good = False
                    continue
                code = meta["exit_code_by_key"].get(r.name)
                r.status = "not run" if code is None else status_by_exit_code[code]
                good = good and r.status not in ("killed", "timeout")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nsurvivors against the slow in-process tests ({' '.join(IN_PROCESS_SLOW)}, -m slow):")
    for r in rechecks:
        flag = "  <-- KILLED BY A SLOW TEST" if r.status in ("killed", "timeout") else ""
        print(f"  {r.path}:{r.line} [{r.status}]{flag}\n      - {r.before}\n      + {r.after}")
    counts = {
        status: sum(r.status == status for r in rechecks) for status in {r.status for r in rechecks}
    }
    print(f"\n{len(rechecks)} survivors: {counts}; {time.monotonic() - began:.0f} s")
    return good


def without_spinner(output: str) -> str:
    """mutmut's output without its progress spinner, which fills any tail of it."""
    lines = [
        line
        for line in output.splitlines()
        if not line.lstrip("⠁⠂⠄⡀⢀⠠⠐⠈⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ").startswith(("Running", "Generating"))
    ]
    return "\n".join(lines)[-3000:]


def collect(work: Path, outcome: Outcome) -> None:
    from mutmut.stats import status_by_exit_code

    meta = json.loads((work / "mutants" / (outcome.path + ".meta")).read_text())
    source = (work / outcome.path).read_text()
    diff_of = mutant_diffs(work / "mutants" / outcome.path, outcome.path)
    for name, exit_code in sorted(meta["exit_code_by_key"].items(), key=mutant_order):
        status = status_by_exit_code[exit_code]
        outcome.total += 1
        if status in ("killed", "timeout", "caught by type check"):
            outcome.killed += 1
            outcome.timeouts += status == "timeout"
            continue
        line, before, after = locate(source, name, diff_of(name))
        survivor = Survivor(name, status, line, before, after)
        survivor.equivalent = next(
            (
                e
                for e in EQUIVALENT
                if outcome.path.startswith(e.path)
                and e.before in before
                and (e.after is None or before.replace(e.before, e.after, 1) == after)
            ),
            None,
        )
        outcome.survivors.append(survivor)


def mutant_diffs(mutated: Path, path: str) -> Callable[[str], str]:
    """What `mutmut show NAME` prints, from one parse of the mutated file: a `mutmut show`
    per survivor parses it again each time, minutes for a module with many survivors."""
    import libcst as cst
    from mutmut.mutation.diff_apply import read_mutant_function, read_original_function

    module = cst.parse_module(mutated.read_text())

    def diff_of(name: str) -> str:
        functions = (read_original_function(module, name), read_mutant_function(module, name))
        before, after = (cst.Module([f]).code.strip().split("\n") for f in functions)
        return "\n".join(unified_diff(before, after, fromfile=path, tofile=path, lineterm=""))

    return diff_of


def mutant_order(item: tuple[str, object]) -> tuple[str, int]:
    name = item[0]
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


def function_line(source: str, mangled: str) -> int:
    """The `def` line of a function named as mutmut names it (`x_f` or `xǁClassǁmethod`)."""
    parts = mangled[1:].split("ǁ")[1:] if mangled.startswith("xǁ") else [mangled[2:]]
    body: list[ast.stmt] = ast.parse(source).body
    line = 1
    for part in parts:
        node = next(
            n
            for n in body
            if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and n.name == part
        )
        line, body = node.lineno, node.body
    return line


def locate(source: str, name: str, diff: str) -> tuple[int, str, str]:
    """The file line a mutant changes, with the source line and its mutated version."""
    mangled = name.rpartition(".")[2].rpartition("__mutmut_")[0]
    start = function_line(source, mangled)
    lines = source.splitlines()
    offset, before, after = 0, "", ""
    at = None
    for row in diff.splitlines():
        if row.startswith("@@"):
            at = int(row.split()[1].split(",")[0][1:]) - 1
            continue
        if at is None or row.startswith(("---", "+++")):
            continue
        if row.startswith("-"):
            if not before:
                before, offset = row[1:].strip(), at
            at += 1
        elif row.startswith("+"):
            after = after or row[1:].strip()
        else:
            at += 1
    line = start + offset
    for candidate in range(max(line - 3, 1), min(line + 4, len(lines) + 1)):  # decorators
        if lines[candidate - 1].strip() == before:
            line = candidate
            break
    return line, before, after


def report(outcomes: list[Outcome], suite: str, seconds: float) -> bool:
    print(f"\nmutation score per module ({suite} tests), target {TARGET:.0%}:")
    print(f"  {'module':<18} {'mutants':>7} {'killed':>7} {'timeout':>7} {'score':>7}  survivors")
    good = True
    for o in outcomes:
        if o.error:
            print(f"  {o.module:<18} {'-':>7} {'-':>7} {'-':>7} {'-':>7}  NOT MEASURED: {o.error}")
            good = False
            continue
        explained = len(o.survivors) - len(o.unexplained)
        short = o.score < TARGET or o.unexplained
        flag = "  <-- BELOW TARGET OR UNEXPLAINED" if short else ""
        print(
            f"  {o.module:<18} {o.total:>7} {o.killed:>7} {o.timeouts:>7} {o.score:>7.1%}"
            f"  {len(o.survivors)} ({explained} equivalent){flag}"
        )
        good = good and not flag
    for o in outcomes:
        if not o.survivors:
            continue
        print(f"\n{o.path}:")
        for s in o.survivors:
            why = f"equivalent: {s.equivalent.reason}" if s.equivalent else s.status.upper()
            print(f"  {o.path}:{s.line}  [{why}]")
            print(f"      - {s.before}")
            print(f"      + {s.after}")
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s")
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="keys of MODULES (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--suite", choices=("mapped", "fast", "full"), default="mapped")
    parser.add_argument("--keep", action="store_true", help="keep the working copies")
    parser.add_argument("--list", action="store_true", help="print the modules and tests")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this file")
    parser.add_argument(
        "--recheck",
        type=Path,
        nargs="+",
        metavar="FILE.json",
        help="earlier runs' --json: their survivors against the slow in-process tests",
    )
    parser.add_argument(
        "--stop-after", type=float, metavar="SECONDS", help="with --recheck: a time budget"
    )
    args = parser.parse_args()
    if args.recheck:
        return 0 if recheck_survivors(args.recheck, args.jobs, args.stop_after) else 1
    keys = args.modules or list(MODULES)
    unknown = [k for k in keys if k not in MODULES]
    if unknown:
        parser.error(f"unknown modules {unknown}; known: {', '.join(MODULES)}")
    if args.list:
        for key in keys:
            module = MODULES[key]
            print(f"{key:<18} {module.path:<36} {' '.join(test_files(module)) or '(no tests)'}")
        return 0

    began = time.monotonic()
    outcomes: list[Outcome] = []
    groups: dict[tuple[str, ...], list[str]] = {}
    for key in keys:
        module = MODULES[key]
        if not (REPO / module.path).exists():
            missing = f"not in this checkout ({module.note})"
            outcomes.append(Outcome(key, module.path, error=missing))
            continue
        tests = {"mapped": tuple(test_files(module)), "fast": ("tests",), "full": ("tests",)}
        selection = tests[args.suite]
        if not selection:
            outcomes.append(Outcome(key, module.path, error=f"no test files ({module.tests})"))
            continue
        groups.setdefault(selection, []).append(key)
    extra = ["-m", "not slow"] if args.suite == "fast" else []
    for selection, group in groups.items():
        print(f"mutating {', '.join(group)} against {' '.join(selection)} ...", flush=True)
        done = run_group(group, list(selection), extra, args.jobs, args.keep)
        for o in done:  # as each group ends: a long run can be stopped without losing these
            print(
                f"  {o.module}: {o.killed}/{o.total} killed ({o.score:.1%}), "
                f"{len(o.unexplained)} unexplained survivors {o.error}",
                flush=True,
            )
        outcomes += done
        if args.json:
            args.json.write_text(json.dumps([as_json(o) for o in outcomes], indent=1) + "\n")
    outcomes.sort(key=lambda o: keys.index(o.module))
    if args.json:
        args.json.write_text(json.dumps([as_json(o) for o in outcomes], indent=1) + "\n")
    return 0 if report(outcomes, args.suite, time.monotonic() - began) else 1


def as_json(outcome: Outcome) -> dict[str, object]:
    return {
        "module": outcome.module,
        "path": outcome.path,
        "mutants": outcome.total,
        "killed": outcome.killed,
        "timeouts": outcome.timeouts,
        "score": round(outcome.score, 4),
        "error": outcome.error,
        "survivors": [
            {
                "name": s.name,
                "line": s.line,
                "before": s.before,
                "after": s.after,
                "status": s.status,
                "equivalent": None if s.equivalent is None else s.equivalent.reason,
            }
            for s in outcome.survivors
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
