"""The `job_logs` table: what happened to a job, in lines its owner can read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobgate import db


def add_log(conn: db.Connection, *, job_id: str, level: str, message: str) -> None:
    db.execute(
        conn,
        "INSERT INTO job_logs (job_id, level, message) VALUES (%s, %s, %s)",
        (job_id, level, message),
    )


def add_logs(conn: db.Connection, *, job_id: str, entries: Sequence[tuple[str, str]]) -> None:
    """Insert `(level, message)` lines in order with one statement: a chatty job (a
    container's output) costs one round trip per batch, not one per line."""
    if entries:
        db.execute(
            conn,
            "INSERT INTO job_logs (job_id, level, message)"
            " SELECT %s, level, message FROM unnest(%s::text[], %s::text[])"
            " WITH ORDINALITY AS t(level, message, n) ORDER BY n",
            (job_id, [level for level, _ in entries], [message for _, message in entries]),
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
