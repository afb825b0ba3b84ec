"""Seed 003's `/api/jobs` (Container Codes): container jobs in the seed's words, on top of
the `container` kind's `submit` and the canonical job services (cancel, retry, logs, outputs).

Only container jobs live here: another kind's job id is a 404, like another user's job.
Every route needs the `containers` scope besides `jobs:read`/`jobs:write`. Status words are
the seed's (`pending`/`retrying` read `queued`); errors use the canonical format, which is
the seed's. `estimated_start`/`estimated_completion` come from `jobgate.jobs.estimates`.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from typing import Any
from urllib.parse import quote

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from jobgate import files, jobs
from jobgate.errors import Forbidden, NotFound
from jobgate.identity import Principal
from jobgate.jobs import STATUSES, estimates, job_logs
from jobgate.kinds import container
from jobgate.web import Blueprint, UtcDateTime
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, owner_filter, require_auth
from jobgate_gateway.compat.seed001 import seed_status
from jobgate_gateway.files.resources import DOWNLOAD_RESPONSES
from jobgate_gateway.files.views import send_stored_file
from jobgate_gateway.jobs import service as job_service
from jobgate_gateway.jobs.resources import IDEMPOTENCY_KEY
from jobgate_gateway.jobs.schemas import JobLogsQuerySchema, JobLogsSchema
from jobgate_gateway.jobs.views import progress as job_progress
from jobgate_gateway.kinds import container as container_api
from jobgate_gateway.services import Services, services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint(
    "seed003_jobs", __name__, url_prefix="/api/jobs", description="Container jobs (seed 003)"
)
blp.before_request(authenticate_blueprint)

KIND = container.SPEC.name
SEED_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
# A seed status word -> the job statuses it covers.
STATUS_FILTER = {"queued": ("pending", "retrying")} | {
    s: (s,) for s in STATUSES if s not in ("pending", "retrying")
}
OUTPUT_URL = "/api/jobs/{job_id}/output/{name}"


# --- bodies -----------------------------------------------------------------------------------


class Seed003RetryPolicySchema(Schema):
    max_attempts = fields.Integer(validate=validate.Range(1, container.MAX_ATTEMPTS))
    backoff = fields.String(
        validate=validate.OneOf(container.BACKOFFS),
        metadata={"description": "linear is served as exponential (same first two delays)"},
    )


class Seed003JobCreateSchema(container.ContainerParams):
    """The seed's `POST /api/jobs` body: the container kind's params plus its options."""

    priority = fields.String(
        load_default="normal", validate=validate.OneOf(list(container.PRIORITIES))
    )
    retry_policy = fields.Nested(Seed003RetryPolicySchema, load_default=None, allow_none=True)


class Seed003JobCreatedSchema(Schema):
    job_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(SEED_STATUSES))
    created_at = fields.String(required=True)
    estimated_start = fields.String(required=True, allow_none=True)


class Seed003ResourceUsageSchema(Schema):
    cpu_time = fields.Float(required=True, metadata={"description": "CPU seconds"})
    memory_peak = fields.Integer(required=True, metadata={"description": "bytes"})
    network_io = fields.Integer(required=True, metadata={"description": "bytes"})


class Seed003OutputFileSchema(Schema):
    name = fields.String(
        required=True, metadata={"description": "its path in the container, without the first /"}
    )
    path = fields.String(required=True, metadata={"description": "its path in the container"})
    size = fields.Integer(required=True)
    mime_type = fields.String(required=True)
    etag = fields.String(required=True)
    created_at = fields.String(required=True)
    download_url = fields.String(required=True)


class Seed003JobRetryPolicyOutSchema(Schema):
    max_attempts = fields.Integer(required=True)
    backoff = fields.String(required=True)


class Seed003JobSchema(Schema):
    """`GET /api/jobs/{id}` (the seed's fields, then ours); list items lack `output_files`."""

    job_id = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(SEED_STATUSES))
    progress = fields.Float(required=True, metadata={"description": "0-100"})
    created_at = fields.String(required=True)
    started_at = fields.String(required=True, allow_none=True)
    estimated_completion = fields.String(required=True, allow_none=True)
    container_id = fields.String(required=True, allow_none=True)
    resource_usage = fields.Nested(Seed003ResourceUsageSchema, required=True)
    output_files = fields.List(fields.Nested(Seed003OutputFileSchema))
    estimated_start = fields.String(
        required=True, allow_none=True, metadata={"description": "while queued"}
    )
    completed_at = fields.String(required=True, allow_none=True)
    exit_code = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    image = fields.String(required=True)
    priority = fields.String(required=True, validate=validate.OneOf(list(container.PRIORITIES)))
    retry_policy = fields.Nested(Seed003JobRetryPolicyOutSchema, required=True)
    attempt = fields.Integer(required=True)
    owner_id = fields.String(required=True)


