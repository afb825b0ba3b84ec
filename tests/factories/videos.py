"""Videos rows as a scrape job records them (`jobgate.videos`), for tests that need videos
without running a scrape."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobgate import db, videos


def make_video_row(
    database: db.Database,
    job: dict[str, Any],
    video_id: str,
    *,
    status: str = "failed",
    **fields: Any,
) -> dict[str, Any]:
    """A video the scrape `job` listed (linked to it), then moved to `status`; `fields`
    describe it (url, description, hashtags, created_at_tiktok, ...)."""
    params = job["params"]
    described = {
        "url": f"http://127.0.0.1:9/media/{video_id}.mp4",
        "created_at_tiktok": dt.datetime(2025, 1, 10, 15, 30, tzinfo=dt.UTC),
        **fields,
    }
    with database.transaction() as conn:
        [row] = videos.record_listed(
            conn,
            owner_id=str(job["owner_id"]),
            job_id=str(job["id"]),
            mode=params["mode"],
            value=params["value"],
            videos=[{"video_id": video_id, **described}],
        )
        if status != "pending":
            videos.mark_status(conn, record_id=str(row["id"]), job_id=str(job["id"]), status=status)
        return videos.get_record(conn, record_id=str(row["id"]))
