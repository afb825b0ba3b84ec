"""The live streams: each route authenticates, subscribes to the hub with a renderer for its
seed's message shapes, and drains its own bounded queue to the client.

- `/ws/jobs/{job_id}` (seed 002's WebSocket, any kind): a snapshot, then progress ticks,
  per-file events of a cache job (seed 000), container events, state changes; closed (1000)
  once the job finishes.
- `/ws/jobs` (the dashboard's job list): every job of the caller (an admin's: every job),
  optionally of one `kind`: each state change (a new job's `created` included) and live
  progress ticks, so one stream keeps a whole list moving. Never closed by the server.
- `GET /api/v1/jobs/{job_id}/events`: Server-Sent Events replayed from `job_events` after
  `Last-Event-ID`, then live from the same table, so a reconnect loses nothing; with
  `?format=json` the job's timeline as one JSON document.
- `/ws/tasks` (seed 004): status updates of the caller's tasks (an admin's: every task).
- `/ws/metrics` (seed 004): a metrics snapshot on connect and every STATS_METRICS_SECONDS.
- `/api/ws/updates` (seed 003): `job_status` of container jobs, `container_event`,
  `system_metric`.
A user sees only their own jobs; an admin sees all (another user's job is a 404, as in the
gateway). Messages are rendered once per format and event, not once per client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from jobgate import jobs, kinds
from jobgate.errors import InvalidRequest, JobgateError, NotFound
from jobgate.identity import Principal
from jobgate.jobs import events as job_events
from jobgate.jobs.progress import progress
from jobgate.sizes import mib_per_second, readable_rate
from jobgate.timefmt import iso_ms, now_iso_ms
from jobgate_stats.hub import DROPPABLE, Event, Outgoing, Subscriber
from jobgate_stats.services import Services
from jobgate_stats.sources import ReaderKey, event_from_row
from jobgate_stats.web import deny, error_response, with_detail

log = logging.getLogger(__name__)

TIMELINE_MAX = 1000  # events per page of the JSON timeline and of an SSE replay
FINAL_HOLD_S = 2.0  # how long a job stream waits for the broker's last events (see `pump`)
COUNTERS = ("items_done", "items_failed", "items_total", "bytes_done", "bytes_total")


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), default=str)


def _reader(principal: Principal) -> ReaderKey:
    """Whose jobs and whose external workers a caller's numbers cover (None: all)."""
    return (None, None) if principal.is_admin else (principal.user_id, principal.user_id)


# --- how a job looks in an event ------------------------------------------------------


def job_progress(state: dict[str, Any]) -> dict[str, Any] | None:
    """`progress` (overall %) and `progress_detail` from an event's counters, if it has them."""
    if not all(key in state for key in COUNTERS):
        return None
    pct = progress({"progress_pct": state.get("progress_pct"), **state})
    return {
        "progress": pct["overall_pct"],
        "progress_detail": {
            **{key: state[key] for key in COUNTERS},
            "items_percentage": pct["files_pct"],
            "bytes_percentage": pct["size_pct"],
            "percentage": pct["overall_pct"],
            "current_item": state.get("current_item"),
        },
    }


def throughput(bps: Any) -> dict[str, Any] | None:
    if bps is None:
        return None
    return {"bytes_per_second": bps, "mbps": mib_per_second(bps), "readable": readable_rate(bps)}


def render_job_ws(event: Event) -> Outgoing | None:
    """`/ws/jobs/{id}`: every event of the job, one JSON object per message. Progress comes
    from the broker (the moment it is written); the table's copy of it is for SSE."""
    if event.source == "db" and event.name == "progress":
        return None
    if event.source == "broker" and event.terminal:
        # The worker's own word that it is done: it left after every tick and file event
        # of the attempt, so the held final state may now be sent (see `pump`).
        return Outgoing("", broker_done=True)
    data = event.data
    body: dict[str, Any] = {
        "type": "status",
        "event": event.name,
        "job_id": event.job_id,
        "kind": event.kind,
        "timestamp": event.ts or now_iso_ms(),
    }
    if event.name == "progress":
        body["type"] = "progress"
        body["status"] = "running"
        body.update(job_progress(data) or {})
        body["throughput"] = throughput(data.get("throughput_bps"))
    elif event.name == "file":
        body.update(_file_message(data))
    elif event.name == "files":
        # A cache job's files of one progress write: one `file` message each, as seed 000's
        # clients expect, sent one by one from a single queue entry (see `pump`).
        body["event"] = "file"
        lines = [_dumps({**body, **_file_message(f)}) for f in data.get("files") or ()]
        return Outgoing("\n".join(lines), droppable=True) if lines else None
    elif event.name == "container":
        body.update(type="container_event", container=_container_event(event))
    elif event.source == "db":
        body.update(status=data.get("status"), error=data.get("error"), event_id=event.id)
        body.update(job_progress(data) or {})
    else:
        return None
    return Outgoing(
        _dumps(body),
        droppable=event.name in DROPPABLE,
        event_id=event.id,
        closes=event.terminal and event.source == "db",
        hold=event.terminal and event.source == "db",
    )


