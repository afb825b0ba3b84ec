"""One delivery, one attempt: claim the job, load its params, run the handler, record.

Runs on a job thread. The claim is guarded in SQL, so a duplicate delivery of a job that a
live worker holds (even this one) is acked and dropped without touching the running
attempt; a job that can never be claimed again (cancelled, attempts used up) is settled
here. Whatever the handler raises becomes an `Outcome`; nothing escapes but a database
error while claiming or recording, which the consumer answers with a requeue.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from marshmallow import ValidationError

from jobgate import db, outbox, runtime_config
from jobgate.broker import Publisher
from jobgate.config import Settings
from jobgate.jobs import Job, attempts
from jobgate.kinds import KindSpec
from jobgate.messages import JobMessage
from jobgate_worker import metrics
from jobgate_worker.context import JobContext
from jobgate_worker.errors import DATABASE_ERRORS, Cancelled, HandBack, JobFailed, LeaseLost
from jobgate_worker.events import EventEmitter
from jobgate_worker.outcomes import Ending, Outcome, OutcomeRecorder, Settlement

log = logging.getLogger(__name__)

Handler = Callable[[JobContext], dict[str, Any] | None]


@dataclasses.dataclass(eq=False)
class Attempt:
    """One running attempt: the events that stop it early (cancel, or hand back)."""

    job_id: str
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)


class InFlight:
    """The attempts this worker holds, from claim until their delivery is settled, and the
    deliveries not yet settled. Heartbeats extend exactly these jobs' leases, cancel
    commands reach them, and shutdown waits for the deliveries."""

    def __init__(self) -> None:
        self._attempts: dict[str, Attempt] = {}
        self._deliveries = 0
        self._lock = threading.Lock()

    def received(self) -> None:
        with self._lock:
            self._deliveries += 1

    def hold(self, attempt: Attempt) -> None:
        with self._lock:
            self._attempts[attempt.job_id] = attempt

    def settled(self, attempt: Attempt | None) -> None:
        """A delivery was settled; let go of its attempt (only the delivery that claimed a
        job lets go of it, so a duplicate delivery never drops a running attempt)."""
        with self._lock:
            self._deliveries -= 1
            if attempt is not None and self._attempts.get(attempt.job_id) is attempt:
                del self._attempts[attempt.job_id]

    def get(self, job_id: str) -> Attempt | None:
        with self._lock:
            return self._attempts.get(job_id)

    def job_ids(self) -> list[str]:
        with self._lock:
            return list(self._attempts)

    def deliveries(self) -> int:
        with self._lock:
            return self._deliveries

    def stop_all(self) -> None:
        """Ask every running attempt to hand its job back."""
        with self._lock:
            for attempt in self._attempts.values():
                attempt.stop.set()


def run_handler(handler: Handler, ctx: JobContext) -> Ending:
    """Run the kind's handler and say how the attempt ended; it never raises."""
    try:
        return Ending(Outcome.COMPLETED, result=handler(ctx))
    except Cancelled:
        return Ending(Outcome.CANCELLED)
    except HandBack:
        return Ending(Outcome.HANDBACK)
    except LeaseLost:
        return Ending(Outcome.LOST)
    except JobFailed as exc:
        return Ending(Outcome.FAILED, failure=exc)
    except DATABASE_ERRORS as exc:
        # The database went away under the job: not the job's fault, so it costs no
        # attempt; it goes back to the queue once its hand-back is recorded.
        log.warning("job %s: database unavailable (%s); handing it back", ctx.job_id, exc)
        return Ending(Outcome.HANDBACK)
    except Exception as exc:
        log.exception("job %s: handler crashed", ctx.job_id)
        return Ending(Outcome.FAILED, failure=JobFailed(f"{type(exc).__name__}: {exc}"))


