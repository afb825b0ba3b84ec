"""/api/v1/jobs: submit, list, read, cancel, retry and read the logs of jobs of any kind."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import fields

from jobgate import files, jobs, kinds
from jobgate.errors import Forbidden, InvalidRequest, NotFound
from jobgate.jobs import job_logs
from jobgate.web import Blueprint, ErrorDialect, ErrorSchema, canonical_error_body, load_or_400
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, owner_filter, require_auth
from jobgate_gateway.files.resources import DOWNLOAD_RESPONSES
from jobgate_gateway.files.views import file_to_dict, send_stored_file
from jobgate_gateway.jobs import service
from jobgate_gateway.jobs.schemas import (
    JobCreateSchema,
    JobListQuerySchema,
    JobListSchema,
    JobLogsQuerySchema,
    JobLogsSchema,
    JobOptionsSchema,
    JobOutputsSchema,
    JobSchema,
    kind_request_schemas,
)
from jobgate_gateway.jobs.views import job_to_dict
from jobgate_gateway.services import services
from jobgate_gateway.timefmt import iso_ms


class JobsErrorSchema(ErrorSchema):
    detail = fields.Raw(
        required=True, metadata={"description": "the message again, as seed 002's clients read it"}
    )


def jobs_error_body(status: int, code: str, message: str, details: dict[str, Any]) -> dict:
    """`/api/v1/jobs` is also seed 002's (DESIGN.md, "Public API"): its clients read `detail`."""
    return {**canonical_error_body(status, code, message, details), "detail": message}


blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/api/v1/jobs",
    description="Jobs of every kind",
    error_dialect=ErrorDialect(jobs_error_body, JobsErrorSchema),
)
blp.before_request(authenticate_blueprint)

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    "description": "the same owner and key return the first job (200)",
}

JOB_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": list(kind_request_schemas().values()),
                "discriminator": {"propertyName": "kind"},
            }
        }
    },
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
    @blp.doc(requestBody=JOB_REQUEST_BODY, parameters=[IDEMPOTENCY_KEY])
    @blp.response(201, JobSchema)
    @blp.alt_response(200, schema=JobSchema, description="Idempotency-Key seen: the first job")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Submit a job: `kind` plus the kind's parameters and optional retry policy."""
        principal = require_auth("jobs:write")
        try:
            spec = kinds.get(body["kind"])
        except kinds.UnknownKind:
            raise InvalidRequest(
                f"Unsupported job kind '{body['kind']}'", details={"supported": list(kinds.names())}
            ) from None
        raw_params, options = _split_options(body)
        params = load_or_400(spec.params(), raw_params)
        key = service.idempotency_key()
        job, created = spec.submit(services(), principal, params, options, key)
        return job_to_dict(job), 201 if created else 200

    @blp.arguments(JobListQuerySchema, location="query")
    @blp.response(200, JobListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
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
        return {
            "jobs": [job_to_dict(r) for r in rows],
            "total": total,
            "limit": query["limit"],
            "offset": query["offset"],
        }


@blp.route("/<uuidstr:job_id>")
class JobById(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.response(200, JobSchema)
    def get(self, job_id: str) -> dict[str, Any]:
        """A job with its progress, throughput (while fresh) and per-item failures."""
        svc, job = service.job_for_request("jobs:read", job_id)
        return job_to_dict(job, failures=service.failures_of(svc, job))

    @blp.response(200, JobSchema)
    def delete(self, job_id: str) -> dict[str, Any]:
        """Cancel a job (same as POST /cancel); finished jobs are kept for their history."""
        return _cancel(job_id)


def _cancel(job_id: str) -> dict[str, Any]:
    svc, job = service.job_for_request("jobs:write", job_id)
    return job_to_dict(service.cancel_job(svc, job))


@blp.route("/<uuidstr:job_id>/cancel", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, JobSchema)
def cancel(job_id: str) -> dict[str, Any]:
    """Cancel a pending or running job; running work stops within about a second."""
    return _cancel(job_id)


@blp.route("/<uuidstr:job_id>/retry", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, JobSchema)
def retry(job_id: str) -> dict[str, Any]:
    """Run a failed or cancelled job again; work already done is not redone."""
    svc, job = service.job_for_request("jobs:write", job_id)
    return job_to_dict(service.retry_failed_job(svc, job))


@blp.route("/<uuidstr:job_id>/logs")
@blp.arguments(JobLogsQuerySchema, location="query")
@ratelimit.status_limit
@blp.response(200, JobLogsSchema)
def logs(query: dict[str, Any], job_id: str) -> dict[str, Any]:
    """The job's log lines (attempts, retries, failures), oldest first."""
    svc, job = service.job_for_request("jobs:read", job_id)
    with svc.db.transaction() as conn:
        rows = job_logs.get_logs(
            conn, job_id=str(job["id"]), after_id=query["after_id"], limit=query["limit"]
        )
    return {"job_id": str(job["id"]), "logs": [{**r, "ts": iso_ms(r["ts"])} for r in rows]}


def _outputs(job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    svc, job = service.job_for_request("jobs:read", job_id)
    with svc.db.transaction() as conn:
        return job, files.outputs_of(conn, job_id=str(job["id"]))


@blp.route("/<uuidstr:job_id>/output")
@ratelimit.status_limit
@blp.response(200, JobOutputsSchema)
def outputs(job_id: str) -> dict[str, Any]:
    """The files a job produced (a conversion's MP3), with their download URLs."""
    job, rows = _outputs(job_id)
    listed = [
        {**file_to_dict(r), "download_url": f"/api/v1/jobs/{job['id']}/output/{r['filename']}"}
        for r in rows
    ]
    return {"job_id": str(job["id"]), "status": job["status"], "files": listed}


@blp.route("/<uuidstr:job_id>/output/<path:name>")
@ratelimit.status_limit
@blp.doc(responses=DOWNLOAD_RESPONSES)
def output_file(job_id: str, name: str) -> Response:
    """One output file by name (Range and ETag supported)."""
    _, rows = _outputs(job_id)
    for row in reversed(rows):
        if row["filename"] == name:
            return send_stored_file(services(), row)
    raise NotFound("Output file not found")
