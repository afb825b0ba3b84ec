"""The proxy set's validation (jobgate.proxy.model) and the reserved paths: every accepted
set renders into a configuration nginx 1.22 takes, every refusal names the field, and no
route can take a path Jobgate serves itself."""

from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from jobgate.config import Settings
from jobgate.errors import Conflict, InvalidRequest
from jobgate.proxy import model, policy
from jobgate.proxy.model import (
    parse_duration,
    validate_route,
    validate_set,
    validate_upstream,
)
from jobgate.proxy.reserved import RESERVED_EXACT, RESERVED_PREFIXES, reserved_conflict
from tests.helpers import SEED_ROUTE, SEED_UPSTREAM

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "jobgate.conf.template"


def errors_of(exc: pytest.ExceptionInfo) -> dict[str, str]:
    assert exc.value.status == 400 and exc.value.code == "INVALID_REQUEST"
    return {e["path"]: e["message"] for e in exc.value.details["errors"]}


def upstream(**changes) -> dict:
    return {**SEED_UPSTREAM, **changes}


def server(**changes) -> dict:
    return {"servers": [{"address": "127.0.0.1:3001", **changes}]}


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("500ms", 0.5), ("2m", 120), ("1h", 3600), ("0s", 0)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "1.5s", " 30s", "30S", "1d", "s", "", "1m30s", 30, None])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# --- upstreams --------------------------------------------------------------------------------


def test_the_seed_upstream_is_valid_and_kept_as_given():
    assert validate_upstream(SEED_UPSTREAM) == SEED_UPSTREAM


def test_defaults_are_filled_in():
    assert validate_upstream({"name": "web", "servers": [{"address": "127.0.0.1:80"}]}) == {
        "name": "web",
        "strategy": "round_robin",
        "health_check": {
            "enabled": False,
            "path": "/health",
            "interval": "30s",
            "timeout": "5s",
            "healthy_threshold": 2,
            "unhealthy_threshold": 3,
        },
        "servers": [
            {"address": "127.0.0.1:80", "weight": 1, "max_fails": 1, "fail_timeout": "10s"}
        ],
    }


def test_normalised_forms():
    got = validate_upstream(
        {
            "name": "Web_1",
            "strategy": "least_conn",
            "health_check": {"interval": 10, "timeout": "0500ms"},
            "servers": [
                {"address": "[0:0:0:0:0:0:0:1]:08080", "fail_timeout": 30},
                {"address": "LOCALHOST:81", "fail_timeout": "2000ms"},
            ],
        }
    )
    assert got["health_check"]["interval"] == "10s"  # a bare number is seconds
    assert got["health_check"]["timeout"] == "500ms"
    assert [s["address"] for s in got["servers"]] == ["[::1]:8080", "localhost:81"]
    assert [s["fail_timeout"] for s in got["servers"]] == ["30s", "2000ms"]  # whole seconds


@pytest.mark.parametrize("strategy", ["round_robin", "least_conn", "ip_hash"])
def test_strategies(strategy):
    assert validate_upstream(upstream(strategy=strategy))["strategy"] == strategy


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        (upstream(name="-web"), "name"),
        (upstream(name="a" * 64), "name"),
        (upstream(name="we b"), "name"),
        (upstream(name=None), "name"),
        (upstream(strategy="random"), "strategy"),
        (upstream(servers=[]), "servers"),
        (upstream(servers=[{"address": f"127.0.0.1:{p}"} for p in range(1, 66)]), "servers"),
        (upstream(servers="127.0.0.1:80"), "servers"),
        (upstream(**server(weight=0)), "servers[0].weight"),
        (upstream(**server(weight=1001)), "servers[0].weight"),
        (upstream(**server(weight=True)), "servers[0].weight"),
        (upstream(**server(weight="2")), "servers[0].weight"),
        (upstream(**server(max_fails=-1)), "servers[0].max_fails"),
        (upstream(**server(max_fails=101)), "servers[0].max_fails"),
        (upstream(**server(fail_timeout="500ms")), "servers[0].fail_timeout"),
        (upstream(**server(fail_timeout="0s")), "servers[0].fail_timeout"),
        (upstream(**server(fail_timeout="2h")), "servers[0].fail_timeout"),
        (upstream(**server(backup=True)), "servers[0].backup"),
        (upstream(health_check={"interval": "500ms"}), "health_check.interval"),
        (upstream(health_check={"interval": "2h"}), "health_check.interval"),
        (upstream(health_check={"interval": "5s", "timeout": "5s"}), "health_check.timeout"),
        (upstream(health_check={"path": "health"}), "health_check.path"),
        (upstream(health_check={"path": "/he alth"}), "health_check.path"),
        (upstream(health_check={"enabled": "yes"}), "health_check.enabled"),
        (upstream(health_check={"healthy_threshold": 0}), "health_check.healthy_threshold"),
        (upstream(health_check={"unhealthy_threshold": 11}), "health_check.unhealthy_threshold"),
        (upstream(health_check={"method": "GET"}), "health_check.method"),
        (upstream(colour="blue"), "colour"),
    ],
)
def test_bad_upstreams(doc, path):
    with pytest.raises(InvalidRequest) as exc:
        validate_upstream(doc)
    assert path in errors_of(exc), exc.value.details


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "127.0.0.256:80",
        "127.000.0.1:80",
        "[::1]",
        "[::g]:80",
        "::1:80",
        "http://127.0.0.1:80",
        "127.0.0.1:80/x",
        "exa_mple.com:80",
        "no-such-host.invalid:80",  # nginx would refuse the whole configuration
        "",
        80,
    ],
)
def test_bad_addresses(address):
    with pytest.raises(InvalidRequest) as exc:
        validate_upstream(upstream(servers=[{"address": address}]))
    assert "servers[0].address" in errors_of(exc)


