"""The cache worker in-process against real PostgreSQL and RabbitMQ: read, progress, resume,
per-file failures, retries, cancel, hand-back on shutdown."""

from __future__ import annotations

import functools
import json
import os
import time

import pika
import pytest

from jobgate import db as dbmod
from jobgate.broker import DEAD_QUEUE
from jobgate.jobs import job_items, job_logs, submission
from jobgate.paths import CacheRoot
from tests.factories.jobs import enqueue, make_job, wait_for_job
from tests.factories.users import make_user


def write_tree(root, *, dirs: int = 3, files_per_dir: int = 20, size: int = 1000) -> int:
    total = 0
    for d in range(dirs):
        folder = root / "media" / f"d{d}" / "nested"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(files_per_dir):
            data = os.urandom(size + f)
            (folder / f"f{f:03d}.bin").write_bytes(data)
            total += len(data)
    return total


@pytest.fixture
def run_worker(start_worker):
    return functools.partial(start_worker, "cache")


def submit(db, settings, owner, *, directories=("media",), before_queued=None, **fields):
    root = CacheRoot(settings.cache_root, settings.cache_client_prefixes)
    found, missing = root.expand([], list(directories))
    assert not missing
    job = make_job(db, owner_id=owner["id"], items=[(f.relpath, f.size) for f in found], **fields)
    if before_queued is not None:
        before_queued()
    enqueue(db, settings.amqp_url, job)
    return job


def test_cache_job_reads_every_file_and_counts_exactly(db, worker_settings, run_worker, tmp_path):
    total = write_tree(tmp_path / "filespace")
    run_worker()
    job = submit(db, worker_settings, make_user(db))
    done = wait_for_job(db, job["id"], {"completed", "failed"})
    assert done["status"] == "completed", done["error"]
    assert (done["items_done"], done["items_failed"], done["items_total"]) == (60, 0, 60)
    assert done["bytes_done"] == done["bytes_total"] == total
    assert done["result"]["bytes_read_this_attempt"] == total
    with db.transaction() as conn:
        worker_rows = dbmod.fetch_all(conn, "SELECT * FROM workers")
    assert worker_rows and worker_rows[0]["jobs_completed"] == 1


def test_resumed_job_skips_files_already_read(db, worker_settings, run_worker, tmp_path):
    total = write_tree(tmp_path / "filespace")
    owner = make_user(db)
    root = CacheRoot(worker_settings.cache_root, ())
    found, _ = root.expand([], ["media"])
    job = make_job(db, owner_id=owner["id"], items=[(f.relpath, f.size) for f in found])
    with db.transaction() as conn:  # an earlier attempt read the first 25 files, then died
        job_items.mark_items(conn, job_id=str(job["id"]), done=list(range(25)))
    already = sum(f.size for f in found[:25])
    enqueue(db, worker_settings.amqp_url, job)
    run_worker()
    done = wait_for_job(db, job["id"], {"completed", "failed"})
    assert done["status"] == "completed"
    assert done["items_done"] == 60 and done["bytes_done"] == total
    assert done["result"]["bytes_read_this_attempt"] == total - already


def test_unreadable_files_fail_the_job_after_its_retries(db, worker_settings, run_worker, tmp_path):
    write_tree(tmp_path / "filespace", dirs=1, files_per_dir=5)
    run_worker()
    job = submit(
        db,
        worker_settings,
        make_user(db),
        max_attempts=2,
        backoff="fixed",
        backoff_seconds=0.1,
        # The file disappears after submission, as on a real filespace (before the job is
        # queued: a running worker could otherwise read it first).
        before_queued=(tmp_path / "filespace" / "media" / "d0" / "nested" / "f002.bin").unlink,
    )
    done = wait_for_job(db, job["id"], {"completed", "failed"})
    assert done["status"] == "failed"
    assert done["attempt"] == 2
    assert done["error"] == "1 of 5 files could not be read"
    with db.transaction() as conn:
        failed = job_items.failed_items(conn, job_id=str(job["id"]))
        logs = job_logs.get_logs(conn, job_id=str(job["id"]))
    assert [f["path"] for f in failed] == ["media/d0/nested/f002.bin"]
    assert "No such file" in failed[0]["error"]
    assert done["items_done"] == 4
    assert any("retry in" in entry["message"] for entry in logs)
    # Its last message waits in the dead-letter queue for operators.
    conn = pika.BlockingConnection(pika.URLParameters(worker_settings.amqp_url))
    dead = []
    for _ in range(50):
        method, _props, body = conn.channel().basic_get(DEAD_QUEUE, auto_ack=True)
        if method is None:
            if dead:
                break
            time.sleep(0.1)
            continue
        dead.append(json.loads(body)["job_id"])
    conn.close()
    assert str(job["id"]) in dead


def test_cancel_stops_a_running_job_within_a_second(db, worker_settings, run_worker, tmp_path):
    write_tree(tmp_path / "filespace", dirs=2, files_per_dir=10, size=200_000)
    run_worker(cache_read_bandwidth_limit=200_000, cache_read_chunk_bytes=16_384)
    job = submit(db, worker_settings, make_user(db))
    wait_for_job(db, job["id"], {"running"})
    time.sleep(0.5)
    with db.transaction() as conn:
        submission.request_cancel(conn, job_id=str(job["id"]))
    asked = time.monotonic()
    done = wait_for_job(db, job["id"], {"cancelled", "completed", "failed"})
    assert done["status"] == "cancelled"
    assert time.monotonic() - asked < 1.5
    assert done["items_done"] < done["items_total"]
    with db.transaction() as conn:  # what it shows is exactly what was read in full
        assert (
            job_items.item_totals(conn, job_id=str(job["id"]))["bytes_done"] == done["bytes_done"]
        )


def test_shutdown_hands_a_long_job_back(db, worker_settings, run_worker, tmp_path):
    write_tree(tmp_path / "filespace", dirs=2, files_per_dir=10, size=200_000)
    worker = run_worker(cache_read_bandwidth_limit=200_000, worker_grace_seconds=0.5)
    job = submit(db, worker_settings, make_user(db))
    wait_for_job(db, job["id"], {"running"})
    worker.request_stop()
    back = wait_for_job(db, job["id"], {"pending"}, timeout=10)
    assert back["attempt"] == 0 and back["worker_id"] is None
    run_worker()  # the next worker finishes it
    assert wait_for_job(db, job["id"], {"completed"}, timeout=60)["status"] == "completed"


def test_duplicate_delivery_leaves_the_running_attempt_alone(
    db, worker_settings, run_worker, tmp_path
):
    """A second message for a job this worker is running (a redelivery, the reaper's
    re-send) is dropped without touching the running attempt: its lease is still renewed
    and it completes on its one and only attempt."""
    write_tree(tmp_path / "filespace", dirs=1, files_per_dir=10, size=100_000)
    run_worker(cache_read_bandwidth_limit=250_000, worker_concurrency=2, job_lease_seconds=1.5)
    job = submit(db, worker_settings, make_user(db), max_attempts=1)
    wait_for_job(db, job["id"], {"running"})
    enqueue(db, worker_settings.amqp_url, job)
    done = wait_for_job(db, job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 1 and done["items_done"] == 10
