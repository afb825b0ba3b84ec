"""The `videos` and `job_videos` tables: what scrape jobs found and stored (seed 002).

A video is one row per owner and source video (`UNIQUE (owner_id, video_id)`): a video that
a later job (or a schedule's next run) meets again is not downloaded twice, it is linked
to that job in `job_videos` (`reused`) and counts as one of its successful downloads. The
row's uuid `id` addresses it exactly; the APIs show the source id as the video's `id`
(`get_video` accepts either). Files live in `files` (role `output`); the row keeps their
ids and the storage folder they belong to (`folder_path`), which files rows do not have.

Status moves pending -> downloading -> downloaded -> uploading -> uploaded, or to failed.
A job *claims* a video by moving it to `downloading` under its own id, so two jobs of one
owner never download the same video at once; a claim held by a job that is no longer
running (its worker died) can be taken over.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from jobgate import db

STATUSES = ("pending", "downloading", "downloaded", "uploading", "uploaded", "failed")
IN_PROGRESS = ("downloading", "downloaded", "uploading")
# Columns a listing or a full extraction describes (refreshed when a video is met again).
DESCRIBED = (
    "url",
    "description",
    "author_username",
    "author_nickname",
    "views",
    "likes",
    "comments",
    "shares",
    "created_at_tiktok",
    "hashtags",
    "music_title",
    "duration",
)
# What `mark_downloaded` may record beside the description.
DOWNLOADED = ("has_watermark", "file_size")

Video = dict[str, Any]

# A row counts as stored while its video file exists (a deleted files row unlinks it).
_STORED = "(v.status = 'uploaded' AND v.video_file_id IS NOT NULL)"


def _coalesced(columns: Sequence[str]) -> str:
    """`col = coalesce(%(col)s, col)` for each column: a missing value never erases one."""
    return ", ".join(
        f"{c} = coalesce(%({c})s, v.{c})"
        if c != "hashtags"
        # An empty tag list from a source without descriptions keeps the known tags.
        else f"{c} = CASE WHEN cardinality(%({c})s::text[]) > 0 THEN %({c})s::text[] ELSE v.{c} END"
        for c in columns
    )


def record_listed(
    conn: db.Connection,
    *,
    owner_id: str,
    job_id: str,
    mode: str,
    value: str,
    videos: Sequence[dict[str, Any]],
) -> list[Video]:
    """Store what a job listed and link every video to the job; returns the rows in order.

    New videos are `pending` under this job. Known ones keep their state (a stored video
    stays stored) and get the listing's fresher counts; they move to this job unless
    another job is downloading them right now.
    """
    rows: dict[str, Video] = {}
    # Rows are locked in one order (by id), so two jobs listing the same videos in
    # different orders wait for each other instead of deadlocking.
    for video in sorted(videos, key=lambda v: v["video_id"]):
        values = {c: video.get(c) for c in DESCRIBED}
        values["hashtags"] = list(video.get("hashtags") or [])
        row = db.fetch_one(
            conn,
            f"""
            INSERT INTO videos AS v
                (owner_id, video_id, job_id, mode, value, {", ".join(DESCRIBED)})
            VALUES (%(owner)s, %(video_id)s, %(job)s, %(mode)s, %(value)s,
                    {", ".join(f"%({c})s" for c in DESCRIBED)})
            ON CONFLICT (owner_id, video_id) DO UPDATE SET
                {_coalesced(DESCRIBED)},
                job_id = CASE WHEN v.status IN {IN_PROGRESS} THEN v.job_id ELSE %(job)s END,
                updated_at = now()
            RETURNING *
            """,
            {
                "owner": owner_id,
                "video_id": video["video_id"],
                "job": job_id,
                "mode": mode,
                "value": value,
                **values,
            },
        )
        link_video(conn, job_id=job_id, record_id=str(row["id"]))
        rows[row["video_id"]] = row
    return [rows[video["video_id"]] for video in videos]


def link_video(conn: db.Connection, *, job_id: str, record_id: str, reused: bool = False) -> None:
    """Link a video to a job; `reused` when the job found it already stored."""
    db.execute(
        conn,
        """
        INSERT INTO job_videos (job_id, video_id, reused) VALUES (%s, %s, %s)
        ON CONFLICT (job_id, video_id) DO UPDATE SET reused = job_videos.reused OR EXCLUDED.reused
        """,
        (job_id, record_id, reused),
    )


def claim_download(conn: db.Connection, *, record_id: str, job_id: str) -> Video | None:
    """Take a video for download by this job (status `downloading`); None when it is stored
    already or another running job holds it (the caller reads it again to see which)."""
    return db.fetch_one(
        conn,
        f"""
        UPDATE videos v SET status = 'downloading', job_id = %(job)s, error = NULL,
               updated_at = now()
        WHERE v.id = %(id)s AND NOT {_STORED}
          AND (v.status IN ('pending', 'failed', 'uploaded') OR v.job_id IS NULL
               OR v.job_id = %(job)s
               OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = v.job_id AND j.status = 'running'))
        RETURNING *
        """,
        {"id": record_id, "job": job_id},
    )


def is_stored(video: Video) -> bool:
    """Whether the video's file is in storage (it need not be downloaded again)."""
    return video["status"] == "uploaded" and video["video_file_id"] is not None


