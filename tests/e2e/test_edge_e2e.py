"""The edge (nginx, scripts/edge.sh's configuration) in front of the real gateway and
stats-service: routes, WebSockets, SSE, JSON errors made by nginx, and rate limits that count
per real client behind it."""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers import DEMO_KEY

pytestmark = pytest.mark.e2e

STATS_HEADER = "X-Jobgate-Service"


@pytest.fixture
def edge(make_stack):
    stack = make_stack()
    stack.start_stats()
    stack.start_edge()
    return stack


def canonical_error(body: bytes, code: str) -> dict:
    payload = json.loads(body)
    error = payload["error"]
    assert error["code"] == code, payload
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["request_id"]
    return error


def send_from(
    source: str, url: str, method: str = "GET", *, body=None, headers=None
) -> http.client.HTTPResponse:
    """One request from a given local source address (127.x.y.z are all this machine's)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, source_address=(source, 0), timeout=10
    )
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    response.data = response.read()
    conn.close()
    return response


def loopback_address() -> str:
    """A fresh loopback address (never 127.0.0.1, the trusted edge's own): limits counted in
    Redis by an earlier run never apply to this one."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def test_routes_through_the_edge(edge):
    # The gateway answers its routes (it sends no X-Jobgate-Service), X-Request-ID kept.
    r = requests.get(f"{edge.edge_url}/api/v1/health", headers={"X-Request-ID": "edge-e2e-1"})
    assert r.status_code == 200, r.text
    assert STATS_HEADER not in r.headers
    assert r.headers["X-Request-ID"] == "edge-e2e-1"
    job = uuid.uuid4()
    r = requests.get(f"{edge.edge_url}/api/v1/jobs/{job}")
    assert r.status_code == 401 and STATS_HEADER not in r.headers
    # stats-service answers the analytics and a job's event stream: refused without credentials.
    for path in ("/api/v1/analytics/dashboard", f"/api/v1/jobs/{job}/events"):
        r = requests.get(f"{edge.edge_url}{path}")
        assert r.status_code == 401, (path, r.text)
        assert r.headers[STATS_HEADER] == "stats", path
        assert r.headers["Content-Type"].startswith("application/json")
    # A request id is made at the edge when the client sends none, and reaches the service.
    r = requests.get(f"{edge.edge_url}/api/v1/analytics/dashboard")
    rid = r.headers.get("X-Request-ID") or r.json()["error"]["request_id"]
    assert rid and len(rid) >= 16


def test_websocket_handshakes_reach_stats_service(edge):
    base = edge.edge_url.replace("http://", "ws://")
    for path in (f"/ws/jobs/{uuid.uuid4()}", "/ws/metrics", "/ws/tasks", "/api/ws/updates"):
        with pytest.raises(InvalidStatus) as refused:
            connect(base + path, open_timeout=10).close()
        response = refused.value.response
        assert response.status_code == 401, path
        assert response.headers[STATS_HEADER] == "stats", path
    # With credentials the handshake is upgraded end to end and messages flow.
    with connect(
        base + "/ws/metrics", open_timeout=10, additional_headers={"X-API-Key": DEMO_KEY}
    ) as ws:
        assert isinstance(json.loads(ws.recv(timeout=15)), dict)


def test_server_sent_events_arrive_before_the_stream_ends(edge):
    (edge.filespace / "a.mov").write_bytes(b"a" * 10)
    # No worker runs: the job stays pending, so its stream stays open after its first event.
    r = requests.post(
        f"{edge.edge_url}/api/v1/jobs",
        json={"kind": "cache", "files": ["a.mov"]},
        headers={"X-API-Key": DEMO_KEY},
    )
    assert r.status_code == 201, r.text
    started = time.monotonic()
    with requests.get(
        f"{edge.edge_url}/api/v1/jobs/{r.json()['id']}/events",
        headers={"X-API-Key": DEMO_KEY, "Accept": "text/event-stream"},
        stream=True,
        timeout=10,
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers[STATS_HEADER] == "stats"
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines = stream.iter_lines(decode_unicode=True)
        first = next(line for line in lines if line.startswith("data:"))
    assert time.monotonic() - started < 8  # long before any timeout ends the response
    assert json.loads(first[len("data:") :])


def _announce_upload(url: str, length: int) -> http.client.HTTPResponse:
    """Headers of an upload of `length` bytes, without the body: whoever refuses it by its
    Content-Length answers at once."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("POST", "/api/v1/files")
    conn.putheader("X-API-Key", DEMO_KEY)
    conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    response = conn.getresponse()
    response.data = response.read()
    conn.close()
    return response


def test_errors_made_by_nginx_are_json_and_uploads_reach_the_gateway(edge):
    r = requests.get(f"{edge.edge_url}/api/v1/jobs?q={'x' * 10_000}")
    assert r.status_code == 414
    assert r.headers["Content-Type"] == "application/json"
    canonical_error(r.content, "INVALID_REQUEST")
    r = requests.get(f"{edge.edge_url}/api/v1/health", headers={"X-Big": "y" * 9000})
    assert r.status_code == 431
    canonical_error(r.content, "INVALID_REQUEST")
    # Over the gateway's limit (100 MB + 64 KiB) but under the edge's (101 MB): the gateway.
    r = _announce_upload(edge.edge_url, 100 * 1024 * 1024 + 512 * 1024)
    assert r.status == 413
    error = canonical_error(r.data, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"max_file_size_mb": 100}
    # Far over both: nginx refuses it, in the same format.
    r = _announce_upload(edge.edge_url, 500 * 1024 * 1024)
    assert r.status == 413 and r.headers["Content-Type"] == "application/json"
    canonical_error(r.data, "PAYLOAD_TOO_LARGE")


def test_stats_service_down_is_a_json_502_and_comes_back(edge):
    proc = edge.procs["stats"]
    proc.terminate()
    proc.wait(timeout=15)
    r = requests.get(f"{edge.edge_url}/api/v1/analytics/dashboard")
    assert r.status_code == 502
    assert r.headers["Content-Type"] == "application/json"
    error = canonical_error(r.content, "SERVICE_UNAVAILABLE")
    assert r.headers["X-Request-ID"] == error["request_id"]
    # The gateway's routes are unaffected.
    assert requests.get(f"{edge.edge_url}/api/v1/health").status_code == 200
    edge.start_stats()
    r = requests.get(f"{edge.edge_url}/api/v1/analytics/dashboard")
    assert r.status_code == 401 and r.headers[STATS_HEADER] == "stats"


def test_rate_limits_count_per_client_behind_the_edge(make_stack):
    # Shared through Redis: the two gunicorn processes count together.
    stack = make_stack(
        RATE_LIMIT_STORAGE_URI="redis://127.0.0.1:6379/0", RATE_LIMIT_LOGIN="3/minute"
    )
    stack.start_edge()
    login = f"{stack.edge_url}/api/v1/auth/login"
    wrong = json.dumps({"username": "admin", "password": "not-the-password"})
    headers = {"Content-Type": "application/json"}
    first, second, third = loopback_address(), loopback_address(), loopback_address()

    codes = [send_from(first, login, "POST", body=wrong, headers=headers).status for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    # Another client behind the same edge has its own allowance.
    assert send_from(second, login, "POST", body=wrong, headers=headers).status == 401
    # A forged X-Forwarded-For is replaced at the edge: the first client stays limited.
    forged = {**headers, "X-Forwarded-For": second}
    assert send_from(first, login, "POST", body=wrong, headers=forged).status == 429
    forged = {**headers, "X-Forwarded-For": f"{third}, {second}"}
    assert send_from(first, login, "POST", body=wrong, headers=forged).status == 429
    # Straight to the gateway, a peer that is no trusted proxy is not believed either: this
    # client does not get the first one's (exhausted) address.
    direct = f"{stack.url}/api/v1/auth/login"
    forged = {**headers, "X-Forwarded-For": first}
    assert send_from(third, direct, "POST", body=wrong, headers=forged).status == 401
