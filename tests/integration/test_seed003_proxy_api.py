"""Seed 003's reverse-proxy API through the gateway, against the run's PostgreSQL: the seed's
shapes round-trip, a bad set is refused and the stored one stays, Jobgate's own paths cannot
be claimed, only admins and `proxy` credentials manage the set, and the edge's auth check
answers what nginx's auth_request understands."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg2
import pytest

from jobgate_gateway import create_app
from tests.helpers import SEED_ROUTE, SEED_UPSTREAM
from tests.integration.conftest import DEMO, make_api_key, make_login


@pytest.fixture
def published(client):
    """The seed's upstream and route, created through the API."""
    assert client.post("/api/proxy/upstreams", json=SEED_UPSTREAM, headers=DEMO).status_code == 201
    assert client.post("/api/proxy/routes", json=SEED_ROUTE, headers=DEMO).status_code == 201


def test_the_seeds_upstream_and_route_round_trip(client):
    created = client.post("/api/proxy/upstreams", json=SEED_UPSTREAM, headers=DEMO)
    assert created.status_code == 201, created.json
    assert created.headers["Location"] == "/api/proxy/upstreams/api-servers"
    assert created.json == SEED_UPSTREAM
    assert client.get("/api/proxy/upstreams/api-servers", headers=DEMO).json == SEED_UPSTREAM

    route = client.post("/api/proxy/routes", json=SEED_ROUTE, headers=DEMO)
    assert route.status_code == 201, route.json
    assert route.json == SEED_ROUTE
    assert client.get("/api/proxy/routes/route_123", headers=DEMO).json == SEED_ROUTE

    listed = client.get("/api/proxy/upstreams", headers=DEMO).json
    assert listed == {"upstreams": [SEED_UPSTREAM], "total": 1}
    routes = client.get("/api/proxy/routes", headers=DEMO).json
    assert routes == {"routes": [SEED_ROUTE], "total": 1}


def test_defaults_are_filled_in_and_a_missing_route_id_is_made(client):
    upstream = {"name": "one", "servers": [{"address": "127.0.0.1:3001"}]}
    body = client.post("/api/proxy/upstreams", json=upstream, headers=DEMO).json
    assert body["strategy"] == "round_robin"
    assert body["servers"] == [
        {"address": "127.0.0.1:3001", "weight": 1, "max_fails": 1, "fail_timeout": "10s"}
    ]
    assert body["health_check"]["enabled"] is False
    route = client.post(
        "/api/proxy/routes", json={"path": "/one", "upstream": "one"}, headers=DEMO
    ).json
    assert route["id"].startswith("route_") and route["method"] == "ANY"
    assert route["middleware"] == [] and route["retries"] == 1 and route["timeout"] == "60s"


def test_put_replaces_and_delete_removes(client, published):
    changed = {**SEED_UPSTREAM, "strategy": "least_conn", "servers": SEED_UPSTREAM["servers"][:1]}
    answer = client.put("/api/proxy/upstreams/api-servers", json=changed, headers=DEMO)
    assert answer.status_code == 200, answer.json
    assert answer.json["strategy"] == "least_conn" and len(answer.json["servers"]) == 1

    # In use by a route: 409 naming it; the route goes first, then the upstream.
    refused = client.delete("/api/proxy/upstreams/api-servers", headers=DEMO)
    assert refused.status_code == 409
    assert refused.json["error"]["details"]["routes"] == ["route_123"]
    assert client.delete("/api/proxy/routes/route_123", headers=DEMO).status_code == 204
    assert client.delete("/api/proxy/upstreams/api-servers", headers=DEMO).status_code == 204
    gone = client.get("/api/proxy/upstreams/api-servers", headers=DEMO)
    assert gone.status_code == 404
    assert gone.json["error"]["code"] == "UPSTREAM_NOT_FOUND"
    assert client.get("/api/proxy/routes/route_123", headers=DEMO).status_code == 404


def test_a_route_on_jobgates_own_paths_is_a_conflict(client, published):
    for path in ("/api/v1/*", "/api/*", "/docs", "/*"):
        answer = client.post(
            "/api/proxy/routes", json={"path": path, "upstream": "api-servers"}, headers=DEMO
        )
        assert answer.status_code == 409, (path, answer.json)
        assert answer.json["error"]["code"] == "CONFLICT"


def test_a_set_with_an_unknown_upstream_is_refused_and_the_old_one_stays(client, published):
    before = client.get("/api/proxy/config", headers=DEMO).json
    bad = {
        "upstreams": [SEED_UPSTREAM],
        "routes": [SEED_ROUTE, {"id": "r2", "path": "/other/*", "upstream": "nowhere"}],
    }
    answer = client.put("/api/proxy/config", json=bad, headers=DEMO)
    assert answer.status_code == 400
    errors = answer.json["error"]["details"]["errors"]
    assert any(e["path"].endswith(".upstream") for e in errors), errors
    after = client.get("/api/proxy/config", headers=DEMO).json
    assert after["version"] == before["version"]
    assert after["routes"] == [SEED_ROUTE]


