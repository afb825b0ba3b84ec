"""Best-effort events on `jobgate.events` (`job.<kind>.<event>`, `worker.<kind>.heartbeat`).

Events feed live views (stats-service, webhooks); the DB stays the truth, so a lost event
costs freshness, never correctness. They leave through a bounded queue and a sender
thread, without confirms: a slow or blocked broker never holds up a job or a heartbeat.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import threading
from typing import Any

from jobgate.broker import EVENTS_EXCHANGE, Publisher

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000


class EventEmitter:
    def __init__(self, publisher: Publisher | None) -> None:
        self.publisher = publisher
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def emit(self, routing_key: str, payload: dict[str, Any]) -> None:
        if self.publisher is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_loop, name="events", daemon=True)
            self._thread.start()
        body = {**payload, "event": routing_key, "ts": dt.datetime.now(dt.UTC).isoformat()}
        try:
            # Serialized now (a snapshot: the caller may change its dict afterwards), by the
            # C encoder: a cache job's batch of files is a few hundred values.
            self._queue.put_nowait((routing_key, _encode(body)))
        except queue.Full:
            self.dropped += 1

    def job(
        self,
        kind: str,
        event: str,
        job_id: str,
        data: dict[str, Any] | None = None,
        *,
        owner_id: str | None = None,
    ) -> None:
        """`job.<kind>.<event>`; with the owner, so stats-service can route it to the owner's
        streams without a database read."""
        head = {"job_id": job_id, "kind": kind}
        if owner_id is not None:
            head["owner_id"] = owner_id
        self.emit(f"job.{kind}.{event}", {**head, **(data or {})})

    def _send_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            routing_key, body = item
            try:
                self.publisher.publish(
                    EVENTS_EXCHANGE, routing_key, body, {"delivery_mode": 1}, mandatory=False
                )
            except Exception as exc:  # noqa: BLE001 - events must never break anything
                log.debug("event %s not published: %s", routing_key, exc)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (for up to `timeout` seconds), then close the connection."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        if self.publisher is not None:
            self.publisher.close()


def _encode(body: dict[str, Any]) -> bytes:
    """JSON; what JSON has no type for (a UUID, a datetime) is sent as its string."""
    return json.dumps(body, default=str).encode()
