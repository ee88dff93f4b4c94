"""The `tradectl` command line. Commands are thin: parse, call the daemon, render, exit.

Exit codes: 0 done; 1 refused or failed; 2 usage error; 3 daemon not reachable
(the message names the socket path); 66 the state store an earlier run left is gone
(EX_NOINPUT); 74 the state folder or store cannot be used (EX_IOERR); 77 the server on
the socket is not the daemon (EX_NOPERM); 78 bad configuration or an untrusted folder
(EX_CONFIG).
Global options (`--config`, `--json`, `--wait`) are taken before or after any command:
`main` lifts them out of the command line before Typer parses the rest. With `--json`,
every failure is one JSON object on stdout, `{"error": {"code", "message", "exit_code"}}`,
and the exit code stays the same.
This module imports neither ccxt, polars nor the daemon unless a command needs them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from tradectl import paths
from tradectl.client import (
    ControlClient,
    DaemonError,
    DaemonUnreachable,
    UntrustedServer,
    trusted_server_uids,
)
from tradectl.errors import ConfigError
from tradectl.protocol import Command, ErrorCode
from tradectl.render import (
    alerts_test_text,
    as_json,
    flatten_text,
    orders_text,
    plural,
    positions_text,
    schedule_text,
    status_text,
)
from tradectl.typer_params import LightGroup

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_STORE_MISSING = 66
EXIT_STORAGE = 74
EXIT_UNTRUSTED = 77
EXIT_CONFIG = 78

EXIT_CODES_HELP = (
    "Exit codes: 0 done, 1 refused or failed, 2 usage error, "
    "3 daemon not reachable, 66 state store gone, 74 state folder or store unusable, "
    "77 the socket's server is not the daemon, 78 bad configuration."
)

app = typer.Typer(
    name="tradectl",
    help="Run and control tradectl trading bots.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: wrapped to the terminal, no <bool> placeholders
    cls=LightGroup,
)
GLOBAL_HELP = (
    "Global options, before or after the command: --config PATH, --json, --wait SECONDS "
    "(see tradectl --help)."
)
config_app = typer.Typer(
    help="Inspect the configuration.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(config_app, name="config", epilog=GLOBAL_HELP)
alerts_app = typer.Typer(
    help="Alerts sent through Apprise.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(alerts_app, name="alerts", epilog=GLOBAL_HELP)


class Context:
    config: Path | None = None
    json: bool = False
    wait: float = 0.0
    # Set once a direct flatten has closed its store and exchanges: the process then ends
    # without the interpreter's teardown (a quarter of a second of a cron job's budget).
    exit_fast: bool = False


state = Context()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file; else $TRADECTL_CONFIG, ./config.toml, "
        "$CONFIGURATION_DIRECTORY/config.toml, /etc/tradectl/config.toml.",
        show_default=False,
        metavar="PATH",
    ),
]


def _show_version(value: bool) -> None:
    if value:
        import tradectl

        typer.echo(f"tradectl {tradectl.__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback(epilog=GLOBAL_HELP)
def main_options(
    config: ConfigOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON for programs, failures included.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            help="Wait up to SECONDS for a daemon that is starting before giving up.",
            metavar="SECONDS",
            show_default=False,
        ),
    ] = 0.0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Global options are lifted out of the command line by `main`; these are for --help."""


EXIT_NAMES = {
    EXIT_FAILED: "failed",
    EXIT_USAGE: "usage",
    EXIT_UNREACHABLE: "daemon_unreachable",
    EXIT_STORE_MISSING: "store_missing",
    EXIT_STORAGE: "storage",
    EXIT_UNTRUSTED: "untrusted_server",
    EXIT_CONFIG: "config",
}


def _fail(message: str, code: int, error_code: str | None = None) -> NoReturn:
    """The one way a command fails: a line on stderr, or with --json an error object on
    stdout (`error_code` is the daemon's when it answered), and the documented exit code."""
    if state.json:
        name = error_code or EXIT_NAMES.get(code, "failed")
        typer.echo(as_json({"error": {"code": name, "message": message, "exit_code": code}}))
    else:
        typer.echo(f"tradectl: {message}", err=True)
    raise typer.Exit(code)


