"""The `job_events` table: every status change of every job, kept for a retention period.

The rows are written by the database's triggers on `jobs` (migrations 0008 and 0009), never
by code, so no writer can forget one; deliveries (the internal `webhook` kind) write none.
An event outlives its job (no foreign key to `jobs`), so a job deleted right after a change
still has its webhook delivered. What keeps the table from growing forever is `sweep`, run
by every worker's housekeeping: rows older than JOB_EVENTS_RETENTION_DAYS go, in small
batches (short transactions, no long lock), except those still queued for the webhook
dispatcher (`webhook_pending`), which are delivered first.
"""

from __future__ import annotations

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
