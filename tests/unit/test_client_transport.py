"""The client's HTTP layer against a scripted local server: which calls are retried (and
how long it waits), how error answers become typed exceptions, the refresh of an expired
access token, and the `Idempotency-Key` every submission carries."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jobgate_client import (
    Client,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from jobgate_client.errors import from_parts
from jobgate_client.transport import HttpTransport


class Reply:
    """One scripted answer; `body` may be bytes, text or JSON-able data. `cut_after`
    closes the connection after that many body bytes (a dropped download)."""

    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
        cut_after: int | None = None,
    ) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if body is None:
            self.body = b""
        elif isinstance(body, bytes):
            self.body = body
        elif isinstance(body, str):
            self.body = body.encode()
        else:
            self.body = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json")
        self.cut_after = cut_after


class Seen:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer:
    """An HTTP server on 127.0.0.1 answering from a script: a list of replies (taken in
    order) or a function of the request. Every request is recorded in `seen`."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.handler: Callable[[Seen], Reply] | None = None
        self.seen: list[Seen] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, dict(self.headers), body)
                fake.seen.append(seen)
                reply = fake.handler(seen) if fake.handler else fake.script.pop(0)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in reply.headers and "Transfer-Encoding" not in (
                    reply.headers
                ):
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.cut_after is not None:
                    self.wfile.write(reply.body[: reply.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


class Sleeps(list):
    """Records the delays the client would have slept (tests do not wait)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(url: str, **kwargs: Any) -> tuple[Client, Sleeps]:
    client = Client(url, **{"api_key": "k", "backoff": 0.5, **kwargs})
    sleeps = Sleeps()
    client.http.sleep = sleeps
    return client, sleeps


def error(code: str, message: str, status: int, **extra: Any) -> Reply:
    body = {"error": {"code": code, "message": message, "details": {}, "request_id": "rid-1"}}
    return Reply(status, body, **extra)


JOB = {"id": "j1", "kind": "task", "status": "pending"}


def test_a_get_is_retried_on_503_with_growing_backoff(server):
    server.script = [error("SERVICE_UNAVAILABLE", "busy", 503)] * 2 + [Reply(200, {"job": JOB})]
    client, sleeps = make_client(server.url)
    assert client.jobs.get("j1") == JOB
    assert len(server.seen) == 3 and len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # base·2^n, jitter in [½, 1]
    ids = {s.headers["X-Request-ID"] for s in server.seen}
    assert len(ids) == 1, "the tries of one call share a request id"


def test_a_429_waits_for_retry_after_when_it_is_short(server):
    server.script = [
        error("RATE_LIMITED", "slow down", 429, headers={"Retry-After": "2"}),
        Reply(200, {"job": JOB}),
    ]
    client, sleeps = make_client(server.url)
    client.jobs.get("j1")
    assert sleeps == [2.0]


def test_a_429_with_a_long_retry_after_is_raised_at_once(server):
    server.script = [error("RATE_LIMITED", "hourly limit", 429, headers={"Retry-After": "3600"})]
    client, sleeps = make_client(server.url)
    with pytest.raises(RateLimited) as caught:
        client.jobs.get("j1")
    assert caught.value.retry_after == 3600 and caught.value.request_id == "rid-1"
    assert sleeps == [] and len(server.seen) == 1


def test_a_post_without_idempotency_key_is_not_retried(server):
    server.script = [error("SERVICE_UNAVAILABLE", "broker down", 503)]
    client, sleeps = make_client(server.url)
    with pytest.raises(ServiceUnavailable) as caught:
        client.jobs.cancel("j1")
    assert caught.value.code == "SERVICE_UNAVAILABLE" and caught.value.status == 503
    assert len(server.seen) == 1 and sleeps == []


def test_a_submission_carries_an_idempotency_key_and_is_retried_with_it(server):
    server.script = [Reply(502, "<html>bad gateway</html>"), Reply(201, JOB)]
    client, sleeps = make_client(server.url)
    assert client.jobs.task("echo", {"a": 1}, priority=7) == JOB
    first, second = server.seen
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.json() == {"kind": "task", "name": "echo", "payload": {"a": 1}, "priority": 7}
    assert len(sleeps) == 1


def test_each_submission_gets_its_own_key_unless_one_is_given(server):
    server.handler = lambda seen: Reply(201, JOB)
    client, _ = make_client(server.url)
    client.jobs.cache(directories=["a"])
    client.jobs.cache(directories=["a"])
    client.jobs.cache(directories=["a"], idempotency_key="mine")
    keys = [s.headers["Idempotency-Key"] for s in server.seen]
    assert keys[0] != keys[1] and keys[2] == "mine"


def test_connection_refused_is_retried_then_raised_as_connection_failed():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client, sleeps = make_client(f"http://127.0.0.1:{port}", retries=2)
    with pytest.raises(ConnectionFailed) as caught:
        client.jobs.list()
    assert caught.value.reason == "connection refused" and len(sleeps) == 2
    assert str(caught.value) == f"cannot connect to http://127.0.0.1:{port} (connection refused)"


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "code", "message", "request_id"),
    [
        (
            404,
            {"error": {"code": "NOT_FOUND", "message": "Job not found", "request_id": "r1"}},
            {},
            NotFound,
            "NOT_FOUND",
            "Job not found",
            "r1",
        ),
        (  # seed 004's envelope
            409,
            {"status": "error", "error": {"code": "CONFLICT", "message": "done", "details": {}}},
            {"X-Request-ID": "r2"},
            Conflict,
            "CONFLICT",
            "done",
            "r2",
        ),
        (  # a proxy's page: classified by status
            503,
            b"<html>503 Service Temporarily Unavailable</html>",
            {"X-Request-ID": "r3"},
            ServiceUnavailable,
            "SERVICE_UNAVAILABLE",
            "HTTP 503",
            "r3",
        ),
        (  # an unknown code keeps its code, the class comes from the status
            400,
            {"error": {"code": "CONTAINER_BAD", "message": "nope", "details": {"x": 1}}},
            {},
            InvalidRequest,
            "CONTAINER_BAD",
            "nope",
            None,
        ),
    ],
)
def test_error_answers_become_typed_exceptions(
    status, body, headers, cls, code, message, request_id
):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    exc = from_parts(status, headers, raw)
    assert type(exc) is cls
    assert (exc.code, exc.status, exc.request_id) == (code, status, request_id)
    assert exc.message == message


def test_a_401_refreshes_the_access_token_once_and_resends(server):
    stored: list[dict[str, Any]] = []

    def handle(seen: Seen) -> Reply:
        if seen.path == "/api/v1/auth/refresh":
            assert seen.json() == {"refresh_token": "refresh-1"}
            assert "Authorization" not in seen.headers
            return Reply(200, {"access_token": "access-2", "refresh_token": "refresh-2"})
        if seen.headers.get("Authorization") == "Bearer access-2":
            return Reply(200, {"id": "u1", "username": "ann"})
        return error("UNAUTHORIZED", "Token expired", 401)

    server.handler = handle
    client = Client(
        server.url, token="access-1", refresh_token="refresh-1", on_tokens=stored.append
    )
    assert client.auth.me()["username"] == "ann"
    assert [s.path for s in server.seen] == [
        "/api/v1/auth/me",
        "/api/v1/auth/refresh",
        "/api/v1/auth/me",
    ]
    assert stored == [{"access_token": "access-2", "refresh_token": "refresh-2"}]
    assert client.http.refresh_token == "refresh-2"


def test_a_second_401_after_refreshing_is_raised(server):
    def handle(seen: Seen) -> Reply:
        if seen.path == "/api/v1/auth/refresh":
            return Reply(200, {"access_token": "a2", "refresh_token": "r2"})
        return error("UNAUTHORIZED", "No access", 401)

    server.handler = handle
    client = Client(server.url, token="a1", refresh_token="r1")
    with pytest.raises(Unauthorized):
        client.auth.me()
    assert len(server.seen) == 3


def test_listing_reads_links_totals_and_follows_the_cursor(server):
    base = f"{server.url}/api/v1/jobs"

    def handle(seen: Seen) -> Reply:
        second = "cursor=c2" in seen.path
        items = [{"id": "j2"}] if second else [{"id": "j0"}, {"id": "j1"}]
        links = f'<{base}?limit=2&offset=0>; rel="first", <{base}?limit=2&offset=2>; rel="last"'
        headers = {"X-Total-Count": "3", "Link": links}
        if not second:
            headers["Link"] += f', <{base}?limit=2&offset=2>; rel="next"'
            headers["X-Next-Cursor"] = "c2"
        return Reply(200, items, headers=headers)

    server.handler = handle
    client, _ = make_client(server.url)
    page = client.jobs.list(kind="cache", limit=2)
    assert (page.total, page.next_offset, page.next_cursor, len(page)) == (3, 2, "c2", 2)
    assert "kind=cache" in server.seen[0].path
    assert [j["id"] for j in client.jobs.iter(page_size=2, kind="cache")] == ["j0", "j1", "j2"]
    assert "cursor=c2" in server.seen[-1].path and "offset" not in server.seen[-1].path
    assert "kind=cache" in server.seen[-1].path


def test_a_listing_past_the_count_cap_has_no_exact_total(server):
    server.handler = lambda seen: Reply(200, [{"id": "j0"}], headers={"X-Total-Count-Min": "1001"})
    client, _ = make_client(server.url)
    page = client.jobs.list(created_since="2026-01-01T00:00:00Z", limit=1)
    assert (page.total, page.total_min) == (None, 1001)


def test_none_arguments_are_left_out(server):
    server.handler = lambda seen: Reply(201, {"id": "s1"})
    client, _ = make_client(server.url)
    client.schedules.create("nightly", "cache", interval_minutes=60, directories=["a"])
    assert server.seen[0].json() == {
        "name": "nightly",
        "kind": "cache",
        "enabled": True,
        "interval_minutes": 60,
        "directories": ["a"],
    }


def test_the_environment_gives_url_and_key(monkeypatch):
    monkeypatch.setenv("JOBGATE_URL", "http://example.invalid:1234/")
    monkeypatch.setenv("JOBGATE_API_KEY", "from-env")
    client = Client()
    assert client.url == "http://example.invalid:1234"
    assert client.http.auth_headers() == {"X-API-Key": "from-env"}
    assert HttpTransport("http://h", token="t").auth_headers() == {"Authorization": "Bearer t"}