def _file_message(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "file",
        "path": data.get("path"),
        "size": data.get("size"),
        "status": data.get("status"),
        "error": data.get("error"),
    }


def _container_event(event: Event) -> dict[str, Any]:
    data = event.data
    body = {
        "container_id": data.get("container_id"),
        "event": data.get("action"),
        "timestamp": event.ts or now_iso_ms(),
        "job_id": event.job_id,
    }
    if "exit_code" in data:
        body["exit_code"] = data["exit_code"]
    return body


def sse_payload(event: Event) -> dict[str, Any]:
    """The `data` of an SSE message and an item of the JSON timeline."""
    body = {
        "event_id": event.id,
        "job_id": event.job_id,
        "kind": event.kind,
        "event": event.name,
        "created_at": event.ts,
        **event.data,
    }
    body.update(job_progress(event.data) or {})
    return body


def render_sse(event: Event) -> Outgoing | None:
    if event.source != "db":
        return None
    return Outgoing(
        _dumps(sse_payload(event)),
        droppable=False,  # SSE resumes from the database: an overflow closes, it never skips
        event_id=event.id,
        event=event.name,
        closes=event.terminal,
    )


def render_jobs_ws(event: Event) -> Outgoing | None:
    """`/ws/jobs`: state changes from the table (every one, in order, with the counters)
    and progress ticks from the broker (live, droppable); per-file and container events are
    left to the job's own stream. A tick may arrive after its job's final state (the two
    sources race; see `pump`): a client ignores ticks of a job it knows has finished."""
    data = event.data
    base = {"job_id": event.job_id, "kind": event.kind, "owner_id": event.owner_id}
    if event.name == "progress" and event.source == "broker":
        body: dict[str, Any] = {
            "type": "progress",
            **base,
            "status": "running",
            "timestamp": event.ts or now_iso_ms(),
            **(job_progress(data) or {}),
            "throughput": throughput(data.get("throughput_bps")),
        }
        return Outgoing(_dumps(body), droppable=True)
    if event.source != "db" or event.name == "progress":
        return None
    body = {
        "type": "status",
        "event": event.name,
        **base,
        "status": data.get("status"),
        "error": data.get("error"),
        "attempt": data.get("attempt"),
        "name": data.get("name"),
        "event_id": event.id,
        "timestamp": event.ts,
        **(job_progress(data) or {}),
    }
    return Outgoing(_dumps(body), event_id=event.id)


SEED004_STATUS = {"retrying": "pending"}


def render_task_ws(event: Event) -> Outgoing | None:
    """`/ws/tasks`: a task's state changes, in seed 004's words."""
    if event.kind != "task" or event.source != "db" or event.name == "progress":
        return None
    data = event.data
    status = data.get("status")
    body = {
        "type": "task_update",
        "event": event.name,
        "task_id": event.job_id,
        "id": event.job_id,
        "name": data.get("name"),
        "status": SEED004_STATUS.get(status, status),
        "attempt": data.get("attempt"),
        "error": data.get("error"),
        "timestamp": event.ts,
    }
    return Outgoing(_dumps(body), event_id=event.id)


SEED003_STATUS = {"pending": "queued", "retrying": "queued"}


