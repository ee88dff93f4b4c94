"""A real webhook on loopback for Apprise's `json://` alerts: records each, or hangs when told."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AlertReceiver:
    def __init__(self, hang_s: float = 0.0) -> None:
        self.received: list[dict[str, Any]] = []
        self.hang_s = hang_s
        self._release = threading.Event()
        box = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if box.hang_s:
                    box._release.wait(box.hang_s)
                box.received.append({"path": self.path, **json.loads(body or b"{}")})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def messages(self) -> list[str]:
        return [f"{m.get('title', '')}\n{m.get('message', '')}" for m in self.received]

    def saying(self, *words: str) -> list[str]:
        """The messages holding every one of `words`."""
        return [m for m in self.messages() if all(w in m for w in words)]


def refusing_url() -> str:
    """A loopback port nobody listens on: every delivery is refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"json://127.0.0.1:{port}/refused"
