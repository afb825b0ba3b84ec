"""Analytics (seed 004's dashboard and trends) with a million jobs, and what it costs the
job status changes.

Not part of `make bench`'s stack runs: no service is started, the functions of
`jobgate.analytics` are called on a connection as the stats-service calls them. It creates a
throwaway database (the migrations included), loads `--jobs` (1,000,000) jobs with COPY
(365 days of history; kinds cache/convert/scrape/container/task and some internal webhook
deliveries; mostly completed, some failed/cancelled/pending/running/retrying; `--owners`
(50) owners, one of them with 30 % of the jobs), folds the deltas the load wrote as
housekeeping does (`analytics.compact_all`), then times:

  * `dashboard`: admin (every owner), admin with a kind, the big owner, a small owner, a
    small owner with a kind; `--calls` (300) calls each, p50/p95/p99;
  * `trends(days=365)` for each metric, admin and the big owner (the export reads the same);
  * the same admin dashboard with a backlog of unfolded deltas (the transitions below,
    before compaction);
  * a direct COUNT over `jobs` (what the rollups replace), a few calls;
  * the transitions' added cost: `--updates` (20,000) single-row status UPDATEs (each its own
    transaction: pending -> running -> completed, as claim/finish write them) from 1 and
    from 4 client connections, with the analytics trigger disabled and enabled
    (synchronous_commit off, so the numbers are the statements' CPU and WAL, not fsyncs);
  * compaction's own speed (deltas folded per second).

Target (issue 10): dashboard p95 < 50 ms at 1M jobs; trends(365) aimed at the same.

Usage: .venv/bin/python bench/analytics_bench.py [--quick] [--jobs N] [--calls N] ...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402

from bench import fixtures  # noqa: E402
from bench.harness import (  # noqa: E402
    Bench,
    add_quick,
    log,
    machine_info,
    parse,
    parser,
    render_table,
    run_main,
    throwaway_database,
    verdict,
)
from jobgate import analytics  # noqa: E402
from jobgate.db import Database  # noqa: E402

TARGET_MS = 50.0
CONDITIONS = (
    "One process calls jobgate.analytics on one connection (as the stats-service does), on\n"
    "the machine that runs PostgreSQL; warm caches; every read is one round trip or two."
)
LEGEND = (
    "p50/p95/p99 ms: wall time of one call, client side (SQL, round trips, Python).\n"
    "transitions: single-row status UPDATEs, one transaction each; 'added' = trigger on vs off."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    add_quick(p, "100,000 jobs, 100 calls, 4,000 updates")
    p.add_argument("--jobs", type=int, default=1_000_000, help="jobs loaded (1,000,000)")
    p.add_argument("--owners", type=int, default=50, help="owners (50)")
    p.add_argument("--calls", type=int, default=300, help="timed calls per read (300)")
    p.add_argument("--updates", type=int, default=20_000, help="status UPDATEs per run (20,000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--tmp-parent", default="/tmp", help="where the temp dir is made (/tmp)")
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    p.add_argument("--keep-logs", action="store_true", help=argparse.SUPPRESS)
    return parse(p, argv, {"--jobs": 100_000, "--calls": 100, "--updates": 4000})


def load_jobs(url: str, args: argparse.Namespace) -> list[str]:
    """Owners and `--jobs` jobs (`bench.fixtures.load_jobs`: COPY in chunks, the analytics
    insert trigger on), then 20 Jobgate and 10 external worker rows; returns the owner ids,
    the big one first."""
    owners = fixtures.load_jobs(url, jobs=args.jobs, owners=args.owners, seed=args.seed, log=log)
    kinds = [k for k, _ in fixtures.KINDS]
    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    # Workers: Jobgate's per kind, and external ones of a few owners (the big one included).
    for i in range(20):
        cur.execute(
            "INSERT INTO workers (id, kind, hostname, pid, status) VALUES (%s, %s, 'h', %s, %s)",
            (f"w{i}", kinds[i % 5], i, "busy" if i % 3 else "stopped"),
        )
    for i in range(10):
        cur.execute(
            "INSERT INTO workers (id, kind, status, external, owner_id)"
            " VALUES (%s, 'external', 'active', true, %s)",
            (f"ext{i}", owners[i % 3]),
        )
    conn.close()
    return owners


def percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "n": len(samples),
        "p50_ms": statistics.median(samples) * 1000,
        "p95_ms": q[94] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": max(samples) * 1000,
    }


def time_calls(calls: int, fn: Callable[[], Any]) -> dict[str, float]:
    for _ in range(5):  # warm-up: plans, caches
        fn()
    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return percentiles(samples)


def transitions(url: str, job_ids: list[str], *, clients: int, trigger: bool) -> dict[str, float]:
    """Each job pending -> running -> completed (two UPDATEs, one transaction each), the jobs
    split over `clients` connections; with the analytics update trigger on or off."""
    admin = psycopg2.connect(url)
    admin.autocommit = True
    admin.cursor().execute(
        f"ALTER TABLE jobs {'ENABLE' if trigger else 'DISABLE'} TRIGGER analytics_jobs_update"
    )
    parts = [job_ids[i::clients] for i in range(clients)]
    errors: list[BaseException] = []

    def run(ids: list[str]) -> None:
        try:
            conn = psycopg2.connect(url)
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute("SET synchronous_commit = off")
            for job_id in ids:
                cur.execute(
                    "UPDATE jobs SET status = 'running', attempt = attempt + 1,"
                    " worker_id = 'bench', started_at = coalesce(started_at, now()),"
                    " updated_at = now() WHERE id = %s",
                    (job_id,),
                )
                cur.execute(
                    "UPDATE jobs SET status = 'completed', completed_at = now(),"
                    " worker_id = NULL, updated_at = now() WHERE id = %s",
                    (job_id,),
                )
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in parts]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    admin.cursor().execute("ALTER TABLE jobs ENABLE TRIGGER analytics_jobs_update")
    admin.close()
    if errors:
        raise errors[0]
    updates = 2 * len(job_ids)
    return {
        "clients": clients,
        "trigger": trigger,
        "updates": updates,
        "wall_s": wall,
        "updates_per_s": updates / wall,
    }


def new_pending(url: str, owners: list[str], n: int) -> list[str]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(
        """
        INSERT INTO jobs (id, kind, owner_id, status)
        SELECT gen_random_uuid(), 'task', (%s::uuid[])[1 + i %% %s], 'pending'
        FROM generate_series(1, %s) i RETURNING id
        """,
        (owners, len(owners), n),
    )
    ids = [str(r[0]) for r in cur.fetchall()]
    conn.close()
    return ids


def deltas(url: str) -> int:
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM analytics_deltas")
        return cur.fetchone()[0]
    finally:
        conn.close()


def run(bench: Bench) -> None:
    args = bench.args
    url = throwaway_database(bench.cleanup, f"jobgate_bench_{bench.run_id}")
    log(f"database {url.rsplit('/', 1)[1]}; loading {args.jobs:,} jobs")
    t0 = time.perf_counter()
    owners = load_jobs(url, args)
    load_s = time.perf_counter() - t0
    backlog = deltas(url)
    database = Database(url, maxconn=4)
    bench.cleanup.push("close the pool", database.close)
    t0 = time.perf_counter()
    folded = analytics.compact_all(database, max_batches=10_000)
    compact_s = time.perf_counter() - t0
    log(f"load {load_s:.0f} s wrote {backlog:,} deltas; compaction folded {folded:,}"
        f" in {compact_s:.1f} s")  # fmt: skip
    # Compaction leaves the folded deltas dead until autovacuum (threshold 10,000 dead rows
    # on this table) comes by, within a minute; do its work now rather than wait for it.
    vac = psycopg2.connect(url)
    vac.autocommit = True
    vac.cursor().execute("VACUUM ANALYZE analytics_deltas, analytics_totals, analytics_daily,"
                         " analytics_daily_all")  # fmt: skip
    vac.close()
    big, small = owners[0], owners[7]

    reads: list[tuple[str, dict[str, float]]] = []
    with database.transaction() as conn:
        conn.autocommit = True  # one statement, one snapshot: as a service's request runs

        def dash(owner: str | None, kind: str | None, reader: str | None) -> Callable[[], Any]:
            return lambda: analytics.dashboard(conn, owner_id=owner, kind=kind, reader_id=reader)

        def trend(owner: str | None, metric: str) -> Callable[[], Any]:
            return lambda: analytics.trends(
                conn, owner_id=owner, kind=None, days=365, metric=metric
            )

        cases: list[tuple[str, Callable[[], Any]]] = [
            ("dashboard admin", dash(None, None, None)),
            ("dashboard admin kind=task", dash(None, "task", None)),
            ("dashboard big owner (30%)", dash(big, None, big)),
            ("dashboard small owner", dash(small, None, small)),
            ("dashboard small owner kind=cache", dash(small, "cache", small)),
        ]
        for metric in analytics.METRICS:
            cases.append((f"trends 365 {metric} admin", trend(None, metric)))
        cases.append(("trends 365 completion_rate big owner", trend(big, "completion_rate")))
        cases.append(("trends 365 avg_duration small owner", trend(small, "avg_duration")))
        cases.append(
            (
                "export_rows 365 admin kind=scrape",
                lambda: analytics.export_rows(conn, owner_id=None, kind="scrape", days=365),
            )
        )
        for name, fn in cases:
            reads.append((name, time_calls(args.calls, fn)))
            log(f"{name}: p95 {reads[-1][1]['p95_ms']:.2f} ms")
        # What the rollups replace: counting the jobs on each request.
        direct = time_calls(
            3,
            lambda: conn.cursor().execute(
                "SELECT status, count(*), avg(extract(epoch FROM completed_at - started_at))"
                " FROM jobs WHERE kind <> 'webhook' GROUP BY status"
            ),
        )
        reads.append(("direct COUNT over jobs (admin)", direct))
        conn.autocommit = False

    # Transitions with and without the trigger; then the dashboard with their deltas unfolded.
    n_jobs = args.updates // 2
    runs = []
    compaction: dict[str, float] = {}
    for clients in (1, 4):
        for trigger in (False, True, False, True):
            ids = new_pending(url, owners, n_jobs)
            analytics.compact_all(database, max_batches=10_000)  # the inserts' deltas
            runs.append(transitions(url, ids, clients=clients, trigger=trigger))
            r = runs[-1]
            log(f"{clients} client(s), trigger {'on ' if trigger else 'off'}:"
                f" {r['updates_per_s']:,.0f} updates/s")  # fmt: skip
            if trigger and not compaction:
                unfolded = deltas(url)
                with database.transaction() as conn:
                    with_backlog = time_calls(
                        args.calls,
                        lambda: analytics.dashboard(conn, owner_id=None, kind=None, reader_id=None),
                    )
                reads.append((f"dashboard admin, {unfolded:,} deltas unfolded", with_backlog))
                t0 = time.perf_counter()
                n = analytics.compact_all(database, max_batches=10_000)
                compaction = {"deltas": n, "seconds": time.perf_counter() - t0}
    summary = []
    for clients in (1, 4):
        off = [r["updates_per_s"] for r in runs if r["clients"] == clients and not r["trigger"]]
        on = [r["updates_per_s"] for r in runs if r["clients"] == clients and r["trigger"]]
        off_us, on_us = 1e6 / statistics.mean(off), 1e6 / statistics.mean(on)
        summary.append(
            {
                "clients": clients,
                "off_updates_per_s": statistics.mean(off),
                "on_updates_per_s": statistics.mean(on),
                "added_us_per_update_wall": on_us - off_us,
                "added_pct": (on_us / off_us - 1) * 100,
            }
        )

    read_table = render_table(
        ["read", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms", "p95<50ms"],
        [
            [
                name,
                str(r["n"]),
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['max_ms']:.2f}",
                verdict(r["p95_ms"] < TARGET_MS) if not name.startswith("direct") else "-",
            ]
            for name, r in reads
        ],
    )
    tr_table = render_table(
        ["clients", "trigger off upd/s", "trigger on upd/s", "added us/update", "added %"],
        [
            [
                str(s["clients"]),
                f"{s['off_updates_per_s']:,.0f}",
                f"{s['on_updates_per_s']:,.0f}",
                f"{s['added_us_per_update_wall']:.1f}",
                f"{s['added_pct']:.1f}",
            ]
            for s in summary
        ],
    )
    load = (
        f"{args.jobs:,} jobs, {args.owners} owners; load {load_s:.0f} s wrote {backlog:,} deltas;"
        f" compaction folded {folded:,} deltas in {compact_s:.1f} s"
        f" ({folded / compact_s:,.0f}/s); after {args.updates:,} transitions:"
        f" {compaction['deltas']:,} deltas in {compaction['seconds']:.2f} s"
    )
    bench.print_report(
        CONDITIONS + "\n" + load,
        [
            "Reads:\n" + read_table,
            f"Transitions ({args.updates:,} UPDATEs per run, mean of 2 runs):\n" + tr_table,
        ],
        LEGEND,
    )
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(bench.tmp),
        settings={
            "compact_batch": analytics.COMPACT_BATCH,
            "synchronous_commit_transitions": "off",
        },
        load={"jobs": args.jobs, "seconds": load_s, "deltas": backlog},
        compaction_after_load={"deltas": folded, "seconds": compact_s},
        compaction_after_transitions=compaction,
        reads=[{"read": name, **r} for name, r in reads],
        transitions=runs,
        transitions_summary=summary,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("analytics", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
