"""The config's sections as the settings the domain and the adapters take.

One translation, shared by the daemon and the backtest, so both trade by the same limits.
"""

from __future__ import annotations

from daemon.adapters.paper_exchange import PaperSettings
from daemon.domain.risk import RiskLimits
from tradectl.config import PaperAccount, RiskSettings


def risk_limits(risk: RiskSettings) -> RiskLimits:
    """The config's risk section as the domain's limits: one translation for daemon and backtest."""
    return RiskLimits(
        max_leverage=risk.max_leverage,
        max_position_usdt=risk.max_position_usdt,
        risk_per_trade_pct=risk.risk_per_trade_pct,
        daily_loss_limit_usdt=risk.daily_loss_limit_usdt,
        max_account_position_usdt=risk.max_account_position_usdt,
        account_daily_loss_limit_usdt=risk.account_daily_loss_limit_usdt,
        daily_reset=risk.daily_reset_utc,
    )


def paper_settings(account: PaperAccount, risk: RiskSettings) -> PaperSettings:
    return PaperSettings(
        initial_balance=account.initial_balance,
        taker_fee_rate=account.taker_fee_rate,
        maker_fee_rate=account.maker_fee_rate,
        slippage_bps=account.slippage_bps,
        default_leverage=risk.max_leverage,
    )
