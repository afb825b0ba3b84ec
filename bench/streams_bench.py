"""stats-service under many WebSocket clients: live progress fan-out latency, CPU and memory.

Issue 10's benchmark. It creates a throwaway PostgreSQL database and RabbitMQ vhost, starts
gunicorn auth-service and gateway (`Bench.start_stack`; its worker is stopped at once, no
job runs) and ONE stats-service process (`jobgate-stats`, uvicorn), inserts `--jobs` (100)
jobs in state `running` owned by the admin, then:

  * connects `--clients` (1,000) WebSocket clients to `/ws/jobs/{id}`, `--clients` / `--jobs`
    (10) per job, with the demo API key, from `--procs` (2) client processes (asyncio +
    `websockets`), all at once: the handshake time of each (connect -> snapshot received)
    and the wall time until all are connected;
  * publishes `--rate` (200) progress events per second, round robin over the jobs, straight
    to the `jobgate.events` exchange (pika, delivery_mode 1, as the workers' live ticks),
    `--warmup` (5) s untimed then `--seconds` (30) s measured; each event carries its
    publish time in `ts`, which stats-service passes to the clients as `timestamp`;
  * measures, over every measured message of every client: delivery latency publish ->
    client receive (p50, p95, p99, max), messages delivered vs expected (rate x clients per
    job), and stats-service's CPU (% of one core, over the measured window) and RSS (idle,
    connected, peak), sampled with psutil.

Targets (issue 10): p95 < 100 ms, RSS < 250 MB with 1,000 clients on one process.

Usage: .venv/bin/python bench/streams_bench.py [--quick] [--clients N] [--rate N]
       [--seconds S] ... (see --help).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import multiprocessing
import multiprocessing.connection
import resource
import signal
import sys
import threading
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import psycopg2  # noqa: E402
import requests  # noqa: E402

from bench.harness import (  # noqa: E402
    ADMIN,
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
    rabbitmqctl,
    render_table,
    run_main,
    verdict,
)

EXCHANGE = "jobgate.events"  # jobgate.broker.EVENTS_EXCHANGE
SETTINGS = (
    "stats_client_queue",
    "stats_send_timeout_seconds",
    "stats_ping_seconds",
    "stats_max_streams_per_principal",
    "stats_poll_seconds",
    "stats_metrics_seconds",
    *COMMON_SETTINGS,
)
TARGET_P95_MS = 100.0
TARGET_RSS_MB = 250.0
MB = 1_000_000
SAMPLE_S = 0.25  # psutil sampling period of the processes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(__doc__)
    add_quick(p, "100 clients on 10 jobs, 50 events/s, 2 s warm-up + 5 s measured")
    p.add_argument("--clients", type=int, default=1000, help="WebSocket clients (1000)")
    p.add_argument("--jobs", type=int, default=100, help="jobs the clients watch (100)")
    p.add_argument("--rate", type=float, default=200.0, help="progress events per second (200)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured publishing, s (30)")
    p.add_argument("--warmup", type=float, default=5.0, help="untimed publishing first, s (5)")
    p.add_argument(
        "--drain",
        type=float,
        default=60.0,
        help="after the last event, wait until clients got nothing for 1 s, at most this (60)",
    )
    p.add_argument("--procs", type=int, default=2, help="client processes (2)")
    p.add_argument(
        "--connect-concurrency",
        type=int,
        default=0,
        help="handshakes in flight per client process (0: all at once)",
    )
    p.add_argument(
        "--no-compression",
        action="store_true",
        help="clients do not offer permessage-deflate (browsers do; the default offers it)",
    )
    p.add_argument(
        "--prewarm",
        action="store_true",
        help="one client connects (and leaves) first, so stats-service's API-key cache is warm"
        " before the burst (default: a cold burst, as after a restart)",
    )
    add_common_options(p, job_timeout=60.0)
    return parse(
        p,
        argv,
        quick={"--clients": 100, "--jobs": 10, "--rate": 50.0, "--seconds": 5.0, "--warmup": 2.0},
    )


# --- numbers -----------------------------------------------------------------------------------


def percentile(ordered: list[float] | array, q: float) -> float:
    """Linear interpolation between closest ranks of an already sorted sequence."""
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": percentile(ordered, 0.5),
        "p95": percentile(ordered, 0.95),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else float("nan"),
        "mean": sum(ordered) / len(ordered) if ordered else float("nan"),
    }


def raise_nofile() -> int:
    """Soft open-files limit up to the hard one (a client per descriptor); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the client processes ----------------------------------------------------------------------


