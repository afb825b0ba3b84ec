"""Following a job live: the WebSocket `/ws/jobs/{id}` first, else Server-Sent Events
(`GET /api/v1/jobs/{id}/events`, resumed with `Last-Event-ID`), else polling
`GET /api/v1/jobs/{id}` — every transport yields the same `JobEvent`s until the job ends.

A transport is skipped when it is not there: the connection is refused, the edge answers
502/503/504 (stats-service down), 429 (too many streams), or a 404 that stats-service did
not write (talking straight to the gateway, which has no stream routes). stats-service marks
its answers with `X-Jobgate-Service: stats`, so its own 404 (no such job, or not yours) is
an error, not a reason to fall back. A stream that drops before the job ended is opened
again (the WebSocket sends a fresh snapshot, SSE resumes after the last event id), a few
times, then the next transport takes over from there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
import sseclient
from urllib3.exceptions import HTTPError as Urllib3Error
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from jobgate_client.errors import ConnectionFailed, JobgateError, from_parts, from_response
from jobgate_client.models import TERMINAL, JobEvent
from jobgate_client.transport import HttpTransport

log = logging.getLogger(__name__)

TRANSPORTS = ("websocket", "sse", "poll")
RECONNECTS = 3  # a dropped stream is opened again this many times before the next transport
UNAVAILABLE = frozenset({429, 502, 503, 504})
SSE_READ_TIMEOUT = 90.0  # stats-service comments every 20 s on an idle stream
STATUS_EVENT = {"pending": "created", "running": "started"}


class StreamUnavailable(Exception):
    """This transport cannot be used here; the next one is tried."""


@dataclasses.dataclass
class _State:
    """What one watch has seen, so a later connection or transport resumes there."""

    last_event_id: int | None = None
    deadline: float | None = None

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError("the job did not end in time")

    def remaining(self, cap: float) -> float:
        if self.deadline is None:
            return cap
        return max(0.1, min(cap, self.deadline - time.monotonic()))


def _from_stats(headers: Mapping[str, str]) -> bool:
    return (headers.get("X-Jobgate-Service") or headers.get("x-jobgate-service")) == "stats"


def _event(
    type_: str, job_id: str, transport: str, data: dict[str, Any], **kwargs: Any
) -> JobEvent:
    detail = data.get("progress_detail")
    return JobEvent(
        type=type_,
        job_id=job_id,
        transport=transport,
        progress=data.get("progress"),
        progress_detail=detail if isinstance(detail, dict) else None,
        error=data.get("error"),
        data=data,
        **kwargs,
    )


def event_from_ws(message: dict[str, Any], job_id: str) -> JobEvent | None:
    """A `/ws/jobs/{id}` message as a JobEvent (unknown message types are skipped)."""
    kind = message.get("type")
    if kind in ("file", "container_event"):
        return JobEvent(type=kind, job_id=job_id, transport="websocket", data=message)
    if kind not in ("snapshot", "progress", "status"):
        return None
    throughput = message.get("throughput")
    bps = throughput.get("bytes_per_second") if isinstance(throughput, dict) else None
    return _event(
        kind,
        job_id,
        "websocket",
        message,
        status=message.get("status"),
        event=message.get("event") or ("progress" if kind == "progress" else None),
        throughput_bps=bps,
        event_id=message.get("event_id"),
    )


def event_from_sse(name: str, data: dict[str, Any], event_id: str | None, job_id: str) -> JobEvent:
    """An SSE message (`event:` = the timeline's name) as a JobEvent."""
    return _event(
        "progress" if name == "progress" else "status",
        job_id,
        "sse",
        data,
        status=data.get("status"),
        event=name,
        throughput_bps=data.get("throughput_bps"),
        event_id=int(event_id) if event_id and event_id.isdigit() else data.get("event_id"),
    )


def events_from_poll(previous: dict[str, Any] | None, job: dict[str, Any]) -> list[JobEvent]:
    """What changed between two reads of a job, as events: a snapshot first, then a
    `status` event for a new status and a `progress` event for new counters."""
    throughput = job.get("throughput")
    bps = throughput.get("bytes_per_second") if isinstance(throughput, dict) else None
    common = {"throughput_bps": bps, "status": job.get("status")}
    job_id = str(job.get("id"))
    if previous is None:
        return [_event("snapshot", job_id, "poll", job, **common)]
    if job.get("status") != previous.get("status") or job.get("attempt") != previous.get("attempt"):
        name = STATUS_EVENT.get(job["status"], job["status"])
        return [_event("status", job_id, "poll", job, event=name, **common)]
    if job.get("progress_detail") != previous.get("progress_detail") or job.get(
        "progress"
    ) != previous.get("progress"):
        return [_event("progress", job_id, "poll", job, event="progress", **common)]
    return []


class Watcher:
    """Yields a job's events over the first transport that works (see the module's doc)."""

    def __init__(
        self,
        transport: HttpTransport,
        job_id: str,
        *,
        transports: tuple[str, ...] = TRANSPORTS,
        poll_interval: float = 0.5,
        timeout: float | None = None,
    ) -> None:
        unknown = set(transports) - set(TRANSPORTS)
        if unknown or not transports:
            raise ValueError(f"transports must be some of {TRANSPORTS}, got {transports}")
        self.http = transport
        self.job_id = job_id
        self.transports = transports
        self.poll_interval = poll_interval
        self.state = _State(deadline=time.monotonic() + timeout if timeout else None)
        self.used: str | None = None  # the transport in use (or that ended the stream)

    def __iter__(self) -> Iterator[JobEvent]:
        streams: dict[str, Callable[[], Iterator[JobEvent]]] = {
            "websocket": self._websocket,
            "sse": self._sse,
            "poll": self._poll,
        }
        reasons = []
        for name in self.transports:
            self.used = name
            try:
                yield from streams[name]()
                return
            except StreamUnavailable as exc:
                log.debug("%s unavailable for job %s: %s", name, self.job_id, exc)
                reasons.append(f"{name}: {exc}")
        raise StreamUnavailable("; ".join(reasons))

    def _reconnect(self, failures: int, why: object) -> int:
        """Count one more dropped stream; give up on this transport after RECONNECTS."""
        self.state.check_deadline()
        if failures >= RECONNECTS:
            raise StreamUnavailable(f"dropped {failures + 1} times: {why}")
        self.http.sleep(self.http.backoff_delay(failures))
        return failures + 1

    # --- WebSocket ---------------------------------------------------------------------

    def _websocket(self) -> Iterator[JobEvent]:
        base = self.http.base_url
        url = "ws" + base[4:] if base.startswith("http") else base
        url = f"{url}/ws/jobs/{self.job_id}"
        failures = 0
        refreshed = False
        connected = False
        while True:
            self.state.check_deadline()
            try:
                ws = connect(
                    url,
                    additional_headers=self.http.auth_headers(),
                    open_timeout=min(10.0, self.http.timeout),
                    close_timeout=2.0,
                    user_agent_header=self.http.session.headers.get("User-Agent"),
                )
            except InvalidStatus as exc:
                response = exc.response
                status = response.status_code
                token = self.http.token
                if status == 401 and self.http.can_refresh and not refreshed:
                    refreshed = True
                    self.http.refresh(used_token=token)
                    continue
                if _from_stats(response.headers) and status not in UNAVAILABLE:
                    raise from_parts(status, response.headers, response.body) from None
                raise StreamUnavailable(f"HTTP {status}") from None
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                if not connected:
                    raise StreamUnavailable(str(exc) or type(exc).__name__) from None
                failures = self._reconnect(failures, exc)
                continue
            connected = True
            with ws:
                try:
                    while True:
                        try:
                            raw = ws.recv(timeout=self.state.remaining(1.0))
                        except TimeoutError:
                            self.state.check_deadline()
                            continue
                        try:
                            message = json.loads(raw)
                        except ValueError:
                            continue
                        event = event_from_ws(message, self.job_id)
                        if event is None:
                            continue
                        if event.event_id is not None:
                            self.state.last_event_id = event.event_id
                        yield event
                        if event.final:
                            return
                except ConnectionClosed as exc:
                    failures = self._reconnect(failures, exc)

    # --- Server-Sent Events ----------------------------------------------------------

    def _sse(self) -> Iterator[JobEvent]:
        path = f"/api/v1/jobs/{self.job_id}/events"
        failures = 0
        connected = False
        while True:
            self.state.check_deadline()
            headers = {"Accept": "text/event-stream"}
            if self.state.last_event_id is not None:
                headers["Last-Event-ID"] = str(self.state.last_event_id)
            try:
                response = self.http.request(
                    "GET",
                    path,
                    headers=headers,
                    stream=True,
                    timeout=(min(10.0, self.http.timeout), self.state.remaining(SSE_READ_TIMEOUT)),
                    retries=0,
                    raise_for_status=False,
                )
            except ConnectionFailed as exc:
                if not connected:
                    raise StreamUnavailable(str(exc)) from None
                failures = self._reconnect(failures, exc)
                continue
            if response.status_code >= 400:
                if _from_stats(response.headers) and response.status_code not in UNAVAILABLE:
                    error: JobgateError = from_response(response)
                    response.close()
                    raise error
                response.close()
                raise StreamUnavailable(f"HTTP {response.status_code}")
            if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
                response.close()
                raise StreamUnavailable("not an event stream")
            connected = True
            try:
                client = sseclient.SSEClient(_ResponseSource(response))
                for message in client.events():
                    if message.event == "end":
                        return
                    try:
                        data = json.loads(message.data)
                    except ValueError:
                        continue
                    event = event_from_sse(message.event, data, message.id, self.job_id)
                    if event.event_id is not None:
                        self.state.last_event_id = event.event_id
                    yield event
                    if event.final:
                        return
                failures = self._reconnect(failures, "the stream ended early")
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                Urllib3Error,
            ) as exc:
                failures = self._reconnect(failures, exc)
            finally:
                response.close()

    # --- polling ---------------------------------------------------------------------

    def _poll(self) -> Iterator[JobEvent]:
        previous: dict[str, Any] | None = None
        while True:
            self.state.check_deadline()
            job = self.http.json("GET", f"/api/v1/jobs/{self.job_id}")["job"]
            yield from events_from_poll(previous, job)
            previous = job
            if job.get("status") in TERMINAL:
                return
            self.http.sleep(self.poll_interval)


class _ResponseSource:
    """A streamed response as sseclient's event source: its bytes as they arrive."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response

    def __iter__(self) -> Iterator[bytes]:
        return self.response.iter_content(chunk_size=None)

    def close(self) -> None:
        self.response.close()
