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
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import (  # noqa: E402
    COMMON_SETTINGS,
    MB,
    MIB,
    PHASES,
    Api,
    Bench,
    BenchError,
    add_common_options,
    add_quick,
    breakdown_table,
    cell,
    effective_settings,
    first_line,
    fmt,
    human_bytes,
    job_phases,
    log,
    machine_info,
    median,
    medians,
    parse,
    parser,
    render_table,
    residency,
    run_main,
    table,
    timed,
    verdict,
)
from jobgate.media import ffmpeg_binary, probe  # noqa: E402
from jobgate_worker.kinds.convert import ffmpeg_command  # noqa: E402
from tests.stack import Stack  # noqa: E402

TARGET_RATIO = 1.05  # stack conversion time / direct ffmpeg time
TARGET_UPLOAD_MB_S = 200.0  # the seed documents ~10 MB/s
TARGET_PEAK_RSS_MB = 150.0  # per gateway process, during the upload
# "Flat": the bench's reading of the issue. A gateway that buffered the upload would grow by
# hundreds of MB; a streaming one by its buffers (well under this), whatever the file's size.
TARGET_RSS_GROWTH_MB = 20.0
PCM_BYTES_PER_S = 8 * 192_000 * 4  # 7.1 channels x 192 kHz x 32-bit PCM: 6.144 MB/s
SETTINGS = (
    "convert_default_bitrate",
    "convert_progress_interval_ms",
    "max_file_size",
    "storage_dir",
    *COMMON_SETTINGS,
)


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--clip-seconds", type=float, default=60.0, help="clip duration, s (60)")
    p.add_argument("--clip-size", default="640x360", help="clip frame size (640x360)")
    p.add_argument("--repeat", type=int, default=3, help="timed conversions per side (3)")
    p.add_argument("--upload-mb", type=int, default=500, help="upload file size, 10^6 B (500)")
    p.add_argument("--upload-repeat", type=int, default=1, help="timed uploads (1)")
    p.add_argument("--sample-ms", type=float, default=50.0, help="RSS sampling interval, ms (50)")
    add_quick(p, "10 s clip, 50 MB upload, 1 repeat")
    add_common_options(p, job_timeout=600.0)
    p.add_argument("--only", choices=("convert", "upload"), help="run one measurement only")
    args = parse(p, argv, quick={"--clip-seconds": 10.0, "--upload-mb": 50, "--repeat": 1})
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
    seconds, out = timed(
        subprocess.run, cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=600
    )
    if out.returncode != 0:
        raise BenchError(f"direct ffmpeg exited {out.returncode}: {out.stderr[-500:]!r}")
    size = target.stat().st_size
    target.unlink()
    return seconds, size


# --- the job -----------------------------------------------------------------------------------


def convert_status(body: dict[str, Any]) -> tuple[str, float, Any]:
    """(status, fraction done, error) of a `GET /status/{id}` body. Progress comes every
    CONVERT_PROGRESS_INTERVAL_MS (1 s by default), so short clips often report none."""
    return body["status"], (body["progress"] or 0) / 100, body.get("error")


