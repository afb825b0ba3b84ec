"""Analytics of jobs (seed 004's dashboard, trends and export), exact and fast at any size.

Definitions (a "selection" is one owner's jobs or, for an admin, every owner's; of one kind,
or of every public kind when `kind` is None: jobs of internal kinds such as `webhook` count
only when asked for by name):

- `total_tasks`: every job of the selection that exists now (deleted jobs are gone).
- `completed_tasks`, `failed_tasks`, `cancelled_tasks`, `running_tasks`, `retrying_tasks`: by
  current status; `pending_tasks` = pending + retrying (seed 004 has no `retrying`).
- `completion_rate` = completed / total (0.0 when total is 0), 4 decimal places.
- `average_duration` = mean of `completed_at - started_at` in seconds over completed jobs
  that have both timestamps (0.0 when none), 3 decimal places.
- `workers_active` / `workers_total`: the workers the reader sees, as `jobgate.workers` rules
  (Jobgate's own to everyone, external ones to their owner and admins), of `kind` when one is
  given (`workers.kind`; external workers are kind `external`), every kind otherwise;
  active = a heartbeat within `workers.ACTIVE_S` and not stopped or inactive.
- Trends and export: one row per UTC day, by the day of `completed_at`, of the jobs that
  finished then and are now `completed`, `failed` or `cancelled` (`finished` = their sum).
  `completion_rate` = completed / finished, `error_rate` = failed / finished (4 places),
  `avg_duration` = mean duration of that day's completed jobs (3 places). A day with nothing
  to measure has the value None (JSON null, an empty CSV cell), not 0: a chart should show a
  gap, not a day on which every job failed or took no time.

How (docs/architecture.md, "Analytics"; migration 0011): triggers on `jobs` append signed
deltas (+1 for a job's new key, -1 for its old one) to `analytics_deltas` in the writer's own
transaction; nothing is ever updated there, so workers changing statuses never wait on one
another. `compact` folds deltas into three small rollups (by owner, kind and status; by
owner, kind and day; by kind and day). Every read sums rollup + unfolded deltas in one SQL
statement: one snapshot, so the numbers equal a direct COUNT at any moment after commit,
whether compaction ran or not.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobgate import db, kinds, workers

METRICS = ("completion_rate", "avg_duration", "error_rate")
EXPORT_COLUMNS: tuple[str, ...] = (
    "date",
    "finished",
    "completed",
    "failed",
    "cancelled",
    "completion_rate",
    "error_rate",
    "avg_duration",
)
COMPACT_BATCH = 10_000  # deltas folded per transaction
COMPACT_MAX_BATCHES = 100  # per housekeeping round: a backlog is worked off over rounds

_US = 1_000_000


def _internal_kinds() -> list[str]:
    return [spec.name for spec in kinds.specs() if spec.internal]


def _where(*, owner_id: str | None, kind: str | None, owner: bool = True) -> str:
    """The selection as SQL over a table with `kind` (and `owner_id`): literal values come
    from the caller's parameters, so the planner sees constants (no generic plan)."""
    parts = ["kind = %(kind)s" if kind is not None else "kind <> ALL(%(internal)s::text[])"]
    if owner and owner_id is not None:
        parts.append("owner_id = %(owner)s::uuid")
    return " AND ".join(parts)


def _params(*, owner_id: str | None, kind: str | None, **more: Any) -> dict[str, Any]:
    return {"owner": owner_id, "kind": kind, "internal": _internal_kinds(), **more}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean_s(duration_us: int, n: int) -> float | None:
    return round(duration_us / n / _US, 3) if n else None


def dashboard(
    conn: db.Connection, *, owner_id: str | None, kind: str | None, reader_id: str | None
) -> dict[str, Any]:
    """Seed 004's dashboard numbers for `owner_id`'s jobs (None = every owner) of `kind`
    (None = every public kind), and the workers `reader_id` sees (None = all): read from
    the rollup and the unfolded deltas, never by counting jobs."""
    where = _where(owner_id=owner_id, kind=kind)
    rows = db.fetch_all(
        conn,
        f"""
        SELECT status, sum(jobs) AS jobs, sum(duration_n) AS duration_n,
               sum(duration_us) AS duration_us
        FROM (SELECT status, jobs, duration_n, duration_us FROM analytics_totals
              WHERE {where}
              UNION ALL
              SELECT status, jobs, duration_n, duration_us FROM analytics_deltas
              WHERE {where}) AS parts
        GROUP BY status
        """,
        _params(owner_id=owner_id, kind=kind),
    )
    by_status = {r["status"]: r for r in rows}

    def count(status: str) -> int:
        row = by_status.get(status)
        return int(row["jobs"]) if row else 0

    total = sum(int(r["jobs"]) for r in rows)
    completed = count("completed")
    done = by_status.get("completed")
    average = _mean_s(int(done["duration_us"]), int(done["duration_n"])) if done else None
    seen = db.fetch_one(
        conn,
        f"""
        SELECT count(*) AS total, count(*) FILTER (WHERE {workers._ACTIVE_SQL}) AS active
        FROM workers
        WHERE {workers._VISIBLE_SQL} AND (%(kind)s::text IS NULL OR kind = %(kind)s)
        """,
        {"fresh": workers.ACTIVE_S, "reader": reader_id, "kind": kind},
    )
    assert seen is not None
    return {
        "total_tasks": total,
        "completed_tasks": completed,
        "failed_tasks": count("failed"),
        "pending_tasks": count("pending") + count("retrying"),
        "completion_rate": _rate(completed, total) or 0.0,
        "average_duration": average or 0.0,
        "workers_active": int(seen["active"]),
        "workers_total": int(seen["total"]),
        "running_tasks": count("running"),
        "cancelled_tasks": count("cancelled"),
        "retrying_tasks": count("retrying"),
    }


