"""The proxy set as nginx configuration (jobgate.proxy.render): the text follows the
contract, nginx accepts it composed into the real edge configuration, and a real nginx
serving it splits weights exactly, skips `down` servers, dispatches methods, guards auth
and rate-limited routes, and answers its own errors as canonical JSON."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jobgate.proxy.model import validate_set
from jobgate.proxy.render import (
    ACCESS_LOG,
    BASE_ERROR_PAGES,
    BASE_HEADERS,
    STATUS_SOCKET,
    Rendered,
    RenderSettings,
    compose,
    rate_zone,
    render,
)
from tests.helpers import serve_in_thread
from tests.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "scripts" / "edge.sh"
TEMPLATE = ROOT / "deploy" / "nginx" / "jobgate.conf.template"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make edge)")

NOTHING_DOWN: frozenset[tuple[str, str]] = frozenset()


def one_upstream(name: str = "web", **changes) -> dict:
    return {"name": name, "servers": [{"address": "127.0.0.1:9001"}], **changes}


def make_set(upstreams: list[dict], routes: list[dict]) -> dict:
    return validate_set({"upstreams": upstreams, "routes": routes})


def render_text(proxy_set: dict, down=NOTHING_DOWN, **settings) -> Rendered:
    return render(
        proxy_set,
        down=down,
        generation="g1",
        settings=RenderSettings(state_dir="/tmp/edge-state", **settings),
    )


def location(server: str, header: str) -> str:
    """The body of the location block whose header line starts with `header`."""
    match = re.search(rf"^{re.escape(header)} \{{\n(.*?)^\}}", server, re.M | re.S)
    assert match, f"no {header!r} in:\n{server}"
    return match.group(1)


# --- the text ---------------------------------------------------------------------------------


def test_base_sets_match_the_template():
    """Route locations repeat the server's proxy_set_header and error_page sets (nginx
    drops them in a location that sets its own): the copies must be the template's."""
    text = TEMPLATE.read_text()
    server = text[text.index("server {") :]
    server_level = re.sub(r"^\s*location\s.*?^\s{4}\}", "", server, flags=re.M | re.S)
    headers = re.findall(r"^\s*proxy_set_header\s+(\S+)\s+([^;]+);", server_level, re.M)
    pages = re.findall(r"^\s*error_page\s+([^;]+);", server_level, re.M)
    assert tuple(headers) == BASE_HEADERS
    assert tuple(pages) == BASE_ERROR_PAGES


def test_template_has_each_marker_once():
    text = TEMPLATE.read_text()
    assert text.count("# @jobgate:proxy-http") == 1
    assert text.count("# @jobgate:proxy-server") == 1
    assert text.index("# @jobgate:proxy-http") < text.index("server {")
    assert text.index("# @jobgate:proxy-server") < text.index("location / {")


@pytest.mark.parametrize(
    ("strategy", "line"),
    [("round_robin", None), ("least_conn", "least_conn;"), ("ip_hash", "ip_hash;")],
)
def test_upstream_strategies(strategy, line):
    http = render_text(make_set([one_upstream(strategy=strategy)], [])).http
    body = location(http, "upstream jobgate_u_web")
    assert body.splitlines()[0].strip() == "zone jobgate_upstreams 1m;"
    assert ("least_conn;" in body) == (line == "least_conn;")
    assert ("ip_hash;" in body) == (line == "ip_hash;")


def test_servers_weights_and_down():
    upstream = one_upstream(
        servers=[
            {"address": "127.0.0.1:9001", "weight": 1, "max_fails": 3, "fail_timeout": "30s"},
            {"address": "127.0.0.1:9002", "weight": 2, "fail_timeout": "2m"},
        ]
    )
    down = frozenset({("web", "127.0.0.1:9002"), ("other", "127.0.0.1:9001")})
    http = render_text(make_set([upstream], []), down).http
    assert "server 127.0.0.1:9001 weight=1 max_fails=3 fail_timeout=30s;" in http
    assert "server 127.0.0.1:9002 weight=2 max_fails=1 fail_timeout=120s down;" in http


