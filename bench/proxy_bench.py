"""The edge's reverse proxy: set changes going live, published routes under load, reloads
under load, and the proxy stats' count.

Issue 14's benchmark. It creates a throwaway PostgreSQL database and RabbitMQ vhost, starts
gunicorn auth-service and gateway (`Bench.start_stack`, no worker: no job runs),
stats-service and the edge (`jobgate-edge`, nginx as its child; `Stack.start_edge`), and
`--backends` (2) local HTTP backends: nginx instances of their own on 127.0.0.1, one worker
each, answering every GET with their name (fast, so they are not what is measured). Through
`PUT /api/proxy/config` (seed 003) with the demo API key it publishes one upstream with the
backends and two routes, `/bench/*` (no middleware) and `/bench-auth/*` (`auth`), then:

  1. apply latency: `--changes` (20) successive set changes (the last server's weight
     alternates 2, 1, ...): PUT sent -> a `GET /api/proxy/config` (every `--apply-poll`,
     20 ms) shows an edge with `applied_version` >= the version the PUT returned; p50, p95,
     max. Target (the issue's "changes apply within seconds", read by this bench as): p95
     <= 2 s;
  2. throughput: `--threads` (8) keep-alive connections from `--procs` (2) client processes
     GET for `--seconds` (5) s after `--warmup` (1) s, per row: the backends directly, the
     `/bench/*` route, the `/bench-auth/*` route with `X-API-Key`, Jobgate's own
     `/api/v1/health` through the edge and on the gateway directly; requests/s and latency
     p50/p95/p99, and the CPU each process group used;
  3. reloads under load: the same connections GET `/bench/*` while `--reloads` (10) set
     changes are made and applied one after the other; requests sent, answered, failed
     (connection errors, 5xx), expected 0 failed;
  4. stats: once `GET /api/proxy/stats`'s `requests_total` stops growing, it is compared
     with the requests the bench had answered on route paths (and with the backends' own
     access logs).

Usage: .venv/bin/python bench/proxy_bench.py [--quick] [--changes N] [--threads K]
       [--seconds T] [--reloads M] ... (see --help).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import multiprocessing.connection
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402
from urllib3.util.retry import Retry  # noqa: E402

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
    parse_ts,
    parser,
    render_table,
    run_main,
    verdict,
)
from tests.stack import Stack, free_port  # noqa: E402

SETTINGS = ("proxy_allowed_upstreams", *COMMON_SETTINGS)
# The edge agent's settings the JSON records, read from its own environment.
EDGE_ENV = (
    "EDGE_WORKERS",
    "EDGE_POLL_SECONDS",
    "EDGE_DEBOUNCE_SECONDS",
    "EDGE_RELOAD_MIN_INTERVAL_SECONDS",
    "EDGE_PROBE_TIMEOUT_SECONDS",
    "PROXY_STATS_FLUSH_SECONDS",
    "PROXY_ACCESS_LOG_MAX_MB",
)
TARGET_APPLY_P95_S = 2.0  # the bench's reading of "changes apply within seconds"
UPSTREAM = "bench"
OPEN_PATH = "/bench/x"  # route "open": /bench/*, no middleware
AUTH_PATH = "/bench-auth/x"  # route "private": /bench-auth/*, middleware ["auth"]
DIRECT_PATH = "/direct/x"  # straight to a backend (its access log tells it from routed ones)
HEALTH_PATH = "/api/v1/health"
REQUEST_TIMEOUT_S = 10.0
CLOSED_EARLY = "closed before any response (reused connection)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    add_quick(p, "5 changes, 2 s per throughput row (0.5 s warm-up), 5 reloads")
    p.add_argument("--changes", type=int, default=20, help="set changes timed one by one (20)")
    p.add_argument(
        "--apply-gap", type=float, default=0.5, help="pause after each applied change, s (0.5)"
    )
    p.add_argument(
        "--apply-poll", type=float, default=0.02, help="GET /api/proxy/config interval, s (0.02)"
    )
    p.add_argument(
        "--apply-timeout", type=float, default=30.0, help="a change not live by then fails (30)"
    )
    p.add_argument("--threads", type=int, default=8, help="client connections in all (8)")
    p.add_argument("--procs", type=int, default=2, help="client processes sharing them (2)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured per throughput row (5)")
    p.add_argument("--warmup", type=float, default=1.0, help="untimed first, per row, s (1)")
    p.add_argument("--reloads", type=int, default=10, help="set changes under load (10)")
    p.add_argument("--backends", type=int, default=2, help="local HTTP backends (2)")
    p.add_argument(
        "--stats-quiet",
        type=float,
        default=2.0,
        help="requests_total unchanged this long counts as settled, s (2)",
    )
    p.add_argument(
        "--stats-timeout", type=float, default=60.0, help="most to wait for the stats, s (60)"
    )
    add_common_options(p, job_timeout=60.0)
    return parse(
        p,
        argv,
        quick={"--changes": 5, "--seconds": 2.0, "--warmup": 0.5, "--reloads": 5},
    )


# --- numbers -----------------------------------------------------------------------------------


def percentile(ordered: list[float] | array, q: float) -> float:
    """Linear interpolation between closest ranks of an already sorted sequence."""
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def spread(values: list[float] | array) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": percentile(ordered, 0.5),
        "p95": percentile(ordered, 0.95),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else float("nan"),
    }


def add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


# --- the backends ------------------------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        raise BenchError("nginx not found (make edge installs it)")
    return found


BACKEND_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path {dir}/tmp/client_body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    log_format bench '$request_uri $status';
    access_log {dir}/access.log bench;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "{name}\\n";
        }}
    }}
}}
"""


