"""Seed 004's `/api/v1/tasks`: jobs of the `task` kind in the seed's words and envelope, on
top of the kind's `submit` and plan, the canonical job services (cancel, delete) and the
job transitions (a PUT runs a task again and changes it in one transaction).

A task is a job: `priority` low/medium/high is `jobs.priority` 2/5/8 (read back as the nearest
word), `retry_count` is `max_attempts - 1`, `pending` covers `retrying`, `worker_id` is the
worker that ran it last. Users see their own tasks (another user's is a 404), admins all.
Every route counts in the seed's two windows (`RATE_LIMIT_TASKS`).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import g
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate

from jobgate import jobs, outbox
from jobgate.errors import Conflict, InvalidRequest, NotFound
from jobgate.jobs import submission
from jobgate.jobs import tasks as task_rows
from jobgate.kinds import task
from jobgate.web import ENVELOPE, Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, owner_filter, require_auth
from jobgate_gateway.compat.seed004.envelope import (
    PageQuerySchema,
    envelope_schema,
    page,
    success,
)
from jobgate_gateway.jobs import service as job_service
from jobgate_gateway.jobs.resources import IDEMPOTENCY_KEY
from jobgate_gateway.kinds import task as task_api
from jobgate_gateway.services import APP_ID, Services, services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint(
    "seed004_tasks",
    __name__,
    url_prefix="/api/v1/tasks",
    description="Tasks (seed 004)",
    error_dialect=ENVELOPE,
)
blp.before_request(authenticate_blueprint)

KIND = task.SPEC.name
SEED_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
# A seed status word -> the job statuses it covers.
STATUS_FILTER = {"pending": task_rows.QUEUED} | {s: (s,) for s in SEED_STATUSES[1:]}
PRIORITY_WORDS = tuple(task.PRIORITIES)
# A priority word -> the `jobs.priority` values it covers (canonical numbers go to the nearest).
PRIORITY_RANGES = {"low": (0, 3), "medium": (4, 6), "high": (7, 9)}
SORTS = tuple(task_rows.SORTS)
# What PUT may change: labels at any time, the rest only while the task waits.
LABELS = ("name", "description")
QUEUED_ONLY = ("priority", "retry_count", "timeout", "payload", "handler")
SETTABLE_STATUSES = ("pending", "cancelled")


# --- bodies -----------------------------------------------------------------------------------


def _priority_field(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(PRIORITY_WORDS), **kwargs)


def _retry_count_field(**kwargs: Any) -> fields.Integer:
    return fields.Integer(
        validate=validate.Range(0, task.MAX_RETRY_COUNT),
        metadata={"description": "retries after the first attempt (default: JOB_MAX_ATTEMPTS-1)"},
        **kwargs,
    )


class Seed004TaskCreateSchema(task.TaskParams):
    """The seed's `POST /api/v1/tasks` body: the task kind's params plus its options."""

    priority = _priority_field(load_default="medium")
    retry_count = _retry_count_field(load_default=None, allow_none=True)


class Seed004TaskUpdateSchema(Schema):
    """`PUT /api/v1/tasks/{id}`: any subset. `name`/`description` at any time; the rest
    only while the task is pending; `status` cancels (`cancelled`) or runs a failed or
    cancelled task again (`pending`)."""

    name = fields.String(validate=validate.Length(1, 200))
    description = fields.String(allow_none=True, validate=validate.Length(0, 2000))
    priority = _priority_field()
    retry_count = _retry_count_field()
    timeout = fields.Integer(validate=validate.Range(1, task.MAX_TIMEOUT_S))
    payload = fields.Dict(keys=fields.String())
    handler = fields.String(
        allow_none=True,
        validate=task.HANDLER_NAME,
        metadata={"description": "null: by the task's name, else TASK_DEFAULT_HANDLER"},
    )
    status = fields.String(validate=validate.OneOf(SETTABLE_STATUSES))


class Seed004TaskSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    handler = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(SEED_STATUSES))
    priority = fields.String(required=True, validate=validate.OneOf(PRIORITY_WORDS))
    payload = fields.Dict(required=True)
    result = fields.Raw(
        required=True,
        allow_none=True,
        metadata={"description": "the handler's return value (any JSON)"},
    )
    error = fields.String(required=True, allow_none=True)
    retry_count = fields.Integer(required=True)
    attempts = fields.Integer(required=True, metadata={"description": "attempts made so far"})
    timeout = fields.Integer(required=True, metadata={"description": "seconds per attempt"})
    worker_id = fields.String(
        required=True, allow_none=True, metadata={"description": "the worker that ran it last"}
    )
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)
    started_at = fields.String(required=True, allow_none=True)
    completed_at = fields.String(required=True, allow_none=True)
    duration = fields.Float(
        required=True, allow_none=True, metadata={"description": "seconds, once finished"}
    )
    next_retry_at = fields.String(
        required=True, allow_none=True, metadata={"description": "while waiting to be retried"}
    )
    owner_id = fields.String(required=True)


class Seed004TaskListQuerySchema(PageQuerySchema):
    status = fields.String(
        validate=validate.OneOf(SEED_STATUSES),
        metadata={"description": "pending also covers tasks waiting to be retried"},
    )
    priority = _priority_field()
    worker_id = fields.String(validate=validate.Length(1, 200))
    sort = fields.String(load_default="created_at", validate=validate.OneOf(SORTS))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))


TaskEnvelope = envelope_schema(
    "Seed004TaskEnvelopeSchema", fields.Nested(Seed004TaskSchema, required=True)
)
TaskListEnvelope = envelope_schema(
    "Seed004TaskListSchema",
    fields.List(fields.Nested(Seed004TaskSchema), required=True),
    paginated=True,
)


# --- shapes ------------------------------------------------------------------------------------


def priority_word(priority: int) -> str:
    """`jobs.priority` in the seed's words; numbers from the canonical API go to the nearest."""
    return next(word for word, (low, high) in PRIORITY_RANGES.items() if low <= priority <= high)