class AttemptRunner:
    """Claims, runs and records the attempts of one worker's deliveries."""

    def __init__(
        self,
        spec: KindSpec,
        *,
        database: db.Database,
        settings: Settings,
        worker_id: str,
        events: EventEmitter,
        publisher: Publisher,
        recorder: OutcomeRecorder,
        inflight: InFlight,
        give_up: threading.Event,
    ) -> None:
        self.spec = spec
        self.kind = spec.name
        self.handler: Handler = spec.handler
        self.db = database
        self.settings = settings
        # Jobs claimed after a reload see its values (allow-lists: POST /api/config/reload).
        self.runtime = runtime_config.RuntimeSettings(settings, database)
        self.worker_id = worker_id
        self.events = events
        self.publisher = publisher
        self.recorder = recorder
        self.inflight = inflight
        self.give_up = give_up  # set when the worker exits: stop retrying a record

    def run(
        self, message: JobMessage, *, priority: int | None = None
    ) -> tuple[Settlement, Attempt | None]:
        """Claim and run one delivery; returns how to settle it and the attempt it held.
        `priority` is the delivery's: a pending job whose priority changed since is left to
        the message carrying the new one (`attempts.claim_job`)."""
        # One statement each, committed as the server answers (one round trip). The claim
        # need not wait for the WAL flush: a claim lost in a database crash leaves the job as
        # it was and its message unacked, so it is redelivered; and the outcome's durable
        # commit flushes the WAL past this record anyway.
        with self.db.autocommit() as conn:
            job = attempts.claim_job(
                conn,
                job_id=message.job_id,
                worker_id=self.worker_id,
                lease_s=self.settings.job_lease_seconds,
                priority=priority,
                relaxed=True,
            )
            settled = None if job else attempts.settle_unclaimable(conn, job_id=message.job_id)
        if job is None:
            return self._unclaimed(message, settled), None

        attempt = Attempt(str(job["id"]))
        self.inflight.hold(attempt)
        log.info(
            "job %s: attempt %s of %s started", attempt.job_id, job["attempt"], job["max_attempts"]
        )
        self.events.job(self.kind, "started", attempt.job_id, {"attempt": job["attempt"]})
        ending = self._execute(job, attempt)
        recorded = self.recorder.record_until_saved(job, ending, give_up=self.give_up)
        if recorded.announced:
            if recorded.outbox_ids:
                self._publish(list(recorded.outbox_ids))
            self.events.job(
                self.kind,
                recorded.outcome.value,
                attempt.job_id,
                {"error": recorded.job.get("error")},
            )
        return recorded.settlement, attempt

    def _unclaimed(self, message: JobMessage, settled: Job | None) -> Settlement:
        """A delivery whose job could not be claimed: finished now, or nothing to do."""
        if settled is not None:
            self.events.job(
                self.kind, settled["status"], message.job_id, {"error": settled["error"]}
            )
            return Settlement.DEAD if settled["status"] == "failed" else Settlement.ACK
        log.info(
            "job %s: nothing to do for this delivery (finished, held, not due or unknown)",
            message.job_id,
        )
        return Settlement.ACK

    def _execute(self, job: Job, attempt: Attempt) -> Ending:
        try:
            params = self.spec.load_params(job["params"] or {})
        except ValidationError as exc:
            # The gateway validated with the same schema: only a hand-made row gets here,
            # and retrying cannot change it.
            failure = JobFailed(f"invalid parameters: {exc.messages}", retryable=False)
            return Ending(Outcome.FAILED, failure=failure)
        ctx = JobContext(
            params=params,
            job=job,
            worker_id=self.worker_id,
            database=self.db,
            settings=self.runtime.current(),
            events=self.events,
            cancel_event=attempt.cancel,
            stop_event=attempt.stop,
        )
        started = time.monotonic()
        ending = run_handler(self.handler, ctx)
        metrics.observe(self.kind, ending.outcome.value, time.monotonic() - started)
        return ending

    def _publish(self, ids: list[int]) -> None:
        """Publish committed outbox rows now; if the broker is away, housekeeping will."""
        try:
            outbox.relay(self.db, self.publisher, ids=ids)
        except Exception as exc:  # noqa: BLE001 - the housekeeping relay retries it
            log.warning("outbox relay deferred: %s", exc)
