"""Container jobs running `true` in `busybox` through the whole stack, next to `podman run`.

`make bench` runs this (after scrape_bench.py). It starts a Podman engine of its own
(tests/engine.py: `scripts/engine.sh serve` on a socket in a temp dir, the machine's image
store, so `make engine` must have built the offline `busybox` image), creates a throwaway
PostgreSQL database and RabbitMQ vhost, starts the real processes (gunicorn auth-service and
gateway, one `jobgate-worker container` with DOCKER_HOST = that socket) exactly as the
end-to-end tests do, and then times

  * per job, one at a time, interleaved `--jobs` (50) times per `--repeat` round:
      - direct: `podman run --rm busybox true` (CONTAINERS_CONF = deploy/podman/
        containers.conf, as scripts/engine.sh sets it), started -> exited, and the same
        with `--network none` (the worker's containers have no network);
      - SDK: the same container through the Docker API with the `docker` SDK on the bench's
        engine socket, with the worker's create options (network none, caps dropped, limits):
        create, start, wait, remove -- what the worker does minus Jobgate; and the worker's
        way to see the end (attach before start, output to its end, inspect), which skips
        Podman's slow `wait`;
      - a job: `POST /api/v1/jobs {"kind": "container", "image": "busybox", "command":
        ["true"]}` with the demo key until `GET /api/v1/jobs/{id}` says `completed`;
  * throughput: all `--jobs` submitted at once, until every one is `completed`, with one
    container worker and then with two (a second `jobgate-worker container`); next to it,
    the same number of `podman run`s and SDK runs two at a time.

Per-job overhead = median job end to end - median `podman run` (and - median SDK run).
Target (issue 8): the platform adds <= 100 ms per job. A missed target still exits 0 (this
is a benchmark, not a test); errors exit 1.

Usage: .venv/bin/python bench/container_bench.py [--quick] [--jobs N] [--repeat N] ...
       (see --help). CONTAINER_* and WORKER_* settings come from the environment, like
       `make run`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from bench.harness import (  # noqa: E402
    API_KEY,
    COMMON_SETTINGS,
    PHASES,
    Api,
    Bench,
    BenchError,
    Submitted,
    add_common_options,
    add_quick,
    breakdown_table,
    cell,
    effective_settings,
    job_phases,
    log,
    machine_info,
    median,
    medians,
    parse,
    parse_ts,
    parser,
    run_main,
    table,
    timed,
    verdict,
)
from jobgate.config import Settings  # noqa: E402
from jobgate.kinds.container import parse_cpus, parse_memory  # noqa: E402
from tests.engine import podman_engine  # noqa: E402

TARGET_MS = 100.0  # the platform's cost per job on top of `podman run`
IMAGE = "busybox"
COMMAND = ["true"]
JOB_BODY = {"kind": "container", "image": IMAGE, "command": COMMAND}
CONTAINERS_CONF = REPO / "deploy" / "podman" / "containers.conf"
PODMAN_RUN = ["podman", "run", "--rm", IMAGE, *COMMAND]
# Like for like: the worker's containers have no network, so no namespace is set up.
PODMAN_RUN_NONE = ["podman", "run", "--rm", "--network", "none", IMAGE, *COMMAND]
FINISHED = ("exited", "stopped", "dead")  # the worker's end states ("stopped": before cleanup)
BENCH_LABEL = "jobgate.bench"  # on the SDK paths' containers
ENGINE_API_VERSION = "1.41"  # what the worker speaks (jobgate_worker/kinds/container.py)
WORKER_2 = "worker-container-2"
SETTINGS = (
    "docker_host",
    "container_default_memory",
    "container_default_cpus",
    "container_pids_limit",
    *COMMON_SETTINGS,
)
# The worker's log lines that mark the steps of an attempt (jobgate_worker/kinds/container.py).
SDK_STEPS = ("create_s", "start_s", "wait_s", "remove_s")
ATTACHED_STEPS = ("create_s", "attach_s", "start_s", "output_end_s", "finished_s", "remove_s")
CREATED_LINE = "created from"  # "container <id> created from busybox (memory ...)"
EXITED_LINE = "container exited with code"


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=50, help="jobs per round and per burst (50)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of the one-at-a-time comparison, and bursts per worker count (1)",
    )
    p.add_argument(
        "--steps", type=int, default=10, help="samples per engine step in the costs table (10)"
    )
    add_quick(p, "5 jobs, 1 round, 3 step samples")
    add_common_options(p, job_timeout=120.0)
    args = parse(p, argv, quick={"--jobs": 5, "--repeat": 1, "--steps": 3})
    if args.jobs < 1 or args.repeat < 1 or args.steps < 1:
        p.error("--jobs, --repeat and --steps must be >= 1")
    return args


# --- direct: the podman CLI and the Docker API ------------------------------------------------


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman_run(argv: list[str] = PODMAN_RUN) -> float:
    """`podman run --rm busybox true` (or `argv`), started -> exited. Interrupted, it is let
    finish (well under a second) rather than killed: a killed CLI leaves its container."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=podman_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _, err = proc.communicate()
    except KeyboardInterrupt:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)
        raise
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}: {err[-800:]}")
    return seconds