def render_updates_ws(event: Event) -> Outgoing | None:
    """`/api/ws/updates` (seed 003): container jobs' status and their containers' events."""
    if event.name == "system_metric":
        return Outgoing(
            _dumps({"type": "system_metric", "data": event.data["system"]}), droppable=True
        )
    if event.kind != "container":
        return None
    if event.name == "container" and event.source == "broker":
        return Outgoing(_dumps({"type": "container_event", "data": _container_event(event)}))
    if event.source != "db" or event.name == "progress":
        return None
    status = event.data.get("status")
    pct = job_progress(event.data)
    body = {
        "job_id": event.job_id,
        "status": SEED003_STATUS.get(status, status),
        "progress": pct["progress"] if pct else (100 if status == "completed" else 0),
        "event": event.name,
        "error": event.data.get("error"),
        "timestamp": event.ts,
    }
    return Outgoing(_dumps({"type": "job_status", "data": body}), event_id=event.id)


def metrics_renderer(reader: ReaderKey) -> Callable[[Event], Outgoing | None]:
    """`/ws/metrics`: the caller's own dashboard numbers and the host's, per snapshot."""

    def render(event: Event) -> Outgoing | None:
        if event.name != "metrics":
            return None
        board = event.data["dashboards"].get(reader)
        body = {
            "type": "metrics",
            "timestamp": event.ts,
            **(board or {}),
            "system": event.data["system"],
        }
        return Outgoing(_dumps(body), droppable=True)

    return render


# --- the routes -----------------------------------------------------------------------


def _job_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidRequest(
            "Invalid job ID format", details={"field": "job_id", "reason": "Not a valid UUID"}
        ) from None


async def visible_job(services: Services, principal: Principal, raw_id: str) -> dict[str, Any]:
    """The job, if the caller may see it; else 404 (another user's job does not exist)."""
    job_id = _job_id(raw_id)

    def load() -> dict[str, Any] | None:
        with services.database.transaction() as conn:
            return jobs.get_job(conn, job_id=job_id)

    job = await anyio.to_thread.run_sync(load)
    if job is None or not (principal.is_admin or str(job["owner_id"]) == principal.user_id):
        raise NotFound(f"Job {job_id} not found", details={"job_id": job_id})
    return job


def snapshot_message(job: dict[str, Any]) -> str:
    body = {
        "type": "snapshot",
        "job_id": str(job["id"]),
        "kind": job["kind"],
        "status": job["status"],
        "attempt": job["attempt"],
        "error": job["error"],
        "timestamp": now_iso_ms(),
        "updated_at": iso_ms(job["updated_at"]),
    }
    body.update(job_progress(job) or {})
    return _dumps(body)


async def pump(websocket: WebSocket, subscriber: Subscriber, send_timeout: float) -> None:
    """Send what the subscriber's queue holds until the client leaves, the job ends, or
    the client falls too far behind (closed with 1013, "try again later"). A send that
    takes longer than `send_timeout` (a client that stopped reading) ends the stream: a
    watchdog checks once a second, rather than a cancel scope around every message."""
    loop = asyncio.get_running_loop()
    sending_since: float | None = None

    async def reader() -> None:  # the client's messages are ignored; its leaving is not
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    async def send(text: str) -> None:
        """Send a rendered message; one holding several lines (a cache job's `files`)
        is several WebSocket messages. Compact JSON never holds a raw newline."""
        nonlocal sending_since
        for line in text.split("\n"):
            sending_since = loop.time()
            await websocket.send_text(line)
        sending_since = None

    async def next_message() -> Outgoing | None:
        """The next message to send. A final state read from the table is held until the
        worker's own announcement that it is done arrives from the broker (at most
        FINAL_HOLD_S): the two sources race, and the state must not overtake the attempt's
        last ticks and file events, which travel on the broker."""
        message = await subscriber.get()
        if message is None or not message.hold:
            return message
        deadline = loop.time() + FINAL_HOLD_S
        while (left := deadline - loop.time()) > 0:
            try:
                ahead = await asyncio.wait_for(subscriber.get(), left)
            except TimeoutError:
                break
            if ahead is None or ahead.broker_done:
                break
            if ahead.text and not ahead.hold:
                await send(ahead.text)
        return message

    async def writer() -> None:
        while True:
            message = await next_message()
            if message is None:
                await websocket.close(code=1013, reason="client too slow")
                return
            if message.text:
                await send(message.text)
            if message.closes:
                await websocket.close(code=1000)
                return

    async def watchdog() -> None:
        while sending_since is None or loop.time() - sending_since < send_timeout:
            await asyncio.sleep(1.0)
        log.info("stream closed: one message took over %.0f s to send", send_timeout)

    async with anyio.create_task_group() as group:

        async def until_done(part: Callable[[], Any]) -> None:
            try:
                await part()
            finally:
                group.cancel_scope.cancel()

        for part in (reader, writer, watchdog):
            group.start_soon(until_done, part)


