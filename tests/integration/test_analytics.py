"""Analytics (jobgate.analytics) against the real PostgreSQL: the dashboard, trends and export
numbers read from the rollups and deltas always equal what counting the `jobs` rows directly
says, through every kind of change, before and after compaction, with compactors running
at once while jobs keep changing."""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from typing import Any

import pytest

from jobgate import analytics, workers
from jobgate import db as sql
from jobgate.jobs import attempts, submission
from tests.factories.jobs import make_job, set_job_columns
from tests.factories.users import make_user

KINDS = ("cache", "convert", "task")  # public kinds used here; `webhook` is the internal one
UTC = dt.UTC


def direct_dashboard(conn: sql.Connection, owner_id: Any, kind: str | None) -> dict[str, Any]:
    """The dashboard's job numbers counted straight from `jobs`."""
    row = sql.fetch_one(
        conn,
        """
        SELECT count(*) AS total,
               count(*) FILTER (WHERE status = 'completed') AS completed,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status IN ('pending', 'retrying')) AS pending,
               count(*) FILTER (WHERE status = 'running') AS running,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               count(*) FILTER (WHERE status = 'retrying') AS retrying,
               round(avg(extract(epoch FROM completed_at - started_at))
                     FILTER (WHERE status = 'completed'), 3) AS avg_s
        FROM jobs
        WHERE (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
          AND (CASE WHEN %(kind)s::text IS NULL THEN kind <> 'webhook' ELSE kind = %(kind)s END)
        """,
        {"owner": None if owner_id is None else str(owner_id), "kind": kind},
    )
    total = row["total"]
    return {
        "total_tasks": total,
        "completed_tasks": row["completed"],
        "failed_tasks": row["failed"],
        "pending_tasks": row["pending"],
        "completion_rate": round(row["completed"] / total, 4) if total else 0.0,
        "average_duration": float(row["avg_s"]) if row["avg_s"] is not None else 0.0,
        "running_tasks": row["running"],
        "cancelled_tasks": row["cancelled"],
        "retrying_tasks": row["retrying"],
    }


def direct_days(
    conn: sql.Connection, owner_id: Any, kind: str | None, start: dt.date, end: dt.date
) -> dict[str, dict[str, Any]]:
    """Finished jobs per UTC day of completed_at, counted straight from `jobs`."""
    rows = sql.fetch_all(
        conn,
        """
        SELECT (completed_at AT TIME ZONE 'UTC')::date AS day,
               count(*) FILTER (WHERE status = 'completed') AS completed,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               round(avg(extract(epoch FROM completed_at - started_at))
                     FILTER (WHERE status = 'completed'), 3) AS avg_s
        FROM jobs
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND (completed_at AT TIME ZONE 'UTC')::date BETWEEN %(start)s AND %(end)s
          AND (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)
          AND (CASE WHEN %(kind)s::text IS NULL THEN kind <> 'webhook' ELSE kind = %(kind)s END)
        GROUP BY 1
        """,
        {
            "owner": None if owner_id is None else str(owner_id),
            "kind": kind,
            "start": start,
            "end": end,
        },
    )
    out = {}
    for r in rows:
        finished = r["completed"] + r["failed"] + r["cancelled"]
        out[r["day"].isoformat()] = {
            "finished": finished,
            "completed": r["completed"],
            "failed": r["failed"],
            "cancelled": r["cancelled"],
            "completion_rate": round(r["completed"] / finished, 4),
            "error_rate": round(r["failed"] / finished, 4),
            "avg_duration": float(r["avg_s"]) if r["avg_s"] is not None else None,
        }
    return out


EMPTY_DAY = {
    "finished": 0,
    "completed": 0,
    "failed": 0,
    "cancelled": 0,
    "completion_rate": None,
    "error_rate": None,
    "avg_duration": None,
}


def check_all(database, owners: list[Any], today: dt.date, days: int = 10) -> None:
    """Every selection (admin and each owner; every public kind, each kind, the internal
    one by name) answers what the direct counts say."""
    start = today - dt.timedelta(days=days - 1)
    with database.transaction() as conn:
        for owner in (None, *owners):
            for kind in (None, *KINDS, "webhook"):
                got = analytics.dashboard(conn, owner_id=owner, kind=kind, reader_id=None)
                want = direct_dashboard(conn, owner, kind)
                assert {k: got[k] for k in want} == want, (owner, kind)
                rows = analytics.export_rows(
                    conn, owner_id=owner, kind=kind, days=days, today=today
                )
                direct = direct_days(conn, owner, kind, start, today)
                assert [r["date"] for r in rows] == [
                    (start + dt.timedelta(days=i)).isoformat() for i in range(days)
                ]
                for r in rows:
                    assert {k: v for k, v in r.items() if k != "date"} == direct.get(
                        r["date"], EMPTY_DAY
                    ), (owner, kind, r["date"])


