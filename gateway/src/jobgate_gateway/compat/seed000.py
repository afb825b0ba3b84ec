"""Seed 000 (TeamCache Manager API), word for word: `/api/v1/cache/jobs` and
`/api/v1/health`, camelCase bodies (marshmallow `data_key`), a `success` envelope and the
seed's error texts. Built on the `cache` kind's submit function and the job services.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from jobgate import jobs
from jobgate.kinds import cache
from jobgate.sizes import readable_size
from jobgate.web import Blueprint, ErrorDialect
from jobgate_gateway import health, ratelimit
from jobgate_gateway.auth import authenticate_blueprint, owner_filter, require_auth
from jobgate_gateway.jobs import service as job_service
from jobgate_gateway.jobs.views import fresh_throughput, percent, progress
from jobgate_gateway.kinds import cache as cache_api
from jobgate_gateway.services import services
from jobgate_gateway.timefmt import iso_ms

# Seed 000's error texts, chosen by status so every path to that status says the same.
SEED_MESSAGES = {
    401: "Invalid or missing API key",
    429: "Too many requests, please try again later",
}


def seed_error_body(
    status: int, code: str, message: str, details: dict[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "error": SEED_MESSAGES.get(status, message)}
    if details:
        body["details"] = details
    return body


class Seed000ErrorSchema(Schema):
    success = fields.Boolean(required=True, validate=validate.Equal(False))
    error = fields.String(required=True)
    details = fields.Dict()


DIALECT = ErrorDialect(seed_error_body, Seed000ErrorSchema)

blp = Blueprint(
    "seed000",
    __name__,
    url_prefix="/api/v1/cache/jobs",
    description="TeamCache cache jobs (seed 000)",
    error_dialect=DIALECT,
)
blp.before_request(authenticate_blueprint)

health_blp = Blueprint(
    "seed000-health", __name__, description="Seed 000's health check", error_dialect=DIALECT
)


# --- response bodies ------------------------------------------------------------------------


class Seed000ReadableSizeSchema(Schema):
    bytes = fields.Integer(required=True)
    readable = fields.String(required=True)


class Seed000CreatedSchema(Schema):
    success = fields.Boolean(required=True)
    job_id = fields.String(required=True, data_key="jobId")
    status = fields.String(required=True)
    total_files = fields.Integer(required=True, data_key="totalFiles")
    total_size = fields.Nested(Seed000ReadableSizeSchema, required=True, data_key="totalSize")
    message = fields.String(required=True)
    created_at = fields.String(required=True, data_key="createdAt")


class Seed000FilesProgressSchema(Schema):
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    total = fields.Integer(required=True)
    percentage = fields.Integer(required=True)


class Seed000SizeProgressSchema(Schema):
    completed_bytes = fields.Integer(required=True, data_key="completedBytes")
    total_bytes = fields.Integer(required=True, data_key="totalBytes")
    completed_readable = fields.String(required=True, data_key="completedReadable")
    total_readable = fields.String(required=True, data_key="totalReadable")
    percentage = fields.Integer(required=True)


class Seed000ProgressSchema(Schema):
    files = fields.Nested(Seed000FilesProgressSchema, required=True)
    size = fields.Nested(Seed000SizeProgressSchema, required=True)
    percentage = fields.Integer(required=True)


class Seed000ThroughputSchema(Schema):
    mbps = fields.Float(required=True)
    readable = fields.String(required=True)
    timestamp = fields.String(required=True)


class Seed000FailedFileSchema(Schema):
    path = fields.String(required=True)
    error = fields.String(required=True, allow_none=True)


class Seed000StatusSchema(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True)
    total_files = fields.Integer(required=True, data_key="totalFiles")
    progress = fields.Nested(Seed000ProgressSchema, required=True)
    throughput = fields.Nested(
        Seed000ThroughputSchema,
        required=True,
        allow_none=True,
        metadata={"description": "null unless the job is running and the sample < 10 s old"},
    )
    created_at = fields.String(required=True, data_key="createdAt")
    started_at = fields.String(required=True, allow_none=True, data_key="startedAt")
    completed_at = fields.String(required=True, allow_none=True, data_key="completedAt")
    error = fields.String(required=True, allow_none=True)
    failed_files = fields.List(fields.Nested(Seed000FailedFileSchema), data_key="failedFiles")


class Seed000StatusEnvelopeSchema(Schema):
    success = fields.Boolean(required=True)
    job = fields.Nested(Seed000StatusSchema, required=True)


class Seed000ListItemSchema(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True)
    total_files = fields.Integer(required=True, data_key="totalFiles")
    total_size_bytes = fields.Integer(required=True, data_key="totalSizeBytes")
    total_size_readable = fields.String(required=True, data_key="totalSizeReadable")
    completed_files = fields.Integer(required=True, data_key="completedFiles")
    completed_size_bytes = fields.Integer(required=True, data_key="completedSizeBytes")
    completed_size_readable = fields.String(required=True, data_key="completedSizeReadable")
    failed_files = fields.Integer(required=True, data_key="failedFiles")
    percentage = fields.Integer(required=True)
    created_at = fields.String(required=True, data_key="createdAt")
    completed_at = fields.String(required=True, allow_none=True, data_key="completedAt")


class Seed000ListSchema(Schema):
    success = fields.Boolean(required=True)
    jobs = fields.List(fields.Nested(Seed000ListItemSchema), required=True)
    total = fields.Integer(required=True)


class Seed000MessageSchema(Schema):
    success = fields.Boolean(required=True)
    message = fields.String(required=True)


class Seed000ListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(jobs.STATUSES))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


class Seed000HealthSchema(Schema):
    success = fields.Boolean(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["healthy", "unhealthy"]))
    service = fields.String(required=True)
    database = fields.String(required=True)
    broker = fields.String(required=True)
    timestamp = fields.String(required=True)


def created_body(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": True,
        "job_id": str(job["id"]),
        "status": job["status"],
        "total_files": job["items_total"],
        "total_size": {"bytes": job["bytes_total"], "readable": readable_size(job["bytes_total"])},
        "message": "Cache job created successfully",
        "created_at": iso_ms(job["created_at"]),
    }


def status_body(job: dict[str, Any], failures: list[dict[str, Any]]) -> dict[str, Any]:
    pct = progress(job)
    tput = fresh_throughput(job)
    body: dict[str, Any] = {
        "id": str(job["id"]),
        "status": job["status"],
        "total_files": job["items_total"],
        "progress": {
            "files": {
                "completed": job["items_done"],
                "failed": job["items_failed"],
                "total": job["items_total"],
                "percentage": pct["files_pct"],
            },
            "size": {
                "completed_bytes": job["bytes_done"],
                "total_bytes": job["bytes_total"],
                "completed_readable": readable_size(job["bytes_done"]),
                "total_readable": readable_size(job["bytes_total"]),
                "percentage": pct["size_pct"],
            },
            "percentage": pct["overall_pct"],
        },
        # Always present (null when stale) so clients may test `job['throughput']`.
        "throughput": None
        if tput is None
        else {"mbps": tput["mbps"], "readable": tput["readable"], "timestamp": iso_ms(tput["at"])},
        "created_at": iso_ms(job["created_at"]),
        "started_at": iso_ms(job["started_at"]),
        "completed_at": iso_ms(job["completed_at"]),
        "error": job["error"],
    }
    if failures:
        body["failed_files"] = failures
    return body


def list_item(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(job["id"]),
        "status": job["status"],
        "total_files": job["items_total"],
        "total_size_bytes": job["bytes_total"],
        "total_size_readable": readable_size(job["bytes_total"]),
        "completed_files": job["items_done"],
        "completed_size_bytes": job["bytes_done"],
        "completed_size_readable": readable_size(job["bytes_done"]),
        "failed_files": job["items_failed"],
        "percentage": percent(
            job["items_done"], job["items_total"], finished=job["status"] == "completed"
        ),
        "created_at": iso_ms(job["created_at"]),
        "completed_at": iso_ms(job["completed_at"]),
    }


# --- routes ---------------------------------------------------------------------------------


@blp.route("")
class CacheJobs(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.arguments(cache.CacheParams)
    @blp.response(201, Seed000CreatedSchema)
    @blp.alt_response(
        200, schema=Seed000CreatedSchema, description="Idempotency-Key seen: the first job"
    )
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Create a cache job from files and/or directories (relative or client-absolute paths)."""
        principal = require_auth("jobs:write")
        key = job_service.idempotency_key()
        job, created = job_service.submit(services(), principal, cache_api.prepare, body, {}, key)
        return created_body(job), 201 if created else 200

    @blp.arguments(Seed000ListQuerySchema, location="query")
    @blp.response(200, Seed000ListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List cache jobs, newest first; `total` counts all matching jobs."""
        principal = require_auth("jobs:read")
        svc = services()
        with svc.db.transaction() as conn:
            rows, total = jobs.list_jobs(
                conn,
                owner_id=owner_filter(principal),
                kind=cache.SPEC.name,
                status=query.get("status"),
                limit=query["limit"],
                offset=query["offset"],
            )
        return {"success": True, "jobs": [list_item(r) for r in rows], "total": total}


@blp.route("/<uuidstr:job_id>")
class CacheJob(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.response(200, Seed000StatusEnvelopeSchema)
    def get(self, job_id: str) -> dict[str, Any]:
        """Status and progress of one cache job (files, size, overall %, fresh throughput)."""
        svc, job = job_service.job_for_request("jobs:read", job_id, kind=cache.SPEC.name)
        return {"success": True, "job": status_body(job, job_service.failures_of(svc, job))}

    @blp.response(200, Seed000MessageSchema)
    def delete(self, job_id: str) -> dict[str, Any]:
        """Cancel a pending or running cache job."""
        svc, job = job_service.job_for_request("jobs:write", job_id, kind=cache.SPEC.name)
        job_service.cancel_job(svc, job)
        return {"success": True, "message": "Job cancelled successfully"}


@health_blp.route("/api/v1/health")
@health.PUBLIC
@health_blp.response(200, Seed000HealthSchema)
@health_blp.alt_response(503, schema=Seed000HealthSchema, description="database or broker down")
def api_health() -> tuple[dict[str, Any], int]:
    """Seed 000's health check, plus the broker's state."""
    deps, healthy, now = health.dependencies()
    body = {
        "success": healthy,
        "status": "healthy" if healthy else "unhealthy",
        "service": "api-gateway",
        **deps,
        "timestamp": now,
    }
    return body, 200 if healthy else 503