def _config_error(e: ConfigError) -> NoReturn:
    """A bad or missing config (78); a missing one lists every place looked at."""
    message = str(e)
    if isinstance(e, paths.ConfigNotFound):
        message = paths.not_found_message(state.config, e.path)
    _fail(message, EXIT_CONFIG)


def _client(timeout: float = 10.0, busy_wait: float | None = None) -> ControlClient:
    """A client for the daemon's socket that talks only to the real daemon (see client.py)."""
    try:
        socket_path, state_dir = paths.client_paths(state.config)
    except ConfigError as e:
        _config_error(e)
    return ControlClient(
        socket_path,
        timeout,
        trusted_uids=trusted_server_uids(state_dir),
        busy_wait=busy_wait,
        wait=state.wait,
    )


def _call(cmd: str, args: dict[str, Any] | None = None, *, read_timeout: float = 10.0) -> Any:
    """One request to the daemon; errors become messages and exit codes, once, here."""
    try:
        return _client(read_timeout).call(cmd, **(args or {}))
    except DaemonUnreachable as e:
        _fail(_unreachable(e), EXIT_UNREACHABLE)
    except UntrustedServer as e:
        _fail(str(e), EXIT_UNTRUSTED)
    except DaemonError as e:
        _fail(f"{e.message} [{e.code}]", EXIT_FAILED, e.code)


def _unreachable(e: DaemonUnreachable) -> str:
    if state.wait > 0:
        return f"{e} (waited {state.wait:g} s)"
    return f"{e} (a daemon that is starting: add --wait SECONDS)"


def _print(data: Any, render: Any) -> None:
    typer.echo(as_json(data) if state.json else render(data))


@app.command(epilog=GLOBAL_HELP)
def status(
    bot: Annotated[str | None, typer.Argument(help="Only this bot.", metavar="BOT")] = None,
) -> None:
    """Daemon and bots: state, candle age, position, orders, PnL.

    The daemon's pid, version and uptime; per bot its state, the age of its last candle,
    its position and whether a resting stop protects it, open orders, realised PnL.
    """
    result = _call(Command.STATUS, {"bot": bot} if bot else {})
    _print(result, status_text)


def _targets(bot: str | None, every: bool) -> dict[str, Any]:
    if every == (bot is not None):
        _fail("name one bot or give --all", EXIT_USAGE)
    return {"all": True} if every else {"bot": bot}


AllOption = Annotated[bool, typer.Option("--all", help="Every configured bot.")]
BotArgument = Annotated[
    str | None, typer.Argument(help="The bot's name from the config.", metavar="BOT")
]


def _print_changes(verb: str, result: dict[str, Any]) -> None:
    if state.json:
        typer.echo(as_json(result))
        return
    for item in result["bots"]:
        note = "" if item["changed"] else " already, nothing to do"
        typer.echo(f"{item['bot']}: {verb}{note}, now {item['state']}")


@app.command(epilog=GLOBAL_HELP)
def start(bot: BotArgument = None, every: AllOption = False) -> None:
    """Start a bot and remember that it should run, across restarts."""
    _print_changes("started", _call(Command.START, _targets(bot, every)))


@app.command(epilog=GLOBAL_HELP)
def stop(bot: BotArgument = None, every: AllOption = False) -> None:
    """Stop a bot and remember that it should stay stopped. Positions stay open."""
    _print_changes("stopped", _call(Command.STOP, _targets(bot, every)))


@app.command(epilog=GLOBAL_HELP)
def positions(
    bot: Annotated[str | None, typer.Option("--bot", help="Only this bot.", metavar="BOT")] = None,
) -> None:
    """Open positions on every account, with the bot that owns each."""
    _print(_call(Command.POSITIONS, {"bot": bot} if bot else {}), positions_text)


@app.command(epilog=GLOBAL_HELP)
def orders(
    bot: Annotated[str | None, typer.Option("--bot", help="Only this bot.", metavar="BOT")] = None,
    history: Annotated[bool, typer.Option("--all", help="Recent finished orders too.")] = False,
) -> None:
    """Open orders (--all: recent ones too) and client order ids."""
    args: dict[str, Any] = {"all": history}
    if bot:
        args["bot"] = bot
    _print(_call(Command.ORDERS, args), orders_text)


