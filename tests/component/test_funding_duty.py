"""The funding duty: after each funding time, every bot's symbol on an exchange account has its
payments recorded, a stopped bot's too, through ccxt against the loopback Binance."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal

from daemon.adapters.apprise_alerts import AppriseAlerter
from daemon.adapters.ccxt_gateway import CcxtGateway
from daemon.credentials import ApiCredentials
from daemon.domain.models import OrderIntent, OrderType, Side
from daemon.duties import Duties
from daemon.runtime.supervisor import Supervisor
from tests.conftest import StoreOpener
from tests.loopback.binance_usdm import LoopbackBinance
from tradectl.config import Config

ETH = "ETH/USDT:USDT"


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def test_a_stopped_bots_funding_is_collected_once_and_the_job_is_scheduled(
    open_store: StoreOpener,
) -> None:
    config = Config.model_validate(
        {
            "accounts": {"binance": {"kind": "binanceusdm", "credentials": "loopback"}},
            "bots": {"eth": {"account": "binance", "symbol": ETH, "strategy": "ema_cross"}},
        }
    )

    async def main() -> None:
        server = LoopbackBinance("test-key", "test-secret")
        url = await server.start()
        minute = int(time.time() * 1000) // 60_000 * 60_000
        server.push_candle("ETHUSDT", minute, 2500, 2505, 2495, 2500, 100)
        gateway = CcxtGateway(
            "binance",
            "binanceusdm",
            ApiCredentials("loopback", "test-key", "test-secret"),
            api_base_url=url,
            timeout_s=2,
            requests_per_s=1000,
        )
        store = open_store()
        try:
            await gateway.start()
            await gateway.submit_order(
                OrderIntent(
                    "eth",
                    "binance",
                    ETH,
                    "tc1-f",
                    Side.BUY,
                    OrderType.MARKET,
                    Decimal(2),
                    None,
                    False,
                    datetime.now(UTC),
                )
            )
            clock = WallClock()
            supervisor = Supervisor({}, lambda spec, started: None, store, clock)  # type: ignore
            duties = Duties(
                config,
                store,
                {"binance": gateway},
                supervisor,
                AppriseAlerter([]),
                clock,
                lambda a, s: "eth",
            )
            duties.start()
            jobs = {row["name"]: row for row in duties.scheduler.as_rows()}
            duties.shutdown()
            next_run = datetime.fromisoformat(jobs["funding:binance"]["next_run_utc"])
            assert (next_run.hour % 8, next_run.minute) == (0, 1), next_run
            assert await duties.collect_funding("binance") == 0, "nothing paid yet"
            paid = server.pay_funding("ETHUSDT", "0.001")  # 2 ETH at 2500 pay 5 USDT
            assert await duties.collect_funding("binance") == 1
            assert await duties.collect_funding("binance") == 0, "recorded exactly once"
            [payment] = store.funding("eth")
            assert payment.amount == paid == Decimal("-5")
        finally:
            store.close()
            await gateway.close()
            await server.close()

    asyncio.run(main())