def deltas(database) -> int:
    with database.transaction() as conn:
        return sql.fetch_one(conn, "SELECT count(*) AS n FROM analytics_deltas")["n"]


def today_utc(database) -> dt.date:
    with database.transaction() as conn:
        return sql.fetch_one(conn, "SELECT (now() AT TIME ZONE 'UTC')::date AS d")["d"]


def run_attempt(database, job: dict[str, Any], outcome: str, worker: str = "w-1") -> None:
    """Claim the job as a worker does and end the attempt with `outcome` (a terminal status
    or `retrying`)."""
    with database.transaction() as conn:
        claimed = attempts.claim_job(conn, job_id=str(job["id"]), worker_id=worker, lease_s=60)
        assert claimed is not None
        if outcome == "retrying":
            assert attempts.schedule_retry(
                conn, job=claimed, worker_id=worker, error="boom", delay_s=0, app_id="test"
            )
        else:
            assert attempts.finish_job(
                conn, job_id=str(job["id"]), worker_id=worker, status=outcome
            )


@pytest.fixture
def owners(db) -> list[Any]:
    return [make_user(db)["id"], make_user(db)["id"]]


def test_dashboard_and_days_equal_direct_counts_through_every_change(db, owners) -> None:
    a, b = owners
    jobs = [
        make_job(db, owner_id=owner, kind=kind)
        for owner in (a, b)
        for kind in (*KINDS, "webhook")
        for _ in range(4)
    ]
    today = today_utc(db)
    check_all(db, owners, today)
    assert deltas(db) > 0  # the inserts are still unfolded: the reads summed them

    rng = random.Random(7)
    rng.shuffle(jobs)
    # A retry's whole path: running -> retrying -> running -> completed.
    for job in jobs[:6]:
        run_attempt(db, job, "retrying")
        set_job_columns(db, job, next_attempt_at=dt.datetime.now(UTC))
        run_attempt(db, job, "completed")
    for job in jobs[6:10]:
        run_attempt(db, job, "failed")
    with db.transaction() as conn:
        for job in jobs[10:13]:
            assert submission.request_cancel(conn, job_id=str(job["id"]))
        attempts.claim_job(conn, job_id=str(jobs[13]["id"]), worker_id="w-2", lease_s=60)
        run = attempts.claim_job(conn, job_id=str(jobs[14]["id"]), worker_id="w-2", lease_s=60)
        attempts.schedule_retry(
            conn, job=run, worker_id="w-2", error="x", delay_s=60, app_id="test"
        )
    check_all(db, owners, today)

    # Compaction in the middle changes no number, and leaves no delta behind.
    with db.transaction() as conn:
        before = [
            analytics.dashboard(conn, owner_id=o, kind=k, reader_id=None)
            for o in (None, a, b)
            for k in (None, "cache")
        ]
    assert analytics.compact_all(db) > 0
    assert deltas(db) == 0
    with db.transaction() as conn:
        after = [
            analytics.dashboard(conn, owner_id=o, kind=k, reader_id=None)
            for o in (None, a, b)
            for k in (None, "cache")
        ]
    assert after == before
    check_all(db, owners, today)

    # Durations and days set by hand, a reopened job leaving its day, deletions, an owner
    # and a kind changed under a job: still equal.
    yesterday = dt.datetime.combine(today, dt.time(), UTC) - dt.timedelta(hours=1)
    set_job_columns(db, jobs[0], started_at=yesterday - dt.timedelta(seconds=90.25))
    set_job_columns(db, jobs[1], completed_at=yesterday, started_at=yesterday)
    with db.transaction() as conn:
        submission.reopen_job(conn, job_id=str(jobs[6]["id"]))
        for job in (jobs[2], jobs[7], jobs[10], jobs[20]):
            assert submission.delete_job(conn, job_id=str(job["id"]))
        sql.execute(
            conn, "UPDATE jobs SET owner_id = %s WHERE id = %s", (str(b), str(jobs[3]["id"]))
        )
        sql.execute(conn, "UPDATE jobs SET kind = 'task' WHERE id = %s", (str(jobs[4]["id"]),))
    check_all(db, owners, today)
    analytics.compact_all(db)
    check_all(db, owners, today)


