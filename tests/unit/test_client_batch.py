"""`client.jobs.submit_many`: batches of at most 1,000 through `POST /api/v1/jobs/batch`, a
key per item (kept when given), retried with the same keys, the jobs in order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobgate_client import InvalidRequest
from tests.unit.test_client_transport import FakeServer, Reply, Seen, make_client


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def echo_jobs(seen: Seen) -> Reply:
    """Answer a batch with one job per item, its id the item's key."""
    jobs = [{"id": item["idempotency_key"], "kind": item["kind"]} for item in seen.json()["jobs"]]
    return Reply(201, {"jobs": jobs, "created": len(jobs)})


def test_many_jobs_go_in_batches_of_at_most_a_thousand_in_order(server):
    server.handler = echo_jobs
    client, _ = make_client(server.url)
    wanted = [{"kind": "task", "name": f"t{i}", "priority": None} for i in range(2500)]
    wanted[7]["idempotency_key"] = "mine"
    jobs = client.jobs.submit_many(wanted)
    assert [s.path for s in server.seen] == ["/api/v1/jobs/batch"] * 3
    sizes = [len(s.json()["jobs"]) for s in server.seen]
    assert sizes == [1000, 1000, 500]
    sent = [item for s in server.seen for item in s.json()["jobs"]]
    assert [item["name"] for item in sent] == [f"t{i}" for i in range(2500)]
    assert all("priority" not in item for item in sent)  # None: the server's default
    keys = [item["idempotency_key"] for item in sent]
    assert keys[7] == "mine" and len(set(keys)) == 2500
    assert [j["id"] for j in jobs] == keys


def test_a_failed_batch_is_retried_with_the_same_keys(server):
    client, sleeps = make_client(server.url)
    server.handler = lambda seen: (
        Reply(502, "<html>bad gateway</html>") if len(server.seen) == 1 else echo_jobs(seen)
    )
    jobs = client.jobs.submit_many([{"kind": "cache", "files": ["a"]}] * 3)
    first, again = server.seen
    assert first.json() == again.json() and len(sleeps) == 1
    assert [j["id"] for j in jobs] == [i["idempotency_key"] for i in again.json()["jobs"]]


def test_an_invalid_batch_raises_and_bad_sizes_are_refused(server):
    server.handler = lambda seen: Reply(
        400,
        {
            "error": {
                "code": "INVALID_REQUEST",
                "message": "1 of 1 jobs are invalid; none was submitted",
                "details": {"items": {"0": {"message": "Unsupported job kind 'x'"}}},
                "request_id": "r",
            }
        },
    )
    client, _ = make_client(server.url)
    with pytest.raises(InvalidRequest) as caught:
        client.jobs.submit_many([{"kind": "x"}])
    assert caught.value.details["items"]["0"]["message"] == "Unsupported job kind 'x'"
    assert len(server.seen) == 1  # a 400 is not retried
    with pytest.raises(ValueError):
        client.jobs.submit_many([{"kind": "x"}], batch_size=1001)
    assert client.jobs.submit_many([]) == [] and len(server.seen) == 1
