"""/api/v1/schedules: recurring jobs of any kind (interval or cron), with their run counters."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema

from jobgate import kinds
from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.jobs.schemas import JobOptionsSchema, kind_request_schemas
from jobgate_gateway.schedules import service
from jobgate_gateway.schedules.schemas import (
    ScheduleCreateSchema,
    ScheduleListQuerySchema,
    ScheduleListSchema,
    ScheduleSchema,
    ScheduleUpdateSchema,
)
from jobgate_gateway.schedules.views import schedule_to_dict
from jobgate_gateway.services import services

blp = Blueprint(
    "schedules",
    __name__,
    url_prefix="/api/v1/schedules",
    description="Recurring jobs of any kind: an interval or a cron expression (UTC)",
)
blp.before_request(authenticate_blueprint)

SCHEDULE_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": list(
                    kind_request_schemas(
                        ScheduleCreateSchema, suffix="ScheduleRequest", schedulable_only=True
                    ).values()
                ),
                "discriminator": {"propertyName": "kind"},
            }
        }
    },
}
OPTION_NAMES = frozenset(JobOptionsSchema().fields)


def _split(body: dict[str, Any], schema: type[Schema]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(kind params, job options) of a body: what the schedule schema does not declare
    belongs to the kind, and so does what both declare (a task's `name` names the schedule
    and its tasks)."""
    declared = set(schema().fields)
    spec = next((s for s in kinds.specs() if s.name == body.get("kind")), None)
    shared = set(spec.params().fields) if spec is not None else set()
    params = {k: v for k, v in body.items() if k not in declared or k in shared}
    options = {k: v for k, v in body.items() if k in OPTION_NAMES}
    return params, options


@blp.route("")
class Schedules(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.arguments(ScheduleCreateSchema)
    @blp.doc(requestBody=SCHEDULE_REQUEST_BODY)
    @blp.response(201, ScheduleSchema)
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Create a schedule: `name`, `kind` + the kind's params, `interval_minutes` (>= 5) or
        `cron`, optional job options; enabled, its first run is due at once."""
        principal = require_auth("jobs:write")
        params, options = _split(body, ScheduleCreateSchema)
        row = service.create_schedule(
            services(),
            principal,
            name=body["name"],
            kind=body["kind"],
            params=params,
            options=options,
            interval_minutes=body["interval_minutes"],
            cron=body["cron"],
            enabled=body["enabled"],
        )
        return schedule_to_dict(row), 201

    @blp.arguments(ScheduleListQuerySchema, location="query")
    @blp.response(200, ScheduleListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List schedules (own; admins see all), newest first, with their run counters."""
        principal = require_auth("jobs:read")
        rows, total = service.list_schedules(
            services(),
            principal,
            enabled=query.get("enabled"),
            kind=query.get("kind"),
            limit=query["limit"],
            offset=query["offset"],
        )
        return {
            "schedules": [schedule_to_dict(r) for r in rows],
            "total": total,
            "limit": query["limit"],
            "offset": query["offset"],
        }


@blp.route("/<uuidstr:schedule_id>")
class ScheduleById(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.response(200, ScheduleSchema)
    def get(self, schedule_id: str) -> dict[str, Any]:
        """A schedule with its next and last run and its run counters."""
        principal = require_auth("jobs:read")
        return schedule_to_dict(service.find_schedule(services(), principal, schedule_id))

    @blp.arguments(ScheduleUpdateSchema(partial=True))
    @blp.response(200, ScheduleSchema)
    def patch(self, body: dict[str, Any], schedule_id: str) -> dict[str, Any]:
        """Change what is sent; a new interval, cron expression or `enabled` re-times it."""
        principal = require_auth("jobs:write")
        params, options = _split(body, ScheduleUpdateSchema)
        row = service.update_schedule(
            services(),
            principal,
            schedule_id,
            name=body.get("name"),
            kind=body.get("kind"),
            params=params,
            options=options or None,
            interval_minutes=body.get("interval_minutes"),
            cron=body.get("cron"),
            enabled=body.get("enabled"),
        )
        return schedule_to_dict(row)

    @blp.response(204)
    def delete(self, schedule_id: str) -> None:
        """Delete a schedule; the jobs it made are kept."""
        principal = require_auth("jobs:write")
        service.delete(services(), principal, schedule_id)


@blp.route("/<uuidstr:schedule_id>/toggle", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, ScheduleSchema)
def toggle(schedule_id: str) -> dict[str, Any]:
    """Enable a disabled schedule, or disable an enabled one."""
    principal = require_auth("jobs:write")
    return schedule_to_dict(service.toggle(services(), principal, schedule_id))
