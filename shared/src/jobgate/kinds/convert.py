"""The `convert` kind's contract: an uploaded MP4/MOV/AVI becomes an MP3 (seed 001)."""

from __future__ import annotations

import dataclasses

from marshmallow import Schema, fields, validate

from jobgate.kinds.spec import KindSpec

BITRATES = ("32k", "64k", "96k", "128k", "160k", "192k", "224k", "256k", "320k")
# The MP3's name: one path part, no control characters (it is sent back in headers).
MP3_NAME = validate.Regexp(
    r"^[^/\\\x00-\x1f\x7f]{1,251}\.[mM][pP]3$", error="Not a valid file name ending in .mp3."
)


class ConvertParams(Schema):
    input_file = fields.UUID(required=True, metadata={"description": "id of an upload"})
    bitrate = fields.String(load_default=None, validate=validate.OneOf(BITRATES))
    input_name = fields.String(metadata={"description": "set by the gateway: the upload's name"})
    output_name = fields.String(
        validate=MP3_NAME, metadata={"description": "the MP3's name (default: <input stem>.mp3)"}
    )


@dataclasses.dataclass(frozen=True)
class ConvertSettings:
    convert_default_bitrate: str = "192k"
    convert_progress_interval_ms: int = 1000


SPEC = KindSpec(
    name="convert",
    description="Convert an uploaded video (MP4/MOV/AVI) to MP3",
    params=ConvertParams,
    settings=ConvertSettings,
    seed="001",
    schedulable=False,  # its input is one upload: a schedule could only convert it again
)
