"""The control protocol, shared by the CLI and the daemon. Standard library only.

Newline-delimited JSON over a Unix stream socket. A request is
``{"v": 1, "id": "...", "cmd": "status", "args": {...}}``; a reply carries the same
``id`` and either ``"ok": true, "result": ...`` or ``"ok": false, "error": {"code",
"message"}``. Error codes are stable; clients branch on them, people read the message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024
MAX_REPLY_BYTES = 16 * 1024 * 1024


class Command:
    """Every command the daemon understands."""

    PING = "ping"
    STATUS = "status"
    START = "start"
    STOP = "stop"
    POSITIONS = "positions"
    ORDERS = "orders"
    HEALTH = "health"
    FLATTEN = "flatten"
    RESUME = "resume"

    ALL = frozenset({PING, STATUS, START, STOP, POSITIONS, ORDERS, HEALTH, FLATTEN, RESUME})


class ErrorCode:
    """Stable error codes; each maps to one CLI exit code."""

    BAD_REQUEST = "bad_request"  # not JSON, not an object, missing or wrong fields
    FRAME_TOO_LARGE = "frame_too_large"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_COMMAND = "unknown_command"
    NOT_FOUND = "not_found"  # a named bot or order does not exist
    REFUSED = "refused"  # understood, but not allowed now (illegal transition, risk rule)
    FORBIDDEN = "forbidden"  # this local user may not do this (see the README's access rules)
    BUSY = "busy"  # too many clients at once
    INTERNAL = "internal"  # a bug in the daemon; it is logged there


class ProtocolError(Exception):
    """A frame that cannot be understood; carries the error code to reply with."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    id: str | None
    ok: bool
    result: Any = None
    error: ErrorInfo | None = None
    v: int = PROTOCOL_VERSION


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode() + b"\n"


def encode_request(request: Request) -> bytes:
    return _encode({"v": request.v, "id": request.id, "cmd": request.cmd, "args": request.args})


def encode_reply(reply: Reply) -> bytes:
    body: dict[str, Any] = {"v": reply.v, "id": reply.id, "ok": reply.ok}
    if reply.ok:
        body["result"] = reply.result
    else:
        assert reply.error is not None
        body["error"] = {"code": reply.error.code, "message": reply.error.message}
    return _encode(body)


def ok_reply(request_id: str | None, result: Any) -> Reply:
    return Reply(id=request_id, ok=True, result=result)


def error_reply(request_id: str | None, code: str, message: str) -> Reply:
    return Reply(id=request_id, ok=False, error=ErrorInfo(code, message))


def _parse_object(line: bytes, limit: int) -> dict[str, Any]:
    if len(line) > limit:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE, f"frame of {len(line)} bytes exceeds {limit}"
        )
    try:
        obj = json.loads(line)
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame is nested too deeply") from None
    except ValueError as e:  # not UTF-8, not JSON, or a number too long to convert
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"frame is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    return obj


def decode_request(line: bytes) -> Request:
    """Parse one request frame or raise ProtocolError with the code to reply with."""
    obj = _parse_object(line, MAX_REQUEST_BYTES)
    raw_id = obj.get("id")
    request_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 128 else None
    if request_id is None:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "field 'id' must be a string of at most 128 chars"
        )
    version = obj.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported; this daemon speaks {PROTOCOL_VERSION}",
            request_id,
        )
    cmd = obj.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "field 'cmd' must be a string", request_id)
    if cmd not in Command.ALL:
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {cmd!r}", request_id)
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "field 'args' must be an object", request_id)
    return Request(id=request_id, cmd=cmd, args=args, v=version)


def decode_reply(line: bytes) -> Reply:
    """Parse one reply frame; a daemon speaking nonsense is a ProtocolError too."""
    obj = _parse_object(line, MAX_REPLY_BYTES)
    if obj.get("ok") is True:
        return Reply(id=obj.get("id"), ok=True, result=obj.get("result"), v=obj.get("v", 0))
    error = obj.get("error")
    if obj.get("ok") is False and isinstance(error, dict):
        return Reply(
            id=obj.get("id"),
            ok=False,
            error=ErrorInfo(
                str(error.get("code", ErrorCode.INTERNAL)), str(error.get("message", ""))
            ),
            v=obj.get("v", 0),
        )
    raise ProtocolError(ErrorCode.BAD_REQUEST, "reply is neither a result nor an error")