def test_every_server_down_renders_all_down():
    upstream = one_upstream(servers=[{"address": "127.0.0.1:9001"}, {"address": "[::1]:9002"}])
    down = frozenset({("web", "127.0.0.1:9001"), ("web", "[::1]:9002")})
    http = render_text(make_set([upstream], []), down).http
    assert http.count(" down;") == 2


def test_one_zone_size_for_all_groups():
    http = render_text(make_set([one_upstream("a"), one_upstream("b")], [])).http
    assert http.count("zone jobgate_upstreams 1m;") == 1
    assert http.count("zone jobgate_upstreams;") == 1


def test_status_server_and_no_routes():
    rendered = render_text(make_set([], []))
    assert f"listen unix:/tmp/edge-state/{STATUS_SOCKET};" in rendered.http
    assert 'return 200 "g1";' in rendered.http
    assert "log_format" not in rendered.http and "limit_req_zone" not in rendered.http
    assert "location" not in rendered.server and "access_log" not in rendered.server


def test_route_location_repeats_the_base_sets():
    rendered = render_text(
        make_set(
            [one_upstream()],
            [{"id": "r1", "path": "/app/*", "upstream": "web", "timeout": "30s", "retries": 3}],
        )
    )
    body = location(rendered.server, 'location ^~ "/app/"')
    assert 'set $jobgate_route "r1";' in body and 'set $jobgate_upstream "web";' in body
    assert "set $jobgate_routed 1;" in body  # the log's condition: "0" is a route id too
    assert "proxy_pass http://jobgate_u_web;" in body
    for name, value in BASE_HEADERS:
        assert f"proxy_set_header {name} {value};" in body
    for page in BASE_ERROR_PAGES:
        assert f"error_page {page};" in body
    assert 'proxy_set_header X-Jobgate-User-Id "";' in body  # never forged by a client
    assert "proxy_read_timeout 30s;" in body and "proxy_send_timeout 30s;" in body
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in body
    assert "proxy_next_upstream_tries 4;" in body
    assert "auth_request" not in body and "limit_req" not in body
    assert (
        f"access_log /tmp/edge-state/{ACCESS_LOG} jobgate_proxy if=$jobgate_routed;"
        in rendered.server
    )
    assert "uninitialized_variable_warn off;" in rendered.server
    assert 'location = "/exact"' not in rendered.server


def test_exact_path_and_retries_zero():
    rendered = render_text(
        make_set(
            [one_upstream()], [{"id": "r1", "path": "/exact", "upstream": "web", "retries": 0}]
        )
    )
    body = location(rendered.server, 'location = "/exact"')
    assert "proxy_next_upstream off;" in body  # tries 0 would mean "unlimited"
    assert "proxy_next_upstream_tries" not in body


def test_route_headers_replace_base_ones():
    headers = {"x-forwarded-for": "$http_x_real_client", "X-Extra": "a b", "Host": "app.example"}
    rendered = render_text(
        make_set(
            [one_upstream()], [{"id": "r1", "path": "/a", "upstream": "web", "headers": headers}]
        )
    )
    body = location(rendered.server, 'location = "/a"')
    assert "X-Forwarded-For $remote_addr" not in body
    assert "proxy_set_header Host $jobgate_host;" not in body
    assert 'proxy_set_header x-forwarded-for "$http_x_real_client";' in body
    assert 'proxy_set_header X-Extra "a b";' in body
    assert 'proxy_set_header Host "app.example";' in body


