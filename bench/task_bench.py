"""Generic tasks through Jobgate next to the same work as Celery tasks, in one run.

`make bench` runs this (after container_bench.py). It creates a throwaway PostgreSQL
database and RabbitMQ vhost, starts the real processes (gunicorn auth-service and gateway,
`jobgate-worker task`) exactly as the end-to-end tests do, and measures:

  * throughput: `--tasks` (2,000) `echo` tasks sent through `POST /api/v1/tasks` from
    `--clients` (8) client threads, until every one is `completed` in PostgreSQL: jobs/s end
    to end, and the submissions' own rate. Two Jobgate shapes with two handler processes:
    one task worker with TASK_CONCURRENCY=2 (one consumer, two pool children: Celery's own
    shape, one parent and two prefork children), and two task workers with TASK_CONCURRENCY=1;
  * submit-to-start latency at idle: `--samples` (200) tasks one at a time, each run by the
    example package's `example.clock` handler, which returns the wall clock when its code
    starts; latency = that - the moment the client sent the request (p50, p95).

Then the Jobgate workers stop and Celery does the same (bench/celery_app.py): `.delay()`
from the same number of client threads, RabbitMQ broker on its own throwaway vhost,
PostgreSQL result backend (SQLAlchemy) in its own throwaway database, late acks, prefetch 1,
a prefork worker with 2 processes; completion is counted in its result table the same way.
The ratio Jobgate / Celery is printed for both measures (issue 9 asks for the ratio; issue 13
sets the target of 2x Celery's jobs/s and p95 <= 5 ms).

Usage: .venv/bin/python bench/task_bench.py [--quick] [--tasks N] [--clients N] ...
       (see --help). Needs celery and SQLAlchemy (`make bench` installs them).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
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

import psycopg2  # noqa: E402
import requests  # noqa: E402

from bench.harness import (  # noqa: E402
    API_KEY,
    COMMON_SETTINGS,
    Bench,
    BenchError,
    add_common_options,
    add_quick,
    effective_settings,
    fmt,
    log,
    machine_info,
    parse,
    parser,
    render_table,
    run_main,
    throwaway_database,
    throwaway_vhost,
)

VENV_BIN = Path(sys.executable).parent
CLOCK_HANDLER = "example.clock"  # examples/task-handlers: returns time.time() when it starts
SETTINGS = ("task_concurrency", "task_default_handler", *COMMON_SETTINGS)
POLL_S = 0.002  # how often completion is looked for in PostgreSQL (both sides alike)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    add_quick(p, "200 tasks, 40 latency samples")
    p.add_argument("--tasks", type=int, default=2000, help="tasks per throughput run (2000)")
    p.add_argument("--clients", type=int, default=8, help="client threads submitting (8)")
    p.add_argument("--samples", type=int, default=200, help="idle latency samples (200)")
    p.add_argument("--repeat", type=int, default=1, help="throughput runs per shape (1)")
    add_common_options(p, job_timeout=300.0)
    return parse(p, argv, quick={"--tasks": 200, "--samples": 40})


# --- measuring ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def wait_count(count: Callable[[], int], target: int, timeout: float) -> float:
    """Poll `count()` until it reaches `target`; returns perf_counter() when it did."""
    deadline = time.perf_counter() + timeout
    while True:
        done = count()
        now = time.perf_counter()
        if done >= target:
            return now
        if now > deadline:
            raise BenchError(f"only {done} of {target} tasks completed after {timeout:.0f}s")
        time.sleep(POLL_S * 10)


def submit_all(n: int, clients: int, send: Callable[[int], str]) -> tuple[list[str], float]:
    """`send(i)` for i in range(n) from `clients` threads; the ids and the seconds it took."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(send, range(n)))
    return ids, time.perf_counter() - start


def throughput_row(
    how: str,
    n: int,
    clients: int,
    send: Callable[[int], str],
    count: Callable[[list[str]], int],
    timeout: float,
) -> dict[str, Any]:
    start = time.perf_counter()
    ids, submit_s = submit_all(n, clients, send)
    end = wait_count(lambda: count(ids), n, timeout)
    wall = end - start
    row = {
        "how": how,
        "tasks": n,
        "wall_s": wall,
        "per_s": n / wall,
        "submit_s": submit_s,
        "submit_per_s": n / submit_s,
    }
    log(f"{how}: {n} tasks in {wall:.2f}s ({n / wall:.1f}/s; submitted at {n / submit_s:.0f}/s)")
    return row


def latency_row(how: str, samples: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples]
    row = {
        "how": how,
        "samples": len(ms),
        "p50_ms": percentile(ms, 0.5),
        "p95_ms": percentile(ms, 0.95),
        "max_ms": max(ms),
    }
    log(f"{how}: submit -> start p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms")
    return row


# --- Jobgate -----------------------------------------------------------------------------------


