"""Cache jobs: read every byte of every file so the filespace cache (LucidLink) holds it.

How an attempt runs:

- Reader threads (`CACHE_READ_CONCURRENCY`, fewer when the job has fewer files) take the
  job's files a run at a time (a few files, or one large one), read each whole with large
  reads into a reused buffer, and record each finished file (`_Work`). The threads are the
  process's, reused by every job (`_Readers`): a job creates none, and a thread stuck in a
  hung mount simply never comes back (a daemon, it never holds up the worker's exit).
- The handler's own thread writes progress when N files finished since the last write or
  T ms passed (seed 000's thresholds), and exactly at the end: it marks the finished files
  in `job_items` in the same transaction as the counters, so a resumed attempt skips them
  and never counts a file twice. Readers go on reading during a write, and what they finish
  meanwhile goes into the next one: when files finish faster than the database takes
  writes, a write carries more than N files, up to 5 % of the job's files
  (`WRITES_PER_JOB`), and readers wait while that many wait to be written. So a job of up
  to 20 x N files, or one read no faster than the database writes, is written every N files
  as before; a large job read from a warm cache at least every 5 % (every ~15 ms at 35,000
  files/s), which also bounds what a crash makes the next attempt read again. A write
  costs the database ~1.5 ms: every 10 files of 10,000 warm small files would be 1,000
  writes, several times the time it takes to read them.
- Seed 000's per-file events leave as one `job.cache.files` message per write, listing the
  files it marks; stats-service sends each file as its own WebSocket message, as before.
- The handler never waits on a reader: a cancel or hand-back is seen within TICK_S (the
  database's cancel flag every 0.5 s once the attempt has run that long), what was finished
  is written, and the attempt ends even with a reader stuck in the filesystem.

Round trips: one query loads the open items with the counters of earlier attempts; a write
is BEGIN, one statement marking the items (and relaxing durability), one writing the
counters (`ctx.progress`), COMMIT; the final totals are the base plus what this attempt
counted, read again only when files failed (for their errors). A one-file job: 2
transactions, 3 statements.

Durability: every write, the last one too, commits without waiting for the WAL flush. A
progress write lost in a database crash only means re-reading a few files. The last write is
followed by the attempt's outcome, which the worker commits durably; a durable commit flushes
the WAL up to its own record, which lies after this write's, so once the outcome is durable
so are the items and counters it reports (and without the outcome the attempt is run again).
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from jobgate.jobs import job_items
from jobgate.jobs.job_items import OpenItem
from jobgate.paths import CacheRoot
from jobgate_worker.context import CANCEL_POLL_SECONDS, JobContext
from jobgate_worker.errors import Cancelled, HandBack, JobFailed

log = logging.getLogger(__name__)

THROUGHPUT_WINDOW_S = 5.0
TICK_S = 0.2
RUN_FILES = 8  # files a reader takes at a time ...
RUN_BYTES = 4 << 20  # ... unless they add up to this many bytes (a large file is a run)
WRITES_PER_JOB = 20  # a progress write carries at most 5 % of the job's files (or N)


class _Interrupted(Exception):
    """A reader stopped early because the attempt is stopping."""


class ByteCounter:
    """Bytes read so far by all reader threads, a sliding window of samples for throughput,
    and an optional bandwidth cap (so cache warming need not saturate the link)."""

    def __init__(self, limit_bps: int = 0, stop: threading.Event | None = None) -> None:
        self._lock = threading.Lock()
        self._stop = stop or threading.Event()
        self.total = 0
        self.limit_bps = limit_bps
        self._started = time.monotonic()
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n
            total = self.total
        while self.limit_bps and not self._stop.is_set():
            ahead = total / self.limit_bps - (time.monotonic() - self._started)
            if ahead <= 0:
                break
            self._stop.wait(min(ahead, TICK_S))

    def rate(self, now: float) -> float | None:
        """Bytes/s over the last THROUGHPUT_WINDOW_S seconds; None until two samples exist."""
        self._samples.append((now, self.total))
        while len(self._samples) > 2 and now - self._samples[0][0] > THROUGHPUT_WINDOW_S:
            self._samples.popleft()
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None


class _Readers:
    """Daemon threads shared by every cache job of the process, started only when none is
    idle. Creating threads per job would cost a one-file job more than its read; a thread
    that hangs in the filesystem is never idle again, so the next job starts another."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads that will take a task without one being queued for them
        self._started = 0

    def start(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._started += 1
                name = f"cache-read_{self._started}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()
        self._tasks.put(task)

    def _serve(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                task()
            except BaseException:  # a reader's bug must not end the thread
                log.exception("cache reader failed")
            del task
            with self._lock:
                self._idle += 1


_READERS = _Readers()
_LOCAL = threading.local()  # each reader thread's read buffer, reused across jobs


def _buffer(size: int) -> memoryview:
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or len(buf) != size:
        buf = _LOCAL.buf = memoryview(bytearray(size))
    return buf


def read_file(
    root: CacheRoot,
    relpath: str,
    dir_cache: dict[str, str],
    buf: memoryview,
    stop: threading.Event,
    counter: ByteCounter,
) -> int:
    """Read a whole file into `buf` (over and over); return its byte count. Checks `stop`
    between reads."""
    total = 0
    bufs = [buf]
    fd = root.open_item(relpath, dir_cache)
    try:
        while n := os.readv(fd, bufs):
            total += n
            counter.add(n)
            if stop.is_set():
                raise _Interrupted
    finally:
        os.close(fd)
    return total


class _Work:
    """The attempt's files, handed to readers in runs, and the files they finished that no
    progress write has taken yet. A reader waits while `cap` finished files wait to be
    written, so the database never lags reading by more than that."""

    def __init__(self, items: Sequence[OpenItem], readers: int, threshold: int, cap: int) -> None:
        self._items = items
        self._next = 0
        self._cond = threading.Condition(threading.Lock())
        self._finished: collections.deque[tuple[OpenItem, int, str | None]]
        self._finished = collections.deque()
        self._threshold = threshold
        self.cap = cap
        self._taken = 0  # finished files taken for writing
        self._readers = readers
        self.ready = threading.Event()  # N files wait to be written, or every reader left
        if readers <= 0:
            self.ready.set()

    def take(self) -> Sequence[OpenItem]:
        """The next run of files (empty once all are taken)."""
        with self._cond:
            start = end = self._next
            nbytes = 0
            while end < len(self._items) and end - start < RUN_FILES and nbytes < RUN_BYTES:
                nbytes += self._items[end].size
                end += 1
            self._next = end
        return self._items[start:end]

    def finish(self, item: OpenItem, nbytes: int, error: str | None, stop: threading.Event) -> None:
        with self._cond:
            self._finished.append((item, nbytes, error))
            if len(self._finished) >= self._threshold:
                self.ready.set()
            while len(self._finished) >= self.cap and not stop.is_set():
                self._cond.wait(TICK_S)

    def reader_left(self) -> None:
        with self._cond:
            self._readers -= 1
            if self._readers <= 0:
                self.ready.set()

    def take_finished(self, limit: int) -> tuple[list[tuple[OpenItem, int, str | None]], bool]:
        """The oldest finished files not written yet (at most `limit`), and whether they
        are the last (every file finished, or every reader left: nothing more will)."""
        with self._cond:
            waiting = self._finished
            finished = [waiting.popleft() for _ in range(min(limit, len(waiting)))]
            self._taken += len(finished)
            over = not waiting and (self._readers <= 0 or self._taken == len(self._items))
            if self._readers > 0 and len(waiting) < self._threshold:
                self.ready.clear()
            self._cond.notify_all()
        return finished, over


class _Attempt:
    """One attempt of a cache job: its readers, its counters, its progress writes."""

    def __init__(self, ctx: JobContext, items: list[OpenItem], base: dict[str, int]) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.items = items
        self.root = CacheRoot(settings.cache_root, settings.cache_client_prefixes)
        self.chunk = settings.cache_read_chunk_bytes
        self.file_threshold = max(1, settings.cache_progress_file_threshold)
        self.time_threshold = settings.cache_progress_time_threshold_ms / 1000
        self.stop = threading.Event()
        self.counter = ByteCounter(settings.cache_read_bandwidth_limit, self.stop)
        self.dir_cache: dict[str, str] = {}  # folder -> its real path, checked inside the root
        self.readers = min(max(1, settings.cache_read_concurrency), len(items))
        # At most 5 % of the job's files per write (never fewer than N): see the docstring.
        cap = max(self.file_threshold, -(-int(ctx.job["items_total"]) // WRITES_PER_JOB))
        self.work = _Work(items, self.readers, self.file_threshold, cap)
        self.bytes_total = int(ctx.job["bytes_total"])
        # Counters as written to the database: the base (earlier attempts) plus this one's.
        self.done = base["items_done"]
        self.failed = 0  # files that failed before are read again, so only this attempt's
        self.bytes = base["bytes_done"]
        self.finished_here = 0  # files this attempt finished (done or failed) and wrote
        self.read_here = 0  # bytes read of those files (read counts, not stored sizes)
        self.started = time.monotonic()
        self.last_write = self.started
        self.counter.rate(self.started)  # first sample of the throughput window

    # --- readers ----------------------------------------------------------------------

    def _read(self) -> None:
        """A reader: runs of files until none is left or the attempt stops."""
        work, stop = self.work, self.stop
        try:
            buf = _buffer(self.chunk)
            while not stop.is_set() and (run := work.take()):
                for item in run:
                    if stop.is_set():
                        return
                    try:
                        n = read_file(self.root, item.key, self.dir_cache, buf, stop, self.counter)
                    except _Interrupted:
                        return
                    except Exception as exc:  # noqa: BLE001 - the file fails, not the job
                        work.finish(item, 0, _describe(exc), stop)
                    else:
                        work.finish(item, n, None, stop)
        finally:
            work.reader_left()

    # --- the handler's thread ---------------------------------------------------------

    def _check(self) -> None:
        """Stop if asked to. The database's cancel flag (a fallback for a lost control
        message) is polled only once the attempt has run CANCEL_POLL_SECONDS: a short job
        costs no extra round trip."""
        ctx = self.ctx
        if (
            ctx.cancel_event.is_set()
            or ctx.stop_event.is_set()
            or time.monotonic() - self.started >= CANCEL_POLL_SECONDS
        ):
            ctx.check()

    def _write(self, finished: list[tuple[OpenItem, int, str | None]], *, final: bool) -> None:
        """Mark `finished` in `job_items` and write the counters, in one transaction."""
        ctx = self.ctx
        now = time.monotonic()
        rate = self.counter.rate(now)
        done: list[int] = []
        failed: dict[int, str] = {}
        done_bytes = read_bytes = 0
        files = []
        for item, nbytes, error in finished:
            if error is None:
                done.append(item.seq)
                done_bytes += item.size
            else:
                failed[item.seq] = error
            read_bytes += nbytes
            files.append(
                {
                    "path": item.key,
                    "size": item.size,
                    "status": "done" if error is None else "failed",
                    "error": error,
                }
            )
        if files:
            # Seed 000's per-file events, live only (best effort, never in the database).
            ctx.announce("files", {"files": files})
        items_done, items_failed = self.done + len(done), self.failed + len(failed)
        nbytes = self.bytes + done_bytes
        read_here = self.read_here + read_bytes
        in_flight = 0 if final else max(0, self.counter.total - read_here)
        with ctx.db.transaction() as conn:
            job_items.mark_items(conn, job_id=ctx.job_id, done=done, failed=failed, durable=False)
            ctx.progress(
                conn,
                items_done=items_done,
                items_failed=items_failed,
                bytes_done=min(nbytes + in_flight, self.bytes_total),
                current_item=None if final or not finished else finished[-1][0].key,
                throughput_bps=rate,
            )
        self.done, self.failed, self.bytes = items_done, items_failed, nbytes
        self.finished_here += len(finished)
        self.read_here = read_here
        self.last_write = now

    def run(self) -> dict[str, Any]:
        for _ in range(self.readers):
            _READERS.start(self._read)
        work = self.work
        try:
            while True:
                due = self.last_write + self.time_threshold - time.monotonic()
                work.ready.wait(max(0.0, min(TICK_S, due)))
                self._check()
                if work.ready.is_set() or due <= 0:
                    finished, over = work.take_finished(work.cap)
                    self._write(finished, final=over)
                    if over:
                        break
        except (Cancelled, HandBack):
            # Keep what was read, exactly: files done so far count, partly read ones do not.
            self.stop.set()
            self._write(work.take_finished(len(self.items))[0], final=True)
            raise
        finally:
            self.stop.set()  # readers stop at their next read
        if self.finished_here != len(self.items):
            raise RuntimeError(
                f"readers stopped after {self.finished_here} of {len(self.items)} files"
            )
        return self._result()

    def _result(self) -> dict[str, Any]:
        ctx = self.ctx
        done, nbytes = self.done, self.bytes
        if self.failed:
            with ctx.db.transaction() as conn:
                totals = job_items.item_totals(conn, job_id=ctx.job_id)
                failures = job_items.failed_items(conn, job_id=ctx.job_id, limit=20)
            raise JobFailed(
                f"{totals['items_failed']} of {ctx.job['items_total']} files could not be read",
                details=failures,
            )
        return {
            "files": done,
            "bytes": nbytes,
            "seconds": round(time.monotonic() - self.started, 3),
            "bytes_read_this_attempt": self.read_here,
        }


def run(ctx: JobContext) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        # Pending files, and files that failed in an earlier attempt: both are read now.
        items, base = job_items.open_items_with_totals(conn, job_id=ctx.job_id)
    if base["items_done"]:
        ctx.log("info", f"resuming: {base['items_done']} files already read are skipped")
    return _Attempt(ctx, items, base).run()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or type(exc).__name__}" + (
            f" ({exc.filename})" if exc.filename else ""
        )
    return str(exc) or type(exc).__name__
