"""When a queued job should start and a job should finish, from the queue and recent history.

Seed 003 answers `estimated_start` and `estimated_completion`; nothing schedules by these
numbers, so they are cheap guesses (three small queries), not promises:

- start = now + ahead * median / workers, where `ahead` counts the kind's queued jobs
  (`pending`, `retrying`) the queue hands out before this one (higher priority first, then
  older), `median` is the median run time (`completed_at - started_at`) of the kind's last
  `history` completed jobs (`default_s` with no history), and `workers` the kind's workers
  that heart-beat within `fresh_s` (at least 1). A retrying job starts no earlier than its
  backoff allows.
- completion: a running job with progress p > 0 ends at started + elapsed * 100 / p, one
  without progress at started + median; a queued one at its start + median; never before
  now while it is unfinished. A finished job's is its `completed_at`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

from jobgate import db, workers
from jobgate.jobs import TERMINAL, Job

DEFAULT_DURATION_S = 30.0
HISTORY = 20
WORKER_FRESH_S = 30.0
QUEUED = ("pending", "retrying")


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """What every estimate of one kind shares, read once per request."""

    now: dt.datetime
    median_duration_s: float
    workers: int


@dataclasses.dataclass(frozen=True)
class Estimate:
    start: dt.datetime | None  # None once the job has started
    completion: dt.datetime | None


def median_duration(
    conn: db.Connection, *, kind: str, history: int = HISTORY, default_s: float = DEFAULT_DURATION_S
) -> float:
    """Median seconds from start to completion of the kind's last `history` completed jobs."""
    row = db.fetch_one(
        conn,
        """
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median FROM (
            SELECT extract(epoch FROM completed_at - started_at) AS seconds FROM jobs
            WHERE kind = %s AND status = 'completed'
              AND started_at IS NOT NULL AND completed_at IS NOT NULL
            ORDER BY completed_at DESC LIMIT %s
        ) recent
        """,
        (kind, history),
    )
    median = row["median"] if row else None
    return max(0.0, float(median)) if median is not None else default_s


def queue_stats(
    conn: db.Connection,
    *,
    kind: str,
    history: int = HISTORY,
    default_s: float = DEFAULT_DURATION_S,
    fresh_s: float = WORKER_FRESH_S,
) -> QueueStats:
    """The database's now, the kind's median run time and its live workers (at least 1)."""
    now = db.fetch_one(conn, "SELECT now() AS now")["now"]
    return QueueStats(
        now=now,
        median_duration_s=median_duration(conn, kind=kind, history=history, default_s=default_s),
        workers=max(1, len(workers.live_workers(conn, kind=kind, fresh_s=fresh_s))),
    )


def jobs_ahead(conn: db.Connection, *, kind: str, job_ids: Sequence[str]) -> dict[str, int]:
    """For each queued job of `job_ids`, how many queued jobs of its kind go before it
    (higher priority first, then older: the order a priority queue hands them out)."""
    if not job_ids:
        return {}
    rows = db.fetch_all(
        conn,
        """
        SELECT id, ahead FROM (
            SELECT id, row_number() OVER (ORDER BY priority DESC, created_at, id) - 1 AS ahead
            FROM jobs WHERE kind = %s AND status IN ('pending', 'retrying')
        ) queue
        WHERE id = ANY(%s::uuid[])
        """,
        (kind, list(job_ids)),
    )
    return {str(row["id"]): int(row["ahead"]) for row in rows}


def estimate_job(job: Job, *, ahead: int, stats: QueueStats) -> Estimate:
    """The estimates of one job row (pure: `ahead` and `stats` were read before)."""
    median = dt.timedelta(seconds=stats.median_duration_s)
    now = stats.now
    if job["status"] in TERMINAL:
        return Estimate(start=None, completion=job.get("completed_at"))
    if job["status"] in QUEUED:
        start = now + ahead * median / stats.workers
        if job.get("next_attempt_at") is not None:
            start = max(start, job["next_attempt_at"])
        return Estimate(start=start, completion=start + median)
    started = job.get("started_at") or now
    progress = job.get("progress_pct")
    if progress is not None and progress > 0:
        elapsed = max(now - started, dt.timedelta(0))
        completion = started + elapsed * (100.0 / min(float(progress), 100.0))
    else:
        completion = started + median
    return Estimate(start=None, completion=max(completion, now))


def estimate_jobs(conn: db.Connection, jobs: Iterable[Job], *, kind: str) -> dict[str, Estimate]:
    """Estimates of several jobs of one kind, by job id, in three queries whatever their number."""
    rows = list(jobs)
    stats = queue_stats(conn, kind=kind)
    queued = [str(job["id"]) for job in rows if job["status"] in QUEUED]
    ahead = jobs_ahead(conn, kind=kind, job_ids=queued)
    return {
        str(job["id"]): estimate_job(job, ahead=ahead.get(str(job["id"]), 0), stats=stats)
        for job in rows
    }


def estimate(conn: db.Connection, job: Job) -> Estimate:
    """Estimates of one job."""
    return estimate_jobs(conn, [job], kind=job["kind"])[str(job["id"])]
