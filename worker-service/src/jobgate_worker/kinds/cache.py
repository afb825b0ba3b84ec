"""Cache jobs: read every byte of every file so the filespace cache (LucidLink) holds it.

A few files are read in parallel with large sequential reads into reused buffers.
Progress is written when N files finished or T ms passed (seed 000's thresholds), and
exactly at the end. Finished files are marked in `job_items` in the same transaction as
the counters, so a resumed attempt skips them and never counts a file twice.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from jobgate import db
from jobgate.jobs import job_items
from jobgate.paths import CacheRoot
from jobgate_worker.context import JobContext
from jobgate_worker.errors import Cancelled, HandBack, JobFailed

THROUGHPUT_WINDOW_S = 5.0
TICK_S = 0.2


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


def read_file(
    root: CacheRoot,
    relpath: str,
    dir_cache: dict[str, str],
    chunk: int,
    stop: threading.Event,
    counter: ByteCounter,
    local: threading.local,
) -> int:
    """Read a whole file; return its byte count. Checks `stop` between chunks."""
    buf = getattr(local, "buf", None)
    if buf is None or len(buf) != chunk:
        buf = local.buf = memoryview(bytearray(chunk))
    total = 0
    with open(root.open_item(relpath, dir_cache), "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
            counter.add(n)
            if stop.is_set():
                raise _Interrupted
    return total


class _Batch:
    """Finished files not yet written to the database."""

    def __init__(self) -> None:
        self.done: list[int] = []
        self.failed: dict[int, str] = {}
        self.done_bytes = 0
        self.last_path: str | None = None

    def __len__(self) -> int:
        return len(self.done) + len(self.failed)


def run(ctx: JobContext) -> dict[str, Any]:
    settings = ctx.settings
    root = CacheRoot(settings.cache_root, settings.cache_client_prefixes)
    with ctx.db.transaction() as conn:
        # Pending files, and files that failed in an earlier attempt: both are read now.
        items = job_items.open_items(conn, job_id=ctx.job_id)
        base = job_items.item_totals(conn, job_id=ctx.job_id)
    if base["items_done"]:
        ctx.log("info", f"resuming: {base['items_done']} files already read are skipped")

    file_threshold = max(1, settings.cache_progress_file_threshold)
    time_threshold = settings.cache_progress_time_threshold_ms / 1000
    stop = threading.Event()
    counter = ByteCounter(settings.cache_read_bandwidth_limit, stop)
    local = threading.local()
    dir_cache: dict[str, str] = {}  # folder -> its real path, checked inside the root
    state = {"done": base["items_done"], "bytes": base["bytes_done"], "failed": 0}
    batch = _Batch()
    started = time.monotonic()
    last_flush = started
    counter.rate(started)  # first sample of the throughput window

    completed_bytes = [0]  # bytes of files finished in this attempt (read counts, not sizes)

    def flush(final: bool = False) -> None:
        nonlocal batch, last_flush
        now = time.monotonic()
        rate = counter.rate(now)
        with ctx.db.transaction() as conn:
            if not final:
                # A progress write lost in a database crash only means re-reading a few files;
                # not waiting for the WAL flush halves the cost of each one.
                db.relax_durability(conn)
            job_items.mark_items(conn, job_id=ctx.job_id, done=batch.done, failed=batch.failed)
            state["done"] += len(batch.done)
            state["failed"] += len(batch.failed)
            state["bytes"] += batch.done_bytes
            in_flight = 0 if final else max(0, counter.total - completed_bytes[0])
            ctx.progress(
                conn,
                items_done=state["done"],
                items_failed=state["failed"],
                bytes_done=min(state["bytes"] + in_flight, int(ctx.job["bytes_total"])),
                current_item=None if final else batch.last_path,
                throughput_bps=rate,
            )
        batch = _Batch()
        last_flush = now

    item_iter = iter(items)
    window = max(1, settings.cache_read_concurrency) * 2
    futures: dict[Future, dict[str, Any]] = {}
    pool = ThreadPoolExecutor(
        max(1, settings.cache_read_concurrency), thread_name_prefix="cache-read"
    )

    def submit_more() -> None:
        while len(futures) < window:
            item = next(item_iter, None)
            if item is None:
                return
            fut = pool.submit(
                read_file,
                root,
                item["key"],
                dir_cache,
                settings.cache_read_chunk_bytes,
                stop,
                counter,
                local,
            )
            futures[fut] = item

    try:
        submit_more()
        while futures:
            finished, _ = wait(list(futures), timeout=TICK_S, return_when=FIRST_COMPLETED)
            for fut in finished:
                item = futures.pop(fut)
                exc = fut.exception()
                if exc is None:
                    completed_bytes[0] += fut.result()
                    batch.done.append(item["seq"])
                    batch.done_bytes += int(item["size"])
                elif isinstance(exc, _Interrupted):
                    continue
                else:
                    batch.failed[item["seq"]] = _describe(exc)
                batch.last_path = item["key"]
                # Seed 000's per-file events, live only (best effort, never in the database).
                ctx.announce(
                    "file",
                    {
                        "path": item["key"],
                        "size": int(item["size"]),
                        "status": "done" if exc is None else "failed",
                        "error": None if exc is None else batch.failed[item["seq"]],
                    },
                )
            submit_more()
            ctx.check()
            now = time.monotonic()
            if len(batch) >= file_threshold or now - last_flush >= time_threshold:
                flush()
    except (Cancelled, HandBack):
        # Keep what was read, exactly: files done so far count, partly read ones do not.
        flush(final=True)
        raise
    finally:
        stop.set()  # readers stop at their next chunk
        # Never wait for a reader stuck in the filesystem: the attempt's outcome must be
        # recorded now (a hung mount must not keep a cancelled job `running`).
        pool.shutdown(wait=False, cancel_futures=True)
    flush(final=True)
    with ctx.db.transaction() as conn:
        totals = job_items.item_totals(conn, job_id=ctx.job_id)
        if totals["items_failed"]:
            failures = job_items.failed_items(conn, job_id=ctx.job_id, limit=20)
    seconds = time.monotonic() - started
    if totals["items_failed"]:
        raise JobFailed(
            f"{totals['items_failed']} of {ctx.job['items_total']} files could not be read",
            details=failures,
        )
    return {
        "files": totals["items_done"],
        "bytes": totals["bytes_done"],
        "seconds": round(seconds, 3),
        "bytes_read_this_attempt": completed_bytes[0],
    }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or type(exc).__name__}" + (
            f" ({exc.filename})" if exc.filename else ""
        )
    return str(exc) or type(exc).__name__