def test_changes_that_move_no_number_write_no_delta(db, owners) -> None:
    job = make_job(db, owner_id=owners[0], kind="task")
    run_attempt(db, job, "completed")
    analytics.compact_all(db)
    set_job_columns(db, job, items_done=3, bytes_done=10, error="x")  # a progress tick
    set_job_columns(db, job, status="completed")  # the same status again
    assert deltas(db) == 0
    set_job_columns(db, job, completed_at=dt.datetime.now(UTC) + dt.timedelta(seconds=5))
    assert deltas(db) == 2  # the duration moved: -1 old, +1 new


def test_rollup_rows_of_vanished_jobs_are_removed(db, owners) -> None:
    job = make_job(db, owner_id=owners[0], kind="cache")
    run_attempt(db, job, "completed")
    analytics.compact_all(db)
    with db.transaction() as conn:
        submission.delete_job(conn, job_id=str(job["id"]))
    analytics.compact_all(db)
    with db.transaction() as conn:
        for table in ("analytics_totals", "analytics_daily", "analytics_daily_all"):
            assert sql.fetch_one(conn, f"SELECT count(*) AS n FROM {table}")["n"] == 0, table


def test_trends_by_utc_day_of_completion(db, owners) -> None:
    a, b = owners
    today = dt.date(2031, 3, 10)
    midnight = dt.datetime(2031, 3, 9, tzinfo=UTC)  # the start of yesterday

    def finished(owner, kind, status, completed_at, seconds=10.0) -> None:
        job = make_job(db, owner_id=owner, kind=kind)
        set_job_columns(
            db,
            job,
            status=status,
            started_at=completed_at - dt.timedelta(seconds=seconds),
            completed_at=completed_at,
        )

    last_us = midnight - dt.timedelta(microseconds=1)  # day before yesterday, its last instant
    finished(a, "cache", "completed", last_us, 4.0)
    finished(a, "cache", "failed", last_us)
    finished(a, "cache", "completed", midnight, 2.0)  # yesterday's first instant
    finished(a, "task", "completed", midnight + dt.timedelta(hours=23), 1.0)
    finished(a, "task", "cancelled", midnight + dt.timedelta(hours=5))
    finished(b, "cache", "failed", midnight + dt.timedelta(hours=1))
    finished(a, "webhook", "failed", midnight + dt.timedelta(hours=1))  # internal: not counted
    finished(a, "cache", "completed", midnight - dt.timedelta(days=5))  # before the window
    finished(a, "cache", "completed", midnight + dt.timedelta(days=2))  # after it
    make_job(db, owner_id=a, kind="cache")  # pending: not finished

    with db.transaction() as conn:
        rate = analytics.trends(
            conn, owner_id=None, kind=None, days=3, metric="completion_rate", today=today
        )
        errors = analytics.trends(
            conn, owner_id=str(a), kind=None, days=3, metric="error_rate", today=today
        )
        took = analytics.trends(
            conn, owner_id=str(a), kind="cache", days=3, metric="avg_duration", today=today
        )
        with pytest.raises(ValueError):
            analytics.trends(conn, owner_id=None, kind=None, days=3, metric="p99", today=today)
        exported = analytics.export_rows(conn, owner_id=None, kind=None, days=3, today=today)
    assert rate == [
        {"date": "2031-03-08", "metric": "completion_rate", "value": 0.5, "finished": 2,
         "completed": 1, "failed": 1, "cancelled": 0},
        {"date": "2031-03-09", "metric": "completion_rate", "value": 0.5, "finished": 4,
         "completed": 2, "failed": 1, "cancelled": 1},
        {"date": "2031-03-10", "metric": "completion_rate", "value": None, "finished": 0,
         "completed": 0, "failed": 0, "cancelled": 0},
    ]  # fmt: skip
    assert [(r["date"], r["value"], r["finished"]) for r in errors] == [
        ("2031-03-08", 0.5, 2),
        ("2031-03-09", 0.0, 3),
        ("2031-03-10", None, 0),
    ]
    assert [r["value"] for r in took] == [4.0, 2.0, None]
    assert all(tuple(r) == analytics.EXPORT_COLUMNS for r in exported)
    assert [(r["finished"], r["completion_rate"], r["error_rate"], r["avg_duration"])
            for r in exported] == [(2, 0.5, 0.5, 4.0), (4, 0.5, 0.25, 1.5),
                                   (0, None, None, None)]  # fmt: skip
    check_all(db, owners, today, days=7)
    analytics.compact_all(db)
    check_all(db, owners, today, days=7)


