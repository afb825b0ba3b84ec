"""Watching a job with the client against a scripted local server: the fallback from the
WebSocket to Server-Sent Events to polling, SSE resumed with `Last-Event-ID` after a
dropped stream, stats-service's own 404 raised rather than hidden, and the events a poll
makes from two reads of a job."""

from __future__ import annotations

import json
import time

import pytest

from jobgate_client import NotFound
from jobgate_client.models import JobEvent
from jobgate_client.streams import StreamUnavailable, event_from_ws, events_from_poll
from tests.unit.test_client_transport import Reply, Seen, make_client, server  # noqa: F401

STATS = {"X-Jobgate-Service": "stats"}
SSE = {**STATS, "Content-Type": "text/event-stream"}


def sse(*messages: tuple[int, str, dict]) -> bytes:
    return "".join(
        f"id: {i}\nevent: {name}\ndata: {json.dumps(data)}\n\n" for i, name, data in messages
    ).encode()


def job(status: str, progress: int, **extra) -> dict:
    return {
        "id": "j1",
        "kind": "cache",
        "status": status,
        "attempt": 1,
        "progress": progress,
        "progress_detail": {"items_done": progress, "items_total": 100},
        **extra,
    }


def test_without_stream_routes_the_watch_falls_back_to_polling(server):  # noqa: F811
    reads = iter([job("running", 10), job("running", 60), job("completed", 100)])

    def handle(seen: Seen) -> Reply:
        if seen.path == "/api/v1/jobs/j1":
            return Reply(200, {"job": next(reads)})
        return Reply(404, {"error": {"code": "NOT_FOUND", "message": "no such URL"}})

    server.handler = handle
    client, sleeps = make_client(server.url)
    watcher = client.jobs.watch("j1", poll_interval=0.01)
    events = list(watcher)
    assert watcher.used == "poll"
    assert [s.path for s in server.seen[:2]] == ["/ws/jobs/j1", "/api/v1/jobs/j1/events"]
    assert [(e.type, e.status, e.progress) for e in events] == [
        ("snapshot", "running", 10),
        ("progress", "running", 60),
        ("status", "completed", 100),
    ]
    assert events[-1].final and all(e.transport == "poll" for e in events)
    assert sleeps == [0.01, 0.01]


def test_sse_is_used_when_the_websocket_is_refused_and_resumes_after_a_drop(server):  # noqa: F811
    first = sse(
        (7, "created", {"status": "pending", "progress": 0}),
        (8, "started", {"status": "running", "progress": 0}),
        (9, "progress", {"status": "running", "progress": 40, "throughput_bps": 2048.0}),
    )  # ... and the stream drops before the job ended
    second = (
        sse(
            (11, "progress", {"status": "running", "progress": 90}),
            (12, "completed", {"status": "completed", "progress": 100}),
        )
        + b'event: end\ndata: {"status": "completed"}\n\n'
    )
    bodies = iter([first, second])

    def handle(seen: Seen) -> Reply:
        if seen.path.startswith("/ws/"):
            return Reply(404, {"error": {"code": "NOT_FOUND", "message": "no such URL"}})
        return Reply(200, next(bodies), headers=SSE)

    server.handler = handle
    client, _ = make_client(server.url)
    watcher = client.jobs.watch("j1")
    events = list(watcher)
    assert watcher.used == "sse"
    resumed = server.seen[2]
    assert "Last-Event-ID" not in server.seen[1].headers
    assert resumed.headers["Last-Event-ID"] == "9"
    assert [e.event_id for e in events] == [7, 8, 9, 11, 12]
    assert [e.event for e in events] == ["created", "started", "progress", "progress", "completed"]
    assert events[2].type == "progress" and events[2].throughput_bps == 2048.0
    assert events[-1].final and not events[2].final


def test_a_404_from_stats_service_is_an_error_not_a_fallback(server):  # noqa: F811
    server.handler = lambda seen: Reply(
        404,
        {"error": {"code": "NOT_FOUND", "message": "Job j1 not found", "request_id": "r9"}},
        headers=STATS,
    )
    client, _ = make_client(server.url)
    with pytest.raises(NotFound) as caught:
        list(client.jobs.watch("j1", transports=("sse", "poll")))
    assert caught.value.request_id == "r9" and len(server.seen) == 1


def test_no_usable_transport_is_stream_unavailable(server):  # noqa: F811
    server.handler = lambda seen: Reply(502, "<html>bad gateway</html>")
    client, _ = make_client(server.url)
    with pytest.raises(StreamUnavailable):
        list(client.jobs.watch("j1", transports=("websocket", "sse")))


def test_a_watch_that_outlives_its_timeout_raises_timeout_error(server):  # noqa: F811
    server.handler = lambda seen: Reply(200, {"job": job("running", 5)})
    client, _ = make_client(server.url)
    client.http.sleep = lambda seconds: time.sleep(0.05)
    with pytest.raises(TimeoutError):
        list(client.jobs.watch("j1", transports=("poll",), timeout=0.2))


def test_poll_events_say_what_changed():
    first = events_from_poll(None, job("pending", 0))
    assert [e.type for e in first] == ["snapshot"]
    assert events_from_poll(job("pending", 0), job("pending", 0)) == []
    started = events_from_poll(job("pending", 0), job("running", 0))
    assert (started[0].type, started[0].event) == ("status", "started")
    ticked = events_from_poll(job("running", 0), job("running", 30))
    assert (ticked[0].type, ticked[0].progress) == ("progress", 30)
    again = events_from_poll(job("running", 30), {**job("running", 30), "attempt": 2})
    assert again[0].type == "status", "a new attempt is a state change"


def test_websocket_messages_and_what_ends_a_stream():
    file_done = event_from_ws({"type": "file", "path": "a.mov", "status": "done"}, "j1")
    assert isinstance(file_done, JobEvent) and file_done.status is None and not file_done.final
    snapshot = event_from_ws({"type": "snapshot", "status": "completed", "progress": 100}, "j1")
    assert snapshot is not None and snapshot.final
    tick = event_from_ws(
        {"type": "progress", "status": "running", "throughput": {"bytes_per_second": 5.0}}, "j1"
    )
    assert tick is not None and tick.throughput_bps == 5.0 and tick.event == "progress"
    assert event_from_ws({"type": "metrics"}, "j1") is None