def _today(conn: db.Connection) -> dt.date:
    """The database's UTC day: the clock that stamps `completed_at`."""
    row = db.fetch_one(conn, "SELECT (now() AT TIME ZONE 'UTC')::date AS today")
    assert row is not None
    return row["today"]


def _daily(
    conn: db.Connection,
    *,
    owner_id: str | None,
    kind: str | None,
    days: int,
    today: dt.date | None,
    metrics: tuple[str, ...] = METRICS,
) -> list[dict[str, Any]]:
    """Per UTC day, oldest first, `days` days ending `today`: finished jobs' counts and the
    completed ones' summed duration, from the daily rollup (the all-owners one for an admin)
    plus the unfolded deltas, in one statement."""
    if days < 1:
        raise ValueError("days must be at least 1")
    end = today or _today(conn)
    start = end - dt.timedelta(days=days - 1)
    rollup = "analytics_daily_all" if owner_id is None else "analytics_daily"
    rolled = _where(owner_id=owner_id, kind=kind, owner=owner_id is not None)
    where = _where(owner_id=owner_id, kind=kind)
    # One JSON value (decoded by json.loads in C), not 365 rows of numerics made into
    # Decimals and dicts one cell at a time: that was most of a year's trends time.
    found = db.fetch_one(
        conn,
        f"""
        WITH parts AS (
            SELECT day, completed, failed, cancelled, duration_n, duration_us FROM {rollup}
            WHERE {rolled} AND day BETWEEN %(start)s AND %(end)s
            UNION ALL
            SELECT day,
                   CASE WHEN status = 'completed' THEN jobs ELSE 0 END,
                   CASE WHEN status = 'failed' THEN jobs ELSE 0 END,
                   CASE WHEN status = 'cancelled' THEN jobs ELSE 0 END,
                   duration_n, duration_us
            FROM analytics_deltas
            WHERE {where} AND day BETWEEN %(start)s AND %(end)s
        ), by_day AS (
            SELECT day, sum(completed) AS completed, sum(failed) AS failed,
                   sum(cancelled) AS cancelled, sum(duration_n) AS duration_n,
                   sum(duration_us) AS duration_us
            FROM parts GROUP BY day
        )
        SELECT coalesce(json_object_agg(day, json_build_array(
                   completed, failed, cancelled, duration_n, duration_us)), '{{}}') AS days
        FROM by_day
        """,
        _params(owner_id=owner_id, kind=kind, start=start, end=end),
    )
    assert found is not None
    by_day: dict[str, list[int]] = found["days"]
    out = []
    for i in range(days):
        date = (start + dt.timedelta(days=i)).isoformat()
        completed, failed, cancelled, dn, dus = by_day.get(date, (0, 0, 0, 0, 0))
        finished = completed + failed + cancelled
        row: dict[str, Any] = {
            "date": date,
            "finished": finished,
            "completed": completed,
            "failed": failed,
            "cancelled": cancelled,
        }
        # Only the metrics asked for: rounding floats is a good part of a year's Python time.
        if "completion_rate" in metrics:
            row["completion_rate"] = _rate(completed, finished)
        if "error_rate" in metrics:
            row["error_rate"] = _rate(failed, finished)
        if "avg_duration" in metrics:
            row["avg_duration"] = _mean_s(dus, dn)
        out.append(row)
    return out


def trends(
    conn: db.Connection,
    *,
    owner_id: str | None,
    kind: str | None,
    days: int,
    metric: str,
    today: dt.date | None = None,
) -> list[dict[str, Any]]:
    """One `metric` per UTC day for the last `days` days ending `today` (the database's UTC
    day by default), oldest first, with the day's counts beside it; None on a day with
    nothing to measure. ValueError for a metric not in METRICS."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    return [
        {
            "date": row["date"],
            "metric": metric,
            "value": row[metric],
            "finished": row["finished"],
            "completed": row["completed"],
            "failed": row["failed"],
            "cancelled": row["cancelled"],
        }
        for row in _daily(
            conn, owner_id=owner_id, kind=kind, days=days, today=today, metrics=(metric,)
        )
    ]


def export_rows(
    conn: db.Connection,
    *,
    owner_id: str | None,
    kind: str | None,
    days: int,
    today: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Every metric per UTC day (the CSV export, columns EXPORT_COLUMNS; the JSON export is
    the dashboard plus these rows)."""
    rows = _daily(conn, owner_id=owner_id, kind=kind, days=days, today=today)
    return [{column: row[column] for column in EXPORT_COLUMNS} for row in rows]


