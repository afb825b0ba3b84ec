"""A cache job's per-file events travel in batches (`job.cache.files`, one per progress
write) and reach seed 000's WebSocket clients as one `file` message per file, as before."""

from __future__ import annotations

import asyncio
import json

from jobgate_stats.hub import Event, Outgoing, Subscriber
from jobgate_stats.sources import event_from_message
from jobgate_stats.streams import pump, render_job_ws

FILES = [
    {"path": "a/one.mov", "size": 10, "status": "done", "error": None},
    {"path": 'b/"two"\nlines.mov', "size": 20, "status": "failed", "error": "No such file"},
]


def broker_event(name: str, data: dict) -> Event:
    body = {"job_id": "j1", "kind": "cache", "owner_id": "u1", "ts": "2026-11-26T00:00:00Z"}
    event = event_from_message(f"job.cache.{name}", {**body, **data})
    assert event is not None
    return event


def test_a_batch_renders_as_the_messages_of_its_files_one_per_line():
    batch = render_job_ws(broker_event("files", {"files": FILES}))
    singles = [render_job_ws(broker_event("file", f)).text for f in FILES]
    assert batch is not None and batch.droppable
    assert batch.text.split("\n") == singles
    assert [json.loads(line)["path"] for line in singles] == [f["path"] for f in FILES]
    assert {json.loads(line)["type"] for line in singles} == {"file"}
    assert render_job_ws(broker_event("files", {"files": []})) is None


class FakeWebSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def receive(self) -> dict:
        await asyncio.sleep(3600)
        return {"type": "websocket.disconnect"}

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = code


def test_the_stream_sends_each_file_of_a_batch_as_its_own_message():
    async def go() -> FakeWebSocket:
        ws = FakeWebSocket()
        subscriber = Subscriber(render_job_ws, limit=10)
        subscriber.offer(render_job_ws(broker_event("files", {"files": FILES})))
        subscriber.offer(Outgoing('{"type":"status"}', closes=True))
        await asyncio.wait_for(pump(ws, subscriber, send_timeout=10), 5)
        return ws

    ws = asyncio.run(go())
    messages = [json.loads(text) for text in ws.sent]
    assert [m["type"] for m in messages] == ["file", "file", "status"]
    assert [m["path"] for m in messages[:2]] == [f["path"] for f in FILES]
    assert messages[1]["error"] == "No such file" and ws.closed == 1000
