"""Submitting a conversion: the input must be the caller's own probed upload."""

from __future__ import annotations

import os
from typing import Any

from marshmallow import Schema, fields, validate

from jobgate import files
from jobgate.errors import InvalidRequest
from jobgate.identity import Principal
from jobgate.web import load_or_400
from jobgate_gateway.auth import can_access
from jobgate_gateway.jobs.service import submit_job
from jobgate_gateway.services import Services

BITRATES = ("32k", "64k", "96k", "128k", "160k", "192k", "224k", "256k", "320k")


class ConvertJobSchema(Schema):
    input_file = fields.UUID(required=True, metadata={"description": "id of an upload"})
    bitrate = fields.String(load_default=None, validate=validate.OneOf(BITRATES))


def submit_conversion(
    svc: Services,
    principal: Principal,
    upload: dict[str, Any],
    *,
    bitrate: str | None,
    options: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    if upload["role"] != "upload":
        raise InvalidRequest(
            "Only uploaded files can be converted", details={"input_file": str(upload["id"])}
        )
    stem = os.path.splitext(upload["filename"])[0] or "output"
    params = {
        "input_file": str(upload["id"]),
        "input_name": upload["filename"],
        "output_name": f"{stem}.mp3",
        "bitrate": bitrate or svc.settings.convert_default_bitrate,
    }
    return submit_job(
        svc,
        principal,
        kind="convert",
        params=params,
        options=options,
        idempotency_key=idempotency_key,
    )


def submit_from_params(
    svc: Services,
    principal: Principal,
    params: dict[str, Any],
    options: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """The canonical API's entry: `{"kind": "convert", "input_file": <file id>, "bitrate"?}`."""
    body = load_or_400(ConvertJobSchema(), params)
    with svc.db.transaction() as conn:
        upload = files.get_file(conn, file_id=str(body["input_file"]))
    if upload is None or not can_access(principal, upload):
        raise InvalidRequest(
            "input_file is not one of your uploads", details={"input_file": str(body["input_file"])}
        )
    return submit_conversion(
        svc,
        principal,
        upload,
        bitrate=body["bitrate"],
        options=options,
        idempotency_key=idempotency_key,
    )
