"""Webhooks end to end: the API (/api/v1/webhooks: the secret shown once, the 400s, the
address policy, another user's webhook and deliveries as a 404 — an admin's view included —,
the cap on active webhooks), the dispatcher (`jobgate.webhooks`: one delivery per event and
matching webhook, the most specific type, owners kept apart, two dispatchers never
duplicating one, a deleted job's events still delivered, big results left out, batches cut
by bytes), the retention sweep of `job_events`, and real `webhook` workers delivering to a
local receiver that verifies the Standard Webhooks signature with the `standardwebhooks`
package: retried after a 500, dead-lettered after the last attempt, refused addresses failed
without retries, a trickling receiver timed out and a slow delivery cancelled.

Job status changes are driven with the workers' own SQL transitions (`attempts.claim_job`,
`finish_job`), so every event comes from the database's triggers as in production."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from standardwebhooks import Webhook

from jobgate import db, kinds, outbox, timefmt, webhooks
from jobgate.broker import DEAD_QUEUE, Publisher
from jobgate.db import Database
from jobgate.errors import Conflict
from jobgate.jobs import attempts
from jobgate.jobs import events as job_events
from jobgate_gateway import timefmt as gateway_timefmt
from jobgate_worker.errors import Cancelled
from jobgate_worker.housekeeping import Housekeeping
from jobgate_worker.kinds.webhook import Dispatcher, post
from tests.factories.jobs import make_job, set_job_columns, wait_for_job
from tests.factories.users import make_user
from tests.integration.conftest import DEMO, make_api_key, make_api_user
from tests.webhook_receiver import Receiver

TEST_WORKER = "test-driver"
FAST = {
    "webhook_allow_private": True,
    "webhook_backoff_seconds": 0.1,  # whole seconds: every retry waits 1 s
    "webhook_dispatch_interval_s": 0.2,
    "webhook_timeout_s": 5.0,
}


@pytest.fixture
def gateway_settings(gateway_settings):
    """The gateway as tests run it: local receivers allowed (WEBHOOK_ALLOW_PRIVATE), and a
    creation limit no test reaches."""
    return gateway_settings.replace(webhook_allow_private=True, rate_limit_job_create="1000/minute")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


# --- helpers ------------------------------------------------------------------------------------


def create(client, headers=DEMO, **body):
    return client.post("/api/v1/webhooks", json=body, headers=headers)


def run_job(database, owner_id, *, kind="cache", params=None, status="completed", **finish):
    """A job that is created, started and finished (each change an event)."""
    job = make_job(database, owner_id=owner_id, kind=kind, params=params)
    with database.transaction() as conn:
        assert attempts.claim_job(conn, job_id=str(job["id"]), worker_id=TEST_WORKER, lease_s=30)
    with database.transaction() as conn:
        attempts.finish_job(
            conn, job_id=str(job["id"]), worker_id=TEST_WORKER, status=status, **finish
        )
    return job


def deliveries_of(database, webhook_id) -> list[dict[str, Any]]:
    with database.transaction() as conn:
        return db.fetch_all(
            conn,
            "SELECT * FROM jobs WHERE kind = 'webhook' AND params ->> 'webhook_id' = %s"
            " ORDER BY (params ->> 'event_id')::bigint",
            (str(webhook_id),),
        )


def wait_for(check, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def verified(secret: str, request: dict[str, Any]) -> dict[str, Any]:
    """The body, after `standardwebhooks` checked its signature as a receiver would."""
    return Webhook(secret).verify(request["body"], request["headers"])


def dead_letters(amqp_url: str) -> list[dict[str, Any]]:
    """The bodies waiting in the dead-letter queue (peeked: left there for operators)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()
        bodies = []
        while True:
            method, _props, body = channel.basic_get(DEAD_QUEUE, auto_ack=False)
            if method is None:
                return bodies
            bodies.append(json.loads(body))
    finally:
        conn.close()  # unacked: they go back to the queue


# --- the API ------------------------------------------------------------------------------------


