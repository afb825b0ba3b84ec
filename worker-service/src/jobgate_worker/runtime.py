"""The worker runtime: consume one kind's queue, run handlers off the I/O thread, ack after commit.

- The main thread owns the pika connection and only does I/O (so broker heartbeats keep
  flowing during long jobs); jobs run on a thread pool and hand their ack back through
  `add_callback_threadsafe` once the outcome is committed (DESIGN.md guarantee 1).
- A heartbeat thread refreshes the `workers` row and this worker's job leases, and does
  the housekeeping every worker shares: relay the outbox, re-queue jobs of dead workers.
- SIGTERM: stop taking messages, let running jobs finish within the grace period, hand
  the rest back (nack + requeue), exit 0 (guarantee 5).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pika
import pika.exceptions

from jobgate import db, jobs, outbox, workers
from jobgate.broker import (
    CONNECTION_ERRORS,
    CONTROL_EXCHANGE,
    Publisher,
    connection_parameters,
    declare_topology,
    job_queue,
)
from jobgate.config import Settings
from jobgate.logs import request_id_var
from jobgate.messages import JobMessage, PoisonMessage
from jobgate.storage import DirectoryStorage
from jobgate_worker import metrics
from jobgate_worker.context import JobContext
from jobgate_worker.errors import Cancelled, HandBack, JobFailed, LeaseLost
from jobgate_worker.events import EventEmitter

log = logging.getLogger(__name__)

Handler = Callable[[JobContext], dict[str, Any] | None]
DATABASE_ERRORS = (db.OperationalError, db.InterfaceError)


class Worker:
    """One process consuming `jobgate.jobs.<kind>` with `concurrency` job threads."""

    def __init__(
        self,
        settings: Settings,
        kind: str,
        handler: Handler,
        *,
        database: db.Database | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.kind = kind
        self.handler = handler
        self.concurrency = concurrency or settings.worker_concurrency
        self.worker_id = f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.app_id = f"jobgate-worker-{kind}"
        self.db = database or db.Database(
            settings.database_url, maxconn=max(4, self.concurrency * 2 + 2)
        )
        self.publisher = Publisher(
            settings.amqp_url, app_id=self.app_id, queue_type=settings.job_queue_type
        )
        self.events = EventEmitter(
            Publisher(
                settings.amqp_url,
                app_id=self.app_id,
                confirm=False,
                queue_type=settings.job_queue_type,
            )
        )
        self.executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"job-{kind}")
        # job id -> its attempt's (cancel, stop) events, from claim until its ack is queued;
        # heartbeats extend the leases of exactly these jobs.
        self._inflight: dict[str, _Attempt] = {}
        self._inflight_lock = threading.Lock()
        self._deliveries = 0  # deliveries received and not yet settled (shutdown waits on them)
        self._stopping = threading.Event()
        self._heartbeat_stop = threading.Event()
        self._connection: pika.BlockingConnection | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        if not self._stopping.is_set():
            log.info("stop requested; no new jobs will be taken")
        self._stopping.set()

    def run(self) -> int:
        """Consume until stopped; returns the process exit code (0 on a graceful stop)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        metrics.start_server(self.settings.worker_metrics_port)
        # Leases are renewed on a thread of their own (DB only), so broker trouble in the
        # housekeeping thread can never let a healthy job's lease lapse.
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        housekeeper = threading.Thread(
            target=self._housekeeping_loop, name="housekeeping", daemon=True
        )
        heartbeat.start()
        housekeeper.start()
        log.info("worker %s consuming %s", self.worker_id, job_queue(self.kind))
        retry_delay = 1.0
        while not self._stopping.is_set():
            try:
                self._consume()
                retry_delay = 1.0
            except CONNECTION_ERRORS as exc:
                self._close_connection()  # running jobs' late acks fail; they are redelivered
                if self._stopping.is_set():
                    break
                log.warning("broker connection failed (%s); retrying in %.0fs", exc, retry_delay)
                self._stopping.wait(retry_delay)
                retry_delay = min(retry_delay * 2, 30.0)
        self._shutdown()
        self._heartbeat_stop.set()
        heartbeat.join(timeout=10)
        housekeeper.join(timeout=10)
        with contextlib.suppress(Exception):  # the database may be down as we leave
            self._write_heartbeat(status="stopped")
        self.publisher.close()
        self.events.close()
        log.info("worker %s stopped", self.worker_id)
        return 0

    def _consume(self) -> None:
        params = connection_parameters(self.settings.amqp_url, heartbeat=30)
        self._connection = pika.BlockingConnection(params)
        channel = self._connection.channel()
        declare_topology(channel, queue_type=self.settings.job_queue_type)
        channel.basic_qos(prefetch_count=self.concurrency)
        control = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(control, CONTROL_EXCHANGE)
        channel.basic_consume(control, self._on_control, auto_ack=True)
        self._consumer_tag = channel.basic_consume(job_queue(self.kind), self._on_message)
        self._channel = channel
        while not self._stopping.is_set():
            self._connection.process_data_events(time_limit=0.5)

    def _shutdown(self) -> None:
        """Stop consuming, wait for running jobs within the grace period, hand back the rest."""
        conn = self._connection
        if conn is not None and conn.is_open:
            with contextlib.suppress(*CONNECTION_ERRORS):
                self._channel.basic_cancel(self._consumer_tag)
        deadline = time.monotonic() + self.settings.worker_grace_seconds
        handed_back = False
        while self._pending_deliveries():
            if not handed_back and time.monotonic() >= deadline:
                log.info("grace period over; handing back %d job(s)", len(self._inflight_ids()))
                with self._inflight_lock:
                    for attempt in self._inflight.values():
                        attempt.stop.set()
                handed_back = True
                deadline = time.monotonic() + 10
            elif handed_back and time.monotonic() >= deadline:
                log.warning("jobs did not hand back in time; the broker will redeliver them")
                break
            self._pump(0.2)
        self.executor.shutdown(wait=False)
        self._pump(0.2)  # deliver the last acks
        if conn is not None and conn.is_open:
            with contextlib.suppress(*CONNECTION_ERRORS):
                conn.close()

    def _close_connection(self) -> None:
        conn = self._connection
        if conn is not None and conn.is_open:
            with contextlib.suppress(Exception):  # it may be half dead already
                conn.close()

    def _pump(self, seconds: float) -> None:
        conn = self._connection
        if conn is not None and conn.is_open:
            try:
                conn.process_data_events(time_limit=seconds)
                return
            except CONNECTION_ERRORS:
                pass
        time.sleep(seconds)

    def _inflight_ids(self) -> list[str]:
        with self._inflight_lock:
            return list(self._inflight)

    def _pending_deliveries(self) -> int:
        with self._inflight_lock:
            return self._deliveries

    # --- messages (I/O thread) ------------------------------------------------------------

    def _on_control(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        try:
            command = json.loads(body)
        except ValueError:
            return
        if command.get("type") == "cancel":
            with self._inflight_lock:
                attempt = self._inflight.get(str(command.get("job_id")))
            if attempt:
                log.info("cancel received for job %s", command.get("job_id"))
                attempt.cancel.set()

    def _on_message(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        with self._inflight_lock:
            self._deliveries += 1
        self.executor.submit(self._process, channel, method.delivery_tag, props, body)

    def _settle(self, channel: Any, tag: int, how: str) -> None:
        """Ack, requeue or dead-letter a delivery from a job thread, via the I/O thread."""

        def settle() -> None:
            if not channel.is_open:
                return  # the broker redelivers it; the job's DB state decides what happens then
            if how == "ack":
                channel.basic_ack(tag)
            elif how == "requeue":
                channel.basic_nack(tag, requeue=True)
            else:
                channel.basic_reject(tag, requeue=False)  # -> jobgate.dlx -> jobgate.jobs.dead

        try:
            self._connection.add_callback_threadsafe(settle)
        except Exception as exc:  # noqa: BLE001 - a closed connection means redelivery
            log.warning("could not %s delivery %s: %s", how, tag, exc)

    # --- jobs (job threads) -----------------------------------------------------------------

    def _process(self, channel: Any, tag: int, props: Any, body: bytes) -> None:
        settle = functools.partial(self._settle, channel, tag)
        try:
            message = JobMessage.from_body(body)
        except PoisonMessage as exc:
            log.error("dead-lettering a message no worker can read: %s", exc)
            return self._done(settle, "dead")
        if message.kind != self.kind:
            log.error("dead-lettering a %s message found on the %s queue", message.kind, self.kind)
            return self._done(settle, "dead")
        headers = getattr(props, "headers", None) or {}
        request_id_var.set(str(headers.get("x-request-id") or "") or None)
        attempt: _Attempt | None = None
        how = "requeue"
        try:
            how, attempt = self._run_job(message)
        except Exception:
            log.exception("job %s: could not claim or record it; requeueing", message.job_id)
            time.sleep(1.0)  # the database is likely down: do not spin on redeliveries
        finally:
            self._done(settle, how, attempt)

    def _done(
        self, settle: Callable[[str], None], how: str, attempt: _Attempt | None = None
    ) -> None:
        """Queue the ack, and only then let go of the job: until here heartbeats kept its
        lease, and shutdown waits for this."""
        settle(how)
        with self._inflight_lock:
            self._deliveries -= 1
            if attempt is not None and self._inflight.get(attempt.job_id) is attempt:
                del self._inflight[attempt.job_id]

    def _run_job(self, message: JobMessage) -> tuple[str, _Attempt | None]:
        """Claim and run one delivery; returns how to settle it (ack / requeue / dead)."""
        with self.db.transaction() as conn:
            job = jobs.claim_job(
                conn,
                job_id=message.job_id,
                worker_id=self.worker_id,
                lease_s=self.settings.job_lease_seconds,
            )
            settled = None if job else jobs.settle_unclaimable(conn, job_id=message.job_id)
        if job is None:
            if settled is not None:
                self.events.job(
                    self.kind, settled["status"], message.job_id, {"error": settled["error"]}
                )
                return ("dead" if settled["status"] == "failed" else "ack"), None
            log.info(
                "job %s: nothing to do for this delivery (finished, held, not due or unknown)",
                message.job_id,
            )
            return "ack", None

        attempt = _Attempt(str(job["id"]))
        with self._inflight_lock:
            self._inflight[attempt.job_id] = attempt
        log.info(
            "job %s: attempt %s of %s started", attempt.job_id, job["attempt"], job["max_attempts"]
        )
        self.events.job(self.kind, "started", attempt.job_id, {"attempt": job["attempt"]})
        ctx = JobContext(
            job=job,
            worker_id=self.worker_id,
            database=self.db,
            settings=self.settings,
            events=self.events,
            cancel_event=attempt.cancel,
            stop_event=attempt.stop,
        )
        started = time.monotonic()
        try:
            outcome, detail = "completed", self.handler(ctx)
        except Cancelled:
            outcome, detail = "cancelled", None
        except HandBack:
            outcome, detail = "handback", None
        except LeaseLost:
            outcome, detail = "lost", None
        except JobFailed as exc:
            outcome, detail = "failed", exc
        except DATABASE_ERRORS as exc:
            # The database went away under the job: not the job's fault, so it costs no
            # attempt; it goes back to the queue once its hand-back is recorded.
            log.warning("job %s: database unavailable (%s); handing it back", attempt.job_id, exc)
            outcome, detail = "handback", None
        except Exception as exc:
            log.exception("job %s: handler crashed", attempt.job_id)
            outcome, detail = "failed", JobFailed(f"{type(exc).__name__}: {exc}")
        metrics.observe(self.kind, outcome, time.monotonic() - started)
        return self._record_until_saved(job, outcome, detail), attempt

    def _record_until_saved(self, job: dict[str, Any], outcome: str, detail: Any) -> str:
        """Record the outcome, retrying through a database outage: a finished job's result
        must not be thrown away. The job stays in flight meanwhile, so once the database is
        back the heartbeat renews its lease before any reaper can take it."""
        delay = 0.5
        while True:
            try:
                return self._record(job, outcome, detail)
            except DATABASE_ERRORS as exc:
                if self._heartbeat_stop.is_set():
                    raise
                log.warning("job %s: cannot record %s yet (%s)", job["id"], outcome, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _record(self, job: dict[str, Any], outcome: str, detail: Any) -> str:
        job_id = str(job["id"])
        if outcome == "lost":
            log.warning("job %s: another worker took it over; dropping this attempt", job_id)
            return "ack"
        retry_ids: list[int] = []
        with self.db.transaction() as conn:
            if outcome == "handback":
                jobs.hand_back(conn, job_id=job_id, worker_id=self.worker_id)
                log.info("job %s: handed back for another worker", job_id)
                return "requeue"
            if outcome == "completed":
                row = jobs.finish_job(
                    conn, job_id=job_id, worker_id=self.worker_id, status="completed", result=detail
                )
            elif outcome == "cancelled":
                row = jobs.finish_job(
                    conn, job_id=job_id, worker_id=self.worker_id, status="cancelled"
                )
            elif detail.retryable and int(job["attempt"]) < int(job["max_attempts"]):
                delay = jobs.backoff_delay(job, max_seconds=self.settings.job_backoff_max_seconds)
                scheduled = jobs.schedule_retry(
                    conn,
                    job=job,
                    worker_id=self.worker_id,
                    error=detail.message,
                    delay_s=delay,
                    app_id=self.app_id,
                )
                row = None if scheduled is None else scheduled[0]
                if scheduled is not None:
                    outcome = "retrying"
                    retry_ids = [scheduled[1]]
                    jobs.add_log(
                        conn,
                        job_id=job_id,
                        level="warning",
                        message=f"attempt {job['attempt']} failed: {detail.message};"
                        f" retry in {delay}s",
                    )
            else:
                row = jobs.finish_job(
                    conn,
                    job_id=job_id,
                    worker_id=self.worker_id,
                    status="failed",
                    error=detail.message,
                )
            if row is not None and outcome in ("completed", "failed"):
                workers.count_outcome(
                    conn, worker_id=self.worker_id, completed=outcome == "completed"
                )
            if row is not None and outcome == "failed":
                jobs.add_log(
                    conn, job_id=job_id, level="error", message=f"failed: {detail.message}"
                )
        if row is None:
            log.warning(
                "job %s: no longer held by this worker; outcome %s not recorded", job_id, outcome
            )
            return "ack"
        if retry_ids:
            self._relay(retry_ids)
        log.info("job %s: %s", job_id, outcome)
        self.events.job(self.kind, outcome, job_id, {"error": row.get("error")})
        # A job that failed for good leaves its message in the dead-letter queue for operators.
        return "dead" if outcome == "failed" else "ack"

    def _relay(self, ids: list[int]) -> None:
        try:
            outbox.relay(self.db, self.publisher, ids=ids)
        except Exception as exc:  # noqa: BLE001 - the housekeeping relay retries it
            log.warning("outbox relay deferred: %s", exc)

    # --- heartbeats and housekeeping --------------------------------------------------------

    def _write_heartbeat(self, *, status: str | None = None) -> None:
        ids = self._inflight_ids()
        state = status or ("stopping" if self._stopping.is_set() else "busy" if ids else "idle")
        with self.db.transaction() as conn:
            workers.heartbeat(
                conn,
                worker_id=self.worker_id,
                kind=self.kind,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                status=state,
                current_job_id=ids[0] if ids else None,
            )
            jobs.extend_leases(
                conn, worker_id=self.worker_id, job_ids=ids, lease_s=self.settings.job_lease_seconds
            )
        self.events.emit(
            f"worker.{self.kind}.heartbeat",
            {"worker_id": self.worker_id, "status": state, "jobs": ids},
        )

    def _heartbeat_loop(self) -> None:
        interval = self.settings.worker_heartbeat_seconds
        while True:
            try:
                self._write_heartbeat()
            except Exception as exc:  # noqa: BLE001 - keep beating through DB outages
                log.warning("heartbeat failed: %s", exc)
            if self._heartbeat_stop.wait(interval):
                return

    def _housekeeping_loop(self) -> None:
        interval = self.settings.worker_heartbeat_seconds
        while not self._heartbeat_stop.wait(interval):
            try:
                self.housekeeping()
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("housekeeping failed: %s", exc)

    def housekeeping(self) -> None:
        """Re-queue jobs of dead workers and publish outbox rows nobody published."""
        with self.db.transaction() as conn:
            lost = jobs.requeue_lost(
                conn, app_id=self.app_id, stale_s=self.settings.stale_requeue_seconds
            )
        for job in lost:
            log.warning(
                "job %s (%s): %s (its worker was lost, or its message went missing)",
                job["id"],
                job["kind"],
                "re-queued" if job["status"] == "pending" else job["status"],
            )
        outbox.relay(self.db, self.publisher, min_age_s=self.settings.outbox_relay_seconds)
        swept = DirectoryStorage(self.settings.storage_dir).sweep_tmp(
            older_than_s=self.settings.storage_tmp_max_age_s
        )
        if swept:
            log.info("removed %d stale temporary file(s) from storage", swept)


@dataclasses.dataclass(eq=False)
class _Attempt:
    """One running attempt: the events that stop it early (cancel, or hand back)."""

    job_id: str
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
