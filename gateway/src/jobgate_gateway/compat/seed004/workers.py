"""Seed 004's `/api/v1/workers`: every Jobgate worker's heartbeat row (kind, host, pid, load,
capacity, counts; scheduler replicas too) plus workers that run outside Jobgate and report
through `POST /api/v1/workers/heartbeat`; and the health summary `/api/v1/workers/status`,
also at the root (`/workers/status`) as the seed's curl example calls it.

A worker is `active` while it heart-beats (`jobgate.workers.ACTIVE_S`, 30 s) and has not
stopped or reported itself inactive; `state` keeps what the worker said it was doing
(idle, busy, stopping, stopped; an external one's own word). Reading needs `jobs:read`;
registering an external worker needs `workers:write` (or an admin), and its id must not be
a Jobgate worker's or another user's (409).

Jobgate's workers are infrastructure, seen by every reader; an external worker is seen by
its owner and admins only (another user's is a 404), and the summary counts what its
reader sees. A worker's `current_task_id` is another user's job id unless the reader owns
that job (or is an admin): null otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from jobgate import workers
from jobgate.errors import Conflict, Forbidden, NotFound
from jobgate.identity import Principal
from jobgate.web import ENVELOPE, Blueprint
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.compat.seed004.envelope import (
    PageQuerySchema,
    envelope_schema,
    page,
    success,
)
from jobgate_gateway.services import services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint(
    "seed004_workers",
    __name__,
    url_prefix="/api/v1/workers",
    description="Workers (seed 004)",
    error_dialect=ENVELOPE,
)
blp.before_request(authenticate_blueprint)
# The seed's own example calls `GET /workers/status` at the root.
root_blp = Blueprint(
    "seed004_workers_root",
    __name__,
    url_prefix="/workers",
    description="Workers' health summary at the root (seed 004's curl example)",
    error_dialect=ENVELOPE,
)
root_blp.before_request(authenticate_blueprint)

WRITE_SCOPE = "workers:write"
ACTIVITY = ("active", "inactive")
HEARTBEAT_STATUSES = ("active", "inactive", "idle", "busy")
WORKER_ID = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$",
    error="1-200 characters: letters, digits and _ . : @ -, starting with a letter or digit",
)
CAPACITY = validate.Range(0, 1_000_000)


# --- bodies -----------------------------------------------------------------------------------


class Seed004WorkerSchema(Schema):
    worker_id = fields.String(required=True)
    kind = fields.String(
        required=True, metadata={"description": "the job kind it serves, scheduler or external"}
    )
    status = fields.String(required=True, validate=validate.OneOf(ACTIVITY))
    active = fields.Boolean(required=True)
    state = fields.String(
        required=True,
        metadata={"description": "idle, busy, stopping, stopped (external: as reported)"},
    )
    external = fields.Boolean(required=True)
    hostname = fields.String(required=True, allow_none=True)
    pid = fields.Integer(required=True, allow_none=True)
    current_load = fields.Integer(required=True)
    max_capacity = fields.Integer(required=True)
    current_task_id = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "the job it holds, if it is the caller's (an admin: any)"},
    )
    jobs_completed = fields.Integer(required=True)
    jobs_failed = fields.Integer(required=True)
    started_at = fields.String(required=True)
    last_heartbeat = fields.String(required=True)
    stopped_at = fields.String(required=True, allow_none=True)


class Seed004WorkerListQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(ACTIVITY))


class Seed004HeartbeatSchema(Schema):
    worker_id = fields.String(required=True, validate=WORKER_ID)
    status = fields.String(load_default="active", validate=validate.OneOf(HEARTBEAT_STATUSES))
    current_load = fields.Integer(load_default=0, validate=CAPACITY)
    max_capacity = fields.Integer(load_default=1, validate=CAPACITY)


class Seed004WorkerStateSchema(Schema):
    worker_id = fields.String(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ACTIVITY))
    state = fields.String(required=True)
    last_heartbeat = fields.String(required=True)
    current_load = fields.Integer(required=True)
    max_capacity = fields.Integer(required=True)


class Seed004KindCountsSchema(Schema):
    total = fields.Integer(required=True)
    active = fields.Integer(required=True)
    busy = fields.Integer(required=True, metadata={"description": "active and holding work"})


class Seed004WorkersStatusSchema(Schema):
    healthy = fields.Boolean(required=True, metadata={"description": "at least one is active"})
    total = fields.Integer(required=True)
    active = fields.Integer(required=True)
    inactive = fields.Integer(required=True)
    current_load = fields.Integer(required=True, metadata={"description": "of active workers"})
    max_capacity = fields.Integer(required=True, metadata={"description": "of active workers"})
    by_kind = fields.Dict(
        keys=fields.String(), values=fields.Nested(Seed004KindCountsSchema), required=True
    )
    workers = fields.List(fields.Nested(Seed004WorkerStateSchema), required=True)


WorkerEnvelope = envelope_schema(
    "Seed004WorkerEnvelopeSchema", fields.Nested(Seed004WorkerSchema, required=True)
)
WorkerListEnvelope = envelope_schema(
    "Seed004WorkerListSchema",
    fields.List(fields.Nested(Seed004WorkerSchema), required=True),
    paginated=True,
)
WorkersStatusEnvelope = envelope_schema(
    "Seed004WorkersStatusEnvelopeSchema", fields.Nested(Seed004WorkersStatusSchema, required=True)
)


# --- shapes ------------------------------------------------------------------------------------


def activity(row: dict[str, Any]) -> str:
    return "active" if row["active"] else "inactive"


def reader_id(principal: Principal) -> str | None:
    """Whose external workers `principal` sees: its own, or (an admin) everyone's (None)."""
    return None if principal.is_admin else principal.user_id


