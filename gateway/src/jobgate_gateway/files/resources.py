"""/api/v1/files: upload (multipart, streamed to storage), info, download."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from marshmallow import Schema, fields

from jobgate import files
from jobgate.errors import NotFound
from jobgate.identity import Principal
from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, can_access, require_auth
from jobgate_gateway.files.views import file_to_dict, send_stored_file
from jobgate_gateway.services import Services, services
from jobgate_gateway.uploads import receive_upload

blp = Blueprint("files", __name__, url_prefix="/api/v1/files", description="Uploads and outputs")
blp.before_request(authenticate_blueprint)

MULTIPART_UPLOAD = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        }
    },
}
_BINARY = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
DOWNLOAD_RESPONSES = {
    "200": {"description": "The file", "content": _BINARY},
    "206": {"description": "The requested byte range", "content": _BINARY},
    "304": {"description": "Not modified (If-None-Match)"},
}


class FileSchema(Schema):
    id = fields.String(required=True)
    filename = fields.String(required=True)
    size = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    content_type = fields.String(required=True)
    role = fields.String(required=True, metadata={"description": "upload or output"})
    job_id = fields.String(required=True, allow_none=True)
    media = fields.Dict(required=True, allow_none=True)
    created_at = fields.String(required=True)
    download_url = fields.String(required=True)


def find_file(svc: Services, principal: Principal, raw_id: str) -> dict[str, Any]:
    """The file if the principal may see it; another user's file is a 404."""
    try:
        file_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise NotFound("File not found") from None
    with svc.db.transaction() as conn:
        row = files.get_file(conn, file_id=file_id)
    if row is None or not can_access(principal, row):
        raise NotFound("File not found")
    return row


@blp.route("", methods=["POST"])
@ratelimit.create_limit
@blp.doc(requestBody=MULTIPART_UPLOAD)
@blp.response(201, FileSchema)
def upload() -> dict[str, Any]:
    """Upload a video (multipart field `file`); it is probed with ffmpeg before it is kept."""
    principal = require_auth("jobs:write")
    return file_to_dict(receive_upload(services(), principal))


@blp.route("/<uuidstr:file_id>")
@ratelimit.status_limit
@blp.response(200, FileSchema)
def info(file_id: str) -> dict[str, Any]:
    """Size, SHA-256, type, media description (duration, codecs) of a file."""
    principal = require_auth("jobs:read")
    return file_to_dict(find_file(services(), principal, file_id))


@blp.route("/<uuidstr:file_id>/content")
@ratelimit.status_limit
@blp.doc(responses=DOWNLOAD_RESPONSES)
def content(file_id: str) -> Response:
    """The file itself; supports Range (206) and If-None-Match (304)."""
    principal = require_auth("jobs:read")
    svc = services()
    return send_stored_file(svc, find_file(svc, principal, file_id))