class Sdk:
    """The Docker API on the bench's engine, as the worker uses it: API 1.41, the worker's
    create options (network none, all capabilities dropped, no-new-privileges, the default
    memory, CPU and pids limits), labelled with the run so an interrupt's leftover goes."""

    def __init__(self, docker_host: str, settings: Settings, run_id: str) -> None:
        self.client = docker.DockerClient(
            base_url=docker_host, version=ENGINE_API_VERSION, timeout=60, max_pool_size=8
        )
        self.api = self.client.api
        self.label = f"{BENCH_LABEL}={run_id}"
        memory = parse_memory(settings.container_default_memory)
        self.options = {
            "mem_limit": memory,
            "memswap_limit": memory,
            "nano_cpus": int(parse_cpus(settings.container_default_cpus) * 1e9),
            "pids_limit": settings.container_pids_limit,
            "network_mode": "none",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "labels": {BENCH_LABEL: run_id},
        }

    def create(self) -> Any:
        return self.client.containers.create(IMAGE, command=COMMAND, **self.options)

    def run(self) -> dict[str, float]:
        """create, start, wait, remove: seconds of each and in all."""
        t0 = time.perf_counter()
        container = self.create()
        t1 = time.perf_counter()
        try:
            container.start()
            t2 = time.perf_counter()
            code = container.wait(timeout=60)["StatusCode"]
            t3 = time.perf_counter()
        finally:
            container.remove(force=True)
        t4 = time.perf_counter()
        if code != 0:
            raise BenchError(f"SDK run exited {code}")
        return {
            "seconds": t4 - t0,
            "create_s": t1 - t0,
            "start_s": t2 - t1,
            "wait_s": t3 - t2,
            "remove_s": t4 - t3,
        }

    def run_attached(self) -> dict[str, float]:
        """The worker's way to see the end: create, attach (stream, logs, demux), start,
        read the output to its end, `inspect` until the state is finished (exited, or
        Podman's "stopped" before its cleanup), remove. Seconds of each and in all."""
        api = self.api
        t0 = time.perf_counter()
        cid = self.create().id
        t1 = time.perf_counter()
        try:
            stream = api.attach(cid, stdout=True, stderr=True, stream=True, logs=True, demux=True)
            t2 = time.perf_counter()
            api.start(cid)
            t3 = time.perf_counter()
            for _chunk in stream:
                pass
            t4 = time.perf_counter()
            while (state := api.inspect_container(cid)["State"])["Status"] not in FINISHED:
                time.sleep(0.005)
            t5 = time.perf_counter()
            stream.close()
        finally:
            api.remove_container(cid, force=True)
        t6 = time.perf_counter()
        if state.get("ExitCode") != 0:
            raise BenchError(f"SDK run exited {state.get('ExitCode')}")
        return {
            "seconds": t6 - t0,
            "create_s": t1 - t0,
            "attach_s": t2 - t1,
            "start_s": t3 - t2,
            "output_end_s": t4 - t3,
            "finished_s": t5 - t4,
            "remove_s": t6 - t5,
        }

    def remove_leftovers(self) -> None:
        """Containers of this path an interrupt left behind (by their label)."""
        for found in self.api.containers(all=True, filters={"label": self.label}):
            with contextlib.suppress(docker.errors.NotFound):
                self.api.remove_container(found["Id"], force=True)

    def close(self) -> None:
        self.client.close()