def current_task_id(row: dict[str, Any], principal: Principal) -> str | None:
    """The job a worker holds, for its owner or an admin only: another user's job id is not
    disclosed (its existence is a 404 everywhere else)."""
    job_id, owner_id = row["current_job_id"], row.get("current_job_owner_id")
    if not job_id:
        return None
    if principal.is_admin or (owner_id is not None and str(owner_id) == principal.user_id):
        return str(job_id)
    return None


def worker_body(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    return {
        "worker_id": row["id"],
        "kind": row["kind"],
        "status": activity(row),
        "active": bool(row["active"]),
        "state": row["status"],
        "external": row["external"],
        "hostname": row["hostname"],
        "pid": row["pid"],
        "current_load": row["current_load"],
        "max_capacity": row["max_capacity"],
        "current_task_id": current_task_id(row, principal),
        "jobs_completed": row["jobs_completed"],
        "jobs_failed": row["jobs_failed"],
        "started_at": iso_ms(row["started_at"]),
        "last_heartbeat": iso_ms(row["last_heartbeat_at"]),
        "stopped_at": iso_ms(row["stopped_at"]),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The workers' health at a glance: counts, per kind, and each worker's state (of the
    rows given: those the reader sees)."""
    by_kind: dict[str, dict[str, int]] = defaultdict(lambda: {"total": 0, "active": 0, "busy": 0})
    live = [r for r in rows if r["active"]]
    for row in rows:
        counts = by_kind[row["kind"]]
        counts["total"] += 1
        if row["active"]:
            counts["active"] += 1
            counts["busy"] += 1 if row["current_load"] > 0 or row["status"] == "busy" else 0
    return {
        "healthy": bool(live),
        "total": len(rows),
        "active": len(live),
        "inactive": len(rows) - len(live),
        "current_load": sum(r["current_load"] for r in live),
        "max_capacity": sum(r["max_capacity"] for r in live),
        "by_kind": dict(by_kind),
        "workers": [
            {
                "worker_id": r["id"],
                "kind": r["kind"],
                "status": activity(r),
                "state": r["status"],
                "last_heartbeat": iso_ms(r["last_heartbeat_at"]),
                "current_load": r["current_load"],
                "max_capacity": r["max_capacity"],
            }
            for r in rows
        ],
    }


def _writer() -> Principal:
    """Registering workers needs `workers:write`, or an admin."""
    principal = require_auth()
    if not (principal.is_admin or principal.has_scope(WRITE_SCOPE)):
        raise Forbidden(f"This credential lacks the '{WRITE_SCOPE}' scope")
    return principal


def workers_status() -> dict[str, Any]:
    principal = require_auth("jobs:read")
    svc = services()
    with svc.db.transaction() as conn:
        rows = workers.all_workers(conn, reader_id=reader_id(principal))
    return success(summary(rows))


# --- routes ------------------------------------------------------------------------------------


@blp.route("")
class Workers(MethodView):
    @blp.arguments(Seed004WorkerListQuerySchema, location="query")
    @blp.response(200, WorkerListEnvelope)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List workers (Jobgate's, and the caller's external ones; an admin: all), most
        recently heard first; `status` active|inactive."""
        principal = require_auth("jobs:read")
        active = None if "status" not in query else query["status"] == "active"
        svc = services()
        with svc.db.transaction() as conn:
            rows, total = workers.list_workers(
                conn,
                reader_id=reader_id(principal),
                active=active,
                limit=query["limit"],
                offset=query["skip"],
            )
        return page(
            [worker_body(r, principal) for r in rows],
            skip=query["skip"],
            limit=query["limit"],
            total=total,
        )


@blp.route("/heartbeat", methods=["POST"])
@blp.arguments(Seed004HeartbeatSchema)
@blp.response(200, WorkerEnvelope)
def heartbeat(body: dict[str, Any]) -> dict[str, Any]:
    """Register or refresh a worker that runs outside Jobgate (`worker_id`, `status`
    active|inactive|idle|busy, `current_load`, `max_capacity`); it is the caller's. An id
    of a Jobgate worker or of another user's worker is a 409."""
    principal = _writer()
    svc = services()
    with svc.db.transaction() as conn:
        row = workers.external_heartbeat(
            conn,
            worker_id=body["worker_id"],
            owner_id=principal.user_id,
            status=body["status"],
            current_load=body["current_load"],
            max_capacity=body["max_capacity"],
        )
    if row is None:
        raise Conflict(
            "This worker id belongs to another worker", details={"worker_id": body["worker_id"]}
        )
    return success(worker_body(row, principal))


@blp.route("/status")
@blp.response(200, WorkersStatusEnvelope)
def status() -> dict[str, Any]:
    """The workers' health (those the caller sees: Jobgate's and its own external ones): how
    many are active, per kind, and each one's state."""
    return workers_status()


@root_blp.route("/status")
@root_blp.response(200, WorkersStatusEnvelope)
def root_status() -> dict[str, Any]:
    """`/api/v1/workers/status` at the root, as the seed's curl example calls it."""
    return workers_status()


@blp.route("/<worker_id>")
@blp.response(200, WorkerEnvelope)
def get_worker(worker_id: str) -> dict[str, Any]:
    """One worker by its id (another user's external worker is a 404)."""
    principal = require_auth("jobs:read")
    svc = services()
    with svc.db.transaction() as conn:
        row = workers.get_worker(conn, worker_id=worker_id, reader_id=reader_id(principal))
    if row is None:
        raise NotFound("Worker not found", details={"worker_id": worker_id})
    return success(worker_body(row, principal))
