"""`GET /api/v1/admin/queues` against the real RabbitMQ management API (the management plugin
on 127.0.0.1:15672), for the run's own vhost: the queue depths and the dead-letter count an
operator sees on the dashboard; admins only; a clear 503 when the management API is away."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pytest
from flask.testing import FlaskClient

from jobgate.broker import DEAD_QUEUE
from jobgate.config import Settings
from jobgate_gateway import create_app
from tests.helpers import DEMO_KEY
from tests.integration.conftest import make_api_key, make_api_user

URL = "/api/v1/admin/queues"


@pytest.fixture
def channel(amqp_url: str) -> Iterator[Any]:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        yield conn.channel()
    finally:
        conn.close()


def queues_when(client: FlaskClient, headers: dict[str, str], ready) -> dict[str, Any]:
    """The route's answer once `ready(body)` holds: the management API samples its counts
    every few seconds (RabbitMQ's collect_statistics_interval)."""
    deadline = time.monotonic() + 30
    while True:
        r = client.get(URL, headers=headers)
        assert r.status_code == 200, r.json
        if ready(r.json) or time.monotonic() > deadline:
            return r.json
        time.sleep(0.5)


@pytest.mark.slow
def test_an_admin_reads_the_depths_of_the_services_vhost(client, admin, amqp_url, channel):
    channel.queue_purge(DEAD_QUEUE)
    extra = f"test.admin-queues.{uuid.uuid4().hex[:8]}"
    channel.queue_declare(extra, auto_delete=False)
    try:
        for _ in range(3):
            channel.basic_publish("", DEAD_QUEUE, b'{"job_id": "dead"}')
        for _ in range(2):
            channel.basic_publish("", extra, b"x")

        def counted(body: dict[str, Any]) -> bool:
            by_name = {q["name"]: q for q in body["queues"]}
            return (
                body["dead_letter"]["messages"] == 3
                and by_name.get(extra, {}).get("messages_ready") == 2
            )

        body = queues_when(client, admin, counted)
    finally:
        channel.queue_purge(DEAD_QUEUE)
        channel.queue_delete(extra)

    assert body["vhost"] == unquote(urlsplit(amqp_url).path[1:])
    assert body["dead_letter"] == {"queue": DEAD_QUEUE, "messages": 3}
    by_name = {q["name"]: q for q in body["queues"]}
    assert by_name[extra].pop("state") in ("running", None)  # None until first sampled
    assert by_name[extra] == {
        "name": extra,
        "role": "other",
        "kind": None,
        "messages": 2,
        "messages_ready": 2,
        "messages_unacknowledged": 0,
        "consumers": 0,
    }
    cache = by_name["jobgate.jobs.cache"]
    assert cache["role"] == "work" and cache["kind"] == "cache"
    assert by_name[DEAD_QUEUE]["role"] == "dead_letter"
    roles = [q["role"] for q in body["queues"]]
    assert roles == sorted(roles, key=["work", "dead_letter", "retry", "rpc", "other"].index)
    assert body["totals"]["messages_ready"] == sum(q["messages_ready"] for q in body["queues"])
    assert body["totals"]["messages_ready"] >= 5


def test_users_and_narrow_admin_keys_are_refused_and_anonymous_callers_unauthorized(client, admin):
    user = make_api_user(client, admin, "queue-reader")
    r = client.get(URL, headers=user)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    # An admin's key acts as admin only with the `admin` scope.
    narrow = make_api_key(client, admin, "narrow", scopes=["jobs:read"])
    assert client.get(URL, headers=narrow).status_code == 403
    broad = make_api_key(client, admin, "broad", scopes=["jobs:read", "admin"])
    assert client.get(URL, headers=broad).status_code == 200
    r = client.get(URL)
    assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHORIZED"
    assert client.get(URL, headers={"X-API-Key": DEMO_KEY}).status_code in (200, 403)


@pytest.mark.parametrize(
    ("management_url", "reason"),
    [
        ("http://127.0.0.1:9", "ConnectionError"),  # nothing listens on the discard port
        ("http://nobody:wrong-password@127.0.0.1:15672", None),  # refused credentials
    ],
)
def test_an_unreachable_or_refusing_management_api_is_a_clear_503(
    gateway_settings: Settings, admin, management_url: str, reason: str | None
):
    app = create_app(gateway_settings.replace(rabbitmq_management_url=management_url))
    try:
        r = app.test_client().get(URL, headers=admin)
    finally:
        app.extensions["jobgate"].publisher.close()
    assert r.status_code == 503
    error = r.json["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE" and error["request_id"]
    assert "RabbitMQ management API" in error["message"]
    assert error["details"]["management_url"] == management_url.replace(
        "nobody:wrong-password@", ""
    )
    assert "wrong-password" not in r.get_data(as_text=True)
    if reason:
        assert error["details"]["reason"] == reason
    else:
        assert error["details"]["status"] == 401


def test_the_route_is_documented_with_its_schema(client):
    spec = client.get("/openapi.json").json
    operation = spec["paths"][URL]["get"]
    assert set(operation["responses"]) >= {"200", "403", "503"}
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/Queues")


def test_the_management_api_defaults_to_the_brokers_host_and_credentials():
    from jobgate.config import management_api

    api = Settings.from_env(environ={"AMQP_URL": "amqp://jg:s%40cret@rabbit:5672/jobgate"})
    assert api.rabbitmq_management.base_url == "http://rabbit:15672"
    assert (api.rabbitmq_management.username, api.rabbitmq_management.password) == (
        "jg",
        "s@cret",
    )
    assert api.rabbitmq_management.vhost == "jobgate"
    assert Settings.from_env(environ={}).rabbitmq_management.vhost == "/"  # %2F
    tls = management_api("amqps://u:p@broker/v")
    assert tls.base_url == "https://broker:15671"
    given = management_api("amqp://u:p@broker/v%2Fx", "http://ops:pw@mgmt:8080/rabbit/")
    assert (given.base_url, given.username, given.password) == (
        "http://mgmt:8080/rabbit",
        "ops",
        "pw",
    )
    assert given.vhost == "v/x"
    assert management_api("amqp://u:p@broker/v", "http://mgmt").username == "u"
