"""Scale: `GET /api/v1/jobs` and `GET /api/v1/jobs/{id}` with a million jobs in the table
(issue 13, target 5), and a job status read against a bare Flask endpoint.

A throwaway database and vhost, gunicorn auth-service and gateway (`Bench.start_stack`; its
worker is stopped: no job runs), two users made through the API (one with 30 % of the jobs,
one small) with API keys, then `--jobs` (1,000,000) jobs loaded with COPY
(`bench/fixtures.py`: 50 owners, every kind and status, priorities, a year of created_at),
the analytics deltas folded and VACUUM ANALYZE, as housekeeping and autovacuum would have.

Measured:

  * open loop at `--rate` (50) requests/s for `--seconds` (20) s per scenario, from
    `--threads` (8) client threads, latency from each request's scheduled send time:
    `GET /api/v1/jobs` with each documented filter (kind, status, created_since, owner,
    combined), as the big user (API key) and as the admin (JWT); the first page, and the
    page at `--depth` (jobs/10) by keyset cursor; `GET /api/v1/jobs/{id}` (user and admin).
    Target: p95 < 20 ms;
  * the page at `--depth` by offset, and `sort=priority` (a sort, not a filter; not
    indexed): a few sequential requests (they cannot hold 50/s);
  * closed loop, `--tput-procs` (2) processes x `--tput-threads` (4) keep-alive
    connections for `--tput-seconds` (10) s: max requests/s of `GET /api/v1/jobs/{id}` and
    of a bare Flask app (one route returning a small JSON dict) started with the gateway's
    gunicorn command line, alternating, twice each. Target: ratio >= 0.5.

  * `--profile`: py-spy on one gateway worker during a third closed loop of job reads (not
    counted), its heaviest functions by cumulative and own time (CPU: idle threads left out).

Usage: .venv/bin/python bench/scale_bench.py [--quick] [--profile] [--jobs N] [--seconds S] ...
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402
import requests  # noqa: E402

from bench import fixtures  # noqa: E402
from bench.harness import (  # noqa: E402
    RESULTS_DIR,
    Api,
    Bench,
    BenchError,
    add_common_options,
    add_quick,
    effective_settings,
    log,
    machine_info,
    parse,
    parser,
    profile_table,
    py_spy,
    pyspy_top,
    render_table,
    run_main,
    verdict,
)
from jobgate import analytics, jobs  # noqa: E402
from jobgate.db import Database  # noqa: E402
from tests.stack import VENV_BIN, free_port  # noqa: E402

TARGET_P95_MS = 20.0
TARGET_RATIO = 0.5
# The gateway's gunicorn settings, as tests/stack.py's `start_gateway` starts it.
GUNICORN_ARGS = ("--workers", "2", "--threads", "4", "--no-control-socket")
BARE_APP = '''"""A bare Flask JSON endpoint: scale_bench.py's reference."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/ping/<job_id>")
def ping(job_id):
    return jsonify({"id": job_id, "status": "completed", "progress": 100})