def step_costs(sdk: Sdk, times: int) -> list[dict[str, Any]]:
    """The engine calls of one worker attempt, each timed on its own (median of `times`
    containers): those of the SDK path, and those the worker adds around them (`ping`,
    `images.get`, `attach` before start, `stats` one-shot, `inspect`, the `HEAD` of an
    archive path is not made without output patterns)."""
    api = sdk.api
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds * 1000)

    for _ in range(times):
        add("ping", timed(api.ping)[0])
        add("images.get(busybox)", timed(sdk.client.images.get, IMAGE)[0])
        seconds, container = timed(sdk.create)
        add("create (the worker's options)", seconds)
        cid = container.id
        try:
            seconds, stream = timed(
                api.attach, cid, stdout=True, stderr=True, stream=True, logs=True, demux=True
            )
            add("attach (stream, logs)", seconds)
            add("start", timed(api.start, cid)[0])
            t0 = time.perf_counter()
            for _chunk in stream:
                pass
            add("start -> attached output ends", time.perf_counter() - t0)
            t0 = time.perf_counter()
            while api.inspect_container(cid)["State"]["Status"] != "exited":
                time.sleep(0.005)
            add("output end -> state 'exited' (Podman's cleanup)", time.perf_counter() - t0)
            add("wait (already exited)", timed(api.wait, cid, timeout=60)[0])
            seconds, state = timed(api.inspect_container, cid)
            add("inspect", seconds)
            add("stats one-shot (exited)", timed(_stats, api, cid)[0])
            stream.close()
        finally:
            add("remove (force)", timed(api.remove_container, cid, force=True)[0])
        if state["State"].get("ExitCode") != 0:
            raise BenchError(f"step costs: container exited {state['State'].get('ExitCode')}")
    return [{"what": name, "ms": median(v)} for name, v in samples.items()]


def _stats(api: Any, cid: str) -> None:
    with contextlib.suppress(Exception):  # the worker ignores a failed sample too
        api.stats(cid, stream=False, one_shot=True)