@app.command(epilog=GLOBAL_HELP)
def health(
    grace: Annotated[
        float,
        typer.Option(
            help="Seconds an unhealthy (or unreachable) daemon gets to recover before the "
            "verdict stands; for dead-man's switches that must not fire on a restart.",
            min=0,
            max=3600,
            metavar="SECONDS",
        ),
    ] = 0.0,
    fleet: Annotated[
        bool,
        typer.Option(
            "--fleet",
            help="Also fail for bots of the fleet that should run but no live node holds.",
        ),
    ] = False,
) -> None:
    """Exit 0 when every bot makes progress, 1 with the reasons.

    The same verdict keeps the systemd watchdog fed, so the two never disagree.
    Made for monitoring probes and cron; 3 when the daemon does not answer.
    """
    result = _health_within(grace, fleet)
    if state.json:
        typer.echo(as_json(result))
    else:
        typer.echo(result["summary"])
        for reason in result["reasons"]:
            typer.echo(f"  {reason}")
        for drift in result.get("drift", []):
            typer.echo(f"  drift (not a health failure): {drift}")
    raise typer.Exit(EXIT_OK if result["healthy"] else EXIT_FAILED)


@app.command(epilog=GLOBAL_HELP)
def resume(bot: Annotated[str, typer.Argument(help="The halted bot.", metavar="BOT")]) -> None:
    """Clear a bot's halt (loss limit, flatten) and start it again.

    Says which halt was cleared. A bot that is not halted is left as it is, with a note,
    and the exit code is 0, as for `start` on a running bot.
    """
    result = _call(Command.RESUME, {"bot": bot})
    if state.json:
        typer.echo(as_json(result))
    else:
        if result.get("changed", True):
            what = f"halt cleared (was: {result['cleared']})"
        else:
            what = result["note"]
        typer.echo(f"{result['bot']}: {what}, now {result['state']}")


@app.command(epilog=GLOBAL_HELP)
def schedule() -> None:
    """The daemon's duties and their next runs; the bots' sessions.

    The daily rollover and the drift checks with their next and last runs in UTC and the
    host's zone; per bot its sessions, whether it is in one and when that changes.
    Exit 0; 3 when the daemon does not answer.
    """
    _print(_call(Command.SCHEDULE), schedule_text)


@alerts_app.command("test", epilog=GLOBAL_HELP)
def alerts_test(
    direct: Annotated[
        bool,
        typer.Option(
            "--direct", help="Send from this process with the config, not through the daemon."
        ),
    ] = False,
) -> None:
    """Send a test alert to every alert URL; report each delivery.

    Through the daemon (its secrets, its network) when it answers, else directly from the
    config. Exit 0 when every URL took it; 1 when one failed or none is configured; 78 on a
    bad [alerts] section (direct).
    """
    result = None
    if not direct:
        try:
            result = _client(90.0).call(Command.ALERTS_TEST)
            result["via"] = "daemon"
        except DaemonUnreachable as e:
            typer.echo(f"tradectl: {e}; sending directly", err=True)
        except UntrustedServer as e:
            _fail(str(e), EXIT_UNTRUSTED)
        except DaemonError as e:
            _fail(f"{e.message} [{e.code}]", EXIT_FAILED, e.code)
    if result is None:
        result = {"deliveries": _alerts_test_direct(), "via": "direct"}
    _print(result, alerts_test_text)
    deliveries = result["deliveries"]
    raise typer.Exit(EXIT_OK if deliveries and all(d["ok"] for d in deliveries) else EXIT_FAILED)


def _alerts_test_direct() -> Any:
    import asyncio

    from daemon.alerting import build_alerter, delivery_row, test_alert

    loaded = _load()
    with _daemon_faults(loaded):
        alerter = build_alerter(loaded, None)
        return [delivery_row(d) for d in asyncio.run(alerter.deliver(test_alert()))]


DAEMON_PROBE_TIMEOUT_S = 3.0


