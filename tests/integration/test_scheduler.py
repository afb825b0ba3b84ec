"""The scheduler: `jobgate.schedules.fire_due` against the real database (due at once, the
cadence, missed runs fire once, disabled and deactivated owners wait, a cache run gets its
items, a run whose folder vanished is a failed job), and real `jobgate-scheduler` processes
(two replicas never fire a run twice, messages reach the kind's queue, heartbeats, SIGTERM)."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import time

import pika
import pytest

from jobgate import jobs, schedules, workers
from jobgate.db import execute, fetch_all
from jobgate.errors import InvalidRequest
from jobgate.jobs import job_items, job_logs
from jobgate.outbox import pending_count
from tests.factories.schedules import make_schedule
from tests.factories.users import make_user
from tests.stack import Stack

pytestmark = pytest.mark.usefixtures("filespace")

MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def owner(db):
    return make_user(db)


def fire(database, settings, now=None):
    with database.transaction() as conn:
        return schedules.fire_due(conn, settings=settings, app_id="test", now=now)


def reload(database, schedule):
    with database.transaction() as conn:
        return schedules.get(conn, schedule_id=str(schedule["id"]))


def jobs_of(database, schedule):
    with database.transaction() as conn:
        return fetch_all(
            conn,
            "SELECT * FROM jobs WHERE schedule_id = %s ORDER BY created_at",
            (schedule["id"],),
        )


def test_a_new_schedule_fires_at_once_with_its_items_then_waits_for_its_slot(db, settings, owner):
    schedule = make_schedule(db, owner_id=owner["id"], interval_minutes=10, options={"priority": 8})
    assert schedule["next_run_at"] is not None and schedule["total_runs"] == 0

    [run] = fire(db, settings)
    job = run.job
    assert run.outbox_id is not None and str(job["schedule_id"]) == str(schedule["id"])
    assert job["kind"] == "cache" and job["status"] == "pending" and job["priority"] == 8
    assert job["max_attempts"] == settings.job_max_attempts
    assert job["params"] == {"files": [], "directories": ["00_Media/Farm"], "recursive": True}
    assert (job["items_total"], job["bytes_total"]) == (3, 1000 + 1001 + 1002)
    with db.transaction() as conn:
        assert len(job_items.open_items(conn, job_id=str(job["id"]))) == 3
        assert "run of schedule" in job_logs.get_logs(conn, job_id=str(job["id"]))[0]["message"]
        assert pending_count(conn) == 1

    after = reload(db, schedule)
    assert after["last_run_at"] is not None
    assert after["next_run_at"] == schedule["next_run_at"] + 10 * MINUTE
    assert after["total_runs"] == 1 and after["successful_runs"] == after["failed_runs"] == 0
    assert fire(db, settings) == []  # not due again until its slot


def test_runs_missed_for_several_intervals_fire_once_and_keep_the_cadence(db, settings, owner):
    schedule = make_schedule(db, owner_id=owner["id"], interval_minutes=10)
    t0 = schedule["next_run_at"]
    assert len(fire(db, settings, now=t0)) == 1
    # The scheduler was down for 47 minutes: four slots went by, one run makes up for them.
    assert len(fire(db, settings, now=t0 + 47 * MINUTE)) == 1
    assert reload(db, schedule)["next_run_at"] == t0 + 50 * MINUTE
    assert fire(db, settings, now=t0 + 49 * MINUTE) == []
    assert len(fire(db, settings, now=t0 + 50 * MINUTE)) == 1
    assert reload(db, schedule)["total_runs"] == 3


def test_cron_schedules_move_to_their_next_tick(db, settings, owner):
    schedule = make_schedule(db, owner_id=owner["id"], cron="*/15 * * * *")
    now = schedule["next_run_at"]
    assert len(fire(db, settings, now=now)) == 1
    following = reload(db, schedule)["next_run_at"]
    assert following > now and following.minute % 15 == 0 and following - now <= 15 * MINUTE
    assert (following.second, following.microsecond) == (0, 0)


def test_disabled_schedules_and_deactivated_owners_do_not_fire(db, settings, owner):
    disabled = make_schedule(db, owner_id=owner["id"], enabled=False)
    assert disabled["next_run_at"] is None
    assert fire(db, settings) == []
    with db.transaction() as conn:
        enabled = schedules.toggle(conn, schedule_id=str(disabled["id"]))
        assert enabled["enabled"] and enabled["next_run_at"] is not None  # never ran: due now
        execute(conn, "UPDATE users SET is_active = false WHERE id = %s", (owner["id"],))
    assert fire(db, settings) == []
    with db.transaction() as conn:
        execute(conn, "UPDATE users SET is_active = true WHERE id = %s", (owner["id"],))
    assert len(fire(db, settings)) == 1


def test_a_run_whose_folder_vanished_is_a_failed_job(db, settings, owner, filespace):
    broken = make_schedule(db, owner_id=owner["id"], name="farm")
    healthy = make_schedule(
        db, owner_id=owner["id"], params={"files": ["00_Media/video.mp4"]}, name="video"
    )
    shutil.rmtree(filespace / "00_Media" / "Farm")
    runs = {r.schedule_id: r for r in fire(db, settings)}
    failed = runs[str(broken["id"])]
    assert failed.outbox_id is None and failed.job["status"] == "failed"
    assert failed.job["error"] == "Paths not found: 00_Media/Farm"
    assert failed.job["completed_at"] is not None
    assert runs[str(healthy["id"])].job["status"] == "pending"  # the other run went on
    after = reload(db, broken)
    assert (after["total_runs"], after["failed_runs"], after["successful_runs"]) == (1, 1, 0)
    assert after["next_run_at"] > after["last_run_at"]  # it tries again at its next slot
    with db.transaction() as conn:
        assert pending_count(conn) == 1


def test_timing_changes_retime_the_schedule(db, settings, owner):
    schedule = make_schedule(db, owner_id=owner["id"], interval_minutes=60)
    assert len(fire(db, settings)) == 1
    with db.transaction() as conn:
        ran = schedules.get(conn, schedule_id=str(schedule["id"]))
        shorter = schedules.update(
            conn, schedule_id=str(schedule["id"]), changes={"interval_minutes": 30}
        )
        renamed = schedules.update(conn, schedule_id=str(schedule["id"]), changes={"name": "x"})
        off = schedules.toggle(conn, schedule_id=str(schedule["id"]))
    assert shorter["next_run_at"] == ran["last_run_at"] + 30 * MINUTE
    assert renamed["next_run_at"] == shorter["next_run_at"] and renamed["name"] == "x"
    assert not off["enabled"] and off["next_run_at"] is None
    with pytest.raises(InvalidRequest), db.transaction() as conn:
        schedules.update(conn, schedule_id=str(schedule["id"]), changes={"interval_minutes": 4})


def test_deleting_a_schedule_keeps_its_jobs(db, settings, owner):
    schedule = make_schedule(db, owner_id=owner["id"])
    [run] = fire(db, settings)
    with db.transaction() as conn:
        assert schedules.delete(conn, schedule_id=str(schedule["id"]))
        job = jobs.get_job(conn, job_id=str(run.job["id"]))
    assert job is not None and job["schedule_id"] is None


# --- the process ------------------------------------------------------------------------------


@pytest.fixture
def scheduler_stack(tmp_path, database_url, amqp_url, settings, db):
    """Starts `jobgate-scheduler` replicas against the run's database and vhost."""
    stack = Stack(
        tmp_path / "stack",
        {
            "DATABASE_URL": database_url,
            "AMQP_URL": amqp_url,
            "CACHE_ROOT": settings.cache_root,
            "SCHEDULER_INTERVAL_SECONDS": "0.1",
            "WORKER_HEARTBEAT_SECONDS": "0.2",
        },
    )
    yield stack
    stack.stop()


