"""Domain exceptions, keyed by what the caller does with them.

The control server translates them once into protocol error codes; the CLI
translates those into exit codes.
"""

from __future__ import annotations

from tradectl.errors import ConfigError, TradectlError

__all__ = ["ConfigError", "TradectlError"]


class NotFound(TradectlError):
    """A named thing (bot, order) does not exist."""


class Refused(TradectlError):
    """A request was understood but may not be carried out now."""


class IllegalTransition(Refused):
    """A bot lifecycle move that the state machine does not allow."""


class RiskRejected(Refused):
    """An order intent broke a risk rule; `rule` names it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class ExchangeError(TradectlError):
    """An exchange failed in a way the caller should not retry blindly."""


class RetryableExchangeError(ExchangeError):
    """Transient: timeouts, rate limits, exchange unavailable."""


class OrderRejected(ExchangeError):
    """The exchange refused the order (bad size, insufficient margin, ...)."""


class AccountRefused(OrderRejected):
    """The exchange refused because of how the account is set up (position mode, leverage
    bracket, margin mode): the same request will be refused again until someone changes the
    account or the config. `check` names what to change, as the preflight names its checks."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


class OrderNeverPlaced(OrderRejected):
    """An order whose outcome was unknown was looked up by its client id until the exchange
    could no longer accept it, and was never found: it did not reach the exchange. Only then
    may the bot decide again, and a new order carries a new client id."""


class WouldTrigger(OrderRejected):
    """A trigger order refused because the price is already beyond its trigger (Binance
    -2021 "Order would immediately trigger"): for a stop, the stop has been hit."""


class StateLocked(TradectlError):
    """Another daemon holds the state folder."""


class StorageError(TradectlError):
    """The state folder or the store in it cannot be used: corrupt, read-only, full, not a
    folder. The message names the path and the reason; the CLI exits 74 (EX_IOERR)."""


class StoreMissing(TradectlError):
    """The store that an earlier run left is gone or was replaced; starting afresh takes an
    explicit choice (`tradectl daemon --new-store`). The CLI exits 66 (EX_NOINPUT)."""


class UntrustedPath(ConfigError):
    """A folder or file that another user could tamper with (owner, mode, symlink)."""


class HaltRequested(TradectlError):
    """A bot must stop trading until an operator resumes it (loss limit, flatten)."""

    def __init__(self, reason: str, scope: str = "bot") -> None:
        super().__init__(reason)
        self.reason = reason
        self.scope = scope  # "bot": this bot; "account": every bot on its account


class LeaseLost(TradectlError):
    """This node no longer holds the bot's lease (it expired, or another node took it over):
    the store refused the order intent or the cancel, and the bot's runner on this node must
    stop."""
