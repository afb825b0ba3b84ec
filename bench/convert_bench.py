"""Conversion overhead and upload throughput through the whole stack.

Two measurements in one run, against the real processes (gunicorn auth-service and gateway,
one `jobgate-worker convert`) started exactly as the end-to-end tests start them, on a
throwaway PostgreSQL database and RabbitMQ vhost:

  * conversion: a `--clip-seconds` (60) H.264/AAC clip is converted to MP3, alternating
    `--repeat` (3) times, (a) directly, by the same ffmpeg binary with the worker's exact
    arguments, and (b) through the stack: `POST /upload` until `GET /status/{id}` says
    `completed` (end to end), plus the worker's own `result.seconds` (its ffmpeg run).
    Issue target: stack time / direct time <= 1.05, judged on the worker's in-stack
    conversion time; the end-to-end ratio is shown next to it.
  * upload: a ~`--upload-mb` (500) MB media file is sent with `curl -F file=@...` (streamed
    from disk) to `POST /api/v1/files` while the RSS of every gateway gunicorn process is
    sampled. Issue targets: >= 200 MB/s, gateway peak RSS flat and under 150 MB.

MB = 10^6 bytes throughout. Medians are reported; a missed target still exits 0 (this is
a benchmark, not a test); errors exit 1.

Usage: .venv/bin/python bench/convert_bench.py [--quick] [--repeat N] [--clip-seconds S]
       [--upload-mb N] [--only convert|upload] ...   (see --help)
Settings such as CONVERT_DEFAULT_BITRATE are taken from the environment, like `make run`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from bench.cache_bench import (  # noqa: E402
    AMQP_HOST_URL,
    BENCH_RATE_LIMITS,
    MB,
    MIB,
    PG_HOST_URL,
    RESULTS_DIR,
    BenchError,
    Cleanup,
    add_common_options,
    admin_sql,
    command_output,
    human_bytes,
    log,
    machine_info,
    median,
    parse_ts,
    rabbitmqctl,
    render_table,
    residency,
    run_main,
)
from jobgate.config import Settings  # noqa: E402
from jobgate.media import ffmpeg_binary, probe  # noqa: E402
from jobgate.migrate import apply_migrations  # noqa: E402
from jobgate_worker.kinds.convert import ffmpeg_command  # noqa: E402
from tests.stack import Stack  # noqa: E402

TARGET_RATIO = 1.05  # stack conversion time / direct ffmpeg time
TARGET_UPLOAD_MB_S = 200.0  # the seed documents ~10 MB/s
TARGET_PEAK_RSS_MB = 150.0  # per gateway process, during the upload
# "Flat": the bench's reading of the issue. A gateway that buffered the upload would grow by
# hundreds of MB; a streaming one by its buffers (well under this), whatever the file's size.
TARGET_RSS_GROWTH_MB = 20.0
ADMIN = "admin"
PCM_BYTES_PER_S = 8 * 192_000 * 4  # 7.1 channels x 192 kHz x 32-bit PCM: 6.144 MB/s


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clip-seconds", type=float, default=60.0, help="clip duration, s (60)")
    p.add_argument("--clip-size", default="640x360", help="clip frame size (640x360)")
    p.add_argument("--repeat", type=int, default=3, help="timed conversions per side (3)")
    p.add_argument("--upload-mb", type=int, default=500, help="upload file size, 10^6 B (500)")
    p.add_argument("--upload-repeat", type=int, default=1, help="timed uploads (1)")
    p.add_argument("--sample-ms", type=float, default=50.0, help="RSS sampling interval, ms (50)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 10 s clip, 50 MB upload, 1 repeat (flags given still win)",
    )
    add_common_options(p, job_timeout=600.0)
    p.add_argument("--only", choices=("convert", "upload"), help="run one measurement only")
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        for flag, value in (("--clip-seconds", 10.0), ("--upload-mb", 50), ("--repeat", 1)):
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
    if args.repeat < 1 or args.upload_repeat < 1:
        p.error("--repeat and --upload-repeat must be >= 1")
    if args.clip_seconds <= 0 or args.upload_mb < 1 or args.sample_ms <= 0:
        p.error("--clip-seconds, --upload-mb and --sample-ms must be > 0")
    return args


# --- media -------------------------------------------------------------------------------------


def ffmpeg(*args: str, timeout: float = 600) -> None:
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True, timeout=timeout)


def make_clip(path: Path, seconds: float, size: str) -> Path:
    """A real clip: 25 fps testsrc video and a 440 Hz stereo sine, H.264 ultrafast + AAC."""
    ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate=25"),
        *("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=44100"),
        *("-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
        *("-c:a", "aac", "-shortest", str(path)),
    )
    return path


def make_big(path: Path, min_bytes: int) -> Path:
    """A valid MOV of at least `min_bytes` that costs ffmpeg almost nothing to write: a
    16x16 still at 1 fps and 7.1-channel 192 kHz 32-bit PCM white noise (6.144 MB/s of media,
    no audio encoding). Sized by duration; the container adds a few KB."""
    seconds = math.ceil(min_bytes / PCM_BYTES_PER_S)
    ffmpeg(
        *("-f", "lavfi", "-i", f"color=size=16x16:rate=1:duration={seconds}"),
        *("-f", "lavfi", "-i", f"anoisesrc=sample_rate=192000:duration={seconds}"),
        *("-ac", "8", "-c:v", "libx264", "-c:a", "pcm_s32le", str(path)),
    )
    if path.stat().st_size < min_bytes:
        raise BenchError(f"{path.name} came out at {path.stat().st_size} B < {min_bytes} B")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def convert_command(source: Path, target: Path, bitrate: str) -> list[str]:
    """Exactly the command the convert worker runs."""
    return ffmpeg_command(source, target, bitrate)


def time_direct(source: Path, out_dir: Path, bitrate: str) -> tuple[float, int]:
    """One direct conversion: ffmpeg started -> exited, its pipes drained as the worker's
    reader threads drain them. Returns (seconds, output bytes)."""
    target = out_dir / "output.mp3"
    target.unlink(missing_ok=True)
    cmd = convert_command(source, target, bitrate)
    start = time.perf_counter()
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise BenchError(f"direct ffmpeg exited {out.returncode}: {out.stderr[-500:]!r}")
    size = target.stat().st_size
    target.unlink()
    return seconds, size


# --- the stack's API ---------------------------------------------------------------------------


class Api:
    def __init__(self, base: str, password: str, args: argparse.Namespace) -> None:
        self.base = base
        self.password = password
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only: never through a proxy from the env
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
            json={"username": ADMIN, "password": self.password},
            timeout=30,
        )
        if r.status_code != 200:
            raise BenchError(f"login -> {r.status_code}: {r.text[:500]}")
        self.token, self.token_at = r.json()["access_token"], time.monotonic()
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        return self.token

    def next_poll(self, progress_pct: float, elapsed: float) -> float:
        """Seconds until the next status poll (cache_bench's rule).

        Polls cost CPU in the gateway and PostgreSQL, next to the worker's ffmpeg on the
        same (2-core) machine, yet the end-to-end time is only as exact as the poll that sees
        `completed`: with progress reported, wait a quarter of the predicted remaining time;
        without (the default CONVERT_PROGRESS_INTERVAL_MS is 1 s), 1/20 of the time so far.
        """
        done = progress_pct / 100
        if done >= 1:
            wait = self.poll_min
        elif done > 0:
            wait = elapsed * (1 - done) / done / 4
        else:
            wait = elapsed / 20
        return min(self.poll_max, max(self.poll_min, wait))

    def convert(self, name: str, data: bytes, expect_duration: float, floor_s: float) -> dict:
        """POST /upload the clip, poll /status until `completed`, return the timings.

        No poll is sent until `floor_s` (0.8 x this run's direct conversion time) after the
        upload's response: the worker cannot finish sooner, so polls before then only steal
        CPU from it."""
        self.login()
        posted_wall = time.time()
        start = time.perf_counter()
        r = self.session.post(
            f"{self.base}/upload", files={"file": (name, data, "video/mp4")}, timeout=120
        )
        post_s = time.perf_counter() - start
        if r.status_code != 201:
            raise BenchError(f"POST /upload -> {r.status_code}: {r.text[:500]}")
        job_id = r.json()["job_id"]
        time.sleep(floor_s)
        polls = 0
        deadline = start + self.timeout
        while True:
            g = self.session.get(f"{self.base}/status/{job_id}", timeout=30)
            polls += 1
            if g.status_code != 200:
                raise BenchError(f"GET /status/{job_id} -> {g.status_code}: {g.text[:500]}")
            body = g.json()
            if body["status"] == "completed":
                e2e_s = time.perf_counter() - start
                break
            if body["status"] in ("failed", "cancelled"):
                raise BenchError(f"job {job_id} {body['status']}: {body.get('error')}")
            if time.perf_counter() > deadline:
                raise BenchError(f"job {job_id} still {body['status']} after {self.timeout}s")
            time.sleep(self.next_poll(body["progress"] or 0, time.perf_counter() - start))
        job = self.session.get(f"{self.base}/api/v1/jobs/{job_id}", timeout=30).json()
        result = job.get("result") or {}
        if abs((result.get("duration_s") or 0) - expect_duration) > 0.5:
            raise BenchError(
                f"job {job_id}: MP3 of {result.get('duration_s')}s, not ~{expect_duration}s"
            )
        created_at = parse_ts(job["created_at"])
        started_at = parse_ts(job["started_at"])
        completed_at = parse_ts(job["completed_at"])
        return {
            "job_id": job_id,
            "e2e_s": e2e_s,
            "worker_s": float(result["seconds"]),  # the worker's ffmpeg run (1 ms resolution)
            "post_s": post_s,  # the upload request's round trip, as the client saw it
            # These add up to e2e_s (server timestamps: 1 ms resolution, same host clock).
            "upload_s": created_at - posted_wall,  # body, storage, probe, file row -> job row
            "queue_s": started_at - created_at,  # commit, publish, delivery, claim
            "run_s": completed_at - started_at,  # claimed -> completed
            "observe_s": posted_wall + e2e_s - completed_at,  # completed -> our poll saw it
            "server_e2e_s": completed_at - posted_wall,
            "polls": polls,
            "attempt": job["attempt"],
            "output_bytes": result.get("size"),
        }


# --- gateway processes -------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            kids += [int(k) for k in text.split()]
    except OSError:
        pass
    return kids


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS over the process's life) in bytes; {} once it is gone."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        return {}
    return out


def cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Every `interval` s: the RSS of each pid and the size of the upload being written to
    the storage's tmp directory (`upload-*`, None when there is none)."""

    def __init__(self, pids: list[int], upload_tmp: Path, interval: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pids, self.upload_tmp, self.interval = pids, upload_tmp, interval
        self.samples: list[tuple[float, dict[int, int], int | None]] = []
        self.halt = threading.Event()

    def sample(self) -> None:
        now = time.perf_counter()
        rss = {pid: proc_status(pid).get("VmRSS", 0) for pid in self.pids}
        pending = None
        try:
            for entry in os.scandir(self.upload_tmp):
                if entry.name.startswith("upload-"):
                    pending = max(pending or 0, entry.stat().st_size)
        except OSError:
            pass
        self.samples.append((now, rss, pending))

    def run(self) -> None:
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(self.interval)

    def between(self, t0: float, t1: float) -> list[tuple[float, dict[int, int], int | None]]:
        return [s for s in self.samples if t0 <= s[0] <= t1]


def curl_upload(url: str, token: str, path: Path, name: str, body_out: Path) -> dict[str, Any]:
    """curl streams the file from disk with a Content-Length (no chunking). `Expect:` is
    cleared so no 100-continue round trip is measured. Returns curl's `%{json}` timings."""
    cmd = [
        "curl",
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--output",
        str(body_out),
        "--write-out",
        "%{json}",
        "--header",
        f"Authorization: Bearer {token}",
        "--header",
        "Expect:",
        "--form",
        f"file=@{path};filename={name};type=video/quicktime",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise BenchError(f"curl exited {out.returncode}: {out.stderr.strip()[:500]}")
    return json.loads(out.stdout)


def upload_once(
    api: Api, stack: Stack, src: Path, src_sha: str, pids: dict[int, str], interval: float
) -> dict[str, Any]:
    token = api.login()
    upload_tmp = Path(stack.env["STORAGE_DIR"]) / "tmp"
    body_out = stack.workdir / "upload-response.json"
    size = src.stat().st_size
    os.sync()  # no writeback of earlier work competing with this upload
    sampler = Sampler(list(pids), upload_tmp, interval)
    cpu0 = {pid: cpu_seconds(pid) for pid in pids}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.start()
    try:
        time.sleep(max(0.5, 10 * interval))  # baseline
        t0 = time.perf_counter()
        timings = curl_upload(f"{stack.url}/api/v1/files", token, src, "upload.mov", body_out)
        t1 = time.perf_counter()
        time.sleep(2 * interval)
    finally:
        sampler.halt.set()
        sampler.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = {pid: cpu_seconds(pid) for pid in pids}
    status = {pid: proc_status(pid) for pid in pids}
    if timings.get("http_code") != 201:
        raise BenchError(
            f"POST /api/v1/files -> {timings.get('http_code')}: {body_out.read_text()[:500]}"
        )
    body = json.loads(body_out.read_text())
    body_out.unlink()
    if body["size"] != size or body["sha256"] != src_sha:
        raise BenchError(
            f"stored {body['size']} B sha256 {body['sha256']}, sent {size} B sha256 {src_sha}"
        )
    base = [s for s in sampler.samples if s[0] < t0]
    during = sampler.between(t0, t1)
    if not base or not during:
        raise BenchError("the RSS sampler took no samples")
    procs = []
    for pid, role in pids.items():
        baseline = median([s[1][pid] for s in base])
        peak = max(s[1][pid] for s in during)
        procs.append(
            {
                "pid": pid,
                "role": role,
                "baseline_rss_bytes": baseline,
                "peak_rss_bytes": peak,
                "growth_bytes": peak - baseline,
                "hwm_after_bytes": status[pid].get("VmHWM"),
                "cpu_s": None if cpu0[pid] is None or cpu1[pid] is None else cpu1[pid] - cpu0[pid],
            }
        )
    # When the part's bytes were all in the storage temp file, and when that file was
    # renamed into objects/ (after the probe and the fsync): +- one sampling interval.
    landed = next((s[0] for s in during if (s[2] or 0) >= size), None)
    committed = None
    if landed is not None:
        committed = next((s[0] for s in during if s[0] > landed and s[2] is None), t1)
    request_s = float(timings["time_total"])
    return {
        "bytes": size,
        "wall_s": t1 - t0,
        "request_s": request_s,  # curl's time_total
        "mb_s": size / request_s / MB,
        "connect_s": float(timings.get("time_connect", 0)),
        "curl_size_upload": timings.get("size_upload"),
        "body_landed_s": None if landed is None else landed - t0,
        "body_mb_s": None if landed is None else size / (landed - t0) / MB,
        "after_body_s": None if landed is None else t0 + request_s - landed,
        "landed_to_committed_s": None if landed is None else committed - landed,
        "curl_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "processes": procs,
        "max_peak_rss_bytes": max(p["peak_rss_bytes"] for p in procs),
        "max_growth_bytes": max(p["growth_bytes"] for p in procs),
        "samples_during": len(during),
        "file_id": body["id"],
        "media": body["media"],
    }


# --- reporting ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def summarize_convert(clip: dict[str, Any], runs: list[dict], direct: list[float]) -> dict:
    direct_s = median(direct)
    e2e = median([r["e2e_s"] for r in runs])
    worker = median([r["worker_s"] for r in runs])
    keys = ("post_s", "upload_s", "queue_s", "run_s", "observe_s", "server_e2e_s")
    return {
        "clip": clip,
        "direct_s": direct_s,
        "worker_s": worker,
        "e2e_s": e2e,
        "ratio_worker": worker / direct_s,
        "ratio_e2e": e2e / direct_s,
        "ratio_run": median([r["run_s"] for r in runs]) / direct_s,
        "target": f"<= {TARGET_RATIO} x direct",
        "verdict_worker": verdict(worker / direct_s <= TARGET_RATIO),
        "verdict_e2e": verdict(e2e / direct_s <= TARGET_RATIO),
        "median_breakdown_s": {k: median([r[k] for r in runs]) for k in keys},
        "runs": runs,
        "direct_runs_s": direct,
    }


def summarize_upload(runs: list[dict[str, Any]], probe_s: list[float], cache: float | None) -> dict:
    mb_s = median([r["mb_s"] for r in runs])
    peak = max(r["max_peak_rss_bytes"] for r in runs)
    growth = max(r["max_growth_bytes"] for r in runs)
    return {
        "bytes": runs[0]["bytes"],
        "mb_s": mb_s,
        "request_s": median([r["request_s"] for r in runs]),
        "max_peak_rss_bytes": peak,
        "max_growth_bytes": growth,
        "target_mb_s": TARGET_UPLOAD_MB_S,
        "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
        "target_growth_mb": TARGET_RSS_GROWTH_MB,
        "verdict_mb_s": verdict(mb_s >= TARGET_UPLOAD_MB_S),
        "verdict_peak_rss": verdict(peak / MB < TARGET_PEAK_RSS_MB),
        "verdict_flat": verdict(growth / MB < TARGET_RSS_GROWTH_MB),
        "direct_probe_s": median(probe_s),
        "direct_probe_runs_s": probe_s,
        "source_page_cache_residency": cache,
        "runs": runs,
    }


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def convert_tables(c: dict[str, Any]) -> str:
    clip = c["clip"]
    label = f"{clip['seconds']:g} s {clip['size']}"
    main = render_table(
        [
            "clip",
            "bytes",
            "direct s",
            "worker s",
            "claimed->done s",
            "e2e s",
            "ratio worker",
            "ratio e2e",
            "target",
            "worker",
            "e2e",
        ],
        [
            [
                label,
                human_bytes(clip["bytes"]),
                f"{c['direct_s']:.3f}",
                f"{c['worker_s']:.3f}",
                f"{c['median_breakdown_s']['run_s']:.3f}",
                f"{c['e2e_s']:.3f}",
                f"{c['ratio_worker']:.3f}",
                f"{c['ratio_e2e']:.3f}",
                c["target"],
                c["verdict_worker"],
                c["verdict_e2e"],
            ]
        ],
    )
    b = c["median_breakdown_s"]
    breakdown = render_table(
        [
            "clip",
            "POST rtt s",
            "upload+probe s",
            "queue s",
            "claimed->done s",
            "of which ffmpeg s",
            "poll lag s",
            "e2e s",
        ],
        [
            [
                label,
                f"{b['post_s']:.3f}",
                f"{b['upload_s']:.3f}",
                f"{b['queue_s']:.3f}",
                f"{b['run_s']:.3f}",
                f"{c['worker_s']:.3f}",
                f"{b['observe_s']:.3f}",
                f"{c['e2e_s']:.3f}",
            ]
        ],
    )
    return f"{main}\n\nWhere the end-to-end time goes (medians):\n{breakdown}"


def upload_tables(u: dict[str, Any]) -> str:
    rows = [
        [
            f"#{i + 1}",
            human_bytes(r["bytes"]),
            f"{r['request_s']:.3f}",
            f"{r['mb_s']:,.0f}",
            fmt(r["body_landed_s"]),
            fmt(r["body_mb_s"], ",.0f"),
            fmt(r["after_body_s"]),
            f"{r['curl_cpu_s']:.2f}",
            f"{r['max_peak_rss_bytes'] / MB:.1f}",
            f"{r['max_growth_bytes'] / MB:+.1f}",
        ]
        for i, r in enumerate(u["runs"])
    ]
    main = render_table(
        [
            "upload",
            "bytes",
            "request s",
            "MB/s",
            "body in s",
            "body MB/s",
            "after body s",
            "curl CPU s",
            "peak RSS MB",
            "growth MB",
        ],
        rows,
    )
    procs = render_table(
        ["upload", "pid", "process", "baseline MB", "peak MB", "growth MB", "VmHWM MB", "CPU s"],
        [
            [
                f"#{i + 1}",
                str(p["pid"]),
                p["role"],
                f"{p['baseline_rss_bytes'] / MB:.1f}",
                f"{p['peak_rss_bytes'] / MB:.1f}",
                f"{p['growth_bytes'] / MB:+.1f}",
                fmt(p["hwm_after_bytes"] and p["hwm_after_bytes"] / MB, ".1f"),
                fmt(p["cpu_s"], ".2f"),
            ]
            for i, r in enumerate(u["runs"])
            for p in r["processes"]
        ],
    )
    verdicts = render_table(
        ["measure", "value", "target", "verdict"],
        [
            [
                "upload MB/s (median)",
                f"{u['mb_s']:,.1f}",
                f">= {TARGET_UPLOAD_MB_S:g}",
                u["verdict_mb_s"],
            ],
            [
                "gateway peak RSS MB (max)",
                f"{u['max_peak_rss_bytes'] / MB:.1f}",
                f"< {TARGET_PEAK_RSS_MB:g}",
                u["verdict_peak_rss"],
            ],
            [
                "gateway RSS growth MB (max)",
                f"{u['max_growth_bytes'] / MB:+.1f}",
                f"< {TARGET_RSS_GROWTH_MB:g} (flat)",
                u["verdict_flat"],
            ],
        ],
    )
    probe_line = (
        f"ffmpeg probe of the same file, run directly: {u['direct_probe_s'] * 1000:.0f} ms"
        f" (median of {len(u['direct_probe_runs_s'])})"
    )
    return (
        f"{main}\n\nGateway processes (RSS sampled every --sample-ms):\n{procs}\n\n"
        f"{verdicts}\n\n{probe_line}"
    )


CONDITIONS = """\
Warm page cache: the clip and the upload file were just written (then synced) and read
once before timing, so ffmpeg, curl and the worker read them from memory; caches are not
dropped (that needs root). The gateway writes the upload to STORAGE_DIR on the same disk
and fsyncs it before answering, so the upload's request time includes that write-back."""

LEGEND = """\
Conversion: direct s = the same ffmpeg binary and arguments as the worker, started ->
exited; worker s = the worker's `result.seconds` (ffmpeg started -> exited as the worker
sees it, with its progress/cancel loop); claimed->done = `started_at` -> `completed_at`
(loading the input row, ffmpeg, probing and storing the MP3, the output row, completion);
e2e = POST /upload sent -> a /status poll saw `completed`. ratio = stack s / direct s; the
target (<= 1.05) is judged on the worker's time (`worker`) and shown for e2e (`e2e`).
Breakdown: upload+probe = POST sent -> the job row (body, storage, ffmpeg probe, file row);
queue = `created_at` -> `started_at` (commit, publish, delivery, claim); poll lag = completed
-> a poll saw it. Server timestamps have 1 ms resolution. Medians of --repeat runs.
Upload: MB = 10^6 bytes. MB/s = file bytes / curl's time_total (the whole request: body,
probe, fsync, rename, file row, response). body in = request start -> the temp file in
storage held every byte; after body = from then to the response (probe, fsync, commit);
both +- one sampling interval. peak / growth = highest RSS sampled during the request and
that minus the median before it; VmHWM = the kernel's peak RSS for the process's life."""


def effective_settings(env: dict[str, str]) -> dict[str, Any]:
    s = Settings.from_env(env)
    keep = (
        "convert_default_bitrate",
        "convert_progress_interval_ms",
        "max_file_size",
        "storage_dir",
        "worker_concurrency",
        "worker_heartbeat_seconds",
        "job_lease_seconds",
        "db_pool_max",
        "rate_limit_job_create",
        "rate_limit_status",
    )
    return {k: getattr(s, k) for k in keep}


# --- the run -----------------------------------------------------------------------------------


def run_convert(
    api: Api, clip: Path, clip_info: dict[str, Any], tmp: Path, bitrate: str, repeat: int
) -> dict[str, Any]:
    out_dir = tmp / "direct"
    out_dir.mkdir()
    data = clip.read_bytes()
    duration = clip_info["duration_s"]
    # Untimed: the binary, the clip and the worker's code paths all warm.
    warm_s, direct_size = time_direct(clip, out_dir, bitrate)
    api.convert(clip.name, data, duration, 0.8 * warm_s)
    direct, runs = [], []
    for i in range(repeat):
        seconds, size = time_direct(clip, out_dir, bitrate)
        direct.append(seconds)
        runs.append(api.convert(clip.name, data, duration, 0.8 * seconds))
        r = runs[-1]
        log(
            f"convert #{i + 1}: direct {seconds:.3f}s, worker {r['worker_s']:.3f}s,"
            f" claimed->done {r['run_s']:.3f}s, e2e {r['e2e_s']:.3f}s ({r['polls']} polls)"
        )
        if r["output_bytes"] != size:
            log(f"note: the worker's MP3 has {r['output_bytes']} B, the direct one {size} B")
    summary = summarize_convert(clip_info, runs, direct)
    summary["direct_output_bytes"] = direct_size
    return summary


def run_upload(api: Api, stack: Stack, big: Path, args: argparse.Namespace) -> dict[str, Any]:
    log(f"hashing {big.name} ({human_bytes(big.stat().st_size)})")
    src_sha = sha256_of(big)  # also reads it once: the page cache holds it for curl
    cache = residency([big])
    if cache is not None:
        log(f"upload file: {cache:.0%} in the page cache (fincore)")
    probe_s = []
    for _ in range(3):
        t0 = time.perf_counter()
        probe(big)
        probe_s.append(time.perf_counter() - t0)
    master = stack.procs["gateway"].pid
    pids = {master: "gunicorn master"} | {pid: "gunicorn worker" for pid in children(master)}
    if len(pids) < 2:
        raise BenchError(f"found no gunicorn workers under the gateway's master {master}")
    runs = []
    for i in range(args.upload_repeat):
        runs.append(upload_once(api, stack, big, src_sha, pids, args.sample_ms / 1000))
        r = runs[-1]
        log(
            f"upload #{i + 1}: {r['request_s']:.3f}s, {r['mb_s']:,.1f} MB/s, gateway peak"
            f" {r['max_peak_rss_bytes'] / MB:.1f} MB ({r['max_growth_bytes'] / MB:+.1f} MB)"
        )
    return summarize_upload(runs, probe_s, cache)


def run(args: argparse.Namespace, cleanup: Cleanup, state: dict[str, Any]) -> None:
    run_id = uuid.uuid4().hex[:10]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="jobgate-convert-bench-", dir=args.tmp_parent))
    cleanup.push(f"remove {tmp}", lambda: shutil.rmtree(tmp))
    log(f"working in {tmp}")

    # (1) the media
    t0 = time.perf_counter()
    clip = big = None
    clip_info: dict[str, Any] = {}
    if args.only in (None, "convert"):
        clip = make_clip(tmp / "clip.mp4", args.clip_seconds, args.clip_size)
        info = probe(clip)
        clip_info = {
            "seconds": args.clip_seconds,
            "size": args.clip_size,
            "bytes": clip.stat().st_size,
            "duration_s": info.duration_s,
            "video_codec": info.video_codec,
            "audio_codec": info.audio_codec,
        }
        log(f"clip: {args.clip_seconds:g} s {args.clip_size}, {human_bytes(clip_info['bytes'])}")
    if args.only in (None, "upload"):
        big = make_big(tmp / "upload.mov", args.upload_mb * MB)
        log(f"upload file: {big.stat().st_size / MB:,.1f} MB ({human_bytes(big.stat().st_size)})")
    os.sync()
    gen_s = time.perf_counter() - t0
    log(f"made and synced the media in {gen_s:.1f}s")

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

    # (3) the stack: auth, gateway, one convert worker
    (tmp / "filespace").mkdir()
    password = secrets.token_urlsafe(18)
    limit_mib = max(1024, math.ceil((big.stat().st_size if big else 0) / MIB) + 1)
    overrides = {"MAX_FILE_SIZE": str(limit_mib), **BENCH_RATE_LIMITS}
    stack = Stack(
        tmp,
        {
            "DATABASE_URL": database_url,
            "AMQP_URL": f"{AMQP_HOST_URL}/{vhost}",
            "CACHE_ROOT": str(tmp / "filespace"),
            "STORAGE_DIR": str(tmp / "storage"),
            "BOOTSTRAP_ADMIN_PASSWORD": password,
            **overrides,
        },
    )
    state["stack"] = stack
    cleanup.push("stop the stack", stack.stop)
    if args.keep_logs:
        logs_to = RESULTS_DIR / f"convert-{stamp}-logs"
        cleanup.push(
            "keep logs", lambda: shutil.copytree(stack.logdir, logs_to, dirs_exist_ok=True)
        )
    t0 = time.perf_counter()
    stack.start_auth()
    stack.start_gateway()
    stack.start_worker("convert")
    settings = effective_settings(stack.env)
    api = Api(stack.url, password, args)
    api.login()
    log(f"stack up in {time.perf_counter() - t0:.1f}s ({stack.url})")
    log("settings: " + ", ".join(f"{k}={v}" for k, v in list(settings.items())[:4]))

    # (4) measure
    convert = upload = None
    if clip is not None:
        convert = run_convert(
            api, clip, clip_info, tmp, settings["convert_default_bitrate"], args.repeat
        )
    if big is not None:
        upload = run_upload(api, stack, big, args)

    # (5) report
    print()
    print(CONDITIONS)
    if convert:
        print()
        print(
            f"Conversion to MP3 at {settings['convert_default_bitrate']}, medians of {args.repeat}:"
        )
        print(convert_tables(convert))
    if upload:
        print()
        print(f"Upload to POST /api/v1/files with curl ({args.upload_repeat} run(s)):")
        print(upload_tables(upload))
    print()
    print(LEGEND)
    machine = machine_info(tmp)
    machine.pop("cat_version", None)
    machine["ffmpeg"] = ffmpeg_binary()
    machine["ffmpeg_version"] = (command_output([ffmpeg_binary(), "-version"]) or "").split("\n")[0]
    machine["curl_version"] = (command_output(["curl", "--version"]) or "").split("\n")[0]
    report = {
        "benchmark": "convert",
        "timestamp_utc": stamp,
        "conditions": CONDITIONS.replace("\n", " "),
        "machine": machine,
        "args": vars(args),
        "settings": settings,
        "bench_env_overrides": overrides,
        "media_generation_s": gen_s,
        "targets": {
            "convert_ratio_max": TARGET_RATIO,
            "upload_mb_s_min": TARGET_UPLOAD_MB_S,
            "gateway_peak_rss_mb_max": TARGET_PEAK_RSS_MB,
            "gateway_rss_growth_mb_max": TARGET_RSS_GROWTH_MB,
        },
        "units": {"MB": "10^6 bytes"},
        "convert": convert,
        "upload": upload,
    }
    if not args.no_json:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"convert-{stamp}.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print()
        print(f"wrote {path.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> int:
    return run_main(argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
