"""Task jobs (seed 004): a named handler run on the task's payload, in a child process.

Handlers are users' code, so they never run in the worker itself: each task is one call of
`jobgate.task_handlers.call` in a pool of reusable child processes (pebble's ProcessPool),
one pool per worker process with `TASK_CONCURRENCY` children, as many as the worker's job
threads. The pool enforces the task's `timeout` by killing the child; a child that exits
or crashes fails its task only, and the pool starts a fresh one for the next task. Cancel
and hand-back kill the child too: the job thread polls for them every `POLL_S` while it
waits.

Children come from a `forkserver`, not from the worker, whose threads and connections a
fork must not copy; the fork server preloads this module (and so `jobgate.task_handlers`).
A child ends with the worker, `kill -9` included. The pool is made
when the worker starts (`background`, which every worker process of the kind runs) or on
the first task, and stopped when the last worker of the process stops (or at exit).
"""

from __future__ import annotations

import atexit
import concurrent.futures as futures
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pebble import ProcessExpired, ProcessPool

from jobgate import db, task_handlers
from jobgate.config import Settings
from jobgate.task_handlers import Called, TaskInfo
from jobgate_worker.children import die_with_worker
from jobgate_worker.context import JobContext
from jobgate_worker.errors import Cancelled, HandBack, JobFailed

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often a waiting task looks for cancel and hand-back
# A child gone while its task is still open (pebble reports no exit 0, and may miss a crash
# racing its acknowledgement): how long to let the pool report it before we do.
LOST_CHILD_GRACE_S = 5.0
POOL_STOP_S = 10.0
SETTINGS_FOR_HANDLERS = (
    "task_http_allowed_hosts",
    "task_http_timeout_s",
    "task_max_result_bytes",
)

_FORKS = multiprocessing.get_context("forkserver")


def _preload(module: str) -> None:
    """Add `module` to the fork server's preloads, keeping what others set (the scrape
    worker sets its own); it only counts if the fork server has not started yet."""
    current = list(getattr(multiprocessing.forkserver._forkserver, "_preload_modules", []))
    if module not in current:
        _FORKS.set_forkserver_preload([*current, module])


_preload(__name__)  # and so jobgate.task_handlers


class HandlerPool:
    """This process's pool of handler processes: made once, shared by its job threads,
    replaced if it breaks, stopped when its last user (a worker) stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPool | None = None
        self._users = 0

    def get(self, size: int) -> ProcessPool:
        """The running pool (made with `size` children if there is none)."""
        with self._lock:
            if self._pool is not None and not self._pool.active:
                log.warning("handler pool is broken; starting a new one")
                self._stop_locked()
            if self._pool is None:
                self._pool = ProcessPool(
                    max_workers=max(1, size), initializer=die_with_worker, context=_FORKS
                )
                self._pool.active  # noqa: B018 - starts the children now, not on the first task
                log.info("handler pool started with %d processes", max(1, size))
            return self._pool

    def discard(self, pool: ProcessPool) -> None:
        """Stop `pool` if it is still the current one (it broke): the next task makes anew."""
        with self._lock:
            if self._pool is pool:
                self._stop_locked()

    def acquire(self, size: int) -> None:
        with self._lock:
            self._users += 1
        self.get(size)

    def release(self) -> None:
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0:
                self._stop_locked()

    def shutdown(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.stop()
        try:
            pool.join(timeout=POOL_STOP_S)
        except Exception as exc:  # noqa: BLE001 - a broken pool may not join cleanly
            log.warning("handler pool did not stop cleanly: %s", exc)


POOL = HandlerPool()
atexit.register(POOL.shutdown)


def background(settings: Settings, database: db.Database, stop: threading.Event) -> None:
    """Start the handler processes with the worker, and stop them once it has stopped
    (the worker sets `stop` after its last job is settled)."""
    POOL.acquire(settings.task_concurrency)
    try:
        stop.wait()
    finally:
        POOL.release()


def run(ctx: JobContext) -> Any:
    """Run the task's handler in a child process; its JSON return value is the result."""
    params = ctx.params
    name = params["name"]
    # The gateway stores the resolved handler; a scheduled run comes with the params as the
    # schedule holds them, so it may still have to be resolved here.
    handler = params.get("handler") or task_handlers.resolve_name(
        handler=None, name=name, default=ctx.settings.task_default_handler
    )
    info = TaskInfo(
        job_id=ctx.job_id,
        name=name,
        handler=handler,
        attempt=int(ctx.job["attempt"]),
        max_attempts=int(ctx.job["max_attempts"]),
        timeout=int(params["timeout"]),
        description=params.get("description"),
        owner_id=str(ctx.job["owner_id"]),
        settings={key: getattr(ctx.settings, key) for key in SETTINGS_FOR_HANDLERS},
    )
    log.info("task %s (%r): handler %s started", ctx.job_id, name, handler)
    ctx.log("info", f"task '{name}' started: handler '{handler}' (attempt {info.attempt})")
    started = time.monotonic()
    try:
        result = _outcome(ctx, _call(ctx, handler, params.get("payload") or {}, info))
    except JobFailed as exc:
        log.info("task %s (%r): handler %s failed: %s", ctx.job_id, name, handler, exc.message)
        raise
    except (Cancelled, HandBack) as exc:
        why = "cancelled" if isinstance(exc, Cancelled) else "handed back"
        log.info("task %s (%r): handler %s stopped: %s", ctx.job_id, name, handler, why)
        raise
    seconds = time.monotonic() - started
    log.info("task %s (%r): handler %s done in %.3fs", ctx.job_id, name, handler, seconds)
    ctx.log("info", f"task '{name}' completed in {seconds:.3f} s")
    return result


