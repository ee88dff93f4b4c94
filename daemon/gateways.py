"""Which gateway serves each configured account: shared by the daemon and a direct flatten.

Light on purpose: ccxt (about half a second and 75 MB) is imported only when an account
on a real exchange is built, so a paper-only daemon and a flatten of paper accounts never
load it, and nothing here pulls in polars or the strategies.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeGuard

from daemon.adapters.paper_exchange import PaperExchange
from daemon.adapters.paper_markets import load_paper_markets
from daemon.credentials import load_credentials
from daemon.domain.errors import ConfigError
from daemon.ports import ExchangeGateway, StateStore
from daemon.settings import paper_settings
from tradectl.config import Config, ExchangeAccount, LoadedConfig

if TYPE_CHECKING:
    from daemon.adapters.ccxt_gateway import CcxtGateway


def ccxt_gateway_class() -> type[CcxtGateway]:
    """The gateway to real exchanges; asking for it the first time imports ccxt."""
    from daemon.adapters.ccxt_gateway import CcxtGateway

    return CcxtGateway


def is_ccxt_gateway(gateway: object) -> TypeGuard[CcxtGateway]:
    """Whether `gateway` talks to a real exchange; never imports ccxt to find out."""
    module = sys.modules.get("daemon.adapters.ccxt_gateway")
    return module is not None and isinstance(gateway, module.CcxtGateway)


def build_gateways(loaded: LoadedConfig, store: StateStore) -> dict[str, ExchangeGateway]:
    """One gateway per configured account."""
    config = loaded.config
    gateways: dict[str, ExchangeGateway] = {}
    markets = None
    for name, account in config.accounts.items():
        if isinstance(account, ExchangeAccount):
            try:
                credentials = load_credentials(account.credentials)
            except ConfigError as e:
                raise ConfigError(f"{loaded.path}: accounts.{name}.credentials: {e}") from None
            gateways[name] = ccxt_gateway_class()(
                name,
                account.kind,
                credentials,
                testnet=account.testnet,
                api_base_url=account.api_base_url,
                requests_per_s=account.requests_per_s,
                unknown_outcome_window_s=account.order_lookup_window_s,
                trigger_price_type=account.trigger_price_type,
            )
            continue
        markets = markets or load_paper_markets()
        gateways[name] = PaperExchange(name, paper_settings(account, config.risk), store, markets)
    return gateways


def owner_of(config: Config, account: str, symbol: str) -> str | None:
    """The configured bot that trades `symbol` on `account` (at most one, by validation)."""
    for name, bot in config.bots.items():
        if bot.account == account and bot.symbol == symbol:
            return name
    return None
