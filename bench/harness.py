"""What every benchmark in bench/ shares, so that each one is only its scenario.

A scenario is one job kind's benchmark: it makes its inputs, times the job through the
stack next to a direct baseline, and prints and records the numbers. This module does the
rest, the same way for every kind:

  * the command line: `parser`, `add_quick`, `add_common_options`, `parse`;
  * `run_main`: runs the scenario's body and then always undoes what it set up (temp dir,
    throwaway PostgreSQL database and RabbitMQ vhost, the processes), also on errors,
    Ctrl-C, SIGTERM and SIGHUP; exit 0 when targets are missed, 1 on errors, 130 when
    interrupted;
  * `Bench`: one run's temp dir, timestamp, `start_stack` (database, vhost, gunicorn
    auth-service and gateway and one `jobgate-worker KIND` (none for KIND None), via
    tests/stack.py),
    `print_report` and `write_report` (JSON to bench/results/);
  * `Api`: a loopback HTTP session with the demo API key or an admin JWT, that submits a
    job, polls its status adaptively until `completed` and splits the time with the job's
    timestamps (`job_phases`);
  * numbers and tables: `median`, `medians`, `timed`, `verdict`, `human_bytes`, `fmt`,
    `cell`, `table`, `render_table`, `breakdown_table`, `residency`, `machine_info`,
    `effective_settings`.

See bench/README.md ("Adding a scenario") for the shape of a new kind's benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import pstats
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import psycopg2
import requests

from jobgate.config import Settings
from jobgate.migrate import apply_migrations
from tests.stack import Stack

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_URL = os.environ.get("TEST_PG_HOST_URL", "postgresql://jobgate:jobgate@127.0.0.1:5432")
AMQP_HOST_URL = os.environ.get("TEST_AMQP_HOST_URL", "amqp://guest:guest@127.0.0.1:5672")
API_KEY = "demo-api-key-2024"  # seed 000's demo key, bootstrapped into every bench stack
ADMIN = "admin"  # the bootstrap admin; its password is random per run (Bench.admin_password)
MIB = 1024 * 1024
MB = 1_000_000  # throughput columns are decimal MB/s

# The benchmarks poll status faster than a client would and may submit more than
# 10 jobs a minute: lift the rate limits so the limiter never throttles the measurement.
BENCH_RATE_LIMITS = {
    "RATE_LIMIT_JOB_CREATE": "10000/minute",
    "RATE_LIMIT_STATUS": "1000000/minute",
    "RATE_LIMIT_DEFAULT": "1000000/minute",
    "RATE_LIMIT_TASKS": "1000000/minute",
}


class BenchError(RuntimeError):
    """Something went wrong that makes the numbers meaningless (exit 1)."""


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def say(msg: str) -> None:
    """log(), but a closed stdout (`... | head`) must not stop the cleanup."""
    with contextlib.suppress(OSError, ValueError):
        log(msg)


# --- command line ----------------------------------------------------------------------------


def parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the scenario's docstring."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_quick(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--quick", action="store_true", help=f"smoke run: {what} (flags given still win)"
    )


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


def parse(
    p: argparse.ArgumentParser, argv: list[str] | None, quick: dict[str, Any]
) -> argparse.Namespace:
    """Parse; with --quick, `quick`'s {flag: value} replace the defaults of flags not given."""
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for flag, value in quick.items():
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
    return args


# --- throwaway database and vhost, cleanup ----------------------------------------------------


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


def throwaway_database(cleanup: Cleanup, name: str) -> str:
    """`CREATE DATABASE name OWNER jobgate` plus the migrations, as tests/conftest.py does;
    dropped `WITH (FORCE)` by `cleanup`. Returns its URL."""
    admin_sql(f'CREATE DATABASE "{name}" OWNER jobgate')
    cleanup.push(
        f"drop database {name}",
        lambda: admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'),
    )
    database_url = f"{PG_HOST_URL}/{name}"
    apply_migrations(database_url)
    return database_url