def parallel(fn: Any, count: int, width: int) -> float:
    """Wall seconds to call `fn` `count` times, `width` at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=width) as pool:
        t0 = time.perf_counter()
        for future in [pool.submit(fn) for _ in range(count)]:
            future.result()
        return time.perf_counter() - t0


# --- jobs --------------------------------------------------------------------------------------


def job_status(body: dict[str, Any]) -> tuple[str, float, Any]:
    """(status, fraction done, error) of a `GET /api/v1/jobs/{id}` body."""
    job = body["job"]
    return job["status"], (job["progress"] or 0) / 100, job.get("error")


def attempt_steps(api: Api, job: dict[str, Any]) -> dict[str, float | None]:
    """`started_at` -> completed split with the worker's log lines (server clock): claimed ->
    the container created (claim, params, ping, image check, create, the log's own
    transaction), created -> the exit logged (details row, attach, start, the supervise loop
    seeing the exit, output drained, details row), exit logged -> `completed_at` (settle,
    outputs transaction, remove, the outcome recorded)."""
    r = api.session.get(f"{api.base}/api/v1/jobs/{job['id']}/logs", timeout=30)
    if r.status_code != 200:
        raise BenchError(f"GET logs -> {r.status_code}: {r.text[:300]}")
    created = exited = None
    for line in r.json()["logs"]:
        if created is None and CREATED_LINE in line["message"]:
            created = parse_ts(line["ts"])
        if EXITED_LINE in line["message"]:
            exited = parse_ts(line["ts"])
    started, completed = parse_ts(job["started_at"]), parse_ts(job["completed_at"])
    if created is None or exited is None:
        return {"to_created_s": None, "created_to_exited_s": None, "exited_to_done_s": None}
    return {
        "to_created_s": created - started,
        "created_to_exited_s": exited - created,
        "exited_to_done_s": completed - exited,
    }


def check_result(job: dict[str, Any]) -> dict[str, Any]:
    result = job.get("result") or {}
    if job["status"] != "completed" or result.get("exit_code") != 0:
        raise BenchError(f"job {job['id']}: {job['status']}, result {result}, {job.get('error')}")
    if job["attempt"] != 1:
        raise BenchError(f"job {job['id']} needed {job['attempt']} attempts")
    return result


def run_job(api: Api) -> dict[str, Any]:
    """One container job, submitted and waited for; its timings."""
    sent = api.submit("/api/v1/jobs", json=JOB_BODY)
    job_id = sent.body["id"]
    e2e_s, polls = api.wait(f"/api/v1/jobs/{job_id}", job_id, job_status, sent.start)
    job = api.job(job_id)
    result = check_result(job)
    return {
        "job_id": job_id,
        "e2e_s": e2e_s,
        "container_s": float(result["seconds"]),
        "post_s": sent.post_s,
        **job_phases(job, sent, e2e_s, first="submit_s"),
        **attempt_steps(api, job),
        "polls": polls,
    }


def burst(api: Api, count: int) -> dict[str, Any]:
    """`count` jobs submitted back to back, then `GET /api/v1/jobs?kind=container` until all
    of them are `completed`. Wall time: first POST sent -> a listing showed all completed;
    server span: first POST sent -> the last `completed_at`."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    sent: list[Submitted] = []
    for _ in range(count):
        sent.append(api.submit("/api/v1/jobs", json=JOB_BODY))
    submit_s = time.perf_counter() - sent[0].start
    ids = {s.body["id"] for s in sent}
    deadline = sent[0].start + api.timeout + count
    polls = 0
    while True:
        r = api.session.get(
            f"{api.base}/api/v1/jobs",
            params={
                "kind": "container",
                "created_since": since.isoformat(),
                "limit": 500,
            },
            timeout=30,
        )
        polls += 1
        if r.status_code != 200:
            raise BenchError(f"GET /api/v1/jobs -> {r.status_code}: {r.text[:300]}")
        mine = [j for j in r.json() if j["id"] in ids]
        done = [j for j in mine if j["status"] == "completed"]
        bad = [j for j in mine if j["status"] in ("failed", "cancelled")]
        if bad:
            raise BenchError(f"burst: job {bad[0]['id']} {bad[0]['status']}: {bad[0]['error']}")
        elapsed = time.perf_counter() - sent[0].start
        if len(done) == count:
            break
        if time.perf_counter() > deadline:
            raise BenchError(f"burst: {len(done)}/{count} completed after {elapsed:.0f}s")
        time.sleep(api.next_poll(len(done) / count, elapsed))
    for job in done:
        check_result(job)
    first_wall = sent[0].posted_wall
    last_done = max(parse_ts(j["completed_at"]) for j in done)
    runs = sorted(parse_ts(j["completed_at"]) - parse_ts(j["started_at"]) for j in done)
    return {
        "jobs": count,
        "submit_s": submit_s,
        "wall_s": elapsed,
        "server_span_s": last_done - first_wall,
        "jobs_per_s": count / elapsed,
        "server_jobs_per_s": count / (last_done - first_wall),
        "median_run_s": median(runs),
        "polls": polls,
    }


def check_consumes(api: Api, count: int = 4) -> None:
    """Warm-up: a few jobs at once (with two workers, both get some and open their pools)."""
    burst(api, count)


# --- reporting ---------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


# The direct paths of the one-at-a-time comparison: (key, what the table calls it, judged).
PATHS = (
    ("podman", "podman run --rm busybox true", True),
    ("podman_none", "podman run --rm --network none busybox true", False),
    ("sdk", "SDK: create, start, wait, remove", False),
    ("sdk_attached", "SDK: create, attach, start, output end, inspect, remove", False),
)


