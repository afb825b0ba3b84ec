"""The `jobs` table: statuses, reads every service needs, and one module per set of writers.

Every state transition is one `UPDATE ... WHERE status IN (...)`, so a redelivered message,
a second worker or a late cancel can never move a job backwards (DESIGN.md guarantee 2).
Functions take an explicit connection; the caller's transaction also carries the outbox row.
The writers are grouped by who calls them:

- `submission`: the gateway's transitions (create, cancel, retry);
- `attempts`: a worker's transitions for the attempt it holds (claim, leases, progress,
  finish, retry, hand back);
- `reaper`: jobs of dead workers and jobs whose message went missing;
- `job_items`: the units of work of a job (the `job_items` table);
- `job_logs`: a job's log lines (the `job_logs` table);
- `events`: the retention of `job_events` (every status change, written by triggers);
- `tasks`: seed 004's task list and the updates of a waiting task.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from jobgate import db

STATUSES = ("pending", "running", "retrying", "completed", "failed", "cancelled")
ACTIVE = ("pending", "running", "retrying")
TERMINAL = ("completed", "failed", "cancelled")
SORTABLE = ("created_at", "updated_at", "started_at", "completed_at", "status", "kind", "priority")

Job = dict[str, Any]


def new_job_id() -> str:
    return str(uuid.uuid4())


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
    exclude_kinds: Sequence[str] = (),
) -> tuple[list[Job], int]:
    """A page of jobs and the total count matching the filters, leaving out the jobs of
    `exclude_kinds` (the canonical list hides internal kinds unless asked by kind)."""
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
    if exclude_kinds:
        where.append("kind <> ALL(%s)")
        params.append(list(exclude_kinds))
    clause = " AND ".join(where)
    total = db.fetch_one(conn, f"SELECT count(*) AS n FROM jobs WHERE {clause}", params)["n"]
    rows = db.fetch_all(
        conn,
        f"SELECT * FROM jobs WHERE {clause} ORDER BY {sort} {order}, id LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )
    return rows, int(total)


def list_jobs_of_kind(
    conn: db.Connection,
    *,
    kind: str,
    statuses: Sequence[str] | None = None,
    owner_id: str | None = None,
    owner_username: str | None = None,
    created_since: Any = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of one kind's jobs, newest first, and the total: for seed routes whose status
    word covers several statuses (`queued` = pending or retrying) and that filter by the
    owner's username (`list_jobs` takes one status and an owner id)."""
    where = """
        kind = %(kind)s
        AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
        AND (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
        AND (%(username)s::text IS NULL
             OR owner_id = (SELECT id FROM users WHERE username = %(username)s))
        AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
    """
    args = {
        "kind": kind,
        "statuses": list(statuses) if statuses is not None else None,
        "owner": owner_id,
        "username": owner_username,
        "since": created_since,
        "limit": limit,
        "offset": offset,
    }
    total = db.fetch_one(conn, f"SELECT count(*) AS n FROM jobs WHERE {where}", args)["n"]
    rows = db.fetch_all(
        conn,
        f"SELECT * FROM jobs WHERE {where}"
        " ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s",
        args,
    )
    return rows, int(total)


def count_by_status(
    conn: db.Connection, *, kind: str | None = None, owner_id: str | None = None
) -> dict[str, int]:
    """How many jobs (of `kind`, of `owner_id`: None = all) there are in each status."""
    rows = db.fetch_all(
        conn,
        """
        SELECT status, count(*) AS n FROM jobs
        WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
          AND (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
        GROUP BY status
        """,
        {"kind": kind, "owner": owner_id},
    )
    return {row["status"]: int(row["n"]) for row in rows}
