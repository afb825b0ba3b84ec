"""`jobgate-scheduler`: the process that fires due schedules (DESIGN.md, "Schedules").

- Every `SCHEDULER_INTERVAL_SECONDS` it calls `jobgate.schedules.fire_due` in a transaction
  (batches until fewer than a batch are due), and after commit publishes the runs' outbox
  rows with a confirming publisher, as the gateway does. A row the broker did not take stays
  in the outbox, and the workers' housekeeping relays it.
- Any number of replicas may run: due rows are claimed with `FOR UPDATE SKIP LOCKED` and
  moved past now in the same transaction, so no run is fired twice; no leader election.
- A heartbeat thread keeps its `workers` row fresh (kind `scheduler`), so health checks can
  tell it is alive even while a round is busy expanding a large folder.
- SIGTERM/SIGINT: the round in progress commits or rolls back, the row is marked stopped,
  and the process exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from typing import Any

from prometheus_client import Counter

from jobgate import db, outbox, schedules, workers
from jobgate.broker import Publisher
from jobgate.config import Settings
from jobgate.logs import configure_logging
from jobgate_worker import metrics
from jobgate_worker.housekeeping import rounds_thread

log = logging.getLogger(__name__)

APP_ID = "jobgate-scheduler"
KIND = schedules.SCHEDULER_KIND  # its kind in the `workers` table

RUNS = Counter(
    "jobgate_scheduler_runs_total",
    "Schedule runs made, by kind and whether a job was queued or the run failed at once",
    ["kind", "outcome"],
)


class Scheduler:
    """One scheduler replica: a firing loop on the main thread and a heartbeat thread."""

    def __init__(self, settings: Settings, *, database: db.Database | None = None) -> None:
        self.settings = settings
        self.worker_id = f"{KIND}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.db = database or db.Database(settings.database_url, maxconn=3)
        self.publisher = Publisher(
            settings.amqp_url, app_id=APP_ID, queue_type=settings.job_queue_type
        )
        self._stop = threading.Event()

    def request_stop(self, *_: Any) -> None:
        if not self._stop.is_set():
            log.info("stop requested; leaving after this round")
        self._stop.set()

    def beat(self, *, status: str | None = None) -> None:
        with self.db.transaction() as conn:
            workers.heartbeat(
                conn,
                worker_id=self.worker_id,
                kind=KIND,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                status=status or ("stopping" if self._stop.is_set() else "idle"),
                current_job_id=None,
            )

    def fire(self) -> int:
        """Fire everything due now, batch by batch; returns how many runs were made."""
        made = 0
        while not self._stop.is_set():
            with self.db.transaction() as conn:
                runs = schedules.fire_due(
                    conn, settings=self.settings, app_id=APP_ID, limit=schedules.FIRE_BATCH
                )
            for run in runs:
                RUNS.labels(run.job["kind"], "queued" if run.outbox_id else "failed").inc()
                log.info(
                    "schedule %s fired: job %s (%s) %s",
                    run.schedule_id,
                    run.job["id"],
                    run.job["kind"],
                    run.job["status"],
                    extra={"schedule_id": run.schedule_id, "job_id": str(run.job["id"])},
                )
            self._publish([r.outbox_id for r in runs if r.outbox_id is not None])
            made += len(runs)
            if len(runs) < schedules.FIRE_BATCH:
                break
        return made

    def _publish(self, outbox_ids: list[int]) -> None:
        """Publish after commit; what fails here waits in the outbox for the workers' relay."""
        if not outbox_ids:
            return
        try:
            outbox.relay(self.db, self.publisher, ids=outbox_ids)
        except Exception as exc:  # noqa: BLE001 - the runs are committed; the relay publishes later
            log.warning("publish deferred to the outbox relay: %s", exc)

    def run(self) -> int:
        """Fire due schedules until stopped; returns the exit code (0 on SIGTERM/SIGINT)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        metrics.start_server(self.settings)  # also the image's liveness
        heartbeat = rounds_thread(
            "heartbeat",
            self.beat,
            interval_s=self.settings.worker_heartbeat_seconds,
            stop=self._stop,
            first_now=True,
        )
        heartbeat.start()
        log.info(
            "scheduler %s looking for due schedules every %.1fs",
            self.worker_id,
            self.settings.scheduler_interval_seconds,
        )
        while not self._stop.is_set():
            try:
                self.fire()
            except Exception as exc:  # noqa: BLE001 - database or broker trouble: next round
                log.warning("scheduler round failed: %s", exc)
            self._stop.wait(self.settings.scheduler_interval_seconds)
        heartbeat.join(timeout=10)
        with contextlib.suppress(Exception):  # the database may be down as we leave
            self.beat(status="stopped")
        self.publisher.close()
        self.db.close()
        log.info("scheduler %s stopped", self.worker_id)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jobgate-scheduler",
        description="Fire due schedules (run as many replicas as you like: none fires twice).",
    )
    parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging("scheduler", settings.log_level, settings.log_format)
    return Scheduler(settings).run()


if __name__ == "__main__":
    sys.exit(main())
