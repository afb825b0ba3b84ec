"""Seed 000's routes, word for word: camelCase bodies, a `success` envelope, its error texts."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView

from jobgate import jobs
from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, owner_filter, require_auth
from jobgate_gateway.cache import service, views
from jobgate_gateway.cache.schemas import CacheJobListQuerySchema, CacheJobSchema
from jobgate_gateway.jobs import service as job_service
from jobgate_gateway.services import services

blp = Blueprint(
    "cache",
    __name__,
    url_prefix="/api/v1/cache/jobs",
    description="TeamCache cache jobs (seed 000)",
)
blp.before_request(authenticate_blueprint)

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


@blp.route("")
class CacheJobs(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.arguments(CacheJobSchema)
    def post(self, body: dict[str, Any]) -> Response:
        """Create a cache job from files and/or directories (relative or client-absolute paths)."""
        principal = require_auth("jobs:write")
        key = job_service.idempotency_key()
        job, created = service.submit_cache_job(services(), principal, body, {}, key)
        return jsonify(views.created_body(job)), 201 if created else 200

    @blp.arguments(CacheJobListQuerySchema, location="query")
    def get(self, query: dict[str, Any]) -> Response:
        """List cache jobs, newest first; `total` counts all matching jobs."""
        principal = require_auth("jobs:read")
        svc = services()
        with svc.db.transaction() as conn:
            rows, total = jobs.list_jobs(
                conn,
                owner_id=owner_filter(principal),
                kind="cache",
                status=query.get("status"),
                limit=query["limit"],
                offset=query["offset"],
            )
        return jsonify(
            {"success": True, "jobs": [views.list_item(r) for r in rows], "total": total}
        )


@blp.route("/<job_id>")
class CacheJob(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    def get(self, job_id: str) -> Response:
        """Status and progress of one cache job (files, size, overall %, fresh throughput)."""
        principal = require_auth("jobs:read")
        svc = services()
        job = job_service.find_job(svc, principal, job_id, kind="cache")
        return jsonify(
            {"success": True, "job": views.status_body(job, job_service.failures_of(svc, job))}
        )

    def delete(self, job_id: str) -> Response:
        """Cancel a pending or running cache job."""
        principal = require_auth("jobs:write")
        svc = services()
        job = job_service.find_job(svc, principal, job_id, kind="cache")
        job_service.cancel_job(svc, job)
        return jsonify({"success": True, "message": "Job cancelled successfully"})
