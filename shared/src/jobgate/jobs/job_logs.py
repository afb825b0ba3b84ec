"""The `job_logs` table: what happened to a job, in lines its owner can read."""

from __future__ import annotations

from typing import Any

from jobgate import db


def add_log(conn: db.Connection, *, job_id: str, level: str, message: str) -> None:
    db.execute(
        conn,
        "INSERT INTO job_logs (job_id, level, message) VALUES (%s, %s, %s)",
        (job_id, level, message),
    )


def get_logs(
    conn: db.Connection, *, job_id: str, after_id: int = 0, limit: int = 500
) -> list[dict[str, Any]]:
    return db.fetch_all(
        conn,
        "SELECT id, ts, level, message FROM job_logs WHERE job_id = %s AND id > %s"
        " ORDER BY id LIMIT %s",
        (job_id, after_id, limit),
    )
