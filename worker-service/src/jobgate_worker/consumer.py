"""The worker process: consume one kind's queue, run attempts off the I/O thread, settle
each delivery after its outcome is committed.

- The main thread owns the pika connection and only does I/O (so broker heartbeats keep
  flowing during long jobs); attempts run on a thread pool (`attempt.AttemptRunner`) and
  hand their settlement back through `add_callback_threadsafe` once the outcome is
  committed (DESIGN.md guarantee 1).
- Two background threads (`housekeeping`): heartbeats renewing this worker's leases, and
  the housekeeping every worker shares (reaper, outbox relay, the kind's sweep).
- SIGTERM: stop taking messages, let running jobs finish within the grace period, hand
  the rest back (nack + requeue), exit 0 (guarantee 5).
"""

from __future__ import annotations

import contextlib
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

from jobgate import db
from jobgate.broker import (
    CONNECTION_ERRORS,
    CONTROL_EXCHANGE,
    Publisher,
    connection_parameters,
    declare_topology,
    job_queue,
)
from jobgate.config import Settings
from jobgate.kinds import KindSpec
from jobgate.logs import request_id_var
from jobgate.messages import JobMessage, PoisonMessage
from jobgate.rpc import RpcServer
from jobgate_worker import metrics
from jobgate_worker.attempt import Attempt, AttemptRunner, InFlight
from jobgate_worker.events import EventEmitter
from jobgate_worker.housekeeping import Heartbeat, Housekeeping, rounds_thread
from jobgate_worker.outcomes import OutcomeRecorder, Settlement

log = logging.getLogger(__name__)

HAND_BACK_WAIT_S = 10.0  # after the grace period, how long handed-back jobs get to settle
CLAIM_FAILED_PAUSE_S = 1.0  # the database is likely down: do not spin on redeliveries
DB_WAIT_S = 30.0  # a job's threads (a scrape's downloads) wait this long for a pooled connection


