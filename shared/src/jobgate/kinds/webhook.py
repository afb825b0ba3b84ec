"""The internal `webhook` kind: one delivery of one event to one webhook.

Deliveries are jobs so that they get the platform's retries with backoff and its dead-letter
queue (DESIGN.md, "Tasks and webhooks"). The dispatcher makes them from `job_events`; no
client submits or schedules one.
"""

from __future__ import annotations

import dataclasses

from marshmallow import Schema, fields

from jobgate.kinds.spec import KindSpec


class WebhookDeliveryParams(Schema):
    webhook_id = fields.UUID(required=True)
    event_id = fields.Integer(required=True, metadata={"description": "job_events.id"})
    event_type = fields.String(required=True, metadata={"example": "job.completed"})
    message_id = fields.String(required=True, metadata={"description": "webhook-id header"})
    payload = fields.Dict(required=True, metadata={"description": "the JSON body sent"})


@dataclasses.dataclass(frozen=True)
class WebhookSettings:
    webhook_allow_private: bool = False  # deliver to loopback and private addresses (tests)
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 6
    webhook_backoff_seconds: float = 5.0  # doubled per attempt, capped by JOB_BACKOFF_MAX_SECONDS
    webhook_dispatch_interval_s: float = 1.0  # the dispatcher also wakes on NOTIFY
    webhook_concurrency: int = 4  # deliveries at once per webhook worker
    webhook_max_per_owner: int = 20  # active webhooks per owner (each event fans out to all)


SPEC = KindSpec(
    name="webhook",
    description="Deliver a job event to a webhook (internal)",
    params=WebhookDeliveryParams,
    settings=WebhookSettings,
    schedulable=False,
    internal=True,
)
