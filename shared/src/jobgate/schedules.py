"""The `schedules` table: recurring jobs of any kind, and the scheduler's one transition.

A schedule runs every `interval_minutes` (at least 5) or on a cron expression (five fields,
UTC); exactly one of the two. A new enabled schedule is due at once. `fire_due` is the
scheduler's transition: it claims due rows with `FOR UPDATE SKIP LOCKED`, writes each run's
job and outbox row in the caller's transaction, and moves `next_run_at` to the first slot
strictly after now, so replicas never fire one run twice and a run missed while no
scheduler ran fires once, not once per missed slot.

Run counters are not stored: `total_runs`, `successful_runs` and `failed_runs` are counted
from the jobs of the schedule (`jobs.schedule_id`) by status whenever a schedule is read,
so they follow retries and late outcomes and cannot drift.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from cronsim import CronSim, CronSimError
from marshmallow import ValidationError

from jobgate import db, jobs, kinds, outbox
from jobgate.errors import InvalidRequest
from jobgate.jobs import job_items, job_logs, submission

log = logging.getLogger(__name__)

Schedule = dict[str, Any]

MIN_INTERVAL_MINUTES = 5
MAX_INTERVAL_MINUTES = 366 * 24 * 60
MAX_NAME_LENGTH = 200
MAX_CRON_LENGTH = 200
CRON_FIELDS = 5  # minute hour day-of-month month day-of-week (no seconds field)
CRON_TICKS_CHECKED = 64  # consecutive runs checked for the minimum gap
MIN_GAP = dt.timedelta(minutes=MIN_INTERVAL_MINUTES)
FIRE_BATCH = 100
SCHEDULER_KIND = "scheduler"  # the scheduler process's kind in the `workers` table
UPDATABLE = ("name", "kind", "params", "options", "interval_minutes", "cron", "enabled")

# A schedule with its run counters, counted from its jobs.
_SELECT = """
    SELECT s.*, r.total_runs, r.successful_runs, r.failed_runs
    FROM schedules s
    CROSS JOIN LATERAL (
        SELECT count(*) AS total_runs,
               count(*) FILTER (WHERE j.status = 'completed') AS successful_runs,
               count(*) FILTER (WHERE j.status = 'failed') AS failed_runs
        FROM jobs j WHERE j.schedule_id = s.id
    ) r
