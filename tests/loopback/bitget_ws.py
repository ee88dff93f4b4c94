"""Bitget's v2 websockets on the loopback Bitget, for ccxt.pro ``bitget`` (classic account).

What ccxt.pro 4.5.90 does, and what this server checks and answers:

- Private (``urls['api']['ws']['private']``, ``/v2/ws/private``): ccxt logs in first with
  ``{"op": "login", "args": [{"apiKey", "passphrase", "timestamp", "sign"}]}``, the timestamp
  in seconds and the sign base64 HMAC-SHA256 of ``timestamp + "GET" + "/user/verify"``. A
  good login is answered ``{"event": "login", "code": 0}``; a bad one
  ``{"event": "error", "code": 3001x, "msg": ...}`` with Bitget's codes (30011 key, 30012
  passphrase, 30013 timestamp, 30014 expired, 30015 sign), which ccxt raises as an
  AuthenticationError (30014 as BadRequest). Then ``watch_my_trades`` subscribes
  ``{"instType": "USDT-FUTURES", "channel": "fill", "instId": "default"}`` and
  ``watch_orders`` the same with ``"channel": "orders"``; a subscription before login is
  refused 30004. Each is answered ``{"event": "subscribe", "arg": ...}``.
- Public (``/v2/ws/public``): ``watch_ohlcv(symbol, "1m")`` subscribes
  ``{"instType": "USDT-FUTURES", "channel": "candle1m", "instId": "ETHUSDT"}``; every pushed
  candle is sent as ``{"action": "update", "arg": ..., "data": [[ts, o, h, l, c, base
  volume, quote volume, usdt volume]], "ts": ...}`` (the first, on subscribing, a
  ``snapshot`` of the newest candle).
- Keep-alive: ccxt sends the text ``ping`` every few seconds and needs the text ``pong``,
  or it drops the connection as timed out.

Pushes, in the shapes ccxt's ``handle_my_trades`` / ``parse_ws_trade`` and ``handle_order`` /
``parse_ws_order`` read (Bitget's documented contract Fill and Order channels; fills carry no
client id, orders do): every fill of the REST server (market, limit, a triggered plan, a
liquidation) is pushed on ``fill`` and its order on ``orders``; an order placed without a
fill, or cancelled, on ``orders``. Funding is not pushed (Bitget has no such channel): it is
read from the bills by REST.

A test can drop every connection (`drop_websockets`), refuse new ones
(`refuse_websockets`), and read what clients sent (`ws_received`) and how logins went
(`ws_logins`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from tests.loopback.binance_usdm import Candle, Number, _fmt, _plain
from tests.loopback.bitget_usdt import CONTRACTS, PRODUCT, Json, LoopbackBitget, _Fill, _Order

PRIVATE_PATH, PUBLIC_PATH = "/v2/ws/private", "/v2/ws/public"
PRIVATE_CHANNELS = frozenset({"fill", "orders", "orders-algo", "positions", "account"})
LOGIN_WINDOW_S = 30
_CLOSE = object()  # queue sentinel: close the connection with a close frame


@dataclass(eq=False)
class _Connection:
    path: str
    request: web.Request
    logged_in: bool = False
    channels: set[tuple[str, str]] = field(default_factory=set)  # (channel, instId)
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)


class LoopbackBitgetWs(LoopbackBitget):
    """The loopback Bitget with its private (fills, orders) and public (candles) websockets."""

    def __init__(self, *args: Any, ws_passphrase: str | None = None, **kwargs: Any) -> None:
        """`ws_passphrase`: what the websocket login expects instead of the REST passphrase,
        so a test can have the websocket alone refuse a key that REST accepts."""
        super().__init__(*args, **kwargs)
        self.ws_passphrase = self.passphrase if ws_passphrase is None else ws_passphrase
        self.ws_connections_accepted = 0
        self.ws_refused = 0
        self.ws_received: list[Any] = []  # every message a client sent ("ping" included)
        self.ws_logins: list[str] = []  # "ok", or the refusal's code
        self._refuse_status: int | None = None
        self._connections: list[_Connection] = []

    # ------------------------------------------------------------- test surface

    @property
    def ws_open_connections(self) -> int:
        return len(self._connections)

    @property
    def user_stream_connections(self) -> int:
        """Logged-in connections subscribed to the fill channel."""
        return sum(c.logged_in and ("fill", "default") in c.channels for c in self._connections)

    def refuse_websockets(self, status: int | None = 503) -> None:
        """Answer new upgrades with HTTP `status` (None: accept them again)."""
        self._refuse_status = status

    def drop_websockets(self, abrupt: bool = False) -> int:
        """Close every open connection: a close frame, or (`abrupt`) the bare transport."""
        dropped = list(self._connections)
        for conn in dropped:
            if abrupt and conn.request.transport is not None:
                conn.request.transport.abort()
            else:
                conn.queue.put_nowait(_CLOSE)
        return len(dropped)

    def push_candle(
        self, symbol: str, ts_ms: int, o: Number, h: Number, low: Number, c: Number, v: Number
    ) -> None:
        super().push_candle(symbol, ts_ms, o, h, low, c, v)
        self._publish_candle(symbol, self._state(symbol).candles[ts_ms], "update")

    async def close(self) -> None:
        """Close the websockets first (a close frame each), then the server."""
        for conn in list(self._connections):
            conn.queue.put_nowait(_CLOSE)
        await asyncio.sleep(0)
        await super().close()

    # ------------------------------------------------------------------ websocket

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and request.path in (PRIVATE_PATH, PUBLIC_PATH):
            return await self._websocket(request)
        return await super()._dispatch(request)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._refuse_status is not None:
            self.ws_refused += 1
            return web.Response(status=self._refuse_status, text="websocket refused")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.ws_connections_accepted += 1
        conn = _Connection(request.path, request)
        self._connections.append(conn)
        writer = asyncio.ensure_future(self._write(ws, conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
        finally:
            self._connections.remove(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer
        return ws

    async def _write(self, ws: web.WebSocketResponse, conn: _Connection) -> None:
        while True:
            item = await conn.queue.get()
            if item is _CLOSE:
                await ws.close(code=1001, message=b"loopback drop")
                return
            await ws.send_str(str(item))

    def _send(self, conn: _Connection, message: Json | str) -> None:
        conn.queue.put_nowait(message if isinstance(message, str) else json.dumps(message))

    def _on_text(self, conn: _Connection, text: str) -> None:
        if text == "ping":
            self.ws_received.append(text)
            self._send(conn, "pong")
            return
        try:
            message = json.loads(text)
        except ValueError:
            self._send(conn, _error(30016, "Param error"))
            return
        self.ws_received.append(message)
        op, args = message.get("op"), message.get("args")
        if not isinstance(args, list) or not args:
            self._send(conn, _error(30016, "Param error"))
        elif op == "login":
            self._login(conn, args[0] if isinstance(args[0], dict) else {})
        elif op in ("subscribe", "unsubscribe"):
            for arg in args:
                self._subscribe(conn, arg if isinstance(arg, dict) else {}, op == "subscribe")
        else:
            self._send(conn, _error(30003, f"Invalid op: {op}"))

    def _login(self, conn: _Connection, arg: dict[str, Any]) -> None:
        refusal = self._login_refusal(conn, arg)
        if refusal is None:
            conn.logged_in = True
            self.ws_logins.append("ok")
            self._send(conn, {"event": "login", "code": 0, "msg": ""})
            return
        code, msg = refusal
        self.ws_logins.append(str(code))
        self._send(conn, _error(code, msg))

    def _login_refusal(self, conn: _Connection, arg: dict[str, Any]) -> tuple[int, str] | None:
        if conn.path != PRIVATE_PATH:
            return 30002, "Illegal request: login on the public channel"
        if not hmac.compare_digest(str(arg.get("apiKey", "")), self.api_key):
            return 30011, "Invalid ACCESS_KEY"
        if not hmac.compare_digest(str(arg.get("passphrase", "")), self.ws_passphrase):
            return 30012, "Invalid ACCESS_PASSPHRASE"
        stamp = str(arg.get("timestamp", ""))
        if not stamp.isdigit():
            return 30013, "Invalid ACCESS_TIMESTAMP"
        seconds = int(stamp) / 1000 if len(stamp) > 10 else int(stamp)  # either unit is taken
        if abs(seconds - self._clock() / 1000) > LOGIN_WINDOW_S:
            return 30014, "Request timestamp expired"
        prehash = stamp + "GET" + "/user/verify"
        digest = hmac.new(self.api_secret.encode(), prehash.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(str(arg.get("sign", "")), base64.b64encode(digest).decode()):
            return 30015, "Invalid sign"
        return None

    def _subscribe(self, conn: _Connection, arg: dict[str, Any], subscribe: bool) -> None:
        channel, inst_id = str(arg.get("channel", "")), str(arg.get("instId", ""))
        if str(arg.get("instType", "")) != PRODUCT:
            self._send(conn, _error(30001, f"instType:{arg.get('instType')} doesn't exist", arg))
            return
        private = channel in PRIVATE_CHANNELS
        if private and (conn.path != PRIVATE_PATH or not conn.logged_in):
            self._send(conn, _error(30004, "User not logged in", arg))
            return
        public = channel == f"candle{self.interval}" and inst_id in CONTRACTS
        if not private and (not public or conn.path != PUBLIC_PATH):
            self._send(conn, _error(30001, f"channel:{channel},instId:{inst_id} doesn't exist"))
            return
        if not subscribe:
            conn.channels.discard((channel, inst_id))
            self._send(conn, {"event": "unsubscribe", "arg": arg})
            return
        conn.channels.add((channel, inst_id))
        self._send(conn, {"event": "subscribe", "arg": arg})
        candles = self._state(inst_id).candles if public else {}
        if candles:
            self._send(conn, self._candle_message(inst_id, candles[max(candles)], "snapshot"))

    # ------------------------------------------------------------------ pushes

    def _push(self, channel: str, inst_id: str, message: Json) -> None:
        text = json.dumps(message)
        for conn in self._connections:
            if (channel, inst_id) in conn.channels:
                conn.queue.put_nowait(text)

    def _on_order_event(self, order: _Order) -> None:
        self._push("orders", "default", self._private("orders", [self._ws_order(order, None)]))

    def _on_fill(self, order: _Order, fill: _Fill) -> None:
        self._push("fill", "default", self._private("fill", [self._ws_fill(fill)]))
        self._push("orders", "default", self._private("orders", [self._ws_order(order, fill)]))

    def _private(self, channel: str, data: list[Json]) -> Json:
        arg = {"instType": PRODUCT, "channel": channel, "instId": "default"}
        return {"action": "snapshot", "arg": arg, "data": data, "ts": self._clock()}

    def _ws_fill(self, fill: _Fill) -> Json:
        """The contract Fill channel's entry: REST's fill, with the order type and sizes."""
        rest = self._fill_json(fill)
        order = self._orders[fill.order_id]
        return {
            "orderId": rest["orderId"],
            "tradeId": rest["tradeId"],
            "symbol": fill.symbol,
            "orderType": order.order_type,
            "side": fill.side,
            "price": rest["price"],
            "baseVolume": rest["baseVolume"],
            "quoteVolume": rest["quoteVolume"],
            "profit": rest["profit"],
            "tradeSide": rest["tradeSide"],
            "posMode": "one_way_mode",
            "tradeScope": rest["tradeScope"],
            "feeDetail": rest["feeDetail"],
            "cTime": str(fill.time),
            "uTime": str(fill.time),
        }

    def _ws_order(self, order: _Order, fill: _Fill | None) -> Json:
        """The contract Order channel's entry; a fill's fields when one caused the push."""
        spec = CONTRACTS[order.symbol]
        avg = order.quote / order.filled if order.filled else Decimal(0)
        body: Json = {
            "accBaseVolume": _plain(order.filled),
            "cTime": str(order.time),
            "clientOid": order.client_oid,
            "feeDetail": [{"feeCoin": "USDT", "fee": _fmt(-order.fee, 8)}],
            "force": order.force,
            "instId": order.symbol,
            "leverage": str(order.leverage),
            "marginCoin": "USDT",
            "marginMode": order.margin_mode,
            "notionalUsd": _fmt(order.size * (order.price or avg), 8),
            "orderId": str(order.order_id),
            "orderType": order.order_type,
            "posMode": "one_way_mode",
            "posSide": "net",
            "price": _fmt(order.price, spec.price_place) if order.price else "0",
            "priceAvg": _fmt(avg, spec.price_place) if order.filled else "0",
            "reduceOnly": "yes" if order.reduce_only else "no",
            "side": order.side,
            "size": _plain(order.size),
            "enterPointSource": order.source.upper(),
            "status": order.state,
            "tradeSide": f"{order.side}_single",
            "totalProfits": _fmt(order.profit, 8),
            "presetStopSurplusPrice": "",
            "presetStopLossPrice": "",
            "stpMode": "none",
            "cancelReason": "",
            "uTime": str(order.update_time),
        }
        if fill is not None:
            body.update(
                {
                    "baseVolume": _plain(fill.size),  # this fill's size
                    "fillFee": _fmt(-fill.fee, 8),
                    "fillFeeCoin": "USDT",
                    "fillNotionalUsd": _fmt(fill.size * fill.price, 8),
                    "fillPrice": _fmt(fill.price, spec.price_place),
                    "fillTime": str(fill.time),
                    "pnl": _fmt(fill.profit, 8),
                    "tradeId": str(fill.trade_id),
                    "tradeScope": "M" if fill.maker else "T",
                }
            )
        return body

    def _publish_candle(self, symbol: str, candle: Candle, action: str) -> None:
        channel = f"candle{self.interval}"
        if any((channel, symbol) in c.channels for c in self._connections):
            self._push(channel, symbol, self._candle_message(symbol, candle, action))

    def _candle_message(self, symbol: str, candle: Candle, action: str) -> Json:
        spec = CONTRACTS[symbol]
        pp, vp = spec.price_place, spec.volume_place
        quote = _fmt(candle.volume * candle.close, 4)
        row = [
            str(candle.ts),
            _fmt(candle.open, pp),
            _fmt(candle.high, pp),
            _fmt(candle.low, pp),
            _fmt(candle.close, pp),
            _fmt(candle.volume, vp),
            quote,
            quote,
        ]
        arg = {"instType": PRODUCT, "channel": f"candle{self.interval}", "instId": symbol}
        return {"action": action, "arg": arg, "data": [row], "ts": self._clock()}


def _error(code: int, msg: str, arg: dict[str, Any] | None = None) -> Json:
    body: Json = {"event": "error", "code": code, "msg": msg}
    if arg is not None:
        body["arg"] = arg
    return body
