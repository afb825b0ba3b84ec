"""Queries of seed 004's task routes over the `jobs` table (jobs of kind `task`): the list
with its filters and sorts, and the changes a task's owner may make while it waits.

`jobgate.jobs.list_jobs` filters by one status and sorts by columns only; the seed filters by
priority words (ranges of `jobs.priority`) and the worker that ran a task, and sorts by
duration, so the list is its own query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobgate import db
from jobgate.jobs import Job

# What a task may still change: it waits for a worker (the seed's `pending`).
QUEUED = ("pending", "retrying")
# `duration`: run time of a finished task; NULL (listed last in either order) before.
DURATION_SQL = "(completed_at - started_at)"
SORTS = {"created_at": "created_at", "updated_at": "updated_at", "duration": DURATION_SQL}


def list_tasks(
    conn: db.Connection,
    *,
    kind: str,
    owner_id: str | None = None,
    statuses: Sequence[str] | None = None,
    priority_range: tuple[int, int] | None = None,
    last_worker_id: str | None = None,
    sort: str = "created_at",
    order: str = "desc",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    """A page of one kind's jobs and the total matching the filters (owner None = all)."""
    if sort not in SORTS or order not in ("asc", "desc"):
        raise ValueError("unsupported sort")
    low, high = priority_range if priority_range is not None else (None, None)
    where = """
        kind = %(kind)s
        AND (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
        AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
        AND (%(low)s::int IS NULL OR priority BETWEEN %(low)s::int AND %(high)s::int)
        AND (%(worker)s::text IS NULL OR last_worker_id = %(worker)s::text)
    """
    args = {
        "kind": kind,
        "owner": owner_id,
        "statuses": list(statuses) if statuses is not None else None,
        "low": low,
        "high": high,
        "worker": last_worker_id,
        "limit": limit,
        "offset": offset,
    }
    total = db.fetch_one(conn, f"SELECT count(*) AS n FROM jobs WHERE {where}", args)["n"]
    rows = db.fetch_all(
        conn,
        f"SELECT * FROM jobs WHERE {where}"
        f" ORDER BY {SORTS[sort]} {order} NULLS LAST, id {order}"
        " LIMIT %(limit)s OFFSET %(offset)s",
        args,
    )
    return rows, int(total)


def set_params(conn: db.Connection, *, job_id: str, changes: dict[str, Any]) -> Job | None:
    """Merge `changes` into the job's params whatever its status (a task's name and
    description are labels: the handler was chosen at submission). None if it is gone."""
    return db.fetch_one(
        conn,
        "UPDATE jobs SET params = params || %s::jsonb, updated_at = now() WHERE id = %s"
        " RETURNING *",
        (changes, job_id),
    )


def update_queued(
    conn: db.Connection,
    *,
    job_id: str,
    params: dict[str, Any] | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> Job | None:
    """Change what a waiting job will run with (params replaced, priority, attempts). None
    when it no longer waits (a worker took it meanwhile) or `max_attempts` would not leave
    it another attempt. The row carries `wait_s`: whole seconds until a retrying job's
    backoff ends (0 for a pending one)."""
    return db.fetch_one(
        conn,
        """
        UPDATE jobs SET params = coalesce(%(params)s::jsonb, params),
               priority = coalesce(%(priority)s::smallint, priority),
               max_attempts = coalesce(%(max_attempts)s::int, max_attempts),
               updated_at = now()
        WHERE id = %(id)s AND status = ANY(%(queued)s)
          AND coalesce(%(max_attempts)s::int, max_attempts) > attempt
        RETURNING *, CASE WHEN status = 'retrying' AND next_attempt_at > now()
                          THEN ceil(extract(epoch FROM next_attempt_at - now()))::int
                          ELSE 0 END AS wait_s
        """,
        {
            "id": job_id,
            "params": params,
            "priority": priority,
            "max_attempts": max_attempts,
            "queued": list(QUEUED),
        },
    )