def test_duplicate_servers_and_every_problem_at_once():
    with pytest.raises(InvalidRequest) as exc:
        validate_upstream(
            {
                "name": "bad name",
                "servers": [
                    {"address": "127.0.0.1:80"},
                    {"address": "127.0.0.1:080", "weight": 0},
                ],
            }
        )
    assert errors_of(exc) == {
        "name": "must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$",
        "servers[1].address": "127.0.0.1:80 is listed twice",
        "servers[1].weight": "must be an integer from 1 to 1000",
    }
    assert exc.value.message.startswith("name: must match")
    assert "(and 2 more)" in exc.value.message


# --- routes -----------------------------------------------------------------------------------


def test_the_seed_route_is_valid_and_kept_as_given():
    assert validate_route(SEED_ROUTE) == SEED_ROUTE


def test_route_defaults_and_a_new_id():
    got = validate_route({"path": "/app", "upstream": "web"})
    assert re.fullmatch(r"route_[0-9a-f]{12}", got.pop("id"))
    assert got == {
        "path": "/app",
        "method": "ANY",
        "upstream": "web",
        "middleware": [],
        "headers": {},
        "timeout": "60s",
        "retries": 1,
    }
    assert (
        validate_route({"path": "/app", "upstream": "web"})["id"]
        != validate_route({"path": "/app", "upstream": "web"})["id"]
    )


def test_methods_are_upper_cased():
    assert validate_route({**SEED_ROUTE, "method": "post"})["method"] == "POST"


@pytest.mark.parametrize(
    "path", ["/", "/app", "/app/", "/app/*", "/app*", "/a.b/c~d/@x:y+z,w=v!-_", "/uploads/*"]
)
def test_good_paths(path):
    assert validate_route({**SEED_ROUTE, "path": path})["path"] == path