def mark_reused(conn: db.Connection, *, record_id: str, job_id: str) -> None:
    """A stored video met by this job: linked as reused, and this job is the last to meet it."""
    db.execute(
        conn, "UPDATE videos SET job_id = %s, updated_at = now() WHERE id = %s", (job_id, record_id)
    )
    link_video(conn, job_id=job_id, record_id=record_id, reused=True)


def mark_status(conn: db.Connection, *, record_id: str, job_id: str, status: str) -> bool:
    """Move a video this job holds to `status`; False if the job no longer holds it."""
    if status not in STATUSES:
        raise ValueError(f"not a video status: {status}")
    return (
        db.execute(
            conn,
            "UPDATE videos SET status = %s, updated_at = now() WHERE id = %s AND job_id = %s",
            (status, record_id, job_id),
        )
        == 1
    )


def mark_downloaded(
    conn: db.Connection, *, record_id: str, job_id: str, fields: dict[str, Any]
) -> bool:
    """The file is downloaded: record what the full extraction and the file tell."""
    values = {c: fields.get(c) for c in (*DESCRIBED, *DOWNLOADED)}
    values["hashtags"] = list(fields.get("hashtags") or [])
    return (
        db.execute(
            conn,
            f"""
            UPDATE videos v SET status = 'downloaded', {_coalesced((*DESCRIBED, *DOWNLOADED))},
                   updated_at = now()
            WHERE v.id = %(id)s AND v.job_id = %(job)s
            """,
            {"id": record_id, "job": job_id, **values},
        )
        == 1
    )


def mark_uploaded(
    conn: db.Connection,
    *,
    record_id: str,
    job_id: str,
    video_file_id: str,
    metadata_file_id: str,
    folder_path: str,
    file_size: int,
) -> bool:
    """Both files are in storage: the video is stored for its owner from now on."""
    return (
        db.execute(
            conn,
            """
            UPDATE videos SET status = 'uploaded', error = NULL, video_file_id = %s,
                   metadata_file_id = %s, folder_path = %s, file_size = %s, updated_at = now()
            WHERE id = %s AND job_id = %s
            """,
            (video_file_id, metadata_file_id, folder_path, file_size, record_id, job_id),
        )
        == 1
    )


def mark_failed(conn: db.Connection, *, record_id: str, job_id: str, error: str) -> bool:
    return (
        db.execute(
            conn,
            "UPDATE videos SET status = 'failed', error = %s, updated_at = now()"
            " WHERE id = %s AND job_id = %s",
            (error, record_id, job_id),
        )
        == 1
    )


def release_held(conn: db.Connection, *, job_id: str) -> int:
    """A stopping job lets go of the videos it was downloading: back to `pending`, so
    they read as not stored and any job may take them. Returns how many."""
    return db.execute(
        conn,
        f"UPDATE videos SET status = 'pending', updated_at = now()"
        f" WHERE job_id = %s AND status IN {IN_PROGRESS}",
        (job_id,),
    )


def get_record(conn: db.Connection, *, record_id: str) -> Video | None:
    return db.fetch_one(conn, "SELECT * FROM videos WHERE id = %s", (record_id,))


def get_video(conn: db.Connection, *, video_id: str, owner_id: str | None) -> Video | None:
    """A video by its source id (the API's `id`) or its row uuid; `owner_id` None = any
    owner's (admins), the most recently updated when several owners have that video."""
    try:
        record_id: str | None = str(uuid.UUID(video_id))
    except ValueError:
        record_id = None
    return db.fetch_one(
        conn,
        """
        SELECT * FROM videos
        WHERE (video_id = %(vid)s OR id = %(rid)s::uuid)
          AND (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
        ORDER BY updated_at DESC, id LIMIT 1
        """,
        {"vid": video_id, "rid": record_id, "owner": owner_id},
    )


