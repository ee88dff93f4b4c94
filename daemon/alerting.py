"""From the config to an Apprise alerter, and the words of each alert the daemon sends.

The `[alerts]` section lists Apprise URLs; a URL's secret part is written `{secret}` and
named by `secret = "..."`, read like exchange keys (`daemon.credentials.load_secret`), so no
token lives in the config, and the alerter only ever names a target by Apprise's privacy form
of its URL. What is worth telling a person is decided at the call sites; this module says it
in one consistent way (the bot's name first, then what happened and what it left).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from daemon.adapters.apprise_alerts import AlertConfigError, AlertTarget, AppriseAlerter, Delivery
from daemon.credentials import load_secret
from daemon.domain.alerts import Alert, AlertThrottle, Severity
from daemon.domain.errors import ConfigError
from daemon.ports import StateStore
from daemon.redaction import scrub
from tradectl.config import SECRET_PLACEHOLDER, LoadedConfig


def alert_targets(
    loaded: LoadedConfig, environ: Mapping[str, str] = os.environ
) -> list[AlertTarget]:
    """Each configured URL with its secret filled in; a ConfigError names the entry."""
    targets = []
    for number, entry in enumerate(loaded.config.alerts.urls):
        url = entry.url
        if entry.secret is not None:
            try:
                url = url.replace(SECRET_PLACEHOLDER, load_secret(entry.secret, environ))
            except ConfigError as e:
                raise ConfigError(f"{loaded.path}: alerts.urls[{number}].secret: {e}") from None
        targets.append(AlertTarget(url, Severity.named(entry.severity)))
    return targets


def build_alerter(
    loaded: LoadedConfig,
    store: StateStore | None,
    environ: Mapping[str, str] = os.environ,
    **options: Any,
) -> AppriseAlerter:
    """The alerter of the config; a delivery that failed after its retries is journalled."""

    def journal_failure(alert: Alert, failed: list[Delivery]) -> None:
        if store is not None:
            store.journal(
                "alert_delivery_failed",
                alert.bot,
                alert=alert.kind,
                targets=[d.target for d in failed],
                status=[d.status for d in failed],
            )

    targets = alert_targets(loaded, environ)
    try:
        return AppriseAlerter(
            targets,
            throttle=AlertThrottle(loaded.config.alerts.repeat_after_s),
            on_failure=journal_failure,
            **options,
        )
    except AlertConfigError as e:
        raise ConfigError(f"{loaded.path}: alerts.urls: {e}") from None


# -- the alerts ---------------------------------------------------------------------------


def halted(bot: str, reason: str, cause: str) -> Alert:
    return Alert(
        "bot_halted",
        Severity.CRITICAL,
        f"tradectl: {bot} halted",
        f"bot {bot} halted ({cause}): {scrub(reason)}; it stays halted until `tradectl resume`",
        bot=bot,
    )


def flattened(
    bots: Sequence[str], rows: Sequence[Mapping[str, Any]], *, asked_by: str, direct: bool
) -> Alert:
    """Who asked, through the daemon or direct, the result, and what is left per symbol."""
    flat = all(r["flat"] for r in rows)
    path = "directly against the exchanges (daemon not used)" if direct else "through the daemon"
    lines = [
        f"flatten of {', '.join(bots) or 'nothing'} asked by {asked_by}, {path}: "
        + ("everything flat" if flat else "NOT flat")
    ]
    for r in rows:
        left = "flat"
        if not r["flat"]:
            left = f"left: position {r['remaining_qty']}, {r['remaining_orders']} open orders"
            if r.get("errors"):
                left += f" ({scrub('; '.join(str(e) for e in r['errors'][-2:]))})"
        lines.append(f"{r['account']} {r['symbol']}: closed {r['closed_qty']}; {left}")
    return Alert(
        "flatten_finished",
        Severity.WARNING if flat else Severity.CRITICAL,
        f"tradectl: flatten {'done' if flat else 'INCOMPLETE'}",
        "\n".join(lines),
        bot=bots[0] if len(bots) == 1 else None,
    )


def errored(bot: str, error: str, retry_in_s: float) -> Alert:
    """The backoff is in the title: the same error again, a little later, is a repeat that
    the throttle holds back (its key is the body), not news."""
    return Alert(
        "bot_errored",
        Severity.WARNING,
        f"tradectl: {bot} errored, backing off {retry_in_s:g} s",
        f"bot {bot} errored: {scrub(error)}; it restarts by itself after a backoff",
        bot=bot,
    )


def unprotected(bot: str, seconds: float) -> Alert:
    return Alert(
        "position_unprotected",
        Severity.CRITICAL,
        f"tradectl: {bot} position unprotected",
        f"bot {bot} holds a position without a resting stop for {seconds:.0f} s",
        bot=bot,
    )


def drift(account: str, differences: Sequence[Mapping[str, Any]]) -> Alert:
    lines = [f"account {account}: the exchange and the store disagree"]
    lines += [f"- {d['what']}" for d in differences]
    return Alert("reconciliation_drift", Severity.WARNING, "tradectl: drift", "\n".join(lines))


def unclean_start(previous: str) -> Alert:
    return Alert(
        "unclean_start",
        Severity.WARNING,
        "tradectl: started after an unclean end",
        f"the daemon started after an unclean end of the run that began {previous} (a crash, "
        "a kill or the watchdog); start-up reconciled every account with its exchange",
    )


def daily_report(day: str, report: Mapping[str, Any]) -> Alert:
    lines = [f"risk day {day}"]
    for scope in ("accounts", "bots"):
        for name, row in report[scope].items():
            lines.append(
                f"{scope[:-1]} {name}: pnl {row['net_pnl']} (fees {row['fees']}, funding "
                f"{row['funding']}), "
                f"{row['trades']} fills, max drawdown {row['max_drawdown']}"
            )
    return Alert("daily_report", Severity.INFO, f"tradectl: daily report {day}", "\n".join(lines))


def test_alert() -> Alert:
    return Alert(
        "alert_test",
        Severity.CRITICAL,  # reaches every target, whatever its severity filter
        "tradectl: test alert",
        "a test from `tradectl alerts test`: this target receives tradectl's alerts",
    )


def delivery_row(delivery: Delivery) -> dict[str, Any]:
    """One delivery for a reply: the target without Apprise's options, secrets masked
    (Apprise's privacy form hides tokens, not every secret part, such as an ntfy topic)."""
    return {
        "target": scrub(delivery.target.split("?", 1)[0]),
        "ok": delivery.ok,
        "status": delivery.status,
        "attempts": delivery.attempts,
    }


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.0001')).normalize():f}"


def user_name(uid: int) -> str:
    """Who asked, for the journal and the alert: the user's name and uid."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