class Worker:
    """One process consuming `jobgate.jobs.<kind>` with `concurrency` job threads."""

    def __init__(
        self,
        settings: Settings,
        spec: KindSpec,
        *,
        database: db.Database | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.kind = kind = spec.name
        self.concurrency = concurrency or spec.concurrency(settings)
        self.worker_id = f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.app_id = f"jobgate-worker-{kind}"
        self.db = database or db.Database(
            settings.database_url, maxconn=max(4, self.concurrency * 2 + 2), wait_s=DB_WAIT_S
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
        self.inflight = InFlight()
        self._stopping = threading.Event()  # no new deliveries
        self._exiting = threading.Event()  # consuming is over: background threads end
        self._connection: pika.BlockingConnection | None = None
        recorder = OutcomeRecorder(
            self.db, worker_id=self.worker_id, app_id=self.app_id, settings=settings
        )
        self.runner = AttemptRunner(
            spec,
            database=self.db,
            settings=settings,
            worker_id=self.worker_id,
            events=self.events,
            publisher=self.publisher,
            recorder=recorder,
            inflight=self.inflight,
            give_up=self._exiting,
        )
        self.heartbeat = Heartbeat(
            database=self.db,
            settings=settings,
            worker_id=self.worker_id,
            kind=kind,
            inflight=self.inflight,
            stopping=self._stopping,
            events=self.events,
            capacity=self.concurrency,
            flush_counts=recorder.flush_counts,
        )
        self.rpc_server: RpcServer | None = None
        self.housekeeping = Housekeeping(
            spec, database=self.db, settings=settings, publisher=self.publisher, app_id=self.app_id
        )

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
        metrics.start_server(self.settings)
        # Leases are renewed on a thread of their own (DB only), so broker trouble in the
        # housekeeping thread can never let a healthy job's lease lapse.
        every = {"interval_s": self.settings.worker_heartbeat_seconds, "stop": self._exiting}
        background = [
            rounds_thread("heartbeat", self.heartbeat.beat, first_now=True, **every),
            rounds_thread("housekeeping", self.housekeeping.round, first_now=False, **every),
        ]
        rpc = self.spec.rpc
        if rpc is not None:  # answered beside the jobs, on a connection of its own
            queue, handlers = rpc
            self.rpc_server = RpcServer(self.settings.amqp_url, queue, handlers(self.settings))
            background.append(
                threading.Thread(target=self.rpc_server.serve_forever, name="rpc", daemon=True)
            )
        loop = self.spec.background
        if loop is not None:  # the kind's own loop (the webhook dispatcher)
            background.append(
                threading.Thread(
                    target=loop,
                    args=(self.settings, self.db, self._exiting),
                    name=f"{self.kind}-background",
                    daemon=True,
                )
            )
        for thread in background:
            thread.start()
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
        self._exiting.set()
        if self.rpc_server is not None:
            self.rpc_server.stop()
        for thread in background:
            thread.join(timeout=10)
        with contextlib.suppress(Exception):  # the database may be down as we leave
            self.heartbeat.beat(status="stopped")
        self.publisher.close()
        self.events.close()
        log.info("worker %s stopped", self.worker_id)
        return 0

    def _consume(self) -> None:
        params = connection_parameters(self.settings.amqp_url, heartbeat=30)
        self._connection = pika.BlockingConnection(params)
        channel = self._connection.channel()
        declare_topology(channel, queue_type=self.settings.job_queue_type)
        channel.basic_qos(prefetch_count=self.spec.queue.prefetch or self.concurrency)
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
        while self.inflight.deliveries():
            if not handed_back and time.monotonic() >= deadline:
                log.info("grace period over; handing back %d job(s)", len(self.inflight.job_ids()))
                self.inflight.stop_all()
                handed_back = True
                deadline = time.monotonic() + HAND_BACK_WAIT_S
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

    # --- messages (I/O thread) ------------------------------------------------------------

    def _on_control(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        try:
            command = json.loads(body)
        except ValueError:
            return
        if command.get("type") == "cancel":
            attempt = self.inflight.get(str(command.get("job_id")))
            if attempt:
                log.info("cancel received for job %s", command.get("job_id"))
                attempt.cancel.set()

    def _on_message(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        self.inflight.received()
        self.executor.submit(self._process, channel, method.delivery_tag, props, body)

    def _settle(self, channel: Any, tag: int, how: Settlement) -> None:
        """Ack, requeue or dead-letter a delivery from a job thread, via the I/O thread."""

        def settle() -> None:
            if not channel.is_open:
                return  # the broker redelivers it; the job's DB state decides what happens then
            if how is Settlement.ACK:
                channel.basic_ack(tag)
            elif how is Settlement.REQUEUE:
                channel.basic_nack(tag, requeue=True)
            else:
                channel.basic_reject(tag, requeue=False)  # -> jobgate.dlx -> jobgate.jobs.dead

        try:
            self._connection.add_callback_threadsafe(settle)
        except Exception as exc:  # noqa: BLE001 - a closed connection means redelivery
            log.warning("could not %s delivery %s: %s", how.value, tag, exc)

    # --- deliveries (job threads) -----------------------------------------------------------

    def _process(self, channel: Any, tag: int, props: Any, body: bytes) -> None:
        settle = functools.partial(self._settle, channel, tag)
        try:
            message = JobMessage.from_body(body)
        except PoisonMessage as exc:
            log.error("dead-lettering a message no worker can read: %s", exc)
            return self._done(settle, Settlement.DEAD)
        if message.kind != self.kind:
            log.error("dead-lettering a %s message found on the %s queue", message.kind, self.kind)
            return self._done(settle, Settlement.DEAD)
        headers = getattr(props, "headers", None) or {}
        request_id_var.set(str(headers.get("x-request-id") or "") or None)
        # A message is good for the priority it was published with (a task's may change).
        priority = getattr(props, "priority", None)
        attempt: Attempt | None = None
        how = Settlement.REQUEUE
        try:
            how, attempt = self.runner.run(message, priority=priority)
        except Exception:
            log.exception("job %s: could not claim or record it; requeueing", message.job_id)
            time.sleep(CLAIM_FAILED_PAUSE_S)
        finally:
            self._done(settle, how, attempt)

    def _done(
        self, settle: Callable[[Settlement], None], how: Settlement, attempt: Attempt | None = None
    ) -> None:
        """Queue the settlement, and only then let go of the job: until here heartbeats kept
        its lease, and shutdown waits for this."""
        settle(how)
        self.inflight.settled(attempt)
