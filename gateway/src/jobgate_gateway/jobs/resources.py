"""/api/v1/jobs: submit, list, read, cancel, retry and read the logs of jobs of any kind."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from flask.views import MethodView

from jobgate import files, jobs
from jobgate.errors import Forbidden, InvalidRequest, NotFound
from jobgate.web import Blueprint, load_or_400
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, owner_filter, require_auth
from jobgate_gateway.cache import service as cache_service
from jobgate_gateway.convert import service as convert_service
from jobgate_gateway.files.views import file_to_dict, send_stored_file
from jobgate_gateway.jobs import service
from jobgate_gateway.jobs.schemas import (
    JobCreateSchema,
    JobListQuerySchema,
    JobLogsQuerySchema,
    JobOptionsSchema,
)
from jobgate_gateway.jobs.views import job_to_dict
from jobgate_gateway.services import services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint("jobs", __name__, url_prefix="/api/v1/jobs", description="Jobs of every kind")
blp.before_request(authenticate_blueprint)

# kind -> function(services, principal, params, options, idempotency_key) -> (job, created)
SUBMITTERS = {
    "cache": cache_service.submit_from_params,
    "convert": convert_service.submit_from_params,
}


def _split_options(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    option_names = set(JobOptionsSchema().fields)
    params = {k: v for k, v in body.items() if k not in option_names and k != "kind"}
    options = load_or_400(JobOptionsSchema(), {k: v for k, v in body.items() if k in option_names})
    return params, {k: v for k, v in options.items() if v is not None}


@blp.route("")
class Jobs(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.arguments(JobCreateSchema)
    @blp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"}}])
    def post(self, body: dict[str, Any]) -> Response:
        """Submit a job: `kind` plus the kind's parameters and optional retry policy."""
        principal = require_auth("jobs:write")
        kind = body["kind"]
        if kind not in SUBMITTERS:
            raise InvalidRequest(
                f"Unsupported job kind '{kind}'", details={"supported": sorted(SUBMITTERS)}
            )
        params, options = _split_options(body)
        key = service.idempotency_key()
        job, created = SUBMITTERS[kind](services(), principal, params, options, key)
        return jsonify(job_to_dict(job)), 201 if created else 200

    @blp.arguments(JobListQuerySchema, location="query")
    def get(self, query: dict[str, Any]) -> Response:
        """List jobs (own jobs; admins see all and may filter by `owner`)."""
        principal = require_auth("jobs:read")
        owner = owner_filter(principal)
        if "owner" in query:
            if not principal.is_admin and str(query["owner"]) != principal.user_id:
                raise Forbidden("Only admins may list other users' jobs")
            owner = str(query["owner"])
        svc = services()
        with svc.db.transaction() as conn:
            rows, total = jobs.list_jobs(
                conn,
                owner_id=owner,
                kind=query.get("kind"),
                status=query.get("status"),
                created_since=query.get("created_since"),
                limit=query["limit"],
                offset=query["offset"],
                sort=query["sort"],
                order=query["order"],
            )
        return jsonify(
            {
                "jobs": [job_to_dict(r) for r in rows],
                "total": total,
                "limit": query["limit"],
                "offset": query["offset"],
            }
        )


@blp.route("/<job_id>")
class JobById(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    def get(self, job_id: str) -> Response:
        """A job with its progress, throughput (while fresh) and per-item failures."""
        principal = require_auth("jobs:read")
        svc = services()
        job = service.find_job(svc, principal, job_id)
        return jsonify(job_to_dict(job, failures=service.failures_of(svc, job)))

    def delete(self, job_id: str) -> Response:
        """Cancel a job (same as POST /cancel); finished jobs are kept for their history."""
        return _cancel(job_id)


def _cancel(job_id: str) -> Response:
    principal = require_auth("jobs:write")
    svc = services()
    job = service.find_job(svc, principal, job_id)
    return jsonify(job_to_dict(service.cancel_job(svc, job)))


@blp.route("/<job_id>/cancel", methods=["POST"])
@ratelimit.create_limit
def cancel(job_id: str) -> Response:
    """Cancel a pending or running job; running work stops within about a second."""
    return _cancel(job_id)


@blp.route("/<job_id>/retry", methods=["POST"])
@ratelimit.create_limit
def retry(job_id: str) -> Response:
    """Run a failed or cancelled job again; work already done is not redone."""
    principal = require_auth("jobs:write")
    svc = services()
    job = service.find_job(svc, principal, job_id)
    return jsonify(job_to_dict(service.retry_failed_job(svc, job)))


@blp.route("/<job_id>/logs")
@blp.arguments(JobLogsQuerySchema, location="query")
@ratelimit.status_limit
def logs(query: dict[str, Any], job_id: str) -> Response:
    """The job's log lines (attempts, retries, failures), oldest first."""
    principal = require_auth("jobs:read")
    svc = services()
    job = service.find_job(svc, principal, job_id)
    with svc.db.transaction() as conn:
        rows = jobs.get_logs(
            conn, job_id=str(job["id"]), after_id=query["after_id"], limit=query["limit"]
        )
    return jsonify(
        {
            "job_id": str(job["id"]),
            "logs": [{**r, "ts": iso_ms(r["ts"])} for r in rows],
        }
    )


def _outputs(job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    principal = require_auth("jobs:read")
    svc = services()
    job = service.find_job(svc, principal, job_id)
    with svc.db.transaction() as conn:
        return job, files.outputs_of(conn, job_id=str(job["id"]))


@blp.route("/<job_id>/output")
@ratelimit.status_limit
def outputs(job_id: str) -> Response:
    """The files a job produced (a conversion's MP3), with their download URLs."""
    job, rows = _outputs(job_id)
    listed = [
        {**file_to_dict(r), "download_url": f"/api/v1/jobs/{job['id']}/output/{r['filename']}"}
        for r in rows
    ]
    return jsonify({"job_id": str(job["id"]), "status": job["status"], "files": listed})


@blp.route("/<job_id>/output/<path:name>")
@ratelimit.status_limit
def output_file(job_id: str, name: str) -> Response:
    """One output file by name (Range and ETag supported)."""
    _, rows = _outputs(job_id)
    for row in reversed(rows):
        if row["filename"] == name:
            return send_stored_file(services(), row)
    raise NotFound("Output file not found")
