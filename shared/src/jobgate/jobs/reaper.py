"""The reaper: jobs nobody is working on any more get moving again (or end)."""

from __future__ import annotations

from jobgate import db, outbox
from jobgate.jobs import Job


def requeue_lost(conn: db.Connection, *, app_id: str, stale_s: float) -> list[Job]:
    """Jobs whose worker stopped heart-beating go back to `pending` (or to `failed` when
    that was their last attempt), and jobs left waiting far longer than they should (their
    message was lost or purged) get a new message. Duplicate messages are harmless:
    `attempts.claim_job` lets only one through.
    """
    failed = db.fetch_all(
        conn,
        """
        UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
               completed_at = now(), worker_id = NULL, lease_expires_at = NULL,
               error = CASE WHEN cancel_requested THEN error
                            ELSE 'worker lost during attempt ' || attempt END,
               updated_at = now()
        WHERE status = 'running' AND lease_expires_at < now()
          AND (attempt >= max_attempts OR cancel_requested)
        RETURNING *
        """,
    )
    rows = db.fetch_all(
        conn,
        """
        UPDATE jobs SET status = 'pending', worker_id = NULL, lease_expires_at = NULL,
               next_attempt_at = NULL, updated_at = now(),
               error = CASE WHEN status = 'running'
                            THEN 'worker lost during attempt ' || attempt ELSE error END
        WHERE id IN (
            SELECT id FROM jobs
            WHERE (status = 'running' AND lease_expires_at < now())
               OR (status = 'pending' AND updated_at < now() - make_interval(secs => %(stale)s))
               OR (status = 'retrying'
                   AND next_attempt_at < now() - make_interval(secs => %(stale)s))
            ORDER BY updated_at LIMIT 200 FOR UPDATE SKIP LOCKED)
        RETURNING *
        """,
        {"stale": stale_s},
    )
    for job in rows:
        queued = db.fetch_one(
            conn, "SELECT 1 AS x FROM outbox WHERE body->>'job_id' = %s LIMIT 1", (str(job["id"]),)
        )
        if not queued:
            outbox.add_job_message(conn, job=job, app_id=app_id)
    return failed + rows