def throwaway_vhost(cleanup: Cleanup, name: str) -> str:
    """A RabbitMQ vhost for guest, deleted by `cleanup`. Returns its AMQP URL."""
    rabbitmqctl("add_vhost", name)
    cleanup.push(f"delete vhost {name}", lambda: rabbitmqctl("delete_vhost", name))
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"{AMQP_HOST_URL}/{name}"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def raise_interrupt(signum: int, _frame: Any) -> None:
    """SIGTERM/SIGHUP (and SIGINT even when started in the background) act like Ctrl-C."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def show_logs(stack: Stack | None) -> None:
    if stack is None:
        return
    for name in stack.procs:
        tail = stack.log(name)[-1500:]
        if tail:
            print(f"--- {name}.log (tail) ---\n{tail}", file=sys.stderr)


# --- one run -----------------------------------------------------------------------------------


class Bench:
    """One run of a scenario named `name` ("cache", "convert", ...): its args, a temp dir
    under --tmp-parent (removed at the end), the UTC timestamp that names its results, and
    once `start_stack` ran, the stack."""

    def __init__(self, name: str, args: argparse.Namespace, cleanup: Cleanup) -> None:
        self.name, self.args, self.cleanup = name, args, cleanup
        self.run_id = uuid.uuid4().hex[:10]
        self.stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.stack: Stack | None = None
        self.stack_t0 = math.nan  # perf_counter() when the processes were started
        self.overrides: dict[str, str] = dict(BENCH_RATE_LIMITS)
        self.admin_password = secrets.token_urlsafe(18)
        tmp = Path(tempfile.mkdtemp(prefix=f"jobgate-{name}-bench-", dir=args.tmp_parent))
        cleanup.push(f"remove {tmp}", lambda: shutil.rmtree(tmp))
        self.tmp = tmp

    def start_stack(
        self, kind: str | None, env: dict[str, str], overrides: dict[str, str] | None = None
    ) -> Stack:
        """A throwaway database and vhost, then gunicorn auth-service and gateway and one
        `jobgate-worker KIND` (no worker when `kind` is None: a scenario that runs no job),
        as the end-to-end tests start them. Every process gets `env`
        and `overrides` (recorded in the JSON, with the lifted rate limits); the rest of the
        environment passes through, so settings behave as with `make run`. The admin
        (`ADMIN`, `admin_password`) and the demo key (`API_KEY`) are bootstrapped."""
        database_url = throwaway_database(self.cleanup, f"jobgate_bench_{self.run_id}")
        amqp_url = throwaway_vhost(self.cleanup, f"jobgate-bench-{self.run_id}")
        self.overrides = {**(overrides or {}), **BENCH_RATE_LIMITS}
        stack = Stack(
            self.tmp,
            {
                "DATABASE_URL": database_url,
                "AMQP_URL": amqp_url,
                "BOOTSTRAP_ADMIN_PASSWORD": self.admin_password,
                "BOOTSTRAP_API_KEY": API_KEY,
                **env,
                **self.overrides,
            },
        )
        self.stack = stack
        self.cleanup.push("stop the stack", stack.stop)
        if self.args.keep_logs:
            logs_to = RESULTS_DIR / f"{self.name}-{self.stamp}-logs"
            self.cleanup.push(
                "keep logs", lambda: shutil.copytree(stack.logdir, logs_to, dirs_exist_ok=True)
            )
        self.stack_t0 = time.perf_counter()
        stack.start_auth()
        stack.start_gateway()
        if kind is not None:
            stack.start_worker(kind)
        return stack

    def print_report(self, conditions: str, sections: Iterable[str], legend: str) -> None:
        """The conditions, each table section and the legend, a blank line before each."""
        for part in (conditions, *sections, legend):
            print()
            print(part)

    def write_report(
        self, *, conditions: str, machine: dict, settings: dict, **rest: Any
    ) -> Path | None:
        """bench/results/<name>-<stamp>.json: the fields every benchmark writes, then
        `rest` in the order given. Nothing with --no-json."""
        report = {
            "benchmark": self.name,
            "timestamp_utc": self.stamp,
            "conditions": conditions.replace("\n", " "),
            "machine": machine,
            "args": vars(self.args),
            "settings": settings,
            "bench_env_overrides": self.overrides,
            **rest,
        }
        if self.args.no_json:
            return None
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}-{self.stamp}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print()
        print(f"wrote {path.relative_to(REPO)}")
        return path


def run_main(
    name: str,
    argv: list[str] | None,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    body: Callable[[Bench], None],
) -> int:
    """Run a scenario's `body`, then always clean up what it registered, even on signals,
    errors, or a closed stdout. Exit 0 (targets missed included), 1 on errors, 130 when
    interrupted."""
    args = parse_args(argv)
    cleanup = Cleanup()
    bench: Bench | None = None
    code, errors = 0, []
    old = {sig: signal.signal(sig, raise_interrupt) for sig in STOP_SIGNALS}
    try:
        try:
            bench = Bench(name, args, cleanup)
            body(bench)
        except KeyboardInterrupt as exc:
            say(f"interrupted ({exc or 'SIGINT'})")
            code = 130
        except Exception as exc:  # noqa: BLE001 - report, clean up, exit 1
            code = 1
            say(f"error: {type(exc).__name__}: {exc}")
            expected = (BenchError, OSError, subprocess.SubprocessError, psycopg2.Error)
            with contextlib.suppress(OSError, ValueError):
                show_logs(bench.stack if bench else None)
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


# --- the stack's HTTP API ----------------------------------------------------------------------


def parse_ts(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Submitted(NamedTuple):
    body: Any  # the 201's JSON
    posted_wall: float  # time.time() when the POST was sent (to compare with server times)
    start: float  # perf_counter() then: the start of the job's end-to-end time
    post_s: float  # the POST's round trip, as the client saw it


class Api:
    """A session on the stack's gateway at `base`, never through a proxy from the
    environment, with the poll bounds and job timeout of the common options. Authenticates
    with `api_key` (X-API-Key) or, after `login()`, as the admin with `admin_password`."""

    def __init__(
        self,
        base: str,
        args: argparse.Namespace,
        *,
        api_key: str | None = None,
        admin_password: str | None = None,
    ) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only
        if api_key:
            self.session.headers["X-API-Key"] = api_key
        self.admin_password = admin_password
        self.poll_min, self.poll_max = args.poll_min, args.poll_max
        self.timeout = args.job_timeout
        self.token = ""
        self.token_at = -math.inf

    def login(self) -> str:
        """A fresh admin JWT when the last is over 5 minutes old (they live 15 by default)."""
        if time.monotonic() - self.token_at < 300:
            return self.token
        r = self.session.post(
            f"{self.base}/api/v1/auth/login",
            json={"username": ADMIN, "password": self.admin_password},
            timeout=30,
        )
        if r.status_code != 200:
            raise BenchError(f"login -> {r.status_code}: {r.text[:500]}")
        self.token, self.token_at = r.json()["access_token"], time.monotonic()
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        return self.token

    def submit(self, path: str, **request: Any) -> Submitted:
        """POST `path` (e.g. json=... or files=...); anything but a 201 is an error."""
        posted_wall = time.time()
        start = time.perf_counter()
        r = self.session.post(f"{self.base}{path}", timeout=120, **request)
        post_s = time.perf_counter() - start
        if r.status_code != 201:
            raise BenchError(f"POST {path} -> {r.status_code}: {r.text[:500]}")
        return Submitted(r.json(), posted_wall, start, post_s)

    def next_poll(self, done: float, elapsed: float) -> float:
        """Seconds until the next status poll, given the fraction `done` the job reports.

        Polling costs CPU in the gateway and PostgreSQL, which share the machine with the
        worker (a poll every 20 ms cost ~8% of the small-file cache handler's speed on
        2 vCPUs), yet the end-to-end time is only as exact as the poll that sees
        `completed`. So: while the job reports progress, wait a quarter of the time it
        predicts is left; before it reports any, wait 1/20 of the time so far (a lag of at
        most ~5%); once it reports all done, poll as often as allowed.
        """
        if done >= 1:
            wait = self.poll_min
        elif done > 0:
            wait = elapsed * (1 - done) / done / 4
        else:
            wait = elapsed / 20
        return min(self.poll_max, max(self.poll_min, wait))

    def wait(
        self,
        path: str,
        job_id: str,
        status_of: Callable[[Any], tuple[str, float, Any]],
        start: float,
    ) -> tuple[float, int]:
        """GET `path` until `status_of(body)` -> (status, fraction done, error) says
        `completed`. Returns (seconds since `start` when a poll saw it, polls sent)."""
        polls = 0
        deadline = start + self.timeout
        while True:
            g = self.session.get(f"{self.base}{path}", timeout=30)
            polls += 1
            if g.status_code != 200:
                raise BenchError(f"GET {path} -> {g.status_code}: {g.text[:500]}")
            status, done, error = status_of(g.json())
            if status == "completed":
                return time.perf_counter() - start, polls
            if status in ("failed", "cancelled"):
                raise BenchError(f"job {job_id} {status}: {error}")
            if time.perf_counter() > deadline:
                raise BenchError(f"job {job_id} still {status} after {self.timeout}s")
            time.sleep(self.next_poll(done, time.perf_counter() - start))

    def job(self, job_id: str) -> dict[str, Any]:
        """The canonical job: `GET /api/v1/jobs/{id}` (result, attempt, timestamps)."""
        r = self.session.get(f"{self.base}/api/v1/jobs/{job_id}", timeout=30)
        if r.status_code != 200:
            raise BenchError(f"GET /api/v1/jobs/{job_id} -> {r.status_code}: {r.text[:500]}")
        return r.json()["job"]


PHASES = ("queue_s", "run_s", "observe_s", "server_e2e_s")


def job_phases(job: dict[str, Any], sent: Submitted, e2e_s: float, first: str) -> dict:
    """Split a job's end-to-end time with its timestamps. Server timestamps (1 ms
    resolution) and the client share this host's clock; the first four add up to e2e_s.

    `first` names POST sent -> `created_at` (the start of the gateway's insert transaction:
    authentication and whatever the kind does before it, e.g. a directory expansion or an
    upload and its probe); queue_s = `created_at` -> `started_at` (insert, commit, publish,
    delivery, claim); run_s = claimed -> completed; observe_s = completed -> our poll saw
    it; server_e2e_s = e2e without the poll's lag."""
    created_at = parse_ts(job["created_at"])
    started_at = parse_ts(job["started_at"])
    completed_at = parse_ts(job["completed_at"])
    return {
        first: created_at - sent.posted_wall,
        "queue_s": started_at - created_at,
        "run_s": completed_at - started_at,
        "observe_s": sent.posted_wall + e2e_s - completed_at,
        "server_e2e_s": completed_at - sent.posted_wall,
    }


