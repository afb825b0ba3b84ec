"""One-file cache jobs end to end, idle latency and a queue drained, next to Celery doing
the same work, in one run (issue 13, targets 1 and 3).

`make bench` runs this (after batch_bench.py). It writes `--jobs` (2,000) small files of a
few KiB under a throwaway cache root, creates a throwaway PostgreSQL database and RabbitMQ
vhost, starts the real processes (gunicorn auth-service and gateway, `--workers` (2)
`jobgate-worker cache` at their default concurrency) exactly as the end-to-end tests do,
and measures:

  a) end to end (target 1): `--jobs` one-file cache jobs, each its own `POST /api/v1/jobs`,
     from `--clients` (8) client threads, until every one is `completed` in PostgreSQL:
     jobs/s, and the submissions' own rate; Celery's reference below. Target: >= 2x Celery.
  b) idle latency (target 1), one job at a time: a cache job's POST sent -> its `started_at`
     (the claim; read from PostgreSQL at microsecond precision), and task_bench.py's method
     (a task run by the example package's `example.clock` handler, which returns the wall
     clock when its code starts; a `jobgate-worker task` with TASK_CONCURRENCY=2 runs only
     for that phase). Target: p95 <= 5 ms, beside Celery's p95 (`bench.clock`).
  c) drain (target 3): the cache workers stopped, `--jobs` one-file cache jobs queued with
     `POST /api/v1/jobs/batch` (up to 1,000 per request), then `--workers` fresh cache
     workers started; jobs/s from the first claim to the last `completed_at`, and from the
     workers' start (their startup included). Target: >= 500 jobs/s.
  d) `--profile`: after the measured drain, a second drain of `--profile-jobs` jobs with one
     of the workers under py-spy (`--profiler`, default py-spy when installed, else
     cProfile); its heaviest functions by cumulative and by own time are printed and kept in
     the JSON. The profiled drain is not the target's measurement.

Celery (bench/celery_app.py), configured exactly as task_bench.py does: `.delay()` from the
same client threads, RabbitMQ broker on its own vhost, PostgreSQL result backend in its own
database, late acks, prefetch 1, a prefork pool of `--workers` processes; its `bench.cache_file`
task reads the same file fully and returns its byte count. Completion is counted in
PostgreSQL the same way on both sides.

Every phase checks correctness: each job completed exactly once (status, attempt 1, one
`started` and one `completed` event, its item done, its result = the file's size; Celery:
SUCCESS with the file's size); a failed job is an error (exit 1) with its error text.

Usage: .venv/bin/python bench/throughput_bench.py [--quick] [--profile] [--jobs N] ...
       (see --help). Needs celery and SQLAlchemy (`make bench` installs them).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import psycopg2  # noqa: E402
import requests  # noqa: E402

from bench.harness import (  # noqa: E402
    API_KEY,
    COMMON_SETTINGS,
    RESULTS_DIR,
    Bench,
    BenchError,
    add_common_options,
    add_quick,
    cprofile_top,
    fmt,
    log,
    machine_info,
    parse,
    parser,
    profile_table,
    profiled_argv,
    py_spy,
    pyspy_top,
    render_table,
    run_main,
    throwaway_database,
    throwaway_vhost,
    verdict,
)
from bench.task_bench import Celery, percentile  # noqa: E402
from bench.task_bench import Jobgate as TaskApi  # noqa: E402
from jobgate import kinds  # noqa: E402
from jobgate.config import Settings  # noqa: E402

VENV_BIN = Path(sys.executable).parent
TARGET_RATIO = 2.0  # Jobgate jobs/s / Celery jobs/s, end to end
TARGET_P95_MS = 5.0  # idle submit -> start
TARGET_DRAIN_PER_S = 500.0  # one-file jobs drained by the worker processes
POLL_S = 0.02  # completion is looked for in PostgreSQL this often (both sides alike)
LATENCY_POLL_S = 0.002  # one job at a time: as task_bench.py polls
BATCH_MAX = 1000  # POST /api/v1/jobs/batch's limit
FILES_DIR = "one"  # under the cache root: the one-file jobs' files
WARM_JOBS = 20
# Settings the cache workers read (recorded in the JSON); missing ones are skipped, so a
# setting added or removed by a change in progress does not stop the benchmark.
SETTINGS = (
    "cache_concurrency",
    "worker_concurrency",
    "cache_read_concurrency",
    "cache_read_chunk_bytes",
    "cache_progress_file_threshold",
    "cache_progress_time_threshold_ms",
    "task_concurrency",
    *COMMON_SETTINGS,
    "outbox_relay_seconds",
    "job_queue_type",
)
# A worker's threads that do not run jobs (py-spy's tables leave them out; see `work_thread`).
SERVICE_THREADS = {"MainThread", "heartbeat", "housekeeping", "events", "rpc", "watch-worker"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    add_quick(p, "200 jobs, 20 latency samples, a 1,000-job profile")
    p.add_argument("--jobs", type=int, default=2000, help="jobs per throughput/drain run (2000)")
    p.add_argument("--clients", type=int, default=8, help="client threads submitting (8)")
    p.add_argument(
        "--workers", type=int, default=2, help="cache worker processes, and Celery's pool (2)"
    )
    p.add_argument("--samples", type=int, default=200, help="idle latency samples (200)")
    p.add_argument("--file-min-kib", type=int, default=2, help="smallest file, KiB (2)")
    p.add_argument("--file-max-kib", type=int, default=8, help="largest file, KiB (8)")
    p.add_argument("--no-celery", action="store_true", help="skip the Celery reference")
    p.add_argument(
        "--profile", action="store_true", help="profile one worker during an extra drain"
    )
    p.add_argument(
        "--profiler",
        choices=("auto", "py-spy", "cprofile"),
        default="auto",
        help="auto: py-spy when installed (.venv/bin/py-spy), else cProfile",
    )
    p.add_argument(
        "--profile-jobs", type=int, default=2000, help="jobs in the profiled drain (2000)"
    )
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples/s (200)")
    p.add_argument(
        "--profile-cpu",
        action="store_true",
        help="py-spy: only samples where a thread runs (CPU), not waits (wall clock)",
    )
    p.add_argument("--profile-top", type=int, default=25, help="functions per table (25)")
    add_common_options(p, job_timeout=600.0)
    args = parse(p, argv, quick={"--jobs": 200, "--samples": 20, "--profile-jobs": 1000})
    if min(args.jobs, args.clients, args.workers, args.samples, args.profile_jobs) < 1:
        p.error("--jobs, --clients, --workers, --samples and --profile-jobs must be >= 1")
    if not 0 < args.file_min_kib <= args.file_max_kib:
        p.error("0 < --file-min-kib <= --file-max-kib")
    if args.profiler == "auto":
        args.profiler = "py-spy" if py_spy() else "cprofile"
    return args


# --- files -----------------------------------------------------------------------------------


def make_files(root: Path, count: int, min_kib: int, max_kib: int) -> list[tuple[str, int]]:
    """`count` files of min..max KiB under root/one/dNN/: (path relative to root, size)."""
    rng = random.Random(20261126)
    block = os.urandom(max_kib * 1024 * 2)
    files = []
    for i in range(count):
        rel = f"{FILES_DIR}/d{i % 100:02d}/f{i:06d}.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        size = rng.randint(min_kib * 1024, max_kib * 1024)
        offset = rng.randrange(0, len(block) - size)
        path.write_bytes(block[offset : offset + size])
        files.append((rel, size))
    os.sync()
    return files


# --- Jobgate ---------------------------------------------------------------------------------


class Pending:
    """Ids not seen finished yet: each poll asks PostgreSQL about those only, so a poll
    costs less as jobs finish (the same on both sides). A failed job raises at once."""

    def __init__(self, ids: list[str], finished: Callable[[list[str]], list[tuple]]) -> None:
        self.left = set(ids)
        self.finished = finished

    def wait(self, timeout: float) -> float:
        """perf_counter() when a poll saw the last one finished."""
        deadline = time.perf_counter() + timeout
        while True:
            for job_id, ok, error in self.finished(list(self.left)):
                if not ok:
                    raise BenchError(f"job {job_id} did not succeed: {error}")
                self.left.discard(job_id)
            now = time.perf_counter()
            if not self.left:
                return now
            if now > deadline:
                raise BenchError(f"{len(self.left)} jobs not completed after {timeout:.0f}s")
            time.sleep(POLL_S)


class Jobgate:
    """One-file cache jobs through the gateway with the demo key (a session per client
    thread); completion and the checks read the stack's PostgreSQL."""

    def __init__(self, base: str, database_url: str, files: list[tuple[str, int]]) -> None:
        self.base = base
        self.files = files
        self.local = threading.local()
        self.conn = psycopg2.connect(database_url)
        self.conn.autocommit = True

    def session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # loopback only
            s.headers["X-API-Key"] = API_KEY
            self.local.session = s
        return s

    def body(self, i: int) -> dict[str, Any]:
        return {"kind": "cache", "files": [self.files[i % len(self.files)][0]]}

    def submit(self, i: int) -> str:
        r = self.session().post(f"{self.base}/api/v1/jobs", json=self.body(i), timeout=60)
        if r.status_code != 201:
            raise BenchError(f"POST /api/v1/jobs -> {r.status_code}: {r.text[:300]}")
        return r.json()["id"]

    def batch(self, start: int, size: int) -> list[str]:
        jobs = [self.body(start + i) for i in range(size)]
        r = self.session().post(f"{self.base}/api/v1/jobs/batch", json={"jobs": jobs}, timeout=300)
        if r.status_code != 201:
            raise BenchError(f"POST /api/v1/jobs/batch -> {r.status_code}: {r.text[:300]}")
        body = r.json()
        if body["created"] != size:
            raise BenchError(f"batch created {body['created']} of {size} jobs")
        return [j["id"] for j in body["jobs"]]

    def finished(self, ids: list[str]) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT id::text, status = 'completed', error FROM jobs"
                " WHERE id = ANY(%s::uuid[]) AND status IN ('completed', 'failed', 'cancelled')",
                (ids,),
            )
            return cur.fetchall()

    def check(self, ids: list[str], first: int) -> dict[str, Any]:
        """Every job completed exactly once with the right result (job i read file
        first + i); raises BenchError naming what is wrong. Returns the counts and the
        server-side span of the jobs (first claim, last completion, per worker)."""
        with self.conn.cursor() as cur:
            cur.execute(
                """
                SELECT j.id::text, j.status, j.attempt, j.error,
                       (j.result ->> 'files')::bigint, (j.result ->> 'bytes')::bigint,
                       (SELECT count(*) FROM job_items i
                         WHERE i.job_id = j.id AND i.status <> 'done'),
                       (SELECT count(*) FROM job_events e
                         WHERE e.job_id = j.id AND e.event = 'started'),
                       (SELECT count(*) FROM job_events e
                         WHERE e.job_id = j.id AND e.event = 'completed'),
                       extract(epoch FROM j.started_at)::float8,
                       extract(epoch FROM j.completed_at)::float8,
                       j.last_worker_id
                FROM jobs j WHERE j.id = ANY(%s::uuid[])
                """,
                (ids,),
            )
            rows = {r[0]: r for r in cur.fetchall()}
        problems: list[str] = []
        by_status: dict[str, int] = {}
        workers: dict[str, list[float]] = {}
        for n, job_id in enumerate(ids):
            row = rows.get(job_id)
            if row is None:
                problems.append(f"{job_id}: not in the jobs table")
                continue
            _, status, attempt, error, files, nbytes, open_items, started, completed = row[:9]
            by_status[status] = by_status.get(status, 0) + 1
            size = self.files[(first + n) % len(self.files)][1]
            if status != "completed":
                problems.append(f"{job_id}: {status} (attempt {attempt}): {error}")
            elif attempt != 1 or started != 1 or completed != 1:
                problems.append(
                    f"{job_id}: attempt {attempt}, {started} started and {completed}"
                    " completed events (exactly one run expected)"
                )
            elif files != 1 or nbytes != size or open_items:
                problems.append(
                    f"{job_id}: result files={files} bytes={nbytes} (expected 1, {size}),"
                    f" {open_items} items not done"
                )
            workers.setdefault(row[11] or "?", []).append(row[9])
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise BenchError(
                f"{len(problems)} of {len(ids)} jobs wrong: " + "; ".join(problems[:5]) + more
            )
        claims = [r[9] for r in rows.values()]
        done = [r[10] for r in rows.values()]
        return {
            "jobs": len(ids),
            "by_status": by_status,
            "exactly_once": True,
            "first_claim": min(claims),
            "last_claim": max(claims),
            "last_completed": max(done),
            "per_worker": {
                w: {"jobs": len(c), "first_claim": min(c)} for w, c in sorted(workers.items())
            },
        }

    def latency(self, i: int, timeout: float) -> tuple[str, dict[str, float]]:
        """One cache job at idle: its id, and POST sent -> `started_at` (the claim) and the
        steps between, from the job's timestamps."""
        sent = time.time()
        job_id = self.submit(i)
        answered = time.time()
        deadline = time.perf_counter() + timeout
        with self.conn.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT status, error, extract(epoch FROM created_at)::float8,"
                    " extract(epoch FROM started_at)::float8,"
                    " extract(epoch FROM completed_at)::float8 FROM jobs WHERE id = %s",
                    (job_id,),
                )
                status, error, created, started, completed = cur.fetchone()
                if status == "completed":
                    return job_id, {
                        "submit_to_start_ms": (started - sent) * 1000,
                        "post_to_insert_ms": (created - sent) * 1000,
                        "insert_to_claim_ms": (started - created) * 1000,
                        "claim_to_completed_ms": (completed - started) * 1000,
                        "post_round_trip_ms": (answered - sent) * 1000,
                        "submit_to_completed_ms": (completed - sent) * 1000,
                    }
                if status in ("failed", "cancelled") or time.perf_counter() > deadline:
                    raise BenchError(f"cache job {job_id} {status}: {error}")
                time.sleep(LATENCY_POLL_S)

    def close(self) -> None:
        self.conn.close()


