"""Batch submission: jobs accepted per second through `POST /api/v1/jobs/batch` (issue 13,
target 2: >= 5,000 jobs/s), next to per-job `POST /api/v1/jobs` in the same run.

`make bench` runs this (after task_bench.py). It creates a throwaway PostgreSQL database and
RabbitMQ vhost, starts the real processes (gunicorn auth-service and gateway) as the
end-to-end tests do, stops the worker (acceptance alone: nothing consumes while measuring),
and measures, for `task` (echo) and `cache` (one small file) jobs:

  * batch: `--batches` (20) requests of `--size` (1,000) jobs from `--clients` (4) client
    threads; jobs/s = jobs / wall time, every request answered 201;
  * reference: `--singles` (1,000) per-job `POST /api/v1/jobs` from the same threads.

Then a profile hint: one batch of `--size` task jobs through the gateway app in this process
(against the same database and broker) under cProfile; the functions with the most
cumulative time are printed and written to the JSON.

Usage: .venv/bin/python bench/batch_bench.py [--quick] [--batches N] [--size N] ...
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import io
import os
import pstats
import signal
import sys
import threading
import time
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
)

TARGET_JOBS_PER_S = 5000.0
CACHE_FILE = "batch/one.bin"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    add_quick(p, "4 batches, 200 single submissions")
    p.add_argument("--batches", type=int, default=20, help="batch requests per kind (20)")
    p.add_argument("--size", type=int, default=1000, help="jobs per batch (1000, the maximum)")
    p.add_argument("--clients", type=int, default=4, help="client threads (4)")
    p.add_argument("--singles", type=int, default=1000, help="per-job POSTs per kind (1000)")
    add_common_options(p, job_timeout=120.0)
    return parse(p, argv, quick={"--batches": 4, "--singles": 200})


def job_body(kind: str, i: int) -> dict[str, Any]:
    if kind == "cache":
        return {"kind": "cache", "files": [CACHE_FILE]}
    return {"kind": "task", "name": "echo", "handler": "echo", "payload": {"i": i}}


class Client:
    """A `requests` session per client thread, with the demo key."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # loopback only
            s.headers["X-API-Key"] = API_KEY
            self.local.session = s
        return s

    def batch(self, kind: str, size: int, start: int) -> int:
        jobs = [job_body(kind, start + i) for i in range(size)]
        r = self.session().post(f"{self.base}/api/v1/jobs/batch", json={"jobs": jobs}, timeout=120)
        if r.status_code != 201:
            raise BenchError(f"POST /api/v1/jobs/batch -> {r.status_code}: {r.text[:300]}")
        return int(r.json()["created"])

    def single(self, kind: str, i: int) -> int:
        r = self.session().post(f"{self.base}/api/v1/jobs", json=job_body(kind, i), timeout=60)
        if r.status_code != 201:
            raise BenchError(f"POST /api/v1/jobs -> {r.status_code}: {r.text[:300]}")
        return 1


def timed_pool(clients: int, fn: Any, args: list[Any]) -> tuple[int, float]:
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(lambda a: fn(*a), args))
    return total, time.perf_counter() - start


def count_jobs(database_url: str) -> int:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM jobs")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def profile_one_batch(env: dict[str, str], size: int) -> list[dict[str, Any]]:
    """One batch through the gateway app in this process under cProfile: where the time goes
    (the top functions by cumulative time, below the request's dispatch)."""
    from jobgate.config import Settings
    from jobgate_gateway import create_app

    app = create_app(Settings.from_env({**os.environ, **env}))
    try:
        client = app.test_client()
        body = {"jobs": [job_body("task", i) for i in range(size)]}
        headers = {"X-API-Key": API_KEY}
        client.post("/api/v1/jobs/batch", json=body, headers=headers)  # warm
        profiler = cProfile.Profile()
        profiler.enable()
        r = client.post("/api/v1/jobs/batch", json=body, headers=headers)
        profiler.disable()
        if r.status_code != 201:
            raise BenchError(f"profiled batch -> {r.status_code}: {r.get_data(as_text=True)[:300]}")
    finally:
        app.extensions["jobgate"].publisher.close()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (file, line, name), (_cc, _nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}({name})"
        rows.append({"function": where, "cumulative_s": ct, "own_s": tt})
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return rows[:15]


