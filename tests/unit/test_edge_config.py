"""The edge: scripts/edge.sh renders a configuration nginx accepts, whose routes, streams,
body limits and error pages are the ones docs/operations.md promises; compose runs the same
template; and the gateway believes X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from jobgate_gateway.proxies import TrustedProxies, parse_address, parse_networks

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "scripts" / "edge.sh"
TEMPLATE = ROOT / "deploy" / "nginx" / "jobgate.conf.template"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

STATS, GATEWAY = "jobgate_stats", "jobgate_gateway"
JOB = "6bb4629b-1487-477c-96fe-b762d82a099b"


def render(tmp_path: Path, **env: str) -> str:
    out = tmp_path / "edge" / "nginx.conf"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_", "MAX_FILE"))}
    for name in ("GATEWAY_UPSTREAM", "STATS_UPSTREAM", "GATEWAY_BIND", "STATS_BIND"):
        base.pop(name, None)
    subprocess.run([str(EDGE), "render", str(out)], env={**base, **env}, check=True)
    return re.sub(r"^\s*#.*\n", "", out.read_text(), flags=re.M)  # without the comments


@pytest.fixture(scope="module")
def conf(tmp_path_factory) -> str:
    return render(tmp_path_factory.mktemp("edge"))


# --- parsing the rendered file -----------------------------------------------------------


def blocks(text: str) -> dict[str, str]:
    """Each `location [modifier] pattern { ... }` body, keyed by "modifier pattern"."""
    found = {}
    for m in re.finditer(
        r"^\s*location\s+(?:(=|~|\^~)\s+)?(\S+)\s*\{(.*?)^\s*\}", text, re.M | re.S
    ):
        found[f"{m.group(1) or ''} {m.group(2)}".strip()] = m.group(3)
    return found


def server_level(text: str) -> str:
    """The server block without its locations (directives every location inherits)."""
    server = text[text.index("server {") :]
    return re.sub(r"^\s*location\s.*?^\s*\}", "", server, flags=re.M | re.S)


def route(text: str, uri: str) -> str:
    """The upstream nginx picks for `uri`: exact match, else the longest prefix (final when
    `^~`), else the first matching regex, else that longest prefix."""
    locations = blocks(text)
    exact = {k[2:]: v for k, v in locations.items() if k.startswith("= ")}
    if uri in exact:
        body = exact[uri]
    else:
        prefixes = [
            (k.split(" ", 1)[-1], k.startswith("^~"), v)
            for k, v in locations.items()
            if not k.startswith(("= ", "~ ")) and not k.startswith("@")
        ]
        matching = [p for p in prefixes if uri.startswith(p[0])]
        longest = max(matching, key=lambda p: len(p[0]))
        body = longest[2]
        if not longest[1]:
            for k, v in locations.items():
                if k.startswith("~ ") and re.search(k[2:], uri):
                    body = v
                    break
    m = re.search(r"proxy_pass http://(\w+);", body)
    return m.group(1) if m else "internal"


def directive(body: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]*);", body, re.M)


# --- the rendered configuration --------------------------------------------------------


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make test installs it)")
def test_nginx_accepts_the_rendered_configuration(tmp_path):
    render(tmp_path, EDGE_BIND="127.0.0.1:18999")
    conf_path = tmp_path / "edge" / "nginx.conf"
    result = subprocess.run(
        [NGINX, "-t", "-e", "stderr", "-p", f"{conf_path.parent}/", "-c", str(conf_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_defaults_and_no_system_paths(conf, tmp_path):
    assert directive(conf, "listen") == ["127.0.0.1:8080"]
    assert "server 127.0.0.1:8083;" in conf  # the gateway under make run
    assert "server 127.0.0.1:8082;" in conf  # stats-service
    assert "/etc/nginx" not in conf and "/var/lib/nginx" not in conf
    assert re.search(r"^pid /\S+/edge/nginx\.pid;", conf, re.M)
    assert directive(conf, "error_log") == ["stderr warn"]
    assert directive(conf, "access_log") == ["/dev/stdout jobgate", "off"]  # off: probes
    assert "${" not in conf


def test_settings_from_the_environment(tmp_path):
    text = render(
        tmp_path,
        EDGE_BIND="[::1]:9080",
        GATEWAY_BIND="127.0.0.1:9083",  # the gateway's own bind is its upstream by default
        STATS_UPSTREAM="10.0.0.5:7000",
        MAX_FILE_SIZE="500",
    )
    assert directive(text, "listen") == ["[::1]:9080"]
    assert "server 127.0.0.1:9083;" in text
    assert "server 10.0.0.5:7000;" in text
    assert directive(text, "client_max_body_size") == ["501m"]


def test_render_refuses_values_that_would_change_the_syntax(tmp_path):
    bad = subprocess.run(
        [str(EDGE), "render", str(tmp_path / "x.conf")],
        env={**os.environ, "EDGE_BIND": "127.0.0.1:80; include /etc/passwd"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "EDGE_BIND" in bad.stderr
    assert not (tmp_path / "x.conf").exists()


def test_trusted_proxies_give_the_client_behind_them(conf, tmp_path):
    """EDGE_TRUSTED_PROXIES: nginx's realip in the http context (every server, the proxy
    set's too), so $remote_addr - what is logged, limited and sent on - is the client a
    trusted proxy forwarded for. Unset, none of it: the edge is the first hop."""
    for name in ("set_real_ip_from", "real_ip_header", "real_ip_recursive"):
        assert not directive(conf, name), name
    text = render(tmp_path, EDGE_TRUSTED_PROXIES=" 10.0.0.0/8,fc00::/7 , 192.0.2.1,::1,")
    assert directive(text, "set_real_ip_from") == ["10.0.0.0/8", "fc00::/7", "192.0.2.1", "::1"]
    assert directive(text, "real_ip_header") == ["X-Forwarded-For"]
    assert directive(text, "real_ip_recursive") == ["on"]
    http = text[text.index("http {") : text.index("server {")]
    assert directive(http, "real_ip_header") == ["X-Forwarded-For"]
    # What is sent on is still $remote_addr, now the real client: replaced, never appended.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in server_level(text)
    assert "$proxy_add_x_forwarded_for" not in text
    if NGINX is not None:  # the realip module is built into Debian's nginx
        conf_path = tmp_path / "edge" / "nginx.conf"
        checked = subprocess.run(
            [NGINX, "-t", "-e", "stderr", "-p", f"{conf_path.parent}/", "-c", str(conf_path)],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.0/8; include /etc/passwd",
        "10.0.0.0/8;",
        "10.0.0.1 10.0.0.2",
        "edge.local",
        "unix:",
        "10.0.0.0/8\nreal_ip_header X-Real-IP",
        "10.0.0.0/8,$http_x",
        "10.0.0.0/8,{",
    ],
)
def test_render_refuses_trusted_proxies_that_are_no_addresses(tmp_path, value):
    bad = subprocess.run(
        [str(EDGE), "render", str(tmp_path / "x.conf")],
        env={**os.environ, "EDGE_TRUSTED_PROXIES": value},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2, bad.stderr
    assert "EDGE_TRUSTED_PROXIES" in bad.stderr
    assert not (tmp_path / "x.conf").exists()


@pytest.mark.parametrize(
    ("uri", "upstream"),
    [
        ("/ws/jobs/" + JOB, STATS),
        ("/ws/metrics", STATS),
        ("/ws/tasks", STATS),
        ("/api/ws/updates", STATS),
        (f"/api/v1/jobs/{JOB}/events", STATS),
        ("/api/v1/analytics/dashboard", STATS),
        ("/api/v1/analytics/trends", STATS),
        ("/api/v1/analytics/export", STATS),
        (f"/api/v1/jobs/{JOB}", GATEWAY),
        (f"/api/v1/jobs/{JOB}/logs", GATEWAY),
        (f"/api/v1/jobs/{JOB}/events/more", GATEWAY),
        (f"/api/v1/jobs/{JOB}/x/events", GATEWAY),
        ("/api/v1/jobs/events", GATEWAY),
        ("/api/v1/jobs", GATEWAY),
        ("/api/v1/analytics", GATEWAY),
        ("/api/v1/analyticsx/dashboard", GATEWAY),
        ("/wsx", GATEWAY),
        ("/api/v1/health", GATEWAY),
        ("/health", GATEWAY),
        ("/upload", GATEWAY),
        ("/docs", GATEWAY),
        ("/", GATEWAY),
    ],
)
def test_routes(conf, uri, upstream):
    assert route(conf, uri) == upstream


def test_streams_are_upgraded_unbuffered_and_long_lived(conf):
    locations = blocks(conf)
    server = server_level(conf)
    # WebSocket handshakes: HTTP/1.1 with the client's Upgrade and a matching Connection.
    assert directive(server, "proxy_http_version") == ["1.1"]
    assert "proxy_set_header Upgrade $http_upgrade;" in server
    assert "proxy_set_header Connection $jobgate_connection;" in server
    assert re.search(r"map \$http_upgrade \$jobgate_connection \{\s*default upgrade;", conf)
    for key in ("^~ /ws/", "^~ /api/ws/", r"~ ^/api/v1/jobs/[^/]+/events$"):
        body = locations[key]
        assert directive(body, "proxy_read_timeout") == ["3600s"], key
        assert directive(body, "proxy_send_timeout") == ["3600s"], key
        assert directive(body, "proxy_buffering") == ["off"], key
        # A location's own proxy_set_header would drop the server's forwarded headers.
        assert not directive(body, "proxy_set_header"), key
    assert not any(directive(body, "proxy_set_header") for body in locations.values())


def test_client_addresses_are_replaced_not_appended(conf):
    server = server_level(conf)
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in server
    assert "$proxy_add_x_forwarded_for" not in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in server
    assert "proxy_set_header X-Forwarded-Host $jobgate_host;" in server
    assert 'proxy_set_header Forwarded "";' in server
    assert "proxy_set_header X-Request-ID $jobgate_request_id;" in server


def test_request_ids_follow_the_services_rule(conf):
    from jobgate.web import _REQUEST_ID_RE

    m = re.search(r'map \$http_x_request_id \$jobgate_request_id \{\s*"~(.*?)"', conf)
    assert m and m.group(1) == _REQUEST_ID_RE.pattern
    assert re.search(r"default \$request_id;", conf)


def test_uploads_stream_to_the_gateway_which_answers_413_itself(conf):
    from jobgate.config import Settings
    from jobgate_gateway import MAX_JSON_BODY
    from jobgate_gateway.uploads import MULTIPART_OVERHEAD

    server = server_level(conf)
    assert directive(server, "proxy_request_buffering") == ["off"]
    (size,) = directive(server, "client_max_body_size")
    assert size.endswith("m")
    edge_limit = int(size[:-1]) * 1024 * 1024
    gateway_upload = Settings().max_file_size * 1024 * 1024 + MULTIPART_OVERHEAD
    assert edge_limit >= gateway_upload
    assert edge_limit >= MAX_JSON_BODY


ERROR_CODES = {
    400: "INVALID_REQUEST",
    404: "NOT_FOUND",
    411: "INVALID_REQUEST",
    413: "PAYLOAD_TOO_LARGE",
    414: "INVALID_REQUEST",
    494: "INVALID_REQUEST",  # nginx's "request header too large", answered as 431
    500: "INTERNAL_ERROR",
    501: "INVALID_REQUEST",
    502: "SERVICE_UNAVAILABLE",
    503: "SERVICE_UNAVAILABLE",
    504: "SERVICE_UNAVAILABLE",
    505: "INVALID_REQUEST",
}


def test_errors_made_by_nginx_are_canonical_json(conf):
    server = server_level(conf)
    pages = {}
    for spec in directive(server, "error_page"):
        *codes, target = spec.split()
        answer = int(codes.pop()[1:]) if codes[-1].startswith("=") else None
        for code in codes:
            pages[int(code)] = (answer or int(code), target)
    assert pages[494] == (431, "/_edge/error/431")  # request headers too large
    locations = blocks(conf)
    for status, code in ERROR_CODES.items():
        answer, target = pages[status]
        body = locations[f"= {target}"]
        assert "internal;" in body
        assert directive(body, "default_type") == ["application/json"]
        assert "add_header X-Request-ID $jobgate_request_id always;" in body
        m = re.search(r"return (\d+) '(.*)';", body)
        assert m and int(m.group(1)) == answer
        payload = json.loads(
            m.group(2).replace("$jobgate_request_id", "abc123").replace("\\n", "\n")
        )
        assert payload == {
            "error": {
                "code": code,
                "message": payload["error"]["message"],
                "details": {},
                "request_id": "abc123",
            }
        }
    # Upstream answers (the services' own JSON errors) are never replaced.
    assert directive(server, "proxy_intercept_errors") == ["off"]


# --- docker-compose.yml runs the same template ------------------------------------------


def test_compose_runs_the_edge_and_stats_service():
    """The compose edge is the Jobgate edge image running `jobgate-edge` (nginx as its child,
    configured from the template by scripts/edge.sh and from the proxy set in PostgreSQL)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    edge, stats, gateway = services["edge"], services["stats"], services["gateway"]
    assert edge["image"] == "jobgate/edge:local"
    assert edge["build"] == {"context": ".", "dockerfile": "deploy/nginx/Dockerfile"}
    assert edge["command"] == ["jobgate-edge"]
    dockerfile = (ROOT / "deploy" / "nginx" / "Dockerfile").read_text()
    assert re.search(r'^CMD \["jobgate-edge"\]$', dockerfile, re.M)
    assert "volumes" not in edge  # the template is in the image, rendered at start
    assert edge["ports"] == ["127.0.0.1:8080:8080"]
    assert "ports" not in gateway and "ports" not in stats  # only through the edge
    # Every setting of the template is given; the agent reads the set from PostgreSQL once
    # the migrations have made its tables.
    needed = set(re.findall(r"\$\{([A-Z_]+)\}", TEMPLATE.read_text()))
    env = edge["environment"]
    assert needed <= set(env)
    assert env["GATEWAY_UPSTREAM"] == "gateway:8080" and env["STATS_UPSTREAM"] == "stats:8082"
    assert env["EDGE_BIND"].rsplit(":", 1)[-1] == "8080"
    assert env["DATABASE_URL"] == services["migrate"]["environment"]["DATABASE_URL"]
    assert env["EDGE_ID"]
    assert edge["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    # Gateway and stats-service believe the compose network (where the edge is), nothing else.
    (subnet,) = [c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"]]
    assert gateway["environment"]["TRUSTED_PROXIES"] == subnet
    assert stats["environment"]["TRUSTED_PROXIES"] == subnet
    assert stats["build"]["dockerfile"] == "stats-service/Dockerfile"


def test_procfile_puts_the_edge_in_front():
    procfile = (ROOT / "Procfile").read_text()
    assert re.search(r"^edge: exec jobgate-edge$", procfile, re.M)
    assert re.search(r"^stats: exec jobgate-stats$", procfile, re.M)
    assert "--bind ${GATEWAY_BIND:-127.0.0.1:8083}" in procfile


# --- the gateway's trusted-proxy middleware (pure WSGI) ---------------------------------


def call(trusted, remote_addr, **headers):
    """Run the middleware on one request; returns the environ the app saw."""
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    environ = {"REMOTE_ADDR": remote_addr, "wsgi.url_scheme": "http", "HTTP_HOST": "x"}
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    body = TrustedProxies(app, trusted)(environ, lambda *a: None)
    assert list(body) == [b""]
    return seen


LOCAL = ("127.0.0.1", "::1")


def test_trusted_peer_gives_the_last_forwarded_address():
    seen = call(LOCAL, "127.0.0.1", x_forwarded_for="203.0.113.7")
    assert seen["REMOTE_ADDR"] == "203.0.113.7"
    assert seen["werkzeug.proxy_fix.orig"]["REMOTE_ADDR"] == "127.0.0.1"
    # A client's own entries come first; only the last (the proxy's) is believed.
    seen = call(LOCAL, "127.0.0.1", x_forwarded_for="1.1.1.1, 10.0.0.1,198.51.100.2")
    assert seen["REMOTE_ADDR"] == "198.51.100.2"


def test_untrusted_peer_stays_the_client_and_loses_the_headers():
    seen = call(
        LOCAL,
        "198.51.100.9",
        x_forwarded_for="127.0.0.1",
        x_forwarded_proto="https",
        x_forwarded_host="evil.example",
        forwarded="for=1.2.3.4",
    )
    assert seen["REMOTE_ADDR"] == "198.51.100.9"
    assert seen["wsgi.url_scheme"] == "http"
    assert not any(k.startswith(("HTTP_X_FORWARDED", "HTTP_FORWARDED")) for k in seen)


def test_cidr_networks():
    trusted = ("10.1.0.0/16", "172.30.80.0/24")
    assert call(trusted, "10.1.200.3", x_forwarded_for="8.8.8.8")["REMOTE_ADDR"] == "8.8.8.8"
    assert call(trusted, "172.30.80.254", x_forwarded_for="8.8.4.4")["REMOTE_ADDR"] == "8.8.4.4"
    assert call(trusted, "10.2.0.1", x_forwarded_for="8.8.8.8")["REMOTE_ADDR"] == "10.2.0.1"
    assert call(trusted, "127.0.0.1", x_forwarded_for="8.8.8.8")["REMOTE_ADDR"] == "127.0.0.1"


def test_ipv6():
    assert call(LOCAL, "::1", x_forwarded_for="2001:db8::5")["REMOTE_ADDR"] == "2001:db8::5"
    # Written with brackets (and a port), or IPv4-mapped: one canonical form per client.
    assert call(LOCAL, "::1", x_forwarded_for="[2001:DB8::5]:443")["REMOTE_ADDR"] == "2001:db8::5"
    assert call(LOCAL, "::1", x_forwarded_for="::ffff:192.0.2.1")["REMOTE_ADDR"] == "192.0.2.1"
    # A dual-stack listener shows an IPv4 proxy as IPv4-mapped: still the trusted proxy.
    seen = call(LOCAL, "::ffff:127.0.0.1", x_forwarded_for="192.0.2.8")
    assert seen["REMOTE_ADDR"] == "192.0.2.8"
    assert call(("2001:db8:1::/48",), "2001:db8:1::9", x_forwarded_for="192.0.2.3")[
        "REMOTE_ADDR"
    ] == ("192.0.2.3")
    assert call(LOCAL, "2001:db8::66", x_forwarded_for="192.0.2.3")["REMOTE_ADDR"] == (
        "2001:db8::66"
    )


@pytest.mark.parametrize(
    "value", ["", " ", ",", "garbage", "1.2.3.4, nonsense", "999.1.1.1", "unknown", "::g"]
)
def test_empty_or_garbage_forwarded_for_leaves_the_peer(value):
    seen = call(LOCAL, "127.0.0.1", x_forwarded_for=value)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in seen


def test_forwarded_proto_from_a_trusted_peer_only():
    assert call(LOCAL, "127.0.0.1", x_forwarded_proto="https")["wsgi.url_scheme"] == "https"
    seen = call(LOCAL, "127.0.0.1", x_forwarded_proto="javascript")
    assert seen["wsgi.url_scheme"] == "http"
    # The host the client asked for is kept (the edge passes Host through).
    assert call(LOCAL, "127.0.0.1", x_forwarded_host="evil.example")["HTTP_HOST"] == "x"


def test_no_peer_address():
    assert call(LOCAL, "", x_forwarded_for="8.8.8.8")["REMOTE_ADDR"] == ""


def test_parsing():
    assert str(parse_address("1.2.3.4:8080")) == "1.2.3.4"
    assert parse_address(None) is None
    assert parse_address("[::1") is None
    assert [str(n) for n in parse_networks(["127.0.0.1", "::1", "10.0.0.0/8"])] == [
        "127.0.0.1/32",
        "::1/128",
        "10.0.0.0/8",
    ]
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        parse_networks(["edge.local"])


def test_the_gateway_installs_it():
    """create_app wraps its WSGI app: request.remote_addr (rate limits, auth-service's
    X-Forwarded-For) is the client behind a trusted edge, the peer otherwise."""
    from types import SimpleNamespace

    from flask import request

    from jobgate.config import Settings
    from jobgate_gateway import create_app

    settings = Settings(trusted_proxies=("127.0.0.1",), rate_limit_enabled=False)
    anonymous = SimpleNamespace(authenticate=lambda headers, request_id: None)
    app = create_app(settings, services=SimpleNamespace(settings=settings, authenticator=anonymous))
    assert isinstance(app.wsgi_app, TrustedProxies)
    app.add_url_rule("/_who", "who", lambda: request.remote_addr)
    client = app.test_client()
    edge = {"REMOTE_ADDR": "127.0.0.1"}
    stranger = {"REMOTE_ADDR": "192.0.2.50"}
    forged = {"X-Forwarded-For": "203.0.113.1"}
    assert client.get("/_who", environ_base=edge, headers=forged).text == "203.0.113.1"
    assert client.get("/_who", environ_base=stranger, headers=forged).text == "192.0.2.50"
    assert client.get("/_who", environ_base=edge).text == "127.0.0.1"