def test_create_shows_the_secret_once_then_read_change_rotate_and_delete(client, receiver):
    r = create(client, url=receiver.url, events=["job.completed", "task.*", "job.completed"])
    assert r.status_code == 201, r.json
    made = r.json
    secret = made.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    assert made["events"] == ["job.completed", "task.*"]  # duplicates dropped
    assert (made["url"], made["active"], made["description"]) == (receiver.url, True, None)
    url = f"/api/v1/webhooks/{made['id']}"

    assert client.get(url, headers=DEMO).json == made  # no secret
    listed = client.get("/api/v1/webhooks", headers=DEMO).json
    assert listed == {"webhooks": [made], "total": 1, "limit": 50, "offset": 0}

    r = client.patch(
        url, json={"events": ["*"], "description": "ops", "active": False}, headers=DEMO
    )
    assert r.status_code == 200, r.json
    assert (r.json["events"], r.json["description"], r.json["active"]) == (["*"], "ops", False)
    assert "secret" not in r.json and r.json["url"] == receiver.url

    rotated = client.post(f"{url}/rotate-secret", headers=DEMO)
    assert rotated.status_code == 200 and rotated.json["secret"].startswith("whsec_")
    assert rotated.json["secret"] != secret

    assert client.get(f"{url}/deliveries", headers=DEMO).json == {
        "deliveries": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }
    r = client.delete(url, headers=DEMO)
    assert r.status_code == 204 and r.data == b""
    assert client.get(url, headers=DEMO).status_code == 404
    assert client.get("/api/v1/webhooks", headers=DEMO).json["total"] == 0


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"url": "ftp://example.com/x"}, "Only http and https"),
        ({"url": "not a url"}, "must not contain spaces"),
        ({"url": "http:///nohost"}, "no host"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "Credentials in the URL"),
        ({"url": "http://127.0.0.1:99999/x"}, "Not a valid URL"),
        ({"url": "http://no-such-host.invalid/x"}, "Cannot resolve host"),
        ({"url": ""}, "Request validation failed"),
        ({"events": ["job.exploded"]}, "Unknown event type(s): job.exploded"),
        ({"events": ["job.pending"]}, "Unknown event type(s): job.pending"),
        ({"events": []}, "Request validation failed"),
        ({"events": "job.completed"}, "Request validation failed"),
        ({"active": "sometimes"}, "Request validation failed"),
        ({"secret": "whsec_mine"}, "Request validation failed"),
    ],
)
def test_bad_webhooks_are_400(client, receiver, body, text):
    r = create(client, **{"url": receiver.url, "events": ["job.completed"], **body})
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "INVALID_REQUEST"
    assert text in r.json["error"]["message"] or text in str(r.json["error"]["details"])


def test_unknown_event_types_are_listed_with_the_known_ones(client, receiver):
    r = create(client, url=receiver.url, events=["job.completed", "job.exploded"])
    details = r.json["error"]["details"]
    assert details["unknown"] == ["job.exploded"]
    assert "task.completed" in details["known"] and details["patterns"] == ["*", "job.*", "task.*"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://10.1.2.3/x",
        "http://192.168.0.10/x",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/x",
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
        "https://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fe80::1]/x",
        "http://[fd00::1]/x",
        "http://2130706433/x",  # 127.0.0.1 as one number
        # Ranges Python 3.11's `is_global` lets through, and other special-purpose ones.
        "http://192.0.0.8/x",
        "http://[fec0::1]/x",
        "http://192.0.2.1/x",
        "http://198.18.0.1/x",
        "http://[2001:db8::1]/x",
        "http://[64:ff9b::a00:1]/x",  # NAT64 to 10.0.0.1
        "http://[::808:808]/x",  # IPv4-compatible (deprecated)
    ],
)
def test_private_targets_are_refused_unless_allowed(client, url):
    svc = client.application.extensions["jobgate"]
    svc.settings = svc.settings.replace(webhook_allow_private=False)
    r = create(client, url=url, events=["job.completed"])
    assert r.status_code == 400, r.json
    assert "non-public address" in r.json["error"]["message"], r.json
    # The same check guards a change of URL.
    svc.settings = svc.settings.replace(webhook_allow_private=True)
    made = create(client, url="http://127.0.0.1:9/x", events=["job.completed"]).json
    svc.settings = svc.settings.replace(webhook_allow_private=False)
    r = client.patch(f"/api/v1/webhooks/{made['id']}", json={"url": url}, headers=DEMO)
    assert r.status_code == 400 and "non-public" in r.json["error"]["message"]


def test_the_address_policy_does_not_depend_on_the_interpreters_tables():
    for network, _name in webhooks.DENIED_NETWORKS:
        for address in (network.network_address, network.broadcast_address):
            assert webhooks.refusal(str(address)), address
    assert "site-local" in webhooks.refusal("fec0::1")
    assert "IETF protocol assignments" in webhooks.refusal("192.0.0.8")
    assert "10.0.0.1 is private" in webhooks.refusal("::ffff:10.0.0.1")
    assert "10.0.0.1 is private" in webhooks.refusal("2002:a00:1::1")  # 6to4
    # Public addresses, also reached through IPv4-mapped, 6to4 and NAT64 addresses.
    for public in ("8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"):
        assert webhooks.refusal(public) is None, public
    assert webhooks.refusal("64:ff9b::808:808") is None  # NAT64: judged by 8.8.8.8


