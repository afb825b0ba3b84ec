"""A worker's transitions for the attempt it holds: claim, leases, progress, and its end.

Every write after the claim is guarded by `worker_id = <this worker> AND status = 'running'`:
a worker that lost its lease (another worker took the job over) changes nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import psycopg2.extras

from jobgate import db, outbox
from jobgate.jobs import TERMINAL, Job, job_items


def claim_job(
    conn: db.Connection,
    *,
    job_id: str,
    worker_id: str,
    lease_s: float,
    priority: int | None = None,
    relaxed: bool = False,
) -> Job | None:
    """Take a job for one attempt; None if it is not claimable (finished, held, cancelled).
    `relaxed`: its commit need not wait for the WAL flush (`db.RELAXED`, same round trip).

    A running job whose lease expired (its worker died) may be taken over: that is a
    new attempt, so a job that kills every worker still ends `failed`.

    `priority` is the delivery's message priority (None: not known, any job). A pending
    job is claimed only by a message of its current priority: one whose priority was
    changed while it waited (seed 004's PUT) got a fresh message with the new one, and the
    old message, handed out in the old order, must not run it. Every message is published
    with the job's priority at that moment (outbox), and a priority changes only while the
    job waits, so a redelivery (hand-back, a dead worker's unacked message) still matches.
    A retrying job or one whose lease expired is claimed by any message.
    """
    return db.fetch_one(
        conn,
        (db.RELAXED if relaxed else "")
        + """
        UPDATE jobs SET status = 'running', attempt = attempt + 1, worker_id = %(w)s,
               last_worker_id = %(w)s, lease_expires_at = now() + make_interval(secs => %(lease)s),
               started_at = coalesce(started_at, now()), next_attempt_at = NULL,
               updated_at = now()
        WHERE id = %(id)s AND NOT cancel_requested AND attempt < max_attempts
          AND ((status = 'pending' AND (%(prio)s::int IS NULL OR priority = %(prio)s::int))
               -- a retry waits out its backoff even if an old message shows up early
               OR (status = 'retrying' AND next_attempt_at <= now() + interval '1 second')
               OR (status = 'running' AND lease_expires_at < now()))
        RETURNING *
        """,
        {"id": job_id, "w": worker_id, "lease": lease_s, "prio": priority},
    )


def settle_unclaimable(conn: db.Connection, *, job_id: str) -> Job | None:
    """Finish a job that cannot be claimed again: cancel requested, or attempts used up.

    Only jobs nobody holds are touched (not running, or running with an expired lease).
    """
    return db.fetch_one(
        conn,
        """
        UPDATE jobs SET
            status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
            error = CASE WHEN cancel_requested THEN error
                         ELSE coalesce(error, 'worker lost during attempt ' || attempt) END,
            completed_at = now(), worker_id = NULL, lease_expires_at = NULL, updated_at = now()
        WHERE id = %s
          AND (status IN ('pending', 'retrying')
               OR (status = 'running' AND lease_expires_at < now()))
          AND (cancel_requested OR attempt >= max_attempts)
        RETURNING *
        """,
        (job_id,),
    )


def extend_leases(
    conn: db.Connection, *, worker_id: str, job_ids: Sequence[str], lease_s: float
) -> None:
    if job_ids:
        db.execute(
            conn,
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => %s)"
            " WHERE id = ANY(%s::uuid[]) AND worker_id = %s AND status = 'running'",
            (lease_s, list(job_ids), worker_id),
        )


def is_cancel_requested(conn: db.Connection, *, job_id: str) -> bool:
    row = db.fetch_one(conn, "SELECT cancel_requested FROM jobs WHERE id = %s", (job_id,))
    return bool(row and row["cancel_requested"])


def update_progress(
    conn: db.Connection,
    *,
    job_id: str,
    worker_id: str,
    items_done: int | None = None,
    items_failed: int | None = None,
    bytes_done: int | None = None,
    current_item: str | None = None,
    throughput_bps: float | None = None,
    progress_pct: float | None = None,
    keep_events: int = 1000,
) -> dict[str, Any] | None:
    """Write progress counters and record them as a `progress` job event; the event's data
    (the job's counters, totals included) with its `event_id`, or None if this worker no
    longer holds the job.

    The event is written by the same statement, after the row lock is taken, so a job's
    events are numbered in the order they commit (streams resume by id). Once the job has
    more than `keep_events` progress events the oldest are deleted (every tenth of `keep`,
    not on every tick): state changes are never pruned here.
    """
    row = db.fetch_one(
        conn,
        """
        WITH moved AS (
            UPDATE jobs SET items_done = coalesce(%(done)s, items_done),
                   items_failed = coalesce(%(failed)s, items_failed),
                   bytes_done = coalesce(%(bytes)s, bytes_done),
                   progress_pct = coalesce(%(pct)s, progress_pct),
                   current_item = %(item)s,
                   throughput_bps = %(tput)s,
                   throughput_at = CASE WHEN %(tput)s::float8 IS NULL
                                        THEN throughput_at ELSE now() END,
                   progress_events = progress_events + 1,
                   updated_at = now()
            WHERE id = %(id)s AND worker_id = %(w)s AND status = 'running'
            RETURNING *
        ), event AS (
            INSERT INTO job_events (job_id, owner_id, kind, event, attempt, data)
            SELECT id, owner_id, kind, 'progress', attempt, jsonb_build_object(
                       'status', status,
                       'items_done', items_done, 'items_failed', items_failed,
                       'items_total', items_total, 'bytes_done', bytes_done,
                       'bytes_total', bytes_total, 'progress_pct', progress_pct,
                       'current_item', current_item, 'throughput_bps', throughput_bps)
            FROM moved
            RETURNING id, data
        )
        SELECT event.id AS event_id, event.data, moved.progress_events FROM moved, event
        """,
        {
            "id": job_id,
            "w": worker_id,
            "done": items_done,
            "failed": items_failed,
            "bytes": bytes_done,
            "item": current_item,
            "tput": throughput_bps,
            "pct": progress_pct,
        },
    )
    if row is None:
        return None
    keep = max(1, keep_events)
    if row["progress_events"] > keep and row["progress_events"] % max(1, keep // 10) == 0:
        db.execute(
            conn,
            """
            DELETE FROM job_events WHERE id IN (
                SELECT id FROM job_events WHERE job_id = %(id)s AND event = 'progress'
                ORDER BY id DESC OFFSET %(keep)s)
            """,
            {"id": job_id, "keep": keep},
        )
    return {"event_id": int(row["event_id"]), **row["data"]}


def set_details(
    conn: db.Connection, *, job_id: str, worker_id: str, details: dict[str, Any]
) -> bool:
    """Merge `details` into `jobs.details` (top-level keys replaced), so the API can show
    what the attempt is doing (a container's id and resource usage) while it runs; False if
    this worker no longer holds the job (like `update_progress`)."""
    return (
        db.execute(
            conn,
            "UPDATE jobs SET details = details || %s::jsonb, updated_at = now()"
            " WHERE id = %s AND worker_id = %s AND status = 'running'",
            (json.dumps(details), job_id, worker_id),
        )
        == 1
    )


def running_holders(conn: db.Connection, *, job_ids: Sequence[str]) -> dict[str, Job]:
    """Who holds each of these jobs now: `{job id: {attempt, worker_id}}` for the running
    ones. A worker's sweep compares it with what it finds outside the database (a container
    labelled with a job and an attempt) to tell a live attempt's leftovers from a dead one's."""
    if not job_ids:
        return {}
    rows = db.fetch_all(
        conn,
        "SELECT id::text AS id, attempt, worker_id FROM jobs"
        " WHERE id = ANY(%s::uuid[]) AND status = 'running'",
        (list(job_ids),),
    )
    return {row["id"]: row for row in rows}


def finish_job(
    conn: db.Connection,
    *,
    job_id: str,
    worker_id: str,
    status: str,
    error: str | None = None,
    result: Any = None,
) -> Job | None:
    """Move a held job to a terminal status; None if this worker no longer holds it.
    `result` is any JSON value (a task's handler may return a list or a number)."""
    if status not in TERMINAL:
        raise ValueError(f"not a terminal status: {status}")
    return db.fetch_one(
        conn,
        """
        UPDATE jobs SET status = %(status)s, error = %(error)s,
               result = coalesce(%(result)s, result), completed_at = now(),
               worker_id = NULL, lease_expires_at = NULL, current_item = NULL, updated_at = now()
        WHERE id = %(id)s AND worker_id = %(w)s AND status = 'running'
        RETURNING *
        """,
        {
            "id": job_id,
            "w": worker_id,
            "status": status,
            "error": error,
            "result": None if result is None else psycopg2.extras.Json(result),
        },
    )


def backoff_delay(job: Job, *, max_seconds: float, rng: random.Random | None = None) -> int:
    """Seconds before the next attempt: fixed or exponential, with jitter, at least 1."""
    base = float(job["backoff_seconds"])
    attempt = max(int(job["attempt"]), 1)
    delay = base if job["backoff"] == "fixed" else base * 2 ** (attempt - 1)
    delay = min(delay, max_seconds)
    jitter = (rng or random).uniform(0.0, delay / 4)  # spread retries of jobs that failed together
    return max(1, round(delay + jitter))


def schedule_retry(
    conn: db.Connection, *, job: Job, worker_id: str, error: str, delay_s: int, app_id: str
) -> tuple[Job, int] | None:
    """Mark a held job `retrying` and queue its delayed message in the same transaction;
    returns the job and the message's outbox id (None if this worker no longer holds it)."""
    row = db.fetch_one(
        conn,
        """
        UPDATE jobs SET status = 'retrying', error = %(error)s, worker_id = NULL,
               lease_expires_at = NULL, current_item = NULL,
               next_attempt_at = now() + make_interval(secs => %(delay)s), updated_at = now()
        WHERE id = %(id)s AND worker_id = %(w)s AND status = 'running'
        RETURNING *
        """,
        {"id": job["id"], "w": worker_id, "error": error, "delay": delay_s},
    )
    if row is not None:
        job_items.reset_failed_items(conn, job_id=str(job["id"]))
        return row, outbox.add_job_message(conn, job=row, app_id=app_id, delay_s=delay_s)
    return None


def hand_back(conn: db.Connection, *, job_id: str, worker_id: str) -> Job | None:
    """Give a held job back untouched (shutdown): it did not use up an attempt."""
    return db.fetch_one(
        conn,
        """
        UPDATE jobs SET status = 'pending', attempt = greatest(attempt - 1, 0), worker_id = NULL,
               lease_expires_at = NULL, current_item = NULL, updated_at = now()
        WHERE id = %s AND worker_id = %s AND status = 'running'
        RETURNING *
        """,
        (job_id, worker_id),
    )