@app.command(epilog=GLOBAL_HELP)
def flatten(
    bot: BotArgument = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every bot and the whole of every account.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask (required without a terminal).")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds to keep trying until flat.",
            min=1,
            max=3600,
            metavar="SECONDS",
        ),
    ] = 30.0,
    direct: Annotated[
        bool | None,
        typer.Option(
            "--direct/--no-direct",
            help="Force (or forbid) flattening without the daemon. "
            "Default: only when it is unreachable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Emergency: halt, cancel every order, close every position.

    The bots concerned are halted first; positions are closed reduce-only and read back.

    Exit 0 only when everything is flat; 1 with what is left otherwise. Safe to run
    twice. Works from cron with --yes; without a terminal and without --yes it refuses.
    """
    args = _targets(bot, every)
    if not yes:
        if not sys.stdin.isatty():
            _fail("refusing to flatten without --yes when not on a terminal", EXIT_USAGE)
        what = "EVERY bot and position on every account" if every else f"bot {bot}"
        if not typer.confirm(f"Flatten {what}: halt, cancel all orders, close positions?"):
            _fail("not flattened", EXIT_FAILED)
    result = None
    why_direct = "--direct given"
    if direct is not True:
        try:
            _client(DAEMON_PROBE_TIMEOUT_S, busy_wait=timeout).call(Command.PING)
            result = _client(timeout + 30).call(Command.FLATTEN, **args, timeout=timeout)
        except (DaemonUnreachable, UntrustedServer) as e:
            if direct is False:
                _fail(
                    str(e), EXIT_UNTRUSTED if isinstance(e, UntrustedServer) else EXIT_UNREACHABLE
                )
            why_direct = str(e)
            typer.echo(f"tradectl: {why_direct}; flattening directly", err=True)
        except DaemonError as e:  # busy all along, or a refusal: the daemon answers
            _fail(f"{e.message} [{e.code}]", EXIT_FAILED, e.code)
    if result is None:
        result = _flatten_direct(args, timeout, why_direct)
    _print(result, flatten_text)
    raise typer.Exit(EXIT_OK if result["flat"] else EXIT_FAILED)


def _flatten_direct(args: dict[str, Any], timeout: float, why: str) -> Any:
    import asyncio

    from daemon.emergency import flatten_direct
    from daemon.logging_setup import configure_logging

    loaded = _load()
    configure_logging("console" if sys.stderr.isatty() else "json", "warning")
    bots = sorted(loaded.config.bots) if args.get("all") else [args["bot"]]
    unknown = [b for b in bots if b not in loaded.config.bots]
    if unknown:
        _fail(f"no bot named {unknown[0]!r} in {loaded.path}", EXIT_FAILED)
    with _daemon_faults(loaded):
        result = asyncio.run(
            flatten_direct(
                loaded, bots, whole_account=bool(args.get("all")), timeout_s=timeout, why=why
            )
        )
    state.exit_fast = True
    return result


def _health_within(grace: float, fleet: bool = False) -> Any:
    """Ask until healthy or until `grace` has passed; the last answer (or failure) stands."""
    import time

    deadline = time.monotonic() + grace
    while True:
        try:
            result = _client(5.0).call(Command.HEALTH, **({"fleet": True} if fleet else {}))
        except DaemonUnreachable as e:
            if time.monotonic() >= deadline:
                _fail(_unreachable(e), EXIT_UNREACHABLE)
        except UntrustedServer as e:
            _fail(str(e), EXIT_UNTRUSTED)
        except DaemonError as e:  # busy is not a verdict: ask again within the grace
            if e.code != ErrorCode.BUSY or time.monotonic() >= deadline:
                _fail(f"{e.message} [{e.code}]", EXIT_FAILED, e.code)
        else:
            if result["healthy"] or time.monotonic() >= deadline:
                return result
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def _load() -> Any:
    from tradectl.config import check_strategies, load_config

    path = paths.find_config(state.config)
    try:
        loaded = load_config(path)
        check_strategies(loaded)
    except ConfigError as e:
        _config_error(e)
    return loaded


@config_app.command(
    "check", epilog=GLOBAL_HELP, short_help="Make every check the daemon makes before it starts."
)
def config_check() -> None:
    """Validate the config completely: every check the daemon makes before it starts
    (schema, strategies and parameters, candle data, replay start, owners, admin group,
    credentials present, market minimums against the risk limits)."""
    loaded = _load()
    from daemon.preflight import check_config

    try:
        check_config(loaded)
    except ConfigError as e:
        _config_error(e)
    summary = {
        "config": str(loaded.path),
        "state_dir": str(loaded.state_dir),
        "socket": str(loaded.socket_path),
        "accounts": sorted(loaded.config.accounts),
        "bots": sorted(loaded.config.bots),
    }
    if state.json:
        typer.echo(as_json(summary))
    else:
        typer.echo(
            f"{summary['config']}: ok ({plural(len(summary['accounts']), 'account')}, "
            f"{plural(len(summary['bots']), 'bot')})\nstate folder {summary['state_dir']}\n"
            f"socket {summary['socket']}"
        )


@app.command(epilog=GLOBAL_HELP)
def daemon(
    new_store: Annotated[
        bool,
        typer.Option(
            "--new-store",
            help="Start on purpose without the state store an earlier run left here (it was "
            "lost or replaced): accept the store found, or a new empty one, as a first start. "
            "Without it such a start is refused (exit 66).",
        ),
    ] = False,
) -> None:
    """Run the daemon in the foreground (systemd runs exactly this)."""
    loaded = _load()
    from daemon.app import run_daemon
    from daemon.logging_setup import configure_logging

    configure_logging(loaded.config.daemon.log_format, loaded.config.daemon.log_level)
    with _daemon_faults(loaded):
        code = run_daemon(loaded, new_store=new_store)
    raise typer.Exit(code)


@contextlib.contextmanager
def _daemon_faults(loaded: Any) -> Iterator[None]:
    """Faults of the daemon's own machinery become one line and a documented exit code."""
    import sqlite3

    from daemon.domain.errors import StorageError, StoreMissing, TradectlError

    try:
        yield
    except ConfigError as e:
        _fail(str(e), EXIT_CONFIG)
    except StoreMissing as e:
        _fail(str(e), EXIT_STORE_MISSING)
    except StorageError as e:
        _fail(str(e), EXIT_STORAGE)
    except TradectlError as e:
        _fail(str(e), EXIT_FAILED)
    except sqlite3.DatabaseError as e:
        hint = ""
        if not isinstance(e, sqlite3.OperationalError):  # damaged, not merely full or locked
            hint = " (restore it from a backup, or move it aside and start with --new-store)"
        _fail(f"state store {loaded.state_dir / 'state.db'}: {e}{hint}", EXIT_STORAGE)
    except OSError as e:
        where = e.filename or loaded.state_dir
        _fail(f"{where}: {e.strerror or e}", EXIT_STORAGE)
    except Exception as e:  # a bug: logged with its traceback (scrubbed, no locals), exit 1
        import structlog

        from daemon.redaction import scrub

        structlog.get_logger().critical("daemon_crashed", error=type(e).__name__, exc_info=e)
        _fail(f"internal error: {type(e).__name__}: {scrub(str(e))}", EXIT_FAILED)


PROGRESS_EVERY_S = 2.0  # on a terminal
PROGRESS_EVERY_PCT = 10  # otherwise: a line per step


@app.command(epilog=GLOBAL_HELP)
def backtest(
    strategy: Annotated[
        str, typer.Argument(help="Strategy name, e.g. ema_cross or ict.", metavar="STRATEGY")
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="1m candles: a freqtrade .feather or .json file.",
            show_default=False,
            metavar="FILE",
        ),
    ],
    symbol: Annotated[
        str,
        typer.Option(
            "--symbol", help="Market, e.g. ETH/USDT:USDT.", show_default=False, metavar="SYMBOL"
        ),
    ],
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="First candle's open time, ISO 8601 (UTC if no zone). "
            "Default: 3 days into the data. The strategy's warm-up is read from the "
            "candles before it.",
            show_default=False,
            metavar="WHEN",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="End, exclusive: candles opening before it, ISO 8601. Default: end of data.",
            show_default=False,
            metavar="WHEN",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Strategy parameter k=v (repeatable).",
            show_default=False,
            metavar="K=V",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Draw the run: FILE.png (matplotlib) or FILE.html (interactive, plotly): "
            "candles with every entry, exit and stop, the ICT zones acted on, equity and "
            "drawdown. Needs: pip install -e '.[plot]'.",
            show_default=False,
            metavar="FILE",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="fast: the runner's decisions in one loop over the whole history; replay: "
            "the daemon's own runner, feed and store candle by candle (slow, the reference).",
            metavar="fast|replay",
        ),
    ] = "fast",
) -> None:
    """Backtest a strategy on recorded candles, as the daemon trades.

    The daemon's risk rules, paper fills and multi-timeframe candles, at full speed, with the
    runner's decisions made in the same order; `--engine replay` runs the daemon's own runner
    instead, candle by candle. Risk limits, fees and balance come from the config (found as
    usual; built-in defaults if there is none). Exit 2 for a bad command line (a missing
    file, a malformed date or --param, a window outside the data, an unknown engine), 78 when
    the strategy, its parameters, the config or the data file's content are refused.
    """
    from datetime import UTC, datetime

    window: list[datetime | None] = []
    for flag, text in (("--from", start), ("--to", end)):
        if text is None:
            window.append(None)
            continue
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            _fail(f"{flag} {text!r} is not an ISO 8601 date or time", EXIT_USAGE)
        window.append(when if when.tzinfo is not None else when.replace(tzinfo=UTC))
    if window[0] is not None and window[1] is not None and window[1] <= window[0]:
        _fail(f"--to {end} is not after --from {start}", EXIT_USAGE)
    params = _parse_params(param or [])
    if not data.is_file():
        _fail(f"--data {data}: no such file", EXIT_USAGE)
    setup_config = _backtest_config()

    from daemon.backtest import BacktestInputError, run_backtest, setup_from_config
    from daemon.logging_setup import configure_logging

    if plot is not None:
        from daemon.backtest_plot import check_plot_dependency

        try:
            check_plot_dependency(plot)  # before the run, not after it
        except BacktestInputError as e:
            _fail(str(e), EXIT_USAGE)

    configure_logging("console" if sys.stderr.isatty() else "json", "error")
    try:
        result = run_backtest(
            strategy,
            params,
            data,
            symbol,
            setup_from_config(setup_config, symbol),
            window[0],
            window[1],
            _progress_printer(),
            engine=engine,
        )
    except BacktestInputError as e:
        _fail(str(e), EXIT_USAGE)
    except ConfigError as e:  # strategy, parameters, data file content, market
        _fail(str(e), EXIT_CONFIG)
    summary = result.summary()
    if state.json and summary["warm_up"].get("note"):
        typer.echo(f"tradectl: warm-up: {summary['warm_up']['note']}", err=True)
    if plot is not None:
        from daemon.backtest_plot import write_plot

        try:
            write_plot(result, data, plot)
        except BacktestInputError as e:
            _fail(str(e), EXIT_FAILED)
        except OSError as e:
            _fail(f"--plot {plot}: {e}", EXIT_FAILED)
    if state.json:
        typer.echo(as_json(summary))
    else:
        typer.echo(_backtest_text(summary))


