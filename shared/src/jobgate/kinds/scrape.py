"""The `scrape` kind's contract: download a profile's or a hashtag's videos (seed 002).

`value` is a username or a tag as the seed documents it ("without @" / "without #"); a
leading `@` or `#` that clients add anyway is stripped, and so is surrounding whitespace.
What remains is used in the source URL (URL-quoted) and as a folder name of the storage
layout `TikTok/<mode>/<value>/<YYYY>/<MM>`, so it must be one safe path part: letters,
digits, `_`, `.` and `-` only, never only dots. `drive_folder_id` (Google Drive's folder in
the seed) names a folder above that layout, with the same rule.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from jobgate.kinds.spec import KindSpec

MODES = ("profile", "hashtag")
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
# One path part: word characters (any script, as tags may be), '.', '-'; not only dots.
SAFE_NAME = re.compile(r"^(?!\.+$)[\w.-]{1,100}$")
VIDEO_ID = re.compile(r"^[\w-]{1,64}$", re.ASCII)


class Handle(fields.String):
    """A username or tag: trimmed, one leading '@' or '#' dropped, then one safe name."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if text[:1] in ("@", "#"):
            text = text[1:].strip()
        if not text:
            raise ValidationError("Must not be empty.")
        if not SAFE_NAME.match(text):
            raise ValidationError(
                "Only letters, digits, '_', '.' and '-' are allowed (at most 100 characters)."
            )
        return text


class ScrapeParams(Schema):
    mode = fields.String(required=True, validate=validate.OneOf(MODES))
    value = Handle(
        required=True,
        metadata={"description": "username (profile) or tag (hashtag), without '@' or '#'"},
    )
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(1, MAX_LIMIT),
        metadata={"description": "the newest N videos (within since/until) are scraped"},
    )
    no_watermark = fields.Boolean(load_default=True)
    since = fields.AwareDateTime(
        load_default=None, allow_none=True, metadata={"description": "published at or after"}
    )
    until = fields.AwareDateTime(
        load_default=None, allow_none=True, metadata={"description": "published at or before"}
    )
    drive_folder_id = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(SAFE_NAME, error="Not a valid folder name."),
        metadata={"description": "a folder above TikTok/<mode>/<value>/<YYYY>/<MM> in storage"},
    )
    video_ids = fields.List(
        fields.String(validate=validate.Regexp(VIDEO_ID, error="Not a valid video id.")),
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, MAX_LIMIT),
        metadata={"description": "only these stored videos (a single-video retry): no listing"},
    )

    @validates_schema
    def _window(self, data: dict[str, Any], **_kwargs: Any) -> None:
        since, until = data.get("since"), data.get("until")
        if since is not None and until is not None and since > until:
            raise ValidationError("'since' must not be later than 'until'", "since")


@dataclasses.dataclass(frozen=True)
class ScrapeSettings:
    scrape_profile_url: str = "https://www.tiktok.com/@{value}"
    scrape_hashtag_url: str = "https://www.tiktok.com/tag/{value}"
    scrape_download_concurrency: int = 1  # videos downloaded in parallel by one job
    scrape_video_retries: int = 2  # per video, inside an attempt
    scrape_list_retries: int = 2  # reading the profile/hashtag, inside an attempt
    scrape_retry_backoff_s: float = 2.0  # doubled at each retry
    scrape_socket_timeout_s: float = 20.0
    scrape_list_max: int = 1000  # entries read at most when since/until select by date


SPEC = KindSpec(
    name="scrape",
    description="Download a TikTok profile's or hashtag's videos with their metadata",
    params=ScrapeParams,
    settings=ScrapeSettings,
    seed="002",
)