def test_put_config_replaces_the_whole_set_and_a_get_can_be_put_back(client, published):
    current = client.get("/api/proxy/config", headers=DEMO).json
    assert set(current) >= {"version", "upstreams", "routes", "edges"}
    again = client.put("/api/proxy/config", json=current, headers=DEMO)
    assert again.status_code == 200, again.json
    assert again.json["upstreams"] == current["upstreams"]
    assert again.json["routes"] == current["routes"]

    emptied = client.put("/api/proxy/config", json={"upstreams": [], "routes": []}, headers=DEMO)
    assert emptied.status_code == 200
    assert emptied.json["version"] > current["version"]
    assert client.get("/api/proxy/upstreams", headers=DEMO).json["total"] == 0


def test_a_set_edited_from_an_old_version_is_a_conflict(client, published):
    """Two editors GET the set; the second PUT, of an edit of what changed since, is a 409
    rather than a silent undo of the first one's change."""
    first = client.get("/api/proxy/config", headers=DEMO).json
    second = client.get("/api/proxy/config", headers=DEMO).json
    first["routes"][0]["timeout"] = "10s"
    assert client.put("/api/proxy/config", json=first, headers=DEMO).status_code == 200
    second["routes"][0]["retries"] = 0
    stale = client.put("/api/proxy/config", json=second, headers=DEMO)
    assert stale.status_code == 409 and stale.json["error"]["code"] == "CONFLICT"
    now = client.get("/api/proxy/config", headers=DEMO).json
    assert stale.json["error"]["details"]["current_version"] == now["version"]
    assert now["routes"][0]["timeout"] == "10s" and now["routes"][0]["retries"] != 0
    bad = client.put("/api/proxy/config", json={**now, "version": "latest"}, headers=DEMO)
    assert bad.status_code == 400
    assert bad.json["error"]["details"]["errors"][0]["path"] == "version"


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        {"name": "bad name", "servers": [{"address": "127.0.0.1:1"}]},
        {"name": "x", "servers": [{"address": "127.0.0.1:70000"}]},
        {"name": "x", "servers": [{"address": "127.0.0.1:1", "weight": 0}]},
        {"name": "x", "servers": [{"address": "127.0.0.1:1", "fail_timeout": "500ms"}]},
        {"name": "x", "strategy": "random", "servers": [{"address": "127.0.0.1:1"}]},
        {"name": "x", "servers": []},
        {"name": "x\n", "servers": [{"address": "127.0.0.1:1"}]},  # `$` matched before it
        {"name": "x", "servers": [{"address": "\u00e4" * 100 + ":80"}]},  # IDNA refuses
    ],
)
def test_bad_upstreams_get_a_400_json_error(client, body):
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    answer = client.post("/api/proxy/upstreams", headers=DEMO, **kwargs)
    assert answer.status_code == 400, answer.json
    assert answer.json["error"]["code"] == "INVALID_REQUEST"


def test_only_admins_and_proxy_credentials_manage_the_set(client, admin):
    assert client.get("/api/proxy/config").status_code == 401
    user, _ = make_login(client, admin, "plain", ["jobs:read", "jobs:write"])
    denied = client.get("/api/proxy/upstreams", headers=user)
    assert denied.status_code == 403
    assert denied.json["error"]["code"] == "FORBIDDEN"

    operator, _ = make_login(client, admin, "operator", ["proxy"])
    assert client.get("/api/proxy/upstreams", headers=operator).status_code == 200
    key = make_api_key(client, operator, "edge-admin", scopes=["proxy"])
    upstream = {"name": "k", "servers": [{"address": "127.0.0.1:3001"}]}
    assert client.post("/api/proxy/upstreams", json=upstream, headers=key).status_code == 201
    assert client.get("/api/proxy/config", headers=admin).status_code == 200


def test_the_edges_auth_check_answers_what_auth_request_understands(client, admin):
    assert client.get("/api/proxy/auth-check").status_code == 401
    assert client.get("/api/proxy/auth-check", headers={"X-API-Key": "jg_wrong"}).status_code == 401
    good = client.get("/api/proxy/auth-check", headers=DEMO)
    assert good.status_code == 204
    assert good.headers["X-Jobgate-User-Id"]
    bearer = client.get("/api/proxy/auth-check", headers=admin)
    assert bearer.status_code == 204 and bearer.headers["X-Jobgate-Username"] == "admin"


