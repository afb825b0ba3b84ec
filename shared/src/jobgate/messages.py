"""The job message: only `{job_id, kind, attempt}` — the worker loads the rest from the DB.

RabbitMQ carries work, not state (DESIGN.md guarantee 1), so a message can be
redelivered, duplicated or replayed from the dead-letter queue without harm.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any

CONTENT_TYPE = "application/json"


class PoisonMessage(ValueError):
    """A body no worker can act on; it goes straight to the dead-letter queue."""


@dataclasses.dataclass(frozen=True)
class JobMessage:
    job_id: str
    kind: str
    attempt: int

    def to_body(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "kind": self.kind, "attempt": self.attempt}

    @classmethod
    def from_body(cls, body: bytes) -> JobMessage:
        try:
            data = json.loads(body)
            job_id = str(uuid.UUID(str(data["job_id"])))
            kind = data["kind"]
            attempt = int(data.get("attempt", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise PoisonMessage(f"not a job message: {exc}") from exc
        if not isinstance(kind, str) or not kind:
            raise PoisonMessage("job message without a kind")
        return cls(job_id=job_id, kind=kind, attempt=attempt)


def job_message_properties(
    *,
    job_id: str,
    attempt: int,
    priority: int,
    owner_id: str,
    request_id: str | None,
    app_id: str,
    extra_headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Message properties an operator can read in the RabbitMQ console."""
    headers = {"x-request-id": request_id or "", "x-attempt": attempt, "x-owner": owner_id}
    headers.update(extra_headers or {})
    return {
        "message_id": f"{job_id}:{attempt}",
        "content_type": CONTENT_TYPE,
        "app_id": app_id,
        "timestamp": int(time.time()),
        "priority": priority,
        "delivery_mode": 2,
        "headers": headers,
    }
