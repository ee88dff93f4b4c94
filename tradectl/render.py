"""Tables for people; `--json` output for programs is the daemon's result as it is."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 account`, `2 accounts`, `0 trades`."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def money(value: Any) -> str:
    """USDT to the cent, as a trader reads it; the daemon's JSON keeps every digit."""
    if value is None:
        return "-"
    try:
        return f"{Decimal(str(value)):.2f}"
    except InvalidOperation:
        return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def status_text(status: dict[str, Any]) -> str:
    d = status["daemon"]
    head = (
        f"daemon pid {d['pid']}  version {d['version']}  up {duration(d['uptime_s'])}\n"
        f"socket {d['socket']}  state {d['state_dir']}"
    )
    if d.get("store_unreachable"):
        head += f"\nstate store unreachable, shown from memory: {d['store_unreachable']}"
    bots = status["bots"]
    if not bots:
        return head + "\nno bots configured"
    rows = [
        [
            b["name"],
            b["state"] + (f" ({b['halt_reason']})" if b.get("halt_reason") else ""),
            b["symbol"],
            b["strategy"],
            duration(b["last_candle_age_s"]),
            _position(b),
            _protection(b),
            b["open_orders"],
            _session(b),
            money(b["realized_pnl"]),
        ]
        for b in bots
    ]
    text = (
        head
        + "\n\n"
        + table(
            [
                "bot",
                "state",
                "symbol",
                "strategy",
                "candle age",
                "position",
                "protected",
                "orders",
                "session",
                "realized pnl",
            ],
            rows,
        )
    )
    errors = [f"  {b['name']}: {b['error']}" for b in bots if b.get("error")]
    errors += [f"  {b['name']}: {b['last_problem']}" for b in bots if b.get("last_problem")]
    if errors:
        text += "\n\nerrors:\n" + "\n".join(errors)
    return text


def schedule_text(result: dict[str, Any]) -> str:
    jobs = table(
        ["job", "next run (utc)", f"next run ({result['host_zone']})", "last run (utc)", "what"],
        [
            [
                j["name"],
                _minute(j["next_run_utc"]),
                _minute(j["next_run_local"]),
                _minute(j["last_run_utc"]),
                j["description"],
            ]
            for j in result["jobs"]
        ],
    )
    sessions = table(
        ["bot", "in session", "next change (utc)", "at session end", "sessions"],
        [
            [
                s["bot"],
                s["in_session"],
                _minute(s["next_session_change"]),
                s["session_end"],
                "; ".join(s["sessions"]) or "always",
            ]
            for s in result["sessions"]
        ],
    )
    return jobs + "\n\n" + sessions


def _minute(iso: str | None) -> str | None:
    return None if iso is None else iso[:16].replace("T", " ")


def alerts_test_text(result: dict[str, Any]) -> str:
    deliveries = result["deliveries"]
    if not deliveries:
        return "no alert URLs configured ([alerts] urls in the config)"
    rows = [[d["target"], d["status"], d["attempts"]] for d in deliveries]
    return f"sent {result['via']}:\n" + table(["target", "result", "attempts"], rows)


def _session(bot: dict[str, Any]) -> str:
    """ "in until 09:00Z", "out, opens Mon 06:00Z", or "-" for a bot without sessions."""
    change = bot.get("next_session_change")
    if not bot.get("sessions") or change is None:
        return "-"
    when = change[:16].replace("T", " ")
    return f"in, closes {when}Z" if bot.get("in_session") else f"out, opens {when}Z"


def _position(bot: dict[str, Any]) -> str:
    if bot.get("position_side", "flat") == "flat":
        return "flat"
    qty = bot["position_qty"].lstrip("-")
    return f"{bot['position_side']} {qty} @ {bot['entry_price']}"


def _protection(bot: dict[str, Any]) -> str:
    """Whether a resting stop covers the position: "-" when flat, "NO" stands out."""
    if bot.get("position_side", "flat") == "flat" or "protected" not in bot:
        return "-"
    return "yes" if bot["protected"] else "NO"


def positions_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no open positions"
    return table(
        ["bot", "account", "symbol", "side", "qty", "entry", "mark", "unrealized pnl", "lev"],
        [
            [
                r["bot"] or "(not ours)",
                r["account"],
                r["symbol"],
                r["side"],
                r["qty"],
                r["entry_price"],
                r["mark_price"],
                money(r["unrealized_pnl"]),
                r["leverage"],
            ]
            for r in rows
        ],
    )


def orders_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no open orders"
    return table(
        [
            "bot",
            "symbol",
            "client order id",
            "side",
            "type",
            "qty",
            "price",
            "trigger",
            "filled",
            "status",
        ],
        [
            [
                r["bot"] or "(not ours)",
                r["symbol"],
                r["client_order_id"],
                r["side"],
                r["type"],
                r["qty"],
                r["price"],
                r.get("trigger_price"),
                r["filled_qty"],
                r["status"],
            ]
            for r in rows
        ],
    )


def flatten_text(result: dict[str, Any]) -> str:
    lines = []
    if result.get("direct"):
        why = result.get("direct_reason") or "daemon unreachable"
        lines.append(f"flattened directly against the exchanges ({why})")
    if result.get("store_warning"):
        lines.append(f"WARNING: {result['store_warning']}")
    if result.get("halted"):
        lines.append(f"halted: {', '.join(result['halted'])}")
    for r in result["symbols"]:
        who = r["owner"] or "not ours: no configured bot trades it"
        head = f"{r['account']} {r['symbol']} ({who}): "
        done = f"cancelled {plural(len(r['cancelled']), 'order')}, closed {r['closed_qty']}"
        if r["flat"]:
            lines.append(head + "flat; " + done)
        else:
            lines.append(
                head
                + f"NOT FLAT: {r['remaining_qty']} left, "
                + f"{plural(r['remaining_orders'], 'open order')}; "
                + done
            )
        lines.extend(f"    {e}" for e in r["errors"][-3:])
    if not result["symbols"]:
        lines.append("nothing to flatten: no orders and no positions")
    lines.append("all flat" if result["flat"] else "NOT FLAT")
    return "\n".join(lines)