def test_auth_and_rate_limit():
    route = {"id": "r1", "path": "/s/*", "upstream": "web", "middleware": ["auth", "rate_limit"]}
    settings = {"rate_limit": "5r/m", "rate_burst": 3, "auth_check_uri": "/check"}
    rendered = render_text(make_set([one_upstream()], [route]), **settings)
    zone = rate_zone(RenderSettings(state_dir="/x", rate_limit="5r/m"))
    assert (
        f"limit_req_zone $binary_remote_addr$jobgate_route zone={zone}:10m rate=5r/m;"
        in rendered.http
    )
    body = location(rendered.server, 'location ^~ "/s/"')
    assert f"limit_req zone={zone} burst=3 nodelay;" in body
    assert body.index("limit_req ") < body.index("auth_request ")
    assert "auth_request /_jobgate/auth;" in body
    assert "proxy_set_header X-Jobgate-User-Id $jobgate_user_id;" in body
    assert 'proxy_set_header X-API-Key "";' in body and 'proxy_set_header Authorization "";' in body
    auth = location(rendered.server, "location = /_jobgate/auth")
    assert "proxy_pass http://jobgate_gateway/check;" in auth
    assert "location = /_jobgate/error/429" in rendered.server


def test_rate_zone_changes_with_the_rate():
    """nginx refuses a reload that changes a zone's key (and keeps the old config): a new
    key, size or rate gets a new zone name."""
    assert rate_zone(RenderSettings(state_dir="/x")) != rate_zone(
        RenderSettings(state_dir="/x", rate_limit="20r/s")
    )


def test_several_methods_on_one_path_dispatch():
    routes = [
        {"id": "rget", "path": "/m", "method": "GET", "upstream": "web"},
        {"id": "rpost", "path": "/m", "method": "POST", "upstream": "web"},
    ]
    server = render_text(make_set([one_upstream()], routes)).server
    path = location(server, 'location = "/m"')
    assert 'if ($request_method ~ "^(GET|HEAD)$")' in path
    assert "rewrite ^ /_jobgate/route/rget last;" in path
    assert "if ($request_method = POST)" in path
    assert "return 405" in path and 'add_header Allow "GET, HEAD, POST" always;' in path
    inner = location(server, "location = /_jobgate/route/rpost")
    assert "internal;" in inner
    assert "proxy_pass http://jobgate_u_web$request_uri;" in inner


def test_an_any_route_takes_the_other_methods():
    routes = [
        {"id": "rhead", "path": "/m", "method": "HEAD", "upstream": "web"},
        {"id": "rget", "path": "/m", "method": "GET", "upstream": "web"},
        {"id": "rany", "path": "/m", "upstream": "web"},
    ]
    path = location(render_text(make_set([one_upstream()], routes)).server, 'location = "/m"')
    assert "if ($request_method = GET)" in path and "if ($request_method = HEAD)" in path
    assert path.rstrip().endswith("rewrite ^ /_jobgate/route/rany last;")
    assert "405" not in path


@pytest.mark.parametrize(
    "settings",
    [
        {"state_dir": "relative"},
        {"state_dir": "/with space"},
        {"state_dir": "/x;y"},
        {"state_dir": "/" + "d" * 100},
        {"state_dir": "/x", "rate_limit": "10/s"},
        {"state_dir": "/x", "rate_burst": -1},
        {"state_dir": "/x", "auth_check_uri": "/a b"},
    ],
)
def test_settings_that_would_break_the_syntax(settings):
    with pytest.raises(ValueError):
        render(
            make_set([], []), down=NOTHING_DOWN, generation="g", settings=RenderSettings(**settings)
        )


@pytest.mark.parametrize("generation", ["", "a b", "x;", 'x"'])
def test_bad_generations(generation):
    with pytest.raises(ValueError):
        render(
            make_set([], []),
            down=NOTHING_DOWN,
            generation=generation,
            settings=RenderSettings("/x"),
        )


def test_compose_replaces_both_markers_with_their_indent():
    base = (
        "http {\n    # @jobgate:proxy-http\n    server {\n"
        "        # @jobgate:proxy-server\n    }\n}\n"
    )
    out = compose(base, Rendered(http="a;\n\nb {\n    c;\n}", server="d;"))
    assert (
        out == "http {\n    a;\n\n    b {\n        c;\n    }\n    server {\n        d;\n    }\n}\n"
    )