def test_the_auth_check_is_not_rate_limited(gateway_settings):
    # nginx turns any answer but 2xx/401/403 into an HTML 500: the check must never be a 429.
    app = create_app(gateway_settings.replace(rate_limit_default="3/minute"))
    client = app.test_client()
    assert client.get("/api/proxy/upstreams", headers=DEMO).status_code == 200
    answers = [client.get("/api/proxy/auth-check", headers=DEMO).status_code for _ in range(10)]
    assert answers == [204] * 10
    limited = [client.get("/api/proxy/upstreams", headers=DEMO).status_code for _ in range(5)]
    assert 429 in limited  # the rest of the API is limited by the same setting


def test_the_version_moves_with_every_change_and_is_notified(client, database_url):
    listener = psycopg2.connect(database_url)
    listener.autocommit = True
    try:
        with listener.cursor() as cur:
            cur.execute("LISTEN jobgate_proxy")
        before = client.get("/api/proxy/config", headers=DEMO).json["version"]
        upstream = {"name": "n", "servers": [{"address": "127.0.0.1:3001"}]}
        assert client.post("/api/proxy/upstreams", json=upstream, headers=DEMO).status_code == 201
        after = client.get("/api/proxy/config", headers=DEMO).json["version"]
        assert after > before
        listener.poll()
        payloads = [n.payload for n in listener.notifies]
        assert str(after) in payloads
    finally:
        listener.close()


@pytest.mark.parametrize(
    "address",
    [
        lambda settings: "10.1.2.3:8080",  # outside PROXY_ALLOWED_UPSTREAMS (loopback)
        lambda settings: f"127.0.0.1:{urlsplit(settings.database_url).port}",  # PostgreSQL
        lambda settings: "127.0.0.1:15672",  # RabbitMQ's management console
        lambda settings: f"127.0.0.1:{urlsplit(settings.auth_service_url).port}",  # auth-service
        lambda settings: f"127.0.0.1:{settings.edge_bind.rpartition(':')[2]}",  # a loop: the edge
        lambda settings: f"localhost:{settings.gateway_bind.rpartition(':')[2]}",  # the gateway
    ],
    ids=["outside", "postgresql", "management", "auth-service", "edge", "gateway"],
)
def test_servers_outside_the_policy_are_forbidden(client, gateway_settings, address):
    address = address(gateway_settings)
    upstream = {"name": "x", "servers": [{"address": address}]}
    answer = client.post("/api/proxy/upstreams", json=upstream, headers=DEMO)
    assert answer.status_code == 403, answer.json
    assert answer.json["error"]["details"]["address"] == address
    whole = client.put(
        "/api/proxy/config", json={"upstreams": [upstream], "routes": []}, headers=DEMO
    )
    assert whole.status_code == 403
    assert client.get("/api/proxy/upstreams", headers=DEMO).json["total"] == 0


def test_the_allowed_networks_are_the_operators_choice(gateway_settings):
    app = create_app(gateway_settings.replace(proxy_allowed_upstreams=("10.1.0.0/16",)))
    upstream = {"name": "lan", "servers": [{"address": "10.1.2.3:8080"}]}
    answer = app.test_client().post("/api/proxy/upstreams", json=upstream, headers=DEMO)
    assert answer.status_code == 201, answer.json


def test_the_config_lists_the_edges_that_are_alive(client, db):
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO proxy_edges (edge_id, applied_version, applied_at, heartbeat_at) VALUES"
            " ('edge-live', 3, now(), now()),"
            " ('edge-gone', 1, now() - interval '2 hours', now() - interval '1 hour')"
        )
    edges = client.get("/api/proxy/config", headers=DEMO).json["edges"]
    assert [e["edge_id"] for e in edges] == ["edge-live"]
    assert edges[0]["applied_version"] == 3 and edges[0]["applied_at"].endswith("Z")


def test_a_stored_name_that_stopped_resolving_blocks_no_other_write(client, db, published):
    """Names are looked up when written, not again under the writers' lock: the set with
    a name that has stopped resolving (here written past the API) still takes new items,
    and the whole-set PUT still checks every name it is given."""
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE proxy_upstreams SET doc = jsonb_set(doc, '{servers,0,address}',"
            " '\"gone.invalid:3001\"')"
        )
    other = {"name": "other", "servers": [{"address": "127.0.0.1:3005"}]}
    assert client.post("/api/proxy/upstreams", json=other, headers=DEMO).status_code == 201
    route = {"id": "r-other", "path": "/other/*", "upstream": "other"}
    assert client.post("/api/proxy/routes", json=route, headers=DEMO).status_code == 201
    whole = client.get("/api/proxy/config", headers=DEMO).json
    answer = client.put("/api/proxy/config", json=whole, headers=DEMO)
    assert answer.status_code == 400
    assert "does not resolve" in answer.json["error"]["message"]
