"""A blocking control-socket client for the CLI: one request, one reply.

Two things it does not take on trust. Who answers: the kernel names the server's uid
(SO_PEERCRED), and a server that is neither root, the caller, nor the owner of the
daemon's state folder is refused (anyone who can write the socket's folder could
otherwise answer `flatten` with "all flat"). And `busy`: a daemon that answers busy is
alive, so the request is tried again until the timeout, never taken for unreachable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tradectl.protocol import (
    MAX_REPLY_BYTES,
    ErrorCode,
    ErrorInfo,
    ProtocolError,
    Reply,
    Request,
    decode_reply,
    encode_request,
)

BUSY_RETRY_FIRST_S = 0.05
BUSY_RETRY_MAX_S = 0.5
START_POLL_S = 0.1  # how often --wait knocks on a starting daemon's socket


class DaemonUnreachable(Exception):
    """Nothing answers on the socket; the message names the path tried."""

    def __init__(self, socket_path: Path, reason: str) -> None:
        super().__init__(f"daemon not reachable at {socket_path}: {reason}")
        self.socket_path = socket_path
        self.reason = reason


class DaemonError(Exception):
    """The daemon answered with a structured error."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.code = error.code
        self.message = error.message


class UntrustedServer(Exception):
    """Whoever answers on the socket is not the daemon: another user runs that server."""

    def __init__(self, socket_path: Path, uid: int, trusted: Iterable[int]) -> None:
        allowed = ", ".join(str(u) for u in sorted(set(trusted)))
        super().__init__(
            f"the server on {socket_path} runs as uid {uid}, which is neither root, you, nor "
            f"the owner of the daemon's state folder (trusted uids: {allowed}); refusing to "
            "take its word"
        )
        self.socket_path = socket_path
        self.uid = uid


def trusted_server_uids(state_dir: Path | None) -> frozenset[int]:
    """Root, the caller, and the owner of the daemon's state folder (if it exists)."""
    uids = {0, os.getuid(), os.geteuid()}
    if state_dir is not None:
        with contextlib.suppress(OSError):  # not there: only root and the caller remain
            uids.add(os.stat(state_dir).st_uid)
    return frozenset(uids)


class ControlClient:
    def __init__(
        self,
        socket_path: Path,
        timeout: float = 10.0,
        *,
        trusted_uids: frozenset[int] | None = None,
        busy_wait: float | None = None,
        wait: float = 0.0,
    ) -> None:
        """`timeout`: for connecting and for the reply. `busy_wait`: how long to keep
        retrying a daemon that answers busy (default: `timeout`). `trusted_uids`: the
        uids a server may run as (None: anyone, for tests and library use). `wait`: how
        long to keep trying a daemon that does not answer yet (one that is starting)."""
        self.socket_path = socket_path
        self.timeout = timeout
        self.trusted_uids = trusted_uids
        self.busy_wait = timeout if busy_wait is None else busy_wait
        self.wait = wait

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one command and return its result, or raise DaemonError, DaemonUnreachable
        or UntrustedServer. A `busy` answer is retried until `busy_wait` has passed."""
        request = Request(id=uuid.uuid4().hex[:16], cmd=cmd, args=args)
        reply = self._first_reply(request)
        deadline = time.monotonic() + self.busy_wait
        pause = BUSY_RETRY_FIRST_S
        while True:
            if reply.ok:
                return reply.result
            assert reply.error is not None
            if reply.error.code != ErrorCode.BUSY or time.monotonic() + pause > deadline:
                raise DaemonError(reply.error)
            time.sleep(pause)
            pause = min(pause * 2, BUSY_RETRY_MAX_S)
            reply = self._exchange(request)

    def _first_reply(self, request: Request) -> Reply:
        """The first answer, waiting up to `wait` for a daemon that does not answer yet."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                return self._exchange(request)
            except DaemonUnreachable:
                if time.monotonic() + START_POLL_S > deadline:
                    raise
                time.sleep(START_POLL_S)

    def _exchange(self, request: Request) -> Reply:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(str(self.socket_path))
            except FileNotFoundError:
                raise DaemonUnreachable(self.socket_path, "no socket file") from None
            except ConnectionRefusedError:
                raise DaemonUnreachable(self.socket_path, "connection refused") from None
            except PermissionError:
                raise DaemonUnreachable(self.socket_path, "permission denied") from None
            except OSError as e:
                raise DaemonUnreachable(self.socket_path, e.strerror or str(e)) from None
            self._check_server(sock)
            try:
                # A busy daemon answers and hangs up before reading: read its answer anyway.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(encode_request(request))
                line = _read_line(sock)
            except TimeoutError:
                raise DaemonUnreachable(
                    self.socket_path, f"no reply within {self.timeout:g} s"
                ) from None
            except OSError as e:
                raise DaemonUnreachable(self.socket_path, e.strerror or str(e)) from None
        finally:
            sock.close()
        if not line:
            raise DaemonUnreachable(self.socket_path, "connection closed without a reply")
        try:
            return decode_reply(line)
        except ProtocolError as e:
            raise DaemonUnreachable(self.socket_path, f"unreadable reply: {e.message}") from None

    def _check_server(self, sock: socket.socket) -> None:
        if self.trusted_uids is None:
            return
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", raw)
        if uid not in self.trusted_uids:
            raise UntrustedServer(self.socket_path, uid, self.trusted_uids)


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise OSError("reply exceeds the size cap")
