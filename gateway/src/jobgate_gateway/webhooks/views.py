"""Webhook rows and delivery jobs -> canonical JSON (snake_case, ISO 8601 UTC times)."""

from __future__ import annotations

from typing import Any

from jobgate_gateway.timefmt import iso_ms


def webhook_to_dict(row: dict[str, Any], *, with_secret: bool = False) -> dict[str, Any]:
    """A webhook; its secret only when asked (the create and rotate answers)."""
    body = {
        "id": str(row["id"]),
        "owner_id": str(row["owner_id"]),
        "url": row["url"],
        "events": list(row["events"]),
        "description": row["description"],
        "active": row["active"],
        "created_at": iso_ms(row["created_at"]),
        "updated_at": iso_ms(row["updated_at"]),
    }
    if with_secret:
        body["secret"] = row["secret"]
    return body


def delivery_to_dict(job: dict[str, Any]) -> dict[str, Any]:
    """A delivery (a `webhook` job): what was sent, and how its attempts went."""
    params = job["params"] or {}
    details = job.get("details") or {}
    data = (params.get("payload") or {}).get("data") or {}
    return {
        "id": str(job["id"]),
        "webhook_id": str(params.get("webhook_id")),
        "event_id": params.get("event_id"),
        "event_type": params.get("event_type"),
        "message_id": params.get("message_id"),
        "job_id": data.get("job_id"),
        "status": job["status"],
        "attempts": job["attempt"],
        "max_attempts": job["max_attempts"],
        "last_status_code": details.get("last_status_code"),
        "last_error": details.get("last_error") or job["error"],
        "last_attempt_at": details.get("last_attempt_at"),
        "next_retry_at": iso_ms(job["next_attempt_at"]),
        "result": job["result"],
        "created_at": iso_ms(job["created_at"]),
        "completed_at": iso_ms(job["completed_at"]),
    }
