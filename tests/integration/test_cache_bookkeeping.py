"""The cache handler's bookkeeping against real PostgreSQL, run directly (no broker): how
many transactions and statements a job costs, per-file events in batches, reader threads
reused across jobs, a stuck reader that must not keep a cancelled job running, and the
`job_items` calls it relies on."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jobgate import db as dbmod
from jobgate.jobs import attempts, job_items
from jobgate_worker.context import JobContext
from jobgate_worker.errors import Cancelled
from jobgate_worker.kinds import cache
from tests.factories.jobs import make_job
from tests.factories.users import make_user


class _Cursor:
    def __init__(self, cursor: Any, calls: list[str]) -> None:
        self._cursor, self._calls = cursor, calls

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cursor.close()

    def execute(self, sql: str, params: Any = None) -> None:
        self._calls.append(sql)
        self._cursor.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _Connection:
    def __init__(self, conn: Any, calls: list[str]) -> None:
        self._conn, self._calls = conn, calls

    def cursor(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._conn.cursor(*args, **kwargs), self._calls)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class CountingDatabase:
    """The real pool; counts transactions and the statements sent in them."""

    def __init__(self, database: dbmod.Database) -> None:
        self.database = database
        self.transactions = 0
        self.statements: list[str] = []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        self.transactions += 1
        with self.database.transaction() as conn:
            yield _Connection(conn, self.statements)


class Events:
    """Records what the handler announces (`JobContext.announce` -> `EventEmitter.job`)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def job(self, kind: str, event: str, job_id: str, data: Any = None, **_: Any) -> None:
        self.sent.append((event, data or {}))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [data for name, data in self.sent if name == event]


def write_files(root, count: int, size: int = 100) -> list[tuple[str, int]]:
    items = []
    for i in range(count):
        folder = root / "media" / f"d{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:03d}.bin").write_bytes(b"x" * (size + i))
        items.append((f"media/d{i % 3}/f{i:03d}.bin", size + i))
    return items


def claimed_context(db, settings, items, **overrides) -> tuple[JobContext, CountingDatabase]:
    job = make_job(db, owner_id=make_user(db)["id"], items=items)
    with db.transaction() as conn:
        running = attempts.claim_job(conn, job_id=str(job["id"]), worker_id="w1", lease_s=60)
    counting = CountingDatabase(db)
    ctx = JobContext(
        job=running,
        params={},
        worker_id="w1",
        database=counting,  # type: ignore[arg-type]
        settings=settings.replace(**overrides),
        events=Events(),  # type: ignore[arg-type]
        cancel_event=threading.Event(),
        stop_event=threading.Event(),
    )
    return ctx, counting


def job_row(db, job_id: str) -> dict[str, Any]:
    with db.transaction() as conn:
        return dbmod.fetch_one(conn, "SELECT * FROM jobs WHERE id = %s", (job_id,))


def test_a_one_file_job_costs_two_transactions_of_three_statements(db, settings, tmp_path):
    items = write_files(tmp_path / "filespace", 1)
    ctx, counting = claimed_context(db, settings, items)
    result = cache.run(ctx)
    assert result["files"] == 1 and result["bytes"] == items[0][1]
    # Load items and base totals; then one write: mark the item, write the counters.
    assert counting.transactions == 2
    assert len(counting.statements) == 3, counting.statements
    row = job_row(db, ctx.job_id)
    assert (row["items_done"], row["bytes_done"]) == (1, items[0][1])


def test_counters_are_exact_and_files_are_announced_once_in_batches(db, settings, tmp_path):
    items = write_files(tmp_path / "filespace", 40)
    ctx, counting = claimed_context(
        db,
        settings,
        items,
        cache_progress_file_threshold=5,
        cache_progress_time_threshold_ms=600_000,  # writes by file count only
        cache_read_concurrency=3,
    )
    assert counting.transactions == 0
    with db.transaction() as conn:  # an earlier attempt read the first 10
        job_items.mark_items(conn, job_id=ctx.job_id, done=list(range(10)))
    result = cache.run(ctx)
    total = sum(size for _, size in items)
    assert (result["files"], result["bytes"]) == (40, total)
    assert result["bytes_read_this_attempt"] == sum(size for _, size in items[10:])
    row = job_row(db, ctx.job_id)
    assert (row["items_done"], row["items_failed"], row["bytes_done"]) == (40, 0, total)
    events: Events = ctx.events  # type: ignore[assignment]
    batches = events.named("files")
    announced = [f["path"] for batch in batches for f in batch["files"]]
    assert sorted(announced) == sorted(path for path, _ in items[10:])  # each file once
    assert len(batches) < len(announced) and not events.named("file")
    assert all(f["status"] == "done" and f["error"] is None for b in batches for f in b["files"])
    # A job of under 100 x N files is written every N files: 30 files, 6 writes of 5.
    assert [len(b["files"]) for b in batches] == [5] * 6
    assert len(events.named("progress")) == len(batches)
    assert counting.transactions == 1 + 1 + 6  # the load, the "resuming" log line, 6 writes