@pytest.mark.parametrize(
    "base",
    [
        "http { server { # @jobgate:proxy-server\n } }",
        "# @jobgate:proxy-http\n",
        "# @jobgate:proxy-http\n# @jobgate:proxy-http\n# @jobgate:proxy-server\n",
    ],
)
def test_compose_needs_each_marker_once(base):
    with pytest.raises(ValueError, match="@jobgate:proxy"):
        compose(base, Rendered(http="", server=""))


# --- nginx accepts it -------------------------------------------------------------------------


def base_conf(directory: Path, **env: str) -> Path:
    """scripts/edge.sh's configuration for this machine, rendered into `directory`."""
    out = directory / "nginx.conf"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "MAX_FILE"))}
    for name in ("GATEWAY_UPSTREAM", "STATS_UPSTREAM", "GATEWAY_BIND", "STATS_BIND"):
        clean.pop(name, None)
    subprocess.run([str(EDGE), "render", str(out)], env={**clean, **env}, check=True)
    return out


def nginx_test(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NGINX, "-t", "-q", "-e", "stderr", "-p", f"{conf.parent}/", "-c", str(conf)],
        capture_output=True,
        text=True,
    )


SERVERS = [{"address": "127.0.0.1:9001", "weight": 1}, {"address": "127.0.0.1:9002", "weight": 2}]
FULL_SET = {
    "upstreams": [
        {"name": "rr", "servers": SERVERS},
        {"name": "lc", "strategy": "least_conn", "servers": SERVERS},
        {"name": "Hash_1", "strategy": "ip_hash", "servers": [*SERVERS, {"address": "[::1]:9003"}]},
        {"name": "gone", "servers": [{"address": "127.0.0.1:9004"}]},
        {"name": "unused", "servers": [{"address": "localhost:9005"}]},
    ],
    "routes": [
        {"id": "r_any", "path": "/app/*", "upstream": "rr", "retries": 0},
        {"id": "r_get", "path": "/q", "method": "GET", "upstream": "lc"},
        {"id": "r_post", "path": "/q", "method": "POST", "upstream": "Hash_1"},
        {"id": "r_put", "path": "/q/*", "method": "PUT", "upstream": "rr"},
        {"id": "r_rest", "path": "/q/*", "upstream": "lc"},
        {"id": "r_exact_and_prefix", "path": "/q*", "upstream": "rr"},
        {
            "id": "r_auth",
            "path": "/secure/*",
            "upstream": "rr",
            "middleware": ["auth", "rate_limit"],
            "headers": {"X-Forwarded-For": "$remote_addr", "X-Agent": "$http_user_agent"},
            "timeout": "1500ms",
            "retries": 10,
        },
        {"id": "r_root", "path": "/", "upstream": "gone", "middleware": ["rate_limit"]},
    ],
}


@needs_nginx
@pytest.mark.parametrize(
    ("proxy_set", "down"),
    [
        ({"upstreams": [], "routes": []}, NOTHING_DOWN),
        (FULL_SET, NOTHING_DOWN),
        (FULL_SET, frozenset({("rr", "127.0.0.1:9002"), ("gone", "127.0.0.1:9004")})),
        ({"upstreams": FULL_SET["upstreams"], "routes": []}, NOTHING_DOWN),
    ],
)
@pytest.mark.parametrize("burst", [20, 0])
def test_nginx_accepts_composed_configurations(tmp_path, proxy_set, down, burst):
    conf = base_conf(tmp_path, EDGE_BIND="127.0.0.1:18998")
    rendered = render(
        validate_set(proxy_set),
        down=down,
        generation="7.3-x_y",
        settings=RenderSettings(state_dir=str(tmp_path), rate_limit="600r/m", rate_burst=burst),
    )
    conf.write_text(compose(conf.read_text(), rendered))
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr + conf.read_text()


