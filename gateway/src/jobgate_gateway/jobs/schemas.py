"""Request schemas of the canonical job API (responses are documented as plain objects)."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from jobgate.jobs import SORTABLE, STATUSES


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

    kind = fields.String(required=True, metadata={"description": "cache (more kinds follow)"})


class JobListQuerySchema(Schema):
    kind = fields.String()
    status = fields.String(validate=validate.OneOf(STATUSES))
    created_since = fields.AwareDateTime(default_timezone=None)
    owner = fields.UUID(metadata={"description": "admin only: jobs of this user"})
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))
    sort = fields.String(load_default="created_at", validate=validate.OneOf(SORTABLE))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))


class JobLogsQuerySchema(Schema):
    after_id = fields.Integer(load_default=0, validate=validate.Range(0, 2**63 - 1))
    limit = fields.Integer(load_default=500, validate=validate.Range(1, 5000))