@pytest.mark.parametrize(
    "path",
    [
        "app",
        "",
        "/a*b",
        "/a**",
        "/a b",
        "/a%20b",
        "/a?x=1",
        '/a"b',
        "/a$b",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/a/..",
        "/a/.*",
        "/" + "a" * 256,
        None,
    ],
)
def test_bad_paths(path):
    with pytest.raises(InvalidRequest) as exc:
        validate_route({**SEED_ROUTE, "path": path})
    assert "path" in errors_of(exc)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"id": "route 1"}, "id"),
        ({"id": "x" * 65}, "id"),
        ({"id": 5}, "id"),
        ({"method": "TRACE"}, "method"),
        ({"method": None}, "method"),
        ({"upstream": ""}, "upstream"),
        ({"middleware": ["auth", "cors"]}, "middleware[1]"),
        ({"middleware": ["auth", "auth"]}, "middleware[1]"),
        ({"middleware": "auth"}, "middleware"),
        ({"timeout": "500ms"}, "timeout"),
        ({"timeout": "2h"}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"retries": 11}, "retries"),
        ({"headers": {"Bad Name": "x"}}, "headers.Bad Name"),
        ({"headers": {"X_Under": "x"}}, "headers.X_Under"),
        ({"headers": {"Connection": "close"}}, "headers.Connection"),
        ({"headers": {"content-length": "1"}}, "headers.content-length"),
        ({"headers": {"Transfer-Encoding": "x"}}, "headers.Transfer-Encoding"),
        ({"headers": {"X-Jobgate-User-Id": "1"}}, "headers.X-Jobgate-User-Id"),
        ({"headers": {"X-A": "a", "x-a": "b"}}, "headers.x-a"),
        ({"headers": {"X-A": 'say "hi"'}}, "headers.X-A"),
        ({"headers": {"X-A": "back\\slash"}}, "headers.X-A"),
        ({"headers": {"X-A": "new\nline"}}, "headers.X-A"),
        ({"headers": {"X-A": "caf\u00e9"}}, "headers.X-A"),
        ({"headers": {"X-A": "x" * 1025}}, "headers.X-A"),
        ({"headers": {"host": ""}}, "headers.host"),
        ({"headers": {"X-A": 5}}, "headers.X-A"),
        ({"headers": {"X-A": "costs $5"}}, "headers.X-A"),
        ({"headers": {"X-A": "$hostname"}}, "headers.X-A"),  # not $host
        ({"headers": {"X-A": "${host}"}}, "headers.X-A"),
        ({"headers": {"X-A": "$jobgate_user_id"}}, "headers.X-A"),
        ({"headers": {"X-A": "$http_x_api_key"}}, "headers.X-A"),  # credentials stay here
        ({"headers": {"X-A": "$http_authorization"}}, "headers.X-A"),
        ({"headers": {f"X-H{i}": "x" for i in range(33)}}, "headers"),
        ({"name": "extra"}, "name"),
    ],
)
def test_bad_routes(changes, path):
    with pytest.raises(InvalidRequest) as exc:
        validate_route({**SEED_ROUTE, **changes})
    assert path in errors_of(exc), exc.value.details


def test_header_values_with_allowed_variables():
    headers = {
        "X-Client": "$remote_addr:$server_port",
        "X-Orig": "$scheme://$host$request_uri",
        "X-Path": "$uri?$args",
        "X-Id": "edge-$request_id",
        "X-Agent": "$http_user_agent",
        "Authorization": "Bearer upstream-own-token",  # the upstream's own credentials
        "Host": "app.example",
        "X-Remove": "",  # empty: the header is removed
        "X-Plain": "a; b {c} 'd' #e",
    }
    assert validate_route({**SEED_ROUTE, "headers": headers})["headers"] == headers


# --- reserved paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reserved"),
    [
        ("/api/*", "/api/"),  # the seed's own example
        ("/api/v1/*", "/api/"),
        ("/api/proxy/x", "/api/"),
        ("/api", "/api/"),
        ("/ws/x", "/ws/"),
        ("/*", "/api/"),
        ("/h*", "/health/"),
        ("/health", "/health"),
        ("/docs*", "/docs/"),
        ("/docs", "/docs"),
        ("/openapi.json", "/openapi.json"),
        ("/upload", "/upload"),
        ("/upl*", "/upload"),
        ("/_edge/error/502", "/_edge/"),
        ("/_jobgate/auth", "/_jobgate/"),
        ("/dashboard/*", "/dashboard/"),
    ],
)
def test_reserved_paths_conflict(path, reserved):
    assert reserved_conflict(path) == reserved
    with pytest.raises(Conflict) as exc:
        validate_route({**SEED_ROUTE, "path": path})
    assert exc.value.status == 409
    assert exc.value.details["path"] == path and exc.value.details["reserved"] == reserved


@pytest.mark.parametrize("path", ["/", "/uploads/*", "/app", "/apix/*", "/healthz", "/x/api/*"])
def test_free_paths(path):
    assert reserved_conflict(path) is None