def test_an_owner_has_at_most_webhook_max_per_owner_active_webhooks(client, receiver):
    svc = client.application.extensions["jobgate"]
    svc.settings = svc.settings.replace(webhook_max_per_owner=2)
    first = create(client, url=receiver.url, events=["*"]).json
    create(client, url=receiver.url, events=["*"])
    r = create(client, url=receiver.url, events=["*"])
    assert r.status_code == 409 and r.json["error"]["code"] == "CONFLICT", r.json
    assert "active webhooks" in r.json["error"]["message"]
    assert r.json["error"]["details"] == {"active": 2, "limit": 2}
    # An inactive one makes no deliveries: it can be made, but not switched on past the cap.
    idle = create(client, url=receiver.url, events=["*"], active=False)
    assert idle.status_code == 201
    idle_url = f"/api/v1/webhooks/{idle.json['id']}"
    r = client.patch(idle_url, json={"active": True}, headers=DEMO)
    assert r.status_code == 409 and r.json["error"]["code"] == "CONFLICT"
    assert client.patch(idle_url, json={"description": "later"}, headers=DEMO).status_code == 200
    first_url = f"/api/v1/webhooks/{first['id']}"
    assert client.patch(first_url, json={"active": True}, headers=DEMO).status_code == 200
    assert client.patch(first_url, json={"active": False}, headers=DEMO).status_code == 200
    assert client.patch(idle_url, json={"active": True}, headers=DEMO).status_code == 200
    assert client.get("/api/v1/webhooks", headers=DEMO).json["total"] == 3


def test_two_creations_at_once_cannot_both_take_the_last_place(db):
    owner = str(make_user(db)["id"])
    outcome: list[Any] = []

    def second() -> None:
        try:
            with db.transaction() as conn:
                webhooks.check_room(conn, owner_id=owner, limit=1)
                outcome.append("room")
        except Conflict as exc:
            outcome.append(exc)

    with db.transaction() as conn:
        webhooks.check_room(conn, owner_id=owner, limit=1)
        webhooks.create(conn, owner_id=owner, url="http://x.test/", events=["*"])
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # it waits for this transaction
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict)


def test_an_admin_cannot_reach_another_users_deliveries_through_the_jobs_routes(
    client, admin, db, receiver
):
    alice = make_api_user(client, admin, "alice")
    hook = create(client, headers=alice, url=receiver.url, events=["*"]).json
    alice_id = hook["owner_id"]
    delivery = make_job(
        db,
        owner_id=alice_id,
        kind="webhook",
        params={"webhook_id": hook["id"], "event_type": "job.failed", "payload": {"x": 1}},
    )
    set_job_columns(db, delivery, status="failed")
    cache = make_job(db, owner_id=alice_id)
    url = f"/api/v1/jobs/{delivery['id']}"
    assert client.get(url, headers=admin).status_code == 404
    assert client.get(f"{url}/logs", headers=admin).status_code == 404
    assert client.post(f"{url}/retry", headers=admin).status_code == 404
    assert client.post(f"{url}/cancel", headers=admin).status_code == 404
    assert client.delete(url, headers=admin).status_code == 404
    assert client.get("/api/v1/jobs?kind=webhook", headers=admin).json == []
    r = client.get(f"/api/v1/jobs?kind=webhook&owner={alice_id}", headers=admin)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    # Everything else of hers stays an admin's to see.
    assert client.get(f"/api/v1/jobs/{cache['id']}", headers=admin).status_code == 200
    listed = client.get(f"/api/v1/jobs?owner={alice_id}", headers=admin).json
    assert [j["id"] for j in listed] == [str(cache["id"])]
    assert str(cache["id"]) in [j["id"] for j in client.get("/api/v1/jobs", headers=admin).json]
    # And the delivery is hers.
    assert client.get(url, headers=alice).status_code == 200
    mine = client.get("/api/v1/jobs?kind=webhook", headers=alice).json
    assert [j["id"] for j in mine] == [str(delivery["id"])]
    r = client.get(f"/api/v1/jobs?owner={alice_id}", headers=make_api_user(client, admin, "bob"))
    assert r.status_code == 403


def test_one_time_format_for_the_platform():
    assert gateway_timefmt.iso_ms is timefmt.iso_ms
    assert not hasattr(webhooks, "iso_utc")
    assert timefmt.now_iso_ms().endswith("Z") and len(timefmt.now_iso_ms()) == 24


