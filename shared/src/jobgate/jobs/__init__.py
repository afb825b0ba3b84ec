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

import base64
import binascii
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

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


# A `created_since` listing counts its matches up to this many (an index-only scan of at most
# COUNT_CAP entries); past it the total is unknown (`JobPage.total` None). Listings without
# it are counted from the analytics rollups, exactly and at any size.
COUNT_CAP = 1_000
NULLABLE_SORTS = frozenset({"started_at", "completed_at"})
TIMESTAMP_SORTS = frozenset({"created_at", "updated_at", "started_at", "completed_at"})


class Cursor(NamedTuple):
    """A keyset position in a listing: after the row whose `sort` column is `value` (None
    for a NULL) and whose id is `id`, in `order`."""

    sort: str
    order: str
    value: Any
    id: str


def encode_cursor(sort: str, order: str, row: Job) -> str:
    """The opaque `cursor` that continues a listing after `row` (base64url JSON, unpadded;
    timestamps keep their microseconds)."""
    value = row[sort]
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    raw = json.dumps([sort, order, value, str(row["id"])], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The position `encode_cursor` wrote; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        sort, order, value, job_id = json.loads(raw)
        job_id = str(uuid.UUID(job_id))
    except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
        raise ValueError("malformed cursor") from exc
    if sort not in SORTABLE or order not in ("asc", "desc"):
        raise ValueError("malformed cursor")
    if value is None:
        if sort not in NULLABLE_SORTS:
            raise ValueError("malformed cursor")
    elif sort in TIMESTAMP_SORTS:
        if not isinstance(value, str):
            raise ValueError("malformed cursor")
        value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            raise ValueError("malformed cursor")
    elif sort == "priority":
        if type(value) is not int:
            raise ValueError("malformed cursor")
    elif not isinstance(value, str):
        raise ValueError("malformed cursor")
    return Cursor(sort, order, value, job_id)


@dataclasses.dataclass
class JobPage:
    """A page of a listing: its rows, the total (None when a `created_since` listing matches
    more than COUNT_CAP jobs: then at least `total_min`), and whether more rows follow."""

    rows: list[Job]
    total: int | None
    total_min: int
    has_more: bool


def _filters(
    *,
    owner_id: str | None,
    kind: str | None,
    status: str | None,
    exclude_kinds: Sequence[str],
) -> tuple[list[str], list[Any]]:
    where, params = ["true"], []
    for column, value in (("owner_id", owner_id), ("kind", kind), ("status", status)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if exclude_kinds:
        where.append("kind <> ALL(%s)")
        params.append(list(exclude_kinds))
    return where, params


def _after(cursor: Cursor) -> tuple[str, list[Any]]:
    """The keyset predicate "after `cursor`" for ORDER BY col ORDER, id ORDER (PostgreSQL's
    default NULL placement: first when descending, last when ascending). A row comparison,
    so the (col, id) index serves it as a range."""
    col, op = cursor.sort, ("<" if cursor.order == "desc" else ">")
    if cursor.value is None:  # still among the NULLs
        if cursor.order == "desc":  # NULLs first, then every non-NULL value
            return f"(({col} IS NULL AND id {op} %s) OR {col} IS NOT NULL)", [cursor.id]
        return f"({col} IS NULL AND id {op} %s)", [cursor.id]
    if cursor.order == "asc" and cursor.sort in NULLABLE_SORTS:  # NULLs come last
        return f"(({col}, id) {op} (%s, %s) OR {col} IS NULL)", [cursor.value, cursor.id]
    return f"({col}, id) {op} (%s, %s)", [cursor.value, cursor.id]


def count_jobs(
    conn: db.Connection,
    *,
    owner_id: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    exclude_kinds: Sequence[str] = (),
) -> int:
    """How many jobs match, exactly, from the analytics rollup plus its unfolded deltas (one
    statement, one snapshot: equal to a COUNT over `jobs`, migration 0011) instead of
    counting up to a million rows."""
    where, params = _filters(
        owner_id=owner_id, kind=kind, status=status, exclude_kinds=exclude_kinds
    )
    clause = " AND ".join(where)
    row = db.fetch_one(
        conn,
        f"""
        SELECT coalesce(sum(jobs), 0) AS n FROM (
            SELECT jobs FROM analytics_totals WHERE {clause}
            UNION ALL
            SELECT jobs FROM analytics_deltas WHERE {clause}) AS parts
        """,
        [*params, *params],
    )
    assert row is not None
    return int(row["n"])


def list_jobs_page(
    conn: db.Connection,
    *,
    owner_id: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    created_since: Any = None,
    limit: int = 50,
    offset: int = 0,
    cursor: Cursor | None = None,
    sort: str = "created_at",
    order: str = "desc",
    exclude_kinds: Sequence[str] = (),
    count_cap: int | None = COUNT_CAP,
) -> JobPage:
    """A page of jobs (`offset` rows skipped, or those after `cursor`, whose sort and order
    win), ordered by `sort` then `id` in `order`, leaving out the jobs of `exclude_kinds`
    (the canonical list hides internal kinds unless asked by kind), and the total matching
    the filters: from the rollups, or with `created_since` by counting at most `count_cap`
    matches (None: all of them)."""
    if cursor is not None:
        sort, order = cursor.sort, cursor.order
    if sort not in SORTABLE or order not in ("asc", "desc"):
        raise ValueError("unsupported sort")
    where, params = _filters(
        owner_id=owner_id, kind=kind, status=status, exclude_kinds=exclude_kinds
    )
    if created_since is None:
        total: int | None = count_jobs(
            conn, owner_id=owner_id, kind=kind, status=status, exclude_kinds=exclude_kinds
        )
        total_min = total
    else:
        where.append("created_at >= %s")
        params.append(created_since)
        clause = " AND ".join(where)
        if count_cap is None:
            sql, args = f"SELECT count(*) AS n FROM jobs WHERE {clause}", params
        else:
            sql = f"SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE {clause} LIMIT %s) AS m"
            args = [*params, count_cap + 1]
        row = db.fetch_one(conn, sql, args)
        assert row is not None
        total_min = int(row["n"])
        total = None if count_cap is not None and total_min > count_cap else total_min
    page_where, page_params = list(where), list(params)
    if cursor is not None:
        after, after_params = _after(cursor)
        page_where.append(after)
        page_params.extend(after_params)
        offset = 0
    rows = db.fetch_all(
        conn,
        f"SELECT * FROM jobs WHERE {' AND '.join(page_where)}"
        f" ORDER BY {sort} {order}, id {order} LIMIT %s OFFSET %s",
        [*page_params, limit + 1, offset],
    )
    has_more = len(rows) > limit
    return JobPage(rows[:limit], total, total_min, has_more)


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
    """A page of jobs and the exact total count matching the filters (`list_jobs_page`
    without a cap on the count), leaving out the jobs of `exclude_kinds`."""
    page = list_jobs_page(
        conn,
        owner_id=owner_id,
        kind=kind,
        status=status,
        created_since=created_since,
        limit=limit,
        offset=offset,
        sort=sort,
        order=order,
        exclude_kinds=exclude_kinds,
        count_cap=None,
    )
    assert page.total is not None
    return page.rows, page.total


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