def queue_depth(amqp_url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def wait_until(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def live_schedulers(database) -> list[dict]:
    with database.transaction() as conn:
        return workers.live_workers(conn, kind=schedules.SCHEDULER_KIND)


def count_jobs(database) -> dict[str, int]:
    with database.transaction() as conn:
        rows = fetch_all(conn, "SELECT schedule_id, count(*) AS n FROM jobs GROUP BY schedule_id")
    return {str(r["schedule_id"]): r["n"] for r in rows}


@pytest.mark.slow
@pytest.mark.usefixtures("empty_job_queues")
def test_two_schedulers_fire_each_due_run_exactly_once(db, owner, amqp_url, scheduler_stack):
    made = [
        make_schedule(db, owner_id=owner["id"], name=f"s{i}", enabled=False) for i in range(150)
    ]
    replicas = [scheduler_stack.start_scheduler(f"scheduler-{i}") for i in range(2)]
    wait_until(lambda: len(live_schedulers(db)) == 2, what="two scheduler heartbeats")
    ids = {str(s["id"]) for s in made}
    for due_time in (1, 2):
        # Every schedule falls due at once, as if `due_time` slots had come round.
        with db.transaction() as conn:
            execute(
                conn, "UPDATE schedules SET enabled = true, next_run_at = now() - interval '1s'"
            )
        wait_until(
            lambda n=due_time: (
                count_jobs(db).keys() == ids and sum(count_jobs(db).values()) >= n * len(ids)
            ),
            what=f"due time {due_time} to fire",
        )
        time.sleep(0.5)  # several more rounds of both replicas: nothing fires twice
        assert count_jobs(db) == dict.fromkeys(ids, due_time)
    # Every run's message reached the cache queue once the outbox rows were published.
    wait_until(
        lambda: queue_depth(amqp_url, "jobgate.jobs.cache") == 2 * len(ids),
        what="the messages on jobgate.jobs.cache",
    )
    with db.transaction() as conn:
        assert pending_count(conn) == 0
    logs = scheduler_stack.log("scheduler-0") + scheduler_stack.log("scheduler-1")
    assert "fired" in logs
    for proc in replicas:
        proc.send_signal(signal.SIGTERM)
    assert [proc.wait(timeout=15) for proc in replicas] == [0, 0]
    assert live_schedulers(db) == []


@pytest.mark.usefixtures("empty_job_queues")
def test_the_scheduler_publishes_what_it_fires_and_exits_0_on_sigint(
    db, owner, amqp_url, scheduler_stack
):
    schedule = make_schedule(db, owner_id=owner["id"])
    proc = scheduler_stack.start_scheduler()
    wait_until(lambda: count_jobs(db).get(str(schedule["id"])) == 1, what="the first run")
    wait_until(lambda: queue_depth(amqp_url, "jobgate.jobs.cache") == 1, what="its message")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=15) == 0
    assert "stopped" in scheduler_stack.log("scheduler")
