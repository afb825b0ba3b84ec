"""The `files` table: uploads and job outputs, with their size, SHA-256, type and owner;
and seed 003's per-owner paths over the same rows."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from jobgate import db
from jobgate.errors import InvalidRequest

File = dict[str, Any]


def create_file(
    conn: db.Connection,
    *,
    owner_id: str,
    role: str,
    filename: str,
    content_type: str,
    size: int,
    sha256: str,
    storage_key: str,
    media: dict[str, Any] | None = None,
    job_id: str | None = None,
) -> File:
    return db.fetch_one(
        conn,
        """
        INSERT INTO files (owner_id, role, filename, content_type, size, sha256, storage_key,
                           media, job_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        RETURNING *
        """,
        (owner_id, role, filename, content_type, size, sha256, storage_key, media, job_id),
    )


def get_file(conn: db.Connection, *, file_id: str) -> File | None:
    return db.fetch_one(conn, "SELECT * FROM files WHERE id = %s", (file_id,))


def delete_file(conn: db.Connection, *, file_id: str) -> None:
    db.execute(conn, "DELETE FROM files WHERE id = %s", (file_id,))


def outputs_of(conn: db.Connection, *, job_id: str) -> list[File]:
    return db.fetch_all(
        conn,
        "SELECT * FROM files WHERE job_id = %s AND role = 'output' ORDER BY created_at",
        (job_id,),
    )


def delete_outputs_of(conn: db.Connection, *, job_id: str) -> list[str]:
    """Remove a job's output rows; returns their storage keys, for the caller to delete once
    the transaction has committed (a rolled-back delete must not lose objects)."""
    rows = db.fetch_all(
        conn,
        "DELETE FROM files WHERE job_id = %s AND role = 'output' RETURNING storage_key",
        (job_id,),
    )
    return [row["storage_key"] for row in rows]


def upload_stats(conn: db.Connection, *, owner_id: str | None) -> dict[str, Any]:
    """Uploads: how many, how many bytes, and how their conversions stand."""
    totals = db.fetch_one(
        conn,
        """
        SELECT count(*) AS count, coalesce(sum(size), 0) AS bytes FROM files
        WHERE role = 'upload' AND (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
        """,
        {"owner": owner_id},
    )
    by_status = db.fetch_all(
        conn,
        """
        SELECT status, count(*) AS n FROM jobs
        WHERE kind = 'convert' AND (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
        GROUP BY status
        """,
        {"owner": owner_id},
    )
    return {
        "count": int(totals["count"]),
        "bytes": int(totals["bytes"]),
        "by_status": {row["status"]: int(row["n"]) for row in by_status},
    }


# --- files by path (seed 003's /api/files) ----------------------------------------------------
#
# Each owner has a namespace of paths ("/uploads/document.pdf") over the same rows and storage.
# A path is only a key: nothing is ever written to a filesystem under it, but container jobs
# copy files into containers by it, so it is normalized strictly, once, here.

MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


class InvalidPath(InvalidRequest):
    """A path that cannot name a file: the gateway answers 400 (an InvalidRequest naming the
    path and the reason in `details`), a worker fails the job; `reason` says why."""

    def __init__(self, raw: object, reason: str) -> None:
        shown = raw[:300] if isinstance(raw, str) else repr(raw)[:300]
        super().__init__(f"Invalid path: {reason}", details={"path": shown, "reason": reason})
        self.reason = reason


def normalize_path(raw: str) -> str:
    """The one spelling of a client's path: a leading "/", no empty segments, NFC.

    Refused rather than repaired, so that no later reader (a proxy, a client library, a
    container worker) can take the path for another one than the one checked: "." and ".."
    segments, backslashes, control characters (NUL included), percent-escapes such as
    "%2e%2e" or "%2f" (a path arrives decoded; one still holding escapes would change when
    decoded again), a trailing "/" (a path names a file), and paths over 1024 bytes or with
    a segment over 255 bytes (UTF-8).
    """
    if not isinstance(raw, str):
        raise InvalidPath(raw, "a path must be text")
    path = unicodedata.normalize("NFC", raw)
    if not path.strip("/"):
        raise InvalidPath(raw, "the path is empty")
    if "\x00" in path:
        raise InvalidPath(raw, "NUL characters are not allowed")
    if any(unicodedata.category(ch) == "Cc" for ch in path):
        raise InvalidPath(raw, "control characters are not allowed")
    if "\\" in path:
        raise InvalidPath(raw, "backslashes are not allowed; separate folders with '/'")
    if _PERCENT_ESCAPE.search(path):
        raise InvalidPath(raw, "percent-escapes are not allowed; send the path decoded")
    if path.endswith("/"):
        raise InvalidPath(raw, "the path ends with '/'; name a file, not a folder")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(raw, "the path is not valid Unicode text") from None
    segments = [segment for segment in path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise InvalidPath(raw, "'.' and '..' segments are not allowed")
    if any(len(segment.encode()) > MAX_SEGMENT_BYTES for segment in segments):
        raise InvalidPath(raw, f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes")
    normalized = "/" + "/".join(segments)
    if len(normalized.encode()) > MAX_PATH_BYTES:
        raise InvalidPath(raw, f"the path is longer than {MAX_PATH_BYTES} bytes")
    return normalized


def file_at_path(
    conn: db.Connection, *, owner_id: str, path: str, lock: bool = False
) -> File | None:
    """The owner's file at `path` (normalized here; InvalidPath if it cannot be), or None.

    A job that reads the file should pass `lock=True` and record the row's id on the job
    (e.g. `{"file_id": ...}` in its item's meta) in the same transaction: a replacement at
    that path then waits for the transaction and, seeing the reference, keeps the row and
    its object for the job (see `file_in_use`)."""
    return db.fetch_one(
        conn,
        "SELECT * FROM files WHERE owner_id = %s AND path = %s" + (" FOR SHARE" if lock else ""),
        (owner_id, normalize_path(path)),
    )


def file_in_use(conn: db.Connection, *, file_id: str) -> bool:
    """Whether a job (or a scraped video) refers to this row, so it must outlive its path:
    it is a job's output, a conversion's `input_file`, a video's file, or its id appears as
    a value in the params or an item's meta of one of its owner's jobs."""
    row = db.fetch_one(
        conn,
        """
        SELECT f.job_id IS NOT NULL
            OR EXISTS (SELECT 1 FROM videos v WHERE v.owner_id = f.owner_id
                       AND (v.video_file_id = f.id OR v.metadata_file_id = f.id))
            OR EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'convert'
                       AND j.params ->> 'input_file' = f.id::text)
            OR EXISTS (SELECT 1 FROM jobs j WHERE j.owner_id = f.owner_id
                       AND jsonb_path_exists(j.params, '$.** ? (@ == $id)',
                                             jsonb_build_object('id', f.id::text)))
            OR EXISTS (SELECT 1 FROM jobs j JOIN job_items i ON i.job_id = j.id
                       WHERE j.owner_id = f.owner_id AND i.meta IS NOT NULL
                       AND jsonb_path_exists(i.meta, '$.** ? (@ == $id)',
                                             jsonb_build_object('id', f.id::text)))
            AS in_use
        FROM files f WHERE f.id = %s
        """,
        (file_id,),
    )
    return bool(row and row["in_use"])


def put_at_path(
    conn: db.Connection,
    *,
    owner_id: str,
    path: str,
    permissions: str,
    filename: str,
    content_type: str,
    size: int,
    sha256: str,
    storage_key: str,
) -> tuple[File, list[str]]:
    """Record a committed object at the owner's `path`, replacing the file there.

    Returns the new row and the storage keys the caller deletes once this transaction has
    committed (a rolled-back replacement must lose nothing). The replaced row goes in this
    transaction, unless a job refers to it: then it stays, with its object, and only its
    path is cleared. The file keeps its `created_at` across replacements; `updated_at` is
    when its content last changed. Writers of one path take turns (an advisory lock), so
    concurrent uploads to it end as one file, the last one committed."""
    path = normalize_path(path)
    db.execute(
        conn,
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        (f"files:{owner_id}:{path}",),
    )
    old = db.fetch_one(
        conn,
        "SELECT * FROM files WHERE owner_id = %s AND path = %s FOR UPDATE",
        (owner_id, path),
    )
    obsolete: list[str] = []
    if old is not None:
        if file_in_use(conn, file_id=str(old["id"])):
            db.execute(conn, "UPDATE files SET path = NULL WHERE id = %s", (old["id"],))
        else:
            delete_file(conn, file_id=str(old["id"]))
            obsolete.append(old["storage_key"])
    row = db.fetch_one(
        conn,
        """
        INSERT INTO files (owner_id, role, filename, content_type, size, sha256, storage_key,
                           path, permissions, created_at, updated_at)
        VALUES (%s, 'upload', %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()), now())
        RETURNING *
        """,
        (
            owner_id,
            filename,
            content_type,
            size,
            sha256,
            storage_key,
            path,
            permissions,
            old["created_at"] if old is not None else None,
        ),
    )
    return row, obsolete