"""


@dataclasses.dataclass(frozen=True)
class Run:
    """One run `fire_due` made: its job, and the outbox row to publish after commit (None
    when the run failed before it could be queued: its job is already `failed`)."""

    schedule_id: str
    job: jobs.Job
    outbox_id: int | None


# --- timing ----------------------------------------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


def cron_after(expr: str, after: dt.datetime) -> dt.datetime:
    """The first tick of `expr` (UTC) strictly after `after`; StopIteration if none comes
    within 50 years."""
    return next(CronSim(expr, _utc(after)))


def check_cron(expr: Any, *, now: dt.datetime | None = None) -> None:
    """InvalidRequest unless `expr` is a five-field cron expression whose runs are at least
    five minutes apart (the same floor as intervals)."""
    if not isinstance(expr, str) or not expr.strip() or len(expr) > MAX_CRON_LENGTH:
        raise InvalidRequest(
            f"'cron' must be a cron expression of at most {MAX_CRON_LENGTH} characters",
            details={"cron": str(expr)[:MAX_CRON_LENGTH]},
        )
    if len(expr.split()) != CRON_FIELDS:
        raise InvalidRequest(
            f"Invalid cron expression '{expr}': give five fields"
            " (minute hour day-of-month month day-of-week, UTC)",
            details={"cron": expr},
        )
    start = _utc(now or dt.datetime.now(dt.UTC))
    try:
        ticks = list(itertools.islice(CronSim(expr, start), CRON_TICKS_CHECKED))
    except (CronSimError, ValueError) as exc:
        raise InvalidRequest(
            f"Invalid cron expression '{expr}': {exc}", details={"cron": expr}
        ) from None
    if not ticks:
        raise InvalidRequest(f"Cron expression '{expr}' never runs", details={"cron": expr})
    if any(later - earlier < MIN_GAP for earlier, later in itertools.pairwise(ticks)):
        raise InvalidRequest(
            f"Cron expression '{expr}' runs more often than every {MIN_INTERVAL_MINUTES} minutes",
            details={"cron": expr},
        )


def check_timing(*, interval_minutes: Any, cron: Any) -> None:
    """InvalidRequest unless exactly one of an interval (5 minutes to a year) and a cron
    expression is given."""
    if (interval_minutes is None) == (cron is None):
        raise InvalidRequest(
            "Give exactly one of 'interval_minutes' and 'cron'",
            details={"interval_minutes": interval_minutes, "cron": cron},
        )
    if cron is not None:
        check_cron(cron)
        return
    if (
        isinstance(interval_minutes, bool)
        or not isinstance(interval_minutes, int)
        or not MIN_INTERVAL_MINUTES <= interval_minutes <= MAX_INTERVAL_MINUTES
    ):
        raise InvalidRequest(
            f"'interval_minutes' must be a whole number from {MIN_INTERVAL_MINUTES}"
            f" to {MAX_INTERVAL_MINUTES}",
            details={"interval_minutes": interval_minutes},
        )


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(
            f"'name' must be 1-{MAX_NAME_LENGTH} characters", details={"name": str(name)[:300]}
        )


def next_slot(schedule: Mapping[str, Any], *, after: dt.datetime) -> dt.datetime:
    """The first run time strictly after `after`. An interval keeps its cadence (the due
    time plus whole intervals), so however many slots were missed, the run fires once and
    the next one is back on the beat; cron takes its next tick."""
    if schedule["cron"] is not None:
        return cron_after(schedule["cron"], after)
    step = dt.timedelta(minutes=schedule["interval_minutes"])
    due = schedule["next_run_at"] or after
    if due > after:
        return due
    return due + ((after - due) // step + 1) * step


def retimed(schedule: Mapping[str, Any], *, now: dt.datetime) -> dt.datetime | None:
    """`next_run_at` after the timing or the enabled flag changed: none while disabled; now
    if it never ran; an interval counts from the last run (at once if that is long ago);
    cron waits for its next tick (a tick passed while disabled is not made up)."""
    if not schedule["enabled"]:
        return None
    if schedule["last_run_at"] is None:
        return now
    if schedule["cron"] is not None:
        return cron_after(schedule["cron"], now)
    return max(now, schedule["last_run_at"] + dt.timedelta(minutes=schedule["interval_minutes"]))


def _db_now(conn: db.Connection) -> dt.datetime:
    """The transaction's time in PostgreSQL: one clock for every replica and the gateway."""
    return db.fetch_one(conn, "SELECT now() AS now")["now"]


# --- reads and the owner's writes ------------------------------------------------------------


def create(
    conn: db.Connection,
    *,
    owner_id: str,
    name: str,
    kind: str,
    params: dict[str, Any],
    options: dict[str, Any],
    interval_minutes: int | None = None,
    cron: str | None = None,
    enabled: bool = True,
) -> Schedule:
    """Insert a schedule; `params` must already be the kind's contract's dump. Enabled, it is
    due at once."""
    check_name(name)
    check_timing(interval_minutes=interval_minutes, cron=cron)
    row = db.fetch_one(
        conn,
        """
        INSERT INTO schedules (owner_id, name, kind, params, options, interval_minutes, cron,
                               enabled, next_run_at)
        VALUES (%(owner)s, %(name)s, %(kind)s, %(params)s, %(options)s, %(interval)s, %(cron)s,
                %(enabled)s, CASE WHEN %(enabled)s THEN now() END)
        RETURNING id
        """,
        {
            "owner": owner_id,
            "name": name,
            "kind": kind,
            "params": params,
            "options": options,
            "interval": interval_minutes,
            "cron": cron,
            "enabled": enabled,
        },
    )
    return get(conn, schedule_id=str(row["id"]))


def get(conn: db.Connection, *, schedule_id: str) -> Schedule | None:
    """A schedule with its run counters."""
    return db.fetch_one(conn, _SELECT + " WHERE s.id = %s", (schedule_id,))