def test_another_users_webhook_is_a_404_even_for_an_admin(client, admin, receiver):
    alice = make_api_user(client, admin, "alice")
    mine = create(client, headers=alice, url=receiver.url, events=["*"]).json
    url = f"/api/v1/webhooks/{mine['id']}"
    for headers in (make_api_user(client, admin, "mallory"), admin):
        assert client.get(url, headers=headers).status_code == 404
        assert client.patch(url, json={"active": False}, headers=headers).status_code == 404
        assert client.delete(url, headers=headers).status_code == 404
        assert client.get(f"{url}/deliveries", headers=headers).status_code == 404
        assert client.post(f"{url}/rotate-secret", headers=headers).status_code == 404
        assert client.get("/api/v1/webhooks", headers=headers).json["total"] == 0
    assert client.get(url, headers=alice).status_code == 200
    assert client.get("/api/v1/webhooks/not-a-uuid", headers=alice).status_code == 400
    assert client.get("/api/v1/webhooks").status_code == 401


def test_scopes(client, admin, receiver):
    alice = make_api_user(client, admin, "alice")
    reader = make_api_key(client, alice, "reader", scopes=["jobs:read"])
    r = create(client, headers=reader, url=receiver.url, events=["*"])
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    assert client.get("/api/v1/webhooks", headers=reader).status_code == 200


def test_deliveries_are_internal_jobs(client, db):
    r = client.post("/api/v1/jobs", json={"kind": "webhook"}, headers=DEMO)
    assert r.status_code == 400 and "Unsupported job kind 'webhook'" in r.json["error"]["message"]
    assert "webhook" not in r.json["error"]["details"]["supported"]
    assert "cache" in r.json["error"]["details"]["supported"]
    body = {"name": "n", "kind": "webhook", "interval_minutes": 60}
    r = client.post("/api/v1/schedules", json=body, headers=DEMO)
    assert r.status_code == 400 and "cannot be scheduled" in r.json["error"]["message"]
    spec = client.get("/openapi.json").json
    request_schemas = spec["components"]["schemas"]
    assert "CacheJobRequest" in request_schemas and "WebhookJobRequest" not in request_schemas
    assert "/api/v1/webhooks/{webhook_id}/deliveries" in spec["paths"]

    owner_id = create(client, url="http://127.0.0.1:9/", events=["*"]).json["owner_id"]
    make_job(db, owner_id=owner_id, kind="cache")
    delivery = make_job(
        db,
        owner_id=owner_id,
        kind="webhook",
        params={"webhook_id": "6bb4629b-1487-477c-96fe-b762d82a099b", "event_type": "job.failed"},
    )
    listed = client.get("/api/v1/jobs", headers=DEMO)
    assert [j["kind"] for j in listed.json] == ["cache"] and listed.headers["X-Total-Count"] == "1"
    asked = client.get("/api/v1/jobs?kind=webhook", headers=DEMO).json
    assert [j["id"] for j in asked] == [str(delivery["id"])]
    assert asked[0]["event_type"] == "job.failed"


# --- the dispatcher -------------------------------------------------------------------------------


def _hook(database, owner_id, events, **fields):
    with database.transaction() as conn:
        return webhooks.create(
            conn, owner_id=str(owner_id), url="http://x.test/", events=events, **fields
        )


def _dispatch(database, settings, limit=500):
    with database.transaction() as conn:
        return webhooks.dispatch_batch(conn, settings=settings, app_id="test", limit=limit)


def test_one_delivery_per_event_and_webhook_with_the_most_specific_type(db, settings):
    owner = make_user(db)
    both = _hook(db, owner["id"], ["job.completed", "task.*"])
    jobs_only = _hook(db, owner["id"], ["job.*"])
    _hook(db, owner["id"], ["*"], active=False)
    task = run_job(
        db,
        owner["id"],
        kind="task",
        params={"name": "Process Data", "payload": {"n": 1}},
        result={"n": 1},
    )
    other = make_user(db)  # no webhook: its events are not even queued
    run_job(db, other["id"])

    batch = _dispatch(db, settings)
    assert batch.taken == 3 and len(batch.outbox_ids) == 6
    assert _dispatch(db, settings).taken == 0

    got = [
        (d["params"]["event_type"], d["params"]["payload"]) for d in deliveries_of(db, both["id"])
    ]
    assert [t for t, _ in got] == ["task.created", "task.started", "task.completed"]
    completed = got[-1][1]
    assert completed["type"] == "task.completed" and completed["timestamp"].endswith("Z")
    data = completed["data"]
    assert data["job_id"] == str(task["id"]) and data["kind"] == "task"
    assert (data["status"], data["attempt"], data["error"]) == ("completed", 1, None)
    assert data["name"] == "Process Data" and data["result"] == {"n": 1}
    assert "result" not in got[0][1]["data"]

    types = [d["params"]["event_type"] for d in deliveries_of(db, jobs_only["id"])]
    assert types == ["job.created", "job.started", "job.completed"]
    for delivery in deliveries_of(db, jobs_only["id"]):
        params = delivery["params"]
        assert params["message_id"] == webhooks.message_id(params["event_id"], jobs_only["id"])
        assert str(delivery["owner_id"]) == str(owner["id"])
        assert (delivery["max_attempts"], delivery["backoff"]) == (
            settings.webhook_max_attempts,
            "exponential",
        )