def summarize_sequential(direct: dict[str, list[float]], jobs: list[dict[str, Any]]) -> dict:
    """Medians and p90 of each direct path and of the jobs; the job's median end-to-end time
    minus each path's median (the platform's cost per job on top of that path)."""
    e2e = [j["e2e_s"] for j in jobs]
    e2e_s = median(e2e)
    rows = []
    for key, what, judged in PATHS:
        mid = median(direct[key])
        over = (e2e_s - mid) * 1000
        rows.append(
            {
                "path": key,
                "what": what,
                "median_s": mid,
                "p90_s": p90(direct[key]),
                "job_minus_ms": over,
                "target": f"<= {TARGET_MS:g} ms" if judged else "(info)",
                "verdict": verdict(over <= TARGET_MS) if judged else f"({verdict(over <= 100)})",
            }
        )
    for what, values in (
        ("Jobgate job, POST sent -> poll saw completed", e2e),
        ("Jobgate job, POST sent -> completed_at", [j["server_e2e_s"] for j in jobs]),
    ):
        rows.append(
            {
                "path": "job",
                "what": what,
                "median_s": median(values),
                "p90_s": p90(values),
                "job_minus_ms": None,
                "target": "",
                "verdict": "",
            }
        )
    steps = ("to_created_s", "created_to_exited_s", "exited_to_done_s")
    with_steps = [j for j in jobs if j["to_created_s"] is not None]
    container = [j["container_s"] for j in jobs]
    return {
        "jobs": len(jobs),
        "rows": rows,
        "job_e2e_s": e2e_s,
        "overhead_vs_podman_ms": rows[0]["job_minus_ms"],
        "target": f"<= {TARGET_MS:g} ms over `podman run --rm busybox true`",
        "verdict": rows[0]["verdict"],
        "job_container_s": median(container),
        "job_container_p90_s": p90(container),
        "jobs_container_over_150ms": sum(c > 0.15 for c in container),
        "median_breakdown_s": medians(jobs, ("post_s", "submit_s", *PHASES)),
        "median_attempt_steps_s": medians(with_steps, steps) if with_steps else {},
        "median_sdk_steps_s": medians(direct["sdk_steps"], SDK_STEPS),
        "median_sdk_attached_steps_s": medians(direct["sdk_attached_steps"], ATTACHED_STEPS),
        "direct_runs": direct,
        "job_runs": jobs,
    }


def tables(
    seq: dict[str, Any], throughput: list[dict[str, Any]], costs: list[dict[str, Any]]
) -> list[str]:
    per_job = table(
        seq["rows"],
        [
            ("path", cell("what", "")),
            ("median s", cell("median_s")),
            ("p90 s", cell("p90_s")),
            ("job - this, ms", cell("job_minus_ms", ".0f")),
            ("target", cell("target", "")),
            ("", cell("verdict", "")),
        ],
    )

    def named(prefix: str, steps: dict[str, float]) -> list[dict[str, Any]]:
        return [
            {"what": f"{prefix}{k.removesuffix('_s').replace('_', ' ')}", "s": v}
            for k, v in steps.items()
        ]

    steps = seq["median_attempt_steps_s"]
    split = table(
        [
            *named("SDK: ", seq["median_sdk_steps_s"]),
            *named("SDK attached: ", seq["median_sdk_attached_steps_s"]),
            {"what": "job: claimed -> container created", "s": steps.get("to_created_s")},
            {"what": "job: created -> exit logged", "s": steps.get("created_to_exited_s")},
            {"what": "job: exit logged -> completed_at", "s": steps.get("exited_to_done_s")},
            {"what": "job: result.seconds (started -> exit seen)", "s": seq["job_container_s"]},
            {"what": "job: result.seconds, p90", "s": seq["job_container_p90_s"]},
        ],
        [("step (medians)", cell("what", "")), ("s", cell("s"))],
    )
    breakdown = breakdown_table(
        [("container job", seq["median_breakdown_s"], seq["job_container_s"], seq["job_e2e_s"])],
        label="job",
        first=("auth+insert s", "submit_s"),
        queue="queue s",
        inner="of which container s",
    )
    tput = table(
        throughput,
        [
            ("how", cell("how", "")),
            ("jobs", cell("jobs", "d")),
            ("wall s", cell("wall_s")),
            ("per s", cell("per_s", ".2f")),
            ("server span s", cell("server_span_s")),
            ("srv per s", cell("server_per_s", ".2f")),
            ("median claimed->done s", cell("median_run_s")),
        ],
    )
    return [
        f"Per job, one at a time (medians of {seq['jobs']}, interleaved):\n{per_job}",
        f"Where a job's time goes, next to the direct paths:\n{split}",
        f"Where the job's end-to-end time goes (medians):\n{breakdown}",
        f"Throughput, all submitted at once:\n{tput}",
        "Engine calls of one attempt, on their own (median ms):\n"
        + table(costs, [("call", cell("what", "")), ("ms", cell("ms", ".1f"))]),
    ]