def list_schedules(
    conn: db.Connection,
    *,
    owner_id: str | None = None,
    enabled: bool | None = None,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Schedule], int]:
    """A page of schedules (newest first) with their counters, and the total matching."""
    where, params = ["true"], []
    for column, value in (("owner_id", owner_id), ("enabled", enabled), ("kind", kind)):
        if value is not None:
            where.append(f"s.{column} = %s")
            params.append(value)
    clause = " AND ".join(where)
    total = db.fetch_one(conn, f"SELECT count(*) AS n FROM schedules s WHERE {clause}", params)
    rows = db.fetch_all(
        conn,
        f"{_SELECT} WHERE {clause} ORDER BY s.created_at DESC, s.id LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )
    return rows, int(total["n"])


def counts(
    conn: db.Connection, *, owner_id: str | None = None, kind: str | None = None
) -> dict[str, int]:
    """How many schedules (of `kind`) there are and how many are enabled (seed 002's stats)."""
    row = db.fetch_one(
        conn,
        "SELECT count(*) AS total, count(*) FILTER (WHERE enabled) AS enabled FROM schedules"
        " WHERE (%(owner)s::uuid IS NULL OR owner_id = %(owner)s::uuid)"
        " AND (%(kind)s::text IS NULL OR kind = %(kind)s)",
        {"owner": owner_id, "kind": kind},
    )
    return {"total": int(row["total"]), "enabled": int(row["enabled"])}


def update(conn: db.Connection, *, schedule_id: str, changes: Mapping[str, Any]) -> Schedule | None:
    """Set the columns in `changes` (PATCH: the others stay). `params` must already be the
    kind's contract's dump. A new interval, cron expression or enabled flag re-times the
    schedule (`retimed`); other changes leave `next_run_at` alone."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    current = db.fetch_one(conn, "SELECT * FROM schedules WHERE id = %s FOR UPDATE", (schedule_id,))
    if current is None:
        return None
    new = {**current, **changes}
    check_name(new["name"])
    check_timing(interval_minutes=new["interval_minutes"], cron=new["cron"])
    if any(new[k] != current[k] for k in ("interval_minutes", "cron", "enabled")):
        new["next_run_at"] = retimed(new, now=_db_now(conn))
    db.execute(
        conn,
        """
        UPDATE schedules SET name = %(name)s, kind = %(kind)s, params = %(params)s,
               options = %(options)s, interval_minutes = %(interval_minutes)s, cron = %(cron)s,
               enabled = %(enabled)s, next_run_at = %(next_run_at)s, updated_at = now()
        WHERE id = %(id)s
        """,
        new,
    )
    return get(conn, schedule_id=schedule_id)


def toggle(conn: db.Connection, *, schedule_id: str) -> Schedule | None:
    """Enable a disabled schedule or disable an enabled one (re-timed as `update` does)."""
    row = db.fetch_one(
        conn, "SELECT enabled FROM schedules WHERE id = %s FOR UPDATE", (schedule_id,)
    )
    if row is None:
        return None
    return update(conn, schedule_id=schedule_id, changes={"enabled": not row["enabled"]})


def delete(conn: db.Connection, *, schedule_id: str) -> bool:
    """Remove a schedule; the jobs it made stay, no longer linked to it."""
    return db.execute(conn, "DELETE FROM schedules WHERE id = %s", (schedule_id,)) == 1


# --- the scheduler ---------------------------------------------------------------------------


@contextlib.contextmanager
def _savepoint(conn: db.Connection) -> Iterator[None]:
    """Undo one run's writes if it fails, keeping the rest of the batch's transaction."""
    db.execute(conn, "SAVEPOINT schedule_run")
    try:
        yield
    except BaseException:
        if not conn.closed:
            db.execute(conn, "ROLLBACK TO SAVEPOINT schedule_run")
        raise
    db.execute(conn, "RELEASE SAVEPOINT schedule_run")


def _failure_text(schedule: Schedule, exc: Exception) -> str:
    if isinstance(exc, InvalidRequest):
        return exc.message
    if isinstance(exc, ValidationError):
        return f"The schedule's params no longer fit the kind: {exc.messages}"
    if isinstance(exc, kinds.UnknownKind):
        return f"Unknown job kind '{schedule['kind']}'"
    log.error("schedule %s: run could not be made", schedule["id"], exc_info=exc)
    return "The run could not be prepared (internal error)"


def _job_fields(schedule: Schedule, settings: Any) -> dict[str, Any]:
    """What every run's job row carries: owner, options (or the platform defaults), a fresh
    request id for the logs, and the schedule it came from."""
    options = schedule["options"] or {}
    return {
        "job_id": jobs.new_job_id(),
        "kind": schedule["kind"],
        "owner_id": str(schedule["owner_id"]),
        "priority": options.get("priority", 5),
        "max_attempts": options.get("max_attempts") or settings.job_max_attempts,
        "backoff": options.get("backoff") or settings.job_backoff,
        "backoff_seconds": options.get("backoff_seconds", settings.job_backoff_seconds),
        "request_id": uuid.uuid4().hex,
        "schedule_id": str(schedule["id"]),
    }


def _run(conn: db.Connection, schedule: Schedule, *, settings: Any, app_id: str) -> Run | None:
    """Make one run's job as the gateway would (the kind's contract and plan), or, if its
    params no longer make a job, a `failed` job saying why: every run is on record (None
    only if even that cannot be written, say options a hand-made row got wrong)."""
    fields = _job_fields(schedule, settings)
    schedule_id, label = str(schedule["id"]), f"schedule '{schedule['name']}'"
    try:
        with _savepoint(conn):
            spec = kinds.get(schedule["kind"])
            if not spec.schedulable:
                raise InvalidRequest(f"Jobs of kind '{spec.name}' cannot be scheduled")
            params = spec.load_params(schedule["params"])
            plan = spec.make_plan(conn, settings, fields["owner_id"], params)
            job = submission.create_job(
                conn,
                params=plan.params,
                items_total=len(plan.items),
                bytes_total=plan.bytes_total,
                **fields,
            )
            if plan.items:
                job_items.insert_items(conn, job_id=fields["job_id"], items=plan.items)
            job_logs.add_log(conn, job_id=fields["job_id"], level="info", message=f"run of {label}")
            outbox_id = outbox.add_job_message(
                conn, job=job, app_id=app_id, request_id=fields["request_id"]
            )
        return Run(schedule_id, job, outbox_id)
    except (db.OperationalError, db.InterfaceError):
        raise  # the database is gone: the whole batch is retried next round
    except Exception as exc:  # noqa: BLE001 - one broken schedule must not stop the others
        reason = _failure_text(schedule, exc)
    try:
        with _savepoint(conn):
            submission.create_job(conn, params=schedule["params"], **fields)
            job = submission.fail_unqueued(conn, job_id=fields["job_id"], error=reason)
            job_logs.add_log(
                conn, job_id=fields["job_id"], level="error", message=f"{label}: {reason}"
            )
    except (db.OperationalError, db.InterfaceError):
        raise
    except Exception as exc:  # noqa: BLE001 - nor one whose failure cannot be recorded
        log.error("schedule %s: its failed run could not be recorded: %s", schedule_id, exc)
        return None
    return Run(schedule_id, job, None)


def _advance(conn: db.Connection, schedule: Schedule, *, now: dt.datetime) -> None:
    """Record the run and move to the first slot strictly after now. A cron expression that
    never runs again (only possible for rows not checked by `check_cron`) disables it."""
    try:
        following: dt.datetime | None = next_slot(schedule, after=now)
    except StopIteration:
        following = None
    db.execute(
        conn,
        "UPDATE schedules SET last_run_at = %s, next_run_at = %s, enabled = %s,"
        " updated_at = now() WHERE id = %s",
        (now, following, following is not None, schedule["id"]),
    )


def fire_due(
    conn: db.Connection,
    *,
    settings: Any,
    app_id: str,
    now: dt.datetime | None = None,
    limit: int = FIRE_BATCH,
) -> list[Run]:
    """Fire up to `limit` due schedules in the caller's transaction: each gets one job (its
    outbox row in the same transaction; publish after commit) and its next slot after `now`
    (the database's clock by default). Rows are claimed with SKIP LOCKED, so concurrent
    schedulers take disjoint rows, and a row another one just fired is no longer due when
    re-checked. Schedules of deactivated owners wait (and fire once when they are back)."""
    now = now or _db_now(conn)
    due = db.fetch_all(
        conn,
        """
        SELECT s.* FROM schedules s JOIN users u ON u.id = s.owner_id
        WHERE s.enabled AND s.next_run_at <= %s AND u.is_active
        ORDER BY s.next_run_at, s.id
        LIMIT %s
        FOR UPDATE OF s SKIP LOCKED
        """,
        (now, limit),
    )
    runs = []
    for schedule in due:
        run = _run(conn, schedule, settings=settings, app_id=app_id)
        if run is not None:
            runs.append(run)
        _advance(conn, schedule, now=now)
    return runs
