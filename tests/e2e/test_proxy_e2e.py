"""Issue 14 end to end, as an operator does it: the whole stack (auth-service, gateway,
stats-service, `jobgate-edge` with nginx), two local HTTP servers published through the
seed 003 proxy API on Jobgate's public address, with the real gateway checking credentials
for an `auth` route and the stats read back through the API."""

from __future__ import annotations

import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.helpers import DEMO_KEY, serve_in_thread
from tests.stack import free_port

pytestmark = pytest.mark.e2e

DEMO = {"X-API-Key": DEMO_KEY}
APPLY_TIMEOUT_S = 15.0


class Backend:
    """A local HTTP server that names itself, counts what it served and what it was sent."""

    def __init__(self, name: str) -> None:
        self.name, self.port = name, free_port()
        self.seen: list[dict[str, str]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.seen.append(dict(self.headers))
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        serve_in_thread(self.server)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backends():
    pair = Backend("a"), Backend("b")
    yield pair
    for backend in pair:
        backend.close()


def applied(edge, version: int) -> None:
    """Wait until the edge agent reports it runs `version` of the set."""
    deadline = time.monotonic() + APPLY_TIMEOUT_S
    while time.monotonic() < deadline:
        config = requests.get(f"{edge.edge_url}/api/proxy/config", headers=DEMO).json()
        if any((e["applied_version"] or 0) >= version for e in config["edges"]):
            return
        time.sleep(0.1)
    raise AssertionError(f"version {version} not applied: {config['edges']}")


def put_set(edge, upstreams: list[dict], routes: list[dict]) -> requests.Response:
    return requests.put(
        f"{edge.edge_url}/api/proxy/config",
        json={"upstreams": upstreams, "routes": routes},
        headers=DEMO,
    )


def test_a_published_service_with_weights_auth_and_stats(edge, backends):
    a, b = backends
    upstream = {
        "name": "apps",
        "servers": [{"address": a.address, "weight": 1}, {"address": b.address, "weight": 2}],
    }
    routes = [
        {"id": "0", "path": "/apps/*", "upstream": "apps"},  # nginx's `if=` skips "0"
        {"id": "private", "path": "/private/*", "upstream": "apps", "middleware": ["auth"]},
    ]
    answer = put_set(edge, [upstream], routes)
    assert answer.status_code == 200, answer.text
    applied(edge, answer.json()["version"])

    # Weights 1:2, round robin: 30 requests split 10/20.
    served = Counter(requests.get(f"{edge.edge_url}/apps/x").text for _ in range(30))
    assert served == {"a": 10, "b": 20}

    # `auth`: the real gateway checks the credentials; the upstream never sees them.
    anonymous = requests.get(f"{edge.edge_url}/private/page")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"
    wrong = requests.get(f"{edge.edge_url}/private/page", headers={"X-API-Key": "jg_nope"})
    assert wrong.status_code == 401
    before = len(a.seen) + len(b.seen)
    allowed = requests.get(f"{edge.edge_url}/private/page", headers=DEMO)
    assert allowed.status_code == 200 and allowed.text in ("a", "b")
    seen = (a.seen + b.seen)[before:]
    assert len(seen) == 1
    assert "X-API-Key" not in seen[0] and seen[0]["X-Jobgate-User-Id"]

    # Stats come from the edge's access log: every request sent (31 served, 2 refused).
    deadline = time.monotonic() + APPLY_TIMEOUT_S
    while time.monotonic() < deadline:
        stats = requests.get(f"{edge.edge_url}/api/proxy/stats", headers=DEMO).json()
        if stats["requests_total"] >= 33:
            break
        time.sleep(0.2)
    assert stats["requests_total"] == 33, stats
    servers = {s["address"]: s for s in stats["upstreams"]["apps"]["servers"]}
    assert servers[a.address]["requests"] + servers[b.address]["requests"] == 31
    assert stats["upstreams"]["apps"]["total_requests"] == 33


def test_a_refused_set_leaves_the_previous_one_serving(edge, backends):
    a, _ = backends
    upstream = {"name": "one", "servers": [{"address": a.address}]}
    answer = put_set(edge, [upstream], [{"id": "r", "path": "/one/*", "upstream": "one"}])
    assert answer.status_code == 200, answer.text
    version = answer.json()["version"]
    applied(edge, version)
    assert requests.get(f"{edge.edge_url}/one/x").text == "a"

    bad = put_set(edge, [upstream], [{"id": "r", "path": "/one/*", "upstream": "missing"}])
    assert bad.status_code == 400
    claim = requests.post(
        f"{edge.edge_url}/api/proxy/routes",
        json={"path": "/api/v1/*", "upstream": "one"},
        headers=DEMO,
    )
    assert claim.status_code == 409
    config = requests.get(f"{edge.edge_url}/api/proxy/config", headers=DEMO).json()
    assert config["version"] == version
    assert requests.get(f"{edge.edge_url}/one/x").text == "a"
    # Jobgate's own API is still Jobgate's.
    assert requests.get(f"{edge.edge_url}/api/v1/health").status_code == 200