def _parse_params(items: list[str]) -> dict[str, Any]:
    """`k=v` pairs; v is read as JSON when it parses (9, 1.5, true, null), else as text."""
    import json

    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--param {item!r}: expected name=value", EXIT_USAGE)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        params[key.strip()] = value
    return params


def _backtest_config() -> Any:
    """The config named (or found as usual); built-in defaults when none exists anywhere."""
    from tradectl.config import Config, load_config

    path = paths.find_config(state.config)
    if state.config is None and not path.is_file():
        return Config.model_validate({"accounts": {"paper": {"kind": "paper"}}})
    try:
        return load_config(path).config
    except ConfigError as e:
        _config_error(e)


def _progress_printer() -> Any:
    """Progress on stderr: every few seconds on a terminal, else every 10 %."""
    import time

    tty = sys.stderr.isatty()
    last = {"at": time.monotonic(), "pct": 0}

    def report(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if tty:
            now = time.monotonic()
            if now - last["at"] >= PROGRESS_EVERY_S or done == total:
                last["at"] = now
                end = "\n" if done == total else ""
                sys.stderr.write(f"\rbacktest: {pct:3d}% ({done}/{total} candles){end}")
                sys.stderr.flush()
        elif pct >= last["pct"] + PROGRESS_EVERY_PCT:
            last["pct"] = pct - pct % PROGRESS_EVERY_PCT
            sys.stderr.write(f"backtest: {last['pct']}% ({done}/{total} candles)\n")
            sys.stderr.flush()

    return report


def _backtest_text(s: dict[str, Any]) -> str:
    """The report for people: money to the cent, no `n/a %`, every zero explained."""
    win_rate = "-" if s["win_rate"] is None else f"{s['win_rate'] * 100:.1f} %"
    factor = "-" if s["profit_factor"] is None else f"{s['profit_factor']:.2f}"
    sharpe = "-" if s["sharpe"] is None else f"{s['sharpe']:.2f}"
    lines = [
        f"{s['strategy']} on {s['symbol']}, {s['start']} .. {s['end']} "
        f"({plural(s['candles'], 'candle')})",
        f"signals       {s['signals']}: {plural(s['entries'], 'entry', 'entries')}, "
        f"{sum(v['count'] for v in s['skipped'].values())} not taken",
    ]
    for rule, why in s["skipped"].items():
        lines.append(f"  {why['count']:>6} x {rule}: {why['example']}")
    lines += [
        f"trades        {s['trades']}",
        f"net PnL       {s['net_pnl']:.2f} USDT (fees {s['fees']:.2f})",
        f"win rate      {win_rate}",
        f"profit factor {factor}",
        f"max drawdown  {s['max_drawdown']:.2f} USDT ({s['max_drawdown_pct'] * 100:.2f} %)",
        f"Sharpe        {sharpe} ({s['sharpe_basis']})",
        f"equity        {s['initial_balance']:.2f} -> {s['end_equity']:.2f} USDT",
    ]
    if s["open_position"]:
        p = s["open_position"]
        lines.append(f"open at end   {p['side']} {p['qty']} @ {p['entry_price']}")
    if s["halted"]:
        lines.append(f"halted        {s['halted']['at']}: {s['halted']['reason']}")
    if s["warm_up"].get("note"):
        lines.append(f"warm-up       {s['warm_up']['note']}")
    return "\n".join(lines)


GLOBAL_VALUES = {"--config": "config", "-c": "config", "--wait": "wait"}


def lift_global_options(argv: list[str]) -> list[str]:
    """Take `--config PATH`, `--json` and `--wait SECONDS` from anywhere on the command line
    (up to a `--`) into `state`; return the rest for Typer. Raises click's UsageError."""
    click = _click()
    ours = argv[: argv.index("--")] if "--" in argv else argv
    state.json = state.json or "--json" in ours  # so a bad --wait before it fails as JSON
    rest: list[str] = []
    k = 0
    while k < len(argv):
        arg = argv[k]
        k += 1
        if arg == "--":
            rest += argv[k - 1 :]
            break
        name, eq, value = arg.partition("=")
        if arg == "--json":
            state.json = True
            continue
        if name not in GLOBAL_VALUES or (eq and name == "-c"):
            rest.append(arg)
            continue
        if not eq:
            if k >= len(argv):
                raise click.exceptions.UsageError(f"Option '{name}' requires an argument.")
            value, k = argv[k], k + 1
        if GLOBAL_VALUES[name] == "config":
            state.config = Path(value)
            continue
        try:
            state.wait = float(value)
        except ValueError:
            message = f"--wait {value!r}: expected a number of seconds"
            raise click.exceptions.UsageError(message) from None
        if not 0 <= state.wait <= 3600:
            raise click.exceptions.UsageError(f"--wait {value}: expected 0 to 3600 seconds")
    return rest


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: global options lifted, usage errors reported like any
    other failure (as JSON with --json), exit codes kept."""
    click = _click()
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=lift_global_options(args), prog_name="tradectl", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        if state.json:
            where = e.ctx.command_path if e.ctx is not None else "tradectl"
            code = _report(f"{where}: missing command (see {where} --help)", EXIT_USAGE)
        else:
            typer.echo(e.ctx.get_help() if e.ctx is not None else str(e), err=True)
            code = EXIT_USAGE
    except click.exceptions.ClickException as e:  # usage errors, mostly (exit 2)
        code = _usage_error(e)
    except click.exceptions.Abort:
        code = _report("aborted", EXIT_FAILED)
    except KeyboardInterrupt:
        code = 130
    code = code if isinstance(code, int) else EXIT_OK
    if state.exit_fast:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _click() -> Any:
    """The click Typer runs on: its own vendored copy in newer Typer, else click itself."""
    try:
        from typer import _click as vendored
    except ImportError:
        import click

        return click
    return vendored


def _usage_error(e: Any) -> int:
    if state.json:
        return _report(e.format_message(), e.exit_code)
    e.show()
    return int(e.exit_code)


def _report(message: str, code: int) -> int:
    try:
        _fail(message, code)
    except typer.Exit as done:
        return done.exit_code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
