"""The Python client (`jobgate_client`) against the real processes through the edge: nginx,
the gunicorn gateway, auth-service, stats-service, cache/convert/task workers, PostgreSQL
and RabbitMQ. One stack serves the whole module.

What a program using the client sees: a job followed over the WebSocket, over Server-Sent
Events, and by polling when it talks to a gateway without stats-service; an upload and a
download that come back byte for byte; a conversion's MP3; errors typed with the API's
code and request id; a repeated `Idempotency-Key` answered with the first job; a refreshed
session; every canonical area (schedules, webhooks, API keys, users, workers); and an
address where nothing listens ending in `ConnectionFailed`.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobgate_client import (
    Client,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    JobFailed,
    NotFound,
    Unauthorized,
)
from tests.e2e.conftest import ADMIN_PASSWORD, start_shared_stack, stop_shared_stack
from tests.e2e.test_cache_e2e import make_tree
from tests.helpers import DEMO_KEY
from tests.media import make_video, mp3_header_ok
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


# A cache job slow enough to watch: about 1.5 s over the tree the tests make.
SLOW_CACHE = {"CACHE_READ_BANDWIDTH_LIMIT": "1500000", "CACHE_PROGRESS_FILE_THRESHOLD": "4"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url, amqp_url) -> Iterator[Stack]:
    stack = start_shared_stack(
        tmp_path_factory.mktemp("client-e2e"), database_url, amqp_url, WEBHOOK_ALLOW_PRIVATE="true"
    )
    stack.start_worker("cache", **SLOW_CACHE)
    stack.start_worker("task")
    stack.start_worker("convert")
    count, _ = make_tree(stack.filespace, folders=2, files=12, size=90_000)
    stack.tree_files = count
    yield stack
    stop_shared_stack(stack, database_url)


@pytest.fixture
def client(stack) -> Iterator[Client]:
    with Client(stack.edge_url, api_key=DEMO_KEY) as c:
        yield c


def test_a_job_is_followed_over_the_websocket_through_the_edge(stack, client):
    job = client.jobs.cache(directories=["tree"])
    watcher = client.jobs.watch(job["id"])
    events = list(watcher)
    assert watcher.used == "websocket"
    assert events[0].type == "snapshot" and all(e.transport == "websocket" for e in events)
    # Files read before the stream was open are not replayed: the WebSocket is live only.
    files = [e for e in events if e.type == "file"]
    assert 0 < len(files) <= stack.tree_files and {e.data["status"] for e in files} == {"done"}
    assert len({e.data["path"] for e in files}) == len(files)
    ticks = [e.progress for e in events if e.type == "progress"]
    assert len(ticks) >= 2 and ticks == sorted(ticks) and ticks[-1] == 100
    assert events[-1].final and events[-1].status == "completed"
    assert events[-1].progress_detail["items_done"] == stack.tree_files
    assert sum(e.final for e in events) == 1, "the stream ends at the final state"


def test_a_job_is_followed_over_server_sent_events(client):
    job = client.jobs.cache(directories=["tree"])
    watcher = client.jobs.watch(job["id"], transports=("sse", "poll"))
    events = list(watcher)
    assert watcher.used == "sse"
    ids = [e.event_id for e in events]
    assert ids == sorted(set(ids)), "every event once, in order"
    assert [e.event for e in events][:2] == ["created", "started"]
    progress = [e.progress for e in events if e.type == "progress"]
    assert progress == sorted(progress) and progress[-1] == 100
    assert events[-1].final and events[-1].event == "completed"


def test_a_gateway_without_stats_service_is_followed_by_polling(stack):
    with Client(stack.url, api_key=DEMO_KEY) as direct:  # the gateway itself: no stream routes
        job = direct.jobs.task("sleep", {"seconds": 1})
        watcher = direct.jobs.watch(job["id"], poll_interval=0.2)
        events = list(watcher)
    assert watcher.used == "poll"
    assert events[0].type == "snapshot"
    assert events[-1].final and events[-1].status == "completed"
    assert "running" in {e.status for e in events}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_upload_and_its_download_are_byte_identical_and_convert_to_mp3(client, tmp_path):
    clip = make_video(tmp_path / "holiday.mp4", seconds=2)
    sent: list[tuple[int, int | None]] = []
    info = client.files.upload(clip, progress=lambda done, total: sent.append((done, total)))
    size = clip.stat().st_size
    assert info["sha256"] == sha256(clip) and info["size"] == size
    assert sent[-1] == (size, size)
    got: list[tuple[int, int | None]] = []
    back = client.files.download(
        info["id"], tmp_path / "back", progress=lambda d, t: got.append((d, t))
    )
    assert sha256(back) == sha256(clip) and got[-1] == (size, size)

    job = client.jobs.convert(info["id"], bitrate="128k")
    final = client.jobs.wait(job["id"], raise_on_failure=True)
    assert final["status"] == "completed" and final["progress"] == 100
    [output] = client.jobs.outputs(job["id"])
    assert output["filename"] == "holiday.mp3"
    mp3 = client.jobs.download_output(job["id"], output["filename"], tmp_path)
    assert mp3 == tmp_path / "holiday.mp3" and mp3_header_ok(mp3.read_bytes())
    assert sha256(mp3) == output["sha256"]


def test_errors_are_typed_with_the_apis_code_and_request_id(stack, client):
    with pytest.raises(NotFound) as missing:
        client.jobs.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404 and missing.value.code == "NOT_FOUND"
    assert missing.value.request_id and len(missing.value.request_id) >= 16
    with pytest.raises(InvalidRequest) as bad_kind:
        client.jobs.submit("teleport")
    assert "cache" in bad_kind.value.details["supported"]
    done = client.jobs.wait(client.jobs.task("echo", {"x": 1})["id"])
    with pytest.raises(Conflict):
        client.jobs.cancel(done["id"])
    with pytest.raises(Unauthorized), Client(stack.edge_url, api_key="not-a-key") as stranger:
        stranger.jobs.list()
    with pytest.raises(NotFound):  # stats-service's own answer on the stream
        list(client.jobs.watch("00000000-0000-0000-0000-000000000000"))


def test_a_repeated_idempotency_key_answers_the_first_job(client):
    key = f"warm-tree-{os.getpid()}"
    first = client.jobs.cache(directories=["tree"], idempotency_key=key)
    again = client.jobs.cache(directories=["tree"], idempotency_key=key)
    assert again["id"] == first["id"]
    with pytest.raises(Conflict) as changed:
        client.jobs.cache(directories=["tree/shoot00"], idempotency_key=key)
    assert changed.value.details["job_id"] == first["id"]
    client.jobs.wait(first["id"])


def test_an_address_where_nothing_listens_ends_in_connection_failed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", api_key=DEMO_KEY, retries=2, backoff=0.05)
    waits: list[float] = []
    client.http.sleep = waits.append
    with pytest.raises(ConnectionFailed) as caught:
        client.jobs.cache(directories=["tree"])  # a submission: retried, it has a key
    assert caught.value.reason == "connection refused" and len(waits) == 2


def test_tasks_listing_paging_logs_and_a_failure(client):
    ids = [client.jobs.task("echo", {"n": n})["id"] for n in range(3)]
    for job_id in ids:
        assert client.jobs.wait(job_id)["result"] == {"n": ids.index(job_id)}
    page = client.jobs.list(kind="task", limit=2)
    assert page.total >= 3 and len(page) == 2 and page.next_offset == 2
    listed = [j["id"] for j in client.jobs.iter(kind="task", page_size=2)]
    assert set(ids) <= set(listed) and len(listed) == page.total
    failing = client.jobs.task("sleep", {"seconds": 5}, timeout=1, max_attempts=1)
    with pytest.raises(JobFailed) as failed:
        client.jobs.wait(failing["id"], raise_on_failure=True)
    assert failed.value.job["status"] == "failed"
    assert client.jobs.logs(failing["id"]), "the failure is in the job's log"
    followed = list(client.jobs.follow_logs(failing["id"]))
    assert [line["id"] for line in followed] == [
        line["id"] for line in client.jobs.logs(failing["id"])
    ]


def test_cancel_retry_and_delete(client):
    job = client.jobs.task("sleep", {"seconds": 30})
    for event in client.jobs.watch(job["id"]):
        if event.status == "running":
            break
    assert client.jobs.cancel(job["id"])["id"] == job["id"]
    assert client.jobs.wait(job["id"])["status"] == "cancelled"
    assert client.jobs.retry(job["id"])["status"] in ("pending", "running")
    client.jobs.delete(job["id"])
    with pytest.raises(NotFound):
        client.jobs.get(job["id"])


def test_a_login_session_is_refreshed_and_logged_out(stack):
    stored = []
    with Client(stack.edge_url, on_tokens=stored.append) as session:
        tokens = session.auth.login("admin", ADMIN_PASSWORD)
        assert session.auth.me()["username"] == "admin" and stored[-1] == tokens
        session.http.token = "expired.or.forged"  # the next call is refused, then refreshed
        assert session.auth.me()["username"] == "admin"
        assert stored[-1]["refresh_token"] != tokens["refresh_token"], "rotated"
        session.auth.logout()
    with pytest.raises(Unauthorized), Client(stack.edge_url) as again:
        again.http.token = "forged"
        again.http.refresh_token = stored[-1]["refresh_token"]  # revoked by the logout
        again.auth.me()


def test_schedules_webhooks_keys_users_and_workers(stack, client):
    schedule = client.schedules.create(
        "nightly warm", "cache", interval_minutes=1440, enabled=False, directories=["tree"]
    )
    assert schedule["enabled"] is False and schedule["params"]["directories"] == ["tree"]
    assert client.schedules.enable(schedule["id"])["enabled"] is True
    assert client.schedules.disable(schedule["id"])["next_run_at"] is None
    assert schedule["id"] in [s["id"] for s in client.schedules.list(kind="cache")]
    client.schedules.delete(schedule["id"])
    with pytest.raises(NotFound):
        client.schedules.get(schedule["id"])

    hook = client.webhooks.create("http://127.0.0.1:9/hook", ["job.completed"])
    assert hook["secret"].startswith("whsec_")
    assert client.webhooks.update(hook["id"], active=False)["active"] is False
    assert client.webhooks.list().total >= 1
    client.webhooks.delete(hook["id"])

    key = client.auth.create_api_key("client-e2e", scopes=["jobs:read"])
    with Client(stack.edge_url, api_key=key["key"]) as reader:
        assert reader.auth.me()["username"] == "admin"
        with pytest.raises(Forbidden):
            reader.jobs.task("echo")
    client.auth.revoke_api_key(key["id"])
    revoked = [k for k in client.auth.api_keys(include_revoked=True) if k["id"] == key["id"]]
    assert revoked[0]["revoked_at"] is not None

    workers = client.workers.list()
    assert {"cache", "task", "convert"} <= {w["kind"] for w in workers}
    assert client.workers.status()["by_kind"]["cache"]["active"] >= 1
    assert client.info()["supported_kinds"]


def test_a_user_sees_only_their_own_jobs(stack, client):
    admins_job = client.jobs.task("echo", {"mine": True})
    client.users.create("client-e2e-bob", "bob-password-1")
    with Client(stack.edge_url) as bob:
        bob.auth.login("client-e2e-bob", "bob-password-1")
        own = bob.jobs.task("echo", {"bob": True})
        assert [j["id"] for j in bob.jobs.iter()] == [own["id"]]
        with pytest.raises(NotFound):
            bob.jobs.get(admins_job["id"])
        with pytest.raises(NotFound):
            list(bob.jobs.watch(admins_job["id"]))
        with pytest.raises(Forbidden):
            bob.users.list()


def test_many_jobs_of_mixed_kinds_go_in_batches_and_are_processed(client):
    """`submit_many` through the edge: 1,001 jobs make two batch requests; the workers run
    them, and sending the same bodies with the same keys again creates nothing."""
    wanted = [{"kind": "task", "name": "echo", "payload": {"n": n}} for n in range(1000)]
    wanted.append({"kind": "cache", "directories": ["tree/shoot00"]})
    for n, body in enumerate(wanted):
        body["idempotency_key"] = f"batch-e2e-{os.getpid()}-{n}"
    jobs = client.jobs.submit_many(wanted)
    assert [j["kind"] for j in jobs] == ["task"] * 1000 + ["cache"]
    assert all(j["created"] for j in jobs) and len({j["id"] for j in jobs}) == 1001
    again = client.jobs.submit_many(wanted)
    assert [j["id"] for j in again] == [j["id"] for j in jobs]
    assert not any(j["created"] for j in again)
    assert client.jobs.wait(jobs[-1]["id"])["status"] == "completed"
    for job in (jobs[0], jobs[500], jobs[999]):
        assert client.jobs.wait(job["id"])["result"] == job["params"]["payload"]
