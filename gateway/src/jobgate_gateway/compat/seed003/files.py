"""Seed 003's /api/files: upload, info and download by path, in a per-owner namespace over
the same `files` rows and storage as /api/v1/files.

A path is the caller's own: `/uploads/data.csv` of one user is not another's, and an admin
sees only their own paths here (use /api/v1/files by id to reach anyone's). Container jobs
read their inputs from this namespace, so every route needs the `containers` scope. Files
may be of any type (no extension check, no media probe); `permissions` is stored and shown,
never enforced. Uploading to a taken path replaces the file there (`files.put_at_path`).
"""

from __future__ import annotations

import http
import logging
import posixpath
from typing import Any

from flask import Response
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.routing import BaseConverter

from jobgate import files
from jobgate.errors import NotFound
from jobgate.identity import Principal
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import require_auth
from jobgate_gateway.files.resources import DOWNLOAD_RESPONSES
from jobgate_gateway.files.views import send_stored_file
from jobgate_gateway.services import Services, services
from jobgate_gateway.timefmt import iso_ms
from jobgate_gateway.uploads import (
    UploadBlueprint,
    UploadedFile,
    clean_filename,
    content_type_of,
    store_upload,
)

log = logging.getLogger(__name__)

SCOPE = "containers"

blp = UploadBlueprint(
    "seed003_files", __name__, url_prefix="/api/files", description="seed 003 files"
)


class FilePath(BaseConverter):
    """`<filepath:path>`: everything after the prefix, slashes included, even leading or
    doubled ones and nothing at all, so every spelling reaches `normalize_path` (and gets its
    400) instead of werkzeug's redirect or a bare 404."""

    part_isolating = False
    regex = r"[\s\S]*"  # "." would stop at a newline: a 404 where the path is a 400
    weight = 300


blp.record_once(lambda state: state.app.url_map.converters.setdefault("filepath", FilePath))


@blp.before_request
def _require_containers_scope() -> None:
    """401 without credentials, 403 without the scope: before any body is read."""
    require_auth(SCOPE)


PATH_PARAMETER = {
    "in": "path",
    "name": "path",
    "description": "The file's path in your namespace, e.g. `uploads/document.pdf`"
    " (a leading `/` is implied; `.` and `..` segments, backslashes, control characters"
    " and percent-escapes are refused)",
}


class WholeMatch(validate.Regexp):
    """A Regexp validator (documented as its `pattern`) that must match the whole value:
    Python's `$` also matches before a trailing newline, which "644\n" would slip through."""

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class Seed003UploadSchema(Schema):
    file = UploadedFile(required=True, metadata={"description": "the file, of any type"})
    path = fields.String(
        required=True,
        metadata={
            "description": "where it goes in your namespace; a file already there is replaced",
            "example": "/uploads/document.pdf",
        },
    )
    permissions = fields.String(
        load_default="644",
        validate=WholeMatch(r"^[0-7]{3,4}$", error="Must be 3 or 4 octal digits."),
        metadata={"description": "octal mode, stored and shown (not enforced)", "example": "644"},
    )


class Seed003FileInfoSchema(Schema):
    path = fields.String(required=True, metadata={"example": "/uploads/document.pdf"})
    size = fields.Integer(required=True)
    mime_type = fields.String(required=True)
    created_at = fields.String(
        required=True, metadata={"description": "when the path was first written"}
    )
    modified_at = fields.String(
        required=True, metadata={"description": "when its content last changed"}
    )
    etag = fields.String(required=True, metadata={"description": "SHA-256 of the content"})
    permissions = fields.String(required=True)


def info_body(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": row["path"],
        "size": row["size"],
        "mime_type": row["content_type"],
        "created_at": iso_ms(row["created_at"]),
        "modified_at": iso_ms(row["updated_at"]),
        "etag": row["sha256"],
        "permissions": row["permissions"],
    }


def find_by_path(svc: Services, principal: Principal, raw_path: str) -> dict[str, Any]:
    """The caller's own file at the path (400 for a bad path, 404 when there is none)."""
    path = files.normalize_path(raw_path)
    with svc.db.transaction() as conn:
        row = files.file_at_path(conn, owner_id=principal.user_id, path=path)
    if row is None:
        raise NotFound(f"No file at '{path}'", details={"path": path})
    return row


@blp.route("/upload", methods=["POST"])
@ratelimit.create_limit
@blp.arguments(Seed003UploadSchema, location="multipart")
@blp.response(201, Seed003FileInfoSchema)
@blp.alt_response(413, response=http.HTTPStatus(413).name)
def upload(form: dict[str, Any]) -> dict[str, Any]:
    """Upload a file to a path of yours (multipart `file`, `path`, `permissions`); a file
    already at that path is replaced."""
    principal = require_auth(SCOPE)
    svc = services()
    path = files.normalize_path(form["path"])
    part = form["file"]
    filename = clean_filename(posixpath.basename(path))
    row, obsolete = store_upload(
        svc,
        part.stream,
        lambda conn, key: files.put_at_path(
            conn,
            owner_id=principal.user_id,
            path=path,
            permissions=form["permissions"],
            filename=filename,
            content_type=content_type_of(filename, part.mimetype),
            size=part.stream.size,
            sha256=part.stream.sha256,
            storage_key=key,
        ),
    )
    for key in obsolete:  # the replaced file's object, now that nothing refers to it
        try:
            svc.storage.delete(key)
        except OSError as exc:
            log.warning("%s replaced; stored object %s not removed: %s", path, key, exc)
    return info_body(row)


@blp.route("/info/<filepath:path>", parameters=[{**PATH_PARAMETER}], merge_slashes=False)
@ratelimit.status_limit
@blp.response(200, Seed003FileInfoSchema)
@blp.alt_response(400, response=http.HTTPStatus(400).name)
@blp.alt_response(404, response=http.HTTPStatus(404).name)
def info(path: str) -> dict[str, Any]:
    """Size, type, timestamps, ETag and permissions of the file at a path of yours."""
    principal = require_auth(SCOPE)
    return info_body(find_by_path(services(), principal, path))


@blp.route("/download/<filepath:path>", parameters=[{**PATH_PARAMETER}], merge_slashes=False)
@ratelimit.status_limit
@blp.doc(responses=DOWNLOAD_RESPONSES)
@blp.alt_response(400, response=http.HTTPStatus(400).name)
@blp.alt_response(404, response=http.HTTPStatus(404).name)
@blp.alt_response(416, response=http.HTTPStatus(416).name)
def download(path: str) -> Response:
    """The file at a path of yours; supports Range (206, 416) and If-None-Match (304)."""
    principal = require_auth(SCOPE)
    svc = services()
    return send_stored_file(svc, find_by_path(svc, principal, path))