def _call(ctx: JobContext, handler: str, payload: dict[str, Any], info: TaskInfo) -> Called:
    """One call in the pool, watched: cancel and hand-back kill the child; a timeout, a
    dead child or a broken pool become the attempt's failure."""
    pool = POOL.get(ctx.settings.task_concurrency)
    args = (handler, payload, info)
    try:
        future = pool.schedule(task_handlers.call, args=args, timeout=info.timeout)
    except RuntimeError:  # the pool broke since it was handed out: one fresh try
        POOL.discard(pool)
        pool = POOL.get(ctx.settings.task_concurrency)
        future = pool.schedule(task_handlers.call, args=args, timeout=info.timeout)
    watch = _ChildWatch(pool, future)
    while not future.done():
        reason = ctx.stop_reason()
        if reason is not None:
            future.cancel()  # the pool kills the child and starts another
            raise reason()
        if watch.lost_child():
            future.cancel()
            raise JobFailed(f"handler process died ({_exit_text(watch.exit_code())})")
        futures.wait([future], timeout=POLL_S)
    try:
        return future.result()
    except futures.TimeoutError:
        raise JobFailed(f"timed out after {info.timeout} s") from None
    except ProcessExpired as exc:
        raise JobFailed(f"handler process died ({_exit_text(exc.exitcode)})") from None
    except futures.CancelledError:
        raise JobFailed("the handler process was stopped") from None
    except (BrokenProcessPool, RuntimeError) as exc:
        POOL.discard(pool)
        code = watch.exit_code()
        if code is not None:
            raise JobFailed(f"handler process died ({_exit_text(code)})") from None
        raise JobFailed(f"the handler pool failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - anything else the pool reports fails the attempt
        raise JobFailed(f"{type(exc).__name__}: {exc}") from None


def _outcome(ctx: JobContext, called: Called) -> Any:
    """The result of a handler call, or the attempt's failure."""
    if called.outcome == "ok":
        return json.loads(called.value)
    if called.outcome == "error":
        ctx.log("error", f"{called.value}\n{called.detail}".rstrip())
        raise JobFailed(called.value)
    if called.outcome == "unknown":
        raise JobFailed(
            f"Unknown handler '{called.value}' (available: {called.detail})", retryable=False
        )
    # `permanent` (PermanentFailure, a handler that does not load) or `invalid` (the result)
    raise JobFailed(called.value, retryable=False)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"exit code {code}: {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


class _ChildWatch:
    """Which child runs a task, read from the pool (pebble 5.2's bookkeeping, best effort):
    pebble reports nothing when a child exits 0, and a child that dies before the pool saw
    its task start breaks the whole pool. Either way the task must not wait for its
    timeout."""

    def __init__(self, pool: ProcessPool, future: futures.Future) -> None:
        self.pool = pool
        self.future = future
        self.pid: int | None = None  # the child's, once the pool saw the task start
        self.child: Any = None  # its process object, if it was still listed then
        self.gone_since: float | None = None

    def lost_child(self) -> bool:
        """Whether the task's child has been gone for LOST_CHILD_GRACE_S with its task
        still open."""
        try:
            manager = self.pool._pool_manager
            workers = manager.worker_manager.workers
            if self.pid is None:
                for task in tuple(manager.task_manager.tasks.values()):
                    if task.future is self.future and task.worker_id:
                        self.pid = task.worker_id
                        self.child = workers.get(task.worker_id)
                if self.pid is None:
                    return False
            if self.pid in workers:
                return False
        except (AttributeError, RuntimeError):  # another pebble, or a dict changing size
            return False
        now = time.monotonic()
        if self.gone_since is None:
            self.gone_since = now
        return now - self.gone_since >= LOST_CHILD_GRACE_S

    def exit_code(self) -> int | None:
        """The child's exit code as the pool polled it (we never poll it ourselves: two
        threads reading a fork server's exit status would lose it)."""
        popen = getattr(self.child, "_popen", None)
        return getattr(popen, "returncode", None)
