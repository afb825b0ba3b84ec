"""The `jobs` table and its items: every state transition, guarded in SQL.

Each transition is one `UPDATE ... WHERE status IN (...)`, so a redelivered message,
a second worker or a late cancel can never move a job backwards (DESIGN.md guarantee 2).
Functions take an explicit connection; the caller's transaction also carries the outbox row.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg2.extras

from jobgate import db, outbox

STATUSES = ("pending", "running", "retrying", "completed", "failed", "cancelled")
ACTIVE = ("pending", "running", "retrying")
TERMINAL = ("completed", "failed", "cancelled")
SORTABLE = ("created_at", "updated_at", "started_at", "completed_at", "status", "kind", "priority")

Job = dict[str, Any]


def new_job_id() -> str:
    return str(uuid.uuid4())


def create_job(
    conn: db.Connection,
    *,
    job_id: str,
    kind: str,
    owner_id: str,
    params: dict[str, Any],
    priority: int = 5,
    max_attempts: int = 3,
    backoff: str = "exponential",
    backoff_seconds: float = 2.0,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    items_total: int = 0,
    bytes_total: int = 0,
) -> Job | None:
    """Insert a pending job; None when this owner already used `idempotency_key`."""
    return db.fetch_one(
        conn,
        """
        INSERT INTO jobs (id, kind, owner_id, params, priority, max_attempts, backoff,
                          backoff_seconds, idempotency_key, request_id, items_total, bytes_total)
        VALUES (%(id)s, %(kind)s, %(owner)s, %(params)s, %(priority)s, %(max_attempts)s,
                %(backoff)s, %(backoff_seconds)s, %(key)s, %(rid)s, %(items)s, %(bytes)s)
        ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING *
        """,
        {
            "id": job_id,
            "kind": kind,
            "owner": owner_id,
            "params": params,
            "priority": priority,
            "max_attempts": max_attempts,
            "backoff": backoff,
            "backoff_seconds": backoff_seconds,
            "key": idempotency_key,
            "rid": request_id,
            "items": items_total,
            "bytes": bytes_total,
        },
    )


def get_by_idempotency_key(conn: db.Connection, *, owner_id: str, key: str) -> Job | None:
    return db.fetch_one(
        conn, "SELECT * FROM jobs WHERE owner_id = %s AND idempotency_key = %s", (owner_id, key)
    )


def insert_items(conn: db.Connection, *, job_id: str, items: Iterable[tuple[str, int]]) -> None:
    """Store a job's units of work (path, size), numbered in order."""
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO job_items (job_id, seq, path, size) VALUES %s",
            ((job_id, seq, path, size) for seq, (path, size) in enumerate(items)),
            page_size=2000,
        )


def get_job(conn: db.Connection, *, job_id: str, for_update: bool = False) -> Job | None:
    sql = "SELECT * FROM jobs WHERE id = %s" + (" FOR UPDATE" if for_update else "")
    return db.fetch_one(conn, sql, (job_id,))