'''
CONDITIONS = (
    "One 2-vCPU machine runs PostgreSQL, RabbitMQ, gunicorn (gateway: 2 workers x 4 threads,\n"
    "auth-service) and the clients; warm caches; the rate limits lifted. Open loop: each\n"
    "request has a scheduled send time (rate/s), latency is measured from it."
)
LEGEND = (
    "p50/p95/p99/max ms: scheduled send -> response read, client side.\n"
    "user = the big owner's API key (30 % of the jobs); admin = the admin's JWT (every owner).\n"
    "X-Total-Count: analytics rollups; with created_since counted up to jobs.COUNT_CAP (1,000).\n"
    "closed loop: requests/s completed by procs x threads keep-alive connections."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    add_quick(p, "100,000 jobs, 5 s per scenario, 4 s closed-loop phases")
    p.add_argument("--jobs", type=int, default=1_000_000, help="jobs loaded (1,000,000)")
    p.add_argument("--owners", type=int, default=50, help="owners (50)")
    p.add_argument("--rate", type=float, default=50.0, help="requests/s, open loop (50)")
    p.add_argument("--seconds", type=float, default=20.0, help="per scenario, s (20)")
    p.add_argument("--threads", type=int, default=8, help="open-loop client threads (8)")
    p.add_argument("--depth", type=int, default=None, help="deep page, rows (jobs/10)")
    p.add_argument("--deep-offset-requests", type=int, default=10, help="sequential (10)")
    p.add_argument("--limit", type=int, default=50, help="page size (50, the default)")
    p.add_argument("--tput-seconds", type=float, default=10.0, help="closed-loop phase, s (10)")
    p.add_argument("--tput-procs", type=int, default=2, help="closed-loop processes (2)")
    p.add_argument("--tput-threads", type=int, default=4, help="connections per process (4)")
    p.add_argument("--only", choices=("list", "tput"), help="one part only")
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy one gateway worker during an extra closed loop of job reads",
    )
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples/s (200)")
    p.add_argument("--profile-top", type=int, default=25, help="functions per table (25)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    add_common_options(p, job_timeout=60)
    return parse(
        p,
        argv,
        {"--jobs": 100_000, "--seconds": 5.0, "--tput-seconds": 4.0, "--deep-offset-requests": 5},
    )


# --- latency -----------------------------------------------------------------------------------


def summary(samples: list[float], errors: int, wall: float) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "n": len(ms),
        "errors": errors,
        "rate": len(ms) / wall if wall > 0 else 0.0,
        "p50_ms": statistics.median(ms),
        "p95_ms": q[94],
        "p99_ms": q[98],
        "max_ms": ms[-1],
    }


def open_loop(
    base: str,
    path_of: Callable[[int], str],
    headers: dict[str, str],
    *,
    rate: float,
    seconds: float,
    threads: int,
) -> dict[str, float]:
    """`rate` GETs a second for `seconds`, request i scheduled at t0 + i/rate and sent by
    whichever of `threads` is free; latency = response read - scheduled time, so a stall
    delays the requests behind it and counts against them (no coordinated omission while a
    thread is free)."""
    n = max(1, int(rate * seconds))
    latencies: list[float | None] = [None] * n
    errors: list[str] = []
    counter = itertools.count()
    t0 = time.perf_counter() + 0.1

    def client() -> None:
        session = requests.Session()
        session.trust_env = False
        session.headers.update(headers)
        while (i := next(counter)) < n:
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                r = session.get(base + path_of(i), timeout=60)
                ok = r.status_code == 200
            except requests.RequestException as exc:
                ok, r = False, exc
            latencies[i] = time.perf_counter() - scheduled
            if not ok:
                errors.append(str(getattr(r, "status_code", r)) + " " + path_of(i))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    if errors:
        log(f"  {len(errors)} errors, e.g. {errors[0][:200]}")
    return summary([x for x in latencies if x is not None], len(errors), wall)


def sequential(base: str, path: str, headers: dict[str, str], n: int) -> dict[str, float]:
    session = requests.Session()
    session.trust_env = False
    session.headers.update(headers)
    samples, errors = [], 0
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(base + path, timeout=120)
        samples.append(time.perf_counter() - t)
        errors += r.status_code != 200
    return summary(samples, errors, time.perf_counter() - t0)


# --- closed loop ---------------------------------------------------------------------------------


def _closed_loop_proc(job: tuple[int, list[str], dict[str, str], int, float, float]) -> tuple:
    """One client process: `threads` keep-alive connections GET the paths round robin from
    `start` (wall clock) for `seconds`; returns (completed, errors)."""
    port, paths, headers, threads, start, seconds = job
    counts = [0] * threads
    errors = [0] * threads

    def run(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = k
        while time.time() < start:
            time.sleep(0.001)
        end = start + seconds
        while time.time() < end:
            conn.request("GET", paths[i % len(paths)], headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                counts[k] += 1
            else:
                errors[k] += 1
            i += threads
        conn.close()

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts), sum(errors)


def closed_loop(
    pool: Any, port: int, paths: list[str], headers: dict[str, str], args: argparse.Namespace
) -> dict[str, float]:
    """Max requests/s: `--tput-procs` x `--tput-threads` connections, 1 s warm-up (not
    counted), then `--tput-seconds` counted."""
    warm = time.time() + 0.5
    pool.map(
        _closed_loop_proc, [(port, paths, headers, args.tput_threads, warm, 1.0)] * args.tput_procs
    )
    start = time.time() + 0.5
    jobs_ = [(port, paths, headers, args.tput_threads, start, args.tput_seconds)]
    out = pool.map(_closed_loop_proc, jobs_ * args.tput_procs)
    done, errors = sum(o[0] for o in out), sum(o[1] for o in out)
    if errors:
        raise BenchError(f"closed loop on :{port}: {errors} non-200 answers")
    return {"requests": done, "rps": done / args.tput_seconds}


def profile_gateway(
    bench: Bench, pool: Any, paths: list[str], headers: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """py-spy (`--nonblocking`: the worker is never paused; idle threads left out) on one
    gateway worker during an extra closed loop of job reads: where a request's CPU goes."""
    tool = py_spy()
    if tool is None:
        raise BenchError("--profile needs py-spy (.venv/bin/py-spy)")
    stack = bench.stack
    assert stack is not None
    workers = psutil.Process(stack.procs["gateway"].pid).children()
    if not workers:
        raise BenchError("the gateway has no worker process to profile")
    pid = workers[0].pid
    out = bench.tmp / "gateway-py-spy.txt"
    # the loop's warm-up and counted phase (idle threads add no samples outside them)
    seconds = int(args.tput_seconds) + 4
    argv = [tool, "record", "-p", str(pid), "-d", str(seconds), "-r", str(args.profile_rate)]
    spy = subprocess.Popen(
        [*argv, "-f", "raw", "--threads", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    bench.cleanup.push("stop py-spy", lambda: spy.poll() is None and spy.kill())
    time.sleep(0.5)  # py-spy attached
    loop = closed_loop(pool, stack.gateway_port, paths, headers, args)
    _, err = spy.communicate(timeout=60)
    if not out.exists():
        raise BenchError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
    top = pyspy_top(out, args.profile_rate, n=args.profile_top)
    if not args.no_json:  # the raw profile, for a flame graph (speedscope.app)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        kept = RESULTS_DIR / f"{bench.name}-{bench.stamp}-gateway-py-spy.txt"
        shutil.copyfile(out, kept)
        top["file"] = str(kept.relative_to(REPO))
    log(f"profiled gateway worker {pid}: {loop['rps']:.0f} job reads/s meanwhile")
    return {"pid": pid, **loop, **top}


# --- the run -------------------------------------------------------------------------------------


def make_user(api: Api, name: str) -> tuple[str, dict[str, str]]:
    """A user made by the admin through the API, and an API key of theirs: (id, headers)."""
    base, s = api.base, api.session
    password = f"bench-{name}-password"
    r = s.post(f"{base}/api/v1/auth/users", json={"username": name, "password": password})
    if r.status_code != 201:
        raise BenchError(f"create user -> {r.status_code}: {r.text[:300]}")
    user_id = str(r.json()["id"])
    login = requests.post(
        f"{base}/api/v1/auth/login", json={"username": name, "password": password}, timeout=30
    )
    token = login.json()["access_token"]
    r = requests.post(
        f"{base}/api/v1/auth/api-keys",
        json={"name": "scale-bench"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if r.status_code != 201:
        raise BenchError(f"create API key -> {r.status_code}: {r.text[:300]}")
    return user_id, {"X-API-Key": r.json()["key"]}


def sample_ids(url: str, owner: str | None, n: int) -> list[str]:
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        where = "owner_id = %s AND kind <> 'webhook'" if owner else "kind <> 'webhook'"
        cur.execute(
            f"SELECT id FROM jobs TABLESAMPLE SYSTEM (5) WHERE {where} LIMIT %s",
            ((owner, n) if owner else (n,)),
        )
        return [str(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()


def cursor_at(url: str, depth: int) -> str:
    """The cursor a client paging the admin's default listing would hold after `depth` rows."""
    conn = psycopg2.connect(url, cursor_factory=psycopg2.extras.RealDictCursor)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT id, created_at FROM jobs WHERE kind <> 'webhook'"
            " ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (depth - 1,),
        )
        return jobs.encode_cursor("created_at", "desc", cur.fetchone())
    finally:
        conn.close()


def run(bench: Bench) -> None:
    args = bench.args
    depth = args.depth or args.jobs // 10
    stack = bench.start_stack("task", {})
    worker = stack.procs["worker-task"]  # no job runs: the jobs are rows
    worker.terminate()
    worker.wait(timeout=60)
    url = stack.env["DATABASE_URL"]
    api = Api(stack.url, args, admin_password=bench.admin_password)
    api.login()
    big_id, big = make_user(api, "bigowner")
    small_id, small = make_user(api, "smallowner")
    log(f"loading {args.jobs:,} jobs")
    t0 = time.perf_counter()
    owners = fixtures.load_jobs(
        url,
        jobs=args.jobs,
        owners=args.owners,
        seed=args.seed,
        existing=[big_id, small_id],
        log=log,
    )
    load_s = time.perf_counter() - t0
    database = Database(url, maxconn=2)
    bench.cleanup.push("close the pool", database.close)
    t0 = time.perf_counter()
    folded = analytics.compact_all(database, max_batches=100_000)
    fixtures.vacuum_analyze(url)
    log(
        f"loaded in {load_s:.0f} s; folded {folded:,} deltas, VACUUM ANALYZE:"
        f" {time.perf_counter() - t0:.0f} s"
    )
    assert owners[0] == big_id

    base = stack.url
    rows: list[dict[str, Any]] = []
    tput: list[dict[str, Any]] = []
    profile: dict[str, Any] | None = None
    if args.only in (None, "list"):
        admin = {"Authorization": f"Bearer {api.login()}"}
        now = time.time()

        def since(days: int) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - days * 86400))

        lim = f"limit={args.limit}"
        user_ids = sample_ids(url, big_id, 2000)
        all_ids = sample_ids(url, None, 2000)
        deep_cursor = cursor_at(url, depth)
        scenarios: list[tuple[str, str, dict[str, str], Callable[[int], str]]] = []

        def fixed(path: str) -> Callable[[int], str]:
            return lambda _i: path

        for who, headers in (("user", big), ("admin", admin)):
            for label, query in (
                ("no filter", ""),
                ("kind=convert", "&kind=convert"),
                ("status=failed", "&status=failed"),
                ("status=running", "&status=running"),
                ("kind=scrape&status=cancelled", "&kind=scrape&status=cancelled"),
                ("kind=webhook", "&kind=webhook"),
                ("created_since=1d", f"&created_since={since(1)}"),
                ("created_since=30d", f"&created_since={since(30)}"),
                ("created_since=365d&status=failed", f"&created_since={since(365)}&status=failed"),
            ):
                if label == "kind=webhook" and who == "admin":
                    continue  # an admin lists only their own deliveries: the small case
                scenarios.append(
                    (f"list {label}", who, headers, fixed(f"/api/v1/jobs?{lim}{query}"))
                )
        scenarios.append(
            (
                "list owner=<small user>",
                "admin",
                admin,
                fixed(f"/api/v1/jobs?{lim}&owner={small_id}"),
            )
        )
        scenarios.append(
            (
                "list owner=<big user>&kind=task",
                "admin",
                admin,
                fixed(f"/api/v1/jobs?{lim}&owner={big_id}&kind=task"),
            )
        )
        scenarios.append(
            ("list small user, no filter", "small user", small, fixed(f"/api/v1/jobs?{lim}"))
        )
        scenarios.append(
            (
                f"page at depth {depth:,}: cursor",
                "admin",
                admin,
                fixed(f"/api/v1/jobs?{lim}&cursor={deep_cursor}"),
            )
        )
        scenarios.append(
            ("job by id", "user", big, lambda i: f"/api/v1/jobs/{user_ids[i % len(user_ids)]}")
        )
        scenarios.append(
            ("job by id", "admin", admin, lambda i: f"/api/v1/jobs/{all_ids[i % len(all_ids)]}")
        )

        for name, who, headers, path_of in scenarios:
            for i in range(10):  # warm-up: plans, pools, caches
                requests.get(base + path_of(i), headers=headers, timeout=60)
            r = open_loop(
                base, path_of, headers, rate=args.rate, seconds=args.seconds, threads=args.threads
            )
            sample = requests.get(base + path_of(0), headers=headers, timeout=60)
            total = sample.headers.get("X-Total-Count") or (
                "≥" + sample.headers["X-Total-Count-Min"]
                if "X-Total-Count-Min" in sample.headers
                else ""
            )
            rows.append({"scenario": name, "who": who, "total": total, "open_loop": True, **r})
            log(f"{name} ({who}): p50 {r['p50_ms']:.1f} p95 {r['p95_ms']:.1f} ms, total {total}")
        for name, path in (
            ("page at depth 0: offset", f"/api/v1/jobs?{lim}&offset=0"),
            (f"page at depth {depth:,}: offset", f"/api/v1/jobs?{lim}&offset={depth}"),
            ("sort=priority (a sort, not a filter: no index)", f"/api/v1/jobs?{lim}&sort=priority"),
        ):
            requests.get(base + path, headers=admin, timeout=120)
            r = sequential(base, path, admin, args.deep_offset_requests)
            rows.append(
                {
                    "scenario": name + " (sequential)",
                    "who": "admin",
                    "total": "",
                    "open_loop": False,
                    **r,
                }
            )
            log(f"{name}: p50 {r['p50_ms']:.1f} p95 {r['p95_ms']:.1f} ms (sequential)")

    if args.only in (None, "tput"):
        (stack.workdir / "bench_bare_flask.py").write_text(BARE_APP)
        bare_port = free_port()
        stack._spawn(  # same gunicorn settings as the gateway, cleaned up with the stack
            "bare-flask",
            [
                str(VENV_BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{bare_port}",
                *GUNICORN_ARGS,
                "bench_bare_flask:app",
            ],
        )
        stack._wait_http(f"http://127.0.0.1:{bare_port}/ping/x", "bare-flask")
        ids = sample_ids(url, big_id, 500)
        job_paths = [f"/api/v1/jobs/{i}" for i in ids]
        bare_paths = [f"/ping/{i}" for i in ids]
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.tput_procs) as pool:
            for round_ in (1, 2):
                b = closed_loop(pool, bare_port, bare_paths, {}, args)
                j = closed_loop(pool, stack.gateway_port, job_paths, big, args)
                tput.append(
                    {
                        "round": round_,
                        "bare_rps": b["rps"],
                        "job_rps": j["rps"],
                        "ratio": j["rps"] / b["rps"],
                    }
                )
                log(
                    f"round {round_}: bare Flask {b['rps']:.0f}/s, job by id {j['rps']:.0f}/s,"
                    f" ratio {j['rps'] / b['rps']:.2f}"
                )
            if args.profile:
                profile = profile_gateway(bench, pool, job_paths, big, args)

    sections = []
    if rows:
        sections.append(
            f"Reads with {args.jobs:,} jobs ({args.rate:g} req/s open loop, {args.seconds:g} s"
            f" each, page size {args.limit}):\n"
            + render_table(
                [
                    "scenario",
                    "who",
                    "X-Total",
                    "n",
                    "err",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "max ms",
                    "p95<20ms",
                ],
                [
                    [
                        r["scenario"],
                        r["who"],
                        str(r["total"]),
                        str(r["n"]),
                        str(r["errors"]),
                        f"{r['p50_ms']:.1f}",
                        f"{r['p95_ms']:.1f}",
                        f"{r['p99_ms']:.1f}",
                        f"{r['max_ms']:.1f}",
                        verdict(r["p95_ms"] < TARGET_P95_MS and not r["errors"])
                        if r["open_loop"]
                        else "-",
                    ]
                    for r in rows
                ],
            )
        )
    if tput:
        sections.append(
            f"Closed loop, {args.tput_procs} procs x {args.tput_threads} connections,"
            f" {args.tput_seconds:g} s each, alternating:\n"
            + render_table(
                ["round", "bare Flask req/s", "GET /api/v1/jobs/{id} req/s", "ratio", ">=0.5"],
                [
                    [
                        str(t["round"]),
                        f"{t['bare_rps']:.0f}",
                        f"{t['job_rps']:.0f}",
                        f"{t['ratio']:.2f}",
                        verdict(t["ratio"] >= TARGET_RATIO),
                    ]
                    for t in tput
                ],
            )
        )
    if profile is not None:
        sections.append(
            f"py-spy, one gateway worker (pid {profile['pid']}) during a closed loop of job"
            f" reads ({profile['requests']:,} requests, {profile['rps']:.0f}/s, not counted"
            f" above); {profile['kept_s']:.1f} s of samples where a thread ran, every thread."
            "\nBy cumulative time:\n"
            + profile_table(profile["by_cumulative"])
            + "\nBy own time:\n"
            + profile_table(profile["by_own"])
        )
    bench.print_report(
        CONDITIONS + f"\nload: {args.jobs:,} jobs in {load_s:.0f} s (COPY)", sections, LEGEND
    )
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(bench.tmp),
        settings=effective_settings(stack.env, ("db_pool_max", "rate_limit_status")),
        load={"jobs": args.jobs, "seconds": load_s, "deltas_folded": folded},
        count_cap=jobs.COUNT_CAP,
        gunicorn_args=list(GUNICORN_ARGS),
        reads=rows,
        throughput=tput,
        profile=profile,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("scale", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
