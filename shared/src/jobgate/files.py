"""The `files` table: uploads and job outputs, with their size, SHA-256, type and owner."""

from __future__ import annotations

from typing import Any

from jobgate import db

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