def list_jobs(
    conn: db.Connection,
    *,
    owner_id: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    created_since: Any = None,
    limit: int = 50,
    offset: int = 0,
    sort: str = "created_at",
    order: str = "desc",
) -> tuple[list[Job], int]:
    """A page of jobs and the total count matching the filters."""
    if sort not in SORTABLE or order not in ("asc", "desc"):
        raise ValueError("unsupported sort")
    where, params = ["true"], []
    for column, value in (("owner_id", owner_id), ("kind", kind), ("status", status)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if created_since is not None:
        where.append("created_at >= %s")
        params.append(created_since)
    clause = " AND ".join(where)
    total = db.fetch_one(conn, f"SELECT count(*) AS n FROM jobs WHERE {clause}", params)["n"]
    rows = db.fetch_all(
        conn,
        f"SELECT * FROM jobs WHERE {clause} ORDER BY {sort} {order}, id LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )
    return rows, int(total)


def request_cancel(conn: db.Connection, *, job_id: str) -> Job | None:
    """Flag a job for cancellation; a job no worker holds is cancelled at once.

    Returns the updated row, or None if the job was already finished.
    """
    return db.fetch_one(
        conn,
        """
        UPDATE jobs SET cancel_requested = true,
               status = CASE WHEN status IN ('pending', 'retrying') THEN 'cancelled'
                             ELSE status END,
               completed_at = CASE WHEN status IN ('pending', 'retrying') THEN now() END,
               next_attempt_at = NULL, updated_at = now()
        WHERE id = %s AND status IN ('pending', 'running', 'retrying')
        RETURNING *
        """,
        (job_id,),
    )


def retry_job(
    conn: db.Connection, *, job_id: str, app_id: str, request_id: str | None
) -> tuple[Job, int]:
    """Run a failed or cancelled job again from where it stopped (done items are kept).

    Returns the job and the id of its outbox message.
    """
    job = db.fetch_one(
        conn,
        """
        UPDATE jobs SET status = 'pending', attempt = 0, cancel_requested = false, error = NULL,
               completed_at = NULL, worker_id = NULL, lease_expires_at = NULL,
               items_failed = 0, updated_at = now()
        WHERE id = %s AND status IN ('failed', 'cancelled')
        RETURNING *
        """,
        (job_id,),
    )
    if job is None:
        raise ValueError("only failed or cancelled jobs can be retried")
    reset_failed_items(conn, job_id=job_id)
    return job, outbox.add_job_message(conn, job=job, app_id=app_id, request_id=request_id)


# --- worker side -------------------------------------------------------------------------


def claim_job(conn: db.Connection, *, job_id: str, worker_id: str, lease_s: float) -> Job | None:
    """Take a job for one attempt; None if it is not claimable (finished, held, cancelled).

    A running job whose lease expired (its worker died) may be taken over: that is a
    new attempt, so a job that kills every worker still ends `failed`.
    """
    return db.fetch_one(
        conn,
        """
        UPDATE jobs SET status = 'running', attempt = attempt + 1, worker_id = %(w)s,
               lease_expires_at = now() + make_interval(secs => %(lease)s),
               started_at = coalesce(started_at, now()), next_attempt_at = NULL,
               updated_at = now()
        WHERE id = %(id)s AND NOT cancel_requested AND attempt < max_attempts
          AND (status = 'pending'
               -- a retry waits out its backoff even if an old message shows up early
               OR (status = 'retrying' AND next_attempt_at <= now() + interval '1 second')
               OR (status = 'running' AND lease_expires_at < now()))
        RETURNING *
        """,
        {"id": job_id, "w": worker_id, "lease": lease_s},
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
) -> bool:
    """Write progress counters; False if this worker no longer holds the job."""
    return (
        db.execute(
            conn,
            """
            UPDATE jobs SET items_done = coalesce(%(done)s, items_done),
                   items_failed = coalesce(%(failed)s, items_failed),
                   bytes_done = coalesce(%(bytes)s, bytes_done),
                   progress_pct = coalesce(%(pct)s, progress_pct),
                   current_item = %(item)s,
                   throughput_bps = %(tput)s,
                   throughput_at = CASE WHEN %(tput)s::float8 IS NULL
                                        THEN throughput_at ELSE now() END,
                   updated_at = now()
            WHERE id = %(id)s AND worker_id = %(w)s AND status = 'running'
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
        == 1
    )


def finish_job(
    conn: db.Connection,
    *,
    job_id: str,
    worker_id: str,
    status: str,
    error: str | None = None,
    result: dict[str, Any] | None = None,
) -> Job | None:
    """Move a held job to a terminal status; None if this worker no longer holds it."""
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
        {"id": job_id, "w": worker_id, "status": status, "error": error, "result": result},
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
        reset_failed_items(conn, job_id=str(job["id"]))
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


def requeue_lost(conn: db.Connection, *, app_id: str, stale_s: float) -> list[Job]:
    """The reaper: jobs whose worker stopped heart-beating go back to `pending` (or to
    `failed` when that was their last attempt), and jobs left waiting far longer than they
    should (their message was lost or purged) get a new message. Duplicate messages are
    harmless: claim_job lets only one through.
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


# --- items ---------------------------------------------------------------------------------


def open_items(conn: db.Connection, *, job_id: str) -> list[dict[str, Any]]:
    """Items not yet done (pending or failed), in order: what a (resumed) attempt must do."""
    return db.fetch_all(
        conn,
        "SELECT seq, path, size FROM job_items WHERE job_id = %s AND status <> 'done' ORDER BY seq",
        (job_id,),
    )


def item_totals(conn: db.Connection, *, job_id: str) -> dict[str, int]:
    """Counters recomputed from the items, so a resumed job never counts a file twice."""
    row = db.fetch_one(
        conn,
        """
        SELECT count(*) FILTER (WHERE status = 'done') AS items_done,
               count(*) FILTER (WHERE status = 'failed') AS items_failed,
               coalesce(sum(size) FILTER (WHERE status = 'done'), 0) AS bytes_done
        FROM job_items WHERE job_id = %s
        """,
        (job_id,),
    )
    return {k: int(v) for k, v in row.items()}


def relax_durability(conn: db.Connection) -> None:
    """This transaction may be lost in a database crash (progress that can be redone)."""
    db.execute(conn, "SET LOCAL synchronous_commit = off")


def mark_items(
    conn: db.Connection,
    *,
    job_id: str,
    done: Sequence[int] = (),
    failed: dict[int, str] | None = None,
) -> None:
    if done:
        db.execute(
            conn,
            "UPDATE job_items SET status = 'done', error = NULL"
            " WHERE job_id = %s AND seq = ANY(%s)",
            (job_id, list(done)),
        )
    for seq, error in (failed or {}).items():
        db.execute(
            conn,
            "UPDATE job_items SET status = 'failed', error = %s WHERE job_id = %s AND seq = %s",
            (error, job_id, seq),
        )


def reset_failed_items(conn: db.Connection, *, job_id: str) -> None:
    """Failed items become pending again: the next attempt tries them once more."""
    db.execute(
        conn,
        "UPDATE job_items SET status = 'pending', error = NULL"
        " WHERE job_id = %s AND status = 'failed'",
        (job_id,),
    )
    db.execute(conn, "UPDATE jobs SET items_failed = 0 WHERE id = %s", (job_id,))


def failed_items(conn: db.Connection, *, job_id: str, limit: int = 100) -> list[dict[str, Any]]:
    return db.fetch_all(
        conn,
        "SELECT path, error FROM job_items WHERE job_id = %s AND status = 'failed'"
        " ORDER BY seq LIMIT %s",
        (job_id, limit),
    )


# --- logs ----------------------------------------------------------------------------------


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
