"""The gateway's transitions: create a job, cancel it, run a finished one again."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import psycopg2.extras

from jobgate import db, outbox
from jobgate.jobs import Job, job_items


@dataclasses.dataclass(frozen=True)
class Submission:
    """A job validated and planned but not yet written (a kind's `prepare`): the single
    submit and the batch both write these, so every check happens before any row exists."""

    kind: str
    params: dict[str, Any]  # as stored in `jobs.params`
    options: dict[str, Any]  # priority, max_attempts, backoff, backoff_seconds (set ones only)
    items: Sequence[tuple[str, int]] = ()
    bytes_total: int = 0


JOB_COLUMNS = (
    "id, kind, owner_id, params, priority, max_attempts, backoff, backoff_seconds,"
    " idempotency_key, request_id, items_total, bytes_total, schedule_id"
)


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
    schedule_id: str | None = None,
) -> Job | None:
    """Insert a pending job (a run of `schedule_id` when set); None when this owner already
    used `idempotency_key`."""
    return db.fetch_one(
        conn,
        """
        INSERT INTO jobs (id, kind, owner_id, params, priority, max_attempts, backoff,
                          backoff_seconds, idempotency_key, request_id, items_total, bytes_total,
                          schedule_id)
        VALUES (%(id)s, %(kind)s, %(owner)s, %(params)s, %(priority)s, %(max_attempts)s,
                %(backoff)s, %(backoff_seconds)s, %(key)s, %(rid)s, %(items)s, %(bytes)s,
                %(schedule)s)
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
            "schedule": schedule_id,
        },
    )


# Items stored by `create_job_queued`'s single statement; a longer list (a cache job over a
# folder tree) is inserted page by page beside it.
INLINE_ITEMS_MAX = 1000


def create_job_queued(
    conn: db.Connection,
    row: dict[str, Any],
    *,
    items: Sequence[tuple[Any, ...]],
    app_id: str,
) -> tuple[Job, int] | None:
    """Insert a pending job (`create_job`'s fields in `row`, its `id` chosen by the caller),
    its items and its outbox message in ONE statement, so a submission on an autocommit
    connection is one round trip and one commit; returns (job, outbox id), or None when this
    owner already used the row's idempotency key (nothing is written then). Up to
    INLINE_ITEMS_MAX items; more go in a transaction with `create_job` and `insert_items`."""
    if len(items) > INLINE_ITEMS_MAX:
        raise ValueError(f"more than {INLINE_ITEMS_MAX} items: insert them page by page")
    # Everything the message says is known before the insert: a new job's first attempt.
    exchange, routing_key, body, properties = outbox.job_message(
        {**row, "attempt": 0}, app_id=app_id, request_id=row.get("request_id")
    )
    new = [job_items.NewItem(*raw) for raw in items]
    found = db.fetch_one(
        conn,
        f"""
        WITH job AS (
            INSERT INTO jobs ({JOB_COLUMNS})
            VALUES (%(id)s, %(kind)s, %(owner_id)s, %(params)s, %(priority)s,
                    %(max_attempts)s, %(backoff)s, %(backoff_seconds)s, %(idempotency_key)s,
                    %(request_id)s, %(items_total)s, %(bytes_total)s, %(schedule_id)s)
            ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING *
        ), items AS (
            INSERT INTO job_items (job_id, seq, key, size, meta)
            SELECT job.id, item.seq - 1, item.key, item.size, item.meta
            FROM job, unnest(%(keys)s::text[], %(sizes)s::bigint[], %(metas)s::jsonb[])
                 WITH ORDINALITY AS item(key, size, meta, seq)
        ), message AS (
            INSERT INTO outbox (exchange, routing_key, body, properties)
            SELECT %(exchange)s, %(routing_key)s, %(body)s, %(properties)s FROM job
            RETURNING id
        )
        SELECT job.*, message.id AS outbox_id FROM job, message
        """,
        {
            "idempotency_key": None,
            "request_id": None,
            "items_total": len(new),
            "bytes_total": 0,
            "schedule_id": None,
            **row,
            "keys": [item.key for item in new],
            "sizes": [item.size for item in new],
            "metas": [item.meta for item in new],
            "exchange": exchange,
            "routing_key": routing_key,
            "body": body,
            "properties": properties,
        },
    )
    if found is None:
        return None
    outbox_id = int(found.pop("outbox_id"))
    return found, outbox_id


