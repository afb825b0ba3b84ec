"""Live streams of stats-service with the real processes, through the edge: nginx in front
of the gunicorn gateway and the uvicorn stats-service, auth-service, workers, PostgreSQL,
RabbitMQ (and Podman for a container job). Every request goes to the one public address.

What a client watching a job sees: a cache job's WebSocket (files rising to the total, then
`completed`), a conversion's Server-Sent Events resumed with `Last-Event-ID` without losing
an event (also across a killed and restarted stats-service), seed 004's `/ws/tasks` and seed
003's `/api/ws/updates`; and who is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websockets

from tests.e2e.conftest import login
from tests.e2e.test_cache_e2e import make_tree
from tests.helpers import DEMO_KEY
from tests.media import make_long_video
from tests.stack import Stack

pytestmark = pytest.mark.e2e
KEY = {"X-API-Key": DEMO_KEY}


@pytest.fixture
def streams(make_stack):
    """The stack with stats-service, polling job events often so tests stay quick."""
    stack = make_stack(STATS_POLL_SECONDS="0.1", STATS_METRICS_SECONDS="0.5")
    stack.start_stats()
    stack.start_edge()
    return stack


def public(stack: Stack) -> str:
    """The one public address: the edge (the gateway itself where a test runs no edge)."""
    return stack.edge_url if stack.edge_port else stack.url


def ws_url(stack: Stack, path: str) -> str:
    return public(stack).replace("http://", "ws://") + path


async def collect(
    url: str, headers: dict[str, str], *, until=None, timeout: float = 60.0
) -> tuple[list[dict[str, Any]], int | None]:
    """Every message of a WebSocket until the server closes it (or `until(message)`)."""
    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
        try:
            async with asyncio.timeout(timeout):
                async for raw in ws:
                    messages.append(json.loads(raw))
                    if until is not None and until(messages[-1]):
                        return messages, None
        except websockets.ConnectionClosed:
            pass
        return messages, ws.close_code


def submit_cache_job(stack: Stack) -> str:
    r = requests.post(
        f"{public(stack)}/api/v1/cache/jobs",
        json={"directories": ["tree"], "recursive": True},
        headers=KEY,
        timeout=10,
    )
    assert r.status_code in (200, 201), r.text
    return r.json()["jobId"]


def test_a_cache_jobs_websocket_shows_files_rising_to_the_total_then_completed(streams):
    count, _ = make_tree(streams.filespace, folders=4, files=15, size=20_000)
    job_id = submit_cache_job(streams)  # no worker yet: the client is there from the start

    async def watch() -> tuple[list[dict[str, Any]], int | None]:
        task = asyncio.create_task(collect(ws_url(streams, f"/ws/jobs/{job_id}"), KEY))
        await asyncio.sleep(1.0)
        streams.start_worker("cache", CACHE_PROGRESS_FILE_THRESHOLD="5")
        return await task

    messages, code = asyncio.run(watch())
    assert messages[0]["type"] == "snapshot" and messages[0]["status"] == "pending"
    files = [m for m in messages if m["type"] == "file"]
    assert len(files) == count and {m["status"] for m in files} == {"done"}
    done = [m["progress_detail"]["items_done"] for m in messages if m["type"] == "progress"]
    assert done == sorted(done) and done[-1] == count and len(done) >= 3
    assert messages[-1]["type"] == "status" and messages[-1]["status"] == "completed"
    assert messages[-1]["progress"] == 100
    assert code == 1000


def sse_events(response: requests.Response) -> Iterator[dict[str, str]]:
    """Parse a text/event-stream (id, event, data; comments skipped)."""
    message: dict[str, str] = {}
    for line in response.iter_lines(decode_unicode=True):
        if line == "":
            if "data" in message:
                yield message
            message = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            message[name] = value[1:] if value.startswith(" ") else value


def read_sse(
    stack: Stack, job_id: str, headers: dict[str, str], *, last: str | None, stop_after: int | None
) -> list[dict[str, str]]:
    """SSE messages of one connection: all until `end`, or the first `stop_after`."""
    h = {**headers, "Accept": "text/event-stream"}
    if last is not None:
        h["Last-Event-ID"] = last
    got: list[dict[str, str]] = []
    url = f"{public(stack)}/api/v1/jobs/{job_id}/events"
    with requests.get(url, headers=h, stream=True, timeout=30) as r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        for message in sse_events(r):
            got.append(message)
            if message.get("event") == "end" or (stop_after and len(got) >= stop_after):
                break
    return got


def timeline(stack: Stack, job_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = requests.get(
        f"{public(stack)}/api/v1/jobs/{job_id}/events?format=json", headers=headers, timeout=10
    )
    assert r.status_code == 200, r.text
    return r.json()["events"]


@pytest.fixture
def long_clip(tmp_path_factory):
    return make_long_video(tmp_path_factory.mktemp("media") / "long.mkv", seconds=900)


def upload(stack: Stack, headers: dict[str, str], path) -> str:
    with open(path, "rb") as fh:
        r = requests.post(
            f"{public(stack)}/upload", files={"file": ("long.mp4", fh)}, headers=headers, timeout=60
        )
    assert r.status_code in (200, 201, 202), r.text
    return r.json()["job_id"]


def test_sse_of_a_conversion_resumes_with_last_event_id_and_loses_nothing(streams, long_clip):
    admin = login(streams)
    streams.start_worker("convert")
    job_id = upload(streams, admin, long_clip)
    first = read_sse(streams, job_id, admin, last=None, stop_after=4)
    assert [m["event"] for m in first[:2]] == ["created", "started"]
    rest = read_sse(streams, job_id, admin, last=first[-1]["id"], stop_after=None)
    assert rest[-1]["event"] == "end"
    got = [m for m in first + rest if m["event"] != "end"]
    ids = [int(m["id"]) for m in got]
    assert ids == sorted(set(ids)), "no event twice, in order"
    stored = timeline(streams, job_id, admin)
    assert ids == [e["event_id"] for e in stored], "every stored event reached the client"
    assert got[-1]["event"] == "completed"
    pcts = [json.loads(m["data"])["progress"] for m in got if m["event"] == "progress"]
    assert pcts == sorted(pcts) and len(pcts) >= 2


def test_a_restarted_stats_service_is_resumed_from_last_event_id(streams, long_clip):
    admin = login(streams)
    job_id = upload(streams, admin, long_clip)  # pending until the worker starts
    first = read_sse(streams, job_id, admin, last=None, stop_after=1)
    os.kill(streams.procs["stats"].pid, signal.SIGKILL)
    streams.procs["stats"].wait()
    streams.start_worker("convert")
    time.sleep(1.0)  # events happen while no stats-service runs
    streams.start_stats(name="stats-again")
    rest = read_sse(streams, job_id, admin, last=first[-1]["id"], stop_after=None)
    ids = [int(m["id"]) for m in first + rest if m["event"] != "end"]
    assert ids == [e["event_id"] for e in timeline(streams, job_id, admin)]
    assert rest[-1]["event"] == "end" and rest[-2]["event"] == "completed"


def add_user(stack: Stack, admin: dict[str, str], name: str) -> dict[str, str]:
    requests.post(
        f"{public(stack)}/api/v1/auth/users",
        json={"username": name, "password": f"password-{name}"},
        headers=admin,
        timeout=10,
    )
    return login(stack, name, f"password-{name}")


def test_ws_tasks_receives_a_tasks_updates_and_only_its_owners(streams):
    admin = login(streams)
    eve = add_user(streams, admin, "eve")
    streams.start_worker("task")

    async def watch() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        url = ws_url(streams, "/ws/tasks")
        async with (
            websockets.connect(url, additional_headers=admin, open_timeout=10) as ws,
            websockets.connect(url, additional_headers=eve, open_timeout=10) as eves,
        ):
            r = requests.post(
                f"{public(streams)}/api/v1/tasks",
                json={"name": "streamed", "handler": "echo", "payload": {"n": 1}},
                headers=admin,
                timeout=10,
            )
            assert r.status_code == 201, r.text
            task_id = r.json()["data"]["id"]
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(30):
                async for raw in ws:
                    update = json.loads(raw)
                    if update["task_id"] == task_id:
                        seen.append(update)
                    if update["status"] == "completed":
                        break
            # Eve's own task reaches her; the admin's never did.
            r = requests.post(
                f"{public(streams)}/api/v1/tasks",
                json={"name": "eves", "handler": "echo"},
                headers=eve,
                timeout=10,
            )
            async with asyncio.timeout(30):
                first = json.loads(await eves.recv())
            return seen, [first]

    seen, eves = asyncio.run(watch())
    assert [u["event"] for u in seen] == ["created", "started", "completed"]
    assert [u["status"] for u in seen] == ["pending", "running", "completed"]
    assert all(u["type"] == "task_update" and u["name"] == "streamed" for u in seen)
    assert eves[0]["name"] == "eves" and eves[0]["event"] == "created"


@pytest.fixture
def container_streams(make_stack, docker_host):
    stack = make_stack(DOCKER_HOST=docker_host, STATS_POLL_SECONDS="0.1")
    stack.start_stats()
    stack.start_edge()
    return stack


def test_api_ws_updates_receives_a_container_jobs_status_and_events(container_streams):
    stack, admin = container_streams, login(container_streams)
    stack.start_worker("container")

    async def watch() -> list[dict[str, Any]]:
        url = ws_url(stack, "/api/ws/updates")
        async with websockets.connect(url, additional_headers=admin, open_timeout=10) as ws:
            r = requests.post(
                f"{public(stack)}/api/jobs",
                json={"name": "streamed", "image": "busybox", "command": ["sh", "-c", "sleep 1"]},
                headers=admin,
                timeout=10,
            )
            assert r.status_code in (200, 201, 202), r.text
            job_id = r.json()["job_id"]
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(60):
                async for raw in ws:
                    message = json.loads(raw)
                    if message["data"].get("job_id") == job_id:
                        seen.append(message)
                    # The status comes from the table, the engine's events from the broker:
                    # either may come last.
                    finished = [m for m in seen if m["data"].get("status") == "completed"]
                    destroyed = [m for m in seen if m["data"].get("event") == "destroy"]
                    if finished and destroyed:
                        return seen
        return seen

    seen = asyncio.run(watch())
    statuses = [m["data"]["status"] for m in seen if m["type"] == "job_status"]
    assert statuses == ["queued", "running", "completed"]
    assert seen[-1]["data"]["progress"] == 100
    actions = [m["data"]["event"] for m in seen if m["type"] == "container_event"]
    assert actions == ["create", "start", "die", "destroy"]
    assert all(m["data"]["container_id"] for m in seen if m["type"] == "container_event")


def test_metrics_are_streamed_to_seed_004s_client(streams):
    admin = login(streams)
    started = time.monotonic()
    stamps: list[float] = []

    def three(message: dict[str, Any]) -> bool:
        stamps.append(time.monotonic() - started)
        return len(stamps) == 3

    messages, _ = asyncio.run(collect(ws_url(streams, "/ws/metrics"), admin, until=three))
    assert len(messages) == 3 and stamps[0] < 2  # one at once, then every 0.5 s
    first = messages[0]
    assert first["type"] == "metrics" and first["workers_total"] >= 0
    assert {"total_tasks", "completed_tasks", "completion_rate"} <= set(first)
    assert 0 <= first["system"]["cpu_usage"] <= 100 and first["system"]["memory_usage"] > 0


def handshake_status(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async def go() -> tuple[int, dict[str, Any]]:
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=10):
                return 101, {}
        except websockets.InvalidStatus as exc:
            return exc.response.status_code, json.loads(exc.response.body or b"{}")

    return asyncio.run(go())


def test_no_token_a_bad_token_and_another_users_job_are_refused(streams):
    admin = login(streams)
    eve = add_user(streams, admin, "eve")
    make_tree(streams.filespace, folders=1, files=1, size=10)
    job_id = submit_cache_job(streams)  # the demo key's user is the admin
    job_ws = ws_url(streams, f"/ws/jobs/{job_id}")
    events = f"{public(streams)}/api/v1/jobs/{job_id}/events"

    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"X-API-Key": "wrong"}):
        status, body = handshake_status(job_ws, headers)
        assert status == 401 and body["error"]["code"] == "UNAUTHORIZED"
        r = requests.get(events, headers=headers, timeout=10)
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        status, body = handshake_status(ws_url(streams, "/ws/tasks"), headers)
        assert status == 401 and body["status"] == "error"  # seed 004's envelope
    status, body = handshake_status(job_ws, eve)
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    assert requests.get(events, headers=eve, timeout=10).status_code == 404
    assert requests.get(f"{events}?format=json", headers=eve, timeout=10).status_code == 404
    # A browser's token in the query string works; the owner's stream opens.
    token = admin["Authorization"].split()[1]
    status, _ = handshake_status(f"{job_ws}?token={token}", {})
    assert status == 101
    status, body = handshake_status(ws_url(streams, "/ws/jobs/not-a-uuid"), admin)
    assert status == 400 and body["error"]["details"]["field"] == "job_id"


def test_analytics_equal_counts_computed_directly(streams, db):
    from jobgate import db as jobgate_db

    admin = login(streams)
    make_tree(streams.filespace, folders=1, files=2, size=10)
    streams.start_worker("task")
    for i in range(3):
        requests.post(
            f"{public(streams)}/api/v1/tasks",
            json={"name": f"t{i}", "handler": "echo"},
            headers=admin,
            timeout=10,
        )
    submit_cache_job(streams)  # pending: no cache worker
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with db.transaction() as conn:
            left = jobgate_db.fetch_one(
                conn, "SELECT count(*) AS n FROM jobs WHERE kind = 'task' AND status <> 'completed'"
            )["n"]
        if not left:
            break
        time.sleep(0.1)
    with db.transaction() as conn:
        rows = jobgate_db.fetch_all(
            conn,
            "SELECT kind, status, count(*) AS n FROM jobs WHERE kind <> 'webhook'"
            " GROUP BY kind, status",
        )
    count = lambda kind=None, *statuses: sum(  # noqa: E731
        r["n"]
        for r in rows
        if (kind is None or r["kind"] == kind) and (not statuses or r["status"] in statuses)
    )
    url = f"{public(streams)}/api/v1/analytics"
    board = requests.get(f"{url}/dashboard", headers=admin, timeout=10).json()
    assert board["total_tasks"] == count() == 4
    assert board["completed_tasks"] == count(None, "completed") == 3
    assert board["pending_tasks"] == count(None, "pending", "retrying") == 1
    assert board["data"]["total_tasks"] == board["total_tasks"] and board["status"] == "success"
    assert board["completion_rate"] == round(3 / 4, 4)
    tasks = requests.get(f"{url}/dashboard?kind=task", headers=admin, timeout=10).json()
    assert tasks["total_tasks"] == count("task") == 3 and tasks["completion_rate"] == 1.0
    r = requests.get(f"{url}/export?kind=task", headers={**admin, "Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    import csv
    import io

    parsed = list(csv.DictReader(io.StringIO(r.text)))
    assert len(parsed) == 30 and sum(int(row["completed"]) for row in parsed) == 3
    r = requests.get(f"{url}/export", headers={**admin, "Accept": "application/json"})
    assert r.json()["data"]["dashboard"]["total_tasks"] == 4
    bad = requests.get(f"{url}/trends?days=366", headers=admin, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "days"
    bad = requests.get(f"{url}/trends?metric=speed", headers=admin, timeout=10)
    assert bad.status_code == 400 and bad.json()["status"] == "error"
    r = requests.get(f"{url}/trends?days=3&metric=avg_duration", headers=admin, timeout=10)
    assert r.status_code == 200 and len(r.json()["data"]["points"]) == 3


def test_seed_000s_throughput_is_live_and_fresh_while_a_job_runs(make_stack):
    import datetime as dt

    # Reads held to 2 MiB/s in small chunks (the cap paces after each chunk, so big chunks
    # on several threads would read in bursts): about 5 s for 10 MiB.
    stack = make_stack(
        CACHE_READ_BANDWIDTH_LIMIT=str(2 * 1024 * 1024),
        CACHE_READ_CHUNK_BYTES="65536",
        CACHE_READ_CONCURRENCY="1",
    )
    folder = stack.filespace / "tree"
    folder.mkdir()
    for i in range(10):
        (folder / f"f{i}.mov").write_bytes(os.urandom(1024 * 1024))
    job_id = submit_cache_job(stack)
    stack.start_worker("cache", CACHE_PROGRESS_TIME_THRESHOLD="500")
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = requests.get(f"{public(stack)}/api/v1/cache/jobs/{job_id}", headers=KEY).json()["job"]
        if job["status"] == "completed":
            break
        if job["status"] == "running" and job["progress"]["files"]["completed"] >= 1:
            samples.append(job)
        time.sleep(0.3)
    assert job["status"] == "completed" and job["throughput"] is None
    assert len(samples) >= 5
    for sample in samples:
        assert sample["throughput"] is not None, sample
        at = dt.datetime.fromisoformat(sample["throughput"]["timestamp"].replace("Z", "+00:00"))
        assert (dt.datetime.now(dt.UTC) - at).total_seconds() < 10
        assert 1.0 <= sample["throughput"]["mbps"] <= 3.5  # the 2 MiB/s the reads are held to