class Jobgate:
    """POST /api/v1/tasks with the demo key (a session per client thread); completion is
    read from the stack's PostgreSQL."""

    def __init__(self, base: str, database_url: str) -> None:
        self.base = base
        self.database_url = database_url
        self.local = threading.local()
        self.steps: list[dict[str, float]] = []
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

    def send(self, body: dict[str, Any]) -> str:
        r = self.session().post(f"{self.base}/api/v1/tasks", json=body, timeout=60)
        if r.status_code != 201:
            raise BenchError(f"POST /api/v1/tasks -> {r.status_code}: {r.text[:300]}")
        return r.json()["data"]["id"]

    def echo(self, i: int) -> str:
        return self.send({"name": "echo", "priority": "medium", "payload": {"i": i}})

    def completed(self, ids: list[str]) -> int:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE status = 'completed'),"
                " count(*) FILTER (WHERE status IN ('failed', 'cancelled'))"
                " FROM jobs WHERE id = ANY(%s::uuid[])",
                (ids,),
            )
            done, bad = cur.fetchone()
        if bad:
            raise BenchError(f"{bad} Jobgate tasks failed or were cancelled")
        return int(done)

    def clock_latency(self, timeout: float) -> float:
        """Seconds from sending the request to the handler's start; the steps between, from
        the job's timestamps, go to `self.steps`."""
        sent = time.time()
        task_id = self.send({"name": "clock", "handler": CLOCK_HANDLER, "payload": {}})
        answered = time.time()
        deadline = time.perf_counter() + timeout
        with self.conn.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT status, result, error, extract(epoch FROM created_at),"
                    " extract(epoch FROM started_at) FROM jobs WHERE id = %s",
                    (task_id,),
                )
                status, result, error, created, started = cur.fetchone()
                if status == "completed":
                    began = float(result)
                    self.steps.append(
                        {
                            "post_to_insert_ms": (float(created) - sent) * 1000,
                            "insert_to_claim_ms": (float(started) - float(created)) * 1000,
                            "claim_to_handler_ms": (began - float(started)) * 1000,
                            "post_round_trip_ms": (answered - sent) * 1000,
                        }
                    )
                    return began - sent
                if status in ("failed", "cancelled") or time.perf_counter() > deadline:
                    raise BenchError(f"clock task {task_id} {status}: {error}")
                time.sleep(POLL_S)

    def close(self) -> None:
        self.conn.close()


# --- Celery ------------------------------------------------------------------------------------


class Celery:
    """`.delay()` of bench/celery_app.py's tasks; completion read from the result table."""

    def __init__(self, broker: str, backend_url: str) -> None:
        os.environ["BENCH_CELERY_BROKER"] = broker
        os.environ["BENCH_CELERY_BACKEND"] = "db+" + backend_url.replace(
            "postgresql://", "postgresql+psycopg2://", 1
        )
        from bench import celery_app  # configured from the variables above

        self.app = celery_app
        self.conn = psycopg2.connect(backend_url)
        self.conn.autocommit = True

    def echo(self, i: int) -> str:
        return self.app.echo.delay({"i": i}).id

    def completed(self, ids: list[str]) -> int:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FILTER (WHERE status = 'SUCCESS'),"
                " count(*) FILTER (WHERE status = 'FAILURE')"
                " FROM celery_taskmeta WHERE task_id = ANY(%s)",
                (ids,),
            )
            done, bad = cur.fetchone()
        if bad:
            raise BenchError(f"{bad} Celery tasks failed")
        return int(done)

    def clock_latency(self, timeout: float) -> float:
        sent = time.time()
        result = self.app.clock.delay({})
        return float(result.get(timeout=timeout, interval=POLL_S)) - sent

    def close(self) -> None:
        self.conn.close()


