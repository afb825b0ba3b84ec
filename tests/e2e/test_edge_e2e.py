"""The edge (nginx, scripts/edge.sh's configuration) in front of the real gateway and
stats-service: routes, WebSockets, SSE, JSON errors made by nginx, and rate limits that count
per real client behind it."""

from __future__ import annotations

import http.client
import json
import random
import re
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


def test_behind_a_trusted_proxy_the_client_is_the_one_it_forwarded_for(make_stack):
    """EDGE_TRUSTED_PROXIES (here every loopback address, as the pod networks are for the edge
    behind ingress-nginx): a request from a trusted peer counts for the client in its
    X-Forwarded-For - at the gateway (its login limit), at a published route (the headers it
    gets) and in the edge's access log - not for the peer. Without the setting the header is
    replaced (test_rate_limits_count_per_client_behind_the_edge)."""
    from tests.e2e.test_proxy_e2e import Backend, applied, put_set

    stack = make_stack(
        RATE_LIMIT_STORAGE_URI="redis://127.0.0.1:6379/0", RATE_LIMIT_LOGIN="3/minute"
    )
    stack.start_edge(EDGE_TRUSTED_PROXIES="127.0.0.0/8")
    login = f"{stack.edge_url}/api/v1/auth/login"
    wrong = json.dumps({"username": "admin", "password": "not-the-password"})
    headers = {"Content-Type": "application/json"}
    client = "203.0.113.7"

    def attempt(source: str, forwarded_for: str | None = None) -> int:
        sent = {**headers, "X-Forwarded-For": forwarded_for} if forwarded_for else headers
        return send_from(source, login, "POST", body=wrong, headers=sent).status

    # From 127.0.0.1 (a trusted proxy) for the client: its allowance of 3 is used up (fewer
    # when a run in the last minute used it already: the limit is in Redis).
    codes = [attempt("127.0.0.1", client)]
    while codes[-1] != 429 and len(codes) < 4:
        codes.append(attempt("127.0.0.1", client))
    assert codes[-1] == 429 and set(codes[:-1]) <= {401}, codes
    # The client is limited, not the proxy: through another (fresh) proxy address too, and
    # whatever the client itself wrote before the proxy's entry (recursive: the last address
    # that is not a trusted proxy's).
    other_proxy = loopback_address()
    assert attempt(other_proxy, client) == 429
    assert attempt(other_proxy, f"{loopback_address()}, {client}") == 429  # forged in front
    assert attempt(other_proxy, f"198.51.100.1, {client}") == 429
    assert attempt(other_proxy, f"{client}, {loopback_address()}") == 429  # proxies behind it
    # Another client through the same proxy has its own allowance, as has the proxy itself
    # when it sends no header (its own address is the client then).
    other_client = f"198.51.100.{random.randint(2, 254)}"
    assert attempt("127.0.0.1", other_client) == 401
    assert attempt(loopback_address()) == 401
    # The edge's access log names the client.
    assert re.search(rf"^(\S+ \| )?{re.escape(client)} \[", stack.log("edge"), re.M), stack.log(
        "edge"
    )[-2000:]

    # A published route gets the client as X-Forwarded-For and X-Real-IP (its rate_limit
    # middleware keys on the same $binary_remote_addr).
    backend = Backend("a")
    try:
        answer = put_set(
            stack,
            [{"name": "apps", "servers": [{"address": backend.address}]}],
            [{"id": "apps", "path": "/apps/*", "upstream": "apps", "middleware": ["rate_limit"]}],
        )
        assert answer.status_code == 200, answer.text
        applied(stack, answer.json()["version"])
        r = send_from(other_proxy, f"{stack.edge_url}/apps/x", headers={"X-Forwarded-For": client})
        assert r.status == 200, r.data
        seen = backend.seen[-1]
        assert seen["X-Forwarded-For"] == client and seen["X-Real-IP"] == client, seen
    finally:
        backend.close()