# --- Celery ------------------------------------------------------------------------------------


class CeleryCache:
    """task_bench.py's Celery client (same app, broker, backend, clock latency) plus
    `bench.cache_file` on the same files, by absolute path."""

    def __init__(self, broker: str, backend_url: str, root: Path, files: list[tuple[str, int]]):
        self.celery = Celery(broker, backend_url)
        self.root = root
        self.files = files

    def submit(self, i: int) -> str:
        return self.celery.app.cache_file.delay(
            str(self.root / self.files[i % len(self.files)][0])
        ).id

    def finished(self, ids: list[str]) -> list[tuple]:
        with self.celery.conn.cursor() as cur:
            cur.execute(
                "SELECT task_id, status = 'SUCCESS', traceback FROM celery_taskmeta"
                " WHERE task_id = ANY(%s) AND status IN ('SUCCESS', 'FAILURE', 'REVOKED')",
                (ids,),
            )
            return cur.fetchall()

    def check(self, ids: list[str], first: int) -> dict[str, Any]:
        """Every task SUCCESS with the file's size as its result."""
        with self.celery.conn.cursor() as cur:
            cur.execute(
                "SELECT task_id, status, result FROM celery_taskmeta WHERE task_id = ANY(%s)",
                (ids,),
            )
            rows = {r[0]: r for r in cur.fetchall()}
        problems = []
        for n, task_id in enumerate(ids):
            row = rows.get(task_id)
            size = self.files[(first + n) % len(self.files)][1]
            result = decode_celery_result(row[2]) if row else None
            if row is None or row[1] != "SUCCESS" or result != size:
                problems.append(f"{task_id}: {row[1] if row else 'missing'}, result {result!r}")
        if problems:
            raise BenchError(f"{len(problems)} Celery tasks wrong: " + "; ".join(problems[:5]))
        return {"jobs": len(ids), "by_status": {"SUCCESS": len(ids)}}

    def close(self) -> None:
        self.celery.close()


