"""The account preflight against a scripted account (daemon/runtime/preflight.py): every check
a real account meets before its bots may trade, each refusal word for word, each limit
exactly at it and one step past, and what is asked of the exchange, in order.

The account is an in-process object answering the `AccountAdmin` port: the ccxt adapter
behind that port is tested against loopback exchanges (tests/component/test_bitget_gateway.py,
test_binance_real_account.py); here only the preflight's own decisions are under test."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from daemon.domain.errors import (
    AccountRefused,
    ExchangeError,
    NotFound,
    OrderRejected,
    RetryableExchangeError,
)
from daemon.domain.models import LeverageBracket, Market
from daemon.ports import AccountSetup
from daemon.runtime.preflight import (
    CLOCK_WARN_MS,
    BotNeeds,
    Finding,
    PreflightReport,
    not_a_usdt_perpetual,
    preflight,
)

T = TypeVar("T")
ETH, BTC, SOL = "ETH/USDT:USDT", "BTC/USDT:USDT", "SOL/USDT:USDT"
MEASURED = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
LIMIT = Decimal(50_000)  # risk.max_position_usdt, unless a story says otherwise
GOOD = AccountSetup(hedge_mode=False, multi_assets=False, can_trade_futures=True)


def tiers(*rows: tuple[int, int, int]) -> tuple[LeverageBracket, ...]:
    return tuple(LeverageBracket(Decimal(lo), Decimal(hi), lev) for lo, hi, lev in rows)


ETH_TIERS = tiers((0, 50_000, 50), (50_000, 250_000, 20), (250_000, 1_000_000, 10))


def market(symbol: str, brackets: tuple[LeverageBracket, ...] = ETH_TIERS) -> Market:
    step = Decimal("0.001")
    return Market(symbol, step, Decimal("0.01"), step, Decimal(5), 125, brackets=brackets)


class Account:
    """A real exchange account as the preflight meets it, scripted per story; every question
    asked of it is recorded in order."""

    def __init__(
        self,
        kind: str = "binanceusdm",
        *,
        setup: AccountSetup = GOOD,
        difference_ms: int = 0,
        markets: tuple[Market, ...] = (market(ETH), market(BTC)),
        missing: str | None = None,
    ) -> None:
        self.account = "main"
        self.kind = kind
        self.time_measured_at: datetime | None = MEASURED
        self.difference_ms = difference_ms
        self.setup = setup
        self.markets = {m.symbol: m for m in markets}
        self.missing = missing
        self.asked: list[tuple[Any, ...]] = []
        self.fails: dict[tuple[str, str], ExchangeError] = {}  # (question, symbol) -> error

    def _ask(self, question: str, *args: Any) -> None:
        self.asked.append((question, *args))
        error = self.fails.get((question, str(args[0]) if args else ""))
        if error is not None:
            raise error

    async def start(self) -> None:
        self._ask("start")

    def missing_credentials(self) -> str | None:
        return self.missing

    @property
    def time_difference_ms(self) -> int:
        return self.difference_ms

    async def account_setup(self, symbols: list[str]) -> AccountSetup:
        self._ask("account_setup", symbols)
        return self.setup

    async def load_leverage_brackets(self, symbols: list[str]) -> dict[str, str]:
        self._ask("load_leverage_brackets", symbols)
        return {s: "exchange" if s in self.markets else "unknown" for s in symbols}

    async def set_isolated_margin(self, symbol: str) -> None:
        self._ask("set_isolated_margin", symbol)

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        self._ask("set_leverage", symbol, leverage)

    async def market(self, symbol: str) -> Market:
        self._ask("market", symbol)
        if symbol not in self.markets:
            raise NotFound(f"no market {symbol}")
        return self.markets[symbol]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def check(
    account: Account, bots: list[BotNeeds], limit: Decimal = LIMIT, started: bool = False
) -> PreflightReport:
    return run(preflight(account, bots, limit, started=started))


def bots_checked(account: Account) -> list[tuple[Any, ...]]:
    """What was asked per bot: everything after the brackets were loaded."""
    questions = [q[0] for q in account.asked]
    return account.asked[questions.index("load_leverage_brackets") + 1 :]


# -- an account set up as tradectl trades -------------------------------------------------------


def test_an_account_set_up_as_tradectl_trades_passes_and_each_bot_is_made_isolated() -> None:
    account = Account()
    bots = [BotNeeds("eth-fast", ETH, 20), BotNeeds("btc", BTC, 5), BotNeeds("eth-slow", ETH, 3)]
    report = run(preflight(account, bots, LIMIT))  # the gateway is started by default
    assert report.failures == [] and report.warnings == []
    assert report.connected and report.account_ok
    assert [report.refusal(b.name) for b in bots] == [None, None, None]
    assert account.asked == [
        ("start",),
        ("account_setup", [ETH, BTC, ETH]),
        ("load_leverage_brackets", [BTC, ETH]),  # each symbol once, sorted
        ("market", ETH),
        ("set_isolated_margin", ETH),
        ("set_leverage", ETH, 20),
        ("market", BTC),
        ("set_isolated_margin", BTC),
        ("set_leverage", BTC, 5),
        ("market", ETH),
        ("set_isolated_margin", ETH),
        ("set_leverage", ETH, 3),
    ]
    assert report.brackets == {BTC: "exchange", ETH: "exchange"}
    assert (report.account, report.kind) == ("main", "binanceusdm")
    assert report.as_dict()["passed"] is True


def test_a_gateway_already_started_is_not_started_again() -> None:
    account = Account()
    report = check(account, [BotNeeds("b1", ETH, 3)], started=True)
    assert report.connected and report.account_ok
    assert account.asked[0] == ("account_setup", [ETH])
    assert ("start",) not in account.asked


def test_an_account_with_no_bots_is_checked_as_an_account() -> None:
    account = Account()
    report = check(account, [])
    assert report.account_ok and report.failures == []
    assert account.asked == [("start",), ("account_setup", []), ("load_leverage_brackets", [])]


# -- credentials and the connection -----------------------------------------------------------


def test_missing_credentials_are_refused_before_anything_is_asked_of_the_exchange() -> None:
    account = Account(missing="exchanges.main: no api_secret (TRADECTL_MAIN_API_SECRET)")
    report = check(account, [BotNeeds("b1", ETH, 3)])
    assert report.failures == [
        Finding("credentials", "exchanges.main: no api_secret (TRADECTL_MAIN_API_SECRET)")
    ]
    assert account.asked == []
    assert not report.connected and not report.account_ok
    assert report.refusal("b1") == (
        "preflight credentials: exchanges.main: no api_secret (TRADECTL_MAIN_API_SECRET)"
    )
    assert report.time_difference_ms is None and report.time_measured_at is None


def test_an_exchange_that_cannot_be_reached_fails_the_connect_check_naming_the_error() -> None:
    account = Account()
    account.fails[("start", "")] = RetryableExchangeError("binanceusdm GET /fapi/v1/time timed out")
    report = check(account, [BotNeeds("b1", ETH, 3)])
    assert report.failures == [
        Finding("connect", "RetryableExchangeError: binanceusdm GET /fapi/v1/time timed out")
    ]
    assert not report.connected and not report.account_ok
    assert report.refusal("b1") == (
        "preflight connect: RetryableExchangeError: binanceusdm GET /fapi/v1/time timed out"
    )
    assert account.asked == [("start",)]


def test_an_exchange_error_after_connecting_holds_the_whole_account_as_exchange() -> None:
    account = Account()
    account.fails[("account_setup", str([ETH]))] = ExchangeError("502 Bad Gateway")
    report = check(account, [BotNeeds("b1", ETH, 3)])
    assert report.failures == [Finding("exchange", "ExchangeError: 502 Bad Gateway")]
    assert report.connected and not report.account_ok
    assert report.refusal("b1") == "preflight exchange: ExchangeError: 502 Bad Gateway"


def test_an_exchange_error_while_setting_a_bot_up_stops_the_checks_and_holds_the_account() -> None:
    account = Account()
    account.fails[("set_leverage", ETH)] = RetryableExchangeError("rate limited")
    bots = [BotNeeds("b1", ETH, 3), BotNeeds("b2", BTC, 3)]
    report = check(account, bots)
    assert report.failures == [Finding("exchange", "RetryableExchangeError: rate limited")]
    assert not report.account_ok
    assert report.brackets == {BTC: "exchange", ETH: "exchange"}, "kept from before the error"
    assert ("market", BTC) not in account.asked


# -- the clock ----------------------------------------------------------------------------------


@pytest.mark.parametrize("difference", [0, CLOCK_WARN_MS, -CLOCK_WARN_MS, 1_999])
def test_a_clock_up_to_two_seconds_off_passes_without_a_word(difference: int) -> None:
    report = check(Account(difference_ms=difference), [BotNeeds("b1", ETH, 3)])
    assert report.warnings == [] and report.failures == []
    assert report.time_difference_ms == difference
    assert report.time_measured_at == MEASURED


@pytest.mark.parametrize(
    ("difference", "words"),
    [
        (2_001, "2.0 s ahead of"),
        (-2_001, "2.0 s behind"),
        (12_960, "13.0 s ahead of"),
        (-90_000, "90.0 s behind"),
    ],
)
def test_a_clock_one_millisecond_past_two_seconds_is_warned_about_and_trades(
    difference: int, words: str
) -> None:
    report = check(Account(difference_ms=difference), [BotNeeds("b1", ETH, 3)])
    assert report.warnings == [
        Finding(
            "clock",
            f"this host's clock is {words} the exchange's; signed requests are corrected, but "
            "time sync (NTP) is broken",
        )
    ]
    assert report.failures == [] and report.account_ok
    assert report.time_difference_ms == difference


# -- symbols: USDT-margined perpetuals only, refused by name before the exchange hears of them --


def test_a_bot_on_another_product_is_refused_by_name_before_the_exchange_hears_of_it() -> None:
    account = Account("bitget")
    bots = [BotNeeds("usdc", "BTC/USDC:USDC", 3), BotNeeds("b1", ETH, 3)]
    report = check(account, bots)
    assert report.failures == [
        Finding(
            "market",
            "BTC/USDC:USDC is not a USDT-margined perpetual (margin coin USDC, Bitget product "
            "type USDC-FUTURES); tradectl trades USDT-margined perpetuals only (Bitget: product "
            "type USDT-FUTURES, margin coin USDT)",
            "usdc",
        )
    ]
    assert report.account_ok, "one bot's symbol holds that bot, not the account"
    assert report.refusal("b1") is None
    assert report.refusal("usdc") == f"preflight market: {report.failures[0].reason}"
    assert all("BTC/USDC:USDC" not in str(q) for q in account.asked)
    assert ("set_leverage", ETH, 3) in account.asked


@pytest.mark.parametrize(
    ("symbol", "kind", "found"),
    [
        ("ETH/USDT", "binanceusdm", "a spot pair, no margin coin"),
        ("ETH/BTC:USDT", "binanceusdm", "quoted in BTC"),
        ("ETH/USDC:USDT", "bitget", "quoted in USDC"),
        ("BTC/USDC:USDC", "binanceusdm", "margin coin USDC"),
        ("BTC/USD:BTC", "binanceusdm", "margin coin BTC"),
        ("BTC/USD:BTC", "bitget", "margin coin BTC, Bitget product type COIN-FUTURES"),
        (
            "ETH/USDT:USDT-261225",
            "bitget",
            "margin coin USDT, Bitget product type USDT-FUTURES, a future delivered on 261225",
        ),
        (
            "BTC/USD:BTC-270326",
            "bitget",
            "margin coin BTC, Bitget product type COIN-FUTURES, a future delivered on 270326",
        ),
        ("ETH/USDC:USDC-261225", "binanceusdm", "margin coin USDC, a future delivered on 261225"),
        ("ETH/USDTX:USDT", "binanceusdm", "quoted in USDTX"),
        ("ETH/XUSDT:USDT", "bitget", "quoted in XUSDT"),
        ("ETH/BTC/X:USDT", "bitget", "quoted in BTC/X"),  # a typo: all after the base named
    ],
)
def test_every_other_product_is_named_for_what_it_is(symbol: str, kind: str, found: str) -> None:
    assert not_a_usdt_perpetual(symbol, kind) == (
        f"{symbol} is not a USDT-margined perpetual ({found}); tradectl trades USDT-margined "
        "perpetuals only (Bitget: product type USDT-FUTURES, margin coin USDT)"
    )


@pytest.mark.parametrize("symbol", [ETH, "1000PEPE/USDT:USDT", "USDC/USDT:USDT"])
@pytest.mark.parametrize("kind", ["binanceusdm", "bitget"])
def test_a_usdt_margined_perpetual_is_tradable_on_both_exchanges(symbol: str, kind: str) -> None:
    assert not_a_usdt_perpetual(symbol, kind) is None


def test_a_symbol_the_exchange_does_not_list_holds_only_its_bot() -> None:
    account = Account()
    bots = [BotNeeds("gone", "XYZ/USDT:USDT", 3), BotNeeds("b1", ETH, 3)]
    report = check(account, bots)
    assert report.failures == [Finding("market", "binanceusdm has no market XYZ/USDT:USDT", "gone")]
    assert report.account_ok and report.refusal("b1") is None
    assert report.brackets == {ETH: "exchange", "XYZ/USDT:USDT": "unknown"}
    assert bots_checked(account) == [
        ("market", "XYZ/USDT:USDT"),
        ("market", ETH),
        ("set_isolated_margin", ETH),
        ("set_leverage", ETH, 3),
    ]


# -- the account's set-up -----------------------------------------------------------------------

HEDGE = (
    "the account is in hedge mode (dual side positions); tradectl trades one-way mode only: "
    "switch the account to one-way mode (it needs no open positions)"
)
MULTI = (
    "the account is in Multi-Assets (union) margin mode, where isolated margin per symbol is "
    "impossible; tradectl trades isolated: switch to Single-Asset mode"
)
NO_FUTURES = "the API key may not trade futures: enable futures trading"
WITHDRAW = (
    "WITHDRAWALS ARE ENABLED on this trading key: whoever steals it can empty the account; "
    "create a key without withdrawal permission"
)


@pytest.mark.parametrize(
    ("setup", "failure"),
    [
        (AccountSetup(hedge_mode=True, multi_assets=False), Finding("position_mode", HEDGE)),
        (AccountSetup(hedge_mode=False, multi_assets=True), Finding("multi_assets", MULTI)),
        (AccountSetup(can_trade_futures=False), Finding("permissions", NO_FUTURES)),
    ],
)
def test_an_account_not_set_up_as_tradectl_trades_holds_every_bot_and_nothing_is_changed(
    setup: AccountSetup, failure: Finding
) -> None:
    account = Account(setup=setup)
    report = check(account, [BotNeeds("b1", ETH, 3), BotNeeds("b2", BTC, 3)])
    assert report.failures == [failure]
    assert report.connected and not report.account_ok
    refusal = f"preflight {failure.check}: {failure.reason}"
    assert report.refusal("b1") == report.refusal("b2") == refusal
    assert account.asked == [("start",), ("account_setup", [ETH, BTC])], "nothing set, no bracket"
    assert report.brackets == {}


def test_every_account_problem_is_named_at_once_in_order() -> None:
    setup = AccountSetup(hedge_mode=True, multi_assets=True, can_trade_futures=False)
    report = check(Account(setup=setup), [BotNeeds("b1", ETH, 3)])
    assert report.failures == [
        Finding("position_mode", HEDGE),
        Finding("multi_assets", MULTI),
        Finding("permissions", NO_FUTURES),
    ]
    assert report.refusal("b1") == f"preflight position_mode: {HEDGE}", "the first one"


def test_what_the_exchange_does_not_report_is_not_held_against_the_account() -> None:
    report = check(Account(setup=AccountSetup()), [BotNeeds("b1", ETH, 3)])
    assert report.failures == [] and report.warnings == [] and report.account_ok


def test_a_key_that_may_withdraw_trades_but_is_warned_about_loudly_with_every_note() -> None:
    setup = AccountSetup(
        hedge_mode=False,
        can_trade_futures=True,
        can_withdraw=True,
        notes=("the key's permissions could not be read: 403", "IP whitelist not set"),
    )
    account = Account(setup=setup)
    report = check(account, [BotNeeds("b1", ETH, 3)])
    assert report.failures == [] and report.account_ok
    assert report.warnings == [
        Finding("permissions", WITHDRAW),
        Finding("permissions", "the key's permissions could not be read: 403"),
        Finding("permissions", "IP whitelist not set"),
    ]
    assert ("set_leverage", ETH, 3) in account.asked
    assert report.as_dict()["passed"] is True, "warnings do not fail the preflight"


def test_a_key_that_may_not_withdraw_gets_no_warning() -> None:
    report = check(Account(setup=AccountSetup(can_withdraw=False)), [BotNeeds("b1", ETH, 3)])
    assert report.warnings == []


# -- leverage brackets: exactly at a limit passes, one step past is refused ----------------------


def test_the_leverage_the_bracket_allows_exactly_passes_and_one_more_is_refused() -> None:
    account = Account()
    bots = [BotNeeds("at", ETH, 50), BotNeeds("over", ETH, 51), BotNeeds("btc", BTC, 3)]
    report = check(account, bots, limit=Decimal(50_000))  # exactly the first tier's cap
    assert report.failures == [
        Finding(
            "leverage_bracket",
            "bots.over.leverage 51 is beyond binanceusdm's bracket for ETH/USDT:USDT: a "
            "position up to 50000 USDT (risk.max_position_usdt) allows at most 50x",
            "over",
        )
    ]
    assert report.account_ok and report.refusal("at") is None and report.refusal("btc") is None
    assert bots_checked(account) == [
        ("market", ETH),
        ("set_isolated_margin", ETH),
        ("set_leverage", ETH, 50),
        ("market", ETH),  # refused here: nothing set for it
        ("market", BTC),
        ("set_isolated_margin", BTC),
        ("set_leverage", BTC, 3),
    ]


def test_a_position_one_usdt_into_the_next_tier_gets_that_tiers_leverage() -> None:
    report = check(Account(), [BotNeeds("b1", ETH, 21)], limit=Decimal(50_001))
    assert report.failures == [
        Finding(
            "leverage_bracket",
            "bots.b1.leverage 21 is beyond binanceusdm's bracket for ETH/USDT:USDT: a "
            "position up to 50001 USDT (risk.max_position_usdt) allows at most 20x",
            "b1",
        )
    ]
    assert check(Account(), [BotNeeds("b1", ETH, 20)], limit=Decimal(50_001)).failures == []


def test_a_position_at_the_last_cap_passes_and_one_usdt_more_is_beyond_every_bracket() -> None:
    at_cap = check(Account(), [BotNeeds("b1", ETH, 10)], limit=Decimal(1_000_000))
    assert at_cap.failures == []
    account = Account()
    report = check(account, [BotNeeds("b1", ETH, 1), BotNeeds("b2", BTC, 2)], Decimal(1_000_001))
    assert report.failures == [
        Finding(
            "leverage_bracket",
            "risk.max_position_usdt 1000001 USDT is beyond the last bracket of ETH/USDT:USDT "
            "(1000000 USDT)",
            "b1",
        ),
        Finding(
            "leverage_bracket",
            "risk.max_position_usdt 1000001 USDT is beyond the last bracket of BTC/USDT:USDT "
            "(1000000 USDT)",
            "b2",
        ),
    ]
    assert report.account_ok, "a bot's bracket holds that bot"
    assert [q[0] for q in bots_checked(account)] == ["market", "market"], "nothing set"


def test_a_one_tier_market_names_its_only_cap() -> None:
    account = Account(markets=(market(SOL, tiers((0, 5_000, 1))),))
    report = check(account, [BotNeeds("sol", SOL, 1)], limit=Decimal(5_000))
    assert report.failures == [] and report.warnings == []
    report = check(account, [BotNeeds("sol", SOL, 1)], limit=Decimal(5_001))
    assert [f.reason for f in report.failures] == [
        "risk.max_position_usdt 5001 USDT is beyond the last bracket of SOL/USDT:USDT (5000 USDT)"
    ]


def test_a_market_without_known_brackets_is_warned_about_and_set_up() -> None:
    account = Account(markets=(market(SOL, ()),))
    report = check(account, [BotNeeds("sol", SOL, 100)], limit=Decimal(10**9))
    assert report.failures == [] and report.account_ok
    assert report.warnings == [
        Finding(
            "leverage_bracket",
            "no leverage brackets known for SOL/USDT:USDT; the exchange will refuse beyond them",
            "sol",
        )
    ]
    assert bots_checked(account) == [
        ("market", SOL),
        ("set_isolated_margin", SOL),
        ("set_leverage", SOL, 100),
    ]


# -- margin mode and leverage: what the exchange refuses holds the bot, named by the check ------


def test_an_exchange_refusing_isolated_margin_holds_the_bot_and_sets_no_leverage() -> None:
    account = Account()
    account.fails[("set_isolated_margin", ETH)] = AccountRefused(
        "margin_mode", "ETH/USDT:USDT has an open position in cross margin: close it first"
    )
    report = check(account, [BotNeeds("b1", ETH, 3), BotNeeds("b2", BTC, 3)])
    assert report.failures == [
        Finding(
            "margin_mode",
            "ETH/USDT:USDT has an open position in cross margin: close it first",
            "b1",
        )
    ]
    assert report.account_ok and report.refusal("b2") is None
    assert ("set_leverage", ETH, 3) not in account.asked
    assert ("set_leverage", BTC, 3) in account.asked, "the next bot is still set up"


def test_an_exchange_refusing_the_leverage_holds_the_bot_named_by_its_check() -> None:
    account = Account()
    account.fails[("set_leverage", ETH)] = AccountRefused(
        "leverage_bracket", "leverage 20 exceeds the bracket of your position"
    )
    account.fails[("set_leverage", BTC)] = OrderRejected("leverage 5 is not valid")
    bots = [BotNeeds("b1", ETH, 20), BotNeeds("b2", BTC, 5), BotNeeds("b3", ETH, 20)]
    report = check(account, bots)
    assert report.failures == [
        Finding("leverage_bracket", "leverage 20 exceeds the bracket of your position", "b1"),
        Finding("leverage", "leverage 5 is not valid", "b2"),
        Finding("leverage_bracket", "leverage 20 exceeds the bracket of your position", "b3"),
    ]
    assert report.account_ok
    assert report.refusal("b2") == "preflight leverage: leverage 5 is not valid"


# -- the report as status shows it --------------------------------------------------------------


def test_the_report_lists_failures_warnings_the_clock_and_the_brackets_for_status() -> None:
    before = datetime.now(UTC)
    account = Account(setup=AccountSetup(can_withdraw=True), difference_ms=-2_500)
    report = check(account, [BotNeeds("b1", ETH, 51)])
    after = datetime.now(UTC)
    assert before <= report.checked_at <= after and report.checked_at.tzinfo is UTC
    assert report.as_dict() == {
        "kind": "binanceusdm",
        "passed": False,
        "failures": [
            {
                "check": "leverage_bracket",
                "reason": "bots.b1.leverage 51 is beyond binanceusdm's bracket for "
                "ETH/USDT:USDT: a position up to 50000 USDT (risk.max_position_usdt) allows at "
                "most 50x",
                "bot": "b1",
            }
        ],
        "warnings": [
            {
                "check": "clock",
                "reason": "this host's clock is 2.5 s behind the exchange's; signed requests "
                "are corrected, but time sync (NTP) is broken",
                "bot": None,
            },
            {"check": "permissions", "reason": WITHDRAW, "bot": None},
        ],
        "time_difference_ms": -2_500,
        "time_measured_at": "2026-11-26T08:30:00+00:00",
        "leverage_brackets": {ETH: "exchange"},
        "checked_at": report.checked_at.isoformat(),
    }


def test_a_report_that_never_measured_the_clock_says_so() -> None:
    account = Account()
    account.time_measured_at = None
    report = check(account, [])
    assert report.as_dict()["time_measured_at"] is None
    assert report.as_dict()["time_difference_ms"] == 0
    unchecked = PreflightReport("main", "bitget").as_dict()
    assert (unchecked["time_difference_ms"], unchecked["time_measured_at"]) == (None, None)
    assert unchecked["passed"] is True and unchecked["leverage_brackets"] == {}


def test_a_fresh_report_is_not_connected_so_its_account_is_not_ok() -> None:
    report = PreflightReport("main", "bitget")
    assert not report.connected and not report.account_ok
    report.connected = True
    assert report.account_ok
    report.failures.append(Finding("market", "no such market", "b1"))
    assert report.account_ok, "a bot's failure"
    report.failures.append(Finding("exchange", "down"))
    assert not report.account_ok


def test_a_refusal_is_the_first_failure_that_concerns_the_bot() -> None:
    report = PreflightReport("main", "bitget")
    report.failures += [
        Finding("market", "b2's market is gone", "b2"),
        Finding("leverage", "b1's leverage", "b1"),
        Finding("margin_mode", "b1's margin", "b1"),
    ]
    assert report.refusal("b1") == "preflight leverage: b1's leverage"
    assert report.refusal("b2") == "preflight market: b2's market is gone"
    assert report.refusal("b3") is None
    report.failures.append(Finding("exchange", "down"))
    assert report.refusal("b3") == "preflight exchange: down"
    assert report.refusal("b1") == "preflight leverage: b1's leverage"
