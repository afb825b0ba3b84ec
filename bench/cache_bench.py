"""Cache-job throughput through the whole stack, next to `cat` over the same files.

`make bench` runs this. It builds a throwaway filespace under /tmp with (a) a few large
files and (b) many small files in nested folders, creates a throwaway PostgreSQL database
and RabbitMQ vhost, starts the real processes (gunicorn auth-service and gateway, one
`jobgate-worker cache`) exactly as the end-to-end tests do, and then, per scenario and
alternating `--repeat` times, times

  * `cat FILES > /dev/null` (small set: `find DIR -type f -print0 | xargs -0 cat > /dev/null`)
  * a cache job: `POST /api/v1/cache/jobs` until `GET /api/v1/cache/jobs/{id}` says
    `completed` (end to end), and the handler's own `result.seconds` from `/api/v1/jobs/{id}`.

Medians are reported next to the targets (issue: >= 0.9 of cat's bytes/s on large files,
>= 2,000 files/s on small ones). Everything runs warm: the files were just written and
`cat` reads them once before timing, so both sides read from the page cache.
A missed target still exits 0 (this is a benchmark, not a test); errors exit 1.

Usage: .venv/bin/python bench/cache_bench.py [--quick] [--repeat N] [--large-files N]
       [--large-size-mib N] [--small-files N] ...   (see --help)
Settings such as CACHE_READ_CONCURRENCY are taken from the environment, like `make run`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402
import requests  # noqa: E402

from jobgate.config import Settings  # noqa: E402
from jobgate.migrate import apply_migrations  # noqa: E402
from tests.stack import Stack  # noqa: E402

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_URL = os.environ.get("TEST_PG_HOST_URL", "postgresql://jobgate:jobgate@127.0.0.1:5432")
AMQP_HOST_URL = os.environ.get("TEST_AMQP_HOST_URL", "amqp://guest:guest@127.0.0.1:5672")
API_KEY = "demo-api-key-2024"
RESULTS_DIR = REPO / "bench" / "results"
MIB = 1024 * 1024
MB = 1_000_000  # throughput columns are decimal MB/s

TARGET_LARGE_RATIO = 0.9  # of cat's bytes/s
TARGET_SMALL_FILES_PER_S = 2000.0  # TeamCache documents 11,279 files/minute (188 files/s)

# The benchmark polls status faster than a client would and may submit more than
# 10 jobs a minute: lift the rate limits so the limiter never throttles the measurement.
BENCH_RATE_LIMITS = {
    "RATE_LIMIT_JOB_CREATE": "10000/minute",
    "RATE_LIMIT_STATUS": "1000000/minute",
    "RATE_LIMIT_DEFAULT": "1000000/minute",
}


class BenchError(RuntimeError):
    """Something went wrong that makes the numbers meaningless (exit 1)."""


# --- command line ----------------------------------------------------------------------------


def add_common_options(p: argparse.ArgumentParser, *, job_timeout: float) -> None:
    """Options every benchmark in bench/ takes."""
    p.add_argument(
        "--poll-min", type=float, default=0.01, help="shortest status poll interval, s (0.01)"
    )
    p.add_argument(
        "--poll-max", type=float, default=0.25, help="longest status poll interval, s (0.25)"
    )
    p.add_argument(
        "--job-timeout", type=float, default=job_timeout, help=f"per job, s ({job_timeout:g})"
    )
    p.add_argument("--tmp-parent", default="/tmp", help="where the temp dir is made (/tmp)")
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    p.add_argument(
        "--keep-logs", action="store_true", help="copy the stack's logs to bench/results/"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--large-files", type=int, default=4, help="number of large files (4)")
    p.add_argument("--large-size-mib", type=int, default=256, help="size of each large file (256)")
    p.add_argument("--small-files", type=int, default=10_000, help="number of small files (10000)")
    p.add_argument("--small-folders", type=int, default=100, help="leaf folders for them (100)")
    p.add_argument("--small-min-kib", type=int, default=4, help="smallest small file, KiB (4)")
    p.add_argument("--small-max-kib", type=int, default=16, help="largest small file, KiB (16)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per scenario; median (3)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 x 16 MiB, 500 small files, 1 repeat (flags given still win)",
    )
    add_common_options(p, job_timeout=900.0)
    p.add_argument("--only", choices=("large", "small"), help="run one scenario only")
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for flag, value in (
            ("--large-files", 2),
            ("--large-size-mib", 16),
            ("--small-files", 500),
            ("--small-folders", 10),
            ("--repeat", 1),
        ):
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
    if min(args.large_files, args.large_size_mib, args.small_files, args.small_folders) < 1:
        p.error("file counts, sizes and folders must be >= 1")
    if args.repeat < 1 or not 0 < args.small_min_kib <= args.small_max_kib:
        p.error("--repeat must be >= 1 and 0 < --small-min-kib <= --small-max-kib")
    return args


# --- filespace ---------------------------------------------------------------------------------


@dataclasses.dataclass
class FileSet:
    name: str  # scenario name, also the directory under the filespace root
    root: Path  # the directory holding the files
    files: list[Path]
    bytes: int


def make_large(root: Path, count: int, size_mib: int, block: bytes) -> FileSet:
    """`count` files of `size_mib` MiB: one random 1 MiB block repeated (reads don't care)."""
    folder = root / "large"
    folder.mkdir(parents=True)
    files = []
    for i in range(count):
        path = folder / f"reel{i:02d}.mov"
        with open(path, "wb", buffering=0) as f:
            for _ in range(size_mib):
                f.write(block)
        files.append(path)
    return FileSet("large", folder, files, count * size_mib * MIB)


def make_small(
    root: Path, count: int, folders: int, min_kib: int, max_kib: int, block: bytes
) -> FileSet:
    """`count` files of min..max KiB spread evenly over `folders` leaf folders, nested
    two levels deep (small/projNN/shotNN/...), sliced from the random block."""
    folder = root / "small"
    rng = random.Random(20240601)
    per_top = max(1, round(folders**0.5))
    leaves = []
    for d in range(folders):
        leaf = folder / f"proj{d // per_top:02d}" / f"shot{d % per_top:02d}"
        leaf.mkdir(parents=True)
        leaves.append(leaf)
    files, total = [], 0
    for i in range(count):
        size = rng.randint(min_kib * 1024, max_kib * 1024)
        offset = rng.randrange(0, len(block) - size)
        path = leaves[i % folders] / f"frame{i:06d}.dpx"
        path.write_bytes(block[offset : offset + size])
        files.append(path)
        total += size
    return FileSet("small", folder, files, total)


def residency(files: list[Path], sample: int = 400) -> float | None:
    """Fraction of the files' bytes in the page cache (util-linux `fincore`), or None."""
    if not shutil.which("fincore") or not files:
        return None
    step = max(1, len(files) // sample)
    picked = [str(f) for f in files[::step]]
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE", *picked],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    res = size = 0
    for line in out.stdout.split("\n"):
        parts = line.split()
        if len(parts) == 2:  # RES counts whole pages: compare with the page-rounded size
            res, size = res + int(parts[0]), size + -(-int(parts[1]) // page) * page
    return res / size if size else None


# --- cat ---------------------------------------------------------------------------------------


def cat_command(fs: FileSet) -> str:
    if fs.name == "small":
        return f"find {shlex.quote(str(fs.root))} -type f -print0 | xargs -0 cat > /dev/null"
    return "cat " + " ".join(shlex.quote(str(f)) for f in fs.files) + " > /dev/null"


def time_cat(fs: FileSet) -> float:
    cmd = cat_command(fs)
    start = time.perf_counter()
    subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], check=True)
    return time.perf_counter() - start


# --- throwaway database, vhost, stack ----------------------------------------------------------


def admin_sql(sql: str) -> list[tuple]:
    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def rabbitmqctl(*args: str) -> str:
    out = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    )
    return out.stdout


