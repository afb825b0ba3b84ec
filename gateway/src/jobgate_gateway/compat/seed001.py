"""Seed 001 (MP4 to MP3 converter) at the root: POST /upload, GET /status/{job_id},
GET /download/{job_id}, on top of the `convert` kind's submit function.

Their bodies and status words are the seed's (`queued` for a job waiting to run); errors
use the canonical error format, which the seed leaves open.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from marshmallow import Schema, fields

from jobgate import files
from jobgate.errors import Conflict, InvalidRequest, NotFound
from jobgate.kinds.convert import BITRATES
from jobgate.kinds.convert import SPEC as CONVERT
from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.files.resources import DOWNLOAD_RESPONSES, MULTIPART_UPLOAD
from jobgate_gateway.files.views import send_stored_file
from jobgate_gateway.jobs import service as job_service
from jobgate_gateway.jobs.views import progress
from jobgate_gateway.kinds.convert import submit_conversion
from jobgate_gateway.services import services
from jobgate_gateway.timefmt import iso_ms
from jobgate_gateway.uploads import delete_upload, receive_upload

blp = Blueprint("seed001", __name__, description="MP4 to MP3 conversion (seed 001)")
blp.before_request(authenticate_blueprint)

SEED_STATUS = {"pending": "queued", "retrying": "queued"}


def seed_status(status: str) -> str:
    return SEED_STATUS.get(status, status)


class Seed001UploadedSchema(Schema):
    message = fields.String(required=True)
    job_id = fields.String(required=True)
    filename = fields.String(required=True)
    status = fields.String(required=True)
    file_id = fields.String(required=True)


class Seed001StatusSchema(Schema):
    job_id = fields.String(required=True)
    status = fields.String(required=True)
    progress = fields.Integer(required=True, metadata={"description": "0-100"})
    filename = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)
    started_at = fields.String(required=True, allow_none=True)
    completed_at = fields.String(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)


@blp.route("/upload", methods=["POST"])
@ratelimit.create_limit
@blp.doc(requestBody=MULTIPART_UPLOAD)
@blp.response(201, Seed001UploadedSchema)
def upload() -> dict[str, Any]:
    """Upload a video (multipart field `file`, optional `bitrate`) and queue its conversion."""
    principal = require_auth("jobs:write")
    svc = services()
    check_bitrate(request.args.get("bitrate"))
    key = job_service.idempotency_key()
    row = receive_upload(svc, principal)
    try:
        bitrate = request.form.get("bitrate") or request.args.get("bitrate")
        check_bitrate(bitrate)
        job, _ = submit_conversion(
            svc, principal, row, bitrate=bitrate, options={}, idempotency_key=key
        )
    except BaseException:
        delete_upload(svc, row)  # the request is refused: keep nothing of it
        raise
    return {
        "message": "File uploaded successfully",
        "job_id": str(job["id"]),
        "filename": row["filename"],
        "status": seed_status(job["status"]),
        "file_id": str(row["id"]),
    }


def check_bitrate(bitrate: str | None) -> None:
    if bitrate is not None and bitrate not in BITRATES:
        raise InvalidRequest(
            f"Unsupported bitrate '{bitrate}'", details={"allowed": list(BITRATES)}
        )


@blp.route("/status/<uuidstr:job_id>")
@ratelimit.status_limit
@blp.response(200, Seed001StatusSchema)
def status(job_id: str) -> dict[str, Any]:
    """Status and progress (0-100) of a conversion."""
    _, job = job_service.job_for_request("jobs:read", job_id, kind=CONVERT.name)
    return status_body(job)


def status_body(job: dict[str, Any]) -> dict[str, Any]:
    done = job["status"] == "completed"
    params = job["params"]
    return {
        "job_id": str(job["id"]),
        "status": seed_status(job["status"]),
        "progress": progress(job)["overall_pct"],
        "filename": params["output_name"] if done else params.get("input_name"),
        "created_at": iso_ms(job["created_at"]),
        "started_at": iso_ms(job["started_at"]),
        "completed_at": iso_ms(job["completed_at"]),
        "error": job["error"],
    }


@blp.route("/download/<uuidstr:job_id>")
@ratelimit.status_limit
@blp.doc(responses=DOWNLOAD_RESPONSES)
def download(job_id: str) -> Response:
    """The MP3 of a completed conversion (Range and ETag supported)."""
    svc, job = job_service.job_for_request("jobs:read", job_id, kind=CONVERT.name)
    if job["status"] != "completed":
        raise Conflict(
            f"Conversion is not completed (status: {seed_status(job['status'])})",
            details={"status": seed_status(job["status"])},
        )
    with svc.db.transaction() as conn:
        outputs = files.outputs_of(conn, job_id=str(job["id"]))
    if not outputs:
        raise NotFound("Converted file not found")
    return send_stored_file(svc, outputs[-1])
