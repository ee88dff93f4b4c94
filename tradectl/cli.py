"""The `tradectl` command line. Commands are thin: parse, call the daemon, render, exit.

Exit codes: 0 done; 1 refused or failed; 2 usage error; 3 daemon not reachable
(the message names the socket path); 78 bad configuration (EX_CONFIG).
This module imports neither ccxt, polars nor the daemon unless a command needs them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from tradectl import paths
from tradectl.client import ControlClient, DaemonError, DaemonUnreachable
from tradectl.errors import ConfigError
from tradectl.protocol import Command
from tradectl.render import as_json, orders_text, positions_text, status_text

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CONFIG = 78

EXIT_CODES_HELP = (
    "Exit codes: 0 done, 1 refused or failed, 2 usage error, "
    "3 daemon not reachable, 78 bad configuration."
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
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]


@app.callback()
def main_options(config: ConfigOption = None) -> None:
    state.config = config


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"tradectl: {message}", err=True)
    raise typer.Exit(code)


def _call(cmd: str, **args: Any) -> Any:
    """One request to the daemon; errors become messages and exit codes, once, here."""
    try:
        socket_path = paths.client_socket_path(state.config)
    except ConfigError as e:
        _fail(str(e), EXIT_CONFIG)
    try:
        return ControlClient(socket_path).call(cmd, **args)
    except DaemonUnreachable as e:
        _fail(str(e), EXIT_UNREACHABLE)
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
    result = _call(Command.STATUS, **({"bot": bot} if bot else {}))
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
    _print_changes("started", _call(Command.START, **_targets(bot, every)), json_output)


@app.command()
def stop(
    bot: BotArgument = None, every: AllOption = False, json_output: JsonOption = False
) -> None:
    """Stop a bot and remember that it should stay stopped. Positions stay open."""
    _print_changes("stopped", _call(Command.STOP, **_targets(bot, every)), json_output)


@app.command()
def positions(
    bot: Annotated[str | None, typer.Option("--bot", help="Only this bot.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Open positions on every account, with the bot that owns each."""
    _print(_call(Command.POSITIONS, **({"bot": bot} if bot else {})), json_output, positions_text)


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
    _print(_call(Command.ORDERS, **args), json_output, orders_text)


@app.command()
def health(json_output: JsonOption = False) -> None:
    """Exit 0 when every bot that should run makes progress, 1 with the reasons when not.

    The same verdict keeps the systemd watchdog fed, so the two never disagree.
    Made for monitoring probes and cron; 3 when the daemon does not answer.
    """
    result = _call(Command.HEALTH)
    if json_output:
        typer.echo(as_json(result))
    else:
        typer.echo(result["summary"])
        for reason in result["reasons"]:
            typer.echo(f"  {reason}")
    raise typer.Exit(EXIT_OK if result["healthy"] else EXIT_FAILED)


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
    """Validate the config completely (schema, accounts, bots, strategy parameters)."""
    loaded = _load(config)
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
def daemon(config: ConfigOption = None) -> None:
    """Run the daemon in the foreground (systemd runs exactly this)."""
    loaded = _load(config)
    from daemon.app import run_daemon
    from daemon.domain.errors import TradectlError
    from daemon.logging_setup import configure_logging

    configure_logging(loaded.config.daemon.log_format, loaded.config.daemon.log_level)
    try:
        code = run_daemon(loaded)
    except ConfigError as e:
        _fail(str(e), EXIT_CONFIG)
    except TradectlError as e:
        _fail(str(e), EXIT_FAILED)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
