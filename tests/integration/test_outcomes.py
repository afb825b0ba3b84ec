"""Recording attempt outcomes, against real PostgreSQL alone (no broker, no worker thread).

Each test claims a job the way a worker does, records an `Ending` and checks the rows it
left behind (job, outbox, job logs, items, worker counters) and the settlement it answered.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from typing import Any

import pytest

from jobgate import db as dbmod
from jobgate import jobs, workers
from jobgate.broker import RETRY_DELAY_HEADER, RETRY_EXCHANGE
from jobgate.jobs import attempts, job_items, job_logs, reaper
from jobgate_worker.errors import JobFailed
from jobgate_worker.outcomes import Ending, Outcome, OutcomeRecorder, Recorded, Settlement
from tests.factories.jobs import make_job
from tests.factories.users import make_user

WORKER = "test-worker-1"
OTHER = "test-worker-2"
APP_ID = "jobgate-worker-test"


@pytest.fixture
def recorder(db, settings) -> OutcomeRecorder:
    with db.transaction() as conn:
        workers.heartbeat(
            conn,
            worker_id=WORKER,
            kind="cache",
            hostname="test",
            pid=1,
            status="busy",
            current_job_id=None,
        )
    return OutcomeRecorder(
        db, worker_id=WORKER, app_id=APP_ID, settings=settings, rng=random.Random(7)
    )


def claimed(db, *, worker_id: str = WORKER, lease_s: float = 30, **fields: Any) -> dict[str, Any]:
    """A job this worker holds (attempt 1), as the claim returned it."""
    job = make_job(db, owner_id=make_user(db)["id"], **fields)
    with db.transaction() as conn:
        row = attempts.claim_job(conn, job_id=str(job["id"]), worker_id=worker_id, lease_s=lease_s)
    assert row is not None and row["attempt"] == 1
    return row


def rows(db, job: dict[str, Any]) -> dict[str, Any]:
    """Everything recording an outcome may write for `job`."""
    job_id = str(job["id"])
    with db.transaction() as conn:
        return {
            "job": jobs.get_job(conn, job_id=job_id),
            "outbox": dbmod.fetch_all(conn, "SELECT * FROM outbox ORDER BY id"),
            "logs": [(r["level"], r["message"]) for r in job_logs.get_logs(conn, job_id=job_id)],
            "items": dbmod.fetch_all(
                conn,
                "SELECT seq, status, error FROM job_items WHERE job_id = %s ORDER BY seq",
                (job_id,),
            ),
            "worker": dbmod.fetch_one(
                conn, "SELECT jobs_completed, jobs_failed FROM workers WHERE id = %s", (WORKER,)
            ),
        }


def test_completed_stores_the_result_and_counts_it(db, recorder):
    job = claimed(db)
    recorded = recorder.record(job, Ending(Outcome.COMPLETED, result={"files": 3}))
    assert recorded.settlement is Settlement.ACK and recorded.outcome is Outcome.COMPLETED
    assert recorded.announced and recorded.outbox_ids == ()
    after = rows(db, job)
    assert after["job"]["status"] == "completed" and after["job"]["result"] == {"files": 3}
    assert after["job"]["worker_id"] is None and after["job"]["lease_expires_at"] is None
    assert after["job"]["completed_at"] is not None and after["job"]["error"] is None
    assert recorded.job["id"] == after["job"]["id"]
    assert after["worker"] == {"jobs_completed": 1, "jobs_failed": 0}
    assert after["outbox"] == [] and after["logs"] == []


def test_cancelled_ends_the_job_without_counting_it(db, recorder):
    job = claimed(db)
    recorded = recorder.record(job, Ending(Outcome.CANCELLED))
    assert (recorded.settlement, recorded.outcome) == (Settlement.ACK, Outcome.CANCELLED)
    after = rows(db, job)
    assert after["job"]["status"] == "cancelled" and after["job"]["worker_id"] is None
    assert after["job"]["result"] is None and after["job"]["completed_at"] is not None
    assert after["worker"] == {"jobs_completed": 0, "jobs_failed": 0}
    assert after["outbox"] == [] and after["logs"] == []


def test_a_failure_on_the_last_attempt_is_final_and_dead_lettered(db, recorder):
    job = claimed(db, max_attempts=1)
    recorded = recorder.record(job, Ending(Outcome.FAILED, failure=JobFailed("disk on fire")))
    assert (recorded.settlement, recorded.outcome) == (Settlement.DEAD, Outcome.FAILED)
    assert recorded.announced
    after = rows(db, job)
    assert after["job"]["status"] == "failed" and after["job"]["error"] == "disk on fire"
    assert after["job"]["worker_id"] is None and after["job"]["completed_at"] is not None
    assert after["logs"] == [("error", "failed: disk on fire")]
    assert after["worker"] == {"jobs_completed": 0, "jobs_failed": 1}
    assert after["outbox"] == []  # no new message: the delivery itself goes to the DLQ


def test_a_retryable_failure_with_attempts_left_schedules_a_delayed_retry(db, recorder):
    job = claimed(
        db,
        max_attempts=3,
        backoff="fixed",
        backoff_seconds=4,
        items=[("a.bin", 10), ("b.bin", 20)],
    )
    with db.transaction() as conn:
        job_items.mark_items(conn, job_id=str(job["id"]), done=[0], failed={1: "unreadable"})
    recorded = recorder.record(job, Ending(Outcome.FAILED, failure=JobFailed("1 of 2 failed")))
    assert (recorded.settlement, recorded.outcome) == (Settlement.ACK, Outcome.RETRYING)
    after = rows(db, job)
    delay = int(after["outbox"][0]["properties"]["headers"][RETRY_DELAY_HEADER].rstrip("s"))
    assert 4 <= delay <= 5  # fixed 4 s plus at most 25 % jitter
    job_row = after["job"]
    assert job_row["status"] == "retrying" and job_row["error"] == "1 of 2 failed"
    assert job_row["worker_id"] is None and job_row["attempt"] == 1
    assert job_row["completed_at"] is None
    with db.transaction() as conn:
        wait = dbmod.fetch_one(
            conn,
            "SELECT extract(epoch FROM next_attempt_at - now()) AS s FROM jobs WHERE id = %s",
            (str(job["id"]),),
        )["s"]
    assert delay - 2 < float(wait) <= delay
    [message] = after["outbox"]
    assert recorded.outbox_ids == (message["id"],)
    assert message["exchange"] == RETRY_EXCHANGE and message["routing_key"] == "cache"
    assert message["body"] == {"job_id": str(job["id"]), "kind": "cache", "attempt": 2}
    assert message["properties"]["app_id"] == APP_ID
    assert after["logs"] == [("warning", f"attempt 1 failed: 1 of 2 failed; retry in {delay}s")]
    # The failed item is tried again by the next attempt; the done one stays done.
    assert [(i["seq"], i["status"], i["error"]) for i in after["items"]] == [
        (0, "done", None),
        (1, "pending", None),
    ]
    assert after["worker"] == {"jobs_completed": 0, "jobs_failed": 0}


def test_a_non_retryable_failure_is_final_even_with_attempts_left(db, recorder):
    job = claimed(db, max_attempts=3)
    failure = JobFailed("input has no audio stream", retryable=False)
    recorded = recorder.record(job, Ending(Outcome.FAILED, failure=failure))
    assert (recorded.settlement, recorded.outcome) == (Settlement.DEAD, Outcome.FAILED)
    after = rows(db, job)
    assert after["job"]["status"] == "failed" and after["job"]["attempt"] == 1
    assert after["job"]["error"] == "input has no audio stream"
    assert after["outbox"] == []
    assert after["logs"] == [("error", "failed: input has no audio stream")]
    assert after["worker"] == {"jobs_completed": 0, "jobs_failed": 1}


def test_hand_back_returns_the_job_without_using_up_the_attempt(db, recorder):
    job = claimed(db, max_attempts=1)
    recorded = recorder.record(job, Ending(Outcome.HANDBACK))
    assert (recorded.settlement, recorded.outcome) == (Settlement.REQUEUE, Outcome.HANDBACK)
    assert not recorded.announced
    after = rows(db, job)
    assert after["job"]["status"] == "pending" and after["job"]["attempt"] == 0
    assert after["job"]["worker_id"] is None and after["job"]["lease_expires_at"] is None
    assert after["outbox"] == []  # the requeued delivery is its message
    assert after["logs"] == [] and after["worker"] == {"jobs_completed": 0, "jobs_failed": 0}
    # Its one attempt is still there to take.
    with db.transaction() as conn:
        again = attempts.claim_job(conn, job_id=str(job["id"]), worker_id=OTHER, lease_s=30)
    assert again is not None and again["attempt"] == 1


def taken_over(db, job: dict[str, Any]) -> None:
    """Our lease lapsed and another worker claimed the job (its attempt 2)."""
    time.sleep(0.05)
    with db.transaction() as conn:
        assert attempts.claim_job(conn, job_id=str(job["id"]), worker_id=OTHER, lease_s=30)


def requeued_by_the_reaper(db, job: dict[str, Any]) -> None:
    """Our lease lapsed and the reaper put the job back to `pending` with a new message."""
    time.sleep(0.05)
    with db.transaction() as conn:
        assert reaper.requeue_lost(conn, app_id="reaper", stale_s=3600)


@pytest.mark.parametrize("lose", [taken_over, requeued_by_the_reaper])
@pytest.mark.parametrize(
    "ending",
    [
        Ending(Outcome.COMPLETED, result={"files": 1}),
        Ending(Outcome.CANCELLED),
        Ending(Outcome.FAILED, failure=JobFailed("retryable")),
        Ending(Outcome.FAILED, failure=JobFailed("final", retryable=False)),
        Ending(Outcome.LOST),
    ],
    ids=["completed", "cancelled", "retryable", "final", "lost"],
)
def test_a_job_no_longer_held_is_left_alone_and_acked(db, recorder, lose, ending):
    job = claimed(db, lease_s=0.01, max_attempts=3)
    lose(db, job)
    before = rows(db, job)
    recorded = recorder.record(job, ending)
    assert recorded.settlement is Settlement.ACK
    assert recorded.job is None and recorded.outbox_ids == () and not recorded.announced
    assert rows(db, job) == before  # nothing written: not the job, its logs, outbox or counts
    assert before["job"]["status"] in ("running", "pending")


def test_hand_back_of_a_job_no_longer_held_writes_nothing(db, recorder):
    job = claimed(db, lease_s=0.01, max_attempts=3)
    taken_over(db, job)
    before = rows(db, job)
    recorded = recorder.record(job, Ending(Outcome.HANDBACK))
    # The delivery is requeued all the same; its claim will find the job held and drop it.
    assert recorded == Recorded(Settlement.REQUEUE, Outcome.HANDBACK)
    after = rows(db, job)
    assert after == before and after["job"]["worker_id"] == OTHER


class FlakyDatabase:
    """The real database, unreachable for its first `failures` checkouts (either kind)."""

    def __init__(self, database: dbmod.Database, failures: int) -> None:
        self.database = database
        self.failures = failures

    def _refuse(self) -> None:
        if self.failures:
            self.failures -= 1
            raise dbmod.OperationalError("connection refused")

    def transaction(self) -> contextlib.AbstractContextManager[dbmod.Connection]:
        self._refuse()
        return self.database.transaction()

    def autocommit(self) -> contextlib.AbstractContextManager[dbmod.Connection]:
        self._refuse()
        return self.database.autocommit()


def test_an_outcome_is_recorded_once_the_database_is_back(db, settings, recorder, monkeypatch):
    monkeypatch.setattr("jobgate_worker.outcomes.RECORD_RETRY_FIRST_S", 0.01)
    job = claimed(db)
    flaky = OutcomeRecorder(
        FlakyDatabase(db, failures=3), worker_id=WORKER, app_id=APP_ID, settings=settings
    )
    recorded = flaky.record_until_saved(
        job, Ending(Outcome.COMPLETED, result={"ok": True}), give_up=threading.Event()
    )
    assert recorded.settlement is Settlement.ACK
    assert rows(db, job)["job"]["status"] == "completed"


def test_recording_gives_up_when_the_worker_exits(db, settings, recorder):
    job = claimed(db)
    flaky = OutcomeRecorder(
        FlakyDatabase(db, failures=1), worker_id=WORKER, app_id=APP_ID, settings=settings
    )
    give_up = threading.Event()
    give_up.set()
    with pytest.raises(dbmod.OperationalError):
        flaky.record_until_saved(job, Ending(Outcome.COMPLETED), give_up=give_up)
    assert rows(db, job)["job"]["status"] == "running"


def test_a_failed_ending_needs_its_failure():
    with pytest.raises(ValueError):
        Ending(Outcome.FAILED)
    with pytest.raises(ValueError):
        Ending(Outcome.COMPLETED, failure=JobFailed("no"))
