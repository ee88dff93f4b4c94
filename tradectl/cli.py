"""The `tradectl` command line. Commands are thin: parse, call the daemon, render, exit.

Exit codes: 0 done; 1 refused or failed; 2 usage error; 3 daemon not reachable
(the message names the socket path); 66 the state store an earlier run left is gone
(EX_NOINPUT); 74 the state folder or store cannot be used (EX_IOERR); 77 the server on
the socket is not the daemon (EX_NOPERM); 78 bad configuration or an untrusted folder
(EX_CONFIG).
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
from tradectl.render import as_json, flatten_text, orders_text, positions_text, status_text

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
)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


class Context:
    config: Path | None = None


state = Context()

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (else $TRADECTL_CONFIG, ./config.toml, /etc/tradectl/config.toml).",
        show_default=False,
        readable=False,  # an unreadable file is a config error (78) with the reason, not usage
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]


@app.callback()
def main_options(config: ConfigOption = None) -> None:
    state.config = config


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"tradectl: {message}", err=True)
    raise typer.Exit(code)


def _client(timeout: float = 10.0, busy_wait: float | None = None) -> ControlClient:
    """A client for the daemon's socket that talks only to the real daemon (see client.py)."""
    try:
        socket_path, state_dir = paths.client_paths(state.config)
    except ConfigError as e:
        _fail(str(e), EXIT_CONFIG)
    return ControlClient(
        socket_path, timeout, trusted_uids=trusted_server_uids(state_dir), busy_wait=busy_wait
    )


def _call(cmd: str, args: dict[str, Any] | None = None, *, read_timeout: float = 10.0) -> Any:
    """One request to the daemon; errors become messages and exit codes, once, here."""
    try:
        return _client(read_timeout).call(cmd, **(args or {}))
    except DaemonUnreachable as e:
        _fail(str(e), EXIT_UNREACHABLE)
    except UntrustedServer as e:
        _fail(str(e), EXIT_UNTRUSTED)
    except DaemonError as e:
        _fail(f"{e.message} [{e.code}]", EXIT_FAILED)


def _print(data: Any, as_json_output: bool, render: Any) -> None:
    typer.echo(as_json(data) if as_json_output else render(data))