def test_handed_back_jobs_and_later_webhooks_make_no_delivery(db, settings):
    owner = make_user(db)
    early = _hook(db, owner["id"], ["*"])
    job = make_job(db, owner_id=owner["id"])
    with db.transaction() as conn:
        attempts.claim_job(conn, job_id=str(job["id"]), worker_id=TEST_WORKER, lease_s=30)
        attempts.hand_back(conn, job_id=str(job["id"]), worker_id=TEST_WORKER)  # job.pending
    _hook(db, owner["id"], ["*"])  # made after the events: gets none of them
    batch = _dispatch(db, settings)
    assert batch.taken == 3 and len(batch.outbox_ids) == 2
    types = [d["params"]["event_type"] for d in deliveries_of(db, early["id"])]
    assert types == ["job.created", "job.started"]


def test_two_dispatchers_never_make_one_delivery_twice(db, settings):
    owner = make_user(db)
    hook = _hook(db, owner["id"], ["*"])
    for _ in range(20):
        run_job(db, owner["id"])  # 3 events each
    # One dispatcher holds a batch while the other runs: it skips those rows.
    with db.transaction() as first:
        held = webhooks.dispatch_batch(first, settings=settings, app_id="a", limit=10)
        assert held.taken == 10
        assert _dispatch(db, settings).taken == 50
    # And many at once, racing for what is left of new events.
    for _ in range(20):
        run_job(db, owner["id"])
    barrier = threading.Barrier(4)
    taken: list[int] = []

    def drain() -> None:
        barrier.wait()
        while True:
            batch = _dispatch(db, settings, limit=3)
            taken.append(batch.taken)
            if batch.taken == 0:
                return

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(taken) == 60
    events = [d["params"]["event_id"] for d in deliveries_of(db, hook["id"])]
    assert len(events) == 120 and len(set(events)) == 120


def _events_of(database, owner_id) -> list[dict[str, Any]]:
    with database.transaction() as conn:
        return db.fetch_all(
            conn, "SELECT * FROM job_events WHERE owner_id = %s ORDER BY id", (str(owner_id),)
        )


def test_a_deleted_jobs_events_are_still_delivered(client, db, settings):
    hook = create(client, url="http://127.0.0.1:9/", events=["*"]).json
    owner = hook["owner_id"]
    task = run_job(
        db, owner, kind="task", params={"name": "Process Data", "payload": {}}, result={"n": 1}
    )
    waiting = make_job(db, owner_id=owner)
    # Deleted right after completing, and while pending (which writes its `cancelled`).
    for job in (task, waiting):
        assert client.delete(f"/api/v1/jobs/{job['id']}", headers=DEMO).status_code == 204
    snapshot = _events_of(db, owner)[2]["data"]
    assert snapshot["status"] == "completed" and snapshot["name"] == "Process Data"
    assert "job_created_at" in snapshot

    batch = _dispatch(db, settings)
    assert batch.taken == 5 and len(batch.outbox_ids) == 5
    sent = [d["params"]["payload"] for d in deliveries_of(db, hook["id"])]
    assert [p["type"] for p in sent] == [
        "task.created",
        "task.started",
        "task.completed",
        "job.created",
        "job.cancelled",
    ]
    completed = sent[2]["data"]
    assert completed["job_id"] == str(task["id"]) and completed["status"] == "completed"
    assert completed["name"] == "Process Data" and completed["attempt"] == 1
    assert completed["created_at"] == timefmt.iso_ms(task["created_at"])
    assert "result" not in completed  # the job is gone: its result with it
    cancelled = sent[4]["data"]
    assert (cancelled["job_id"], cancelled["status"]) == (str(waiting["id"]), "cancelled")
    assert cancelled["created_at"] == timefmt.iso_ms(waiting["created_at"])


def _age_events(database, age: str) -> None:
    with database.transaction() as conn:
        db.execute(conn, "UPDATE job_events SET created_at = now() - %s::interval", (age,))


def test_deliveries_write_no_job_events(db, settings):
    owner = make_user(db)
    hook = _hook(db, owner["id"], ["*"])
    run_job(db, owner["id"])
    assert len(_dispatch(db, settings).outbox_ids) == 3
    delivery = deliveries_of(db, hook["id"])[0]
    with db.transaction() as conn:
        assert attempts.claim_job(
            conn, job_id=str(delivery["id"]), worker_id=TEST_WORKER, lease_s=30
        )
    with db.transaction() as conn:
        attempts.finish_job(
            conn, job_id=str(delivery["id"]), worker_id=TEST_WORKER, status="completed"
        )
    assert [e["kind"] for e in _events_of(db, owner["id"])] == ["cache"] * 3
    assert _dispatch(db, settings).taken == 0