def test_workers_counted_as_their_reader_sees_them(db, owners) -> None:
    a, b = owners
    with db.transaction() as conn:
        for wid, kind, status in (
            ("task-1", "task", "busy"),
            ("task-2", "task", "idle"),
            ("task-3", "task", "stopped"),
            ("cache-1", "cache", "idle"),
            ("cache-old", "cache", "idle"),
        ):
            workers.heartbeat(
                conn, worker_id=wid, kind=kind, hostname="h", pid=1, status=status,
                current_job_id=None,
            )  # fmt: skip
        sql.execute(
            conn,
            "UPDATE workers SET last_heartbeat_at = now() - interval '5 minutes'"
            " WHERE id = 'cache-old'",
        )
        for wid, owner, status in (("ext-a", a, "active"), ("ext-a2", a, "inactive"),
                                   ("ext-b", b, "active")):  # fmt: skip
            assert workers.external_heartbeat(
                conn, worker_id=wid, owner_id=str(owner), status=status, current_load=0,
                max_capacity=1,
            )  # fmt: skip

        def seen(reader, kind=None) -> tuple[int, int]:
            d = analytics.dashboard(conn, owner_id=None, kind=kind, reader_id=reader)
            return d["workers_active"], d["workers_total"]

        assert seen(None) == (5, 8)  # an admin: all
        assert seen(str(a)) == (4, 7)  # Jobgate's 5 and a's own 2
        assert seen(str(b)) == (4, 6)
        assert seen(str(uuid.uuid4())) == (3, 5)  # nobody's external worker
        assert seen(str(a), "task") == (2, 3)
        assert seen(str(a), "external") == (1, 2)
        assert seen(None, "external") == (2, 3)


def test_concurrent_compactors_fold_each_delta_once(db, owners) -> None:
    """Compactors in several threads, small batches, while jobs keep changing: no error (no
    deadlock), no delta lost or folded twice."""
    a, b = owners
    with db.transaction() as conn:
        sql.execute(
            conn,
            """
            INSERT INTO jobs (id, kind, owner_id, status)
            SELECT gen_random_uuid(), (ARRAY['cache', 'convert', 'task', 'webhook'])[1 + i %% 4],
                   CASE WHEN i %% 3 = 0 THEN %s::uuid ELSE %s::uuid END, 'pending'
            FROM generate_series(1, 400) AS i
            """,
            (str(a), str(b)),
        )  # one statement: the insert trigger writes one delta per key
    with db.transaction() as conn:
        ids = [str(r["id"]) for r in sql.fetch_all(conn, "SELECT id FROM jobs ORDER BY id")]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        rng = random.Random(1)
        try:
            for job_id in ids:
                with db.transaction() as conn:
                    status = rng.choice(["running", "completed", "failed", "cancelled"])
                    sql.execute(
                        conn,
                        """
                        UPDATE jobs SET status = %s, started_at = now() - interval '3 s',
                               completed_at = now() - make_interval(days => %s)
                        WHERE id = %s
                        """,
                        (status, rng.randrange(3), job_id),
                    )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            stop.set()

    folded: list[int] = []

    def compactor() -> None:
        try:
            while not stop.is_set():
                with db.transaction() as conn:
                    folded.append(analytics.compact(conn, limit=7))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=compactor) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sum(folded) > 0
    analytics.compact_all(db, batch=50)
    assert deltas(db) == 0
    check_all(db, owners, today_utc(db), days=4)


def test_truncating_jobs_empties_the_rollups(db, owners) -> None:
    run_attempt(db, make_job(db, owner_id=owners[0], kind="task"), "completed")
    analytics.compact_all(db)
    make_job(db, owner_id=owners[0], kind="task")
    with db.transaction() as conn:
        sql.execute(conn, "TRUNCATE jobs CASCADE")
        got = analytics.dashboard(conn, owner_id=None, kind=None, reader_id=None)
        assert got["total_tasks"] == 0 and got["completed_tasks"] == 0
