"""`jobgate-edge` for real: the agent process running the real nginx, configured from the
run's PostgreSQL, in front of two local HTTP backends. A set change applies within seconds,
a server failing its health check gets no requests until it passes again, a request in flight
across a reload (and across a graceful stop) completes, and the stats count what was sent."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jobgate import db as jdb
from jobgate.db import Database
from tests.helpers import serve_in_thread
from tests.stack import EDGE_SCRIPT, VENV_BIN, free_port

pytestmark = pytest.mark.e2e

NGINX = os.environ.get("EDGE_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_TABLES = (
    "proxy_routes, proxy_upstreams, proxy_edges, proxy_server_health, proxy_request_stats,"
    " proxy_stats_totals"
)
EDGE_ID = "e2e-edge"
NO_SERVICE = "127.0.0.1:9"  # gateway and stats-service are not needed here


class Backend:
    """A local HTTP server: counts the requests it serves, /health answers `health`,
    /app/slow takes two seconds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health = 200
        self.hits = 0
        self._lock = threading.Lock()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/health":
                    code, body = backend.health, b"health"
                else:
                    with backend._lock:
                        backend.hits += 1
                    if self.path.startswith("/app/slow"):
                        time.sleep(2)
                    code, body = 200, backend.name.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_port}"
        serve_in_thread(self.server)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Edge:
    """The agent process; `start()` again after a stop keeps the state directory and port."""

    def __init__(self, database: Database, env: dict[str, str], port: int, log: Path) -> None:
        self.db = database
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, *, applied: bool = True) -> None:
        """Start the agent; wait until it applied the set (`applied`) and its port listens."""
        before = (self.row() or {}).get("applied_at")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "jobgate-edge")], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if not applied:
            self.wait(self.healthy, "nginx's own health answer", 20)
            return

        def applied() -> bool:
            row = self.row()
            return bool(
                row and row["applied_at"] and (before is None or row["applied_at"] > before)
            )

        self.wait(applied, "the first apply", 20)
        self.wait(self.healthy, "nginx's own health answer", 10)

    def healthy(self) -> bool:
        """nginx answers `/_edge/health` (an accepting port is not enough: `nginx -t` listens
        on it for a moment before the master starts)."""
        try:
            return requests.get(f"{self.url}/_edge/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def row(self) -> dict[str, Any] | None:
        with self.db.transaction() as conn:
            return jdb.fetch_one(conn, "SELECT * FROM proxy_edges WHERE edge_id = %s", (EDGE_ID,))

    def wait(
        self, check: Callable[[], Any], what: str, timeout: float = 10.0, *, running: bool = True
    ) -> Any:
        """Until `check()` is true; fails at once if the agent exits (while `running`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if running and self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the agent exited: {self.log.read_text()[-3000:]}")
            value = check()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.log.read_text()[-3000:]}")

    def put_set(self, doc: dict[str, Any]) -> tuple[int, float]:
        """Replace the set (as the gateway does); returns the version and the seconds until
        this edge ran it."""
        from jobgate.proxy import store

        started = time.monotonic()
        with self.db.transaction() as conn:
            version, _ = store.replace_set(conn, doc)

        def applied() -> bool:
            row = self.row()
            return bool(row and (row["applied_version"] or 0) >= version)

        self.wait(applied, f"set version {version}")
        return version, time.monotonic() - started

    def health(self, upstream: str, address: str) -> str | None:
        with self.db.transaction() as conn:
            row = jdb.fetch_one(
                conn,
                "SELECT status FROM proxy_server_health"
                " WHERE edge_id = %s AND upstream = %s AND address = %s",
                (EDGE_ID, upstream, address),
            )
        return row["status"] if row else None


def empty_tables(database: Database) -> None:
    with database.transaction() as conn:
        jdb.execute(conn, f"TRUNCATE {PROXY_TABLES}")


@pytest.fixture
def backends() -> Iterator[tuple[Backend, Backend]]:
    a, b = Backend("A"), Backend("B")
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def edge(database_url: str, tmp_path: Path) -> Iterator[Edge]:
    if not os.access(NGINX, os.X_OK):
        pytest.skip("nginx not installed (make edge)")
    database = Database(database_url, maxconn=4)
    empty_tables(database)
    state = Path(tempfile.mkdtemp(prefix="jge-", dir="/tmp"))  # unix socket: short path
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_FORMAT": "text",
        "EDGE_ID": EDGE_ID,
        "EDGE_STATE_DIR": str(state),
        "EDGE_NGINX": NGINX,
        "EDGE_SCRIPT": str(EDGE_SCRIPT),
        "EDGE_BIND": f"127.0.0.1:{port}",
        "GATEWAY_UPSTREAM": NO_SERVICE,
        "STATS_UPSTREAM": NO_SERVICE,
        "EDGE_WORKERS": "2",
        # No poll within a test: set changes arrive by NOTIFY, health changes by the wake.
        "EDGE_POLL_SECONDS": "30",
        "PROXY_STATS_FLUSH_SECONDS": "0.2",
    }
    edge = Edge(database, env, port, tmp_path / "edge.log")
    try:
        edge.start()
        yield edge
    finally:
        if edge.proc is not None:
            edge.stop()
        empty_tables(database)
        database.close()
        shutil.rmtree(state, ignore_errors=True)


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def one_set(name: str, servers: list[str], *, check: bool = False, **route: Any) -> dict:
    upstream: dict[str, Any] = {"name": name, "servers": [{"address": s} for s in servers]}
    if check:
        upstream["health_check"] = {
            "enabled": True,
            "path": "/health",
            "interval": "1s",
            "timeout": "500ms",
            "healthy_threshold": 2,
            "unhealthy_threshold": 2,
        }
    return {
        "upstreams": [upstream],
        "routes": [{"id": f"route_{name}", "path": "/app/*", "upstream": name, **route}],
    }


def test_a_set_change_applies_within_seconds(edge, backends):
    a, b = backends
    _, took = edge.put_set(one_set("e2e-one", [a.address]))
    assert took < 5
    r = requests.get(f"{edge.url}/app/x", timeout=5)
    assert r.status_code == 200 and r.text == "A"
    _, took = edge.put_set(one_set("e2e-one", [b.address]))
    assert took < 5
    assert {requests.get(f"{edge.url}/app/x", timeout=5).text for _ in range(5)} == {"B"}
    row = edge.row()
    assert row["error"] is None and row["applied_at"] is not None
    # The whole set removed: the path is the gateway's again (here: nothing, 502 JSON).
    edge.put_set({"upstreams": [], "routes": []})
    r = requests.get(f"{edge.url}/app/x", timeout=5)
    assert r.status_code == 502 and r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    # The edge's own health answer does not depend on the gateway (here: none at all).
    health = requests.get(f"{edge.url}/_edge/health", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok", "service": "edge"}


def test_a_set_nginx_refuses_leaves_the_live_one_and_records_the_error(edge, backends):
    a, b = backends
    version, _ = edge.put_set(one_set("e2e-bad", [a.address]))
    # A name that resolved when the set was stored but no longer does (here: written past the
    # gateway's validation): nginx -t fails on it.
    with edge.db.transaction() as conn:
        jdb.execute(
            conn,
            "UPDATE proxy_upstreams SET doc = jsonb_set(doc, '{servers,0,address}',"
            " '\"no-such-host.invalid:80\"') WHERE name = 'e2e-bad'",
        )
    row = edge.wait(lambda: (r := edge.row()) and r["error"] and r, "the error recorded")
    assert "no-such-host.invalid" in row["error"]
    assert row["applied_version"] == version
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "A"
    # The next good set clears the error.
    edge.put_set(one_set("e2e-bad", [b.address]))
    assert edge.row()["error"] is None
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "B"


def refusing_nginx(tmp_path: Path, upstream: str) -> tuple[Path, Path]:
    """An nginx whose `-t` refuses any configuration publishing `upstream` while a flag
    file exists, as nginx does while a server's name does not resolve; the flag's removal
    is the name resolving again. Returns (the wrapper, the flag)."""
    flag = tmp_path / "refuse"
    wrapper = tmp_path / "nginx"
    wrapper.write_text(
        "#!/bin/sh\n"
        "for conf; do :; done\n"  # the last argument: the file `-t` checks
        f'if [ -e "{flag}" ] && [ "$1" = -t ] && grep -q "jobgate_u_{upstream}" "$conf"; then\n'
        f'  echo "host not found in upstream {upstream} (the test)" >&2; exit 1\n'
        "fi\n"
        f'exec {NGINX} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper, flag


def test_a_refused_set_is_tried_again_until_it_applies(edge, backends, tmp_path):
    """A refusal can pass without the set changing: the agent tries the same set again
    after a pause, while running and when it was refused at start."""
    a, b = backends
    edge.put_set(one_set("e2e-retry", [a.address]))
    edge.stop()
    wrapper, flag = refusing_nginx(tmp_path, "e2e-later")
    edge.env["EDGE_NGINX"] = str(wrapper)
    edge.start()
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "A"

    from jobgate.proxy import store

    def replace(doc: dict) -> int:
        with edge.db.transaction() as conn:
            return store.replace_set(conn, doc)[0]

    def runs(version: int) -> bool:
        return (edge.row()["applied_version"] or 0) >= version

    # Refused while running: the live set serves; once nginx -t passes, the set applies.
    flag.touch()
    version = replace(one_set("e2e-later", [b.address]))
    row = edge.wait(lambda: (r := edge.row()) and r["error"] and r, "the refusal recorded")
    assert "host not found in upstream e2e-later" in row["error"] and not runs(version)
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "A"
    flag.unlink()
    edge.wait(lambda: runs(version), "the refused set applied on a retry", 15)
    assert edge.row()["error"] is None
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "B"

    # Refused at start: the edge starts on the empty set, then applies the set on a retry.
    edge.stop()
    flag.touch()
    version = replace(one_set("e2e-later", [a.address]))
    edge.start(applied=False)
    edge.wait(lambda: (r := edge.row()) and r["error"], "the refusal at start recorded")
    assert requests.get(f"{edge.url}/app/x", timeout=5).status_code == 502  # no route yet
    flag.unlink()
    edge.wait(lambda: runs(version), "the set refused at start applied on a retry", 15)
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "A"


def test_a_failing_server_gets_no_requests_until_it_recovers(edge, backends):
    a, b = backends
    name = "e2e-health"
    edge.put_set(one_set(name, [a.address, b.address], check=True))
    edge.wait(lambda: edge.health(name, b.address) == "healthy", "B checked")
    for _ in range(10):
        assert requests.get(f"{edge.url}/app/x", timeout=5).status_code == 200
    assert b.hits > 0

    generation = edge.row()["applied_generation"]
    b.health = 503
    edge.wait(lambda: edge.health(name, b.address) == "unhealthy", "B unhealthy")
    edge.wait(lambda: edge.row()["applied_generation"] != generation, "the reload")
    b.hits = a.hits = 0
    for _ in range(20):
        r = requests.get(f"{edge.url}/app/x", timeout=5)
        assert r.status_code == 200 and r.text == "A"
    assert (a.hits, b.hits) == (20, 0)

    generation = edge.row()["applied_generation"]
    b.health = 200
    edge.wait(lambda: edge.health(name, b.address) == "healthy", "B healthy again")
    edge.wait(lambda: edge.row()["applied_generation"] != generation, "the reload")
    for _ in range(10):
        assert requests.get(f"{edge.url}/app/x", timeout=5).status_code == 200
    assert b.hits > 0


def test_a_request_in_flight_survives_a_reload_and_a_graceful_stop(edge, backends):
    a, _ = backends
    edge.put_set(one_set("e2e-slow", [a.address]))
    results: list[requests.Response] = []

    def slow() -> None:
        results.append(requests.get(f"{edge.url}/app/slow", timeout=15))

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    edge.put_set(one_set("e2e-slow", [a.address], timeout="20s"))  # a reload mid-request
    thread.join(15)
    assert results and results[0].status_code == 200 and results[0].text == "A"

    # SIGQUIT: nginx finishes what it serves, then the agent exits with it.
    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    stopping = threading.Thread(target=lambda: results.append(edge.stop(signal.SIGQUIT)))
    stopping.start()
    thread.join(15)
    stopping.join(15)
    assert results[1].status_code == 200
    assert results[2] == 0
    assert not _listens(edge.port)


def test_stats_count_the_requests_sent(edge, backends):
    from jobgate.proxy.stats import read_stats

    a, b = backends
    name = "e2e-stats"
    edge.put_set(one_set(name, [a.address, b.address]))
    for _ in range(25):
        assert requests.get(f"{edge.url}/app/x", timeout=5).status_code == 200

    def counted(n: int) -> dict | None:
        with edge.db.transaction() as conn:
            stats = read_stats(conn, window_s=60)
        upstream = stats["upstreams"].get(name)
        return stats if upstream and upstream["total_requests"] == n else None

    stats = edge.wait(lambda: counted(25), "25 requests in the stats")
    upstream = stats["upstreams"][name]
    assert sum(s["requests"] for s in upstream["servers"]) == 25
    assert {s["address"] for s in upstream["servers"]} == {a.address, b.address}
    assert all(s["status"] == "unknown" for s in upstream["servers"])  # no health check
    assert stats["requests_total"] >= 25
    assert stats["requests_per_second"] > 0
    assert stats["error_rate"] == 0.0
    assert 0 < stats["response_times"]["p50"] <= stats["response_times"]["p99"]
    # A restarted agent reads on from where the last one stopped: nothing counted twice.
    assert edge.stop() == 0
    edge.start()
    for _ in range(5):
        assert requests.get(f"{edge.url}/app/x", timeout=5).status_code == 200
    edge.wait(lambda: counted(30), "30 requests in the stats")
    time.sleep(1)
    assert counted(30)


def test_nginx_and_the_agent_live_and_die_together(edge, backends):
    a, _ = backends
    edge.put_set(one_set("e2e-life", [a.address]))
    # SIGHUP to the agent: the same set again, a new generation.
    generation = edge.row()["applied_generation"]
    edge.proc.send_signal(signal.SIGHUP)
    edge.wait(lambda: edge.row()["applied_generation"] != generation, "the forced reload")
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "A"

    # The agent killed outright: nginx goes too (no orphan keeps the port).
    edge.proc.kill()
    edge.proc.wait(5)
    edge.wait(lambda: not _listens(edge.port), "nginx to exit", 10, running=False)

    # Started again on the same state directory, then nginx killed outright: the agent
    # exits with it (its supervisor restarts both), leaving a stale socket behind...
    edge.start()
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "A"
    pid = int((Path(edge.env["EDGE_STATE_DIR"]) / "nginx.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert edge.proc.wait(10) == 128 + signal.SIGKILL
    assert (Path(edge.env["EDGE_STATE_DIR"]) / "edge-status.sock").exists()
    # ...which the next start removes.
    edge.wait(lambda: not _listens(edge.port), "the workers to exit", 10, running=False)
    edge.start()
    assert requests.get(f"{edge.url}/app/x", timeout=5).text == "A"
