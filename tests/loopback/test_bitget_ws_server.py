"""The loopback Bitget's websockets spoken to directly (no ccxt): what a login, a subscription
and a keep-alive get, refusals with Bitget's codes, candles on the public channel."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.loopback.bitget_ws import PRIVATE_PATH, PUBLIC_PATH, LoopbackBitgetWs

KEY, SECRET, PASSPHRASE = "bg-key", "bg-secret", "bg-pass"
FILL = {"instType": "USDT-FUTURES", "channel": "fill", "instId": "default"}
Talk = Callable[[LoopbackBitgetWs, str, aiohttp.ClientSession], Awaitable[None]]


def login(stamp: int, passphrase: str = PASSPHRASE, secret: str = SECRET) -> dict[str, Any]:
    prehash = f"{stamp}GET/user/verify".encode()
    sign = base64.b64encode(hmac.new(secret.encode(), prehash, hashlib.sha256).digest())
    args = {"apiKey": KEY, "passphrase": passphrase, "timestamp": str(stamp), "sign": sign.decode()}
    return {"op": "login", "args": [args]}


async def ask(ws: aiohttp.ClientWebSocketResponse, message: object) -> Any:
    await ws.send_str(message if isinstance(message, str) else json.dumps(message))
    reply = await asyncio.wait_for(ws.receive_str(), 5)
    return reply if reply == "pong" else json.loads(reply)


def talk(story: Talk) -> None:
    async def main() -> None:
        server = LoopbackBitgetWs(KEY, SECRET, PASSPHRASE)
        url = await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                await story(server, "ws" + url.removeprefix("http"), session)
        finally:
            await server.close()

    asyncio.run(main())


def test_a_login_is_checked_field_by_field_with_bitgets_codes() -> None:
    async def story(server: LoopbackBitgetWs, url: str, session: aiohttp.ClientSession) -> None:
        now = int(time.time())
        async with session.ws_connect(url + PRIVATE_PATH) as ws:
            assert await ask(ws, "ping") == "pong"
            refused = await ask(ws, {"op": "subscribe", "args": [FILL]})
            assert (refused["event"], refused["code"]) == ("error", 30004)
            assert (await ask(ws, login(now, passphrase="wrong")))["code"] == 30012
            assert (await ask(ws, login(now, secret="wrong")))["code"] == 30015
            assert (await ask(ws, login(now - 45)))["code"] == 30014
            assert await ask(ws, login(now)) == {"event": "login", "code": 0, "msg": ""}
            assert await ask(ws, {"op": "subscribe", "args": [FILL]}) == {
                "event": "subscribe",
                "arg": FILL,
            }
            wrong = await ask(ws, {"op": "subscribe", "args": [{**FILL, "instType": "SPOT"}]})
            assert wrong["code"] == 30001
        async with session.ws_connect(url + PUBLIC_PATH) as ws:
            assert (await ask(ws, login(now)))["code"] == 30002, "no login on the public one"
        assert server.ws_logins == ["30012", "30015", "30014", "ok", "30002"]

    talk(story)


def test_candles_are_pushed_on_the_public_channel() -> None:
    async def story(server: LoopbackBitgetWs, url: str, session: aiohttp.ClientSession) -> None:
        minute = int(time.time() * 1000) // 60_000 * 60_000
        server.push_candle("ETHUSDT", minute, 2500, 2505, 2495, 2501, 10)
        channel = {"instType": "USDT-FUTURES", "channel": "candle1m", "instId": "ETHUSDT"}
        async with session.ws_connect(url + PUBLIC_PATH) as ws:
            assert await ask(ws, {"op": "subscribe", "args": [channel]}) == {
                "event": "subscribe",
                "arg": channel,
            }
            snapshot = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
            assert snapshot["action"] == "snapshot" and snapshot["arg"] == channel
            assert snapshot["data"][0][:5] == [
                str(minute),
                "2500.00",
                "2505.00",
                "2495.00",
                "2501.00",
            ]
            server.push_candle("ETHUSDT", minute + 60_000, 2501, 2510, 2500, 2509, 12)
            update = json.loads(await asyncio.wait_for(ws.receive_str(), 5))
            assert update["action"] == "update" and update["data"][0][4] == "2509.00"

    talk(story)
