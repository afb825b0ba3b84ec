"""Request and response schemas of the canonical job API."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from jobgate import kinds
from jobgate.jobs import COUNT_CAP, SORTABLE, STATUSES, Cursor, decode_cursor
from jobgate.web import UtcDateTime
from jobgate_gateway.files.resources import FileSchema


class JobOptionsSchema(Schema):
    """Options every kind accepts: scheduling priority and the retry policy."""

    priority = fields.Integer(load_default=5, validate=validate.Range(0, 9))
    max_attempts = fields.Integer(load_default=None, validate=validate.Range(1, 20))
    backoff = fields.String(load_default=None, validate=validate.OneOf(["fixed", "exponential"]))
    backoff_seconds = fields.Float(load_default=None, validate=validate.Range(0, 3600))


class JobCreateSchema(Schema):
    """`kind` plus that kind's parameters; the kind's own schema validates the rest."""

    class Meta:
        unknown = INCLUDE

    kind = fields.String(
        metadata={"description": "a registered kind; without it, a body with `mode` is a scrape"}
    )


BATCH_MAX = 1000  # jobs in one `POST /api/v1/jobs/batch`


class JobBatchItemOptionsSchema(JobOptionsSchema):
    """A batch item's options: every job's, plus its own idempotency key."""

    idempotency_key = fields.String(
        validate=[validate.Length(1, 255), validate.Regexp(r"^[ -~]+$")],
        metadata={"description": "the same owner and key answer the first job (created false)"},
    )


class JobBatchCreateSchema(Schema):
    """`{"jobs": [...]}`: each item is a `POST /api/v1/jobs` body (the route checks each)."""

    jobs = fields.List(fields.Dict(), required=True, validate=validate.Length(1, BATCH_MAX))


def kind_request_schemas(
    common: type[Schema], *, suffix: str, schedulable_only: bool = False
) -> dict[str, type[Schema]]:
    """Per kind, a documented request body: `common`'s fields, `kind` fixed to the kind, and
    the kind's own params (its contract in `jobgate.kinds`); for the OpenAPI `oneOf`."""
    schemas = {}
    for spec in kinds.specs():
        if spec.internal or (schedulable_only and not spec.schedulable):
            continue  # internal kinds (webhook deliveries) are made by the platform only
        declared = {
            **common._declared_fields,
            "kind": fields.String(required=True, validate=validate.OneOf([spec.name])),
            **spec.params._declared_fields,
        }
        name = f"{spec.name.capitalize()}{suffix}"
        schemas[name] = Schema.from_dict(declared, name=name)
    return schemas


# A cursor is base64url of ~100 bytes. The bound keeps any URL carrying one far below
# gunicorn's request-line limit (4094), whose 414 is an HTML page, not our JSON error.
CURSOR_MAX = 256
CURSOR_PATTERN = re.compile(r"^[A-Za-z0-9_-]*$")


