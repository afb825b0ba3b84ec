"""The internal `webhook` kind's API module: deliveries are made by the dispatcher
(`jobgate.webhooks`), never submitted, so there is no `submit` (`POST /api/v1/jobs` refuses
internal kinds); this module only adds a delivery's own fields to its job object."""

from __future__ import annotations

from typing import Any


def job_fields(job: dict[str, Any]) -> dict[str, Any]:
    """Which webhook and which event a delivery is for (`GET /api/v1/jobs?kind=webhook`)."""
    params = job.get("params") or {}
    return {"webhook_id": params.get("webhook_id"), "event_type": params.get("event_type")}
