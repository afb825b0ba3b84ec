"""Seed 000's request bodies and queries."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

MAX_PATHS = 100_000


class CacheJobSchema(Schema):
    files = fields.List(fields.String(), load_default=list, validate=validate.Length(max=MAX_PATHS))
    directories = fields.List(
        fields.String(), load_default=list, validate=validate.Length(max=MAX_PATHS)
    )
    recursive = fields.Boolean(load_default=True)

    @validates_schema
    def _needs_paths(self, data, **_kwargs) -> None:
        if not data.get("files") and not data.get("directories"):
            raise ValidationError("Provide at least one path in 'files' or 'directories'")


class CacheJobListQuerySchema(Schema):
    status = fields.String(
        validate=validate.OneOf(
            ["pending", "running", "retrying", "completed", "failed", "cancelled"]
        )
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))
