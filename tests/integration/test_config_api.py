"""Seed 003's configuration management: `GET /api/config`, `POST /api/config/reload`,
`PUT /api/config/validate` (admins only, secrets redacted), and a reload reaching the
gateway's limiter and allow-list and a worker's, without a restart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobgate import runtime_config
from jobgate.db import Database
from tests.factories.jobs import wait_for_job
from tests.integration.conftest import ADMIN_PASSWORD, DEMO, make_api_user

pytestmark = pytest.mark.usefixtures("filespace")

SECRETS = {
    "bootstrap_admin_password": ADMIN_PASSWORD,
    "bootstrap_api_key": "key-for-the-config-test-9f2c",
    "database_password": "pg-pw-for-the-config-test",
    "redis_password": "redis-pw-for-the-config-test",
    "mgmt_password": "mgmt-pw-for-the-config-test",
    "file_key": "file-secret-for-the-config-test",
}


@pytest.fixture(autouse=True)
def no_runtime_row(db: Database) -> Iterator[None]:
    """Other tests' processes must not see this module's reloads (until tests/conftest.py
    truncates runtime_config with the other tables)."""
    yield
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM runtime_config")


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write JOBGATE_CONFIG_FILE's document (the variable points at it)."""
    path = tmp_path / "jobgate.json"
    monkeypatch.setenv("JOBGATE_CONFIG_FILE", str(path))

    def write(doc: object) -> Path:
        path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
        return path

    return write


def test_admins_only(client, admin):
    assert client.get("/api/config").status_code == 401
    assert client.post("/api/config/reload").status_code == 401
    user = make_api_user(client, admin, "cfg-reader")
    for method, path in (("get", ""), ("post", "/reload"), ("put", "/validate")):
        r = getattr(client, method)(f"/api/config{path}", headers=user, json={})
        assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN", (path, r.json)
    assert client.get("/api/config", headers=admin).status_code == 200


def test_config_endpoints_redact_secrets(gateway_app, client, admin, config_file):
    svc = gateway_app.extensions["jobgate"]
    svc.settings = svc.settings.replace(
        bootstrap_admin_password=SECRETS["bootstrap_admin_password"],
        bootstrap_api_key=SECRETS["bootstrap_api_key"],
        # Shown only: the pool and the limiter were made with the real ones.
        database_url=f"postgresql://jobgate:{SECRETS['database_password']}@127.0.0.1/jobgate",
        rate_limit_storage_uri=f"redis://:{SECRETS['redis_password']}@127.0.0.1:6399/0",
        rabbitmq_management_url=f"http://admin:{SECRETS['mgmt_password']}@127.0.0.1:15672",
    )
    config_file(
        {
            "bootstrap_api_key": SECRETS["file_key"],
            "DATABASE_URL": f"postgresql://jobgate:{SECRETS['file_key']}@db/jobgate",
            "rate_limit_default": "1000/minute",
        }
    )
    got = client.get("/api/config", headers=admin)
    assert got.status_code == 200, got.json
    reloaded = client.post("/api/config/reload", headers=admin)
    assert reloaded.status_code == 200, reloaded.json
    validated = client.put(
        "/api/config/validate",
        headers=admin,
        json={"settings": {"bootstrap_admin_password": SECRETS["file_key"]}},
    )
    assert validated.status_code == 200, validated.json
    invalid = client.put(
        "/api/config/validate",
        headers=admin,
        json={"settings": {"bootstrap_api_key": 5, "secret_thing": SECRETS["file_key"]}},
    )
    assert invalid.status_code == 400
    for r in (got, reloaded, validated, invalid):
        text = r.get_data(as_text=True)
        leaked = [name for name, value in SECRETS.items() if value in text]
        assert not leaked, (r.request.path, leaked)
    shown = got.json["settings"]
    assert shown["bootstrap_api_key"] == "********"
    assert shown["bootstrap_admin_password"] == "********"
    assert shown["rate_limit_storage_uri"] == "redis://:********@127.0.0.1:6399/0"
    assert shown["database_url"].startswith("postgresql://jobgate:********@")
    assert {"bootstrap_api_key", "database_url", "amqp_url"} <= set(got.json["redacted"])
    assert shown["jwt_private_key_file"] == svc.settings.jwt_private_key_file  # a path
    # Secrets of the file need a restart: named, never shown.
    assert {"bootstrap_api_key", "database_url"} <= set(reloaded.json["requires_restart"])


def test_get_shows_the_effective_settings(client, admin):
    r = client.get("/api/config", headers=admin)
    body = r.json
    assert body["environment"] == "test" and body["runtime_version"] == 0
    assert body["config_file"] is None and body["reloaded_at"] is None
    assert body["settings"]["rate_limit_job_create"] == "10/minute"
    assert body["settings"]["allowed_extensions"] == ["mp4", "avi", "mov"]
    assert body["sources"]["rate_limit_job_create"] == "default"
    assert "container_image_allowlist" in body["reloadable"]
    assert "database_url" not in body["reloadable"]
    assert body["proxy"]["upstreams"] == 0 and isinstance(body["proxy"]["version"], int)