def test_big_results_are_left_out_and_a_batch_stops_at_its_byte_budget(db, settings):
    owner = make_user(db)
    hook = _hook(db, owner["id"], ["job.completed"])
    blob = {"blob": "x" * 50_000}  # 50,012 bytes of JSON: 51,036 with the payload's share
    for _ in range(5):
        run_job(db, owner["id"], result=blob)
    big = run_job(db, owner["id"], result={"blob": "x" * 70_000})  # over 64 KiB

    with db.transaction() as conn:
        first = webhooks.dispatch_batch(conn, settings=settings, app_id="t", max_bytes=160_000)
    assert len(first.outbox_ids) == 3 and first.more  # a fourth result would pass the budget
    with db.transaction() as conn:
        second = webhooks.dispatch_batch(conn, settings=settings, app_id="t", max_bytes=160_000)
    assert len(second.outbox_ids) == 3 and not second.more
    assert first.taken + second.taken == 18

    sent = [d["params"]["payload"]["data"] for d in deliveries_of(db, hook["id"])]
    assert [d.get("result") for d in sent[:5]] == [blob] * 5
    assert sent[5]["job_id"] == str(big["id"]) and sent[5]["result_truncated"] is True
    assert "result" not in sent[5]
    assert all("result_truncated" not in d for d in sent[:5])
    assert len(json.dumps(deliveries_of(db, hook["id"])[5]["params"])) < 2000


def test_the_dispatcher_drains_batches_cut_by_bytes(db, worker_settings):
    owner = make_user(db)
    hook = _hook(db, owner["id"], ["job.completed"])
    for _ in range(70):  # 70 x 61 KiB: more than one batch's 4 MiB
        run_job(db, owner["id"], result={"blob": "x" * 60_000})
    broker_down = worker_settings.replace(amqp_url="amqp://guest:guest@127.0.0.1:1/%2F")
    assert Dispatcher(broker_down, db).dispatch() == 70
    assert len(deliveries_of(db, hook["id"])) == 70


def test_old_events_are_swept_in_batches_but_queued_ones_stay(db, settings, worker_settings):
    quiet = make_user(db)  # no webhook: its events are never queued
    for _ in range(2):
        run_job(db, quiet["id"])
    watched = make_user(db)
    _hook(db, watched["id"], ["*"])
    run_job(db, watched["id"])  # 3 events queued for the dispatcher
    _age_events(db, "31 days")
    run_job(db, quiet["id"])  # 3 recent events

    assert job_events.sweep(db, retention_days=30, batch=2, max_batches=2) == 4
    assert job_events.sweep(db, retention_days=30, batch=2) == 2
    assert len(_events_of(db, quiet["id"])) == 3  # the recent ones
    assert len(_events_of(db, watched["id"])) == 3  # old, but not delivered yet
    assert _dispatch(db, settings).taken == 3
    assert job_events.sweep(db, retention_days=30) == 3
    assert _events_of(db, watched["id"]) == []

    # Every worker's housekeeping round sweeps (JOB_EVENTS_RETENTION_DAYS).
    _age_events(db, "2 days")
    publisher = Publisher(worker_settings.amqp_url, app_id="test")
    try:
        housekeeping = Housekeeping(
            kinds.get("webhook"),
            database=db,
            settings=worker_settings.replace(job_events_retention_days=1),
            publisher=publisher,
            app_id="test",
        )
        housekeeping.round()
    finally:
        publisher.close()
    assert _events_of(db, quiet["id"]) == []


# --- real workers ---------------------------------------------------------------------------------


