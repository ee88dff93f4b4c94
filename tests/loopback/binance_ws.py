"""Binance USDT-M futures' market websocket on the loopback server, for ccxt.pro ``binanceusdm``.

What ccxt.pro 4.5.90 does for ``watch_ohlcv("ETH/USDT:USDT", "1m")`` on a linear market:

- connects to ``urls['api']['ws']['linear']`` with its trailing ``/ws`` turned into
  ``/market/ws`` (``get_ws_url(type, "market")``) plus ``/<stream index>``, i.e.
  ``wss://fstream.binance.com/market/ws/0``;
- sends ``{"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 1}`` and expects
  ``{"result": null, "id": 1}``;
- parses raw (not combined-stream) events ``{"e": "kline", "E": ..., "s": "ETHUSDT", "k": {...}}``
  with ``k`` = t, T, s, i, f, L, o, c, h, l, v, n, x, q, V, Q, B; it keeps only
  ``[t, o, h, l, c, v]`` in a cache updated in place, so the ``x`` (closed) flag is lost.

The user-data stream, as ccxt.pro 4.5.90 uses it for ``watch_orders`` / ``watch_my_trades`` on
a linear market: ``POST /fapi/v1/listenKey`` (API key header only) gives a listen key, ccxt
connects to ``urls['api']['ws']['linear']`` turned into ``.../private/ws?listenKey=<key>`` and
keeps the key alive with ``PUT /fapi/v1/listenKey`` every ``listenKeyRefreshRate``. The server
pushes ``ORDER_TRADE_UPDATE`` (x NEW, TRADE, CANCELED, EXPIRED; a liquidation's client id starts
``autoclose-``) and ``ACCOUNT_UPDATE`` (m ORDER, FUNDING_FEE) events, Binance's field names.
A connection with an unknown or expired listen key is closed at once.

`LoopbackBinanceWs` is `LoopbackBinance` answering those upgrades on the same port: every
`push_candle` sends a kline event to the connections subscribed to that symbol's stream (a
candle that starts a new period first re-sends the previous one with ``"x": true``, as
Binance closes a kline before opening the next). A test can drop every connection
(`drop_websockets`) or refuse new ones (`refuse_websockets`). `point_ccxt_ws_at` re-roots a
ccxt.pro instance's websocket URLs at the loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from daemon.adapters.ccxt_gateway import point_at_base_url
from tests.loopback.binance_usdm import (
    _INTERVAL_MS,
    SYMBOLS,
    Candle,
    LoopbackBinance,
    Number,
    _fmt,
    _Order,
    _Trade,
)

WS_PREFIXES = ("/market/ws", "/public/ws", "/private/ws", "/ws", "/stream")
_CLOSE = object()  # queue sentinel: close the connection with a close frame


@dataclass(eq=False)
class _Connection:
    path: str
    request: web.Request
    streams: set[str] = field(default_factory=set)
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    listen_key: str | None = None  # a user-data stream connection


class LoopbackBinanceWs(LoopbackBinance):
    """The loopback Binance with the kline stream of Binance futures' market websocket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ws_connections_accepted = 0
        self.ws_refused = 0
        self.ws_received: list[dict[str, Any]] = []  # every message a client sent
        self._refuse_status: int | None = None
        self._connections: list[_Connection] = []

    # ------------------------------------------------------------- test surface

    @property
    def ws_open_connections(self) -> int:
        return len(self._connections)

    def ws_subscribers(self, symbol: str) -> int:
        """Open connections subscribed to `symbol`'s kline stream."""
        stream = f"{symbol.lower()}@kline_{self.interval}"
        return sum(stream in c.streams for c in self._connections)

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
        self,
        symbol: str,
        ts_ms: int,
        o: Number,
        h: Number,
        low: Number,
        c: Number,
        v: Number,
    ) -> None:
        state = self._state(symbol)
        previous = max(state.candles, default=None)
        super().push_candle(symbol, ts_ms, o, h, low, c, v)
        if previous is not None and previous < ts_ms:
            self._publish(symbol, state.candles[previous], closed=True)
        step = _INTERVAL_MS[self.interval]
        self._publish(symbol, state.candles[ts_ms], closed=ts_ms + step <= self._clock())

    async def close(self) -> None:
        """Close the websockets first (a close frame each), then the server."""
        for conn in list(self._connections):
            conn.queue.put_nowait(_CLOSE)
        await asyncio.sleep(0)
        await super().close()

    # ------------------------------------------------------------------ websocket

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if upgrade and request.path.startswith(WS_PREFIXES):
            return await self._websocket(request)
        return await super()._dispatch(request)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._refuse_status is not None:
            self.ws_refused += 1
            return web.Response(status=self._refuse_status, text="websocket refused")
        listen_key = None
        if request.path.startswith("/private/ws"):
            listen_key = request.query.get("listenKey", "")
            if self.listen_keys.get(listen_key, 0) < self._clock():
                self.ws_refused += 1
                return web.Response(status=400, text="invalid listen key")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.ws_connections_accepted += 1
        conn = _Connection(request.path, request, listen_key=listen_key)
        self._connections.append(conn)
        writer = asyncio.ensure_future(self._write(ws, conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(conn, msg.data)
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

    async def _on_text(self, conn: _Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            conn.queue.put_nowait(json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        self.ws_received.append(message)
        method, params, request_id = message.get("method"), message.get("params"), message.get("id")
        if method == "SUBSCRIBE" and isinstance(params, list):
            conn.streams.update(str(p) for p in params)
            reply: dict[str, Any] = {"result": None, "id": request_id}
        elif method == "UNSUBSCRIBE" and isinstance(params, list):
            conn.streams.difference_update(str(p) for p in params)
            reply = {"result": None, "id": request_id}
        elif method == "LIST_SUBSCRIPTIONS":
            reply = {"result": sorted(conn.streams), "id": request_id}
        else:
            reply = {"error": {"code": 2, "msg": f"Invalid request: {method}"}, "id": request_id}
        conn.queue.put_nowait(json.dumps(reply))

    # ------------------------------------------------------------ user data

    @property
    def user_stream_connections(self) -> int:
        return sum(c.listen_key is not None for c in self._connections)

    def _push_user(self, event: dict[str, Any]) -> None:
        text = json.dumps(event)
        for conn in self._connections:
            if conn.listen_key is not None:
                conn.queue.put_nowait(text)

    def _on_order_event(self, order: _Order) -> None:
        if order.status in ("NEW", "CANCELED", "EXPIRED"):
            self._push_user(self._order_update(order, None))

    def _on_trade(self, order: _Order, trade: _Trade) -> None:
        self._push_user(self._order_update(order, trade))
        self._on_account_event("ORDER")

    def _on_account_event(self, reason: str) -> None:
        now = self._clock()
        positions = []
        for state in self._symbols.values():
            pos, spec = state.position, state.spec
            if pos.qty == 0 and reason != "ORDER":
                continue
            mark = state.last if state.last is not None else pos.entry
            positions.append(
                {
                    "s": spec.symbol,
                    "pa": _fmt(pos.qty, spec.quantity_precision),
                    "ep": _fmt(pos.entry, 8),
                    "bep": _fmt(pos.entry, 8),
                    "cr": "0",
                    "up": _fmt(pos.qty * (mark - pos.entry), 8),
                    "mt": "isolated" if state.margin_type == "ISOLATED" else "cross",
                    "iw": "0",
                    "ps": "BOTH",
                }
            )
        wallet = _fmt(self.wallet_balance, 8)
        self._push_user(
            {
                "e": "ACCOUNT_UPDATE",
                "E": now,
                "T": now,
                "a": {
                    "m": reason,
                    "B": [{"a": "USDT", "wb": wallet, "cw": wallet, "bc": "0"}],
                    "P": positions,
                },
            }
        )

    def _order_update(self, order: _Order, trade: _Trade | None) -> dict[str, Any]:
        spec = SYMBOLS.get(order.symbol) or self._state(order.symbol).spec
        pp, qp = spec.price_precision, spec.quantity_precision
        avg = order.cum_quote / order.executed if order.executed else Decimal(0)
        now = self._clock()
        return {
            "e": "ORDER_TRADE_UPDATE",
            "E": now,
            "T": trade.time if trade is not None else order.update_time,
            "o": {
                "s": order.symbol,
                "c": order.client_id,
                "S": order.side,
                "o": order.type,
                "f": order.time_in_force,
                "q": _fmt(order.qty, qp),
                "p": _fmt(order.price, pp),
                "ap": _fmt(avg, 5),
                "sp": _fmt(order.stop_price, pp),
                "x": "TRADE" if trade is not None else order.status,
                "X": order.status,
                "i": order.order_id,
                "l": _fmt(trade.qty, qp) if trade is not None else "0",
                "z": _fmt(order.executed, qp),
                "L": _fmt(trade.price, pp) if trade is not None else "0",
                "N": trade.commission_asset if trade is not None else "USDT",
                "n": _fmt(trade.commission, 8) if trade is not None else "0",
                "T": trade.time if trade is not None else order.update_time,
                "t": trade.trade_id if trade is not None else 0,
                "b": "0",
                "a": "0",
                "m": trade.maker if trade is not None else False,
                "R": order.reduce_only,
                "wt": "CONTRACT_PRICE",
                "ot": order.orig_type or order.type,
                "ps": "BOTH",
                "cp": False,
                "rp": _fmt(trade.realized_pnl, 8) if trade is not None else "0",
                "pP": False,
                "si": 0,
                "ss": 0,
                "V": "EXPIRE_MAKER",
                "pm": "NONE",
                "gtd": 0,
            },
        }

    def _publish(self, symbol: str, candle: Candle, closed: bool) -> None:
        stream = f"{symbol.lower()}@kline_{self.interval}"
        subscribers = [c for c in self._connections if stream in c.streams]
        if not subscribers:
            return
        text = json.dumps(self._kline_event(symbol, candle, closed))
        for conn in subscribers:
            conn.queue.put_nowait(text)

    def _kline_event(self, symbol: str, candle: Candle, closed: bool) -> dict[str, Any]:
        spec = self._state(symbol).spec
        pp, qp = spec.price_precision, spec.quantity_precision
        step = _INTERVAL_MS[self.interval]
        half = candle.volume / 2
        return {
            "e": "kline",
            "E": self._clock(),
            "s": symbol,
            "k": {
                "t": candle.ts,
                "T": candle.ts + step - 1,
                "s": symbol,
                "i": self.interval,
                "f": 100,
                "L": 200,
                "o": _fmt(candle.open, pp),
                "c": _fmt(candle.close, pp),
                "h": _fmt(candle.high, pp),
                "l": _fmt(candle.low, pp),
                "v": _fmt(candle.volume, qp),
                "n": 1 if candle.volume > 0 else 0,
                "x": closed,
                "q": _fmt(candle.volume * candle.close, 5),
                "V": _fmt(half, qp),
                "Q": _fmt(half * candle.close, 5),
                "B": "0",
            },
        }


def point_ccxt_ws_at(exchange: Any, base_url: str) -> None:
    """Re-root every ``urls['api']['ws']`` entry of a ccxt.pro instance at the loopback.

    ``http://127.0.0.1:port`` becomes ``ws://127.0.0.1:port``; each URL keeps its path, so
    linear ``.../ws`` still becomes ``.../market/ws/0`` inside ccxt.
    """
    point_at_base_url(exchange, base_url)  # the daemon's own re-rooting, REST and websocket