class Seed003JobListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(SEED_STATUSES))
    user = fields.String(
        validate=validate.Length(1, 200),
        metadata={"description": "a username; only admins may name someone else"},
    )
    created_since = UtcDateTime(
        default_timezone=dt.UTC, metadata={"description": "ISO 8601; UTC when no zone is given"}
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


class Seed003JobListSchema(Schema):
    jobs = fields.List(fields.Nested(Seed003JobSchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class Seed003JobOutputsSchema(Schema):
    job_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(SEED_STATUSES))
    files = fields.List(fields.Nested(Seed003OutputFileSchema), required=True)
    total = fields.Integer(required=True)


# --- shapes ------------------------------------------------------------------------------------


def seed_progress(job: dict[str, Any]) -> float:
    """The seed's `progress` (45.5): the worker's percentage, 100 once completed."""
    if job["status"] == "completed":
        return 100.0
    if job.get("progress_pct") is not None:
        return round(min(100.0, max(0.0, float(job["progress_pct"]))), 1)
    return float(job_progress(job)["overall_pct"])


def latest_outputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per output name, the latest (rows come oldest first)."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[row["filename"]] = row
    return list(latest.values())


def output_to_dict(job_id: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["filename"],
        "path": "/" + row["filename"],
        "size": row["size"],
        "mime_type": row["content_type"],
        "etag": row["sha256"],
        "created_at": iso_ms(row["created_at"]),
        "download_url": OUTPUT_URL.format(job_id=job_id, name=quote(row["filename"], safe="/")),
    }


def job_body(
    job: dict[str, Any],
    estimate: estimates.Estimate,
    outputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A container job in seed 003's shape; `output_files` when `outputs` are given."""
    job_id = str(job["id"])
    fields_ = container_api.job_fields(job)
    body = {
        "job_id": job_id,
        "name": fields_["name"],
        "status": seed_status(job["status"]),
        "progress": seed_progress(job),
        "created_at": iso_ms(job["created_at"]),
        "started_at": iso_ms(job["started_at"]),
        "estimated_completion": iso_ms(estimate.completion),
        "container_id": fields_["container_id"],
        "resource_usage": fields_["resource_usage"],
        "estimated_start": iso_ms(estimate.start),
        "completed_at": iso_ms(job["completed_at"]),
        "exit_code": fields_["exit_code"],
        "error": job["error"],
        "image": fields_["image"],
        "priority": container_api.priority_word(job["priority"]),
        "retry_policy": {"max_attempts": job["max_attempts"], "backoff": job["backoff"]},
        "attempt": job["attempt"],
        "owner_id": str(job["owner_id"]),
    }
    if outputs is not None:
        body["output_files"] = [output_to_dict(job_id, r) for r in latest_outputs(outputs)]
    return body


def full_body(svc: Services, job: dict[str, Any]) -> dict[str, Any]:
    """The job with its estimates and outputs, read in one transaction."""
    with svc.db.transaction() as conn:
        estimate = estimates.estimate(conn, job)
        outputs = files.outputs_of(conn, job_id=str(job["id"]))
    return job_body(job, estimate, outputs)


def _principal(scope: str) -> Principal:
    """401 without credentials; 403 without `scope` or the `containers` scope."""
    return container_api.require_scope(require_auth(scope))


def _job(scope: str, raw_id: str) -> tuple[Services, dict[str, Any]]:
    """The caller's container job named in the URL (scopes checked before it is looked up)."""
    principal = _principal(scope)
    svc = services()
    return svc, job_service.find_job(svc, principal, raw_id, kind=KIND)


# --- routes ------------------------------------------------------------------------------------


@blp.route("")
class Jobs(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.arguments(Seed003JobCreateSchema)
    @blp.doc(parameters=[IDEMPOTENCY_KEY])
    @blp.response(201, Seed003JobCreatedSchema)
    @blp.alt_response(
        200, schema=Seed003JobCreatedSchema, description="Idempotency-Key seen: the first job"
    )
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Submit a container job: image, command, environment, input files (paths of the
        files API), output globs, resources, priority and retry policy."""
        principal = _principal("jobs:write")
        options = container_api.seed_options(body.pop("priority"), body.pop("retry_policy"))
        key = job_service.idempotency_key()
        svc = services()
        job, created = job_service.submit(svc, principal, container_api.prepare, body, options, key)
        with svc.db.transaction() as conn:
            estimate = estimates.estimate(conn, job)
        return {
            "job_id": str(job["id"]),
            "status": seed_status(job["status"]),
            "created_at": iso_ms(job["created_at"]),
            "estimated_start": iso_ms(estimate.start),
        }, 201 if created else 200

    @blp.arguments(Seed003JobListQuerySchema, location="query")
    @blp.response(200, Seed003JobListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List container jobs, newest first: the caller's own; admins see everyone's and
        may name a user (`user`, a username)."""
        principal = _principal("jobs:read")
        username = query.get("user")
        if username is not None and not principal.is_admin and username != principal.username:
            raise Forbidden("Only admins may list other users' jobs", details={"user": username})
        svc = services()
        with svc.db.transaction() as conn:
            rows, total = jobs.list_jobs_of_kind(
                conn,
                kind=KIND,
                statuses=STATUS_FILTER[query["status"]] if "status" in query else None,
                owner_id=owner_filter(principal),
                owner_username=username,
                created_since=query.get("created_since"),
                limit=query["limit"],
                offset=query["offset"],
            )
            estimated = estimates.estimate_jobs(conn, rows, kind=KIND)
        return {
            "jobs": [job_body(row, estimated[str(row["id"])]) for row in rows],
            "total": total,
            "limit": query["limit"],
            "offset": query["offset"],
        }


@blp.route("/<uuidstr:job_id>")
@ratelimit.status_limit
@blp.response(200, Seed003JobSchema)
def get_job(job_id: str) -> dict[str, Any]:
    """Status, progress, estimates, the container, its resource usage and output files."""
    svc, job = _job("jobs:read", job_id)
    return full_body(svc, job)


@blp.route("/<uuidstr:job_id>/cancel", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, Seed003JobSchema)
def cancel(job_id: str) -> dict[str, Any]:
    """Cancel a queued or running job (a running container is killed within about a
    second); a finished job is a 409."""
    svc, job = _job("jobs:write", job_id)
    return full_body(svc, job_service.cancel_job(svc, job))


@blp.route("/<uuidstr:job_id>/retry", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, Seed003JobSchema)
def retry(job_id: str) -> dict[str, Any]:
    """Run a failed or cancelled job again, with all its attempts; other statuses are a 409."""
    svc, job = _job("jobs:write", job_id)
    return full_body(svc, job_service.retry_failed_job(svc, job))


@blp.route("/<uuidstr:job_id>/logs")
@blp.arguments(JobLogsQuerySchema, location="query")
@ratelimit.status_limit
@blp.response(200, JobLogsSchema)
def logs(query: dict[str, Any], job_id: str) -> dict[str, Any]:
    """The job's log: the container's output lines and the platform's own (attempts,
    retries, failures), oldest first; page with `after_id`."""
    svc, job = _job("jobs:read", job_id)
    with svc.db.transaction() as conn:
        rows = job_logs.get_logs(
            conn, job_id=str(job["id"]), after_id=query["after_id"], limit=query["limit"]
        )
    return {"job_id": str(job["id"]), "logs": [{**r, "ts": iso_ms(r["ts"])} for r in rows]}


def _outputs(job_id: str) -> tuple[Services, dict[str, Any], list[dict[str, Any]]]:
    svc, job = _job("jobs:read", job_id)
    with svc.db.transaction() as conn:
        rows = files.outputs_of(conn, job_id=str(job["id"]))
    return svc, job, latest_outputs(rows)


@blp.route("/<uuidstr:job_id>/output")
@ratelimit.status_limit
@blp.response(200, Seed003JobOutputsSchema)
def outputs(job_id: str) -> dict[str, Any]:
    """The files the job collected (its `output_patterns`), with their download URLs."""
    _, job, rows = _outputs(job_id)
    listed = [output_to_dict(str(job["id"]), row) for row in rows]
    return {
        "job_id": str(job["id"]),
        "status": seed_status(job["status"]),
        "files": listed,
        "total": len(listed),
    }


@blp.route("/<uuidstr:job_id>/output/<path:file>")
@ratelimit.status_limit
@blp.doc(responses=DOWNLOAD_RESPONSES)
def output_file(job_id: str, file: str) -> Response:
    """One output file by its name (`output/report.json`); Range and If-None-Match work."""
    svc, _, rows = _outputs(job_id)
    name = file.lstrip("/")
    for row in rows:
        if row["filename"] == name:
            # Saved under its base name: a `/` has no place in Content-Disposition.
            return send_stored_file(svc, {**row, "filename": posixpath.basename(name)})
    raise NotFound("Output file not found", details={"file": name})