def test_delivered_signed_and_retried_after_a_500(client, db, start_worker, receiver):
    receiver.script = [500]  # the first attempt fails, the retry succeeds
    r = create(client, url=receiver.url, events=["job.completed", "job.failed"])
    made = r.json
    start_worker("webhook", webhook_max_attempts=3, **FAST)
    start_worker("webhook", webhook_max_attempts=3, **FAST)  # two dispatchers
    job = run_job(db, made["owner_id"], result={"files": 3})

    [delivery] = wait_for(lambda: deliveries_of(db, made["id"]), what="a delivery")
    done = wait_for_job(db, delivery["id"], {"completed"})
    assert done["attempt"] == 2 and done["result"]["status_code"] == 200
    sent = receiver.received()
    assert len(sent) == 2 and all(s["path"] == "/hooks" for s in sent)
    bodies = [verified(made["secret"], s) for s in sent]
    assert bodies[0] == bodies[1]
    assert bodies[0]["type"] == "job.completed"
    assert bodies[0]["data"]["job_id"] == str(job["id"])
    assert bodies[0]["data"]["result"] == {"files": 3}
    ids = {s["headers"]["webhook-id"] for s in sent}
    assert ids == {webhooks.message_id(delivery["params"]["event_id"], made["id"])}
    assert sent[0]["headers"]["user-agent"] == "Jobgate-Webhooks/1"
    assert sent[0]["headers"]["content-type"] == "application/json"
    with pytest.raises(Exception, match="signature"):
        Webhook(webhooks.new_secret()).verify(sent[0]["body"], sent[0]["headers"])

    listed = client.get(f"/api/v1/webhooks/{made['id']}/deliveries", headers=DEMO).json
    assert listed["total"] == 1
    item = listed["deliveries"][0]
    assert (item["id"], item["status"], item["attempts"], item["max_attempts"]) == (
        str(delivery["id"]),
        "completed",
        2,
        3,
    )
    assert (item["last_status_code"], item["last_error"], item["next_retry_at"]) == (
        200,
        None,
        None,
    )
    assert item["event_type"] == "job.completed" and item["job_id"] == str(job["id"])
    assert item["message_id"] == sent[0]["headers"]["webhook-id"]
    assert item["completed_at"] and item["created_at"]
    assert (
        client.get(f"/api/v1/webhooks/{made['id']}/deliveries?status=failed", headers=DEMO).json[
            "total"
        ]
        == 0
    )
    # The job's other events (created, started) were not subscribed: exactly one delivery.
    time.sleep(0.5)
    assert len(deliveries_of(db, made["id"])) == 1 and len(receiver.received()) == 2


def test_dead_lettered_after_the_last_attempt_then_retried_by_hand(
    client, db, start_worker, receiver, amqp_url
):
    receiver.default = 500
    made = create(client, url=receiver.url, events=["job.failed"]).json
    start_worker("webhook", webhook_max_attempts=2, **FAST)
    run_job(db, made["owner_id"], status="failed", error="disk on fire")

    [delivery] = wait_for(lambda: deliveries_of(db, made["id"]), what="a delivery")
    failed = wait_for_job(db, delivery["id"], {"failed"})
    assert failed["attempt"] == 2 and "HTTP 500" in failed["error"]
    assert len(receiver.received()) == 2
    body = verified(made["secret"], receiver.received()[0])
    assert body["type"] == "job.failed" and body["data"]["error"] == "disk on fire"
    wait_for(
        lambda: any(m.get("job_id") == str(delivery["id"]) for m in dead_letters(amqp_url)),
        what="the delivery's message in the dead-letter queue",
    )
    url = f"/api/v1/webhooks/{made['id']}/deliveries"
    item = client.get(url, headers=DEMO).json["deliveries"][0]
    assert (item["status"], item["attempts"], item["last_status_code"]) == ("failed", 2, 500)
    assert item["last_error"].startswith("HTTP 500")

    receiver.default = 200
    r = client.post(f"{url}/{delivery['id']}/retry", headers=DEMO)
    assert r.status_code == 200 and r.json["status"] == "pending", r.json
    wait_for_job(db, delivery["id"], {"completed"})
    assert len(receiver.received()) == 3
    r = client.post(f"{url}/{delivery['id']}/retry", headers=DEMO)
    assert r.status_code == 409 and r.json["error"]["code"] == "CONFLICT"
    assert r.json["error"]["message"].startswith("Only failed or cancelled deliveries")


def test_users_get_their_own_events_only(client, admin, db, start_worker, receiver):
    alice = make_api_user(client, admin, "alice")
    bob = make_api_user(client, admin, "bob")
    hers = create(client, headers=alice, url=receiver.url + "/alice", events=["*"]).json
    his = create(client, headers=bob, url=receiver.url + "/bob", events=["job.completed"]).json
    # A dispatcher that would look only every minute: the database's NOTIFY wakes it.
    start_worker("webhook", **{**FAST, "webhook_dispatch_interval_s": 60})
    first = run_job(db, his["owner_id"])
    [delivery] = wait_for(lambda: deliveries_of(db, his["id"]), what="bob's delivery")
    wait_for_job(db, delivery["id"], {"completed"})
    # By now the dispatcher's first round is long over: this one comes from a NOTIFY.
    second = run_job(db, his["owner_id"])
    deliveries = wait_for(
        lambda: (
            [d for d in deliveries_of(db, his["id"]) if d["status"] == "completed"][1:]
            and deliveries_of(db, his["id"])
        ),
        what="bob's second delivery",
    )
    sent = receiver.received()
    assert [s["path"] for s in sent] == ["/hooks/bob", "/hooks/bob"]
    assert [verified(his["secret"], s)["data"]["job_id"] for s in sent] == [
        str(first["id"]),
        str(second["id"]),
    ]
    assert len(deliveries) == 2 and deliveries_of(db, hers["id"]) == []
    r = client.get(f"/api/v1/webhooks/{hers['id']}/deliveries", headers=alice)
    assert r.json["total"] == 0
    r = client.get(f"/api/v1/webhooks/{his['id']}/deliveries", headers=alice)
    assert r.status_code == 404


