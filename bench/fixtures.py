"""A big `jobs` table for the benchmarks that need one (analytics_bench.py, scale_bench.py).

`load_jobs` writes users and jobs with COPY, in chunks, as a year of use would have left
them: a few owners (one with most of the jobs, the others small), every kind (some internal
`webhook` deliveries among them), every status (waiting and running work is recent),
priorities, lognormal durations and per-kind params. The analytics insert trigger runs (one
delta per key of each chunk, what `analytics.compact_all` folds afterwards); the job-events
trigger is off during the load (a million events would only slow it down). Deterministic for
a given seed, apart from the ids and `now()`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence

import psycopg2
import psycopg2.extras

KINDS = (  # share of the jobs
    ("task", 0.35),
    ("cache", 0.20),
    ("convert", 0.15),
    ("scrape", 0.15),
    ("container", 0.10),
    ("webhook", 0.05),
)
STATUSES = (
    ("completed", 0.85),
    ("failed", 0.07),
    ("cancelled", 0.04),
    ("pending", 0.02),
    ("running", 0.01),
    ("retrying", 0.01),
)
PRIORITIES = ((5, 0.70), (1, 0.05), (3, 0.10), (7, 0.10), (9, 0.05))
BIG_OWNER_SHARE = 0.30
CHUNK = 100_000
YEAR_S = 365 * 86400

# A few params per kind, as the kinds store them (json text, COPY-escaped once each).
PARAMS = {
    "task": [{"name": "bench.noop", "payload": {"n": i}} for i in range(8)],
    "cache": [{"files": [f"proj{i:02d}/shot{i:02d}/a.mov"], "directories": []} for i in range(8)],
    "convert": [{"input_file": str(uuid.UUID(int=i)), "bitrate": "192k"} for i in range(8)],
    "scrape": [{"mode": "profile", "value": f"user{i}", "limit": 10} for i in range(8)],
    "container": [{"image": "busybox", "name": f"c{i}", "command": ["true"]} for i in range(8)],
    "webhook": [{"webhook_id": str(uuid.UUID(int=i)), "event_type": "job.done"} for i in range(8)],
}
COLUMNS = (
    "id",
    "kind",
    "owner_id",
    "status",
    "priority",
    "params",
    "attempt",
    "created_at",
    "started_at",
    "completed_at",
    "updated_at",
)


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _weighted(table: tuple[tuple, ...]) -> tuple[list, list[float]]:
    return [k for k, _ in table], [w for _, w in table]


def load_jobs(
    url: str,
    *,
    jobs: int,
    owners: int = 50,
    seed: int = 1,
    existing: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> list[str]:
    """`owners` owners: the `existing` user ids first (e.g. users made through the API, who
    can log in), then new users (`user<i>`); then `jobs` jobs with COPY in chunks of 100,000,
    then ANALYZE. Returns the owner ids, the big one (30 % of the jobs) first."""
    rng = random.Random(seed)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    cur = conn.cursor()
    owner_ids = [*existing, *(str(uuid.uuid4()) for _ in range(owners - len(existing)))]
    psycopg2.extras.execute_values(
        cur,
        "INSERT INTO users (id, username, password_hash) VALUES %s",
        [(o, f"user{i}", "x") for i, o in enumerate(owner_ids) if i >= len(existing)],
    )
    weights = [BIG_OWNER_SHARE] + [(1 - BIG_OWNER_SHARE) / (owners - 1)] * (owners - 1)
    kinds, kind_w = _weighted(KINDS)
    statuses, status_w = _weighted(STATUSES)
    priorities, priority_w = _weighted(PRIORITIES)
    params = {k: [_copy_text(json.dumps(p)) for p in ps] for k, ps in PARAMS.items()}
    now = dt.datetime.now(dt.UTC)
    cur.execute("ALTER TABLE jobs DISABLE TRIGGER jobs_created_event")
    done = 0
    t0 = time.perf_counter()
    try:
        while done < jobs:
            n = min(CHUNK, jobs - done)
            buf = io.StringIO()
            owner_col = rng.choices(owner_ids, weights=weights, k=n)
            kind_col = rng.choices(kinds, weights=kind_w, k=n)
            status_col = rng.choices(statuses, weights=status_w, k=n)
            prio_col = rng.choices(priorities, weights=priority_w, k=n)
            for owner, kind, status, prio in zip(
                owner_col, kind_col, status_col, prio_col, strict=True
            ):
                age = rng.random() * YEAR_S
                if status in ("pending", "running", "retrying"):
                    age = rng.random() * 3600  # waiting or running work is recent
                created = now - dt.timedelta(seconds=age)
                started = completed = r"\N"
                updated = created
                attempt = 0
                if status != "pending":
                    attempt = 1 if status != "retrying" else 2
                    start = created + dt.timedelta(seconds=rng.expovariate(1 / 2.0))
                    started, updated = start.isoformat(), start
                    if status in ("completed", "failed", "cancelled"):
                        took = min(rng.lognormvariate(3.0, 1.2), age * 0.9)
                        end = start + dt.timedelta(seconds=took)
                        completed, updated = end.isoformat(), end
                buf.write(
                    f"{uuid.uuid4()}\t{kind}\t{owner}\t{status}\t{prio}"
                    f"\t{params[kind][rng.randrange(8)]}\t{attempt}\t{created.isoformat()}"
                    f"\t{started}\t{completed}\t{updated.isoformat()}\n"
                )
            buf.seek(0)
            cur.copy_expert(f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN", buf)
            done += n
            log(f"loaded {done:,} jobs ({time.perf_counter() - t0:.0f} s)")
    finally:
        cur.execute("ALTER TABLE jobs ENABLE TRIGGER jobs_created_event")
    cur.execute("ANALYZE")
    conn.close()
    return owner_ids


def vacuum_analyze(url: str, *tables: str) -> None:
    """VACUUM ANALYZE (what autovacuum does within a minute of a load): sets the visibility
    map, so index-only scans need not visit the heap."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        conn.cursor().execute(f"VACUUM ANALYZE {', '.join(tables)}" if tables else "VACUUM ANALYZE")
    finally:
        conn.close()
