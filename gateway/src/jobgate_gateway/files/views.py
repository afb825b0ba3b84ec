"""File rows -> JSON, and stored files -> HTTP downloads (Range, ETag, Content-Disposition)."""

from __future__ import annotations

from typing import Any

from flask import Response, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from jobgate.errors import JobgateError, NotFound
from jobgate_gateway.services import Services
from jobgate_gateway.timefmt import iso_ms


def file_to_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "filename": row["filename"],
        "size": row["size"],
        "sha256": row["sha256"],
        "content_type": row["content_type"],
        "role": row["role"],
        "job_id": str(row["job_id"]) if row["job_id"] else None,
        "media": row["media"],
        "created_at": iso_ms(row["created_at"]),
        "download_url": f"/api/v1/files/{row['id']}/content",
    }


class RangeNotSatisfiable(JobgateError):
    """416 in the error format, with the `Content-Range: bytes */<size>` RFC 9110 asks for."""

    status, code = 416, "INVALID_REQUEST"
    default_message = "The requested range is not satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(details={"size": size})
        self.headers = {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}


def send_stored_file(svc: Services, row: dict[str, Any]) -> Response:
    """Stream a stored file; werkzeug answers Range with 206 and If-None-Match with 304."""
    path = svc.storage.path(row["storage_key"])
    if not path.exists():
        raise NotFound("File content is no longer stored")
    try:
        response = send_file(
            path,
            mimetype=row["content_type"],
            as_attachment=True,
            download_name=row["filename"],
            conditional=True,
            etag=row["sha256"],
            max_age=0,
        )
    except RequestedRangeNotSatisfiable:
        raise RangeNotSatisfiable(row["size"]) from None
    response.headers["Accept-Ranges"] = "bytes"
    return response