CONDITIONS = """\
One machine, loopback only; PostgreSQL, RabbitMQ, the gateway (gunicorn, 2 processes x 4
threads) and this benchmark's client threads share its CPUs; no worker consumes while
measuring. A batch is validated and planned item by item, written in one transaction
(multi-row INSERTs of jobs, items and outbox rows), then published with confirms."""

LEGEND = """\
jobs/s: jobs accepted (answered 201) / the client threads' wall time. ratio: batch /
per-job POST of the same kind. target: >= 5,000 jobs/s (issue 13, target 2)."""


def run(bench: Bench) -> None:
    args = bench.args
    filespace = bench.tmp / "cache-root"
    (filespace / Path(CACHE_FILE).parent).mkdir(parents=True)
    (filespace / CACHE_FILE).write_bytes(b"x" * 4096)
    stack = bench.start_stack("task", {"CACHE_ROOT": str(filespace)})
    worker = stack.procs["worker-task"]
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    client = Client(stack.url)
    client.batch("task", 50, 0)  # warm both gateway processes' paths
    client.batch("cache", 50, 0)
    log(f"stack up and warm in {time.perf_counter() - bench.stack_t0:.1f}s")

    rows: list[dict[str, Any]] = []
    for kind in ("task", "cache"):
        starts = [(kind, args.size, n * args.size) for n in range(args.batches)]
        jobs, wall = timed_pool(args.clients, client.batch, starts)
        if jobs != args.batches * args.size:
            raise BenchError(f"{jobs} {kind} jobs created, {args.batches * args.size} sent")
        singles, single_wall = timed_pool(
            args.clients, client.single, [(kind, i) for i in range(args.singles)]
        )
        row = {
            "kind": kind,
            "batches": args.batches,
            "size": args.size,
            "jobs": jobs,
            "wall_s": wall,
            "per_s": jobs / wall,
            "batch_ms": wall / args.batches * args.clients * 1000,
            "single_jobs": singles,
            "single_per_s": singles / single_wall,
        }
        row["ratio"] = row["per_s"] / row["single_per_s"]
        row["meets_target"] = row["per_s"] >= TARGET_JOBS_PER_S
        rows.append(row)
        log(
            f"{kind}: {jobs} jobs in {wall:.2f}s ({row['per_s']:.0f}/s batched,"
            f" {row['single_per_s']:.0f}/s one by one)"
        )
    stored = count_jobs(stack.env["DATABASE_URL"])
    expected = 100 + sum(r["jobs"] + r["single_jobs"] for r in rows)
    if stored != expected:
        raise BenchError(f"{stored} jobs stored, {expected} accepted")
    profile = profile_one_batch(stack.env, args.size)

    table = render_table(
        ["kind", "jobs", "wall s", "jobs/s", "ms/batch", "per-job POST/s", "ratio", "target"],
        [
            [
                r["kind"],
                str(r["jobs"]),
                fmt(r["wall_s"], ".2f"),
                fmt(r["per_s"], ".0f"),
                fmt(r["batch_ms"], ".0f"),
                fmt(r["single_per_s"], ".0f"),
                fmt(r["ratio"], ".1f"),
                ("met" if r["meets_target"] else "MISSED") + f" (>= {TARGET_JOBS_PER_S:.0f}/s)",
            ]
            for r in rows
        ],
    )
    hint = "\n".join(
        f"  {p['own_s'] * 1000:8.1f} ms own {p['cumulative_s'] * 1000:8.1f} ms cum  {p['function']}"
        for p in profile[:10]
    )
    bench.print_report(
        CONDITIONS,
        [
            f"Batches of {args.size} from {args.clients} client threads:\n" + table,
            f"Profile of one batch of {args.size} task jobs in-process (top own time):\n" + hint,
        ],
        LEGEND,
    )
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(bench.tmp),
        settings=effective_settings(stack.env, COMMON_SETTINGS),
        target_jobs_per_s=TARGET_JOBS_PER_S,
        results=rows,
        profile_top=profile,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("batch", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