@dataclasses.dataclass
class Stream:
    """What a WebSocket route subscribes to. `prepare` runs once the subscriber is in the
    hub (so nothing that happens meanwhile is missed), may still refuse the client (a job
    it may not see), and gives the first messages and whether the stream is already over
    (a finished job)."""

    render: Callable[[Event], Outgoing | None]
    where: dict[str, Any]
    prepare: Callable[[], Awaitable[tuple[list[str], bool]]] | None = None
    on_close: Callable[[], None] | None = None
    accepts: Callable[[Event], bool] | None = None  # which of the hub's events it takes


async def serve_websocket(
    websocket: WebSocket, open_stream: Callable[[Principal], Awaitable[Stream]]
) -> None:
    """Authenticate, subscribe, prepare, accept, send the first messages, then pump."""
    services: Services = websocket.app.state.services
    settings = services.settings
    try:
        principal = await services.gate.principal(websocket)
        stream = await open_stream(principal)
        release = services.gate.acquire(principal)
    except JobgateError as exc:
        await deny(websocket, exc)
        return
    subscriber = Subscriber(
        stream.render,
        limit=settings.stats_client_queue,
        **({"accepts": stream.accepts} if stream.accepts else {}),
    )
    services.hub.add(subscriber, **stream.where)
    try:
        try:
            first, over = await stream.prepare() if stream.prepare else ([], False)
        except JobgateError as exc:
            await deny(websocket, exc)
            return
        await websocket.accept()
        for text in first:
            await websocket.send_text(text)
        if over:
            await websocket.close(code=1000)
            return
        await pump(websocket, subscriber, settings.stats_send_timeout_seconds)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client left
    finally:
        services.hub.remove(subscriber)
        release()
        if stream.on_close is not None:
            stream.on_close()


def _mine(principal: Principal) -> dict[str, Any]:
    """Subscribe to the caller's jobs: an admin's are everybody's."""
    return {"everything": True} if principal.is_admin else {"owner_id": principal.user_id}


