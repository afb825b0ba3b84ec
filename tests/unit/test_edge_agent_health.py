"""The edge agent's health checks (jobgate_edge.health): the hysteresis of the state machine,
and real checks against a local HTTP server whose health can be switched off."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from jobgate_edge.health import (
    HEALTHY,
    UNHEALTHY,
    Check,
    HealthChecker,
    ServerState,
    probe,
    split_address,
)
from tests.helpers import serve_in_thread

CHECK = Check(
    path="/health", interval_s=0.1, timeout_s=0.5, healthy_threshold=2, unhealthy_threshold=3
)


def test_hysteresis():
    state = ServerState()
    assert state.status == HEALTHY
    assert not state.observe(False, CHECK, "HTTP 503")
    assert not state.observe(False, CHECK, "HTTP 503")
    assert not state.observe(True, CHECK)  # a pass resets the failures
    assert (state.passes, state.failures) == (1, 0)
    assert not state.observe(False, CHECK)
    assert not state.observe(False, CHECK)
    assert state.observe(False, CHECK, "HTTP 500")  # third in a row
    assert state.status == UNHEALTHY and state.last_error == "HTTP 500"
    assert not state.observe(False, CHECK)  # already down: no new transition
    assert not state.observe(True, CHECK)
    assert state.observe(True, CHECK)  # healthy_threshold passes
    assert state.status == HEALTHY and state.changed_at is not None


def test_split_address():
    assert split_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_address("[::1]:8080") == ("::1", 8080)
    assert split_address("backend.local:3000") == ("backend.local", 3000)


class Backend:
    """A real HTTP server: /health answers `code` (switchable)."""

    def __init__(self) -> None:
        self.code = 200
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = backend.code if self.path == "/health" else 404
                self.send_response(code)
                self.send_header("Content-Length", "2")
                if 300 <= code < 400:
                    self.send_header("Location", "/elsewhere")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_port}"
        serve_in_thread(self.server)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.close()


def test_probe_classes(backend):
    assert probe(backend.address, CHECK) == (True, None)
    backend.code = 302  # 200-399 passes; the redirect is not followed
    assert probe(backend.address, CHECK)[0]
    backend.code = 503
    assert probe(backend.address, CHECK) == (False, "HTTP 503")
    backend.close()
    ok, error = probe(backend.address, CHECK)
    assert not ok and "ConnectionRefused" in error


def test_checker_takes_a_server_out_and_back(backend):
    changes: list[frozenset] = []
    checker = HealthChecker(None, edge_id="e1", on_change=lambda: changes.append(checker.down()))
    key = ("web", backend.address)
    stop = threading.Event()
    thread = threading.Thread(target=checker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        checker.set_checks({key: CHECK})
        time.sleep(0.5)
        assert checker.down() == frozenset()
        backend.code = 503
        deadline = time.monotonic() + 5
        while key not in checker.down() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checker.down() == {key}
        backend.code = 200
        deadline = time.monotonic() + 5
        while checker.down() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checker.down() == frozenset()
        assert changes == [frozenset({key}), frozenset()]
        # A server no longer checked is forgotten (and never stays down).
        backend.code = 503
        deadline = time.monotonic() + 5
        while key not in checker.down() and time.monotonic() < deadline:
            time.sleep(0.05)
        checker.set_checks({})
        assert checker.down() == frozenset()
        assert checker.states() == {}
    finally:
        stop.set()
        thread.join(5)
