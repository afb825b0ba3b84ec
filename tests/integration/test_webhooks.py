"""Webhooks end to end: the API (/api/v1/webhooks: the secret shown once, the 400s, the
address policy, another user's webhook as a 404), the dispatcher (`jobgate.webhooks`: one
delivery per event and matching webhook, the most specific type, owners kept apart, two
dispatchers never duplicating one) and real `webhook` workers delivering to a local receiver
that verifies the Standard Webhooks signature with the `standardwebhooks` package: retried
after a 500, dead-lettered after the last attempt, refused addresses failed without retries.

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

from jobgate import db, outbox, webhooks
from jobgate.broker import DEAD_QUEUE
from jobgate.db import Database
from jobgate.jobs import attempts
from jobgate_worker.kinds.webhook import Dispatcher
from tests.factories.jobs import make_job, wait_for_job
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
    assert r.status_code == 409


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
