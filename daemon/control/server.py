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

from daemon.control.access import Forbidden
from daemon.domain.errors import ConfigError, NotFound, Refused, TradectlError
from daemon.redaction import may_need_scrub, scrub, scrub_value
from tradectl.protocol import (
    MAX_REQUEST_BYTES,
    ErrorCode,
    ErrorInfo,
    ProtocolError,
    Reply,
    Request,
    decode_request,
    encode_reply,
    error_reply,
    ok_reply,
)

Handler = Callable[[Request], Awaitable[Any]]
IDLE_TIMEOUT_S = 300.0  # an administrator's connection may idle between requests this long
FRAME_TIMEOUT_S = 10.0  # once a request has begun, the rest of its line must come this soon
# Administrators (root, the daemon's user, admin_group) have a pool of their own, so no
# other local user can crowd them out; everyone else shares a smaller one, a few each,
# and is dropped soon when idle.
MAX_CLIENTS = 64
MAX_OTHER_CLIENTS = 48
MAX_CLIENTS_PER_OTHER_UID = 8
OTHER_IDLE_TIMEOUT_S = 10.0
SOCKET_MODE = 0o660
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13
# CPython refuses a getsockopt buffer over 1024 bytes ("buflen out of range", an OSError):
# 256 groups; a peer in more is looked up in /proc instead.
PEERGROUPS_BUFFER_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end, as the kernel says (SO_PEERCRED), not as they claim."""

    pid: int
    uid: int
    gid: int
    supplementary: frozenset[int] | None = None  # SO_PEERGROUPS, when the kernel tells

    def groups(self) -> set[int]:
        """Primary and supplementary groups of the peer, from the socket (as of connecting)
        or else /proc (which systemd's ProtectProc= may hide)."""
        found = {self.gid}
        if self.supplementary is not None:
            return found | self.supplementary
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
Privileged = Callable[[Peer], bool]  # served from the administrators' pool


class SocketInUse(TradectlError):
    """Another live process answers on the socket path."""


class SocketPathError(ConfigError):
    """The configured socket path cannot hold our socket (too long, a file or folder there)."""


class ControlServer:
    def __init__(
        self,
        socket_path: Path,
        handlers: dict[str, Handler],
        authorize: Authorizer | None = None,
        max_clients: int = MAX_CLIENTS,
        privileged: Privileged = lambda peer: True,
    ) -> None:
        self.socket_path = socket_path
        self._handlers = handlers
        self._authorize = authorize
        self._max_clients = max_clients
        self._privileged = privileged
        self._server: asyncio.Server | None = None
        self._bound: tuple[int, int] | None = None  # (device, inode) of the socket we made
        self._connections: dict[asyncio.Task[None], tuple[Peer, bool]] = {}
        self._log = structlog.get_logger()

    async def start(self) -> None:
        """Listen on the socket path; refuse (touching nothing) if it is not free."""
        claim_socket_path(self.socket_path)
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly wider
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.socket_path), limit=MAX_REQUEST_BYTES + 1
            )
        except OSError as e:
            raise SocketPathError(
                f"control socket {self.socket_path}: cannot listen there: {e.strerror or e}"
            ) from None
        finally:
            os.umask(old_umask)
        info = os.lstat(self.socket_path)
        self._bound = (info.st_dev, info.st_ino)
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
        self._remove_own_socket()

    def _remove_own_socket(self) -> None:
        """Unlink the socket only while it is still the one we made: never a file, a link,
        a folder, or another daemon's socket that replaced ours."""
        if self._bound is None:
            return
        with contextlib.suppress(OSError):
            info = os.lstat(self.socket_path)
            if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == self._bound:
                self.socket_path.unlink()
        self._bound = None

    def _full(self, peer: Peer, privileged: bool) -> str | None:
        """Why there is no slot for this peer now, or None when there is one."""
        pool = [p for p, admin in self._connections.values() if admin == privileged]
        if privileged:
            return "too many clients" if len(pool) >= self._max_clients else None
        if len(pool) >= MAX_OTHER_CLIENTS:
            return "too many clients without administrator rights"
        if sum(1 for p in pool if p.uid == peer.uid) >= MAX_CLIENTS_PER_OTHER_UID:
            return f"uid {peer.uid} holds {MAX_CLIENTS_PER_OTHER_UID} connections already"
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = _peer_of(writer)
        privileged = self._privileged(peer)
        full = self._full(peer, privileged)
        if full is not None:
            self._log.warning("control_client_refused", reason=full, uid=peer.uid)
            await self._refuse_busy(writer, full)
            return
        self._connections[task] = (peer, privileged)
        current_peer.set(peer)
        idle_timeout = IDLE_TIMEOUT_S if privileged else OTHER_IDLE_TIMEOUT_S
        try:
            while True:
                try:
                    line = await self._read_frame(reader, idle_timeout)
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
        except Exception as e:  # never "Task exception was never retrieved" on stderr
            self._log.error("control_connection_failed", error=f"{type(e).__name__}: {e}")
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_frame(self, reader: asyncio.StreamReader, idle_timeout: float) -> bytes:
        """Wait a while for a request to begin, but not for it to end: a client that
        sends half a line and stalls is dropped, not waited on."""
        first = await asyncio.wait_for(reader.read(1), idle_timeout)
        if not first:
            raise asyncio.IncompleteReadError(b"", None)
        if first == b"\n":
            return first
        try:
            rest = await asyncio.wait_for(reader.readuntil(b"\n"), FRAME_TIMEOUT_S)
        except asyncio.IncompleteReadError as e:
            raise asyncio.IncompleteReadError(first + e.partial, None) from None
        return first + rest

    async def _refuse_busy(self, writer: asyncio.StreamWriter, why: str) -> None:
        with contextlib.suppress(Exception):
            writer.write(encode_reply(error_reply(None, ErrorCode.BUSY, f"{why}; try again")))
            await asyncio.wait_for(writer.drain(), 1.0)
        writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        """A client that does not read its replies is dropped rather than waited on.
        No reply carries a credential or a signed URL, whatever field it hides in."""
        error = reply.error
        body = encode_reply(reply)
        if may_need_scrub(body.decode()):  # else scrubbing every string would change none
            if error is not None:
                error = ErrorInfo(error.code, scrub(error.message))
            safe = Reply(reply.id, reply.ok, scrub_value(reply.result), error, reply.v)
            body = encode_reply(safe)
        writer.write(body)
        await asyncio.wait_for(writer.drain(), FRAME_TIMEOUT_S)

    async def _handle(self, line: bytes) -> Reply:
        try:
            request = decode_request(line.strip())
        except ProtocolError as e:
            self._log.warning("control_request_refused", code=e.code, reason=e.message)
            return error_reply(e.request_id, e.code, e.message)
        except Exception as e:  # whatever else a parser can throw: still an answer
            self._log.warning("control_request_refused", code="bad_request", error=type(e).__name__)
            return error_reply(
                None, ErrorCode.BAD_REQUEST, f"frame cannot be parsed ({type(e).__name__})"
            )
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
    supplementary: frozenset[int] | None = None
    with contextlib.suppress(OSError):  # too many groups for the buffer, or an old kernel
        packed = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, PEERGROUPS_BUFFER_BYTES)
        supplementary = frozenset(struct.unpack(f"{len(packed) // 4}I", packed))
    return Peer(pid, uid, gid, supplementary)


