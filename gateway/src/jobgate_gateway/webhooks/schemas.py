"""Request and response schemas of the canonical webhook API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from jobgate import webhooks
from jobgate.jobs import STATUSES

URL = validate.Length(1, webhooks.MAX_URL_LENGTH)
DESCRIPTION = validate.Length(0, webhooks.MAX_DESCRIPTION_LENGTH)
EVENTS_HELP = (
    f"event types ({', '.join(webhooks.EVENT_TYPES)}) or patterns ({', '.join(webhooks.PATTERNS)})"
)
URL_HELP = "http(s); public addresses only unless WEBHOOK_ALLOW_PRIVATE"


class WebhookCreateSchema(Schema):
    url = fields.String(required=True, validate=URL, metadata={"description": URL_HELP})
    events = fields.List(
        fields.String(validate=validate.Length(1, 100)),
        required=True,
        validate=validate.Length(1, webhooks.MAX_SUBSCRIPTIONS),
        metadata={"description": EVENTS_HELP, "example": ["job.completed", "job.failed"]},
    )
    description = fields.String(load_default=None, allow_none=True, validate=DESCRIPTION)
    active = fields.Boolean(load_default=True)


class WebhookUpdateSchema(Schema):
    """PATCH: only the fields sent change."""

    url = fields.String(validate=URL, metadata={"description": URL_HELP})
    events = fields.List(
        fields.String(validate=validate.Length(1, 100)),
        validate=validate.Length(1, webhooks.MAX_SUBSCRIPTIONS),
        metadata={"description": EVENTS_HELP},
    )
    description = fields.String(allow_none=True, validate=DESCRIPTION)
    active = fields.Boolean()


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


class DeliveryListQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(STATUSES))


# --- responses -------------------------------------------------------------------------------


class WebhookSchema(Schema):
    id = fields.String(required=True)
    owner_id = fields.String(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    description = fields.String(required=True, allow_none=True)
    active = fields.Boolean(required=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class WebhookWithSecretSchema(WebhookSchema):
    secret = fields.String(
        required=True,
        metadata={"description": "whsec_…: the signing secret, shown only in this answer"},
    )


class WebhookListSchema(Schema):
    webhooks = fields.List(fields.Nested(WebhookSchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class DeliverySchema(Schema):
    id = fields.String(required=True, metadata={"description": "the delivery's job id"})
    webhook_id = fields.String(required=True)
    event_id = fields.Integer(required=True)
    event_type = fields.String(required=True)
    message_id = fields.String(required=True, metadata={"description": "the webhook-id header"})
    job_id = fields.String(required=True, metadata={"description": "the job the event is about"})
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    attempts = fields.Integer(required=True)
    max_attempts = fields.Integer(required=True)
    last_status_code = fields.Integer(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    last_attempt_at = fields.String(required=True, allow_none=True)
    next_retry_at = fields.String(required=True, allow_none=True)
    result = fields.Dict(required=True, allow_none=True)
    created_at = fields.String(required=True)
    completed_at = fields.String(required=True, allow_none=True)


class DeliveryListSchema(Schema):
    deliveries = fields.List(fields.Nested(DeliverySchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)
