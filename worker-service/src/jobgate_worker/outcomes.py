"""What became of an attempt, written to PostgreSQL before its delivery is settled.

An attempt ends with an `Ending` (its `Outcome` plus the handler's result or failure).
`OutcomeRecorder` commits it in one transaction — every write guarded so a worker that no
longer holds the job changes nothing — and answers how to settle the delivery
(`Settlement`): the ack waits for the commit (DESIGN.md guarantee 1), and a job that
failed for good leaves its message in the dead-letter queue (guarantee 3). It needs only
the database; publishing the retry message and the event is the caller's business.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import random
import threading
import time
from typing import Any

from jobgate import db, workers
from jobgate.config import Settings
from jobgate.jobs import Job, attempts, job_logs
from jobgate_worker.errors import DATABASE_ERRORS, JobFailed

log = logging.getLogger(__name__)

RECORD_RETRY_FIRST_S = 0.5
RECORD_RETRY_MAX_S = 5.0


class Outcome(enum.Enum):
    """How an attempt ended; the value is the metrics label and the event name."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    RETRYING = "retrying"  # a retryable failure with attempts left, recorded as a delayed retry
    HANDBACK = "handback"  # stopped for shutdown or a database outage: attempt not used up
    LOST = "lost"  # another worker took the job over: this one writes nothing


class Settlement(enum.Enum):
    """What becomes of the delivery once the outcome is committed."""

    ACK = "ack"
    REQUEUE = "requeue"  # back to the queue for another worker (a hand-back)
    DEAD = "dead"  # rejected to jobgate.dlx -> jobgate.jobs.dead (failed for good, poison)


# Outcomes announced on `jobgate.events` once recorded.
ANNOUNCED = frozenset({Outcome.COMPLETED, Outcome.CANCELLED, Outcome.FAILED, Outcome.RETRYING})


