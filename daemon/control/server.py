"""The control socket: newline-delimited JSON requests in, one reply each out.

It only parses, dispatches to a handler and translates domain errors into protocol
errors; the handlers (the daemon's public operations) do the work. Bad input gets
an error reply and the connection carries on, except for an oversized frame, after
which the stream cannot be resynchronised and is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from daemon.domain.errors import NotFound, Refused, TradectlError
from tradectl.protocol import (
    MAX_REQUEST_BYTES,
    ErrorCode,
    ProtocolError,
    Reply,
    Request,
    decode_request,
    encode_reply,
    error_reply,
    ok_reply,
)

Handler = Callable[[Request], Awaitable[Any]]
IDLE_TIMEOUT_S = 300.0  # a connection may idle between requests this long
FRAME_TIMEOUT_S = 10.0  # once a request has begun, the rest of its line must come this soon
MAX_CLIENTS = 64
SOCKET_MODE = 0o660


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end, as the kernel says (SO_PEERCRED), not as they claim."""

    pid: int
    uid: int
    gid: int

    def groups(self) -> set[int]:
        """Primary and supplementary groups of the peer process, read from /proc."""
        found = {self.gid}
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("Groups:"):
                        found.update(int(g) for g in line.split()[1:])
        except OSError:
            pass  # the peer exited; its primary group is all we know
        return found


current_peer: ContextVar[Peer] = ContextVar("current_peer")
Authorizer = Callable[[Peer, Request], None]  # raises Forbidden to refuse


class Forbidden(TradectlError):
    """The peer may not do this."""


class SocketInUse(TradectlError):
    """Another live process answers on the socket path."""


class ControlServer:
    def __init__(
        self,
        socket_path: Path,
        handlers: dict[str, Handler],
        authorize: Authorizer | None = None,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.socket_path = socket_path
        self._handlers = handlers
        self._authorize = authorize
        self._max_clients = max_clients
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger()

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_socket(self.socket_path)
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly wider
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.socket_path), limit=MAX_REQUEST_BYTES + 1
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, SOCKET_MODE)
        self._log.info("control_socket_listening", path=str(self.socket_path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.wait(self._connections, timeout=2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self._max_clients:
            self._log.warning("control_client_refused", reason="too many clients")
            await self._refuse_busy(writer)
            return
        self._connections.add(task)
        current_peer.set(_peer_of(writer))
        try:
            while True:
                try:
                    line = await self._read_frame(reader)
                except asyncio.IncompleteReadError as e:
                    if e.partial.strip():
                        await self._reply(writer, await self._handle(e.partial))
                    return
                except asyncio.LimitOverrunError:
                    await self._reply(
                        writer,
                        error_reply(
                            None,
                            ErrorCode.FRAME_TOO_LARGE,
                            f"frame exceeds {MAX_REQUEST_BYTES} bytes; closing the connection",
                        ),
                    )
                    return
                except (TimeoutError, ConnectionError, OSError):
                    return
                if not line.strip():
                    continue
                await self._reply(writer, await self._handle(line))
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass  # gone, or not reading its replies (see _reply): dropped, nothing to report
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes:
        """Wait as long as a client likes for a request to begin, but not for it to end:
        a client that sends half a line and stalls is dropped, not waited on."""
        first = await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT_S)
        if not first:
            raise asyncio.IncompleteReadError(b"", None)
        if first == b"\n":
            return first
        try:
            rest = await asyncio.wait_for(reader.readuntil(b"\n"), FRAME_TIMEOUT_S)
        except asyncio.IncompleteReadError as e:
            raise asyncio.IncompleteReadError(first + e.partial, None) from None
        return first + rest

    async def _refuse_busy(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            writer.write(
                encode_reply(error_reply(None, ErrorCode.BUSY, "too many clients; try again"))
            )
            await asyncio.wait_for(writer.drain(), 1.0)
        writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        """A client that does not read its replies is dropped rather than waited on."""
        writer.write(encode_reply(reply))
        await asyncio.wait_for(writer.drain(), FRAME_TIMEOUT_S)

    async def _handle(self, line: bytes) -> Reply:
        try:
            request = decode_request(line.strip())
        except ProtocolError as e:
            self._log.warning("control_request_refused", code=e.code, reason=e.message)
            return error_reply(e.request_id, e.code, e.message)
        handler = self._handlers.get(request.cmd)
        if handler is None:
            return error_reply(
                request.id, ErrorCode.UNKNOWN_COMMAND, f"unknown command {request.cmd!r}"
            )
        try:
            if self._authorize is not None:
                self._authorize(current_peer.get(), request)
            return ok_reply(request.id, await handler(request))
        except Forbidden as e:
            peer = current_peer.get()
            self._log.warning("control_forbidden", cmd=request.cmd, uid=peer.uid, reason=str(e))
            return error_reply(request.id, ErrorCode.FORBIDDEN, str(e))
        except NotFound as e:
            return error_reply(request.id, ErrorCode.NOT_FOUND, str(e))
        except Refused as e:
            return error_reply(request.id, ErrorCode.REFUSED, str(e))
        except ArgumentError as e:
            return error_reply(request.id, ErrorCode.BAD_REQUEST, str(e))
        except TradectlError as e:
            return error_reply(request.id, ErrorCode.REFUSED, str(e))
        except Exception as e:
            self._log.error("control_handler_failed", cmd=request.cmd, exc_info=e)
            return error_reply(
                request.id, ErrorCode.INTERNAL, f"internal error: {type(e).__name__}: {e}"
            )


class ArgumentError(TradectlError):
    """A request's arguments are of the wrong shape."""


def arg(request: Request, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """One typed argument of a request, or ArgumentError naming it."""
    if name not in request.args:
        if default is ...:
            raise ArgumentError(f"{request.cmd}: missing argument {name!r}")
        return default
    value = request.args[name]
    if value is None and default is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        names = " or ".join(k.__name__ for k in kinds)
        raise ArgumentError(f"{request.cmd}: argument {name!r} must be {names}")
    return value


def _peer_of(writer: asyncio.StreamWriter) -> Peer:
    sock = writer.get_extra_info("socket")
    # struct ucred: a signed pid_t, then uid_t and gid_t, which are unsigned.
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    pid, uid, gid = struct.unpack("iII", raw)
    return Peer(pid, uid, gid)


def _remove_stale_socket(path: Path) -> None:
    """Unlink a socket left by a crash; refuse if something still answers on it."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUse(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: nobody listens
        return
    except OSError as e:
        raise SocketInUse(f"{path}: cannot tell whether it is in use: {e}") from None
    finally:
        probe.close()
    raise SocketInUse(f"another daemon answers on {path}; refusing to take its socket")