def seed_status(status: str) -> str:
    return "pending" if status in task_rows.QUEUED else status


def task_body(job: dict[str, Any]) -> dict[str, Any]:
    """A task job in seed 004's shape."""
    params = job["params"] or {}
    started, finished = job["started_at"], job["completed_at"]
    duration = (finished - started).total_seconds() if started and finished else None
    return {
        "id": str(job["id"]),
        "name": params.get("name"),
        "description": params.get("description"),
        "handler": params.get("handler"),
        "status": seed_status(job["status"]),
        "priority": priority_word(job["priority"]),
        "payload": params.get("payload") or {},
        "result": job["result"],
        "error": job["error"],
        "retry_count": job["max_attempts"] - 1,
        "attempts": job["attempt"],
        "timeout": params.get("timeout", 3600),
        "worker_id": job.get("last_worker_id"),
        "created_at": iso_ms(job["created_at"]),
        "updated_at": iso_ms(job["updated_at"]),
        "started_at": iso_ms(started),
        "completed_at": iso_ms(finished),
        "duration": round(duration, 3) if duration is not None else None,
        "next_retry_at": iso_ms(job["next_attempt_at"]) if job["status"] == "retrying" else None,
        "owner_id": str(job["owner_id"]),
    }


def _task(scope: str, raw_id: str) -> tuple[Services, dict[str, Any]]:
    """The caller's task named in the URL: 400 for a malformed id (the seed's example
    error), 404 when missing, of another kind, or someone else's."""
    principal = require_auth(scope)
    try:
        task_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise InvalidRequest(
            "Invalid task ID", details={"field": "task_id", "reason": "Not a valid UUID"}
        ) from None
    svc = services()
    try:
        return svc, job_service.find_job(svc, principal, task_id, kind=KIND)
    except NotFound:
        raise NotFound("Task not found", details={"task_id": task_id}) from None