def test_reload_applies_limits_and_allow_lists_without_a_restart(
    gateway_app, client, admin, config_file, db
):
    config_file(
        {
            "RATE_LIMIT_STATUS": "4/minute",
            "container_image_allowlist": ["alpine*"],
            "job_max_attempts": 9,
        }
    )
    r = client.post("/api/config/reload", headers=admin)
    assert r.status_code == 200, r.json
    body = r.json
    assert body["reloaded"] is True and body["version"] > 0
    assert body["changed"]["rate_limit_status"] == {"from": "600/minute", "to": "4/minute"}
    assert body["changed"]["container_image_allowlist"] == {"from": [], "to": ["alpine*"]}
    assert body["requires_restart"] == ["job_max_attempts"]
    assert isinstance(body["proxy_version"], int)
    # The row every process follows, and what GET reports.
    with db.transaction() as conn:
        assert runtime_config.load(conn).version == body["version"]
    got = client.get("/api/config", headers=admin).json
    assert got["runtime_version"] == body["version"] and got["reloaded_by"] == "admin"
    assert got["settings"]["rate_limit_status"] == "4/minute"
    assert got["sources"]["rate_limit_status"] == "file"
    assert got["settings"]["job_max_attempts"] != 9 and got["requires_restart"] == [
        "job_max_attempts"
    ]
    # The limiter counts with the new limit (GET /api/config is under the status limit).
    statuses = [client.get("/api/config", headers=admin) for _ in range(5)]
    assert 429 in [s.status_code for s in statuses]
    assert statuses[0].headers["X-RateLimit-Limit"] == "4"
    # The gateway's allow-list.
    r = client.post("/api/jobs", json={"image": "python:3.11-slim"}, headers=DEMO)
    assert r.status_code == 403 and r.json["error"]["details"]["allowed"] == ["alpine*"]
    # Dropping the keys from the file brings the defaults back.
    config_file({})
    r = client.post("/api/config/reload", headers=admin)
    assert r.json["changed"]["rate_limit_status"] == {"from": "4/minute", "to": "600/minute"}
    assert gateway_app.extensions["jobgate"].settings.container_image_allowlist == ()


@pytest.fixture
def login_limit_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    """RATE_LIMIT_LOGIN exported before the gateway starts (ask for it before `client`)."""
    monkeypatch.setenv("RATE_LIMIT_LOGIN", "77/minute")


def test_the_environment_wins_over_the_file(login_limit_exported, config_file, client, admin):
    config_file({"rate_limit_login": "1/minute"})
    r = client.post("/api/config/reload", headers=admin)
    assert r.status_code == 200, r.json
    assert "rate_limit_login" not in r.json["changed"]
    assert r.json["overridden_by_environment"] == ["rate_limit_login"]
    got = client.get("/api/config", headers=admin).json
    assert got["sources"]["rate_limit_login"] == "environment"


def test_a_bad_file_changes_nothing_and_lists_every_problem(client, admin, config_file, db):
    config_file({"rate_limit_status": "4/minute"})
    assert client.post("/api/config/reload", headers=admin).status_code == 200
    before = client.get("/api/config", headers=admin).json
    config_file({"nope": 1, "rate_limit_status": "often", "job_max_attempts": "x"})
    r = client.post("/api/config/reload", headers=admin)
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_REQUEST"
    paths = sorted(e["path"] for e in r.json["error"]["details"]["errors"])
    assert paths == ["job_max_attempts", "nope", "rate_limit_status"]
    # A network that is none would make every proxy write fail later: refused now.
    config_file({"proxy_allowed_upstreams": ["bogus"]})
    r = client.post("/api/config/reload", headers=admin)
    assert r.status_code == 400, r.json
    assert r.json["error"]["details"]["errors"][0]["path"] == "proxy_allowed_upstreams"
    after = client.get("/api/config", headers=admin).json
    assert after["runtime_version"] == before["runtime_version"]
    assert after["settings"]["rate_limit_status"] == "4/minute"
    config_file("{not json")
    r = client.post("/api/config/reload", headers=admin)
    assert r.status_code == 400 and "not valid" in r.json["error"]["message"]