async def ws_job(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services

    async def open_stream(principal: Principal) -> Stream:
        job_id = _job_id(websocket.path_params["job_id"])

        async def prepare() -> tuple[list[str], bool]:
            job = await visible_job(services, principal, job_id)
            return [snapshot_message(job)], job["status"] in jobs.TERMINAL

        return Stream(render_job_ws, {"job_id": job_id}, prepare)

    await serve_websocket(websocket, open_stream)


def _kind_filter(websocket: WebSocket) -> str | None:
    kind = websocket.query_params.get("kind") or None
    if kind is not None and kind not in kinds.names():
        raise InvalidRequest(
            f"Unknown job kind '{kind[:40]}'",
            details={"field": "kind", "supported": list(kinds.names())},
        )
    return kind


async def ws_jobs(websocket: WebSocket) -> None:
    """Every job of the caller on one stream: a `subscribed` message once the stream is in
    the hub (load the list after it, and nothing is missed), then `status` and `progress`
    messages. Internal kinds' jobs (webhook deliveries) write no state-change rows; their
    ticks are not shown unless `kind` names them."""

    async def open_stream(principal: Principal) -> Stream:
        kind = _kind_filter(websocket)
        internal = frozenset(spec.name for spec in kinds.specs() if spec.internal)

        def accepts(event: Event) -> bool:
            return event.kind == kind if kind is not None else event.kind not in internal

        async def prepare() -> tuple[list[str], bool]:
            hello = {
                "type": "subscribed",
                "scope": "all" if principal.is_admin else "own",
                "kind": kind,
                "timestamp": now_iso_ms(),
            }
            return [_dumps(hello)], False

        return Stream(render_jobs_ws, _mine(principal), prepare, accepts=accepts)

    await serve_websocket(websocket, open_stream)


async def ws_tasks(websocket: WebSocket) -> None:
    async def open_stream(principal: Principal) -> Stream:
        return Stream(render_task_ws, _mine(principal))

    await serve_websocket(websocket, open_stream)


async def ws_updates(websocket: WebSocket) -> None:
    async def open_stream(principal: Principal) -> Stream:
        return Stream(render_updates_ws, {"ticks": True, **_mine(principal)})

    await serve_websocket(websocket, open_stream)


async def ws_metrics(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services

    async def open_stream(principal: Principal) -> Stream:
        reader = _reader(principal)
        render = metrics_renderer(reader)

        async def prepare() -> tuple[list[str], bool]:
            first = render(await services.sampler.snapshot({reader}))
            return ([first.text] if first else []), False

        services.sampler.listen(reader)
        return Stream(render, {"ticks": True}, prepare, lambda: services.sampler.forget(reader))

    await serve_websocket(websocket, open_stream)


# --- Server-Sent Events and the timeline ----------------------------------------------


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "0"
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidRequest(
            "Last-Event-ID must be an event id (a whole number)",
            details={"field": "Last-Event-ID", "value": raw[:40]},
        )
    return value


def _wants_json(request: Request) -> bool:
    if request.query_params.get("format") == "json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/event-stream" not in accept


async def read_events(services: Services, job_id: str, after_id: int) -> list[Event]:
    def load() -> list[dict[str, Any]]:
        with services.database.transaction() as conn:
            return job_events.for_job(conn, job_id=job_id, after_id=after_id, limit=TIMELINE_MAX)

    return [event_from_row(row) for row in await anyio.to_thread.run_sync(load)]


async def job_events_route(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        principal = await services.gate.principal(request)
        job = await visible_job(services, principal, request.path_params["job_id"])
        after_id = _last_event_id(request)
        if _wants_json(request):
            events = await read_events(services, str(job["id"]), after_id)
            return JSONResponse(
                {
                    "job_id": str(job["id"]),
                    "status": job["status"],
                    "events": [sse_payload(e) for e in events],
                    "last_event_id": events[-1].id if events else after_id,
                    "more": len(events) == TIMELINE_MAX,
                }
            )
        release = services.gate.acquire(principal)
    except JobgateError as exc:
        return error_response(exc, with_detail)
    subscriber = Subscriber(render_sse, limit=services.settings.stats_client_queue)
    services.hub.add(subscriber, job_id=str(job["id"]))
    return EventSourceResponse(
        _sse(services, subscriber, release, str(job["id"]), after_id),
        ping=services.settings.stats_ping_seconds,
        send_timeout=services.settings.stats_send_timeout_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    services: Services,
    subscriber: Subscriber,
    release: Callable[[], None],
    job_id: str,
    after_id: int,
) -> AsyncIterator[ServerSentEvent]:
    """Replay from the table after `after_id`, then follow the hub; live messages already
    replayed (a job's ids only grow) are skipped. Ends after the job's final state."""
    last = after_id
    try:
        while True:  # the replay, page by page
            events = await read_events(services, job_id, last)
            for event in events:
                last = event.id or last
                yield ServerSentEvent(
                    _dumps(sse_payload(event)), event=event.name, id=str(event.id)
                )
            if len(events) < TIMELINE_MAX:
                break
        if events and events[-1].terminal:
            yield _end(events[-1].name)
            return
        if not events and await _finished(services, job_id, after_id):
            yield _end("finished")
            return
        while True:
            message = await subscriber.get()
            if message is None:
                return  # too far behind: the client reconnects with Last-Event-ID
            if message.event_id is not None and message.event_id <= last:
                continue
            last = message.event_id or last
            yield ServerSentEvent(message.text, event=message.event, id=str(message.event_id))
            if message.closes:
                yield _end(message.event or "finished")
                return
    except asyncio.CancelledError:
        raise
    finally:
        services.hub.remove(subscriber)
        release()


def _end(status: str) -> ServerSentEvent:
    """The last message of a stream: the job is over, reconnecting would replay nothing."""
    return ServerSentEvent(_dumps({"status": status}), event="end")


async def _finished(services: Services, job_id: str, after_id: int) -> bool:
    """Nothing after `after_id`: is the job over (its last event a final state)?"""

    def load() -> bool:
        with services.database.transaction() as conn:
            job = jobs.get_job(conn, job_id=job_id)
        return job is None or job["status"] in jobs.TERMINAL

    return await anyio.to_thread.run_sync(load)