def run_job(api: Api, name: str, data: bytes, expect_duration: float, floor_s: float) -> dict:
    """POST /upload the clip, poll /status until `completed`, return the timings.

    No poll is sent until `floor_s` (0.8 x this run's direct conversion time) after the
    upload's response: the worker cannot finish sooner, so polls before then only steal
    CPU from it, next to ffmpeg on the same (2-core) machine."""
    api.login()
    sent = api.submit("/upload", files={"file": (name, data, "video/mp4")})
    job_id = sent.body["job_id"]
    time.sleep(floor_s)
    e2e_s, polls = api.wait(f"/status/{job_id}", job_id, convert_status, sent.start)
    job = api.job(job_id)
    result = job.get("result") or {}
    if abs((result.get("duration_s") or 0) - expect_duration) > 0.5:
        raise BenchError(
            f"job {job_id}: MP3 of {result.get('duration_s')}s, not ~{expect_duration}s"
        )
    return {
        "job_id": job_id,
        "e2e_s": e2e_s,
        "worker_s": float(result["seconds"]),  # the worker's ffmpeg run (1 ms resolution)
        "post_s": sent.post_s,  # the upload request's round trip, as the client saw it
        # upload_s: POST sent -> the job row (body, storage, probe, file row); then the
        # queue, the run and the poll's lag (job_phases).
        **job_phases(job, sent, e2e_s, first="upload_s"),
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


def summarize_convert(clip: dict[str, Any], runs: list[dict], direct: list[float]) -> dict:
    direct_s = median(direct)
    e2e = median([r["e2e_s"] for r in runs])
    worker = median([r["worker_s"] for r in runs])
    keys = ("post_s", "upload_s", *PHASES)
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
        "median_breakdown_s": medians(runs, keys),
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


def mb(key: str, spec: str = ".1f") -> Any:
    """A column of `row[key]` bytes in MB ("-" for None or 0)."""
    return lambda row: fmt(row[key] and row[key] / MB, spec)


def clip_label(c: dict[str, Any]) -> str:
    return f"{c['clip']['seconds']:g} s {c['clip']['size']}"


CONVERT_COLUMNS = [
    ("clip", clip_label),
    ("bytes", lambda c: human_bytes(c["clip"]["bytes"])),
    ("direct s", cell("direct_s")),
    ("worker s", cell("worker_s")),
    ("claimed->done s", lambda c: f"{c['median_breakdown_s']['run_s']:.3f}"),
    ("e2e s", cell("e2e_s")),
    ("ratio worker", cell("ratio_worker")),
    ("ratio e2e", cell("ratio_e2e")),
    ("target", cell("target", "")),
    ("worker", cell("verdict_worker", "")),
    ("e2e", cell("verdict_e2e", "")),
]

UPLOAD_COLUMNS = [
    ("upload", cell("n", "")),
    ("bytes", lambda r: human_bytes(r["bytes"])),
    ("request s", cell("request_s")),
    ("MB/s", cell("mb_s", ",.0f")),
    ("body in s", cell("body_landed_s")),
    ("body MB/s", cell("body_mb_s", ",.0f")),
    ("after body s", cell("after_body_s")),
    ("curl CPU s", cell("curl_cpu_s", ".2f")),
    ("peak RSS MB", mb("max_peak_rss_bytes")),
    ("growth MB", mb("max_growth_bytes", "+.1f")),
]

PROCESS_COLUMNS = [
    ("upload", cell("n", "")),
    ("pid", cell("pid", "")),
    ("process", cell("role", "")),
    ("baseline MB", mb("baseline_rss_bytes")),
    ("peak MB", mb("peak_rss_bytes")),
    ("growth MB", mb("growth_bytes", "+.1f")),
    ("VmHWM MB", mb("hwm_after_bytes")),
    ("CPU s", cell("cpu_s", ".2f")),
]


def convert_tables(c: dict[str, Any]) -> str:
    breakdown = breakdown_table(
        [(clip_label(c), c["median_breakdown_s"], c["worker_s"], c["e2e_s"])],
        label="clip",
        first=("upload+probe s", "upload_s"),
        queue="queue s",
        inner="of which ffmpeg s",
    )
    return (
        f"{table([c], CONVERT_COLUMNS)}\n\nWhere the end-to-end time goes (medians):\n{breakdown}"
    )


def upload_tables(u: dict[str, Any]) -> str:
    runs = [{"n": f"#{i + 1}", **r} for i, r in enumerate(u["runs"])]
    procs = [{"n": r["n"], **p} for r in runs for p in r["processes"]]
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
        f"{table(runs, UPLOAD_COLUMNS)}\n\n"
        f"Gateway processes (RSS sampled every --sample-ms):\n{table(procs, PROCESS_COLUMNS)}"
        f"\n\n{verdicts}\n\n{probe_line}"
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
    run_job(api, clip.name, data, duration, 0.8 * warm_s)
    direct, runs = [], []
    for i in range(repeat):
        seconds, size = time_direct(clip, out_dir, bitrate)
        direct.append(seconds)
        runs.append(run_job(api, clip.name, data, duration, 0.8 * seconds))
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
    probe_s = [timed(probe, big)[0] for _ in range(3)]
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


def run(bench: Bench) -> None:
    args, tmp = bench.args, bench.tmp
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

    # (2) throwaway database and vhost, auth, gateway, one convert worker
    (tmp / "filespace").mkdir()
    limit_mib = max(1024, math.ceil((big.stat().st_size if big else 0) / MIB) + 1)
    stack = bench.start_stack(
        "convert",
        {"CACHE_ROOT": str(tmp / "filespace"), "STORAGE_DIR": str(tmp / "storage")},
        overrides={"MAX_FILE_SIZE": str(limit_mib)},
    )
    settings = effective_settings(stack.env, SETTINGS)
    api = Api(stack.url, args, admin_password=bench.admin_password)
    api.login()
    log(f"stack up in {time.perf_counter() - bench.stack_t0:.1f}s ({stack.url})")
    log("settings: " + ", ".join(f"{k}={v}" for k, v in list(settings.items())[:4]))

    # (3) measure
    convert = upload = None
    bitrate = settings["convert_default_bitrate"]
    sections = []
    if clip is not None:
        convert = run_convert(api, clip, clip_info, tmp, bitrate, args.repeat)
        sections.append(
            f"Conversion to MP3 at {bitrate}, medians of {args.repeat}:\n{convert_tables(convert)}"
        )
    if big is not None:
        upload = run_upload(api, stack, big, args)
        sections.append(
            f"Upload to POST /api/v1/files with curl ({args.upload_repeat} run(s)):\n"
            + upload_tables(upload)
        )

    # (4) report
    bench.print_report(CONDITIONS, sections, LEGEND)
    machine = machine_info(tmp)
    machine["ffmpeg"] = ffmpeg_binary()
    machine["ffmpeg_version"] = first_line([ffmpeg_binary(), "-version"])
    machine["curl_version"] = first_line(["curl", "--version"])
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine,
        settings=settings,
        media_generation_s=gen_s,
        targets={
            "convert_ratio_max": TARGET_RATIO,
            "upload_mb_s_min": TARGET_UPLOAD_MB_S,
            "gateway_peak_rss_mb_max": TARGET_PEAK_RSS_MB,
            "gateway_rss_growth_mb_max": TARGET_RSS_GROWTH_MB,
        },
        units={"MB": "10^6 bytes"},
        convert=convert,
        upload=upload,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("convert", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
