"""stats-service's fan-out and its reading of `job_events`, as pure logic: who receives an
event, what a slow client loses, and how the tail passes gaps in the ids."""

from __future__ import annotations

import asyncio
import json

from jobgate_stats.hub import Event, Hub, Outgoing, Subscriber
from jobgate_stats.sources import GapCursor, event_from_message
from jobgate_stats.streams import render_job_ws, render_sse, render_task_ws, render_updates_ws

COUNTERS = {"items_done": 5, "items_failed": 0, "items_total": 10, "bytes_done": 50}
COUNTERS |= {"bytes_total": 100, "progress_pct": None, "status": "running"}


def event(what: str, *, job: str = "j1", owner: str = "u1", source: str = "db", **data) -> Event:
    return Event(
        name=what,
        job_id=job,
        kind=data.pop("kind", "cache"),
        owner_id=owner,
        data=data,
        source=source,
        id=data.pop("id", None),
        ts="2026-11-26T00:00:00.000Z",
    )


def plain(e: Event) -> Outgoing:
    return Outgoing(f"{e.name}:{e.job_id}", droppable=e.name == "progress")


def drain(sub: Subscriber) -> list[str]:
    async def go() -> list[str]:
        out = []
        while sub.pending():
            message = await sub.get()
            out.append(message.text)
        return out

    return asyncio.run(go())


def test_events_reach_the_jobs_the_owners_and_the_admins_subscribers_only():
    hub = Hub()
    by_job, by_owner, other, admin = (Subscriber(plain, limit=10) for _ in range(4))
    hub.add(by_job, job_id="j1")
    hub.add(by_owner, owner_id="u1")
    hub.add(other, owner_id="u2")
    hub.add(admin, everything=True)
    hub.publish(event("started"))
    assert drain(by_job) == drain(by_owner) == drain(admin) == ["started:j1"]
    assert drain(other) == []
    hub.remove(by_job)
    hub.publish(event("completed"))
    assert drain(by_job) == [] and hub.watched_jobs() == 0 and hub.subscribers() == 3


def test_a_slow_client_loses_old_progress_ticks_first_then_is_closed():
    sub = Subscriber(plain, limit=3)
    for name in ("progress", "started", "progress", "progress"):
        sub.offer(plain(event(name)))
    # Full at the fourth: the oldest tick went, the state change stayed.
    assert sub.dropped == 1 and drain(sub) == ["started:j1", "progress:j1", "progress:j1"]
    for _ in range(3):
        sub.offer(plain(event("completed")))
    sub.offer(plain(event("failed")))  # nothing droppable left: the client is closed
    assert sub.overflowed
    assert asyncio.run(sub.get()) is None


def test_each_format_is_rendered_once_per_event():
    calls = []

    def counting(e: Event) -> Outgoing:
        calls.append(e.name)
        return plain(e)

    hub = Hub()
    subs = [Subscriber(counting, limit=5) for _ in range(50)]
    for sub in subs:
        hub.add(sub, job_id="j1")
    hub.publish(event("started"))
    assert calls == ["started"] and all(sub.pending() == 1 for sub in subs)


def test_the_gap_cursor_waits_for_a_late_commit_then_passes_a_rolled_back_id():
    cursor = GapCursor(10, gap_s=5.0)
    rows = [{"id": 11}, {"id": 13}]
    assert [r["id"] for r in cursor.take(rows, now=0.0)] == [11, 13]
    assert cursor.low == 11  # 12 is a gap: read again from 11
    # 12 commits late: delivered once, and 13 is not delivered again.
    assert [r["id"] for r in cursor.take([{"id": 12}, {"id": 13}], now=1.0)] == [12]
    assert cursor.low == 13
    cursor.take([{"id": 15}], now=2.0)  # 14 never comes (rolled back)
    assert cursor.low == 13
    assert cursor.take([{"id": 15}], now=6.9) == [] and cursor.low == 13
    assert cursor.take([{"id": 15}], now=7.1) == [] and cursor.low == 15


def test_broker_messages_carry_live_ticks_only():
    body = {"job_id": "j1", "kind": "cache", "owner_id": "u1", "event_id": 7, **COUNTERS}
    tick = event_from_message("job.cache.progress", {**body, "ts": "t", "event": "x"})
    assert tick is not None and tick.source == "broker" and tick.id == 7
    assert "event" not in tick.data and tick.data["items_done"] == 5
    # The broker's copy of a state change only marks the end of the worker's live events.
    done = event_from_message("job.cache.completed", body)
    assert done is not None and done.source == "broker" and done.terminal
    assert render_job_ws(done) == Outgoing("", broker_done=True)
    assert render_task_ws(done) is None and render_sse(done) is None
    assert event_from_message("worker.cache.heartbeat", body) is None
    assert event_from_message("job.cache.progress", {"kind": "cache"}) is None


def test_job_stream_messages():
    tick = json.loads(render_job_ws(event("progress", source="broker", **COUNTERS)).text)
    assert tick["type"] == "progress" and tick["progress"] == 50
    assert tick["progress_detail"]["items_done"] == 5
    # The table's copy of a tick is for SSE only; its state changes close the stream.
    assert render_job_ws(event("progress", **COUNTERS)) is None
    done = render_job_ws(event("completed", id=9, **{**COUNTERS, "status": "completed"}))
    assert done.closes and json.loads(done.text)["event_id"] == 9
    assert render_sse(event("progress", source="broker", **COUNTERS)) is None
    sse = render_sse(event("progress", id=8, **COUNTERS))
    assert sse.event_id == 8 and not sse.droppable and sse.event == "progress"


def test_seed_words_in_task_and_container_streams():
    retry = render_task_ws(event("retrying", kind="task", status="retrying", name="t"))
    assert json.loads(retry.text)["status"] == "pending"  # seed 004's word
    assert render_task_ws(event("started", kind="cache", status="running")) is None
    queued = render_updates_ws(event("created", kind="container", status="pending"))
    assert json.loads(queued.text)["data"]["status"] == "queued"  # seed 003's word
    start = render_updates_ws(
        event("container", kind="container", source="broker", container_id="c1", action="start")
    )
    assert json.loads(start.text) == {
        "type": "container_event",
        "data": {
            "container_id": "c1",
            "event": "start",
            "timestamp": "2026-11-26T00:00:00.000Z",
            "job_id": "j1",
        },
    }


def test_a_credential_holds_a_bounded_number_of_streams():
    import pytest

    from jobgate.errors import RateLimited
    from jobgate.identity import Principal
    from jobgate_stats.web import Gatekeeper

    gate = Gatekeeper(authenticator=None, max_streams=2)  # type: ignore[arg-type]
    alice = Principal("u1", "alice", "user", ("jobs:read",), "jwt")
    alices_key = Principal("u1", "alice", "user", ("jobs:read",), "api_key", key_id="k1")
    releases = [gate.acquire(alice), gate.acquire(alice)]
    with pytest.raises(RateLimited):
        gate.acquire(alice)
    gate.acquire(alices_key)  # a key counts on its own
    releases.pop()()
    gate.acquire(alice)  # a slot given back is free again
