"""The `scrape` kind's API module: submit, retry one video, and the video shapes seed 002's
routes answer with (`compat/seed002.py` and the canonical job routes build on these).

A video is shown by its source id (`id`), as the seed does; `record_id` is its row's uuid.
Files are served by the files API, so the seed's Drive links become
`/api/v1/files/<file id>/content`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jobgate import db, jobs, videos
from jobgate.errors import Conflict, InvalidRequest
from jobgate.identity import Principal
from jobgate.jobs.submission import Submission
from jobgate.kinds import scrape
from jobgate.web import load_or_400
from jobgate_gateway.jobs.service import submit_prepared
from jobgate_gateway.services import Services
from jobgate_gateway.timefmt import iso_ms

FILES_CONTENT = "/api/v1/files/{}/content"
JOB_VIDEOS_SHOWN = 500  # videos listed in one job's status body (a job holds at most 200)


def prepare(
    svc: Services, principal: Principal, params: dict[str, Any], options: dict[str, Any]
) -> Submission:
    """The worker lists the source, so a job starts without items; named `video_ids` must
    be the caller's own videos (a 400 names the others)."""
    if params.get("video_ids"):
        with svc.db.transaction() as conn:
            found = videos.videos_by_source_ids(
                conn, owner_id=principal.user_id, video_ids=params["video_ids"]
            )
        missing = sorted(set(params["video_ids"]) - {row["video_id"] for row in found})
        if missing:
            raise InvalidRequest(
                f"Unknown videos: {', '.join(missing[:20])}", details={"video_ids": missing}
            )
    return Submission(
        kind=scrape.SPEC.name, params=scrape.SPEC.dump_params(params), options=options
    )


def retry_video(svc: Services, principal: Principal, video: dict[str, Any]) -> dict[str, Any]:
    """Queue a scrape job for exactly this video (seed 002's `POST /videos/{id}/retry`), with
    the folder and watermark choice of the job that met it. The video must be the
    principal's (the route looks it up); one stored already is a 409."""
    if videos.is_stored(video):
        raise Conflict("Video is already uploaded", details={"video_id": video["video_id"]})
    earlier: dict[str, Any] = {}
    if video["job_id"] is not None:
        with svc.db.transaction() as conn:
            job = jobs.get_job(conn, job_id=str(video["job_id"]))
        earlier = (job or {}).get("params") or {}
    params = load_or_400(
        scrape.ScrapeParams(),
        {
            "mode": video["mode"],
            "value": video["value"],
            "limit": 1,
            "no_watermark": earlier.get("no_watermark", True),
            "drive_folder_id": earlier.get("drive_folder_id"),
            "video_ids": [video["video_id"]],
        },
    )
    owner = principal if str(video["owner_id"]) == principal.user_id else _owner_of(video)
    job, _created = submit_prepared(svc, owner, prepare(svc, owner, params, {}), None)
    return job


def _owner_of(video: dict[str, Any]) -> Principal:
    """An admin retrying someone else's video: the job is the video's owner's (videos are
    per owner), so it is stored for them."""
    return Principal(
        user_id=str(video["owner_id"]), username="", role="user", scopes=(), auth_method="jwt"
    )


def drive_links(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed 002's `drive_links` of a job: one entry per stored video, links into the files
    API instead of Google Drive."""
    return [
        {
            "video_id": row["video_id"],
            "video_link": FILES_CONTENT.format(row["video_file_id"]),
            "metadata_link": (
                FILES_CONTENT.format(row["metadata_file_id"]) if row["metadata_file_id"] else None
            ),
            "folder_path": row["folder_path"],
        }
        for row in rows
        if row["video_file_id"] is not None
    ]


def video_to_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A `videos` row in seed 002's shape (its `GET /videos` items), plus `record_id`,
    `metadata_file_id`, `error` and timestamps."""
    return {
        "id": row["video_id"],
        "record_id": str(row["id"]),
        "job_id": str(row["job_id"]) if row["job_id"] else None,
        "mode": row["mode"],
        "value": row["value"],
        "url": row["url"],
        "desc": row["description"],
        "author_username": row["author_username"],
        "author_nickname": row["author_nickname"],
        "views": row["views"],
        "likes": row["likes"],
        "comments": row["comments"],
        "shares": row["shares"],
        "created_at_tiktok": iso_ms(row["created_at_tiktok"]),
        "hashtags": list(row["hashtags"] or []),
        "music_title": row["music_title"],
        "has_watermark": row["has_watermark"],
        "file_size": row["file_size"],
        "duration": row["duration"],
        "drive_file_id": str(row["video_file_id"]) if row["video_file_id"] else None,
        "metadata_file_id": str(row["metadata_file_id"]) if row["metadata_file_id"] else None,
        "drive_folder_path": row["folder_path"],
        "status": row["status"],
        "error": row["error"],
        "created_at": iso_ms(row["created_at"]),
        "updated_at": iso_ms(row["updated_at"]),
    }


def job_fields(job: dict[str, Any]) -> dict[str, Any]:
    """A scrape job's own fields in job objects (seed 002): its source and its counters
    (`items_total` / `items_done` / `items_failed` carry them)."""
    params = job.get("params") or {}
    return {
        "mode": params.get("mode"),
        "value": params.get("value"),
        "limit": params.get("limit"),
        "no_watermark": params.get("no_watermark"),
        "total_videos": job["items_total"],
        "successful_downloads": job["items_done"],
        "failed_downloads": job["items_failed"],
    }


def job_extras(svc: Services, job: dict[str, Any]) -> dict[str, Any]:
    """What `GET /jobs/{id}` shows beside the job (seed 002): its videos and their links."""
    with svc.db.autocommit() as conn:  # one read: no BEGIN/COMMIT round trips
        rows = videos.videos_of_job(conn, job_id=str(job["id"]), limit=JOB_VIDEOS_SHOWN)
    return {"videos": [video_to_dict(row) for row in rows], "drive_links": drive_links(rows)}


def on_delete(conn: db.Connection, job: dict[str, Any]) -> list[str]:
    """Deleting a scrape job takes the videos only it met (seed 002: "and all associated
    videos"); their stored files stay, as the seed's Drive files did, and no object is
    removed (videos that other jobs met keep theirs)."""
    videos.delete_videos_of_job(conn, job_id=str(job["id"]))
    return []
