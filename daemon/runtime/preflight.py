"""The account preflight: before a real account's bots may trade, check the account is set
up the way tradectl trades, and refuse, by name and with the numbers, what would fail.

Run for every exchange account before READY, and again every minute for an account that
failed (an operator who fixes the account needs no restart). Checks, in order:

- ``credentials``: a key and secret; Bitget also needs the key's passphrase;
- ``connect``: markets load, the clock is measured (``clock`` warns above 2 s: signed
  requests are corrected, but the host's time sync is broken);
- ``position_mode``: one-way; a hedge-mode (dual side) account is refused, since
  tradectl keeps one net position per symbol and sends no position side;
- ``multi_assets``: Binance's Multi-Assets mode is refused: isolated margin per symbol,
  which tradectl sets, is impossible there (Bitget's union margin likewise);
- ``permissions``: the key may trade futures; a key that may withdraw is allowed but warned
  about loudly (journal and log, every start);
- per bot ``market``: the symbol is a USDT-margined perpetual (Bitget: product type
  USDT-FUTURES, margin coin USDT), judged by its name before the account checks so that no
  other product type reaches the exchange, and the exchange lists it;
  ``leverage_bracket``: the bot's leverage is within the exchange's bracket for a position
  of ``risk.max_position_usdt``, and that size is within the last bracket; ``margin_mode``:
  the symbol is (made) isolated; ``leverage``: the exchange accepts it.

An account-wide failure holds every bot of the account (`errored`, with the reason); a
bot's own failure holds that bot. Nothing else is affected, and nothing restarts in a loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from daemon.domain.errors import AccountRefused, ExchangeError, NotFound, OrderRejected
from daemon.ports import AccountAdmin

CLOCK_WARN_MS = 2_000
SETTLE = "USDT"
BITGET_PRODUCT_TYPE = "USDT-FUTURES"


@dataclass(frozen=True, slots=True)
class BotNeeds:
    """What a bot needs of its account."""

    name: str
    symbol: str
    leverage: int


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    reason: str
    bot: str | None = None

    def line(self) -> str:
        return f"preflight {self.check}: {self.reason}"


@dataclass(slots=True)
class PreflightReport:
    account: str
    kind: str
    failures: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    time_difference_ms: int | None = None
    time_measured_at: datetime | None = None
    brackets: dict[str, str] = field(default_factory=dict)  # symbol -> where they came from
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    connected: bool = False

    @property
    def account_ok(self) -> bool:
        """No account-wide failure: the account may be reconciled and its feeds run."""
        return self.connected and not any(f.bot is None for f in self.failures)

    def refusal(self, bot: str) -> str | None:
        """Why `bot` may not trade, or None."""
        for finding in self.failures:
            if finding.bot in (None, bot):
                return finding.line()
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "passed": not self.failures,
            "failures": [asdict(f) for f in self.failures],
            "warnings": [asdict(f) for f in self.warnings],
            "time_difference_ms": self.time_difference_ms,
            "time_measured_at": None
            if self.time_measured_at is None
            else self.time_measured_at.isoformat(),
            "leverage_brackets": dict(self.brackets),
            "checked_at": self.checked_at.isoformat(),
        }


async def preflight(
    gateway: AccountAdmin,
    bots: list[BotNeeds],
    max_position_usdt: Decimal,
    *,
    started: bool = False,
) -> PreflightReport:
    """Check one account; never raises for what the exchange answers."""
    report = PreflightReport(gateway.account, gateway.kind)
    missing = gateway.missing_credentials()
    if missing is not None:
        report.failures.append(Finding("credentials", missing))
        return report
    try:
        if not started:
            await gateway.start()
        report.connected = True
        _check_clock(gateway, report)
        tradable = []
        for bot in bots:  # refused by name before any symbol reaches the exchange
            wrong = not_a_usdt_perpetual(bot.symbol, gateway.kind)
            if wrong is None:
                tradable.append(bot)
            else:
                report.failures.append(Finding("market", wrong, bot.name))
        await _check_account(gateway, [b.symbol for b in tradable], report)
        if not report.account_ok:
            return report
        symbols = sorted({b.symbol for b in tradable})
        report.brackets = await gateway.load_leverage_brackets(symbols)
        for bot in tradable:
            await _check_bot(gateway, bot, max_position_usdt, report)
    except ExchangeError as e:
        check = "connect" if not report.connected else "exchange"
        report.failures.append(Finding(check, f"{type(e).__name__}: {e}"))
    return report


def not_a_usdt_perpetual(symbol: str, kind: str) -> str | None:
    """Why `symbol` (ccxt's unified BASE/QUOTE:SETTLE[-EXPIRY]) is not a USDT-margined
    perpetual, naming its margin coin and, on Bitget, its product type; None if it is."""
    pair, _, contract = symbol.partition(":")
    settle, _, expiry = contract.partition("-")
    if pair.endswith(f"/{SETTLE}") and settle == SETTLE and not expiry:
        return None
    if not settle:
        found = "a spot pair, no margin coin"
    elif settle == SETTLE and not expiry:
        found = f"quoted in {pair.partition('/')[2]}"
    else:
        found = f"margin coin {settle}"
        if kind == "bitget":
            product = {"USDT": "USDT-FUTURES", "USDC": "USDC-FUTURES"}.get(settle, "COIN-FUTURES")
            found += f", Bitget product type {product}"
        if expiry:
            found += f", a future delivered on {expiry}"
    return (
        f"{symbol} is not a USDT-margined perpetual ({found}); tradectl trades USDT-margined "
        f"perpetuals only (Bitget: product type {BITGET_PRODUCT_TYPE}, margin coin {SETTLE})"
    )


def _check_clock(gateway: AccountAdmin, report: PreflightReport) -> None:
    difference = gateway.time_difference_ms
    report.time_difference_ms = difference
    report.time_measured_at = gateway.time_measured_at
    if abs(difference) > CLOCK_WARN_MS:
        direction = "ahead of" if difference > 0 else "behind"
        report.warnings.append(
            Finding(
                "clock",
                f"this host's clock is {abs(difference) / 1000:.1f} s {direction} the "
                "exchange's; signed requests are corrected, but time sync (NTP) is broken",
            )
        )


async def _check_account(
    gateway: AccountAdmin, symbols: list[str], report: PreflightReport
) -> None:
    setup = await gateway.account_setup(symbols)
    if setup.hedge_mode:
        report.failures.append(
            Finding(
                "position_mode",
                "the account is in hedge mode (dual side positions); tradectl trades one-way "
                "mode only: switch the account to one-way mode (it needs no open positions)",
            )
        )
    if setup.multi_assets:
        report.failures.append(
            Finding(
                "multi_assets",
                "the account is in Multi-Assets (union) margin mode, where isolated margin per "
                "symbol is impossible; tradectl trades isolated: switch to Single-Asset mode",
            )
        )
    if setup.can_trade_futures is False:
        report.failures.append(
            Finding("permissions", "the API key may not trade futures: enable futures trading")
        )
    if setup.can_withdraw:
        report.warnings.append(
            Finding(
                "permissions",
                "WITHDRAWALS ARE ENABLED on this trading key: whoever steals it can empty the "
                "account; create a key without withdrawal permission",
            )
        )
    for note in setup.notes:
        report.warnings.append(Finding("permissions", note))


async def _check_bot(
    gateway: AccountAdmin, bot: BotNeeds, max_position: Decimal, report: PreflightReport
) -> None:
    def refuse(check: str, reason: str) -> None:
        report.failures.append(Finding(check, reason, bot.name))

    try:
        market = await gateway.market(bot.symbol)
    except NotFound:
        refuse("market", f"{gateway.kind} has no market {bot.symbol}")
        return
    if market.brackets:
        allowed = market.max_leverage_at(max_position)
        last = market.brackets[-1]
        if allowed == 0:
            refuse(
                "leverage_bracket",
                f"risk.max_position_usdt {max_position} USDT is beyond the last bracket of "
                f"{bot.symbol} ({last.notional_cap} USDT)",
            )
            return
        if bot.leverage > allowed:
            refuse(
                "leverage_bracket",
                f"bots.{bot.name}.leverage {bot.leverage} is beyond {gateway.kind}'s bracket "
                f"for {bot.symbol}: a position up to {max_position} USDT "
                f"(risk.max_position_usdt) allows at most {allowed}x",
            )
            return
    else:
        report.warnings.append(
            Finding(
                "leverage_bracket",
                f"no leverage brackets known for {bot.symbol}; the exchange will refuse "
                "beyond them",
                bot.name,
            )
        )
    try:
        await gateway.set_isolated_margin(bot.symbol)
    except AccountRefused as e:
        refuse(e.check, str(e))
        return
    try:
        await gateway.set_leverage(bot.symbol, bot.leverage)
    except AccountRefused as e:
        refuse(e.check, str(e))
    except OrderRejected as e:
        refuse("leverage", str(e))
