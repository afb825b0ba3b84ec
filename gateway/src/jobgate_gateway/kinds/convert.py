"""The `convert` kind's API module: the input must be the caller's own probed upload."""

from __future__ import annotations

import os
from typing import Any

from jobgate import files
from jobgate.errors import InvalidRequest
from jobgate.identity import Principal
from jobgate.jobs.submission import Submission
from jobgate.kinds import convert
from jobgate.web import load_or_400
from jobgate_gateway.auth import can_access
from jobgate_gateway.jobs.service import submit_prepared
from jobgate_gateway.services import Services


def prepare_conversion(
    svc: Services,
    upload: dict[str, Any],
    *,
    bitrate: str | None,
    output_name: str | None = None,
    options: dict[str, Any],
) -> Submission:
    """The conversion of `upload`, not yet written; the MP3 is named after it unless told
    otherwise."""
    if upload["role"] != "upload":
        raise InvalidRequest(
            "Only uploaded files can be converted", details={"input_file": str(upload["id"])}
        )
    stem = os.path.splitext(upload["filename"])[0] or "output"
    # What the gateway derives passes the same contract the worker loads it with.
    params = load_or_400(
        convert.ConvertParams(),
        {
            "input_file": str(upload["id"]),
            "input_name": upload["filename"],
            "output_name": output_name or f"{stem}.mp3",
            "bitrate": bitrate or svc.settings.convert_default_bitrate,
        },
    )
    return Submission(
        kind=convert.SPEC.name, params=convert.SPEC.dump_params(params), options=options
    )


def submit_conversion(
    svc: Services,
    principal: Principal,
    upload: dict[str, Any],
    *,
    bitrate: str | None,
    output_name: str | None = None,
    options: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Record the conversion of `upload` in its own transaction."""
    prepared = prepare_conversion(
        svc, upload, bitrate=bitrate, output_name=output_name, options=options
    )
    return submit_prepared(svc, principal, prepared, idempotency_key)


def prepare(
    svc: Services, principal: Principal, params: dict[str, Any], options: dict[str, Any]
) -> Submission:
    """`{"kind": "convert", "input_file": <file id>, "bitrate"?, "output_name"?}`: the
    caller's own upload, not yet written."""
    file_id = str(params["input_file"])
    with svc.db.transaction() as conn:
        upload = files.get_file(conn, file_id=file_id)
    if upload is None or not can_access(principal, upload):
        raise InvalidRequest(
            "input_file is not one of your uploads", details={"input_file": file_id}
        )
    return prepare_conversion(
        svc,
        upload,
        bitrate=params["bitrate"],
        output_name=params.get("output_name"),
        options=options,
    )