@app.command()
def status(
    bot: Annotated[str | None, typer.Argument(help="Only this bot.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Daemon pid, version and uptime; per bot its state, candle age, position, orders, PnL."""
    result = _call(Command.STATUS, {"bot": bot} if bot else {})
    _print(result, json_output, status_text)


def _targets(bot: str | None, every: bool) -> dict[str, Any]:
    if every == (bot is not None):
        _fail("name one bot or give --all", EXIT_USAGE)
    return {"all": True} if every else {"bot": bot}


AllOption = Annotated[bool, typer.Option("--all", help="Every configured bot.")]
BotArgument = Annotated[str | None, typer.Argument(help="The bot's name from the config.")]


def _print_changes(verb: str, result: dict[str, Any], json_output: bool) -> None:
    if json_output:
        typer.echo(as_json(result))
        return
    for item in result["bots"]:
        note = "" if item["changed"] else " (already)"
        typer.echo(f"{item['bot']}: {verb}{note}, now {item['state']}")


@app.command()
def start(
    bot: BotArgument = None, every: AllOption = False, json_output: JsonOption = False
) -> None:
    """Start a bot and remember that it should run, across restarts."""
    _print_changes("started", _call(Command.START, _targets(bot, every)), json_output)


@app.command()
def stop(
    bot: BotArgument = None, every: AllOption = False, json_output: JsonOption = False
) -> None:
    """Stop a bot and remember that it should stay stopped. Positions stay open."""
    _print_changes("stopped", _call(Command.STOP, _targets(bot, every)), json_output)


@app.command()
def positions(
    bot: Annotated[str | None, typer.Option("--bot", help="Only this bot.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Open positions on every account, with the bot that owns each."""
    _print(_call(Command.POSITIONS, {"bot": bot} if bot else {}), json_output, positions_text)


@app.command()
def orders(
    bot: Annotated[str | None, typer.Option("--bot", help="Only this bot.")] = None,
    history: Annotated[bool, typer.Option("--all", help="Recent finished orders too.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Open orders (and with --all recent ones), with their client order ids."""
    args: dict[str, Any] = {"all": history}
    if bot:
        args["bot"] = bot
    _print(_call(Command.ORDERS, args), json_output, orders_text)


@app.command()
def health(
    grace: Annotated[
        float,
        typer.Option(
            help="Seconds an unhealthy (or unreachable) daemon gets to recover before the "
            "verdict stands; for dead-man's switches that must not fire on a restart.",
            min=0,
            max=3600,
        ),
    ] = 0.0,
    json_output: JsonOption = False,
) -> None:
    """Exit 0 when every bot that should run makes progress, 1 with the reasons when not.

    The same verdict keeps the systemd watchdog fed, so the two never disagree.
    Made for monitoring probes and cron; 3 when the daemon does not answer.
    """
    result = _health_within(grace)
    if json_output:
        typer.echo(as_json(result))
    else:
        typer.echo(result["summary"])
        for reason in result["reasons"]:
            typer.echo(f"  {reason}")
    raise typer.Exit(EXIT_OK if result["healthy"] else EXIT_FAILED)


@app.command()
def resume(
    bot: Annotated[str, typer.Argument(help="The halted bot.")], json_output: JsonOption = False
) -> None:
    """Clear a bot's halt (loss limit, flatten) and start it again; says what was cleared."""
    result = _call(Command.RESUME, {"bot": bot})
    if json_output:
        typer.echo(as_json(result))
    else:
        typer.echo(
            f"{result['bot']}: halt cleared (was: {result['cleared']}), now {result['state']}"
        )


DAEMON_PROBE_TIMEOUT_S = 3.0


@app.command()
def flatten(
    bot: BotArgument = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every bot and the whole of every account.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask (required without a terminal).")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to keep trying until flat.", min=1, max=3600)
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
    json_output: JsonOption = False,
) -> None:
    """Emergency: halt the bots, cancel every order, close every position reduce-only, verify.

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
            _fail(f"{e.message} [{e.code}]", EXIT_FAILED)
    if result is None:
        result = _flatten_direct(args, timeout, why_direct)
    _print(result, json_output, flatten_text)
    raise typer.Exit(EXIT_OK if result["flat"] else EXIT_FAILED)


def _flatten_direct(args: dict[str, Any], timeout: float, why: str) -> Any:
    import asyncio

    from daemon.emergency import flatten_direct
    from daemon.logging_setup import configure_logging

    loaded = _load(None)
    configure_logging("console" if sys.stderr.isatty() else "json", "warning")
    bots = sorted(loaded.config.bots) if args.get("all") else [args["bot"]]
    unknown = [b for b in bots if b not in loaded.config.bots]
    if unknown:
        _fail(f"no bot named {unknown[0]!r} in {loaded.path}", EXIT_FAILED)
    with _daemon_faults(loaded):
        return asyncio.run(
            flatten_direct(
                loaded, bots, whole_account=bool(args.get("all")), timeout_s=timeout, why=why
            )
        )


def _health_within(grace: float) -> Any:
    """Ask until healthy or until `grace` has passed; the last answer (or failure) stands."""
    import time

    deadline = time.monotonic() + grace
    while True:
        try:
            result = _client(5.0).call(Command.HEALTH)
        except DaemonUnreachable as e:
            if time.monotonic() >= deadline:
                _fail(str(e), EXIT_UNREACHABLE)
        except UntrustedServer as e:
            _fail(str(e), EXIT_UNTRUSTED)
        except DaemonError as e:  # busy is not a verdict: ask again within the grace
            if e.code != ErrorCode.BUSY or time.monotonic() >= deadline:
                _fail(f"{e.message} [{e.code}]", EXIT_FAILED)
        else:
            if result["healthy"] or time.monotonic() >= deadline:
                return result
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def _load(config: Path | None) -> Any:
    from tradectl.config import check_strategies, load_config

    path = paths.find_config(config or state.config)
    try:
        loaded = load_config(path)
        check_strategies(loaded)
    except ConfigError as e:
        _fail(str(e), EXIT_CONFIG)
    return loaded


@config_app.command("check")
def config_check(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Validate the config completely: every check the daemon makes before it starts
    (schema, strategies and parameters, candle data, replay start, owners, admin group,
    credentials present, market minimums against the risk limits)."""
    loaded = _load(config)
    from daemon.preflight import check_config

    try:
        check_config(loaded)
    except ConfigError as e:
        _fail(str(e), EXIT_CONFIG)
    summary = {
        "config": str(loaded.path),
        "state_dir": str(loaded.state_dir),
        "socket": str(loaded.socket_path),
        "accounts": sorted(loaded.config.accounts),
        "bots": sorted(loaded.config.bots),
    }
    if json_output:
        typer.echo(as_json(summary))
    else:
        typer.echo(
            f"{summary['config']}: ok ({len(summary['accounts'])} accounts, "
            f"{len(summary['bots'])} bots)\nstate folder {summary['state_dir']}\n"
            f"socket {summary['socket']}"
        )


@app.command()
def daemon(
    config: ConfigOption = None,
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
    loaded = _load(config)
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


@app.command()
def backtest(
    strategy: Annotated[str, typer.Argument(help="Strategy name, e.g. ema_cross or ict.")],
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="1m candles: a freqtrade .feather or .json file.", show_default=False
        ),
    ],
    symbol: Annotated[
        str, typer.Option("--symbol", help="Market, e.g. ETH/USDT:USDT.", show_default=False)
    ],
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="First candle's open time, ISO 8601 (UTC if no zone). "
            "Default: 3 days into the data, so there is history to warm up on.",
            show_default=False,
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="End, exclusive: candles opening before it, ISO 8601. Default: end of data.",
            show_default=False,
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="Strategy parameter k=v (repeatable).", show_default=False
        ),
    ] = None,
    json_output: JsonOption = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="Write a PNG equity curve with the trades.", show_default=False
        ),
    ] = None,
    config: ConfigOption = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="fast: the runner's decisions in one loop over the whole history; replay: "
            "the daemon's own runner, feed and store candle by candle (slow, the reference).",
        ),
    ] = "fast",
) -> None:
    """Backtest a strategy on recorded candles, trading exactly as the daemon would.

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
    setup_config = _backtest_config(config)

    from daemon.backtest import BacktestInputError, run_backtest, setup_from_config, write_plot
    from daemon.logging_setup import configure_logging

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
    if plot is not None:
        try:
            write_plot(result, plot)
        except BacktestInputError as e:
            _fail(str(e), EXIT_FAILED)
        except OSError as e:
            _fail(f"--plot {plot}: {e}", EXIT_FAILED)
    if json_output:
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


def _backtest_config(explicit: Path | None) -> Any:
    """The config named (or found as usual); built-in defaults when none exists anywhere."""
    from tradectl.config import Config, load_config

    chosen = explicit or state.config
    path = paths.find_config(chosen)
    if chosen is None and not path.is_file():
        return Config.model_validate({"accounts": {"paper": {"kind": "paper"}}})
    try:
        return load_config(path).config
    except ConfigError as e:
        _fail(str(e), EXIT_CONFIG)


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
    def opt(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    lines = [
        f"{s['strategy']} on {s['symbol']}, {s['start']} .. {s['end']} ({s['candles']} candles)",
        f"trades        {s['trades']}",
        f"net PnL       {s['net_pnl']:.4f} USDT (fees {s['fees']:.4f})",
        f"win rate      {opt(s['win_rate'] and s['win_rate'] * 100, '.1f')} %",
        f"profit factor {opt(s['profit_factor'], '.3f')}",
        f"max drawdown  {s['max_drawdown']:.4f} USDT ({s['max_drawdown_pct'] * 100:.2f} %)",
        f"Sharpe        {opt(s['sharpe'], '.2f')} ({s['sharpe_basis']})",
        f"equity        {s['initial_balance']:.2f} -> {s['end_equity']:.4f} USDT",
    ]
    if s["open_position"]:
        p = s["open_position"]
        lines.append(f"open at end   {p['side']} {p['qty']} @ {p['entry_price']}")
    if s["halted"]:
        lines.append(f"halted        {s['halted']['at']}: {s['halted']['reason']}")
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