def _sample(rule: str) -> str:
    """A concrete URL of a Flask/Starlette rule: each converter becomes `x`."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "x", rule)


def test_every_gateway_route_is_reserved():
    """A rule the gateway adds later fails here until reserved.py covers it."""
    from jobgate.config import Settings
    from jobgate_gateway import create_app

    settings = Settings.from_env(environ={}, env="test")
    app = create_app(settings, services=SimpleNamespace(settings=settings, authenticator=None))
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert len(rules) > 50
    uncovered = [rule for rule in sorted(rules) if reserved_conflict(_sample(rule)) is None]
    assert uncovered == []
    # A prefix route on any rule's first segment is refused too.
    for rule in rules:
        first = "/" + rule.split("/")[1]
        assert reserved_conflict(first.split("<")[0] + "*") is not None, rule


def test_every_stats_service_route_is_reserved():
    from jobgate_stats.app import ROUTES

    assert [r.path for r in ROUTES if reserved_conflict(_sample(r.path)) is None] == []


def test_every_edge_location_is_reserved():
    locations = re.findall(
        r"^\s*location\s+(?:=|\^~|~)?\s*(\S+)\s*\{", TEMPLATE.read_text(), flags=re.M
    )
    samples = [
        _sample(loc.lstrip("^").replace("[^/]+", "x").rstrip("$"))
        for loc in locations
        if loc != "/"
    ]
    assert len(samples) > 10
    assert [s for s in samples if reserved_conflict(s) is None] == []


def test_reserved_lists_are_well_formed():
    assert all(p.startswith("/") and p.endswith("/") for p in RESERVED_PREFIXES)
    assert all(p.startswith("/") and not p.endswith("/") for p in RESERVED_EXACT)


# --- the whole set ----------------------------------------------------------------------------


def test_set_is_normalised_and_sorted():
    got = validate_set(
        {
            "upstreams": [
                upstream(name="zeta"),
                {"name": "alpha", "servers": [{"address": "127.0.0.1:1"}]},
            ],
            "routes": [
                {"id": "r2", "path": "/b", "upstream": "alpha"},
                {"id": "r1", "path": "/a/*", "upstream": "zeta", "method": "get"},
            ],
        }
    )
    assert [u["name"] for u in got["upstreams"]] == ["alpha", "zeta"]
    assert [r["id"] for r in got["routes"]] == ["r1", "r2"]
    assert got["routes"][0]["method"] == "GET" and got["routes"][1]["retries"] == 1
    assert validate_set(got) == got  # idempotent: GET's answer can be PUT back


def test_empty_set_and_read_only_keys_of_get():
    assert validate_set({"upstreams": [], "routes": []}) == {"upstreams": [], "routes": []}
    body = {"upstreams": [], "routes": [], "version": 3, "updated_at": "x", "edges": []}
    assert validate_set(body) == {"upstreams": [], "routes": []}


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"routes": []}, "upstreams"),
        ({"upstreams": []}, "routes"),
        ({"upstreams": {}, "routes": []}, "upstreams"),
        ({"upstreams": [], "routes": [], "extra": 1}, "extra"),
        ({"upstreams": ["x"], "routes": []}, "upstreams[0]"),
    ],
)
def test_bad_set_shapes(doc, path):
    with pytest.raises(InvalidRequest) as exc:
        validate_set(doc)
    assert path in errors_of(exc)


def test_unknown_upstream_names_the_route():
    with pytest.raises(InvalidRequest) as exc:
        validate_set(
            {
                "upstreams": [upstream(name="web")],
                "routes": [
                    {"id": "a", "path": "/a", "upstream": "web"},
                    {"id": "b", "path": "/b", "upstream": "Web"},
                    {"id": "c", "path": "/c", "upstream": "nope"},
                ],
            }
        )
    errors = errors_of(exc)
    assert errors["routes[1].upstream"].startswith("unknown upstream 'Web'")
    assert "did you mean 'web'" in errors["routes[1].upstream"]
    assert errors["routes[2].upstream"] == "unknown upstream 'nope'"


def test_errors_come_before_conflicts():
    with pytest.raises(InvalidRequest):
        validate_set(
            {
                "upstreams": [upstream(name="web")],
                "routes": [
                    {"id": "a", "path": "/api/*", "upstream": "web"},
                    {"id": "b", "path": "/b", "upstream": "web", "retries": 99},
                ],
            }
        )


@pytest.mark.parametrize(
    ("doc", "details"),
    [
        (
            {"upstreams": [upstream(name="web"), upstream(name="WEB")], "routes": []},
            {"upstream": "WEB", "existing": "web"},
        ),
        (
            {
                "upstreams": [upstream(name="web")],
                "routes": [
                    {"id": "a", "path": "/x", "upstream": "web"},
                    {"id": "a", "path": "/y", "upstream": "web"},
                ],
            },
            {"id": "a"},
        ),
        (
            {
                "upstreams": [upstream(name="web")],
                "routes": [
                    {"id": "a", "path": "/x/*", "method": "GET", "upstream": "web"},
                    {"id": "b", "path": "/x/*", "method": "get", "upstream": "web"},
                ],
            },
            {"path": "/x/*", "method": "GET", "routes": ["a", "b"]},
        ),
        (
            {
                "upstreams": [upstream(name="web")],
                "routes": [{"id": "a", "path": "/api/v1/*", "upstream": "web"}],
            },
            {"path": "/api/v1/*", "reserved": "/api/", "field": "routes[0].path"},
        ),
    ],
)
def test_conflicts(doc, details):
    with pytest.raises(Conflict) as exc:
        validate_set(doc)
    assert exc.value.status == 409 and exc.value.code == "CONFLICT"
    assert exc.value.details == details


def test_one_path_may_have_several_methods():
    got = validate_set(
        {
            "upstreams": [upstream(name="web")],
            "routes": [
                {"id": "a", "path": "/x", "method": "GET", "upstream": "web"},
                {"id": "b", "path": "/x", "method": "POST", "upstream": "web"},
                {"id": "c", "path": "/x", "method": "ANY", "upstream": "web"},
                {"id": "d", "path": "/x/*", "method": "GET", "upstream": "web"},
            ],
        }
    )
    assert len(got["routes"]) == 4


# --- any JSON value anywhere is a 400, never a crash (found by the OpenAPI fuzz test) -------

JUNK = ({}, [], 1.5, None, True, -1, "", "x" * 3000, [{}], {"a": {}}, 10**20)


def _paths(doc, prefix=()):
    yield prefix
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        yield from _paths(value, (*prefix, key))


def _replaced(doc, path, value):
    if not path:
        return value
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def test_any_value_in_any_field_is_a_client_error():
    whole = {"upstreams": [SEED_UPSTREAM], "routes": [SEED_ROUTE]}
    cases = [
        (model.validate_set, whole),
        (model.validate_upstream, whole["upstreams"][0]),
        (model.validate_route, whole["routes"][0]),
    ]
    for validate, doc in cases:
        validate(doc)  # the document itself is valid
        for path in list(_paths(doc)):
            for junk in JUNK:
                with contextlib.suppress(InvalidRequest, Conflict):
                    validate(_replaced(doc, path, junk))


@pytest.mark.parametrize(
    "change",
    [
        lambda u, r: u.update(name="api-servers\n"),
        lambda u, r: u["health_check"].update(path="/health\n"),
        lambda u, r: r.update(id="route_123\n"),
        lambda u, r: r.update(path="/apps/*\n"),
        lambda u, r: r.update(headers={"Content-Length\n": "0"}),
        lambda u, r: r.update(timeout="30s\n"),
    ],
    ids=["upstream name", "health path", "route id", "route path", "header name", "duration"],
)
def test_a_trailing_newline_is_refused_everywhere(change):
    """Python's `$` matches before a final newline: every pattern must match the whole
    value, or a newline reaches the rendered nginx file (a header name nginx then reads as
    Content-Length, a name that makes `nginx -t` refuse every later set)."""
    upstream, route = copy.deepcopy(SEED_UPSTREAM), copy.deepcopy(SEED_ROUTE)
    change(upstream, route)
    with pytest.raises(InvalidRequest):
        validate_set({"upstreams": [upstream], "routes": [route]})


@pytest.mark.parametrize(
    ("bind", "address", "refused"),
    [
        ("127.0.0.1:9080", "127.0.0.1:9080", True),
        ("127.0.0.1:9080", "localhost:9080", True),
        ("127.0.0.1:9080", "127.0.0.2:9080", False),  # nothing of ours listens there
        ("0.0.0.0:9080", "127.0.0.2:9080", True),  # every address: all of loopback
        ("[::]:9080", "[::1]:9080", True),
        ("9080", "127.0.0.3:9080", True),  # a bare port listens everywhere
        ("127.0.0.1:9080", "127.0.0.1:9081", False),
    ],
)
def test_an_upstream_never_points_at_the_edge_itself(bind, address, refused):
    """A request the edge sends to its own listener comes back to it, again and again."""
    settings = Settings(edge_bind=bind)
    upstreams = [{"name": "loop", "servers": [{"address": address}]}]
    found = [(at, refusal.message) for at, refusal in policy.refusals(upstreams, settings)]
    if refused:
        assert found == [("[0].servers[0].address", found[0][1])]
        assert "where Jobgate itself listens" in found[0][1]
    else:
        assert found == []