def start_celery_worker(bench: Bench, env: dict[str, str]) -> subprocess.Popen:
    logfile = open(bench.tmp / "celery-worker.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "celery"),
            "-A",
            "bench.celery_app",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
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
    return proc


# --- the run -----------------------------------------------------------------------------------

CONDITIONS = """\
One machine, loopback only; PostgreSQL, RabbitMQ, the gateway (gunicorn, 2 processes x 4
threads), the workers and this benchmark's client threads share its CPUs. Jobgate: tasks
through `POST /api/v1/tasks` (authenticated with an API key, validated, one transaction
with its outbox row, published with confirms), handlers in a pebble process pool, outcome
committed before the ack. Celery 5: `.delay()` (no HTTP, no authentication), RabbitMQ
broker, PostgreSQL result backend (SQLAlchemy), task_acks_late, prefetch 1, prefork pool
of 2. Completion is read from PostgreSQL the same way on both sides."""

LEGEND = """\
jobs/s: tasks / (first submission sent -> a poll saw the last one completed). submit/s: the
submissions alone (the client threads' wall time). Latency: the handler's own wall clock
when its code started - the moment the client sent the request, one task at a time on an
idle system. ratio: Jobgate / Celery (for latency, Celery / Jobgate: above 1 = Jobgate is
faster)."""


def run(bench: Bench) -> None:
    args = bench.args
    n, clients, timeout = args.tasks, args.clients, args.job_timeout

    # (1) Jobgate: one task worker with two handler processes
    stack = bench.start_stack("task", {"TASK_CONCURRENCY": "2"})
    jobgate = Jobgate(stack.url, stack.env["DATABASE_URL"])
    bench.cleanup.push("close the Jobgate connection", jobgate.close)
    warm = [jobgate.echo(i) for i in range(20)]
    wait_count(lambda: jobgate.completed(warm), len(warm), 60)
    jobgate.clock_latency(timeout)
    log(f"Jobgate stack up and warm in {time.perf_counter() - bench.stack_t0:.1f}s")

    throughput: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    samples = []
    for _ in range(args.samples):
        samples.append(jobgate.clock_latency(timeout))
        time.sleep(0.02)
    latency.append(latency_row("Jobgate, 1 worker x 2 processes", samples))
    steps = {
        key: percentile([s[key] for s in jobgate.steps[-len(samples) :]], 0.5)
        for key in jobgate.steps[0]
    }
    log("Jobgate's steps (p50 ms): " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))
    for _ in range(args.repeat):
        throughput.append(
            throughput_row(
                "Jobgate, 1 worker x 2 processes",
                n,
                clients,
                jobgate.echo,
                jobgate.completed,
                timeout,
            )
        )

    # (2) Jobgate: two task workers with one handler process each
    worker = stack.procs["worker-task"]
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    for name in ("worker-task-a", "worker-task-b"):
        stack.start_worker("task", name=name, TASK_CONCURRENCY="1")
    warm = [jobgate.echo(i) for i in range(20)]
    wait_count(lambda: jobgate.completed(warm), len(warm), 60)
    for _ in range(args.repeat):
        throughput.append(
            throughput_row(
                "Jobgate, 2 workers x 1 process",
                n,
                clients,
                jobgate.echo,
                jobgate.completed,
                timeout,
            )
        )
    for name in ("worker-task-a", "worker-task-b"):
        stack.procs[name].send_signal(signal.SIGTERM)
    for name in ("worker-task-a", "worker-task-b"):
        stack.procs[name].wait(timeout=60)

    # (3) Celery, on a broker vhost and a result database of its own
    suffix = uuid.uuid4().hex[:8]
    broker = throwaway_vhost(bench.cleanup, f"celery-bench-{suffix}")
    backend = throwaway_database(bench.cleanup, f"celery_bench_{suffix}")
    celery = Celery(broker, backend)
    bench.cleanup.push("close the Celery connection", celery.close)
    start_celery_worker(
        bench,
        {"BENCH_CELERY_BROKER": broker, "BENCH_CELERY_BACKEND": os.environ["BENCH_CELERY_BACKEND"]},
    )
    celery.clock_latency(60)  # the worker is up and its pool warm
    warm = [celery.echo(i) for i in range(20)]
    wait_count(lambda: celery.completed(warm), len(warm), 60)
    samples = []
    for _ in range(args.samples):
        samples.append(celery.clock_latency(timeout))
        time.sleep(0.02)
    latency.append(latency_row("Celery, prefork x 2", samples))
    for _ in range(args.repeat):
        throughput.append(
            throughput_row(
                "Celery, prefork x 2", n, clients, celery.echo, celery.completed, timeout
            )
        )

    # (4) report
    celery_tp = max(r["per_s"] for r in throughput if r["how"].startswith("Celery"))
    celery_lat = next(r for r in latency if r["how"].startswith("Celery"))
    for row in throughput:
        row["ratio"] = row["per_s"] / celery_tp
    for row in latency:
        row["ratio_p50"] = celery_lat["p50_ms"] / row["p50_ms"]
        row["ratio_p95"] = celery_lat["p95_ms"] / row["p95_ms"]
    tp_table = render_table(
        ["", "tasks", "wall s", "jobs/s", "submit/s", "ratio"],
        [
            [
                r["how"],
                str(r["tasks"]),
                fmt(r["wall_s"], ".2f"),
                fmt(r["per_s"], ".1f"),
                fmt(r["submit_per_s"], ".0f"),
                fmt(r["ratio"], ".2f"),
            ]
            for r in throughput
        ],
    )
    lat_table = render_table(
        ["", "samples", "p50 ms", "p95 ms", "max ms", "ratio p50", "ratio p95"],
        [
            [
                r["how"],
                str(r["samples"]),
                fmt(r["p50_ms"], ".1f"),
                fmt(r["p95_ms"], ".1f"),
                fmt(r["max_ms"], ".1f"),
                fmt(r["ratio_p50"], ".2f"),
                fmt(r["ratio_p95"], ".2f"),
            ]
            for r in latency
        ],
    )
    bench.print_report(
        CONDITIONS,
        [
            f"Throughput, {n} echo tasks from {clients} client threads:\n" + tp_table,
            "Submit -> start at idle, one task at a time:\n" + lat_table,
        ],
        LEGEND,
    )
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(
            bench.tmp, {"celery_version": [str(VENV_BIN / "celery"), "--version"]}
        ),
        settings=effective_settings(stack.env, SETTINGS),
        throughput=throughput,
        latency=latency,
        jobgate_latency_steps_p50_ms=steps,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("task", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