def test_refused_address_fails_at_once_and_deleted_webhooks_are_skipped(
    client, db, settings, start_worker, receiver
):
    made = create(client, url=receiver.url, events=["job.completed"]).json
    gone = create(client, url=receiver.url, events=["job.completed"]).json
    run_job(db, made["owner_id"])
    assert len(_dispatch(db, settings).outbox_ids) == 2  # queued, published by the relay
    assert client.delete(f"/api/v1/webhooks/{gone['id']}", headers=DEMO).status_code == 204
    start_worker("webhook", **{**FAST, "webhook_allow_private": False})

    [refused] = deliveries_of(db, made["id"])
    refused = wait_for_job(db, refused["id"], {"failed"})
    assert refused["attempt"] == 1 and "non-public" in refused["error"]  # no retries
    assert refused["max_attempts"] == settings.webhook_max_attempts > 1
    item = client.get(f"/api/v1/webhooks/{made['id']}/deliveries", headers=DEMO).json
    assert item["deliveries"][0]["last_status_code"] is None
    assert "non-public" in item["deliveries"][0]["last_error"]
    [skipped] = deliveries_of(db, gone["id"])
    skipped = wait_for_job(db, skipped["id"], {"completed"})
    assert skipped["result"] == {"skipped": "webhook deleted"}
    assert receiver.received() == []


def test_the_dispatcher_outlives_outages(db, worker_settings):
    owner = make_user(db)
    hook = _hook(db, owner["id"], ["job.*"])
    run_job(db, owner["id"])
    broker_down = worker_settings.replace(amqp_url="amqp://guest:guest@127.0.0.1:1/%2F")
    # The broker is away: the deliveries are made all the same, their messages wait in the
    # outbox for the workers' relay.
    assert Dispatcher(broker_down, db).dispatch() == 3
    with db.transaction() as conn:
        assert outbox.pending_count(conn) == 3
    assert len(deliveries_of(db, hook["id"])) == 3
    # The database is away: the loop logs, backs off and carries on until stopped.
    stop = threading.Event()
    unreachable = Database("postgresql://jobgate:jobgate@127.0.0.1:1/jobgate")
    thread = threading.Thread(target=Dispatcher(broker_down, unreachable).run, args=(stop,))
    thread.start()
    time.sleep(1.5)
    assert thread.is_alive()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_a_trickling_receiver_cannot_hold_a_delivery_past_the_timeout(receiver):
    receiver.trickle_s = 0.2  # a 40-byte answer over 8 s, each byte well within any read timeout
    target = webhooks.check_target(receiver.url, allow_private=True)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        post(target, b"{}", {}, timeout=1.0)
    assert 0.9 < time.monotonic() - started < 1.8

    # The attempt's cancel check runs while it waits.
    def check() -> None:
        if time.monotonic() - started > 0.3:
            raise Cancelled

    started = time.monotonic()
    with pytest.raises(Cancelled):
        post(target, b"{}", {}, timeout=30.0, check=check)
    assert time.monotonic() - started < 1.2


def test_a_slow_receiver_fails_the_attempt_within_about_the_timeout(
    client, db, start_worker, receiver
):
    receiver.trickle_s = 0.2
    made = create(client, url=receiver.url, events=["job.completed"]).json
    start_worker("webhook", webhook_max_attempts=1, **{**FAST, "webhook_timeout_s": 1.0})
    run_job(db, made["owner_id"])
    [delivery] = wait_for(lambda: deliveries_of(db, made["id"]), what="a delivery")
    failed = wait_for_job(db, delivery["id"], {"failed"})
    assert "timed out" in failed["error"], failed["error"]
    assert (failed["completed_at"] - failed["started_at"]).total_seconds() < 2.5


def test_cancel_stops_a_delivery_waiting_on_a_slow_receiver(client, db, start_worker, receiver):
    receiver.trickle_s = 0.2
    made = create(client, url=receiver.url, events=["job.completed"]).json
    start_worker("webhook", **{**FAST, "webhook_timeout_s": 30.0})
    run_job(db, made["owner_id"])
    [delivery] = wait_for(lambda: deliveries_of(db, made["id"]), what="a delivery")
    wait_for(lambda: receiver.received(), what="the delivery to reach the receiver")
    asked = time.monotonic()
    r = client.post(f"/api/v1/jobs/{delivery['id']}/cancel", headers=DEMO)
    assert r.status_code == 200, r.json
    wait_for_job(db, delivery["id"], {"cancelled"}, timeout=10)
    assert time.monotonic() - asked < 2.0
