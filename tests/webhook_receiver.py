"""A webhook receiver on 127.0.0.1 for the webhook tests (integration and end-to-end).

`Receiver` records every POST (path, lower-cased headers, raw body) and answers each with
the next status of its `script`, then `default` (200), so a test can make the first
delivery fail (500) and the retry succeed, or every attempt fail. With `trickle_s` set it
writes its answer one byte at a time, pausing that long between bytes (a slow receiver).
Tests check the signature themselves, with the `standardwebhooks` package, as a real
receiver would.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import serve_in_thread


class Receiver:
    """An HTTP server on a free loopback port; `url` is its `/hooks` endpoint."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[int] = []
        self.default = 200
        self.trickle_s = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": headers, "body": body})
                    status = receiver.script.pop(0) if receiver.script else receiver.default
                if receiver.trickle_s:
                    self.trickle(status)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def trickle(self, status: int) -> None:
                answer = f"HTTP/1.1 {status} OK\r\nContent-Length: 2\r\n\r\nok".encode()
                try:
                    for i in range(len(answer)):
                        self.wfile.write(answer[i : i + 1])
                        time.sleep(receiver.trickle_s)
                except OSError:  # the client gave up (as it should)
                    self.close_connection = True

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"

    def start(self) -> Receiver:
        self._thread = serve_in_thread(self.server)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[dict[str, Any]]:
        """What arrived so far, oldest first."""
        with self.lock:
            return list(self.requests)
