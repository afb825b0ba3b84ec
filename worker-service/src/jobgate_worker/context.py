"""What a handler gets: its job, the database, progress writes, and a stop check."""

from __future__ import annotations

import threading
import time
from typing import Any

from jobgate import db
from jobgate.config import Settings
from jobgate.jobs import attempts, job_logs
from jobgate_worker.errors import Cancelled, HandBack, LeaseLost
from jobgate_worker.events import EventEmitter

CANCEL_POLL_SECONDS = 0.5


class JobContext:
    """One attempt of one job. Handlers call `check()` between chunks of work."""

    def __init__(
        self,
        *,
        job: dict[str, Any],
        params: dict[str, Any],
        worker_id: str,
        database: db.Database,
        settings: Settings,
        events: EventEmitter,
        cancel_event: threading.Event,
        stop_event: threading.Event,
    ) -> None:
        self.job = job
        self.job_id = str(job["id"])
        self.kind = job["kind"]
        self.params = params  # loaded by the kind's params schema
        self.worker_id = worker_id
        self.db = database
        self.settings = settings
        self.events = events
        self.cancel_event = cancel_event
        self.stop_event = stop_event
        # The claim that made this attempt found no cancel request: the first poll of the
        # database flag is due a poll interval from now, not at the handler's first check.
        self._last_poll = time.monotonic()

    def stop_reason(self) -> type[Exception] | None:
        """Cancelled or HandBack when the attempt must stop now, else None.

        The control exchange sets `cancel_event` at once; the DB flag is polled as a
        fallback (at most every 0.5 s) so a missed control message costs under a second.
        """
        if self.cancel_event.is_set():
            return Cancelled
        if self.stop_event.is_set():
            return HandBack
        now = time.monotonic()
        if now - self._last_poll >= CANCEL_POLL_SECONDS:
            self._last_poll = now
            with self.db.transaction() as conn:
                if attempts.is_cancel_requested(conn, job_id=self.job_id):
                    self.cancel_event.set()
                    return Cancelled
        return None

    def check(self) -> None:
        reason = self.stop_reason()
        if reason is not None:
            raise reason()

    def progress(self, conn: db.Connection, **counters: Any) -> None:
        """Write progress in the caller's transaction (a `progress` job event too) and
        announce it on `jobgate.events` as that event (its id, the job's counters)."""
        event = attempts.update_progress(
            conn,
            job_id=self.job_id,
            worker_id=self.worker_id,
            keep_events=self.settings.job_events_progress_keep,
            **counters,
        )
        if event is None:
            raise LeaseLost(self.job_id)
        self.announce("progress", event)

    def announce(self, event: str, data: dict[str, Any]) -> None:
        """A live event about this job on `jobgate.events` (`job.<kind>.<event>`): best
        effort, never waited for (a per-file tick, a container's start)."""
        self.events.job(self.kind, event, self.job_id, data, owner_id=str(self.job["owner_id"]))

    def log(self, level: str, message: str) -> None:
        with self.db.transaction() as conn:
            job_logs.add_log(conn, job_id=self.job_id, level=level, message=message)