# --- changes -----------------------------------------------------------------------------------


def _new_params(svc: Services, job: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The task's params with `changes`, checked as at submission (the kind's contract and
    plan: the payload's size, a registered handler); `handler: null` picks one by the name
    again."""
    try:
        params = task.SPEC.load_params({**job["params"], **changes})
    except ValidationError as exc:
        raise InvalidRequest(
            "Request validation failed", details={"fields": exc.messages}
        ) from None
    return task.SPEC.make_plan(None, svc.settings, str(job["owner_id"]), params).params


def _not_pending(status: str) -> Conflict:
    """`status: pending` on a running or completed task: nothing to run again."""
    return Conflict(
        f"Only a failed or cancelled task can be set back to pending; this one is"
        f" {seed_status(status)}",
        details={"status": seed_status(status)},
    )


def update_task(
    svc: Services, job: dict[str, Any], body: dict[str, Any], *, again: bool = False
) -> dict[str, Any]:
    """Apply a PUT in one transaction, the row locked. `again` (status `pending`) first runs
    a failed or cancelled task again (a waiting one stays so; a running or completed one is
    a 409); then the labels change at any time, the rest only while the task waits (409
    otherwise). A task run again gets its one message after its fields changed, so no
    worker can take it with the old ones; a new priority alone queues a fresh message with
    it (after the backoff for a task waiting to be retried): whichever delivery matches the
    task's priority claims it, the others are dropped."""
    labels = {k: body[k] for k in LABELS if k in body}
    queued = {k: body[k] for k in QUEUED_ONLY if k in body}
    if not labels and not queued and not again:
        return job
    job_id = str(job["id"])
    outbox_id = None
    with svc.db.transaction() as conn:
        row = jobs.get_job(conn, job_id=job_id, for_update=True)
        if row is None:
            raise NotFound("Task not found", details={"task_id": job_id})
        reopened = again and row["status"] in ("failed", "cancelled")
        if reopened:
            row = submission.reopen_job(conn, job_id=job_id)
        elif again and row["status"] not in task_rows.QUEUED:
            raise _not_pending(row["status"])
        priority = None
        if queued:
            if row["status"] not in task_rows.QUEUED:
                raise Conflict(
                    f"Only a pending task's {', '.join(sorted(queued))} can change;"
                    f" this one is {seed_status(row['status'])}",
                    details={"status": seed_status(row["status"]), "fields": sorted(queued)},
                )
            param_changes = {k: queued[k] for k in ("timeout", "payload", "handler") if k in queued}
            params = _new_params(svc, row, {**labels, **param_changes})
            max_attempts = queued["retry_count"] + 1 if "retry_count" in queued else None
            if max_attempts is not None and max_attempts <= row["attempt"]:
                raise Conflict(
                    f"retry_count must leave another attempt: {row['attempt']} already made",
                    details={"attempts": row["attempt"], "retry_count": queued["retry_count"]},
                )
            priority = task.PRIORITIES[queued["priority"]] if "priority" in queued else None
            before = row["priority"]
            row = task_rows.update_queued(
                conn, job_id=job_id, params=params, priority=priority, max_attempts=max_attempts
            )
            if row is None:  # unreachable while the row is locked; kept as the SQL's guard
                raise Conflict("The task is no longer pending")
            if priority == before:
                priority = None  # unchanged: the queued message still fits
        elif labels:
            row = task_rows.set_params(conn, job_id=job_id, changes=labels)
        if reopened or priority is not None:
            outbox_id = outbox.add_job_message(
                conn,
                job=row,
                app_id=APP_ID,
                request_id=g.get("request_id"),
                delay_s=row.get("wait_s") or None,
            )
    if outbox_id is not None:
        svc.publish_after_commit([outbox_id])
    return row


def cancel_task(svc: Services, job: dict[str, Any]) -> dict[str, Any]:
    """Cancel (a running task stops within about a second); a cancelled one stays so, a
    finished one is a 409."""
    if job["status"] == "cancelled":
        return job
    return job_service.cancel_job(svc, job)


# --- routes ------------------------------------------------------------------------------------


@blp.route("")
class Tasks(MethodView):
    decorators = [ratelimit.tasks_limit]

    @blp.arguments(Seed004TaskCreateSchema)
    @blp.doc(parameters=[IDEMPOTENCY_KEY])
    @blp.response(201, TaskEnvelope)
    @blp.alt_response(200, schema=TaskEnvelope, description="Idempotency-Key seen: the first task")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Create a task: `name`, `description`, `priority` (low|medium|high), `retry_count`,
        `timeout` (s), `payload`, and optionally the `handler` to run (default: the handler
        called like the task's name, else `TASK_DEFAULT_HANDLER`)."""
        principal = require_auth("jobs:write")
        options: dict[str, Any] = {"priority": task.PRIORITIES[body.pop("priority")]}
        retry_count = body.pop("retry_count")
        if retry_count is not None:
            options["max_attempts"] = retry_count + 1
        key = job_service.idempotency_key()
        job, created = job_service.submit(
            services(), principal, task_api.prepare, body, options, key
        )
        return success(task_body(job)), 201 if created else 200

    @blp.arguments(Seed004TaskListQuerySchema, location="query")
    @blp.response(200, TaskListEnvelope)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List tasks (the caller's own; admins see all), newest first unless `sort`
        (created_at, updated_at, duration; unfinished tasks have no duration and come last)
        and `order` say otherwise; `skip`/`limit` (at most 100) page through them."""
        principal = require_auth("jobs:read")
        svc = services()
        with svc.db.transaction() as conn:
            rows, total = task_rows.list_tasks(
                conn,
                kind=KIND,
                owner_id=owner_filter(principal),
                statuses=STATUS_FILTER[query["status"]] if "status" in query else None,
                priority_range=PRIORITY_RANGES.get(query.get("priority", "")),
                last_worker_id=query.get("worker_id"),
                sort=query["sort"],
                order=query["order"],
                limit=query["limit"],
                offset=query["skip"],
            )
        return page(
            [task_body(r) for r in rows], skip=query["skip"], limit=query["limit"], total=total
        )


@blp.route("/<uuidstr:task_id>")
class TaskById(MethodView):
    decorators = [ratelimit.tasks_limit]

    @blp.response(200, TaskEnvelope)
    def get(self, task_id: str) -> dict[str, Any]:
        """A task: status, result or error, attempts, the worker that ran it, timings."""
        _, job = _task("jobs:read", task_id)
        return success(task_body(job))

    @blp.arguments(Seed004TaskUpdateSchema)
    @blp.response(200, TaskEnvelope)
    def put(self, body: dict[str, Any], task_id: str) -> dict[str, Any]:
        """Update a task: `name`/`description` at any time; `priority`, `retry_count`,
        `timeout`, `payload`, `handler` while it is pending (else 409); `status`
        `cancelled` cancels it (409 once completed or failed), `pending` runs a failed or
        cancelled task again."""
        svc, job = _task("jobs:write", task_id)
        status = body.pop("status", None)
        if status == "cancelled" and job["status"] in ("completed", "failed"):
            raise Conflict(f"Task is already {job['status']}", details={"status": job["status"]})
        job = update_task(svc, job, body, again=status == "pending")
        if status == "cancelled":
            job = cancel_task(svc, job)
        return success(task_body(job))

    @blp.response(204)
    def delete(self, task_id: str) -> None:
        """Delete a task; a pending or running one is cancelled first."""
        svc, job = _task("jobs:write", task_id)
        job_service.delete_job(svc, job)