CONDITIONS = """\
Local engine: Podman serving the Docker API on a unix socket of the bench's own (its image
store is the machine's), runc, cgroupfs, the offline `busybox` image. Loopback only, no
registry. `podman run --rm busybox true` (the issue's baseline) gets rootful Podman's default
network (netavark sets up and tears down a namespace); the `--network none` run, the SDK
paths and the worker do not (network none; the SDK and the worker also drop all capabilities
and set the default limits). Everything (PostgreSQL, RabbitMQ, gunicorn, the worker, the
engine, this benchmark's polls) shares the machine's CPUs."""

LEGEND = """\
podman run: the CLI process, started -> exited. SDK: the `docker` SDK on the bench's engine
socket with the worker's create options: create, start, `wait`, remove (Podman's `wait`
answers late: it polls the state). SDK attached: the worker's way to see the end: create,
attach (stream, logs), start, read the output to its end, `inspect` until exited/stopped,
remove -- the cheapest API path, what no platform can avoid. Jobgate job: POST sent -> a
poll of `GET /api/v1/jobs/{id}` saw `completed` (or -> `completed_at`, no poll lag).
job - this = median job e2e - median of that path, the platform's cost per job on top of
it; the target (<= 100 ms) is judged against the issue's `podman run --rm busybox true`;
the other rows' verdicts (in parentheses) are for information. Step split: the worker's log
lines' timestamps (server clock, 1 ms): claimed -> "container ... created" -> "container
exited ..." -> `completed_at`; result.seconds = started -> the worker saw the exit.
Throughput: wall = first POST sent -> a listing saw all completed (jobs) or the last run
returned (direct); server span = first POST sent -> the last `completed_at`."""


# --- the run -----------------------------------------------------------------------------------


def start_engine(bench: Bench) -> str:
    """The bench's own Podman engine (tests/engine.py); stopped by the cleanup."""
    if not CONTAINERS_CONF.is_file():
        raise BenchError(f"{CONTAINERS_CONF} not found")
    engine = podman_engine()
    docker_host = engine.__enter__()
    workdir = Path(docker_host.removeprefix("unix://")).parent  # tests/engine.py's temp dir

    def stop() -> None:
        engine.__exit__(None, None, None)
        shutil.rmtree(workdir, ignore_errors=True)

    bench.cleanup.push("stop the engine", stop)
    return docker_host