def test_a_write_carries_at_most_five_percent_of_a_large_jobs_files(db, settings, tmp_path):
    items = write_files(tmp_path / "filespace", 500, size=10)
    ctx, counting = claimed_context(db, settings, items, cache_progress_file_threshold=1)
    assert cache.run(ctx)["files"] == 500
    events: Events = ctx.events  # type: ignore[assignment]
    sizes = [len(b["files"]) for b in events.named("files")]
    # Readers outpace the database: a write may carry more than N = 1 file, never over 25.
    assert cache.WRITES_PER_JOB == 20
    assert sum(sizes) == 500 and max(sizes) <= 25 and len(sizes) >= 20
    assert counting.transactions == 1 + len(sizes)


def test_failed_files_fail_the_job_with_their_errors(db, settings, tmp_path):
    items = write_files(tmp_path / "filespace", 6)
    (tmp_path / "filespace" / items[2][0]).unlink()
    ctx, _ = claimed_context(db, settings, items)
    with pytest.raises(cache.JobFailed) as failed:
        cache.run(ctx)
    assert str(failed.value) == "1 of 6 files could not be read"
    assert [f["path"] for f in failed.value.details] == [items[2][0]]
    row = job_row(db, ctx.job_id)
    assert (row["items_done"], row["items_failed"]) == (5, 1)
    events: Events = ctx.events  # type: ignore[assignment]
    statuses = {f["path"]: f["status"] for b in events.named("files") for f in b["files"]}
    assert statuses[items[2][0]] == "failed" and len(statuses) == 6


def test_reader_threads_are_reused_by_the_next_job(db, settings, tmp_path, monkeypatch):
    items = write_files(tmp_path / "filespace", 1)
    cache.run(claimed_context(db, settings, items)[0])  # the process's reader exists now
    started: list[str] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    for _ in range(3):
        assert cache.run(claimed_context(db, settings, items)[0])["files"] == 1
    assert started == []


def test_a_reader_stuck_in_the_filesystem_does_not_keep_a_cancelled_job(
    db, settings, tmp_path, monkeypatch
):
    items = write_files(tmp_path / "filespace", 12)
    hung = threading.Event()
    real_read = cache.read_file

    def read_file(root, relpath, *args: Any) -> int:
        if relpath == items[5][0]:
            hung.set()
            threading.Event().wait(30)  # a hung mount: never returns in time
        return real_read(root, relpath, *args)

    monkeypatch.setattr(cache, "read_file", read_file)
    ctx, _ = claimed_context(db, settings, items, cache_read_concurrency=1)
    threading.Timer(0.3, ctx.cancel_event.set).start()
    began = time.monotonic()
    with pytest.raises(Cancelled):
        cache.run(ctx)
    assert hung.is_set() and time.monotonic() - began < 10  # the read hangs for 30 s
    row = job_row(db, ctx.job_id)
    with db.transaction() as conn:
        totals = job_items.item_totals(conn, job_id=ctx.job_id)
    assert row["items_done"] == totals["items_done"] == 5  # exactly what was read in full
    assert row["bytes_done"] == totals["bytes_done"] == sum(size for _, size in items[:5])


def test_open_items_and_totals_come_in_one_query(db):
    job = make_job(db, owner_id=make_user(db)["id"], items=[("a", 1), ("b", 2), ("c", 3)])
    job_id = str(job["id"])
    with db.transaction() as conn:
        job_items.mark_items(conn, job_id=job_id, done=[0], failed={2: "gone"})
        items, totals = job_items.open_items_with_totals(conn, job_id=job_id)
        job_items.mark_items(conn, job_id=job_id, done=[1, 2])
        none_left = job_items.open_items_with_totals(conn, job_id=job_id)
    assert [(i.seq, i.key, i.size) for i in items] == [(1, "b", 2), (2, "c", 3)]
    assert totals == {"items_done": 1, "items_failed": 1, "bytes_done": 1}
    assert none_left == ([], {"items_done": 3, "items_failed": 0, "bytes_done": 6})


def test_marking_items_is_one_statement_and_may_relax_durability(db):
    job = make_job(db, owner_id=make_user(db)["id"], items=[("a", 0), ("b", 0), ("c", 0)])
    job_id = str(job["id"])
    counting = CountingDatabase(db)
    with counting.transaction() as conn:
        job_items.mark_items(
            conn, job_id=job_id, done=[0, 1], failed={2: "gone"}, sizes={1: 7}, durable=False
        )
        commit_mode = dbmod.fetch_one(conn, "SHOW synchronous_commit")["synchronous_commit"]
    assert len(counting.statements) == 2  # the mark, then the SHOW above
    assert commit_mode == "off"
    with db.transaction() as conn:
        rows = dbmod.fetch_all(
            conn,
            "SELECT seq, status, error, size FROM job_items WHERE job_id = %s ORDER BY seq",
            (job_id,),
        )
        default_mode = dbmod.fetch_one(conn, "SHOW synchronous_commit")["synchronous_commit"]
    assert [tuple(r.values()) for r in rows] == [
        (0, "done", None, 0),
        (1, "done", None, 7),
        (2, "failed", "gone", 0),
    ]
    assert default_mode == "on"
