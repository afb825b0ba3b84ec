"""The worker's background rounds: heartbeats with lease renewal, and housekeeping.

Two threads, so that neither can hold up the other (docs/architecture.md, "Delivery and
recovery"):
- `Heartbeat` talks to PostgreSQL only: the `workers` row and the leases of the jobs this
  worker holds. A slow or blocked broker can never let a healthy job's lease lapse.
- `Housekeeping` is what every worker shares: re-queue jobs of dead workers (the reaper),
  publish outbox rows nobody published (the relay), sweep `job_events` past their retention
  (once a minute), and the kind's own sweep (convert's scratch files). Rows are taken with
  SKIP LOCKED, so several workers never do one twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from jobgate import analytics, db, outbox, workers
from jobgate.broker import Publisher
from jobgate.config import Settings
from jobgate.jobs import attempts, reaper
from jobgate.jobs import events as job_events
from jobgate.kinds import KindSpec
from jobgate_worker.attempt import InFlight
from jobgate_worker.events import EventEmitter

log = logging.getLogger(__name__)

EVENTS_SWEEP_EVERY_S = 60.0  # retention is counted in days: no need to look every round


def rounds_thread(
    name: str,
    action: Callable[[], None],
    *,
    interval_s: float,
    stop: threading.Event,
    first_now: bool,
) -> threading.Thread:
    """A daemon thread running `action` every `interval_s` until `stop` is set (at once
    first if `first_now`); a failed round is logged and tried again next time, through
    database and broker outages alike."""

    def loop() -> None:
        if not first_now and stop.wait(interval_s):
            return
        while True:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - keep going: the next round may work
                log.warning("%s failed: %s", name, exc)
            if stop.wait(interval_s):
                return

    return threading.Thread(target=loop, name=name, daemon=True)


class Heartbeat:
    """This worker's `workers` row, and the leases of exactly the jobs it holds."""

    def __init__(
        self,
        *,
        database: db.Database,
        settings: Settings,
        worker_id: str,
        kind: str,
        inflight: InFlight,
        stopping: threading.Event,
        events: EventEmitter,
        capacity: int = 1,
        flush_counts: Callable[[], None] | None = None,
    ) -> None:
        self.capacity = capacity
        self.flush_counts = flush_counts  # outcomes the recorder has not added to the row yet
        self.db = database
        self.settings = settings
        self.worker_id = worker_id
        self.kind = kind
        self.inflight = inflight
        self.stopping = stopping
        self.events = events

    def beat(self, *, status: str | None = None) -> None:
        """Extend the leases of the jobs this worker holds and write its status, in one
        transaction that does not wait for the disk: a lost beat is only a lease that ends
        sooner, while a commit stuck behind a slow WAL flush (seconds, seen on a busy disk)
        would let a live worker's leases expire. Jobs are locked before the worker's row;
        the outcome counts are added after, in a statement of their own that locks only
        the row (`OutcomeRecorder.flush_counts`), so no order can deadlock."""
        ids = self.inflight.job_ids()
        state = status or ("stopping" if self.stopping.is_set() else "busy" if ids else "idle")
        with self.db.transaction() as conn:
            db.relax_durability(conn)
            attempts.extend_leases(
                conn, worker_id=self.worker_id, job_ids=ids, lease_s=self.settings.job_lease_seconds
            )
            workers.heartbeat(
                conn,
                worker_id=self.worker_id,
                kind=self.kind,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                status=state,
                current_job_id=ids[0] if ids else None,
                current_load=len(ids),
                max_capacity=self.capacity,
            )
        if self.flush_counts is not None:
            self.flush_counts()
        self.events.emit(
            f"worker.{self.kind}.heartbeat",
            {"worker_id": self.worker_id, "status": state, "jobs": ids},
        )


class Housekeeping:
    """The reaper, the outbox relay and the kind's own sweep, run by every worker."""

    def __init__(
        self,
        spec: KindSpec,
        *,
        database: db.Database,
        settings: Settings,
        publisher: Publisher,
        app_id: str,
    ) -> None:
        self.db = database
        self.settings = settings
        self.publisher = publisher
        self.app_id = app_id
        self.kind_sweep = spec.housekeeping  # resolved now: it imports the worker module
        self._next_events_sweep = 0.0

    def round(self) -> None:
        """Re-queue jobs of dead workers, publish outbox rows nobody published, sweep."""
        with self.db.transaction() as conn:
            lost = reaper.requeue_lost(
                conn, app_id=self.app_id, stale_s=self.settings.stale_requeue_seconds
            )
            workers.prune(conn)  # rows of workers stopped or silent for a week
        for job in lost:
            log.warning(
                "job %s (%s): %s (its worker was lost, or its message went missing)",
                job["id"],
                job["kind"],
                "re-queued" if job["status"] == "pending" else job["status"],
            )
        outbox.relay(self.db, self.publisher, min_age_s=self.settings.outbox_relay_seconds)
        retention = self.settings.job_events_retention_days
        if retention > 0 and time.monotonic() >= self._next_events_sweep:
            self._next_events_sweep = time.monotonic() + EVENTS_SWEEP_EVERY_S
            job_events.sweep(self.db, retention_days=retention)
        if self.settings.analytics_compact_max_batches > 0:
            analytics.compact_all(
                self.db,
                batch=self.settings.analytics_compact_batch,
                max_batches=self.settings.analytics_compact_max_batches,
            )
        if self.kind_sweep is not None:
            self.kind_sweep(self.settings, self.db)