def test_validate_applies_nothing(client, admin):
    r = client.put(
        "/api/config/validate",
        headers=admin,
        json={
            "settings": {"rate_limit_default": "5/second", "worker_concurrency": 3},
            "proxy": {
                "upstreams": [{"name": "web", "servers": [{"address": "127.0.0.1:9001"}]}],
                "routes": [{"path": "/web/*", "upstream": "web"}],
            },
        },
    )
    assert r.status_code == 200, r.json
    assert r.json["valid"] is True
    assert r.json["changes"] == {"rate_limit_default": {"from": "1200/minute", "to": "5/second"}}
    assert r.json["requires_restart"] == ["worker_concurrency"]
    assert r.json["proxy"]["upstreams"] == 1 and r.json["proxy"]["routes"] == 1
    got = client.get("/api/config", headers=admin).json
    assert got["settings"]["rate_limit_default"] == "1200/minute"
    assert got["runtime_version"] == 0 and got["proxy"]["upstreams"] == 0


def test_validate_reports_every_problem(client, admin):
    r = client.put(
        "/api/config/validate",
        headers=admin,
        json={
            "settings": {"rate_limit_default": "lots", "unknown_key": 1},
            "proxy": {"upstreams": [], "routes": [{"path": "/x/*", "upstream": "missing"}]},
            "extra": True,
        },
    )
    assert r.status_code == 400 and r.json["error"]["code"] == "INVALID_REQUEST"
    paths = [e["path"] for e in r.json["error"]["details"]["errors"]]
    assert "extra" in paths and "settings.unknown_key" in paths
    assert "settings.rate_limit_default" in paths
    assert any(p.startswith("proxy.") for p in paths), paths
    r = client.put("/api/config/validate", headers=admin, data="[]")
    assert r.status_code == 400


def test_validate_checks_servers_as_the_proxy_api_would(client, admin, gateway_settings):
    """Servers PUT /api/proxy/config would refuse (403) are problems of the dry run too,
    checked under the proposed settings."""

    def validate(body: dict) -> list[dict]:
        r = client.put("/api/config/validate", headers=admin, json=body)
        return [] if r.status_code == 200 else r.json["error"]["details"]["errors"]

    def proxy(*addresses: str) -> dict:
        servers = [{"address": a} for a in addresses]
        return {"upstreams": [{"name": "web", "servers": servers}], "routes": []}

    edge_port = gateway_settings.edge_bind.rpartition(":")[2]
    errors = validate({"proxy": proxy("127.0.0.1:9001", f"127.0.0.1:{edge_port}")})
    assert [e["path"] for e in errors] == ["proxy.upstreams[0].servers[1].address"]
    assert "where Jobgate itself listens" in errors[0]["message"]
    assert validate({"proxy": proxy("127.0.0.1:9001")}) == []
    narrowed = {"proxy_allowed_upstreams": ["10.0.0.0/8"]}
    errors = validate({"settings": narrowed, "proxy": proxy("127.0.0.1:9001")})
    assert [e["path"] for e in errors] == ["proxy.upstreams[0].servers[0].address"]
    assert "PROXY_ALLOWED_UPSTREAMS" in errors[0]["message"]


def test_workers_use_reloaded_allow_lists_for_jobs_claimed_after(
    client, admin, db, start_worker, config_file
):
    start_worker("task", task_http_allowed_hosts=("api.example.com",))
    body = {
        "kind": "task",
        "name": "call",
        "handler": "http",
        "payload": {"url": "http://127.0.0.1:9/"},
        "max_attempts": 1,
    }
    r = client.post("/api/v1/jobs", json=body, headers=DEMO)
    done = wait_for_job(db, r.json["id"], {"completed", "failed"}, timeout=20)
    assert done["error"] == "host '127.0.0.1' is not in TASK_HTTP_ALLOWED_HOSTS"
    config_file({"task_http_allowed_hosts": ["127.0.0.1"]})
    assert client.post("/api/config/reload", headers=admin).status_code == 200
    time.sleep(runtime_config.CHECK_INTERVAL_S + 0.2)  # each process looks once a second
    r = client.post("/api/v1/jobs", json=body, headers=DEMO)
    done = wait_for_job(db, r.json["id"], {"completed", "failed"}, timeout=20)
    # Allowed now: the call itself fails (nothing listens on port 9).
    assert "TASK_HTTP_ALLOWED_HOSTS" not in (done["error"] or ""), done["error"]


def test_the_containers_rpc_reads_the_reloaded_allow_list(settings, db):
    """The container workers' RPC server (POST /api/containers) has a holder of its own."""
    from jobgate.errors import Forbidden
    from jobgate_worker.kinds.container_api import ContainersApi

    api = ContainersApi(settings, None, "test")  # refused before the engine is asked
    create = {"owner_id": "u1", "body": {"name": "c1", "image": "python:3.11-slim"}}
    with db.transaction() as conn:
        runtime_config.store(conn, {"container_image_allowlist": ("alpine*",)}, "test")
    assert api.runtime.refresh(force=True)
    with pytest.raises(Forbidden, match="is not allowed"):
        api.create(create)
    api.runtime.database.close()
