"""Seed 004's success envelope and pagination, declared as schemas so /openapi.json is exact."""

from __future__ import annotations

import math
from typing import Any

from marshmallow import Schema, fields, validate

from jobgate.web import utc_timestamp

MAX_LIMIT = 100  # the seed's "max: 100" on every list


class PaginationSchema(Schema):
    skip = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    total = fields.Integer(required=True)
    pages = fields.Integer(required=True, metadata={"description": "ceil(total / limit)"})


class PageQuerySchema(Schema):
    """`skip` and `limit` (at most 100: more is a 400, not silently cut)."""

    skip = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, MAX_LIMIT))


def envelope_schema(name: str, data: fields.Field, *, paginated: bool = False) -> type[Schema]:
    """A schema class `name` for `{"status": "success", "data": <data>, ["pagination",]
    "timestamp"}` (a class per body, so each has its own name in the OpenAPI document)."""
    attrs: dict[str, Any] = {
        "status": fields.String(required=True, validate=validate.Equal("success")),
        "data": data,
    }
    if paginated:
        attrs["pagination"] = fields.Nested(PaginationSchema, required=True)
    attrs["timestamp"] = fields.String(
        required=True, metadata={"example": "2024-02-09T10:30:00.000Z"}
    )
    return type(name, (Schema,), attrs)


def success(data: Any, **extra: Any) -> dict[str, Any]:
    """The seed's success body around `data` (with `pagination` and the like in `extra`)."""
    return {"status": "success", "data": data, **extra, "timestamp": utc_timestamp()}


def page(data: list[Any], *, skip: int, limit: int, total: int) -> dict[str, Any]:
    """A list answer with the seed's `pagination {skip, limit, total, pages}`."""
    pagination = {"skip": skip, "limit": limit, "total": total, "pages": math.ceil(total / limit)}
    return success(data, pagination=pagination)