class Backend:
    """An nginx of its own on 127.0.0.1 (one worker), answering every GET with its name;
    its access log (`URI status` per line) tells routed requests from direct ones."""

    def __init__(self, bench: Bench, name: str, nginx: str) -> None:
        self.name, self.port = name, free_port()
        self.dir = bench.tmp / f"backend-{name}"
        (self.dir / "tmp").mkdir(parents=True)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(BACKEND_CONF.format(dir=self.dir, port=self.port, name=name))
        self.log = open(self.dir / "nginx.log", "ab")  # noqa: SIM115 - closed by stop()
        prefix = ["-e", "stderr", "-p", f"{self.dir}/", "-c", str(self.conf)]
        self.proc = subprocess.Popen(
            [nginx, *prefix, "-g", "daemon off;"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        self.pids: set[int] = {self.proc.pid}
        bench.cleanup.push(f"stop backend {name}", self.stop)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"backend {name} exited: {self.log_text()[-1000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"backend {name} did not answer: {self.log_text()[-1000:]}")
            time.sleep(0.05)
        with contextlib.suppress(psutil.Error):
            self.pids |= {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        path = self.dir / "nginx.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def served(self) -> dict[str, int]:
        """Requests in its access log: {"routed": /bench..., "direct": /direct/..., "other"}."""
        counts = {"routed": 0, "direct": 0, "other": 0}
        path = self.dir / "access.log"
        if not path.exists():
            return counts
        for line in path.read_bytes().splitlines():
            if line.startswith(b"/bench"):
                counts["routed"] += 1
            elif line.startswith(b"/direct/"):
                counts["direct"] += 1
            else:
                counts["other"] += 1
        return counts

    def stop(self) -> None:
        """SIGTERM to the master (fast shutdown), then its workers, whatever is left."""
        with contextlib.suppress(psutil.Error):
            self.pids |= {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.pids - {self.proc.pid}:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if "nginx" in proc.name():
                    proc.kill()
        self.log.close()


# --- the client processes ----------------------------------------------------------------------
#
# Each process runs its share of the connections as threads, one keep-alive `http.client`
# connection each. Before reusing a connection it checks, as urllib3 does, whether the server
# closed it meanwhile (readable with nothing asked = EOF): then it reconnects (`idle_closed`),
# which is how nginx's reloads close idle keep-alive connections and what any HTTP client
# does about it. A request that gets no answer is a failure, classified.


class Tally:
    """One thread's counts (summed per process, then over the processes)."""

    def __init__(self) -> None:
        self.latency = array("d")  # seconds, measured window only
        self.sent = 0  # requests written
        self.answered = 0  # responses read (any status)
        self.measured = 0  # responses read in the measured window
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}  # requests without an answer, by kind
        self.failures: list[tuple[float, str]] = []  # (wall time, kind): errors and 5xx
        self.connects = 0
        self.idle_closed = 0  # reconnects: the server had closed the idle connection
        self.server_closed = 0  # reconnects: the response said Connection: close
        # Failures of the "closed before any response" kind whose thread's next request (the
        # same GET, on a new connection) was answered: what one retry would have recovered.
        self.recovered = 0

    def merge(self, other: dict[str, Any]) -> None:
        part = array("d")
        part.frombytes(other["latency"])
        self.latency.extend(part)
        for key in (
            *("sent", "answered", "measured"),
            *("connects", "idle_closed", "server_closed", "recovered"),
        ):
            setattr(self, key, getattr(self, key) + other[key])
        add_counts(self.statuses, other["statuses"])
        add_counts(self.errors, other["errors"])
        self.failures.extend(other["failures"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency.tobytes(),
            "sent": self.sent,
            "answered": self.answered,
            "measured": self.measured,
            "statuses": self.statuses,
            "errors": self.errors,
            "failures": self.failures,
            "connects": self.connects,
            "idle_closed": self.idle_closed,
            "server_closed": self.server_closed,
            "recovered": self.recovered,
        }


def dropped(conn: http.client.HTTPConnection) -> bool:
    """The server closed the idle connection (or sent something unasked): do not reuse it."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def classify(exc: BaseException, reused: bool) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete response"
    if reused and isinstance(
        exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
    ):
        return f"{CLOSED_EARLY}: {type(exc).__name__}"
    return type(exc).__name__


def load_thread(
    target: tuple[str, int, str, dict[str, str]],
    start: float,
    measure_from: float,
    end: float | None,
    stop: threading.Event,
    tally: Tally,
) -> None:
    """GET `target` back to back from `start` (wall clock) until `end` or `stop`; latencies
    count from `measure_from`."""
    host, port, path, headers = target
    conn: http.client.HTTPConnection | None = None
    reused = retrying = False
    while time.time() < start:
        time.sleep(0.001)
    while not stop.is_set():
        now = time.time()
        if end is not None and now >= end:
            break
        if conn is not None and dropped(conn):
            conn.close()
            conn = None
            tally.idle_closed += 1
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
            reused = False
            try:
                conn.connect()
            except OSError as exc:
                kind = f"connect: {type(exc).__name__}"
                tally.errors[kind] = tally.errors.get(kind, 0) + 1
                tally.failures.append((time.time(), kind))
                conn.close()
                conn = None
                time.sleep(0.01)
                continue
            tally.connects += 1
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            tally.sent += 1
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException) as exc:
            kind = classify(exc, reused)
            tally.errors[kind] = tally.errors.get(kind, 0) + 1
            tally.failures.append((time.time(), kind))
            retrying = kind.startswith(CLOSED_EARLY)
            conn.close()
            conn = None
            continue
        elapsed = time.perf_counter() - t0
        tally.answered += 1
        status = str(resp.status)
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if resp.status >= 500:
            tally.failures.append((time.time(), status))
        elif retrying:
            tally.recovered += 1
        retrying = False
        if now >= measure_from:
            tally.measured += 1
            tally.latency.append(elapsed)
        if resp.will_close:
            conn.close()
            conn = None
            tally.server_closed += 1
        else:
            reused = True
    if conn is not None:
        conn.close()


def client_main(conn: multiprocessing.connection.Connection) -> None:
    """One client process: runs loads on command until told to quit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    conn.send(("ready", None))
    while True:
        try:
            command, spec = conn.recv()
        except EOFError:  # the parent went away
            return
        if command != "run":
            return
        stop = threading.Event()
        tallies = [Tally() for _ in spec["targets"]]
        threads = [
            threading.Thread(
                target=load_thread,
                args=(tuple(t), spec["start"], spec["measure_from"], spec["end"], stop, tally),
                daemon=True,
            )
            for t, tally in zip(spec["targets"], tallies, strict=True)
        ]
        for t in threads:
            t.start()
        if spec["end"] is None:  # open ended: until "stop"
            with contextlib.suppress(EOFError):
                conn.recv()
        stop_at = time.time()
        if spec["end"] is None:
            stop.set()
        for t in threads:
            t.join()
        total = Tally()
        for tally in tallies:
            total.merge(tally.as_dict())
        conn.send(("result", {**total.as_dict(), "stopped_at": stop_at}))


class Clients:
    """`procs` client processes (spawn) and their pipes; `run` splits the connections."""

    def __init__(self, bench: Bench, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for k in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=client_main, args=(child,), name=f"http-clients-{k}", daemon=True
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)
        bench.cleanup.push("stop the client processes", self.stop)
        for pipe, proc in zip(self.pipes, self.procs, strict=True):  # imports done
            if not pipe.poll(60) or pipe.recv()[0] != "ready":
                raise BenchError(f"{proc.name} did not start ({proc.exitcode})")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def start(
        self, targets: list[tuple[str, int, str, dict[str, str]]], threads: int, **spec: Any
    ) -> None:
        """Connection g (of `threads`) GETs targets[g % len(targets)]; process k runs
        connections k, k + procs, ..."""
        per_conn = [targets[g % len(targets)] for g in range(threads)]
        for k, pipe in enumerate(self.pipes):
            pipe.send(("run", {"targets": per_conn[k :: len(self.pipes)], **spec}))

    def gather(self, timeout: float) -> Tally:
        total = Tally()
        deadline = time.monotonic() + timeout
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            while not pipe.poll(0.2):
                if not proc.is_alive():
                    raise BenchError(f"{proc.name} exited ({proc.exitcode})")
                if time.monotonic() > deadline:
                    raise BenchError(f"{proc.name}: no result after {timeout:.0f}s")
            what, body = pipe.recv()
            if what != "result":
                raise BenchError(f"{proc.name}: {what}")
            total.merge(body)
        return total

    def run(
        self,
        targets: list[tuple[str, int, str, dict[str, str]]],
        threads: int,
        warmup: float,
        seconds: float,
        cpu: CpuGroups,
    ) -> tuple[Tally, dict[str, float]]:
        """A row: `warmup` s, then `seconds` s measured; (the tallies, CPU % per group over
        the measured window)."""
        start = time.time() + 0.3
        measure_from, end = start + warmup, start + warmup + seconds
        self.start(targets, threads, start=start, measure_from=measure_from, end=end)
        time.sleep(max(0.0, measure_from - time.time()))
        before = cpu.sample()
        time.sleep(max(0.0, end - time.time()))
        after = cpu.sample()
        return self.gather(timeout=REQUEST_TIMEOUT_S + 30), CpuGroups.window(before, after)

    def start_open(
        self, targets: list[tuple[str, int, str, dict[str, str]]], threads: int
    ) -> float:
        """Start a load that runs until `stop_open`; returns its start (wall clock)."""
        start = time.time() + 0.3
        self.start(targets, threads, start=start, measure_from=start, end=None)
        return start

    def stop_open(self) -> Tally:
        for pipe in self.pipes:
            pipe.send(("stop", None))
        return self.gather(timeout=REQUEST_TIMEOUT_S + 30)

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("quit", None))
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for pipe in self.pipes:
            pipe.close()


# --- CPU of the process groups -----------------------------------------------------------------


def tree(pid: int, *, itself: bool = True) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return ([root] if itself else []) + root.children(recursive=True)
    return []


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User+system seconds of the processes and of the children they reaped (an nginx
    master reaps the workers a reload retired)."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class CpuGroups:
    """CPU seconds per group of processes (clients, edge nginx, edge agent, backends, gateway,
    auth-service) between two samples: a process that appeared counts from zero, one that
    was reaped by another of its group still counts (in its parent's children times)."""

    def __init__(self, stack: Stack, backends: list[Backend], clients: Clients) -> None:
        self.stack, self.backends, self.clients = stack, backends, clients

    def groups(self) -> dict[str, list[psutil.Process]]:
        procs = self.stack.procs
        return {
            "clients": [p for pid in self.clients.pids() for p in tree(pid)],
            "edge nginx": tree(procs["edge"].pid, itself=False),
            "edge agent": tree(procs["edge"].pid)[:1],
            "backends": [p for b in self.backends for p in tree(b.proc.pid)],
            "gateway": tree(procs["gateway"].pid),
            "auth-service": tree(procs["auth"].pid),
        }

    def sample(self) -> dict[str, Any]:
        machine = psutil.cpu_times()  # every CPU: PostgreSQL, stats-service, the rest too
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return {
            "t": time.time(),
            **{k: cpu_seconds(v) for k, v in self.groups().items()},
            "machine": busy,
        }

    @staticmethod
    def window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        """% of one core per group over the window."""
        wall = max(after["t"] - before["t"], 1e-9)
        out = {
            group: max(0.0, used - before.get(group, 0.0)) / wall * 100
            for group, used in after.items()
            if group not in ("t", "machine")
        }
        machine = (after["machine"] - before["machine"]) / wall * 100
        # PostgreSQL, stats-service, RabbitMQ, the kernel's own work, anything else running
        return {**out, "other": machine - sum(out.values()), "machine": machine}


# --- the proxy API -----------------------------------------------------------------------------


def control_session() -> requests.Session:
    """The demo key, never a proxy from the environment; a request the edge's reload cut
    (it closes idle keep-alive connections) is retried, so the control path never fails
    a run for that."""
    s = requests.Session()
    s.trust_env = False  # loopback only
    s.headers["X-API-Key"] = API_KEY
    retry = Retry(total=3, connect=3, read=3, status=0, backoff_factor=0.02)
    s.mount("http://", HTTPAdapter(max_retries=retry))
    return s


def proxy_set(backends: list[Backend], weight_last: int) -> dict[str, Any]:
    servers = [
        {"address": b.address, "weight": weight_last if i == len(backends) - 1 else 1}
        for i, b in enumerate(backends)
    ]
    return {
        "upstreams": [{"name": UPSTREAM, "servers": servers}],
        "routes": [
            {"id": "open", "path": "/bench/*", "upstream": UPSTREAM},
            {
                "id": "private",
                "path": "/bench-auth/*",
                "upstream": UPSTREAM,
                "middleware": ["auth"],
            },
        ],
    }


def change_set(
    s: requests.Session, base: str, body: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """PUT the set; GET the config every --apply-poll until an edge applied the version the
    PUT returned. Times: PUT sent -> its answer (put_s), -> a poll saw it live (apply_s),
    -> the edge's own `applied_at` (server_s; same host clock, 1 ms resolution)."""
    sent_wall = time.time()
    t0 = time.perf_counter()
    r = s.put(f"{base}/api/proxy/config", json=body, timeout=30)
    put_s = time.perf_counter() - t0
    if r.status_code != 200:
        raise BenchError(f"PUT /api/proxy/config -> {r.status_code}: {r.text[:500]}")
    version = r.json()["version"]
    polls = 0
    while True:
        g = s.get(f"{base}/api/proxy/config", timeout=30)
        polls += 1
        if g.status_code != 200:
            raise BenchError(f"GET /api/proxy/config -> {g.status_code}: {g.text[:500]}")
        edges = g.json()["edges"]
        live = [e for e in edges if (e["applied_version"] or 0) >= version]
        if live:
            apply_s = time.perf_counter() - t0
            break
        if time.perf_counter() - t0 > args.apply_timeout:
            raise BenchError(
                f"version {version} not applied after {args.apply_timeout:g}s: {edges}"
            )
        time.sleep(args.apply_poll)
    applied_at = parse_ts(live[0]["applied_at"])
    return {
        "version": version,
        "sent_wall": sent_wall,
        "put_s": put_s,
        "apply_s": apply_s,
        "server_s": applied_at - sent_wall if applied_at is not None else None,
        "applied_wall": sent_wall + apply_s,
        "polls": polls,
    }


def read_stats(s: requests.Session, base: str) -> dict[str, Any]:
    r = s.get(f"{base}/api/proxy/stats", timeout=30)
    if r.status_code != 200:
        raise BenchError(f"GET /api/proxy/stats -> {r.status_code}: {r.text[:500]}")
    return r.json()


def settled_stats(
    s: requests.Session, base: str, args: argparse.Namespace
) -> tuple[dict[str, Any], float, bool]:
    """Poll the stats until requests_total is unchanged for --stats-quiet seconds (at most
    --stats-timeout): (the last answer, seconds waited, settled)."""
    t0 = time.monotonic()
    last = read_stats(s, base)
    changed = time.monotonic()
    while time.monotonic() - t0 < args.stats_timeout:
        time.sleep(0.25)
        now = read_stats(s, base)
        if now["requests_total"] != last["requests_total"]:
            changed = time.monotonic()
        last = now
        if time.monotonic() - changed >= args.stats_quiet:
            return last, time.monotonic() - t0, True
    return last, time.monotonic() - t0, False


# --- the run -----------------------------------------------------------------------------------

CONDITIONS = """\
One machine, loopback only: PostgreSQL, RabbitMQ, gunicorn auth-service and gateway,
stats-service, the edge (jobgate-edge and its nginx, EDGE_WORKERS worker processes), the
backends (nginx instances of their own, 1 worker each, `return 200 "<name>"`) and the client
processes (threads with one keep-alive http.client connection each) share its CPUs. The edge
opens a new connection to the upstream for every request (Connection: close: no upstream
keep-alive, by design). Set changes go through the edge to PUT /api/proxy/config with the
demo API key; tests/stack.py starts the edge with EDGE_POLL_SECONDS=1 and
PROXY_STATS_FLUSH_SECONDS=0.2 (a change is noticed by LISTEN/NOTIFY, not the poll)."""

LEGEND = """\
apply: PUT sent -> a GET /api/proxy/config (every --apply-poll) showed an edge with
applied_version >= the PUT's version; `server` = PUT sent -> the edge's applied_at (no poll
lag). The target p95 <= 2 s is the bench's reading of the issue's "changes apply within
seconds". throughput: req/s = answers in the measured window / its length, all connections
together; latency = request written -> response read, client side; `x direct` = the row's
req/s / the backends' direct req/s. CPU: % of one core over the row's measured window
(user+system of the processes and of the children they reaped); `other` = the machine's busy
time minus the groups: PostgreSQL, stats-service, RabbitMQ, the kernel's own network work.
reloads: `failed` = requests without an answer (connection errors) + 5xx answers; `next ok` =
failures of the `closed before any response` kind after which the same connection's next
request (the same GET, on a new connection) was answered: what one retry would have saved;
`idle closes` = keep-alive connections the edge closed while idle (each reload retires the
old workers, which close them), seen by the client before reuse and reopened, as urllib3 and
browsers do: not a failure. stats: `answered` = every response the bench read on a route
path (the checks and warm-ups included); `refused at the edge` = the auth check's 401s, which
the stats count and no backend sees."""


def row_result(name: str, tally: Tally, seconds: float, cpu: dict[str, float]) -> dict[str, Any]:
    lat = spread(tally.latency)
    failed = sum(tally.errors.values()) + sum(
        v for k, v in tally.statuses.items() if k.startswith("5")
    )
    return {
        "row": name,
        "rps": tally.measured / seconds,
        "measured": tally.measured,
        "sent": tally.sent,
        "answered": tally.answered,
        "statuses": tally.statuses,
        "errors": tally.errors,
        "failed": failed,
        "p50_ms": lat["p50"] * 1000,
        "p95_ms": lat["p95"] * 1000,
        "p99_ms": lat["p99"] * 1000,
        "max_ms": lat["max"] * 1000,
        "connects": tally.connects,
        "idle_closed": tally.idle_closed,
        "server_closed": tally.server_closed,
        "recovered": tally.recovered,
        "cpu_pct": cpu,
    }


def check_routes(base: str) -> dict[str, int]:
    """The published routes answer as they should; returns the answers' statuses."""
    s = requests.Session()
    s.trust_env = False
    r = s.get(f"{base}{OPEN_PATH}", timeout=10)
    if r.status_code != 200 or not r.text.strip():
        raise BenchError(f"GET {OPEN_PATH} via the edge -> {r.status_code}: {r.text[:300]}")
    r = s.get(f"{base}{AUTH_PATH}", timeout=10)
    if r.status_code != 401:
        raise BenchError(f"GET {AUTH_PATH} without a key -> {r.status_code}, not 401")
    r = s.get(f"{base}{AUTH_PATH}", headers={"X-API-Key": API_KEY}, timeout=10)
    if r.status_code != 200:
        raise BenchError(f"GET {AUTH_PATH} with the key -> {r.status_code}: {r.text[:300]}")
    s.close()
    return {"200": 2, "401": 1}


def failures_near_changes(
    failures: list[tuple[float, str]], changes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each failure with the time since the latest change's PUT was sent (None before any)."""
    out = []
    for t, kind in sorted(failures):
        before = [c for c in changes if c["sent_wall"] <= t]
        last = before[-1] if before else None
        out.append(
            {
                "t": t,
                "kind": kind,
                "version": last["version"] if last else None,
                "after_put_s": t - last["sent_wall"] if last else None,
                "after_applied_s": t - last["applied_wall"] if last else None,
            }
        )
    return out


def edge_environment(pid: int) -> dict[str, str]:
    """The agent's settings of EDGE_ENV as its process got them ("" = the default)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    env = dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)
    return {k: env.get(k, "") for k in EDGE_ENV}


def run(bench: Bench) -> None:
    args = bench.args
    if min(args.changes, args.threads, args.procs, args.backends) < 1 or args.reloads < 0:
        raise BenchError("--changes, --threads, --procs and --backends must be positive")
    if args.seconds <= 0 or args.warmup < 0:
        raise BenchError("--seconds must be positive and --warmup not negative")
    nginx = nginx_binary()
    load_before = psutil.getloadavg()

    backends = [Backend(bench, chr(ord("a") + i), nginx) for i in range(args.backends)]
    stack = bench.start_stack(None, {})
    stack.start_stats()
    stack.start_edge()
    log(
        f"stack, stats-service, edge and {len(backends)} backends up in"
        f" {time.perf_counter() - bench.stack_t0:.1f}s"
    )
    edge = stack.edge_url
    edge_env = edge_environment(stack.procs["edge"].pid)
    ctl = control_session()
    clients = Clients(bench, min(args.procs, args.threads))
    cpu = CpuGroups(stack, backends, clients)
    route_answered = route_sent = 0  # every request the bench sent on a route path
    route_statuses: dict[str, int] = {}  # and their answers

    # The set, then a check that the routes answer as published.
    first = change_set(ctl, edge, proxy_set(backends, 1), args)
    log(f"set v{first['version']} live in {first['apply_s']:.2f}s")
    checked = check_routes(edge)
    add_counts(route_statuses, checked)
    route_answered += sum(checked.values())
    route_sent += sum(checked.values())

    # 1) apply latency: successive changes, the last server's weight 2, 1, 2, ...
    changes = []
    for i in range(args.changes):
        time.sleep(args.apply_gap)
        changes.append(change_set(ctl, edge, proxy_set(backends, 2 if i % 2 == 0 else 1), args))
    weight = 1 if args.changes % 2 == 0 else 2  # the last server's weight now
    apply = spread([c["apply_s"] for c in changes])
    server = spread([c["server_s"] for c in changes if c["server_s"] is not None])
    put = spread([c["put_s"] for c in changes])
    log(f"{args.changes} changes: apply p50 {apply['p50']:.3f}s, p95 {apply['p95']:.3f}s")

    # 2) throughput, one row after the other
    local = "127.0.0.1"
    key = {"X-API-Key": API_KEY}
    rows_spec = [
        ("backends direct", [(local, b.port, DIRECT_PATH, {}) for b in backends], False),
        ("edge: /bench/* (no middleware)", [(local, stack.edge_port, OPEN_PATH, {})], True),
        ("edge: /bench-auth/* (auth)", [(local, stack.edge_port, AUTH_PATH, key)], True),
        ("edge: Jobgate /api/v1/health", [(local, stack.edge_port, HEALTH_PATH, {})], False),
        ("gateway direct: /api/v1/health", [(local, stack.gateway_port, HEALTH_PATH, {})], False),
    ]
    rows = []
    for name, targets, routed in rows_spec:
        tally, used = clients.run(targets, args.threads, args.warmup, args.seconds, cpu)
        row = row_result(name, tally, args.seconds, used)
        if routed:
            route_answered += tally.answered
            route_sent += tally.sent
            add_counts(route_statuses, tally.statuses)
        if row["statuses"].get("200", 0) == 0:
            raise BenchError(f"{name}: no 200 answer ({row['statuses']}, {row['errors']})")
        rows.append(row)
        log(
            f"{name}: {row['rps']:.0f} req/s, p50 {row['p50_ms']:.2f} ms,"
            f" p95 {row['p95_ms']:.2f} ms, {row['failed']} failed"
        )
    direct_rps = rows[0]["rps"]

    # 3) reloads under load on /bench/*
    reload_changes: list[dict[str, Any]] = []
    load_start = clients.start_open([(local, stack.edge_port, OPEN_PATH, {})], args.threads)
    time.sleep(max(0.0, load_start - time.time()))
    before = cpu.sample()
    time.sleep(1.0)
    for _ in range(args.reloads):
        weight = 2 if weight == 1 else 1
        reload_changes.append(change_set(ctl, edge, proxy_set(backends, weight), args))
        time.sleep(args.apply_gap)
    time.sleep(1.0)
    after = cpu.sample()
    under = clients.stop_open()
    load_s = max(1e-9, after["t"] - load_start)
    route_answered += under.answered
    route_sent += under.sent
    add_counts(route_statuses, under.statuses)
    # Answers the edge gave without asking a backend (the auth check's 401s): in the stats,
    # not in the servers' requests nor in the backends' logs.
    refused = sum(v for k, v in route_statuses.items() if k.startswith("4"))
    reload_row = row_result("reloads", under, load_s, CpuGroups.window(before, after))
    near = failures_near_changes(under.failures, reload_changes)
    reload_apply = spread([c["apply_s"] for c in reload_changes]) if reload_changes else None
    log(
        f"{args.reloads} reloads under load: {under.sent} sent, {under.answered} answered,"
        f" {reload_row['failed']} failed, {under.idle_closed} idle closes"
    )

    # 4) stats: until requests_total stops growing
    stats, waited_s, settled = settled_stats(ctl, edge, args)
    served = [b.served() for b in backends]
    routed_served = sum(s["routed"] for s in served)
    direct_served = sum(s["direct"] for s in served)
    upstream_stats = stats["upstreams"].get(UPSTREAM, {})
    server_requests = sum(s["requests"] for s in upstream_stats.get("servers", []))
    stats_total = stats["requests_total"]

    summary = {
        "backends": [b.address for b in backends],
        "edge_env": edge_env,
        "loadavg_before": list(load_before),
        "apply": {
            "changes": args.changes,
            "apply_s": apply,
            "server_s": server,
            "put_s": put,
            "polls": sum(c["polls"] for c in changes),
            "target_p95_s": TARGET_APPLY_P95_S,
            "p95_ok": apply["p95"] <= TARGET_APPLY_P95_S,
        },
        "throughput": rows,
        "reloads": {
            "changes": args.reloads,
            "load_s": load_s,
            "apply_s": reload_apply,
            **{k: v for k, v in reload_row.items() if k != "row"},
            "failures": near[:200],
        },
        "stats": {
            "settled": settled,
            "waited_s": waited_s,
            "requests_total": stats_total,
            "bench_answered": route_answered,
            "bench_sent": route_sent,
            "bench_statuses": route_statuses,
            "refused_at_edge": refused,
            "difference": stats_total - route_answered,
            "upstream_total_requests": upstream_stats.get("total_requests"),
            "servers_requests": server_requests,
            "backends_served_routed": routed_served,
            "backends_served_direct": direct_served,
            "direct_answered": rows[0]["answered"],
            "answer": stats,
        },
    }

    apply_table = render_table(
        ["", "changes", "p50 s", "p95 s", "max s", "server p50 s", "PUT p50 ms", "target"],
        [
            [
                "PUT sent -> applied_version seen",
                str(args.changes),
                fmt(apply["p50"]),
                fmt(apply["p95"]),
                fmt(apply["max"]),
                fmt(server["p50"]),
                fmt(put["p50"] * 1000, ".1f"),
                f"p95 <= {TARGET_APPLY_P95_S:g} s: {verdict(summary['apply']['p95_ok'])}",
            ]
        ],
    )
    tput_table = render_table(
        [
            *("", "conns", "requests", "req/s", "x direct"),
            *("p50 ms", "p95 ms", "p99 ms", "failed", "other"),
        ],
        [
            [
                r["row"],
                str(args.threads),
                str(r["measured"]),
                fmt(r["rps"], ".0f"),
                fmt(r["rps"] / direct_rps if direct_rps else None, ".2f"),
                fmt(r["p50_ms"], ".2f"),
                fmt(r["p95_ms"], ".2f"),
                fmt(r["p99_ms"], ".2f"),
                str(r["failed"]),
                str(sum(v for k, v in r["statuses"].items() if not k.startswith(("2", "5")))),
            ]
            for r in rows
        ],
    )
    groups = list(rows[0]["cpu_pct"])
    cpu_table = render_table(
        ["", *groups],
        [[r["row"], *(fmt(r["cpu_pct"][g], ".0f") for g in groups)] for r in [*rows, reload_row]],
    )
    failed = reload_row["failed"]
    reload_table = render_table(
        [
            *("", "changes", "apply p50 s", "apply max s", "load s", "sent", "answered"),
            *("req/s", "failed", "next ok", "idle closes", "expected"),
        ],
        [
            [
                "/bench/* under reloads",
                str(args.reloads),
                fmt(reload_apply["p50"] if reload_apply else None),
                fmt(reload_apply["max"] if reload_apply else None),
                fmt(load_s, ".1f"),
                str(under.sent),
                str(under.answered),
                fmt(under.answered / load_s, ".0f"),
                str(failed),
                str(under.recovered),
                str(under.idle_closed),
                f"0 failed: {verdict(failed == 0)}",
            ]
        ],
    )
    stats_table = render_table(
        ["", "count", "vs bench answered"],
        [
            ["bench: answered on route paths", str(route_answered), ""],
            ["bench: sent on route paths", str(route_sent), f"{route_sent - route_answered:+d}"],
            ["stats: requests_total", str(stats_total), f"{stats_total - route_answered:+d}"],
            [
                f"stats: upstreams.{UPSTREAM}.total_requests",
                str(upstream_stats.get("total_requests", "-")),
                f"{(upstream_stats.get('total_requests') or 0) - route_answered:+d}",
            ],
            [
                "stats: its servers' requests (attempts)",
                str(server_requests),
                f"{server_requests - route_answered:+d} ({refused} refused at the edge)",
            ],
            [
                "backends: routed requests served (logs)",
                str(routed_served),
                f"{routed_served - route_answered:+d} ({refused} refused at the edge)",
            ],
        ],
    )

    notes = [
        f"stats {'settled' if settled else 'NOT settled'} {waited_s:.1f}s after the load"
        f" (requests_total unchanged for {args.stats_quiet:g}s)",
        f"the route with auth: {route_auth_share(rows)}",
        "edge settings: " + ", ".join(f"{k}={v or 'default'}" for k, v in edge_env.items()),
    ]
    if rows[0]["cpu_pct"]["backends"] >= 90 * len(backends):
        notes.append(
            "the backends were at a full core each in the direct row: the backends,"
            " not the edge, may limit it"
        )
    busy_clients = rows[1]["cpu_pct"]["clients"]
    if busy_clients >= 80 * len(clients.procs):
        notes.append(
            f"the client processes used {busy_clients:.0f}% (of {100 * len(clients.procs)}%)"
            " on /bench/*: the Python clients are the limit of the routed rows"
        )
    if under.errors or failed:
        kinds: dict[str, int] = {}
        for f in near:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        notes.append(f"failures under reloads by kind: {kinds}")
        notes.append(
            "failures after the latest PUT, s: "
            + ", ".join(fmt(f["after_put_s"], ".2f") for f in near[:20])
        )
    if direct_served != rows[0]["answered"]:
        notes.append(
            f"backends logged {direct_served} direct requests, the bench read"
            f" {rows[0]['answered']} answers"
        )

    bench.print_report(
        CONDITIONS,
        [
            f"Apply latency, {args.changes} successive set changes (weight 2/1 of the last"
            f" server), no load:\n" + apply_table,
            f"Throughput, {args.threads} keep-alive connections from {len(clients.procs)} client"
            f" processes, {args.seconds:g} s after {args.warmup:g} s warm-up per row:\n"
            + tput_table,
            "CPU, % of one core over each row's measured window (machine: every CPU, so"
            f" {100 * (psutil.cpu_count() or 1)} % is all of them):\n" + cpu_table,
            f"Reloads under load: {args.reloads} set changes applied one after the other while"
            f" {args.threads} connections GET {OPEN_PATH}:\n" + reload_table,
            "Stats (GET /api/proxy/stats, all-time counts) vs the requests the bench sent"
            " through published routes:\n" + stats_table,
            "Notes:\n" + "\n".join(notes),
        ],
        LEGEND,
    )
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(bench.tmp, {"nginx": ["sh", "-c", f"{nginx} -v 2>&1"]}),
        settings=effective_settings(stack.env, SETTINGS),
        summary=summary,
        apply_changes=changes,
        reload_changes=reload_changes,
        backends_served=dict(zip((b.name for b in backends), served, strict=True)),
    )


def route_auth_share(rows: list[dict[str, Any]]) -> str:
    """The auth route's req/s against the open route's (each request also asks the gateway)."""
    open_rps, auth_rps = rows[1]["rps"], rows[2]["rps"]
    if not open_rps:
        return "-"
    return (
        f"{auth_rps:.0f} req/s = {auth_rps / open_rps:.2f}x the open route's (every request"
        " is also an auth subrequest to the gateway)"
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("proxy", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