def create_jobs(conn: db.Connection, rows: Sequence[dict[str, Any]]) -> list[Job]:
    """Insert many pending jobs in one statement (`create_job`'s fields per row); returns the
    rows inserted, in any order. A row whose owner already used its idempotency key is
    skipped (the caller looks those up)."""
    if not rows:
        return []
    values = [
        (
            r["id"],
            r["kind"],
            r["owner_id"],
            r["params"],
            r["priority"],
            r["max_attempts"],
            r["backoff"],
            r["backoff_seconds"],
            r.get("idempotency_key"),
            r.get("request_id"),
            r.get("items_total", 0),
            r.get("bytes_total", 0),
            r.get("schedule_id"),
        )
        # Keyed rows in key order: two batches sharing keys wait for each other in the same
        # order instead of deadlocking (each insert locks its key until commit).
        for r in sorted(
            rows, key=lambda r: (r.get("idempotency_key") is None, r.get("idempotency_key") or "")
        )
    ]
    with conn.cursor() as cur:
        return list(
            psycopg2.extras.execute_values(
                cur,
                f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES %s"
                " ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
                " DO NOTHING RETURNING *",
                values,
                page_size=len(values),
                fetch=True,
            )
        )


def insert_items_of_jobs(
    conn: db.Connection, items_by_job: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]
) -> None:
    """Store the items of many new jobs in one statement: `(job_id, [(key, size), …])`."""
    rows = [
        (job_id, seq, item.key, item.size, item.meta)
        for job_id, items in items_by_job
        for seq, item in enumerate(job_items.NewItem(*raw) for raw in items)
    ]
    if not rows:
        return
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO job_items (job_id, seq, key, size, meta) VALUES %s",
            rows,
            page_size=5000,
        )


def get_by_idempotency_keys(
    conn: db.Connection, *, owner_id: str, keys: Sequence[str]
) -> dict[str, Job]:
    """The owner's jobs by idempotency key, for the keys that have one."""
    if not keys:
        return {}
    rows = db.fetch_all(
        conn,
        "SELECT * FROM jobs WHERE owner_id = %s AND idempotency_key = ANY(%s)",
        (owner_id, list(keys)),
    )
    return {row["idempotency_key"]: row for row in rows}


def fail_unqueued(conn: db.Connection, *, job_id: str, error: str) -> Job | None:
    """End a job that was never queued as `failed` (a scheduled run whose params no longer
    make a job: the folder is gone), so the failure is on record like any other outcome."""
    return db.fetch_one(
        conn,
        """
        UPDATE jobs SET status = 'failed', error = %s, completed_at = now(), updated_at = now()
        WHERE id = %s AND status = 'pending'
        RETURNING *
        """,
        (error, job_id),
    )


def get_by_idempotency_key(conn: db.Connection, *, owner_id: str, key: str) -> Job | None:
    return db.fetch_one(
        conn, "SELECT * FROM jobs WHERE owner_id = %s AND idempotency_key = %s", (owner_id, key)
    )


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


def reopen_job(conn: db.Connection, *, job_id: str) -> Job:
    """Make a failed or cancelled job pending again, to go on from where it stopped (done
    items are kept, failed ones wait again), without queueing its message: the caller adds
    one once the job is as it will run (`retry_job`, or a PUT that also changes its fields).

    `started_at` starts over with the next claim, so a finished run's duration is that run's
    own (an automatic retry keeps it: one run's duration includes its backoff waits).
    Raises ValueError for a job in any other status.
    """
    job = db.fetch_one(
        conn,
        """
        UPDATE jobs SET status = 'pending', attempt = 0, cancel_requested = false, error = NULL,
               started_at = NULL, completed_at = NULL, worker_id = NULL,
               lease_expires_at = NULL, items_failed = 0, updated_at = now()
        WHERE id = %s AND status IN ('failed', 'cancelled')
        RETURNING *
        """,
        (job_id,),
    )
    if job is None:
        raise ValueError("only failed or cancelled jobs can be retried")
    job_items.reset_failed_items(conn, job_id=job_id)
    return job


def retry_job(
    conn: db.Connection, *, job_id: str, app_id: str, request_id: str | None
) -> tuple[Job, int]:
    """Run a failed or cancelled job again from where it stopped (`reopen_job`).

    Returns the job and the id of its outbox message.
    """
    job = reopen_job(conn, job_id=job_id)
    return job, outbox.add_job_message(conn, job=job, app_id=app_id, request_id=request_id)


def delete_job(conn: db.Connection, *, job_id: str) -> bool:
    """Remove a job for good (its items and logs go with it); False if it did not exist.
    A worker still holding it finds its row gone and drops the attempt."""
    return db.execute(conn, "DELETE FROM jobs WHERE id = %s", (job_id,)) == 1
