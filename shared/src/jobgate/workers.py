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
    current_load: int = 0,
    max_capacity: int = 1,
) -> None:
    db.execute(
        conn,
        """
        INSERT INTO workers (id, kind, hostname, pid, status, current_job_id, current_load,
                             max_capacity)
        VALUES (%(id)s, %(kind)s, %(host)s, %(pid)s, %(status)s, %(job)s, %(load)s, %(capacity)s)
        ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
            current_job_id = EXCLUDED.current_job_id, current_load = EXCLUDED.current_load,
            max_capacity = EXCLUDED.max_capacity, last_heartbeat_at = now(),
            stopped_at = CASE WHEN EXCLUDED.status = 'stopped' THEN now() END
        """,
        {
            "id": worker_id,
            "kind": kind,
            "host": hostname,
            "pid": pid,
            "status": status,
            "job": current_job_id,
            "load": current_load,
            "capacity": max_capacity,
        },
    )


def add_outcomes(conn: db.Connection, *, worker_id: str, completed: int, failed: int) -> None:
    """Add to the worker's completed and failed counts (a statistic: committed without
    waiting for the WAL flush, in the same round trip)."""
    db.execute(
        conn,
        db.RELAXED
        + "UPDATE workers SET jobs_completed = jobs_completed + %s, jobs_failed = jobs_failed + %s"
        " WHERE id = %s",
        (completed, failed, worker_id),
    )


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


# --- the workers API (seed 004) ---------------------------------------------------------------

# A worker is active while it heart-beats: within this many seconds (ten of Jobgate's default
# 5 s beats, the same freshness as `live_workers` and the health checks), and not stopped or
# reported inactive. External workers report at their own pace, so the window is generous.
ACTIVE_S = 30.0
# Rows of workers stopped or silent this long are deleted (each worker process start makes one).
PRUNE_AFTER_S = 7 * 24 * 3600.0

_ACTIVE_SQL = """(status NOT IN ('stopped', 'inactive')
                  AND last_heartbeat_at > now() - make_interval(secs => %(fresh)s))"""
# Every row also says whose job it holds, so the API shows `current_job_id` to its owner only.
_COLUMNS = f"""*, {_ACTIVE_SQL} AS active,
    (SELECT j.owner_id FROM jobs j WHERE j.id = workers.current_job_id) AS current_job_owner_id"""
# External workers are their owners' business; Jobgate's own are infrastructure, seen by all.
# `%(reader)s` NULL = every row (an admin).
_VISIBLE_SQL = "(%(reader)s::uuid IS NULL OR NOT external OR owner_id = %(reader)s::uuid)"


def list_workers(
    conn: db.Connection,
    *,
    reader_id: str | None = None,
    active: bool | None = None,
    limit: int = 50,
    offset: int = 0,
    fresh_s: float = ACTIVE_S,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the workers `reader_id` may see (Jobgate's and its own external ones; None
    = all), most recently heard first, with `active` and `current_job_owner_id` computed,
    and the total matching `active` (None = all)."""
    args = {
        "fresh": fresh_s,
        "active": active,
        "limit": limit,
        "offset": offset,
        "reader": reader_id,
    }
    where = (
        f"{_VISIBLE_SQL} AND (%(active)s::boolean IS NULL OR {_ACTIVE_SQL} = %(active)s::boolean)"
    )
    total = db.fetch_one(conn, f"SELECT count(*) AS n FROM workers WHERE {where}", args)["n"]
    rows = db.fetch_all(
        conn,
        f"SELECT {_COLUMNS} FROM workers WHERE {where}"
        " ORDER BY last_heartbeat_at DESC, id LIMIT %(limit)s OFFSET %(offset)s",
        args,
    )
    return rows, int(total)


def get_worker(
    conn: db.Connection, *, worker_id: str, reader_id: str | None = None, fresh_s: float = ACTIVE_S
) -> dict[str, Any] | None:
    """One worker, None if there is none `reader_id` may see (None = any)."""
    return db.fetch_one(
        conn,
        f"SELECT {_COLUMNS} FROM workers WHERE id = %(id)s AND {_VISIBLE_SQL}",
        {"id": worker_id, "fresh": fresh_s, "reader": reader_id},
    )


def all_workers(
    conn: db.Connection, *, reader_id: str | None = None, fresh_s: float = ACTIVE_S
) -> list[dict[str, Any]]:
    """Every row `reader_id` may see (None = all), by kind then start (the table holds at
    most a week of stopped ones)."""
    return db.fetch_all(
        conn,
        f"SELECT {_COLUMNS} FROM workers WHERE {_VISIBLE_SQL} ORDER BY kind, started_at, id",
        {"fresh": fresh_s, "reader": reader_id},
    )


def external_heartbeat(
    conn: db.Connection,
    *,
    worker_id: str,
    owner_id: str,
    status: str,
    current_load: int,
    max_capacity: int,
    fresh_s: float = ACTIVE_S,
) -> dict[str, Any] | None:
    """Register or refresh a worker that runs outside Jobgate, owned by `owner_id`. None
    when the id is taken: by a Jobgate worker, or by another owner's external worker (the
    row is left untouched)."""
    return db.fetch_one(
        conn,
        f"""
        INSERT INTO workers (id, kind, status, external, owner_id, current_load, max_capacity)
        VALUES (%(id)s, 'external', %(status)s, true, %(owner)s, %(load)s, %(capacity)s)
        ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,
            current_load = EXCLUDED.current_load, max_capacity = EXCLUDED.max_capacity,
            last_heartbeat_at = now(), stopped_at = NULL
        WHERE workers.external AND workers.owner_id = EXCLUDED.owner_id
        RETURNING {_COLUMNS}
        """,
        {
            "id": worker_id,
            "owner": owner_id,
            "status": status,
            "load": current_load,
            "capacity": max_capacity,
            "fresh": fresh_s,
        },
    )


def prune(conn: db.Connection, *, older_than_s: float = PRUNE_AFTER_S) -> int:
    """Delete rows of workers stopped or silent for `older_than_s` (a week): every worker
    process start adds a row, and nothing else would ever remove them. A stopping worker's
    last beat also stamps `stopped_at`, so its last heartbeat is when it went silent."""
    return db.execute(
        conn,
        """
        DELETE FROM workers WHERE last_heartbeat_at < now() - make_interval(secs => %s)
        """,
        (older_than_s,),
    )