def parse_ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Received:
    """What one client process saw: latencies of measured messages (ms), counts."""

    def __init__(self) -> None:
        self.latency_ms = array("d")
        self.sent_at = array("d")  # the publish time of each measured message
        self.last_any = 0.0  # when any message last arrived
        self.measured = 0
        self.warmup = 0
        self.snapshots = 0
        self.other = 0
        self.unique: set[tuple[int, int]] = set()  # (client, event seq): duplicates show
        self.closed: dict[str, int] = {}  # close code/reason -> clients closed by the server
        self.errors: dict[str, int] = {}
        self.first_measured = float("inf")
        self.last_measured = 0.0

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


async def client_run(
    conn: multiprocessing.connection.Connection,
    urls: list[str],
    concurrency: int,
    compression: bool,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    rec = Received()
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(concurrency) if concurrency > 0 else None
    handshake_ms: list[float] = []
    connected: list[Any] = []
    failures: dict[str, int] = {}
    stopping = asyncio.Event()

    async def one(i: int, url: str) -> None:
        async with sem if sem is not None else contextlib.nullcontext():
            start = time.perf_counter()
            try:
                ws = await connect(
                    url,
                    additional_headers={"X-API-Key": API_KEY},
                    open_timeout=120,
                    ping_interval=None,  # the server pings; the library answers
                    close_timeout=5,
                    max_queue=None,
                    compression="deflate" if compression else None,
                    proxy=None,  # loopback only
                )
                first = json.loads(await asyncio.wait_for(ws.recv(), 120))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                key = f"{type(exc).__name__}: {str(exc)[:80]}"
                failures[key] = failures.get(key, 0) + 1
                return
        handshake_ms.append((time.perf_counter() - start) * 1000)
        if first.get("type") == "snapshot":
            rec.snapshots += 1
        connected.append((i, ws))

    async def receive(i: int, ws: Any) -> None:
        try:
            async for raw in ws:
                now = rec.last_any = time.time()
                msg = json.loads(raw)
                if msg.get("type") != "progress":
                    rec.other += 1
                    continue
                item = (msg.get("progress_detail") or {}).get("current_item") or ""
                phase, _, seq = item.partition(":")
                if phase != "m":
                    rec.warmup += 1
                    continue
                rec.measured += 1
                rec.unique.add((i, int(seq)))
                sent = parse_ts(msg["timestamp"])
                rec.latency_ms.append((now - sent) * 1000)
                rec.sent_at.append(sent)
                rec.first_measured = min(rec.first_measured, now)
                rec.last_measured = max(rec.last_measured, now)
        except ConnectionClosed as exc:
            if not stopping.is_set():
                rec.count(rec.errors, f"closed: {exc}"[:100])
        else:
            if not stopping.is_set():  # the server closed it (not our own close at the end)
                rec.count(rec.closed, f"{ws.close_code} {ws.close_reason}".strip())

    # 1) wait for "connect", then connect everyone at once
    command, start_wall = await loop.run_in_executor(None, conn.recv)
    if command != "connect":
        return
    await asyncio.sleep(max(0.0, start_wall - time.time()))
    first_start = time.time()
    await asyncio.gather(*(one(i, url) for i, url in enumerate(urls)))
    all_connected = time.time()
    receivers = [asyncio.create_task(receive(i, ws)) for i, ws in connected]
    conn.send(
        (
            "connected",
            {
                "connected": len(connected),
                "failed": failures,
                "handshake_ms": handshake_ms,
                "first_start": first_start,
                "all_connected": all_connected,
                "snapshots": rec.snapshots,
            },
        )
    )
    # 2) receive until "stop", then until nothing arrived for `quiet` s (at most `most` s)
    command, (quiet, most) = await loop.run_in_executor(None, conn.recv)
    stop_at = time.time()
    while time.time() - max(rec.last_any, stop_at) < quiet and time.time() - stop_at < most:
        await asyncio.sleep(0.05)
    drained_s = time.time() - stop_at
    still_open = sum(1 for t in receivers if not t.done())
    stopping.set()
    await asyncio.gather(*(ws.close() for _, ws in connected), return_exceptions=True)
    await asyncio.wait(receivers, timeout=10)
    conn.send(
        (
            "result",
            {
                "latency_ms": rec.latency_ms.tobytes(),
                "sent_at": rec.sent_at.tobytes(),
                "drained_s": drained_s,
                "measured": rec.measured,
                "unique": len(rec.unique),
                "warmup": rec.warmup,
                "other": rec.other,
                "still_open": still_open,
                "closed": rec.closed,
                "errors": rec.errors,
                "first_measured": rec.first_measured,
                "last_measured": rec.last_measured,
            },
        )
    )


def client_main(
    conn: multiprocessing.connection.Connection,
    urls: list[str],
    concurrency: int,
    compression: bool,
) -> None:
    """One client process: its own event loop and its share of the clients."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    raise_nofile()
    try:
        asyncio.run(client_run(conn, urls, concurrency, compression))
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


class Clients:
    """The client processes and their pipes."""

    def __init__(self, bench: Bench, urls: list[str], procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        args = bench.args
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for k in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=client_main,
                args=(child, urls[k::procs], args.connect_concurrency, not args.no_compression),
                name=f"ws-clients-{k}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)
        bench.cleanup.push("stop the client processes", self.stop)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def send(self, message: tuple[str, Any]) -> None:
        for pipe in self.pipes:
            pipe.send(message)

    def gather(self, expect: str, timeout: float) -> list[dict[str, Any]]:
        out = []
        deadline = time.monotonic() + timeout
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            while not pipe.poll(0.2):
                if not proc.is_alive():
                    raise BenchError(f"{proc.name} exited ({proc.exitcode})")
                if time.monotonic() > deadline:
                    raise BenchError(f"{proc.name}: no '{expect}' after {timeout:.0f}s")
            what, body = pipe.recv()
            if what != expect:
                raise BenchError(f"{proc.name}: {what}: {body}")
            out.append(body)
        return out

    def stop(self) -> None:
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for pipe in self.pipes:
            pipe.close()


async def prewarm(url: str) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers={"X-API-Key": API_KEY}, proxy=None) as ws:
        await ws.recv()


# --- the publisher and the sampler -------------------------------------------------------------


class Publisher:
    """`rate` progress events per second, round robin over `jobs`, on the events exchange.
    `current_item` is "w:<seq>" during the warm-up and "m:<seq>" when measured."""

    def __init__(self, amqp_url: str, jobs: list[str], owner_id: str) -> None:
        import pika

        self.connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
        self.properties = pika.BasicProperties(
            delivery_mode=1, content_type="application/json", app_id="streams-bench"
        )
        self.jobs = jobs
        self.owner_id = owner_id
        self.done = [0] * len(jobs)
        self.seq = 0
        self.late_ms: list[float] = []  # how far behind its schedule each publish was

    def publish(self, phase: str) -> float:
        k = self.seq % len(self.jobs)
        self.done[k] += 1
        n = self.done[k]
        published = time.time()
        body = {
            "job_id": self.jobs[k],
            "kind": "cache",
            "owner_id": self.owner_id,
            "items_done": n,
            "items_failed": 0,
            "items_total": 1_000_000,
            "bytes_done": n * 65536,
            "bytes_total": 65536 * 1_000_000,
            "progress_pct": None,
            "current_item": f"{phase}:{self.seq}",
            "throughput_bps": 1.0e8,
            "status": "running",
            "event_id": self.seq,
            "event": "job.cache.progress",
            "ts": dt.datetime.fromtimestamp(published, dt.UTC).isoformat(timespec="microseconds"),
        }
        self.channel.basic_publish(
            EXCHANGE,
            "job.cache.progress",
            json.dumps(body, separators=(",", ":")).encode(),
            self.properties,
        )
        self.seq += 1
        return published

    def run(self, rate: float, seconds: float, phase: str) -> tuple[int, float, float]:
        """Publish at `rate`/s for `seconds` on an absolute schedule (no drift); returns
        (events, wall time of the first, of the last)."""
        n = max(1, round(rate * seconds))
        start = time.perf_counter()
        first = last = 0.0
        for i in range(n):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                self.late_ms.append(-wait * 1000)
            last = self.publish(phase)
            if i == 0:
                first = last
            if i % 50 == 0:
                self.connection.process_data_events(0)  # heartbeats
        return n, first, last

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


class Sampler(threading.Thread):
    """Every SAMPLE_S: RSS and CPU times of stats-service (and its children), of the client
    processes and of the machine."""

    def __init__(self, stats_pid: int, client_pids: list[int]) -> None:
        super().__init__(name="sampler", daemon=True)
        self.stats = psutil.Process(stats_pid)
        self.clients = [psutil.Process(pid) for pid in client_pids]
        self.me = psutil.Process()  # the publisher and this sampler
        self.samples: list[dict[str, float]] = []
        self.stopping = threading.Event()

    def take(self) -> dict[str, float]:
        procs = [self.stats, *self.stats.children(recursive=True)]
        rss = cpu = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                rss += proc.memory_info().rss
                t = proc.cpu_times()
                cpu += t.user + t.system
        clients_cpu = 0.0
        for proc in self.clients:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                clients_cpu += t.user + t.system
        me = self.me.cpu_times()
        run_ns = wait_ns = 0.0
        with contextlib.suppress(OSError, ValueError):  # the event loop's thread (the leader)
            stat = Path(f"/proc/{self.stats.pid}/schedstat").read_text().split()
            run_ns, wait_ns = float(stat[0]), float(stat[1])
        machine = psutil.cpu_times()
        return {
            "t": time.time(),
            "rss": rss,
            "cpu_s": cpu,
            "clients_cpu_s": clients_cpu,
            "bench_cpu_s": me.user + me.system,
            "loop_run_s": run_ns / 1e9,
            "loop_wait_s": wait_ns / 1e9,
            "machine_busy_s": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0),
        }

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_S):
            self.samples.append(self.take())

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def window(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Average use between two samples, in % of one core."""
    wall = after["t"] - before["t"]
    return {
        "wall_s": wall,
        "stats_cpu_pct": (after["cpu_s"] - before["cpu_s"]) / wall * 100,
        "clients_cpu_pct": (after["clients_cpu_s"] - before["clients_cpu_s"]) / wall * 100,
        "bench_cpu_pct": (after["bench_cpu_s"] - before["bench_cpu_s"]) / wall * 100,
        "loop_run_pct": (after["loop_run_s"] - before["loop_run_s"]) / wall * 100,
        "loop_wait_pct": (after["loop_wait_s"] - before["loop_wait_s"]) / wall * 100,
        "machine_cpu_pct": (after["machine_busy_s"] - before["machine_busy_s"]) / wall * 100,
    }


# --- the stack ---------------------------------------------------------------------------------


def insert_jobs(database_url: str, n: int) -> tuple[str, list[str]]:
    """`n` cache jobs in state `running`, owned by the admin: (admin id, job ids)."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM users WHERE username = %s", (ADMIN,))
            row = cur.fetchone()
            if row is None:
                raise BenchError("the bootstrap admin is missing")
            owner = str(row[0])
            ids = [str(uuid.uuid4()) for _ in range(n)]
            cur.executemany(
                "INSERT INTO jobs (id, kind, owner_id, status, params, attempt, items_total,"
                " bytes_total, started_at)"
                " VALUES (%s, 'cache', %s, 'running', %s, 1, 1000000, 65536000000, now())",
                [(i, owner, json.dumps({"files": ["bench"], "directories": []})) for i in ids],
            )
    finally:
        conn.close()
    return owner, ids


def stats_health(url: str) -> dict[str, Any]:
    s = requests.Session()
    s.trust_env = False  # loopback only
    return s.get(f"{url}/health", timeout=10).json()


def queue_backlog(vhost: str) -> list[dict[str, Any]]:
    """The stats-service queue(s) in the vhost and their ready messages (a backlog means the
    service could not keep up)."""
    out = rabbitmqctl("list_queues", "-p", vhost, "name", "messages", "--no-table-headers")
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            rows.append({"queue": parts[0], "messages": int(parts[1])})
    return rows


# --- the run -----------------------------------------------------------------------------------

CONDITIONS = """\
One machine, loopback only: stats-service (one uvicorn process, websockets-sansio), RabbitMQ,
PostgreSQL, this benchmark's publisher (pika, in its main process) and its client processes
(asyncio + websockets 17) share its CPUs. The clients authenticate with the demo API key (an
admin's), watch running jobs with /ws/jobs/{id}, and offer permessage-deflate as browsers do
(unless --no-compression). Progress events go straight to the jobgate.events exchange, as a
worker's live ticks do, unconfirmed and transient (delivery_mode 1)."""

LEGEND = """\
latency: the event's `ts` (taken just before it was published) -> the client process read
the message (time.time(); the same host clock), over every measured message of every client;
it includes RabbitMQ's hop and the client's own event-loop lag. expected: measured events x
clients per job. handshake: connect() started -> the snapshot message received (TCP, HTTP
upgrade, authentication, two job lookups in PostgreSQL). CPU: user+system seconds over the
measured window / its wall time (100% = one core); `machine` is all CPUs together
(200% = both of 2). RSS: stats-service's resident memory (idle = before any client)."""


def run(bench: Bench) -> None:
    args = bench.args
    if args.clients < 1 or args.jobs < 1 or args.procs < 1 or args.rate <= 0:
        raise BenchError("--clients, --jobs, --procs and --rate must be positive")
    load_before = psutil.getloadavg()
    nofile = raise_nofile()  # stats-service inherits it
    if nofile < args.clients + 200:
        raise BenchError(f"open-files limit {nofile} is too low for {args.clients} clients")
    per_job = args.clients / args.jobs

    stack = bench.start_stack(
        "cache", {"STATS_MAX_STREAMS_PER_PRINCIPAL": str(max(5000, args.clients * 2))}
    )
    # No job runs here: the stack's worker goes, the jobs are rows in state `running`.
    worker = stack.procs["worker-cache"]
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    owner, jobs = insert_jobs(stack.env["DATABASE_URL"], args.jobs)
    stats_proc = stack.start_stats()
    stats_pid = stats_proc.pid
    for _ in range(100):  # the consumer's queue is bound once the health says so
        if stats_health(stack.stats_url)["sources"]["events_exchange"] == "up":
            break
        time.sleep(0.1)
    else:
        raise BenchError("stats-service never consumed the events exchange")
    log(f"stack and stats-service up in {time.perf_counter() - bench.stack_t0:.1f}s")

    ws_base = f"ws://127.0.0.1:{stack.stats_port}/ws/jobs/"
    urls = [ws_base + jobs[i % args.jobs] for i in range(args.clients)]
    clients = Clients(bench, urls, args.procs)
    sampler = Sampler(stats_pid, clients.pids())
    time.sleep(1.0)  # the client processes import websockets
    idle = sampler.take()
    sampler.start()
    bench.cleanup.push("stop the sampler", sampler.stop)

    if args.prewarm:
        asyncio.run(prewarm(urls[0]))
    # 1) connect everyone
    clients.send(("connect", time.time() + 0.5))
    connected = clients.gather("connected", timeout=300)
    up = sum(c["connected"] for c in connected)
    failed: dict[str, int] = {}
    for c in connected:
        for k, v in c["failed"].items():
            failed[k] = failed.get(k, 0) + v
    connect_wall = max(c["all_connected"] for c in connected) - min(
        c["first_start"] for c in connected
    )
    handshake = spread([ms for c in connected for ms in c["handshake_ms"]])
    time.sleep(1.0)
    after_connect = sampler.take()
    health = stats_health(stack.stats_url)
    log(
        f"{up}/{args.clients} clients connected in {connect_wall:.2f}s (handshake p50"
        f" {handshake['p50']:.0f} ms, p95 {handshake['p95']:.0f} ms); stats-service reports"
        f" {health['streams']} streams, RSS {after_connect['rss'] / MB:.0f} MB"
    )
    if failed:
        log(f"failed handshakes: {failed}")
    if up == 0:
        raise BenchError("no client connected")

    # 2) publish: warm-up, then the measured window
    publisher = Publisher(stack.env["AMQP_URL"], jobs, owner)
    bench.cleanup.push("close the publisher", publisher.close)
    publisher.run(args.rate, args.warmup, "w")
    before = sampler.take()
    published, first_pub, last_pub = publisher.run(args.rate, args.seconds, "m")
    after = sampler.take()
    late = list(publisher.late_ms)
    log(f"published {published} measured events in {last_pub - first_pub:.1f}s; draining")
    backlog = queue_backlog(stack.env["AMQP_URL"].rsplit("/", 1)[1])

    # 3) let the clients drain (until quiet), stop them and collect
    clients.send(("stop", (1.0, args.drain)))
    results = clients.gather("result", timeout=args.drain + 120)
    sampler.stop()
    health_end = stats_health(stack.stats_url)
    if stats_proc.poll() is not None:
        raise BenchError(f"stats-service exited ({stats_proc.returncode})")

    latencies, sent_at = array("d"), array("d")
    for r in results:
        for key, into in (("latency_ms", latencies), ("sent_at", sent_at)):
            part = array("d")
            part.frombytes(r[key])
            into.extend(part)
    lat = spread(list(latencies))
    # Latency by publish time (5 s slices): a backlog that grows shows as a rising p50.
    slices: dict[int, list[float]] = {}
    for ms, sent in zip(latencies, sent_at, strict=True):
        slices.setdefault(int((sent - first_pub) // 5), []).append(ms)
    by_time = [
        {"from_s": k * 5, "n": len(v), "p50_ms": spread(v)["p50"], "p95_ms": spread(v)["p95"]}
        for k, v in sorted(slices.items())
    ]
    drained_s = max(r["drained_s"] for r in results)
    # Every client of a job gets each of its events (round robin: published / jobs per job).
    expected = round(published * up / args.jobs)
    delivered = sum(r["measured"] for r in results)
    unique = sum(r["unique"] for r in results)
    closed: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["closed"].items():
            closed[k] = closed.get(k, 0) + v
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    receive_span = max(r["last_measured"] for r in results) - min(
        r["first_measured"] for r in results
    )
    use = window(before, after)
    # RabbitMQ, PostgreSQL, the kernel, and whatever else runs on the machine meanwhile.
    others = (
        use["machine_cpu_pct"]
        - use["stats_cpu_pct"]
        - use["clients_cpu_pct"]
        - use["bench_cpu_pct"]
    )
    measured_samples = [s for s in sampler.samples if before["t"] <= s["t"] <= after["t"]]
    peak_rss = max([s["rss"] for s in sampler.samples] + [after["rss"]])
    per_second = []  # stats-service CPU % of one core per sample interval in the window
    for a, b in itertools.pairwise(measured_samples):
        per_second.append(window(a, b)["stats_cpu_pct"])

    summary = {
        "clients": args.clients,
        "connected": up,
        "jobs": args.jobs,
        "clients_per_job": per_job,
        "client_procs": args.procs,
        "compression": not args.no_compression,
        "prewarm": args.prewarm,
        "connect_wall_s": connect_wall,
        "handshake_ms": handshake,
        "failed_handshakes": failed,
        "streams_reported": health["streams"],
        "rate": args.rate,
        "seconds": args.seconds,
        "published": published,
        "publish_span_s": last_pub - first_pub,
        "publish_late_ms_max": max(late) if late else 0.0,
        "publish_late_count": len(late),
        "expected": expected,
        "delivered": delivered,
        "delivered_unique": unique,
        "delivered_pct": delivered / expected * 100 if expected else None,
        "delivered_per_s": delivered / receive_span if receive_span > 0 else None,
        "latency_ms": lat,
        "latency_by_publish_time": by_time,
        "drained_s": drained_s,
        "closed_by_server": closed,
        "client_errors": errors,
        "still_open_at_stop": sum(r["still_open"] for r in results),
        "warmup_messages": sum(r["warmup"] for r in results),
        "other_messages": sum(r["other"] for r in results),
        "queue_backlog_at_last_publish": backlog,
        "stats_pid": stats_pid,
        "stats_cpu_pct": use["stats_cpu_pct"],
        "stats_cpu_us_per_message": (
            use["stats_cpu_pct"] / 100 * use["wall_s"] / delivered * 1e6 if delivered else None
        ),
        "stats_cpu_pct_max_interval": max(per_second) if per_second else None,
        "clients_cpu_pct": use["clients_cpu_pct"],
        "loop_run_pct": use["loop_run_pct"],
        "loop_wait_pct": use["loop_wait_pct"],
        "bench_cpu_pct": use["bench_cpu_pct"],
        "others_cpu_pct": others,
        "loadavg_before": list(load_before),
        "machine_cpu_pct": use["machine_cpu_pct"],
        "rss_idle_mb": idle["rss"] / MB,
        "rss_connected_mb": after_connect["rss"] / MB,
        "rss_peak_mb": peak_rss / MB,
        "rss_per_client_kb": (after_connect["rss"] - idle["rss"]) / max(1, up) / 1000,
        "streams_reported_at_end": health_end.get("streams"),
        "p95_ok": lat["p95"] < TARGET_P95_MS,
        "rss_ok": peak_rss / MB < TARGET_RSS_MB,
    }

    conn_table = render_table(
        ["", "clients", "connected", "wall s", "p50 ms", "p95 ms", "max ms", "failed"],
        [
            [
                f"{args.procs} client procs",
                str(args.clients),
                str(up),
                fmt(connect_wall, ".2f"),
                fmt(handshake["p50"], ".0f"),
                fmt(handshake["p95"], ".0f"),
                fmt(handshake["max"], ".0f"),
                str(sum(failed.values())),
            ]
        ],
    )
    delivery_table = render_table(
        [
            *("", "events", "expected", "delivered", "%", "msg/s"),
            *("p50 ms", "p95 ms", "p99 ms", "max ms", "target"),
        ],
        [
            [
                f"{args.rate:g} ev/s x {per_job:g} clients",
                str(published),
                str(expected),
                str(delivered),
                fmt(summary["delivered_pct"], ".2f"),
                fmt(summary["delivered_per_s"], ".0f"),
                fmt(lat["p50"], ".1f"),
                fmt(lat["p95"], ".1f"),
                fmt(lat["p99"], ".1f"),
                fmt(lat["max"], ".1f"),
                f"p95 < {TARGET_P95_MS:g} ms: {verdict(summary['p95_ok'])}",
            ]
        ],
    )
    resource_table = render_table(
        ["", "CPU %", "RSS idle MB", "RSS connected MB", "RSS peak MB", "target"],
        [
            [
                "stats-service",
                fmt(use["stats_cpu_pct"], ".1f"),
                fmt(summary["rss_idle_mb"], ".1f"),
                fmt(summary["rss_connected_mb"], ".1f"),
                fmt(summary["rss_peak_mb"], ".1f"),
                f"RSS < {TARGET_RSS_MB:g} MB: {verdict(summary['rss_ok'])}",
            ],
            ["client processes", fmt(use["clients_cpu_pct"], ".1f"), "", "", "", ""],
            ["publisher (bench main)", fmt(use["bench_cpu_pct"], ".1f"), "", "", "", ""],
            ["everything else", fmt(others, ".1f"), "", "", "", ""],
            ["machine (all CPUs)", fmt(use["machine_cpu_pct"], ".1f"), "", "", "", ""],
        ],
    )
    notes = [
        "latency p50/p95 by publish time (5 s slices): "
        + ", ".join(f"{b['p50_ms']:.0f}/{b['p95_ms']:.0f}" for b in by_time)
        + " ms",
        f"stats-service CPU per delivered message: {summary['stats_cpu_us_per_message']:.0f} µs"
        f" ({use['stats_cpu_pct']:.1f}% of a core for {delivered / use['wall_s']:.0f} msg/s)",
        f"stats-service's event-loop thread: on a CPU {use['loop_run_pct']:.0f}% of the window,"
        f" runnable but waiting for one {use['loop_wait_pct']:.0f}% (/proc/PID/schedstat)",
        f"drain: the last message arrived {max(0.0, drained_s - 1):.1f}s after the stop"
        " (clients wait for 1 s of quiet)",
    ]
    if closed or errors:
        notes.append(f"clients closed by the server: {closed or '-'}; errors: {errors or '-'}")
    if any(b["messages"] for b in backlog):
        notes.append(f"stats-service queue backlog at the last publish: {backlog}")
    if late and max(late) > 50:
        notes.append(
            f"the publisher fell behind its schedule {len(late)} times (max {max(late):.0f} ms)"
        )
    if unique != delivered:
        notes.append(f"{delivered - unique} duplicate deliveries")
    bench.print_report(
        CONDITIONS,
        [
            f"Connections, /ws/jobs/{{id}}, {per_job:g} per job on {args.jobs} jobs:\n"
            + conn_table,
            f"Delivery over {args.seconds:g} s after a {args.warmup:g} s warm-up:\n"
            + delivery_table,
            "Resources over the measured window (CPU: % of one core):\n" + resource_table,
            "Notes:\n" + "\n".join(notes),
        ],
        LEGEND,
    )
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(bench.tmp),
        settings=effective_settings(stack.env, SETTINGS),
        summary=summary,
        stats_cpu_pct_per_interval=per_second,
        samples=[
            {"t": s["t"], "rss_mb": s["rss"] / MB, "cpu_s": s["cpu_s"]} for s in sampler.samples
        ],
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("streams", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