# --- compaction ----------------------------------------------------------------------------


_DAILY_SUMS = """coalesce(sum(jobs) FILTER (WHERE status = 'completed'), 0),
                 coalesce(sum(jobs) FILTER (WHERE status = 'failed'), 0),
                 coalesce(sum(jobs) FILTER (WHERE status = 'cancelled'), 0),
                 sum(duration_n), sum(duration_us)"""
_DAILY_ADD = """completed = r.completed + EXCLUDED.completed, failed = r.failed + EXCLUDED.failed,
                cancelled = r.cancelled + EXCLUDED.cancelled,
                duration_n = r.duration_n + EXCLUDED.duration_n,
                duration_us = r.duration_us + EXCLUDED.duration_us"""
_DAILY_EMPTY = "completed = 0 AND failed = 0 AND cancelled = 0 AND duration_n = 0"

# One statement: take a batch of deltas (SKIP LOCKED: rows another compactor took are left
# to it), sum them per key and add the sums to the three rollups, each upsert in key order.
# Every compactor runs this same plan, so all take their row locks table by table in one
# order: two compactors on the same keys wait for each other, never deadlock.
_FOLD = f"""
WITH picked AS (
    DELETE FROM analytics_deltas
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM analytics_deltas
                           LIMIT %(limit)s FOR UPDATE SKIP LOCKED))
    RETURNING owner_id, kind, status, day, jobs, duration_n, duration_us
), summed AS MATERIALIZED (
    SELECT owner_id, kind, status, day, count(*) AS n, sum(jobs) AS jobs,
           sum(duration_n) AS duration_n, sum(duration_us) AS duration_us
    FROM picked GROUP BY 1, 2, 3, 4
), totals AS (
    INSERT INTO analytics_totals AS r
    SELECT owner_id, kind, status, sum(jobs), sum(duration_n), sum(duration_us)
    FROM summed GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (owner_id, kind, status) DO UPDATE SET jobs = r.jobs + EXCLUDED.jobs,
        duration_n = r.duration_n + EXCLUDED.duration_n,
        duration_us = r.duration_us + EXCLUDED.duration_us
), daily AS (
    INSERT INTO analytics_daily AS r
    SELECT owner_id, kind, day, {_DAILY_SUMS}
    FROM summed WHERE day IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (owner_id, kind, day) DO UPDATE SET {_DAILY_ADD}
), daily_all AS (
    INSERT INTO analytics_daily_all AS r
    SELECT day, kind, {_DAILY_SUMS}
    FROM summed WHERE day IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (day, kind) DO UPDATE SET {_DAILY_ADD}
)
SELECT coalesce(sum(n), 0) AS n FROM summed
"""

# Keys whose jobs are all gone (deleted jobs, a deleted user's) leave no empty rows; found
# through partial indexes that are empty otherwise. SKIP LOCKED: a row another compactor is
# adding to is not waited for (it is no longer empty, or the next round takes it).
_PRUNE = f"""
DELETE FROM analytics_totals WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM analytics_totals WHERE jobs = 0 AND duration_n = 0
    FOR UPDATE SKIP LOCKED));
DELETE FROM analytics_daily WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM analytics_daily WHERE {_DAILY_EMPTY} FOR UPDATE SKIP LOCKED));
DELETE FROM analytics_daily_all WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM analytics_daily_all WHERE {_DAILY_EMPTY} FOR UPDATE SKIP LOCKED))
"""


def compact(conn: db.Connection, *, limit: int = COMPACT_BATCH) -> int:
    """Fold up to `limit` deltas into the rollups in the caller's transaction; returns how
    many were folded. Any number of callers at once never fold a delta twice and never
    deadlock (see _FOLD). Readers see the move at commit, all at once, so their sums do
    not change."""
    row = db.fetch_one(conn, _FOLD, {"limit": limit})
    assert row is not None
    folded = int(row["n"])
    if folded:
        db.execute(conn, _PRUNE)
    return folded


def compact_all(
    database: db.Database,
    *,
    batch: int = COMPACT_BATCH,
    max_batches: int = COMPACT_MAX_BATCHES,
) -> int:
    """Fold deltas one short transaction per `batch` until none is left or `max_batches`
    ran (what housekeeping calls); returns how many were folded."""
    folded = 0
    for _ in range(max_batches):
        with database.transaction() as conn:
            n = compact(conn, limit=batch)
        folded += n
        if n < batch:
            break
    return folded
