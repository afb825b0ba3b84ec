"""Best-effort events on `jobgate.events` (`job.<kind>.<event>`, `worker.<kind>.heartbeat`).

Events feed live views (stats-service, webhooks); the DB stays the truth, so a lost
event costs freshness, never correctness — they are published without confirms.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from jobgate.broker import EVENTS_EXCHANGE, Publisher

log = logging.getLogger(__name__)


class EventEmitter:
    def __init__(self, publisher: Publisher | None) -> None:
        self.publisher = publisher

    def emit(self, routing_key: str, payload: dict[str, Any]) -> None:
        if self.publisher is None:
            return
        body = {**payload, "event": routing_key, "ts": dt.datetime.now(dt.UTC).isoformat()}
        try:
            self.publisher.publish(
                EVENTS_EXCHANGE, routing_key, _jsonable(body), {"delivery_mode": 1}, mandatory=False
            )
        except Exception as exc:  # noqa: BLE001 - events must never break a job
            log.debug("event %s not published: %s", routing_key, exc)

    def job(self, kind: str, event: str, job_id: str, data: dict[str, Any] | None = None) -> None:
        self.emit(f"job.{kind}.{event}", {"job_id": job_id, "kind": kind, **(data or {})})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