def run(bench: Bench) -> None:
    args = bench.args
    n = args.jobs

    # (1) the engine, the image, the direct paths warm
    t0 = time.perf_counter()
    docker_host = start_engine(bench)
    log(f"engine up in {time.perf_counter() - t0:.1f}s ({docker_host})")
    settings = Settings.from_env({**os.environ, "DOCKER_HOST": docker_host})
    sdk = Sdk(docker_host, settings, bench.run_id)
    bench.cleanup.push("close the SDK client", sdk.close)
    bench.cleanup.push("remove the SDK's containers", sdk.remove_leftovers)
    try:
        sdk.client.images.get(IMAGE)
    except docker.errors.NotFound:
        raise BenchError(f"no {IMAGE} image on the engine: run `make engine`") from None
    podman_run()
    podman_run(PODMAN_RUN_NONE)
    sdk.run()
    sdk.run_attached()

    # (2) throwaway database and vhost, auth, gateway, one container worker
    stack = bench.start_stack("container", {"DOCKER_HOST": docker_host})
    api = Api(stack.url, args, api_key=API_KEY)
    run_job(api)  # warm-up: the worker consumes, pools and engine clients are open
    log(f"stack up and warm in {time.perf_counter() - bench.stack_t0:.1f}s ({stack.url})")

    # (3) one at a time, interleaved
    direct: dict[str, list[Any]] = {k: [] for k in ("podman", "podman_none", "sdk", "sdk_attached")}
    direct["sdk_steps"], direct["sdk_attached_steps"] = [], []
    jobs: list[dict[str, Any]] = []
    for rnd in range(args.repeat):
        for i in range(n):
            direct["podman"].append(podman_run())
            direct["podman_none"].append(podman_run(PODMAN_RUN_NONE))
            direct["sdk_steps"].append(sdk.run())
            direct["sdk_attached_steps"].append(sdk.run_attached())
            jobs.append(run_job(api))
            if (i + 1) % 10 == 0 or i + 1 == n:
                last = {
                    k: median(x if isinstance(x, float) else x["seconds"] for x in v[-10:])
                    for k, v in direct.items()
                    if v
                }
                log(
                    f"round {rnd + 1}, {i + 1}/{n} (medians of the last 10): podman run"
                    f" {last['podman']:.3f}s (--network none {last['podman_none']:.3f}s),"
                    f" SDK {last['sdk_steps']:.3f}s, SDK attached"
                    f" {last['sdk_attached_steps']:.3f}s,"
                    f" job e2e {median(j['e2e_s'] for j in jobs[-10:]):.3f}s"
                )
    direct["sdk"] = [s["seconds"] for s in direct["sdk_steps"]]
    direct["sdk_attached"] = [s["seconds"] for s in direct["sdk_attached_steps"]]
    seq = summarize_sequential(direct, jobs)

    # (4) throughput: direct two at a time, jobs with one then two workers
    throughput: list[dict[str, Any]] = []

    def direct_row(how: str, fn: Any, width: int) -> None:
        walls = [parallel(fn, n, width) for _ in range(args.repeat)]
        wall = median(walls)
        throughput.append(
            {
                "how": how,
                "jobs": n,
                "wall_s": wall,
                "per_s": n / wall,
                "server_span_s": None,
                "server_per_s": None,
                "median_run_s": None,
                "walls_s": walls,
            }
        )
        log(f"{how}: {n} in {wall:.2f}s ({n / wall:.2f}/s)")

    throughput.append(
        {
            "how": "podman run, 1 at a time",
            "jobs": n,
            "wall_s": median(direct["podman"]) * n,
            "per_s": 1 / median(direct["podman"]),
            "server_span_s": None,
            "server_per_s": None,
            "median_run_s": None,
            "note": "from the one-at-a-time medians",
        }
    )
    direct_row("podman run, 2 at a time", podman_run, 2)
    direct_row("SDK, 2 at a time", sdk.run, 2)

    def job_rows(workers: int) -> None:
        bursts = []
        for _ in range(args.repeat):
            bursts.append(burst(api, n))
            log(
                f"{workers} worker(s): {n} jobs in {bursts[-1]['wall_s']:.2f}s"
                f" ({bursts[-1]['jobs_per_s']:.2f}/s, server span"
                f" {bursts[-1]['server_span_s']:.2f}s)"
            )
        throughput.append(
            {
                "how": f"jobs, {workers} worker{'s' if workers > 1 else ''}",
                "jobs": n,
                "wall_s": median(b["wall_s"] for b in bursts),
                "per_s": n / median(b["wall_s"] for b in bursts),
                "server_span_s": median(b["server_span_s"] for b in bursts),
                "server_per_s": n / median(b["server_span_s"] for b in bursts),
                "median_run_s": median(b["median_run_s"] for b in bursts),
                "bursts": bursts,
            }
        )

    job_rows(1)
    stack.start_worker("container", name=WORKER_2)
    check_consumes(api)
    job_rows(2)
    if "started" not in stack.log(WORKER_2):
        log(f"note: {WORKER_2}'s log shows no attempt: the second worker may not have consumed")

    costs = step_costs(sdk, args.steps)

    # (5) report
    bench.print_report(CONDITIONS, tables(seq, throughput, costs), LEGEND)
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(
            bench.tmp,
            {
                "podman_version": ["podman", "--version"],
                "runc_version": ["runc", "--version"],
            },
        ),
        settings=effective_settings(stack.env, SETTINGS),
        direct_commands=[PODMAN_RUN, PODMAN_RUN_NONE],
        containers_conf=str(CONTAINERS_CONF.relative_to(REPO)),
        job_body=JOB_BODY,
        sdk_create_options=sdk.options,
        targets={"overhead_ms_per_job": TARGET_MS},
        sequential=seq,
        throughput=throughput,
        engine_call_costs_ms=costs,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("container", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
