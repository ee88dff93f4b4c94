"""A config with many bots on the paper exchange and the replay: two symbols per account."""

from __future__ import annotations

from tests.conftest import REPO


def many_bots_config(bots: int, speed: float, log_level: str = "warning") -> str:
    accounts = (bots + 1) // 2
    parts = [
        f'[daemon]\nlog_level = "{log_level}"\nlog_format = "json"\n',
        "[health]\nstale_floor_s = 60\n",
        # BTC's minimum order value is 100 USDT: a lower cap is refused as a bot that can't trade
        "[risk]\nmax_position_usdt = 100\n",
    ]
    made = 0
    for a in range(accounts):
        parts.append(
            f'[accounts.paper{a}]\nkind = "paper"\n'
            f'[accounts.paper{a}.replay]\ndata_dir = "{REPO / "data" / "candles"}"\n'
            f"speed = {speed}\nstart = 2025-05-10T00:00:00Z\n"
        )
        for symbol, tag in (("ETH/USDT:USDT", "eth"), ("BTC/USDT:USDT", "btc")):
            if made == bots:
                break
            parts.append(
                f'[bots.{tag}-{a}]\naccount = "paper{a}"\nsymbol = "{symbol}"\n'
                f'strategy = "ema_cross"\ntimeframes = ["1m", "5m"]\nautostart = true\n'
            )
            made += 1
    return "\n".join(parts)