class CursorField(fields.String):
    """`jobs.encode_cursor`'s opaque text, loaded as a `jobs.Cursor`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Cursor:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > CURSOR_MAX or not CURSOR_PATTERN.match(text):
            raise ValidationError("Not a cursor this API gave (X-Next-Cursor).")
        try:
            return decode_cursor(text)
        except ValueError:
            raise ValidationError("Not a cursor this API gave (X-Next-Cursor).") from None


class JobListQuerySchema(Schema):
    kind = fields.String(validate=validate.OneOf(kinds.names()))
    status = fields.String(validate=validate.OneOf(STATUSES))
    created_since = UtcDateTime(default_timezone=None)
    owner = fields.UUID(metadata={"description": "admin only: jobs of this user"})
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))
    cursor = CursorField(
        metadata={
            "maxLength": CURSOR_MAX,
            "pattern": CURSOR_PATTERN.pattern,
            "description": "keyset paging: the `X-Next-Cursor` (or `Link: rel=next`) of the "
            "previous page; the next page starts after its last job, whatever was inserted "
            "since, and costs the same at any depth. Keeps the sort and order it was made "
            "with; not with `offset`",
        },
    )
    sort = fields.String(load_default="created_at", validate=validate.OneOf(SORTABLE))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))

    @validates_schema(pass_original=True)
    def _cursor_alone(self, data: dict[str, Any], original: Any, **_kwargs: Any) -> None:
        """A cursor is a position in one sort and order: another one, or an offset beside
        it, is a mistake the caller should hear about."""
        cursor = data.get("cursor")
        if cursor is None:
            return
        if data.get("offset"):
            raise ValidationError("Use either cursor or offset.", "offset")
        for name in ("sort", "order"):
            if name in original and data[name] != getattr(cursor, name):
                raise ValidationError(
                    f"The cursor was made for {name}={getattr(cursor, name)}.", name
                )


LIST_TOTAL_HEADERS = {
    "X-Total-Count": {
        "description": "jobs matching the filters; absent when a `created_since` listing "
        f"matches more than {COUNT_CAP:,} (then see X-Total-Count-Min)",
        "schema": {"type": "integer"},
    },
    "X-Total-Count-Min": {
        "description": "only when X-Total-Count is absent: at least this many match",
        "schema": {"type": "integer"},
    },
    "X-Next-Cursor": {
        "description": "when more jobs follow: the `cursor` of the next page (keyset)",
        "schema": {"type": "string"},
    },
}


class JobLogsQuerySchema(Schema):
    after_id = fields.Integer(load_default=0, validate=validate.Range(0, 2**63 - 1))
    limit = fields.Integer(load_default=500, validate=validate.Range(1, 5000))


# --- responses -------------------------------------------------------------------------------


class JobProgressSchema(Schema):
    items_done = fields.Integer(required=True)
    items_failed = fields.Integer(required=True)
    items_total = fields.Integer(required=True)
    bytes_done = fields.Integer(required=True)
    bytes_total = fields.Integer(required=True)
    bytes_done_readable = fields.String(required=True)
    bytes_total_readable = fields.String(required=True)
    items_percentage = fields.Integer(required=True)
    bytes_percentage = fields.Integer(required=True)
    percentage = fields.Integer(required=True, metadata={"description": "overall, 0-100"})
    current_item = fields.String(required=True, allow_none=True)


class ThroughputSchema(Schema):
    bytes_per_second = fields.Float(required=True)
    mbps = fields.Float(required=True)
    readable = fields.String(required=True)
    at = fields.String(required=True)


class ItemFailureSchema(Schema):
    path = fields.String(required=True)
    error = fields.String(required=True, allow_none=True)


class JobSchema(Schema):
    id = fields.String(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    owner_id = fields.String(required=True)
    params = fields.Dict(required=True)
    priority = fields.Integer(required=True)
    attempt = fields.Integer(required=True)
    max_attempts = fields.Integer(required=True)
    backoff = fields.String(required=True)
    backoff_seconds = fields.Float(required=True)
    progress = fields.Integer(required=True, metadata={"description": "overall, 0-100"})
    progress_detail = fields.Nested(JobProgressSchema, required=True)
    throughput = fields.Nested(ThroughputSchema, required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    result = fields.Raw(required=True, allow_none=True, metadata={"description": "any JSON"})
    cancel_requested = fields.Boolean(required=True)
    request_id = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)
    started_at = fields.String(required=True, allow_none=True)
    completed_at = fields.String(required=True, allow_none=True)
    updated_at = fields.String(required=True)
    next_attempt_at = fields.String(required=True, allow_none=True)
    failures = fields.List(fields.Nested(ItemFailureSchema))
    # Fields a kind adds to its jobs (its API module's `job_fields`): seed 002's, for scrape.
    mode = fields.String(metadata={"description": "scrape: profile or hashtag"})
    value = fields.String(metadata={"description": "scrape: username or hashtag"})
    limit = fields.Integer(metadata={"description": "scrape: videos wanted"})
    no_watermark = fields.Boolean()
    total_videos = fields.Integer()
    successful_downloads = fields.Integer()
    failed_downloads = fields.Integer()
    # container (seed 003): what ran and what the worker recorded
    name = fields.String(allow_none=True, metadata={"description": "container: the job's name"})
    image = fields.String(metadata={"description": "container: the image"})
    container_id = fields.String(allow_none=True, metadata={"description": "container: last run"})
    exit_code = fields.Integer(allow_none=True, metadata={"description": "container: at the end"})
    resource_usage = fields.Dict(
        metadata={"description": "container: cpu_time (s), memory_peak and network_io (bytes)"}
    )
    # webhook (internal): the delivery's webhook and event type
    webhook_id = fields.String(metadata={"description": "webhook delivery: its webhook"})
    event_type = fields.String(metadata={"description": "webhook delivery: e.g. job.completed"})


class BatchJobSchema(JobSchema):
    created = fields.Boolean(
        required=True,
        metadata={"description": "false: its idempotency key answered an earlier job"},
    )


class JobBatchSchema(Schema):
    """`POST /api/v1/jobs/batch`: the jobs in request order, and how many are new."""

    jobs = fields.List(fields.Nested(BatchJobSchema), required=True)
    created = fields.Integer(required=True)


class JobDetailSchema(Schema):
    """`GET /api/v1/jobs/{id}`: the job, and what its kind adds beside it (seed 002)."""

    job = fields.Nested(JobSchema, required=True)
    videos = fields.List(fields.Dict(), metadata={"description": "scrape: the job's videos"})
    drive_links = fields.List(
        fields.Dict(), metadata={"description": "scrape: where each video and its metadata are"}
    )


class JobLogSchema(Schema):
    id = fields.Integer(required=True)
    ts = fields.String(required=True)
    level = fields.String(required=True)
    message = fields.String(required=True)


class JobLogsSchema(Schema):
    job_id = fields.String(required=True)
    logs = fields.List(fields.Nested(JobLogSchema), required=True)


class JobOutputSchema(FileSchema):
    download_url = fields.String(required=True, metadata={"description": "by output name"})


class JobOutputsSchema(Schema):
    job_id = fields.String(required=True)
    status = fields.String(required=True)
    files = fields.List(fields.Nested(JobOutputSchema), required=True)
