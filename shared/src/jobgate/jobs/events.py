"""The `job_events` table: every status change and progress tick of every job, kept for a
retention period; the timeline and the resumable streams of stats-service are read here.

Status changes are written by the database's triggers on `jobs` (migrations 0008 and 0009),
never by code, so no writer can forget one; progress ticks by `attempts.update_progress`,
bounded per job (migration 0010). Deliveries (the internal `webhook` kind) write none.
Within one job, ids follow commit order (every writer holds the job's row lock while it
inserts), so "the events after id N" is a safe resume point for one job's stream.
An event outlives its job (no foreign key to `jobs`), so a job deleted right after a change
still has its webhook delivered. What keeps the table from growing forever is `sweep`, run
by every worker's housekeeping: rows older than JOB_EVENTS_RETENTION_DAYS go, in small
batches (short transactions, no long lock), except those still queued for the webhook
dispatcher (`webhook_pending`), which are delivered first.
"""

from __future__ import annotations

from typing import Any

from jobgate import db

SWEEP_BATCH = 1000  # rows per transaction
SWEEP_MAX_BATCHES = 20  # per call: a backlog is worked off over several rounds


def sweep_batch(conn: db.Connection, *, retention_days: float, limit: int = SWEEP_BATCH) -> int:
    """Delete up to `limit` of the oldest events past retention that no dispatcher still
    needs, in the caller's transaction; returns how many went. Rows another sweeper holds are
    skipped (SKIP LOCKED), so workers sweeping at once never wait on each other."""
    return db.execute(
        conn,
        """
        DELETE FROM job_events WHERE id IN (
            SELECT e.id FROM job_events e
            WHERE e.created_at < now() - make_interval(secs => %(seconds)s)
              AND NOT EXISTS (SELECT 1 FROM webhook_pending p WHERE p.event_id = e.id)
            ORDER BY e.created_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        """,
        {"seconds": retention_days * 86400.0, "limit": limit},
    )


def sweep(
    database: db.Database,
    *,
    retention_days: float,
    batch: int = SWEEP_BATCH,
    max_batches: int = SWEEP_MAX_BATCHES,
) -> int:
    """Sweep events past retention, one short transaction per batch, until none is left or
    `max_batches` ran; returns how many went."""
    removed = 0
    for _ in range(max_batches):
        with database.transaction() as conn:
            n = sweep_batch(conn, retention_days=retention_days, limit=batch)
        removed += n
        if n < batch:
            break
    return removed


EVENT_COLUMNS = "id, job_id, owner_id, kind, event, attempt, data, created_at"


def for_job(
    conn: db.Connection, *, job_id: str, after_id: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """One job's events after `after_id`, oldest first (a stream's replay, the timeline)."""
    return db.fetch_all(
        conn,
        f"""
        SELECT {EVENT_COLUMNS} FROM job_events
        WHERE job_id = %(job)s AND id > %(after)s ORDER BY id LIMIT %(limit)s
        """,
        {"job": job_id, "after": after_id, "limit": limit},
    )


def after(conn: db.Connection, *, after_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Every job's events after `after_id`, by id: what a live reader polls for. Across jobs
    ids are not commit order (a slow transaction may commit a lower id later), so readers
    track gaps (`jobgate_stats.tail`)."""
    return db.fetch_all(
        conn,
        f"SELECT {EVENT_COLUMNS} FROM job_events WHERE id > %(after)s ORDER BY id LIMIT %(limit)s",
        {"after": after_id, "limit": limit},
    )


def last_id(conn: db.Connection) -> int:
    """The newest event id (0 for none): where a reader that starts now begins."""
    row = db.fetch_one(conn, "SELECT coalesce(max(id), 0) AS id FROM job_events")
    return int(row["id"]) if row else 0
