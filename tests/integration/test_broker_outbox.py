"""Topology, confirming publisher, outbox relay, delayed retry and dead-lettering,
on a real broker."""

from __future__ import annotations

import json
import threading
import time

import pika
import pytest

from jobgate import db as dbmod
from jobgate import jobs, outbox
from jobgate.broker import DEAD_QUEUE, Publisher, declare_topology, job_queue, retry_queue
from jobgate.jobs import attempts, reaper, submission
from tests.factories.jobs import make_job
from tests.factories.users import make_user


@pytest.fixture
def publisher(amqp_url):
    pub = Publisher(amqp_url, app_id="test")
    yield pub
    pub.close()


@pytest.fixture
def channel(amqp_url):
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = conn.channel()
    declare_topology(ch)
    for name in (job_queue("cache"), DEAD_QUEUE):
        ch.queue_purge(name)
    yield ch
    conn.close()


def get_one(channel, queue: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return props, json.loads(body)
        time.sleep(0.05)
    raise AssertionError(f"no message on {queue} within {timeout}s")


def test_outbox_row_is_published_with_readable_properties_and_deleted(db, publisher, channel):
    user = make_user(db)
    job = make_job(db, owner_id=user["id"], priority=7)
    with db.transaction() as conn:
        row_id = outbox.add_job_message(conn, job=job, app_id="jobgate-gateway", request_id="req-1")
    assert outbox.relay(db, publisher, ids=[row_id]) == 1
    props, body = get_one(channel, job_queue("cache"))
    assert body == {"job_id": str(job["id"]), "kind": "cache", "attempt": 1}
    assert props.message_id == f"{job['id']}:1"
    assert props.priority == 7
    assert props.delivery_mode == 2
    assert props.app_id == "jobgate-gateway"
    assert props.content_type == "application/json"
    assert props.headers["x-request-id"] == "req-1"
    assert props.headers["x-owner"] == str(user["id"])
    with db.transaction() as conn:
        assert outbox.pending_count(conn) == 0


def test_relay_keeps_rows_while_the_broker_is_unreachable(db, channel):
    user = make_user(db)
    job = make_job(db, owner_id=user["id"])
    with db.transaction() as conn:
        outbox.add_job_message(conn, job=job, app_id="test")
    dead = Publisher("amqp://guest:guest@127.0.0.1:1/%2F", app_id="test")
    assert outbox.relay(db, dead) == 0
    with db.transaction() as conn:
        row = dbmod.fetch_one(conn, "SELECT attempts, last_error FROM outbox")
    assert row["attempts"] == 1 and row["last_error"]


def test_delayed_retry_comes_back_to_the_work_queue(db, publisher, channel):
    user = make_user(db)
    job = make_job(db, owner_id=user["id"])
    with db.transaction() as conn:
        row_id = outbox.add_job_message(conn, job=job, app_id="test", delay_s=1)
    started = time.monotonic()
    outbox.relay(db, publisher, ids=[row_id])
    assert channel.queue_declare(retry_queue(1), passive=True).method.message_count == 1
    _, body = get_one(channel, job_queue("cache"), timeout=10)
    assert body["job_id"] == str(job["id"])
    assert time.monotonic() - started >= 0.9


def test_rejected_message_lands_in_the_dead_letter_queue(publisher, channel):
    publisher.publish("jobgate.jobs", "cache", {"job_id": "not-a-uuid"})
    method, _, _ = channel.basic_get(job_queue("cache"))
    for _ in range(50):
        if method is not None:
            break
        time.sleep(0.05)
        method, _, _ = channel.basic_get(job_queue("cache"))
    channel.basic_reject(method.delivery_tag, requeue=False)
    props, body = get_one(channel, DEAD_QUEUE)
    assert body == {"job_id": "not-a-uuid"}
    assert props.headers["x-death"][0]["queue"] == job_queue("cache")


def test_claim_is_exclusive_and_transitions_are_guarded(db):
    user = make_user(db)
    job = make_job(db, owner_id=user["id"], max_attempts=2)
    job_id = str(job["id"])
    with db.transaction() as conn:
        first = attempts.claim_job(conn, job_id=job_id, worker_id="w1", lease_s=30)
        second = attempts.claim_job(conn, job_id=job_id, worker_id="w2", lease_s=30)
    assert first["attempt"] == 1 and second is None
    with db.transaction() as conn:
        assert attempts.finish_job(conn, job_id=job_id, worker_id="w2", status="completed") is None
        done = attempts.finish_job(
            conn, job_id=job_id, worker_id="w1", status="completed", result={"ok": 1}
        )
        assert done["status"] == "completed"
        # A late duplicate can neither claim nor cancel a finished job.
        assert attempts.claim_job(conn, job_id=job_id, worker_id="w3", lease_s=30) is None
        assert submission.request_cancel(conn, job_id=job_id) is None


def test_reaper_requeues_a_job_whose_worker_died(db):
    user = make_user(db)
    job = make_job(db, owner_id=user["id"], max_attempts=2)
    job_id = str(job["id"])
    with db.transaction() as conn:
        attempts.claim_job(conn, job_id=job_id, worker_id="dead", lease_s=0.01)
    time.sleep(0.05)
    with db.transaction() as conn:
        lost = reaper.requeue_lost(conn, app_id="test", stale_s=300)
        assert [str(j["id"]) for j in lost] == [job_id]
        assert jobs.get_job(conn, job_id=job_id)["status"] == "pending"
        assert outbox.pending_count(conn) == 1
        # Its second attempt also dies: that was the last one, so the job fails for good.
        attempts.claim_job(conn, job_id=job_id, worker_id="dead-too", lease_s=0.01)
    time.sleep(0.05)
    with db.transaction() as conn:
        reaper.requeue_lost(conn, app_id="test", stale_s=300)
        final = jobs.get_job(conn, job_id=job_id)
    assert final["status"] == "failed"
    assert final["error"] == "worker lost during attempt 2"


def test_a_refused_row_does_not_block_the_rows_after_it(db, publisher, channel):
    user = make_user(db)
    job = make_job(db, owner_id=user["id"])
    with db.transaction() as conn:
        stuck = outbox.add(
            conn, exchange="jobgate.jobs", routing_key="no-such-kind", body={"x": 1}, properties={}
        )
        fine = outbox.add_job_message(conn, job=job, app_id="test")
    assert outbox.relay(db, publisher, ids=[stuck, fine]) == 1
    _, body = get_one(channel, job_queue("cache"))
    assert body["job_id"] == str(job["id"])
    with db.transaction() as conn:
        left = dbmod.fetch_all(conn, "SELECT id, attempts FROM outbox")
    assert [(r["id"], r["attempts"]) for r in left] == [(stuck, 1)]


def test_a_batch_goes_out_in_one_relay_and_only_the_unroutable_row_stays(db, publisher, channel):
    user = make_user(db)
    jobs_ = [make_job(db, owner_id=user["id"]) for _ in range(40)]
    with db.transaction() as conn:
        ids = outbox.add_job_messages(conn, jobs=jobs_[:20], app_id="test", request_id=None)
        stuck = outbox.add(
            conn, exchange="jobgate.jobs", routing_key="no-such-kind", body={"x": 2}, properties={}
        )
        ids += outbox.add_job_messages(conn, jobs=jobs_[20:], app_id="test", request_id=None)
    assert outbox.relay(db, publisher, ids=[*ids, stuck]) == 40
    seen = [get_one(channel, job_queue("cache"))[1]["job_id"] for _ in jobs_]
    assert sorted(seen) == sorted(str(j["id"]) for j in jobs_)
    with db.transaction() as conn:
        left = dbmod.fetch_all(conn, "SELECT id, attempts, last_error FROM outbox")
    assert [(r["id"], r["attempts"]) for r in left] == [(stuck, 1)]
    assert "unroutable" in left[0]["last_error"]


class HeldPublisher:
    """The real publisher, held back until `go` is set: shows who waits for the broker."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.go = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def publish_many(self, messages):
        self.entered.set()
        self.go.wait(10)
        self.batches.append(len(messages))
        return self.publisher.publish_many(messages)


def test_the_background_relay_publishes_off_the_callers_thread_and_batches(db, publisher, channel):
    user = make_user(db)
    jobs_ = [make_job(db, owner_id=user["id"]) for _ in range(6)]
    held = HeldPublisher(publisher)
    relay = outbox.BackgroundRelay(db, held)
    ids = []
    with db.transaction() as conn:
        for job in jobs_:
            ids.append(outbox.add_job_message(conn, job=job, app_id="test"))
    started = time.monotonic()
    relay.submit(ids[:1])
    assert held.entered.wait(5)
    for row_id in ids[1:]:  # handed over while the first publish is held: one batch later
        relay.submit([row_id])
    assert time.monotonic() - started < 0.5  # nobody waited for the broker
    assert not relay.flush(timeout=0.2)
    with db.transaction() as conn:
        assert outbox.pending_count(conn) == 6
    held.go.set()
    assert relay.flush(timeout=10)
    assert held.batches == [1, 5]
    seen = sorted(get_one(channel, job_queue("cache"))[1]["job_id"] for _ in jobs_)
    assert seen == sorted(str(j["id"]) for j in jobs_)
    with db.transaction() as conn:
        assert outbox.pending_count(conn) == 0


def test_the_background_relay_leaves_rows_it_cannot_publish(db, amqp_url):
    user = make_user(db)
    job = make_job(db, owner_id=user["id"])
    with db.transaction() as conn:
        row_id = outbox.add_job_message(conn, job=job, app_id="test")
    relay = outbox.BackgroundRelay(db, Publisher("amqp://guest:guest@127.0.0.1:1/%2F", app_id="t"))
    relay.submit([row_id])
    assert relay.flush(timeout=10)
    with db.transaction() as conn:
        row = dbmod.fetch_one(conn, "SELECT id, attempts FROM outbox")
    assert row == {"id": row_id, "attempts": 1}  # for the housekeeping relay
