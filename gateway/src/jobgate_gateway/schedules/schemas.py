"""Request and response schemas of the canonical schedule API."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from jobgate import kinds, schedules
from jobgate_gateway.jobs.schemas import JobOptionsSchema

INTERVAL = validate.Range(schedules.MIN_INTERVAL_MINUTES, schedules.MAX_INTERVAL_MINUTES)
NAME = validate.Length(1, schedules.MAX_NAME_LENGTH)
CRON = validate.Length(1, schedules.MAX_CRON_LENGTH)
CRON_HELP = "five fields (minute hour day-of-month month day-of-week), UTC; runs >= 5 min apart"


class ScheduleCreateSchema(JobOptionsSchema):
    """`name`, `kind` and the timing, the options every job accepts, and the kind's own params
    (validated by the kind's contract, as `POST /api/v1/jobs` does)."""

    class Meta:
        unknown = INCLUDE

    name = fields.String(required=True, validate=NAME)
    kind = fields.String(required=True, metadata={"description": "a schedulable kind"})
    interval_minutes = fields.Integer(
        load_default=None, allow_none=True, validate=INTERVAL, metadata={"description": ">= 5"}
    )
    cron = fields.String(
        load_default=None, allow_none=True, validate=CRON, metadata={"description": CRON_HELP}
    )
    enabled = fields.Boolean(load_default=True)


class ScheduleUpdateSchema(JobOptionsSchema):
    """PATCH: only the fields sent change. Kind params sent are merged onto the stored ones
    (replacing them when `kind` changes); setting `interval_minutes` clears `cron` and the
    other way round; an option sent as null goes back to the platform default.
    Load it with `partial=True`, so no option default fills in what was not sent."""

    class Meta:
        unknown = INCLUDE

    name = fields.String(validate=NAME)
    kind = fields.String()
    interval_minutes = fields.Integer(allow_none=True, validate=INTERVAL)
    cron = fields.String(allow_none=True, validate=CRON, metadata={"description": CRON_HELP})
    enabled = fields.Boolean()


class ScheduleListQuerySchema(Schema):
    enabled = fields.Boolean()
    kind = fields.String(validate=validate.OneOf(kinds.names()))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


# --- responses -------------------------------------------------------------------------------


class ScheduleSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    owner_id = fields.String(required=True)
    params = fields.Dict(required=True)
    priority = fields.Integer(required=True, allow_none=True)
    max_attempts = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: the platform default"}
    )
    backoff = fields.String(required=True, allow_none=True)
    backoff_seconds = fields.Float(required=True, allow_none=True)
    interval_minutes = fields.Integer(required=True, allow_none=True)
    cron = fields.String(required=True, allow_none=True)
    enabled = fields.Boolean(required=True)
    next_run_at = fields.String(required=True, allow_none=True)
    last_run_at = fields.String(required=True, allow_none=True)
    total_runs = fields.Integer(required=True, metadata={"description": "jobs it made"})
    successful_runs = fields.Integer(required=True, metadata={"description": "completed"})
    failed_runs = fields.Integer(required=True, metadata={"description": "failed"})
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class ScheduleListSchema(Schema):
    schedules = fields.List(fields.Nested(ScheduleSchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)