MAX_SOCKET_PATH_BYTES = 107  # sun_path holds 108 bytes with the terminating zero


def claim_socket_path(path: Path) -> None:
    """Make sure `path` is free for our socket: nothing there, or a socket that nobody
    answers on (left by a crash), which is removed. Anything else is refused, untouched."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise SocketPathError(
            f"control socket {path}: the path is {len(os.fsencode(path))} bytes long; a Unix "
            f"socket path may have at most {MAX_SOCKET_PATH_BYTES}"
        )
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise SocketPathError(f"control socket {path}: cannot check it: {e.strerror}") from None
    if stat.S_ISLNK(mode):
        raise SocketPathError(f"control socket {path}: is a symbolic link; refusing to replace it")
    if stat.S_ISDIR(mode):
        raise SocketPathError(f"control socket {path}: is a folder; refusing to replace it")
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(
            f"control socket {path}: exists and is not a socket; refusing to replace it"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)  # stale: nobody listens
        return
    except FileNotFoundError:
        return
    except OSError as e:
        raise SocketInUse(
            f"control socket {path}: cannot tell whether it is in use ({e.strerror or e}); "
            "refusing to take it"
        ) from None
    finally:
        probe.close()
    raise SocketInUse(f"another daemon answers on {path}; refusing to take its socket")