def decode_celery_result(raw: Any) -> Any:
    """A `celery_taskmeta.result` as a Python value: the result backend stores the task's
    return value encoded by `result_serializer` (JSON here) in a binary column."""
    return json.loads(bytes(raw)) if raw is not None else None


def start_celery_worker(bench: Bench, env: dict[str, str], processes: int) -> None:
    """`celery worker` as task_bench.py starts it, with a prefork pool of `processes`."""
    logfile = open(bench.tmp / "celery-worker.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "celery"),
            *("-A", "bench.celery_app", "worker", "--pool", "prefork"),
            *("--concurrency", str(processes), "--without-gossip", "--without-mingle"),
            *("--loglevel", "WARNING"),
        ],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=logfile,
        stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logfile.close()

    bench.cleanup.push("stop the Celery worker", stop)


# --- measuring -------------------------------------------------------------------------------


def submit_all(n: int, clients: int, send: Callable[[int], str]) -> tuple[list[str], float]:
    """`send(i)` for i in range(n) from `clients` threads: the ids and the seconds it took."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(send, range(n)))
    return ids, time.perf_counter() - start


def throughput(how: str, n: int, clients: int, side: Any, timeout: float) -> dict[str, Any]:
    """n jobs submitted from `clients` threads, until a poll saw every one finished; then
    the correctness check."""
    start = time.perf_counter()
    ids, submit_s = submit_all(n, clients, side.submit)
    end = Pending(ids, side.finished).wait(timeout)
    checked = side.check(ids, 0)
    wall = end - start
    row = {
        "how": how,
        "jobs": n,
        "wall_s": wall,
        "per_s": n / wall,
        "submit_s": submit_s,
        "submit_per_s": n / submit_s,
        "check": {k: checked[k] for k in ("jobs", "by_status")},
    }
    log(f"{how}: {n} jobs in {wall:.2f}s ({n / wall:.1f}/s; submitted at {n / submit_s:.0f}/s)")
    return row


def warm(side: Any, n: int, timeout: float = 60) -> None:
    ids = [side.submit(i) for i in range(n)]
    Pending(ids, side.finished).wait(timeout)


def latency_row(how: str, ms: list[float], judged: bool) -> dict[str, Any]:
    row = {
        "how": how,
        "samples": len(ms),
        "p50_ms": percentile(ms, 0.5),
        "p95_ms": percentile(ms, 0.95),
        "max_ms": max(ms),
        "target": f"p95 <= {TARGET_P95_MS:g} ms" if judged else "reference",
    }
    row["verdict"] = verdict(row["p95_ms"] <= TARGET_P95_MS) if judged else ""
    log(f"{how}: p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms")
    return row


def stop_procs(stack: Any, names: list[str]) -> None:
    for name in names:
        stack.procs[name].send_signal(signal.SIGTERM)
    for name in names:
        if stack.procs[name].wait(timeout=60) != 0:
            raise BenchError(f"{name} exited with {stack.procs[name].returncode}")


class Profiled:
    """One cache worker run under a profiler (its log in the stack's log dir)."""

    def __init__(self, bench: Bench, tool: str, rate: int, name: str, *, idle: bool) -> None:
        self.tool, self.rate, self.idle = tool, rate, idle
        stack = bench.stack
        assert stack is not None
        # py-spy: one file of collapsed stacks; cProfile: a directory, a dump per thread
        self.out = bench.tmp / (f"{name}-py-spy.txt" if tool == "py-spy" else f"{name}-cprofile")
        argv = profiled_argv(tool, "jobgate_worker", ["cache"], self.out, rate, idle=idle)
        self.logfile = open(stack.logdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            argv, env=stack.env, stdout=self.logfile, stderr=subprocess.STDOUT, cwd=stack.workdir
        )
        self.spawned_wall = time.time()
        bench.cleanup.push(f"stop {name}", self.stop)

    def worker(self) -> psutil.Process | None:
        """The worker process: py-spy's child, or the process itself (cProfile)."""
        if self.tool != "py-spy":
            return psutil.Process(self.proc.pid)
        with_children = psutil.Process(self.proc.pid).children() if self.proc.poll() is None else []
        return with_children[0] if with_children else None

    def stop(self) -> None:
        """SIGTERM the worker (a graceful stop); the profiler writes when it exits."""
        if self.proc.poll() is None:
            try:
                target = self.worker()
                if target is not None:
                    target.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=60)
            except (psutil.Error, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()

    def top(self, n: int) -> dict[str, Any]:
        if not self.out.exists():
            raise BenchError(f"the profiler wrote no {self.out.name} (see {self.logfile.name})")
        if self.tool == "py-spy":
            # Wall clock: the threads that run jobs (the others mostly wait); CPU: every thread
            # (the I/O loop's and the event sender's CPU count too).
            keep = work_thread if self.idle else (lambda _thread: True)
            return {**pyspy_top(self.out, self.rate, keep, n), "idle": self.idle}
        return cprofile_top(self.out, work_thread, n)


def work_thread(name: str) -> bool:
    """Threads that run jobs (job-cache_N and those they start, e.g. cache-read_N), not
    the I/O loop, heartbeats, housekeeping or the event sender."""
    return name not in SERVICE_THREADS and not name.endswith("-background")


SERVERS = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ"}


def server_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) used so far by the machine's PostgreSQL and RabbitMQ
    processes, by server: what a drain costs beside the workers' own CPU."""
    used = dict.fromkeys(SERVERS.values(), 0.0)
    for proc in psutil.process_iter(["name", "cpu_times"]):
        server = SERVERS.get(proc.info["name"] or "")
        times = proc.info["cpu_times"]
        if server and times is not None:
            used[server] += times.user + times.system
    return used