@dataclasses.dataclass(frozen=True)
class Ending:
    """How an attempt ended, before it is recorded."""

    outcome: Outcome
    result: dict[str, Any] | None = None  # COMPLETED: the handler's answer
    failure: JobFailed | None = None  # FAILED: why, and whether a retry may help

    def __post_init__(self) -> None:
        if (self.outcome is Outcome.FAILED) != (self.failure is not None):
            raise ValueError("a failure comes with a FAILED outcome, and only with one")


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What was written for an attempt, and how to settle its delivery."""

    settlement: Settlement
    outcome: Outcome  # RETRYING when a failure was recorded as a retry
    job: Job | None = None  # the row as written; None when nothing was (job not held)
    outbox_ids: tuple[int, ...] = ()  # committed messages to publish now (the delayed retry)

    @property
    def announced(self) -> bool:
        return self.job is not None and self.outcome in ANNOUNCED


class OutcomeRecorder:
    """Writes attempt outcomes for one worker (`worker_id`) in single transactions."""

    def __init__(
        self,
        database: db.Database,
        *,
        worker_id: str,
        app_id: str,
        settings: Settings,
        rng: random.Random | None = None,
    ) -> None:
        self.db = database
        self.worker_id = worker_id
        self.app_id = app_id  # on the retry message, so operators see who queued it
        self.backoff_max_s = settings.job_backoff_max_seconds
        self.rng = rng
        # Outcomes not yet added to this worker's `workers` row. Counting in the outcome's
        # own transaction made every outcome of the process wait for the previous one's
        # commit (the row's lock is held through the WAL flush): 1.5 ms per outcome with
        # four jobs in flight. Counted after the commit instead, by whoever is not already
        # writing them (`flush_counts`; the heartbeat too).
        self._counts = {"completed": 0, "failed": 0}
        self._counts_lock = threading.Lock()
        self._flushing = threading.Lock()

    def record(self, job: Job, ending: Ending) -> Recorded:
        """Commit the outcome of an attempt of `job` (the row as claimed)."""
        job_id = str(job["id"])
        if ending.outcome is Outcome.LOST:
            log.warning("job %s: another worker took it over; dropping this attempt", job_id)
            return Recorded(Settlement.ACK, Outcome.LOST)
        if ending.outcome is Outcome.COMPLETED:
            # The common case in one round trip: one statement, committed as the server
            # answers (`Database.autocommit`); the worker's count follows (`flush_counts`).
            with self.db.autocommit() as conn:
                row = self._finish(conn, job_id, "completed", result=ending.result)
            recorded = Recorded(Settlement.ACK, Outcome.COMPLETED, row)
        else:
            with self.db.transaction() as conn:
                recorded = self._write(conn, job, ending)
        if recorded.job is not None and recorded.outcome in (Outcome.COMPLETED, Outcome.FAILED):
            with self._counts_lock:
                self._counts[recorded.outcome.value] += 1
            self.flush_counts()
        if recorded.outcome is Outcome.HANDBACK:
            log.info("job %s: handed back for another worker", job_id)
        elif recorded.job is None:
            log.warning(
                "job %s: no longer held by this worker; outcome %s not recorded",
                job_id,
                recorded.outcome.value,
            )
        else:
            log.info("job %s: %s", job_id, recorded.outcome.value)
        return recorded

    def flush_counts(self) -> None:
        """Add the outcomes counted so far to the worker's row, unless another thread is
        doing so (then the next outcome or heartbeat adds these). A statistic: a database
        error keeps them for the next try, and never fails the attempt."""
        if not self._flushing.acquire(blocking=False):
            return
        try:
            with self._counts_lock:
                counts, self._counts = self._counts, {"completed": 0, "failed": 0}
            if not any(counts.values()):
                return
            try:
                with self.db.autocommit() as conn:
                    workers.add_outcomes(conn, worker_id=self.worker_id, **counts)
            except DATABASE_ERRORS as exc:
                log.warning("worker counts not written yet: %s", exc)
                with self._counts_lock:
                    for key, n in counts.items():
                        self._counts[key] += n
        finally:
            self._flushing.release()

    def record_until_saved(self, job: Job, ending: Ending, *, give_up: threading.Event) -> Recorded:
        """Record, retrying through a database outage: a finished job's result must not be
        thrown away. The caller keeps the job in flight meanwhile, so once the database is
        back its lease is renewed before any reaper can take it. Raises the database error
        once `give_up` is set (the worker is exiting; the delivery will be redelivered)."""
        delay = RECORD_RETRY_FIRST_S
        while True:
            try:
                return self.record(job, ending)
            except DATABASE_ERRORS as exc:
                if give_up.is_set():
                    raise
                log.warning(
                    "job %s: cannot record %s yet (%s)", job["id"], ending.outcome.value, exc
                )
                time.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX_S)

    def _write(self, conn: db.Connection, job: Job, ending: Ending) -> Recorded:
        job_id = str(job["id"])
        if ending.outcome is Outcome.HANDBACK:
            row = attempts.hand_back(conn, job_id=job_id, worker_id=self.worker_id)
            return Recorded(Settlement.REQUEUE, Outcome.HANDBACK, row)
        if ending.outcome is Outcome.CANCELLED:
            return Recorded(
                Settlement.ACK, Outcome.CANCELLED, self._finish(conn, job_id, "cancelled")
            )
        if ending.outcome is Outcome.FAILED:
            assert ending.failure is not None  # Ending guarantees it
            if ending.failure.retryable and int(job["attempt"]) < int(job["max_attempts"]):
                return self._schedule_retry(conn, job, ending.failure)
            return self._fail(conn, job_id, ending.failure)
        raise ValueError(f"not an outcome an attempt ends with: {ending.outcome}")

    def _finish(
        self,
        conn: db.Connection,
        job_id: str,
        status: str,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> Job | None:
        return attempts.finish_job(
            conn, job_id=job_id, worker_id=self.worker_id, status=status, error=error, result=result
        )

    def _schedule_retry(self, conn: db.Connection, job: Job, failure: JobFailed) -> Recorded:
        """`retrying`, its delayed message in the outbox and a log line, in one transaction."""
        delay = attempts.backoff_delay(job, max_seconds=self.backoff_max_s, rng=self.rng)
        scheduled = attempts.schedule_retry(
            conn,
            job=job,
            worker_id=self.worker_id,
            error=failure.message,
            delay_s=delay,
            app_id=self.app_id,
        )
        if scheduled is None:
            return Recorded(Settlement.ACK, Outcome.FAILED)
        row, outbox_id = scheduled
        job_logs.add_log(
            conn,
            job_id=str(job["id"]),
            level="warning",
            message=f"attempt {job['attempt']} failed: {failure.message}; retry in {delay}s",
        )
        return Recorded(Settlement.ACK, Outcome.RETRYING, row, (outbox_id,))

    def _fail(self, conn: db.Connection, job_id: str, failure: JobFailed) -> Recorded:
        """`failed` for good: its message goes to the dead-letter queue for operators."""
        row = self._finish(conn, job_id, "failed", error=failure.message)
        if row is None:
            return Recorded(Settlement.ACK, Outcome.FAILED)
        job_logs.add_log(conn, job_id=job_id, level="error", message=f"failed: {failure.message}")
        return Recorded(Settlement.DEAD, Outcome.FAILED, row)