@needs_nginx
def test_the_base_edge_without_a_set_still_passes(tmp_path):
    """The markers are comments: scripts/edge.sh's own output runs without the agent."""
    conf = base_conf(tmp_path, EDGE_BIND="127.0.0.1:18997")
    assert nginx_test(conf).returncode == 0


# --- a real nginx serving a set ---------------------------------------------------------------


class Backend:
    """An HTTP server on a free loopback port that counts requests and keeps the headers
    of the last one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0
        self.last: dict[str, str] = {}
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                with backend.lock:
                    backend.hits += 1
                    backend.last = {k.lower(): v for k, v in self.headers.items()}
                    backend.last[":path"] = self.path
                    backend.last[":method"] = self.command
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_port}"
        self.thread = serve_in_thread(self.server)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class AuthCheck:
    """The gateway's side of the auth contract (GET /api/proxy/auth-check, which the gateway
    implements): 204 + X-Jobgate-User-Id for the key "good", 403 for "no-scope", 403 +
    X-Jobgate-Auth-Error: SERVICE_UNAVAILABLE for "auth-down", else 401."""

    def __init__(self) -> None:
        checks = self.checks = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                checks.append((self.path, dict(self.headers.items())))
                key = self.headers.get("X-API-Key")
                if key == "good":
                    self.send_response(204)
                    self.send_header("X-Jobgate-User-Id", "user-7")
                elif key == "no-scope":
                    self.send_response(403)
                elif key == "auth-down":
                    self.send_response(403)
                    self.send_header("X-Jobgate-Auth-Error", "SERVICE_UNAVAILABLE")
                else:
                    self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_port}"
        serve_in_thread(self.server)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Edge:
    def __init__(self, directory: Path, port: int, backends: dict[str, Backend]) -> None:
        self.directory = directory
        self.url_port = port
        self.backends = backends

    def request(self, method: str, path: str, headers: dict | None = None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.url_port, timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.data = response.read()
        conn.close()
        return response

    def log_lines(self) -> list[dict]:
        path = self.directory / ACCESS_LOG
        return [json.loads(line) for line in path.read_text().splitlines()]

    def status(self, path: str) -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.directory / STATUS_SOCKET))
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        return data.split(b"\r\n\r\n", 1)[1]


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> Iterator[Edge]:
    if NGINX is None:
        pytest.skip("nginx is not installed (make edge)")
    names = ["a", "b", "c", "d", "e", "f", "g"]
    backends = {name: Backend(name) for name in names}
    auth = AuthCheck()
    directory = tmp_path_factory.mktemp("proxy-edge")
    port = free_port()
    conf = base_conf(
        directory,
        EDGE_BIND=f"127.0.0.1:{port}",
        GATEWAY_UPSTREAM=auth.address,
        STATS_UPSTREAM=f"127.0.0.1:{free_port()}",
    )
    addr = {name: backend.address for name, backend in backends.items()}
    dead = {"address": f"127.0.0.1:{free_port()}", "max_fails": 0}
    proxy_set = validate_set(
        {
            "upstreams": [
                {
                    "name": "weighted",
                    "servers": [
                        {"address": addr["a"], "weight": 1},
                        {"address": addr["b"], "weight": 2},
                    ],
                },
                {
                    "name": "partly-down",
                    "servers": [{"address": addr["c"]}, {"address": addr["d"]}],
                },
                {"name": "all-down", "servers": [{"address": addr["f"]}]},
                {"name": "posts", "strategy": "least_conn", "servers": [{"address": addr["e"]}]},
                {"name": "gets", "strategy": "ip_hash", "servers": [{"address": addr["g"]}]},
                # A server that refuses connections, never marked failed (max_fails 0).
                {"name": "with-dead", "servers": [dead, {"address": addr["c"]}]},
            ],
            "routes": [
                {"id": "r_weighted", "path": "/w/*", "upstream": "weighted", "retries": 0},
                {"id": "r_down", "path": "/d/*", "upstream": "partly-down"},
                {"id": "r_gone", "path": "/gone", "upstream": "all-down"},
                {"id": "r_retry", "path": "/retry/*", "upstream": "with-dead", "retries": 1},
                {"id": "r_once", "path": "/once/*", "upstream": "with-dead", "retries": 0},
                {"id": "r_get", "path": "/m", "method": "GET", "upstream": "gets"},
                {"id": "r_post", "path": "/m", "method": "POST", "upstream": "posts"},
                {
                    "id": "r_headers",
                    "path": "/h/*",
                    "upstream": "posts",
                    "headers": {
                        "X-Forwarded-For": "override-$remote_addr",
                        "X-Agent": "$http_user_agent",
                    },
                },
                {"id": "r_auth", "path": "/secure/*", "upstream": "posts", "middleware": ["auth"]},
                {
                    "id": "r_limited",
                    "path": "/limited",
                    "upstream": "posts",
                    "middleware": ["rate_limit"],
                },
            ],
        }
    )
    down = frozenset({("partly-down", addr["d"]), ("all-down", addr["f"])})
    settings = RenderSettings(state_dir=str(directory), rate_limit="1r/m", rate_burst=0)
    rendered = render(proxy_set, down=down, generation="gen-42", settings=settings)
    conf.write_text(compose(conf.read_text(), rendered))
    checked = nginx_test(conf)
    assert checked.returncode == 0, checked.stderr
    log = open(directory / "nginx.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [NGINX, "-e", "stderr", "-p", f"{directory}/", "-c", str(conf), "-g", "daemon off;"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, proc, directory)
        edge = Edge(directory, port, backends)
        edge.auth = auth
        yield edge
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        for backend in backends.values():
            backend.stop()
        auth.stop()


def _wait_for_port(port: int, proc: subprocess.Popen, directory: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((directory / "nginx.log").read_text())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not listen")


def canonical_error(response, status: int, code: str) -> dict:
    assert response.status == status, response.data
    assert response.getheader("Content-Type").startswith("application/json")
    error = json.loads(response.data)["error"]
    assert error["code"] == code and set(error) == {"code", "message", "details", "request_id"}
    assert error["request_id"]
    return error


def test_weights_split_exactly(edge):
    a, b = edge.backends["a"], edge.backends["b"]
    before = (a.hits, b.hits)
    answers = [edge.request("GET", f"/w/{i}").data for i in range(30)]
    assert (a.hits - before[0], b.hits - before[1]) == (10, 20)
    assert answers.count(b"a") == 10 and answers.count(b"b") == 20


def test_a_down_server_gets_nothing(edge):
    c, d = edge.backends["c"], edge.backends["d"]
    before = (c.hits, d.hits)
    for i in range(20):
        assert edge.request("GET", f"/d/{i}?q=1").status == 200
    assert (c.hits - before[0], d.hits - before[1]) == (20, 0)
    assert c.last[":path"] == "/d/19?q=1"  # the client's URI, query included


def test_every_server_down_is_a_json_502(edge):
    canonical_error(edge.request("GET", "/gone"), 502, "SERVICE_UNAVAILABLE")
    assert edge.backends["f"].hits == 0


def test_retries_hide_a_dead_server_and_retries_0_does_not(edge):
    assert [edge.request("GET", f"/retry/{i}").status for i in range(6)] == [200] * 6
    statuses = [edge.request("GET", f"/once/{i}").status for i in range(6)]
    assert sorted(statuses) == [200, 200, 200, 502, 502, 502]


def test_methods_dispatch_to_their_routes(edge):
    e, g = edge.backends["e"], edge.backends["g"]
    assert edge.request("GET", "/m?x=1").data == b"g"
    assert g.last[":path"] == "/m?x=1"
    assert edge.request("HEAD", "/m").status == 200 and g.last[":method"] == "HEAD"
    assert edge.request("POST", "/m", body=b"{}").data == b"e"
    assert e.last[":method"] == "POST" and e.last[":path"] == "/m"
    refused = edge.request("DELETE", "/m")
    error = canonical_error(refused, 405, "INVALID_REQUEST")
    assert refused.getheader("Allow") == "GET, HEAD, POST"
    assert error["details"] == {"allowed": ["GET", "HEAD", "POST"]}


def test_headers_reach_the_upstream(edge):
    e = edge.backends["e"]
    response = edge.request(
        "GET",
        "/h/x",
        headers={"User-Agent": "probe/1", "X-Jobgate-User-Id": "forged", "X-Request-ID": "rid-1"},
    )
    assert response.status == 200
    assert e.last["x-forwarded-for"] == "override-127.0.0.1"
    assert e.last["x-agent"] == "probe/1"
    assert "x-jobgate-user-id" not in e.last  # a client cannot claim a user
    assert e.last["x-request-id"] == "rid-1"
    assert e.last["connection"] == "close"  # the base set is still there


def test_auth_route(edge):
    e = edge.backends["e"]
    error = canonical_error(edge.request("GET", "/secure/a"), 401, "UNAUTHORIZED")
    assert error["message"] == "Authentication required"
    hits = e.hits
    ok = edge.request("GET", "/secure/a?b=1", headers={"X-API-Key": "good"})
    assert ok.status == 200 and e.hits == hits + 1
    assert e.last["x-jobgate-user-id"] == "user-7"
    assert "x-api-key" not in e.last and "authorization" not in e.last
    path, headers = edge.auth.checks[-1]
    assert path == "/api/proxy/auth-check"
    assert headers["X-Original-URI"] == "/secure/a?b=1"
    canonical_error(edge.request("GET", "/secure/a", {"X-API-Key": "no-scope"}), 403, "FORBIDDEN")
    down = edge.request("GET", "/secure/a", {"X-API-Key": "auth-down"})
    canonical_error(down, 503, "SERVICE_UNAVAILABLE")
    assert e.hits == hits + 1  # refused requests never reached the upstream


def test_rate_limited_route(edge):
    assert edge.request("GET", "/limited").status == 200
    limited = edge.request("GET", "/limited")
    canonical_error(limited, 429, "RATE_LIMITED")
    assert limited.getheader("Retry-After") == "1"


def test_access_log_has_every_routed_request(edge):
    """Lines are written after the answer: wait for the ones of a fresh request."""
    edge.request("GET", "/gone", headers={"X-Request-ID": "log-probe-1"})
    edge.request("GET", "/w/log", headers={"X-Request-ID": "log-probe-2"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = {line["request_id"]: line for line in edge.log_lines()}
        if "log-probe-2" in lines:
            break
        time.sleep(0.05)
    gone, served = lines["log-probe-1"], lines["log-probe-2"]
    # A request answered by an error page (502) is still the route's.
    assert (gone["route"], gone["upstream"], gone["status"]) == ("r_gone", "all-down", 502)
    assert (served["route"], served["upstream"], served["status"]) == (
        "r_weighted",
        "weighted",
        200,
    )
    assert served["upstream_addr"] in (edge.backends["a"].address, edge.backends["b"].address)
    assert served["upstream_status"] == "200"
    assert isinstance(served["ts"], float) and isinstance(served["request_time"], float)
    # The gateway's own traffic (405s of a path location, too) stays out of it.
    assert all(line["route"] for line in edge.log_lines())


def test_status_socket_answers_the_generation(edge):
    assert edge.status("/version") == b"gen-42"
    assert b"Active connections" in edge.status("/stub")


def test_auth_with_the_gateway_down(edge):
    """Last: stops the auth check. A gateway that cannot answer is a 503, not a 500."""
    edge.auth.stop()
    canonical_error(
        edge.request("GET", "/secure/a", {"X-API-Key": "good"}), 503, "SERVICE_UNAVAILABLE"
    )