class Cleanup:
    """Undo steps run last-in-first-out; each runs even if another fails."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], Any]]] = []

    def push(self, what: str, fn: Callable[[], Any]) -> None:
        self.steps.append((what, fn))

    def run(self) -> list[str]:
        errors = []
        while self.steps:
            what, fn = self.steps.pop()
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - keep undoing the rest
                errors.append(f"{what}: {type(exc).__name__}: {exc}")
        return errors


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def raise_interrupt(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP (and SIGINT even when started in the background) act like Ctrl-C."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


# --- jobs --------------------------------------------------------------------------------------


def parse_ts(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Client:
    def __init__(self, base: str, poll_min: float, poll_max: float, timeout: float) -> None:
        self.base = f"{base}/api/v1"
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = API_KEY
        self.poll_min, self.poll_max = poll_min, poll_max
        self.timeout = timeout

    def next_poll(self, job: dict[str, Any], elapsed: float) -> float:
        """Seconds until the next status poll.

        Polling costs CPU in the gateway and PostgreSQL, which share the machine with the
        worker (a poll every 20 ms cost ~8% of the small-file handler's speed on 2 vCPUs),
        yet the end-to-end time is only as exact as the poll that sees `completed`. So:
        while the job reports progress, wait a quarter of the time it predicts is left;
        before it reports any, wait 1/20 of the time so far (a lag of at most ~5%); once
        every file is reported done, poll as often as allowed.
        """
        p = job["progress"]
        done = max(
            p["files"]["completed"] / max(1, p["files"]["total"]),
            p["size"]["completedBytes"] / max(1, p["size"]["totalBytes"]),
        )
        if done >= 1:
            wait = self.poll_min
        elif done > 0:
            wait = elapsed * (1 - done) / done / 4
        else:
            wait = elapsed / 20
        return min(self.poll_max, max(self.poll_min, wait))

    def run_job(self, directory: str, expect_files: int, expect_bytes: int) -> dict[str, Any]:
        """Submit a cache job over `directory`, wait for `completed`, return the timings."""
        posted_wall = time.time()
        start = time.perf_counter()
        r = self.session.post(
            f"{self.base}/cache/jobs", json={"directories": [directory]}, timeout=120
        )
        post_s = time.perf_counter() - start
        if r.status_code != 201:
            raise BenchError(f"POST /cache/jobs -> {r.status_code}: {r.text[:500]}")
        created = r.json()
        job_id = created["jobId"]
        if created["totalFiles"] != expect_files or created["totalSize"]["bytes"] != expect_bytes:
            raise BenchError(f"job {job_id} expanded to {created}, expected {expect_files} files")
        polls = 0
        deadline = start + self.timeout
        while True:
            g = self.session.get(f"{self.base}/cache/jobs/{job_id}", timeout=30)
            polls += 1
            if g.status_code != 200:
                raise BenchError(f"GET /cache/jobs/{job_id} -> {g.status_code}: {g.text[:500]}")
            job = g.json()["job"]
            if job["status"] == "completed":
                e2e_s = time.perf_counter() - start
                break
            if job["status"] in ("failed", "cancelled"):
                raise BenchError(f"job {job_id} {job['status']}: {job.get('error')}")
            if time.perf_counter() > deadline:
                raise BenchError(f"job {job_id} still {job['status']} after {self.timeout}s")
            time.sleep(self.next_poll(job, time.perf_counter() - start))
        canonical = self.session.get(f"{self.base}/jobs/{job_id}", timeout=30).json()
        result = canonical.get("result") or {}
        if result.get("files") != expect_files or result.get("bytes") != expect_bytes:
            raise BenchError(f"job {job_id} result {result} != {expect_files} files")
        created_at = parse_ts(canonical["created_at"])
        started_at = parse_ts(canonical["started_at"])
        completed_at = parse_ts(canonical["completed_at"])
        return {
            "job_id": job_id,
            "e2e_s": e2e_s,
            "handler_s": float(result["seconds"]),
            "post_s": post_s,  # the POST's round trip, as the client saw it
            # The four phases below add up to e2e_s. Server timestamps (1 ms resolution) and
            # the client share this host's clock. `created_at` is the start of the gateway's
            # insert transaction, i.e. after authentication and the directory expansion.
            "expand_s": created_at - posted_wall,  # POST sent -> job row being inserted
            "queue_s": started_at - created_at,  # item insert, commit, publish, claim
            "run_s": completed_at - started_at,  # claimed -> finished (handler + bookkeeping)
            "observe_s": posted_wall + e2e_s - completed_at,  # finished -> our poll saw it
            "server_e2e_s": completed_at - posted_wall,  # e2e without the poll's lag
            "polls": polls,
            "attempt": canonical["attempt"],
        }


# --- reporting ---------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def summarize(fs: FileSet, runs: list[dict[str, Any]], cat_s: list[float]) -> dict[str, Any]:
    files, nbytes = len(fs.files), fs.bytes
    cat = median(cat_s)
    e2e = median([r["e2e_s"] for r in runs])
    hdl = median([r["handler_s"] for r in runs])
    cat_bps, e2e_bps, hdl_bps = nbytes / cat, nbytes / e2e, nbytes / hdl
    if fs.name == "large":
        target = f">= {TARGET_LARGE_RATIO} x cat B/s"
        e2e_ok = e2e_bps / cat_bps >= TARGET_LARGE_RATIO
        hdl_ok = hdl_bps / cat_bps >= TARGET_LARGE_RATIO
    else:
        target = f">= {TARGET_SMALL_FILES_PER_S:,.0f} files/s"
        e2e_ok = files / e2e >= TARGET_SMALL_FILES_PER_S
        hdl_ok = files / hdl >= TARGET_SMALL_FILES_PER_S
    breakdown = {
        k: median([r[k] for r in runs])
        for k in ("post_s", "expand_s", "queue_s", "run_s", "observe_s", "server_e2e_s")
    }
    return {
        "scenario": fs.name,
        "files": files,
        "bytes": nbytes,
        "cat_s": cat,
        "cat_mb_s": cat_bps / MB,
        "cat_files_s": files / cat,
        "job_e2e_s": e2e,
        "job_handler_s": hdl,
        "job_e2e_mb_s": e2e_bps / MB,
        "job_handler_mb_s": hdl_bps / MB,
        "job_e2e_files_s": files / e2e,
        "job_handler_files_s": files / hdl,
        "ratio_e2e": e2e_bps / cat_bps,
        "ratio_handler": hdl_bps / cat_bps,
        "target": target,
        "verdict_e2e": "PASS" if e2e_ok else "MISS",
        "verdict_handler": "PASS" if hdl_ok else "MISS",
        "median_breakdown_s": breakdown,
        "runs": runs,
        "cat_runs_s": cat_s,
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


def render_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def main_table(results: list[dict[str, Any]]) -> str:
    headers = [
        "scenario",
        "files",
        "bytes",
        "cat s",
        "cat MB/s",
        "cat files/s",
        "job e2e s",
        "job hdl s",
        "e2e MB/s",
        "hdl MB/s",
        "e2e files/s",
        "hdl files/s",
        "ratio e2e",
        "ratio hdl",
        "target",
        "e2e",
        "hdl",
    ]
    rows = [
        [
            r["scenario"],
            f"{r['files']:,}",
            human_bytes(r["bytes"]),
            f"{r['cat_s']:.3f}",
            f"{r['cat_mb_s']:,.0f}",
            f"{r['cat_files_s']:,.0f}",
            f"{r['job_e2e_s']:.3f}",
            f"{r['job_handler_s']:.3f}",
            f"{r['job_e2e_mb_s']:,.0f}",
            f"{r['job_handler_mb_s']:,.0f}",
            f"{r['job_e2e_files_s']:,.0f}",
            f"{r['job_handler_files_s']:,.0f}",
            f"{r['ratio_e2e']:.2f}",
            f"{r['ratio_handler']:.2f}",
            r["target"],
            r["verdict_e2e"],
            r["verdict_handler"],
        ]
        for r in results
    ]
    return render_table(headers, rows)


def breakdown_table(results: list[dict[str, Any]]) -> str:
    headers = [
        "scenario",
        "POST rtt s",
        "auth+expand s",
        "insert+queue s",
        "claimed->done s",
        "of which handler s",
        "poll lag s",
        "e2e s",
    ]
    rows = []
    for r in results:
        b = r["median_breakdown_s"]
        rows.append(
            [
                r["scenario"],
                f"{b['post_s']:.3f}",
                f"{b['expand_s']:.3f}",
                f"{b['queue_s']:.3f}",
                f"{b['run_s']:.3f}",
                f"{r['job_handler_s']:.3f}",
                f"{b['observe_s']:.3f}",
                f"{r['job_e2e_s']:.3f}",
            ]
        )
    return render_table(headers, rows)


WARM_NOTE = """\
Warm page cache: every file was just written (and synced) and read once by cat before
timing, so cat and the worker both read from memory; caches are not dropped (that needs
root). This measures the CPU/IPC cost of the stack, not disk or LucidLink speed."""

LEGEND = """\
cat s / job e2e s / job hdl s: medians of --repeat runs. e2e = from POST sent until a status
poll saw `completed`; hdl = the worker's own `result.seconds` (its read loop; loading the
job's items from the database happens before that clock starts). MB = 10^6 bytes.
ratio = job bytes/s / cat bytes/s. PASS/MISS is judged on e2e (column `e2e`) and on the
handler alone (column `hdl`). Breakdown (medians, so columns need not add up exactly):
auth+expand = POST sent -> `created_at` (API key check, directory walk and stat of every
file); insert+queue = `created_at` -> `started_at` (job_items insert, commit, publish,
delivery, claim); claimed->done = `started_at` -> `completed_at`; poll lag = `completed_at`
-> a poll saw it. Server timestamps have 1 ms resolution."""


def command_output(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_info(tmp: Path) -> dict[str, Any]:
    cpu_model = None
    mem_total = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    pg_version = None
    with contextlib.suppress(psycopg2.Error):
        pg_version = admin_sql("SHOW server_version")[0][0]
    git = command_output(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    dirty = command_output(["git", "-C", str(REPO), "status", "--porcelain"])
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "mem_total_bytes": mem_total,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "cat_version": (command_output(["cat", "--version"]) or "").split("\n")[0] or None,
        "postgresql": pg_version,
        "tmp_filesystem": command_output(["stat", "-f", "-c", "%T", str(tmp)]),
        "git_commit": git,
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


def effective_settings(env: dict[str, str]) -> dict[str, Any]:
    s = Settings.from_env(env)
    keep = (
        "cache_read_concurrency",
        "cache_read_chunk_bytes",
        "cache_read_bandwidth_limit",
        "cache_progress_file_threshold",
        "cache_progress_time_threshold_ms",
        "worker_concurrency",
        "worker_heartbeat_seconds",
        "job_lease_seconds",
        "db_pool_max",
        "rate_limit_job_create",
        "rate_limit_status",
        "rate_limit_storage_uri",
    )
    return {k: getattr(s, k) for k in keep}


# --- the run -----------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def run(args: argparse.Namespace, cleanup: Cleanup, state: dict[str, Any]) -> None:
    run_id = uuid.uuid4().hex[:10]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="jobgate-cache-bench-", dir=args.tmp_parent))
    cleanup.push(f"remove {tmp}", lambda: shutil.rmtree(tmp))
    filespace = tmp / "filespace"
    filespace.mkdir()
    log(f"filespace in {filespace}")

    # (1) the files
    t0 = time.perf_counter()
    block = os.urandom(MIB)
    sets = []
    if args.only in (None, "large"):
        sets.append(make_large(filespace, args.large_files, args.large_size_mib, block))
    if args.only in (None, "small"):
        sets.append(
            make_small(
                filespace,
                args.small_files,
                args.small_folders,
                args.small_min_kib,
                args.small_max_kib,
                block,
            )
        )
    warm = filespace / "warmup"
    warm.mkdir()
    for i in range(3):
        (warm / f"w{i}.bin").write_bytes(block[: 4096 * (i + 1)])
    os.sync()  # no writeback competing with the timed reads
    gen_s = time.perf_counter() - t0
    for fs in sets:
        log(f"{fs.name}: {len(fs.files):,} files, {human_bytes(fs.bytes)}")
    log(f"wrote and synced the filespace in {gen_s:.1f}s")

    # (2) throwaway database and vhost
    db_name = f"jobgate_bench_{run_id}"
    admin_sql(f'CREATE DATABASE "{db_name}" OWNER jobgate')
    cleanup.push(
        f"drop database {db_name}",
        lambda: admin_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'),
    )
    database_url = f"{PG_HOST_URL}/{db_name}"
    apply_migrations(database_url)
    vhost = f"jobgate-bench-{run_id}"
    rabbitmqctl("add_vhost", vhost)
    cleanup.push(f"delete vhost {vhost}", lambda: rabbitmqctl("delete_vhost", vhost))
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp_url = f"{AMQP_HOST_URL}/{vhost}"

    # (3) the stack: auth, gateway, one cache worker
    stack = Stack(
        tmp,
        {
            "DATABASE_URL": database_url,
            "AMQP_URL": amqp_url,
            "CACHE_ROOT": str(filespace),
            "BOOTSTRAP_ADMIN_PASSWORD": secrets.token_urlsafe(18),
            "BOOTSTRAP_API_KEY": API_KEY,
            **BENCH_RATE_LIMITS,
        },
    )
    state["stack"] = stack
    cleanup.push("stop the stack", stack.stop)
    if args.keep_logs:
        logs_to = RESULTS_DIR / f"cache-{stamp}-logs"
        cleanup.push(
            "keep logs", lambda: shutil.copytree(stack.logdir, logs_to, dirs_exist_ok=True)
        )
    t0 = time.perf_counter()
    stack.start()  # auth, gateway, one `jobgate-worker cache`
    settings = effective_settings(stack.env)
    client = Client(stack.url, args.poll_min, args.poll_max, args.job_timeout)
    # A tiny job first: the worker is consuming, pools and caches are warm.
    client.run_job("warmup", 3, 4096 * 6)
    log(f"stack up and warm in {time.perf_counter() - t0:.1f}s ({stack.url})")
    log("settings: " + ", ".join(f"{k}={v}" for k, v in list(settings.items())[:5]))

    # (4) measure, alternating cat and job
    results = []
    for fs in sets:
        time_cat(fs)  # warm the page cache (the files were also just written)
        res = residency(fs.files)
        if res is not None:
            log(f"{fs.name}: {res:.0%} of sampled bytes in the page cache (fincore)")
        cat_s, runs = [], []
        for i in range(args.repeat):
            cat_s.append(time_cat(fs))
            runs.append(client.run_job(fs.name, len(fs.files), fs.bytes))
            log(
                f"{fs.name} #{i + 1}: cat {cat_s[-1]:.3f}s, job e2e {runs[-1]['e2e_s']:.3f}s"
                f" (handler {runs[-1]['handler_s']:.3f}s, POST {runs[-1]['post_s']:.3f}s)"
            )
        results.append(summarize(fs, runs, cat_s))
        results[-1]["page_cache_residency"] = res

    # (5) report
    print()
    print(WARM_NOTE)
    print()
    print(main_table(results))
    print()
    print("Where the job's end-to-end time goes (medians):")
    print(breakdown_table(results))
    print()
    print(LEGEND)
    report = {
        "benchmark": "cache",
        "timestamp_utc": stamp,
        "conditions": WARM_NOTE.replace("\n", " "),
        "machine": machine_info(tmp),
        "args": vars(args),
        "settings": settings,
        "bench_env_overrides": BENCH_RATE_LIMITS,
        "filespace_generation_s": gen_s,
        "targets": {
            "large_ratio_of_cat_bytes_per_s": TARGET_LARGE_RATIO,
            "small_files_per_s": TARGET_SMALL_FILES_PER_S,
        },
        "results": results,
    }
    if not args.no_json:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"cache-{stamp}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print()
        print(f"wrote {path.relative_to(REPO)}")


def show_logs(stack: Stack | None) -> None:
    if stack is None:
        return
    for name in stack.procs:
        tail = stack.log(name)[-1500:]
        if tail:
            print(f"--- {name}.log (tail) ---\n{tail}", file=sys.stderr)


def say(msg: str) -> None:
    """log(), but a closed stdout (`... | head`) must not stop the cleanup."""
    with contextlib.suppress(OSError, ValueError):
        log(msg)


def run_main(
    argv: list[str] | None,
    parse: Callable[[list[str] | None], argparse.Namespace],
    body: Callable[[argparse.Namespace, Cleanup, dict[str, Any]], None],
) -> int:
    """Run a benchmark's `body`, then always clean up what it registered, even on signals,
    errors, or a closed stdout. Exit 0 (targets missed included), 1 on errors, 130 when
    interrupted. Shared by every benchmark in bench/."""
    args = parse(argv)
    cleanup, state = Cleanup(), {}
    code, errors = 0, []
    old = {sig: signal.signal(sig, raise_interrupt) for sig in STOP_SIGNALS}
    try:
        try:
            body(args, cleanup, state)
        except KeyboardInterrupt as exc:
            say(f"interrupted ({exc or 'SIGINT'})")
            code = 130
        except Exception as exc:  # noqa: BLE001 - report, clean up, exit 1
            code = 1
            say(f"error: {type(exc).__name__}: {exc}")
            expected = (BenchError, OSError, subprocess.SubprocessError, psycopg2.Error)
            with contextlib.suppress(OSError, ValueError):
                show_logs(state.get("stack"))
                if not isinstance(exc, expected):
                    traceback.print_exc()
    except KeyboardInterrupt:  # a second signal while reporting the first
        code = 130
    finally:
        # Cleanup is bounded (stack.stop kills after 15 s): let nothing cut it short.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if cleanup.steps:
            say("cleaning up: " + ", ".join(what for what, _ in reversed(cleanup.steps)))
        errors = cleanup.run()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    for e in errors:
        say(f"cleanup failed: {e}")
    return code or (1 if errors else 0)


def main(argv: list[str] | None = None) -> int:
    return run_main(argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