def cpu_per_job(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """Milliseconds of CPU per job, by process group (a server's backends that ended during
    the drain are missed: the workers keep theirs open)."""
    return {k: round((after[k] - before.get(k, 0.0)) / n * 1000, 3) for k in after}


def drain(
    bench: Bench,
    jobgate: Jobgate,
    n: int,
    workers: int,
    first_file: int,
    label: str,
    profile: tuple[str, int, int] | None = None,
) -> dict[str, Any]:
    """Queue n jobs with the cache workers stopped, start `workers` fresh ones, time until
    all are completed; with `profile` (tool, rate, top n) the first worker is profiled."""
    stack = bench.stack
    assert stack is not None
    timeout = bench.args.job_timeout
    t0 = time.perf_counter()
    ids: list[str] = []
    for start in range(0, n, BATCH_MAX):
        ids += jobgate.batch(first_file + start, min(BATCH_MAX, n - start))
    queue_s = time.perf_counter() - t0
    log(f"{label}: {n} jobs queued in {queue_s:.2f}s ({n / queue_s:.0f}/s through the batch API)")
    names = [f"worker-{label}-{k + 1}" for k in range(workers)]
    profiled = None
    servers_before = server_cpu_s()
    spawn_wall = time.time()
    spawn = time.perf_counter()
    for k, name in enumerate(names):
        if profile is not None and k == 0:
            profiled = Profiled(
                bench, profile[0], profile[1], name, idle=not bench.args.profile_cpu
            )
        else:
            stack.start_worker("cache", name=name)
    end = Pending(ids, jobgate.finished).wait(timeout)
    used = server_cpu_s()
    for name in names:
        with contextlib.suppress(psutil.Error, KeyError):
            times = psutil.Process(stack.procs[name].pid).cpu_times()
            used["workers"] = used.get("workers", 0.0) + times.user + times.system
    checked = jobgate.check(ids, first_file)
    stop_procs(stack, [nm for nm in names if nm in stack.procs])
    top = None
    if profiled is not None:
        profiled.stop()
        top = profiled.top(profile[2])  # type: ignore[index]
        if not bench.args.no_json:  # the raw profile, for a flame graph (speedscope.app)
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            kept = RESULTS_DIR / f"{bench.name}-{bench.stamp}-{profiled.out.name}"
            if profiled.out.is_dir():
                shutil.copytree(profiled.out, kept)
            else:
                shutil.copyfile(profiled.out, kept)
            top["file"] = str(kept.relative_to(REPO))
    span = checked["last_completed"] - checked["first_claim"]
    row = {
        "how": label,
        "jobs": n,
        "workers": workers,
        "queued_s": queue_s,
        "queued_per_s": n / queue_s,
        "startup_s": checked["first_claim"] - spawn_wall,
        "claim_to_done_s": span,
        "per_s": n / span,
        "spawn_to_done_s": checked["last_completed"] - spawn_wall,
        "spawn_to_done_per_s": n / (checked["last_completed"] - spawn_wall),
        "poll_saw_all_s": end - spawn,
        "jobs_per_worker": [w["jobs"] for w in checked["per_worker"].values()],
        "worker_startup_s": [w["first_claim"] - spawn_wall for w in checked["per_worker"].values()],
        "check": {k: checked[k] for k in ("jobs", "by_status")},
        "profiled": profile is not None,
        # workers: since their start (imports included); servers: since the spawn.
        "cpu_ms_per_job": cpu_per_job(servers_before, used, n),
    }
    log(
        f"{label}: {n} jobs drained in {span:.2f}s from the first claim ({row['per_s']:.0f}/s);"
        f" {row['spawn_to_done_s']:.2f}s from the workers' start; per worker"
        f" {row['jobs_per_worker']}; CPU ms per job {row['cpu_ms_per_job']}"
    )
    if top is not None:
        row["profile"] = top
    return row


def cache_settings(env: dict[str, str]) -> dict[str, Any]:
    """The settings the cache workers read (those that exist), the concurrency a cache
    worker runs at and its prefetch, and any WORKER_/CACHE_ variables set by the caller."""
    s = Settings.from_env(env)
    spec = kinds.get("cache")
    found = {k: getattr(s, k) for k in SETTINGS if hasattr(s, k)}
    found["cache_worker_concurrency_effective"] = spec.concurrency(s)
    found["cache_prefetch_effective"] = spec.queue.prefetch or spec.concurrency(s)
    found["environment"] = {
        k: v for k, v in sorted(os.environ.items()) if k.startswith(("WORKER_", "CACHE_", "JOB_"))
    }
    return found


# --- the run -----------------------------------------------------------------------------------

CONDITIONS = """\
One machine, loopback only: PostgreSQL, RabbitMQ, the gateway (gunicorn, 2 processes x 4
threads), auth-service, the workers and this benchmark's client threads share its CPUs.
Files are a few KiB each and warm in the page cache. Jobgate: one-file cache jobs through
`POST /api/v1/jobs` (API key, validation, the file's stat, one transaction with its item
and outbox row, published with confirms), run by `jobgate-worker cache` processes at their
default concurrency, outcome committed before the ack. Celery 5 (task_bench.py's
configuration): `.delay()` (no HTTP, no authentication), RabbitMQ, PostgreSQL result
backend (SQLAlchemy), task_acks_late, prefetch 1, prefork pool. Completion is polled in
PostgreSQL every 20 ms on both sides."""

LEGEND = """\
jobs/s: jobs / (first submission sent -> a poll saw the last one completed). submit/s: the
submissions alone while the workers run (the client threads' wall time). ratio: Jobgate /
Celery. Latency: one job at a time on an idle system: POST sent -> the cache job's
`started_at` (the claim transaction's start), or -> the handler's own clock when its code
started (task + `example.clock`; Celery `bench.clock`). Drain: jobs queued through the batch
API with no worker running, then fresh workers: `startup s` = workers spawned -> first
claim; `jobs/s` = jobs / (first claim -> last `completed_at`), the target's measure; `incl.
startup` = jobs / (spawned -> last `completed_at`); `CPU ms/job`: CPU time per job of the
worker processes (since their start), of all PostgreSQL and of all RabbitMQ processes on the
machine (during the drain, so other work on the machine counts too). Every job was checked:
completed, one attempt, one `started` and one `completed` event, its item done, result = the
file's size."""


def run(bench: Bench) -> None:
    args = bench.args
    n, clients, nworkers, timeout = args.jobs, args.clients, args.workers, args.job_timeout
    root = bench.tmp / "cache-root"
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    nfiles = max(n, args.profile_jobs if args.profile else 0, args.samples, WARM_JOBS)
    files = make_files(root, nfiles, args.file_min_kib, args.file_max_kib)
    log(
        f"{nfiles} files of {args.file_min_kib}-{args.file_max_kib} KiB in {root}"
        f" ({time.perf_counter() - t0:.1f}s)"
    )

    # Stack: auth, gateway, `--workers` cache workers (start_stack starts the first).
    stack = bench.start_stack("cache", {"CACHE_ROOT": str(root)})
    settings = cache_settings(stack.env)
    cache_workers = ["worker-cache"]
    for k in range(1, nworkers):
        cache_workers.append(f"worker-cache-{k + 1}")
        stack.start_worker("cache", name=cache_workers[-1])
    jobgate = Jobgate(stack.url, stack.env["DATABASE_URL"], files)
    bench.cleanup.push("close the Jobgate connection", jobgate.close)
    warm(jobgate, WARM_JOBS)
    log(
        f"stack up and warm in {time.perf_counter() - bench.stack_t0:.1f}s; cache workers:"
        f" {nworkers} x concurrency {settings['cache_worker_concurrency_effective']}"
    )

    # (b) idle latency of a cache job: POST sent -> started_at
    steps, latency_ids = [], []
    for i in range(args.samples):
        job_id, sample = jobgate.latency(i, timeout)
        latency_ids.append(job_id)
        steps.append(sample)
        time.sleep(0.02)
    jobgate.check(latency_ids, 0)
    latency = [
        latency_row(
            "Jobgate cache job: POST sent -> started_at (claim)",
            [s["submit_to_start_ms"] for s in steps],
            judged=True,
        )
    ]
    cache_steps = {k: percentile([s[k] for s in steps], 0.5) for k in steps[0]}

    # (a) end to end, per-job POSTs
    results = [throughput(f"Jobgate, {nworkers} cache workers", n, clients, jobgate, timeout)]

    # (c) drain: stop the workers, queue with the batch API, start fresh ones
    stop_procs(stack, cache_workers)
    drains = [drain(bench, jobgate, n, nworkers, 0, "drain")]
    if args.profile:
        drains.append(
            drain(
                bench,
                jobgate,
                args.profile_jobs,
                nworkers,
                0,
                "profiled-drain",
                (args.profiler, args.profile_rate, args.profile_top),
            )
        )

    # (b) idle latency, task_bench.py's method: example.clock on a task worker
    stack.start_worker("task", name="worker-task", TASK_CONCURRENCY="2")
    tasks = TaskApi(stack.url, stack.env["DATABASE_URL"])
    bench.cleanup.push("close the task connection", tasks.close)
    for _ in range(5):  # the worker is up and its pool warm
        tasks.clock_latency(60)
    samples = []
    for _ in range(args.samples):
        samples.append(tasks.clock_latency(timeout) * 1000)
        time.sleep(0.02)
    latency.append(
        latency_row("Jobgate task (example.clock): POST sent -> handler start", samples, True)
    )
    task_steps = {
        k: percentile([s[k] for s in tasks.steps[-len(samples) :]], 0.5) for k in tasks.steps[0]
    }
    stop_procs(stack, ["worker-task"])

    # (a, b) Celery, on a broker vhost and a result database of its own
    if not args.no_celery:
        suffix = uuid.uuid4().hex[:8]
        broker = throwaway_vhost(bench.cleanup, f"celery-bench-{suffix}")
        backend = throwaway_database(bench.cleanup, f"celery_bench_{suffix}")
        celery = CeleryCache(broker, backend, root, files)
        bench.cleanup.push("close the Celery connection", celery.close)
        start_celery_worker(
            bench,
            {
                "BENCH_CELERY_BROKER": broker,
                "BENCH_CELERY_BACKEND": os.environ["BENCH_CELERY_BACKEND"],
            },
            nworkers,
        )
        celery.celery.clock_latency(60)  # the worker is up and its pool warm
        warm(celery, WARM_JOBS)
        samples = []
        for _ in range(args.samples):
            samples.append(celery.celery.clock_latency(timeout) * 1000)
            time.sleep(0.02)
        latency.append(latency_row("Celery (bench.clock): .delay() -> task start", samples, False))
        results.append(throughput(f"Celery, prefork x {nworkers}", n, clients, celery, timeout))

    # report
    # Nothing ran twice or appeared from nowhere: the cache jobs in the table are the ones sent.
    sent = WARM_JOBS + args.samples + n + sum(d["jobs"] for d in drains)
    with jobgate.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM jobs WHERE kind = 'cache'")
        stored = cur.fetchone()[0]
    if stored != sent:
        raise BenchError(f"{stored} cache jobs in the table, {sent} submitted")
    report(bench, results, latency, drains, settings, cache_steps, task_steps, load_start)


def report(
    bench: Bench,
    results: list[dict[str, Any]],
    latency: list[dict[str, Any]],
    drains: list[dict[str, Any]],
    settings: dict[str, Any],
    cache_steps: dict[str, float],
    task_steps: dict[str, float],
    load_start: tuple[float, float, float],
) -> None:
    args = bench.args
    celery = next((r for r in results if r["how"].startswith("Celery")), None)
    for row in results:
        row["ratio"] = row["per_s"] / celery["per_s"] if celery else None
        row["submit_ratio"] = row["submit_per_s"] / celery["submit_per_s"] if celery else None
    jobgate = results[0]
    jobgate["target"] = f">= {TARGET_RATIO:g}x Celery"
    jobgate["verdict"] = verdict(jobgate["ratio"] >= TARGET_RATIO) if celery else "no reference"
    for d in drains:
        d["target"] = f">= {TARGET_DRAIN_PER_S:g}/s" if not d["profiled"] else "(profiled)"
        d["verdict"] = verdict(d["per_s"] >= TARGET_DRAIN_PER_S) if not d["profiled"] else ""

    tp = render_table(
        ["", "jobs", "wall s", "jobs/s", "submit/s", "ratio", "submit ratio", "target", ""],
        [
            [
                r["how"],
                str(r["jobs"]),
                fmt(r["wall_s"], ".2f"),
                fmt(r["per_s"], ".1f"),
                fmt(r["submit_per_s"], ".0f"),
                fmt(r["ratio"], ".2f"),
                fmt(r["submit_ratio"], ".2f"),
                r.get("target", "reference"),
                r.get("verdict", ""),
            ]
            for r in results
        ],
    )
    lat = render_table(
        ["", "samples", "p50 ms", "p95 ms", "max ms", "target", ""],
        [
            [
                r["how"],
                str(r["samples"]),
                fmt(r["p50_ms"], ".1f"),
                fmt(r["p95_ms"], ".1f"),
                fmt(r["max_ms"], ".1f"),
                r["target"],
                r["verdict"],
            ]
            for r in latency
        ],
    )
    steps = "\n".join(
        [
            "  cache job (p50 ms): "
            + ", ".join(f"{k.removesuffix('_ms')} {v:.1f}" for k, v in cache_steps.items()),
            "  task + example.clock (p50 ms): "
            + ", ".join(f"{k.removesuffix('_ms')} {v:.1f}" for k, v in task_steps.items()),
        ]
    )
    dr = render_table(
        [
            "",
            "jobs",
            "workers",
            "queued/s",
            "startup s",
            "claim->done s",
            "jobs/s",
            "incl. startup/s",
            "per worker",
            "CPU ms/job W/PG/MQ",
            "target",
            "",
        ],
        [
            [
                d["how"],
                str(d["jobs"]),
                str(d["workers"]),
                fmt(d["queued_per_s"], ".0f"),
                fmt(d["startup_s"], ".2f"),
                fmt(d["claim_to_done_s"], ".2f"),
                fmt(d["per_s"], ".0f"),
                fmt(d["spawn_to_done_per_s"], ".0f"),
                "/".join(str(j) for j in d["jobs_per_worker"]),
                "/".join(
                    fmt(d["cpu_ms_per_job"].get(k), ".2f")
                    for k in ("workers", "PostgreSQL", "RabbitMQ")
                ),
                d["target"],
                d["verdict"],
            ]
            for d in drains
        ],
    )
    conc = settings["cache_worker_concurrency_effective"]
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "environment")
    given = ", ".join(f"{k}={v}" for k, v in settings["environment"].items()) or "none"
    sections = [
        f"Target 1, end to end: {args.jobs} one-file cache jobs from {args.clients} client"
        f" threads, {args.workers} worker processes (cache: concurrency {conc} each):\n"
        + tp
        + f"\nsettings: {shown}\nWORKER_/CACHE_/JOB_ variables given: {given}",
        "Target 1, submit -> start at idle, one job at a time:\n" + lat + "\n" + steps,
        f"Target 3, drain: jobs queued with no worker running, then {args.workers} fresh"
        " cache workers:\n" + dr,
    ]
    profiled = next((d["profile"] for d in drains if "profile" in d), None)
    if profiled is not None:
        sections.append(profile_sections(profiled, args.profile_jobs))
    load = {"start": load_start, "end": os.getloadavg()}
    sections.append(
        "Load average (1, 5, 15 min) at the start: {}, at the end: {} (2 CPUs shared with"
        " other work: compare rows of the same run)".format(
            *(", ".join(f"{x:.2f}" for x in v) for v in load.values())
        )
    )
    bench.print_report(CONDITIONS, sections, LEGEND)
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(
            bench.tmp, {"celery_version": [str(VENV_BIN / "celery"), "--version"]}
        ),
        settings=settings,
        targets={
            "end_to_end_ratio_of_celery": TARGET_RATIO,
            "idle_submit_to_start_p95_ms": TARGET_P95_MS,
            "drain_jobs_per_s": TARGET_DRAIN_PER_S,
        },
        throughput=results,
        latency=latency,
        latency_steps_p50_ms={"cache": cache_steps, "task_clock": task_steps},
        drain=drains,
        load_average=load,
    )


def profile_sections(profile: dict[str, Any], jobs: int) -> str:
    """The profiled drain's tables: py-spy (the job threads' wall time, idle included, and
    where each thread's time went) or cProfile (every thread merged)."""
    threads = ", ".join(f"{t} {s:.1f}s" for t, s in list(profile["threads"].items())[:12])
    how = (
        f"py-spy, {profile['rate_hz']} Hz, "
        + ("wall clock: waits included" if profile["idle"] else "CPU: running threads only")
        if profile["tool"] == "py-spy"
        else "cProfile in every thread, wall clock"
    )
    over = (
        "every thread"
        if profile.get("idle") is False
        else "the threads that run jobs, not the I/O loop, heartbeat, housekeeping or events"
    )
    head = (
        f"Profile ({how}) of one cache worker during a {jobs}-job drain; the tables are over"
        f" {over} ({profile['kept_s']:.1f} thread-s). Seconds per thread: {threads}."
        + (f"\nRaw profile: {profile['file']}" if profile.get("file") else "")
    )
    return (
        head
        + "\n\nBy cumulative time:\n"
        + profile_table(profile["by_cumulative"])
        + "\n\nBy own time:\n"
        + profile_table(profile["by_own"])
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("throughput", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