# --- numbers -----------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


def medians(runs: list[dict[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    return {k: median(r[k] for r in runs) for k in keys}


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


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


# --- tables ------------------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


def fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def cell(key: str, spec: str = ".3f") -> Callable[[dict[str, Any]], str]:
    """A column that formats `row[key]` with `spec` ("-" for None)."""
    return lambda row: fmt(row[key], spec)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """First column left-aligned, the others right-aligned, a dashed rule under the headers."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def table(items: Iterable[Any], columns: Sequence[tuple[str, Callable[[Any], str]]]) -> str:
    """render_table with one row per item, from (header, item -> text) columns."""
    return render_table([h for h, _ in columns], [[f(it) for _, f in columns] for it in items])


def breakdown_table(
    rows: Iterable[tuple[str, dict[str, float], float, float]],
    *,
    label: str,
    first: tuple[str, str],
    queue: str,
    inner: str,
) -> str:
    """Where the end-to-end time goes: per (label, medians of the POST round trip and the
    `job_phases`, the worker's own seconds, e2e seconds). `first` is (header, phase key);
    `queue` and `inner` name the queue and the worker's-own-time columns."""
    header, key = first
    return render_table(
        [label, "POST rtt s", header, queue, "claimed->done s", inner, "poll lag s", "e2e s"],
        [
            [
                name,
                *(f"{v:.3f}" for v in (b["post_s"], b[key], b["queue_s"], b["run_s"], inner_s)),
                f"{b['observe_s']:.3f}",
                f"{e2e_s:.3f}",
            ]
            for name, b, inner_s, e2e_s in rows
        ],
    )


# --- the machine and the settings --------------------------------------------------------------


def command_output(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def first_line(argv: list[str]) -> str:
    """The first line of a command's output ("" when it fails), e.g. its --version."""
    return (command_output(argv) or "").split("\n")[0]


def machine_info(tmp: Path, versions: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """CPU, memory, kernel, Python, PostgreSQL, the temp dir's filesystem and the git
    commit; `versions` {key: argv} adds the first line of each tool's output (None if none),
    after the Python fields."""
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
        **{key: first_line(argv) or None for key, argv in (versions or {}).items()},
        "postgresql": pg_version,
        "tmp_filesystem": command_output(["stat", "-f", "-c", "%T", str(tmp)]),
        "git_commit": git,
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


# Settings every kind's report records, after its own.
COMMON_SETTINGS = (
    "worker_concurrency",
    "worker_heartbeat_seconds",
    "job_lease_seconds",
    "db_pool_max",
    "rate_limit_job_create",
    "rate_limit_status",
)


def effective_settings(env: dict[str, str], keys: Iterable[str]) -> dict[str, Any]:
    """The values the stack's processes read from `env` (the stack's environment)."""
    s = Settings.from_env(env)
    return {k: getattr(s, k) for k in keys}


# --- profiles of a service process (py-spy or cProfile) ------------------------------------------
#
# A scenario runs one of the stack's processes under a profiler with `profiled_argv`, stops it
# the usual way (SIGTERM: the profile is written when the process exits) and reads the heaviest
# functions with `pyspy_top` or `cprofile_top`; `profile_table` prints them.

# Run a module's `__main__` with a cProfile profiler in every thread (threading.setprofile
# starts one in each thread as it starts: a plain `python -m cProfile` sees the main thread
# only, and a worker's jobs run on other threads); on exit each thread's stats are dumped to
# OUT/<n>-<thread name>.prof. argv: python -c CPROFILE_WRAPPER OUT MODULE ARGS...
CPROFILE_WRAPPER = """\
import cProfile, os, re, runpy, sys, threading
out, module, args = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(out, exist_ok=True)
profiles = []
def start(*_):
    p = cProfile.Profile()
    profiles.append((threading.current_thread().name, p))
    p.enable()
threading.setprofile(start)
main = cProfile.Profile()
profiles.append(("MainThread", main))
sys.argv = [module, *args]
code = 0
main.enable()
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
finally:
    main.disable()
    threading.setprofile(None)
    for n, (name, p) in enumerate(profiles):
        p.dump_stats(os.path.join(out, "%04d-%s.prof" % (n, re.sub(r"[^\\w.-]", "_", name))))
sys.exit(code)
"""


def py_spy() -> str | None:
    """The venv's py-spy (or one on PATH), if there is one."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def profiled_argv(
    tool: str, module: str, args: list[str], out: Path, rate: int = 200, *, idle: bool = True
) -> list[str]:
    """argv that runs `python -m module args` under `tool`: "py-spy" (a sampling profile of
    every thread, written as raw collapsed stacks to `out` when the process exits; the
    profiled process is py-spy's child; `idle`: waits included (wall clock), else only
    samples where a thread was running (CPU)) or "cprofile" (`CPROFILE_WRAPPER`: the process
    itself, wall clock, one stats file per thread in the directory `out` on exit)."""
    python = [sys.executable, "-m", module, *args]
    if tool == "py-spy":
        spy = py_spy()
        if spy is None:
            raise BenchError("py-spy not found")
        return [
            *(spy, "record", *(["--idle"] if idle else []), "--threads", "--format", "raw"),
            *("--rate", str(rate), "--output", str(out), "--", *python),
        ]
    if tool == "cprofile":
        return [sys.executable, "-c", CPROFILE_WRAPPER, str(out), module, *args]
    raise ValueError(f"unknown profiler {tool!r}")


def _function_rows(
    own: dict[str, float], cum: dict[str, float], total: float, n: int, extra: dict | None = None
) -> dict[str, list[dict[str, Any]]]:
    def row(f: str) -> dict[str, Any]:
        return {
            "function": f,
            "own_s": own.get(f, 0.0),
            "cumulative_s": cum.get(f, 0.0),
            "own_pct": 100 * own.get(f, 0.0) / total if total else None,
            "cumulative_pct": 100 * cum.get(f, 0.0) / total if total else None,
            **(extra or {}).get(f, {}),
        }

    return {
        "by_cumulative": [row(f) for f in sorted(cum, key=cum.__getitem__, reverse=True)[:n]],
        "by_own": [row(f) for f in sorted(own, key=own.__getitem__, reverse=True)[:n]],
    }


def pyspy_top(
    path: Path, rate: int, keep: Callable[[str], bool] = lambda _thread: True, n: int = 25
) -> dict[str, Any]:
    """The heaviest functions of a `py-spy record --threads --format raw` profile, over the
    threads whose name `keep` accepts: `by_cumulative` (samples with the function anywhere on
    the stack) and `by_own` (samples with it on top), in seconds (samples / rate) and % of the
    kept threads' samples; `threads`: seconds sampled per thread name (every thread). A
    function is `name (file)`: py-spy's line numbers (the line being run) are dropped."""
    own: dict[str, float] = {}
    cum: dict[str, float] = {}
    threads: dict[str, float] = {}
    total = 0.0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        seconds = int(count) / rate
        thread, *frames = stack.split(";")
        thread = thread.split(": ", 1)[-1]  # "thread (1234): job-cache_0"
        threads[thread] = threads.get(thread, 0.0) + seconds
        if not keep(thread):
            continue
        total += seconds
        funcs = [re.sub(r":\d+\)$", ")", f) for f in frames] or ["(no Python frame)"]
        own[funcs[-1]] = own.get(funcs[-1], 0.0) + seconds
        for f in set(funcs):
            cum[f] = cum.get(f, 0.0) + seconds
    return {
        "tool": "py-spy",
        "rate_hz": rate,
        "kept_s": total,
        "threads": dict(sorted(threads.items(), key=lambda kv: kv[1], reverse=True)),
        **_function_rows(own, cum, total, n),
    }


def cprofile_top(
    path: Path, keep: Callable[[str], bool] = lambda _thread: True, n: int = 25
) -> dict[str, Any]:
    """The heaviest functions of `CPROFILE_WRAPPER`'s per-thread dumps in the directory
    `path`, merged over the threads whose name `keep` accepts: `by_cumulative` and `by_own`
    (cProfile's cumtime and tottime: wall clock, waits included) with calls; `threads`:
    each thread's own time in total (every thread)."""
    threads: dict[str, float] = {}
    merged: pstats.Stats | None = None
    for dump in sorted(path.glob("*.prof")):
        thread = dump.stem.split("-", 1)[-1]
        try:
            stats = pstats.Stats(str(dump))
        except (TypeError, EOFError, ValueError):  # a thread that made no call
            continue
        threads[thread] = threads.get(thread, 0.0) + float(stats.total_tt)  # type: ignore[attr-defined]
        if keep(thread):
            merged = stats if merged is None else merged.add(stats)
    own: dict[str, float] = {}
    cum: dict[str, float] = {}
    calls: dict[str, dict[str, int]] = {}
    items = merged.stats.items() if merged is not None else ()  # type: ignore[attr-defined]
    for (file, line, name), (_cc, nc, tt, ct, _callers) in items:
        f = f"{name} ({Path(file).name}:{line})" if line else name
        own[f], cum[f], calls[f] = tt, ct, {"calls": nc}
    total = float(merged.total_tt) if merged is not None else 0.0  # type: ignore[attr-defined]
    return {
        "tool": "cProfile",
        "kept_s": total,
        "threads": dict(sorted(threads.items(), key=lambda kv: kv[1], reverse=True)),
        **_function_rows(own, cum, total, n, calls),
    }


def profile_table(rows: list[dict[str, Any]]) -> str:
    """A `pyspy_top`/`cprofile_top` list as text: seconds and % cumulative and own, then the
    function (left-aligned, so long names do not push the numbers apart)."""
    lines = [
        "   cum s  cum %    own s  own %  function",
        "  ------  -----  -------  -----  --------",
    ]
    for r in rows:
        calls = f"  [{r['calls']:,} calls]" if "calls" in r else ""
        lines.append(
            f"{r['cumulative_s']:8.2f}  {fmt(r['cumulative_pct'], '5.1f')}"
            f"  {r['own_s']:7.2f}  {fmt(r['own_pct'], '5.1f')}  {r['function']}{calls}"
        )
    return "\n".join(lines)