def videos_by_source_ids(
    conn: db.Connection, *, owner_id: str, video_ids: Sequence[str]
) -> list[Video]:
    """The owner's videos with these source ids, in the order asked (missing ones left out)."""
    rows = db.fetch_all(
        conn,
        "SELECT * FROM videos WHERE owner_id = %s AND video_id = ANY(%s)",
        (owner_id, list(video_ids)),
    )
    by_id = {row["video_id"]: row for row in rows}
    return [by_id[v] for v in dict.fromkeys(video_ids) if v in by_id]


def videos_of_job(conn: db.Connection, *, job_id: str, limit: int | None = None) -> list[Video]:
    """Every video a job listed (stored by it or met again), newest first, with `reused`."""
    return db.fetch_all(
        conn,
        """
        SELECT v.*, jv.reused FROM job_videos jv JOIN videos v ON v.id = jv.video_id
        WHERE jv.job_id = %s
        ORDER BY v.created_at_tiktok DESC NULLS LAST, v.video_id
        LIMIT %s
        """,
        (job_id, limit),
    )


def reused_count(conn: db.Connection, *, job_id: str) -> int:
    """Videos the job found already stored (linked, not downloaded again)."""
    row = db.fetch_one(
        conn, "SELECT count(*) AS n FROM job_videos WHERE job_id = %s AND reused", (job_id,)
    )
    return int(row["n"])


def list_videos(
    conn: db.Connection,
    *,
    owner_id: str | None,
    mode: str | None = None,
    value: str | None = None,
    author_username: str | None = None,
    hashtag: str | None = None,
    status: str | None = None,
    job_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Video], int]:
    """A page of videos (newest first) and the total matching seed 002's filters; `owner_id`
    None = every owner's (admins). Hashtags are matched without '#' and case-insensitively."""
    where, params = ["true"], []
    for column, given in (
        ("owner_id", owner_id),
        ("mode", mode),
        ("value", value),
        ("author_username", author_username),
        ("status", status),
    ):
        if given is not None:
            where.append(f"v.{column} = %s")
            params.append(given)
    if hashtag is not None:
        where.append("%s = ANY(v.hashtags)")
        params.append(hashtag.lstrip("#").lower())
    if job_id is not None:
        where.append(
            "EXISTS (SELECT 1 FROM job_videos jv WHERE jv.job_id = %s AND jv.video_id = v.id)"
        )
        params.append(job_id)
    clause = " AND ".join(where)
    total = db.fetch_one(conn, f"SELECT count(*) AS n FROM videos v WHERE {clause}", params)["n"]
    rows = db.fetch_all(
        conn,
        f"""
        SELECT v.* FROM videos v WHERE {clause}
        ORDER BY v.created_at_tiktok DESC NULLS LAST, v.created_at DESC, v.id
        LIMIT %s OFFSET %s
        """,
        [*params, limit, offset],
    )
    return rows, int(total)


def delete_video(conn: db.Connection, *, record_id: str) -> bool:
    """Forget a video (seed 002: its stored files are kept, as Drive's were). A later job
    that meets it again downloads it again."""
    return db.execute(conn, "DELETE FROM videos WHERE id = %s", (record_id,)) == 1


def delete_videos_of_job(conn: db.Connection, *, job_id: str) -> int:
    """Forget the videos only this job met (seed 002's job deletion takes "all associated
    videos"); videos other jobs met too are kept for them. Returns how many went."""
    return db.execute(
        conn,
        """
        DELETE FROM videos v
        WHERE EXISTS (SELECT 1 FROM job_videos jv WHERE jv.job_id = %(job)s AND jv.video_id = v.id)
          AND NOT EXISTS (SELECT 1 FROM job_videos jv
                          WHERE jv.video_id = v.id AND jv.job_id <> %(job)s)
        """,
        {"job": job_id},
    )


def video_stats(conn: db.Connection, *, owner_id: str | None) -> dict[str, int]:
    """Seed 002's video totals: every video, those downloaded (including the stored ones),
    stored, failed, and the bytes their stored files take (video and metadata)."""
    row = db.fetch_one(
        conn,
        f"""
        SELECT count(*) AS total_videos,
               count(*) FILTER (WHERE v.status IN ('downloaded', 'uploading', 'uploaded'))
                   AS downloaded_videos,
               count(*) FILTER (WHERE {_STORED}) AS uploaded_videos,
               count(*) FILTER (WHERE v.status = 'failed') AS failed_videos,
               coalesce(sum(fv.size), 0) + coalesce(sum(fm.size), 0) AS total_storage_bytes
        FROM videos v
        LEFT JOIN files fv ON fv.id = v.video_file_id
        LEFT JOIN files fm ON fm.id = v.metadata_file_id
        WHERE %(owner)s::uuid IS NULL OR v.owner_id = %(owner)s::uuid
        """,
        {"owner": owner_id},
    )
    return {k: int(v) for k, v in row.items()}
