"""A blocking control-socket client for the CLI: one request, one reply."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

from tradectl.protocol import (
    MAX_REPLY_BYTES,
    ErrorInfo,
    ProtocolError,
    Request,
    decode_reply,
    encode_request,
)


class DaemonUnreachable(Exception):
    """Nothing answers on the socket; the message names the path tried."""

    def __init__(self, socket_path: Path, reason: str) -> None:
        super().__init__(f"daemon not reachable at {socket_path}: {reason}")
        self.socket_path = socket_path


class DaemonError(Exception):
    """The daemon answered with a structured error."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.code = error.code
        self.message = error.message


class ControlClient:
    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one command and return its result, or raise DaemonError/DaemonUnreachable."""
        request = Request(id=uuid.uuid4().hex[:16], cmd=cmd, args=args)
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
            try:
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
            reply = decode_reply(line)
        except ProtocolError as e:
            raise DaemonUnreachable(self.socket_path, f"unreadable reply: {e.message}") from None
        if reply.ok:
            return reply.result
        assert reply.error is not None
        raise DaemonError(reply.error)


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
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
