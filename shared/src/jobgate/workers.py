"""The `workers` table: who is alive, what they hold, what they did (heartbeats)."""

from __future__ import annotations

from typing import Any

from jobgate import db


def heartbeat(
    conn: db.Connection,
    *,
    worker_id: str,
    kind: str,
    hostname: str,
    pid: int,
    status: str,
    current_job_id: str | None,
) -> None:
    db.execute(
        conn,
        """
        INSERT INTO workers (id, kind, hostname, pid, status, current_job_id)
        VALUES (%(id)s, %(kind)s, %(host)s, %(pid)s, %(status)s, %(job)s)
        ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
            current_job_id = EXCLUDED.current_job_id, last_heartbeat_at = now(),
            stopped_at = CASE WHEN EXCLUDED.status = 'stopped' THEN now() END
        """,
        {
            "id": worker_id,
            "kind": kind,
            "host": hostname,
            "pid": pid,
            "status": status,
            "job": current_job_id,
        },
    )


def count_outcome(conn: db.Connection, *, worker_id: str, completed: bool) -> None:
    column = "jobs_completed" if completed else "jobs_failed"
    db.execute(conn, f"UPDATE workers SET {column} = {column} + 1 WHERE id = %s", (worker_id,))


def live_workers(
    conn: db.Connection, *, kind: str | None = None, fresh_s: float = 30.0
) -> list[dict[str, Any]]:
    """Workers that heart-beat within `fresh_s` seconds and have not stopped."""
    return db.fetch_all(
        conn,
        """
        SELECT * FROM workers
        WHERE status <> 'stopped' AND last_heartbeat_at > now() - make_interval(secs => %s)
          AND (%s::text IS NULL OR kind = %s)
        ORDER BY kind, started_at
        """,
        (fresh_s, kind, kind),
    )
