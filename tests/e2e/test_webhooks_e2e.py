"""Webhooks through the whole running stack: a webhook made over HTTP, a cache job run by a
real `jobgate-worker cache`, its events turned into deliveries by the dispatcher of a real
`jobgate-worker webhook` and POSTed, signed, to a receiver that checks the signature with
the `standardwebhooks` package; SIGTERM ends the webhook worker with exit 0."""

from __future__ import annotations

import signal
import time

import pytest
import requests
from standardwebhooks import Webhook

from tests.e2e.conftest import wait_status
from tests.helpers import DEMO_KEY
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_a_jobs_events_reach_a_verifying_receiver(make_stack, receiver):
    stack = make_stack(WEBHOOK_ALLOW_PRIVATE="true", WEBHOOK_BACKOFF_SECONDS="0.1")
    (stack.filespace / "clip.mov").write_bytes(b"x" * 5000)
    stack.start_worker("cache")
    webhook_worker = stack.start_worker("webhook")
    api = f"{stack.url}/api/v1"
    session = requests.Session()
    session.headers["X-API-Key"] = DEMO_KEY
    r = session.post(f"{api}/webhooks", json={"url": receiver.url, "events": ["job.*"]})
    assert r.status_code == 201, r.text
    hook = r.json()
    receiver.script = [503]  # the first delivery is retried

    r = session.post(f"{api}/jobs", json={"kind": "cache", "files": ["clip.mov"]})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert (
        wait_status(f"{api}/jobs/{job_id}", session.headers, {"completed", "failed"})["status"]
        == "completed"
    )

    deadline = time.monotonic() + 60
    wanted = {"job.created", "job.started", "job.completed"}
    while time.monotonic() < deadline:
        listed = session.get(f"{api}/webhooks/{hook['id']}/deliveries").json()
        done = {d["event_type"] for d in listed["deliveries"] if d["status"] == "completed"}
        if done == wanted:
            break
        time.sleep(0.2)
    assert done == wanted, listed
    assert listed["total"] == 3
    bodies = [Webhook(hook["secret"]).verify(s["body"], s["headers"]) for s in receiver.received()]
    assert len(bodies) == 4  # one answered 503 and was sent again
    assert {b["type"] for b in bodies} == wanted
    assert all(b["data"]["job_id"] == job_id for b in bodies)
    assert max(d["attempts"] for d in listed["deliveries"]) == 2

    webhook_worker.send_signal(signal.SIGTERM)
    assert webhook_worker.wait(timeout=20) == 0
    assert "webhook dispatcher stopped" in stack.log("worker-webhook")
