"""Scrape jobs through the whole stack, next to the yt-dlp command line on the same feed.

`make bench` runs this (after cache_bench.py and convert_bench.py). It makes ONE real
H.264/AAC MP4 of about 2 MB (`--clip-seconds` of 640x360 25 fps testsrc, tests/media.py) and
serves it as the enclosure of every item of RSS feeds on a local feed server
(tests/feeds.py, 127.0.0.1 only: never the video site). It creates a throwaway PostgreSQL
database and RabbitMQ vhost, starts the real processes (gunicorn auth-service and gateway,
one `jobgate-worker scrape` pointed at the feed server with SCRAPE_PROFILE_URL) exactly as
the end-to-end tests do, and then, per download concurrency (`--concurrency`, 1 then 4; the
worker reads SCRAPE_DOWNLOAD_CONCURRENCY at start, so it is restarted between them) and
alternating `--repeat` times, times

  * direct: `.venv/bin/yt-dlp --write-info-json` downloading all `--videos` (100) entries
    of the feed into a temp dir, started -> exited;
  * a scrape job: `POST /api/v1/jobs {"mode": "profile", "value": ..., "limit": N}` with the
    demo key until `GET /api/v1/jobs/{id}` says `completed` (end to end), plus the
    handler's own `result.seconds` and `started_at` -> `completed_at`.

Every run gets a feed of its own (a fresh `value` and fresh video ids), so no video is
already stored for the demo key's owner and every job downloads all of them (checked).
Target: job time / direct time <= 1.1 at concurrency 1. MB = 10^6 bytes. Medians are
reported; a missed target still exits 0 (this is a benchmark, not a test); errors exit 1.

Usage: .venv/bin/python bench/scrape_bench.py [--quick] [--videos N] [--repeat N]
       [--concurrency 1,4] [--clip-seconds S] ...   (see --help)
Other SCRAPE_* settings are taken from the environment, like `make run`.
"""

from __future__ import annotations

import argparse
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

from bench.harness import (  # noqa: E402
    API_KEY,
    COMMON_SETTINGS,
    MB,
    PHASES,
    Api,
    Bench,
    BenchError,
    add_common_options,
    add_quick,
    breakdown_table,
    cell,
    effective_settings,
    human_bytes,
    job_phases,
    log,
    machine_info,
    median,
    medians,
    parse,
    parser,
    run_main,
    table,
    timed,
    verdict,
)
from jobgate import media  # noqa: E402
from jobgate.storage import DirectoryStorage  # noqa: E402
from tests.feeds import FeedServer, feed_videos  # noqa: E402
from tests.media import make_video  # noqa: E402

TARGET_RATIO = 1.1  # job wall time / direct yt-dlp wall time, at concurrency 1
YTDLP = REPO / ".venv" / "bin" / "yt-dlp"
WORKER = "worker-scrape"
# The worker's format selection when no_watermark is true (the default), copied from
# jobgate_worker/kinds/scrape.py (NO_WATERMARK_FORMAT), so both pick the same format.
FORMAT = "b[format_note!*=?watermarked]/b"
FIRST_READ_BYTES = 16 * 1024  # the worker's first read of a download (FIRST_READ_BYTES there)
SETTINGS = (
    "scrape_download_concurrency",
    "scrape_video_retries",
    "scrape_list_retries",
    "scrape_socket_timeout_s",
    "scrape_profile_url",
    *COMMON_SETTINGS,
)


# --- command line ----------------------------------------------------------------------------


def concurrency_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrencies must be >= 1")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--videos", type=int, default=100, help="videos per feed and job (100)")
    p.add_argument(
        "--clip-seconds",
        type=float,
        default=68.0,
        help="length of the served clip, 640x360 25 fps: 68 s is ~2 MB (68)",
    )
    p.add_argument("--repeat", type=int, default=3, help="timed runs per concurrency (3)")
    p.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=[1, 4],
        help="SCRAPE_DOWNLOAD_CONCURRENCY values, one worker start each (1,4); the first"
        " is the one judged against the target",
    )
    add_quick(p, "10 videos, 1 repeat")
    add_common_options(p, job_timeout=900.0)
    args = parse(p, argv, quick={"--videos": 10, "--repeat": 1})
    if not 1 <= args.videos <= 200:  # the kind's MAX_LIMIT
        p.error("--videos must be 1..200")
    if args.repeat < 1 or args.clip_seconds <= 0:
        p.error("--repeat must be >= 1 and --clip-seconds > 0")
    return args


# --- feeds -------------------------------------------------------------------------------------


class Feeds:
    """A fresh profile feed per run: its own `value` and video ids (`<n>` then 18 digits),
    so no video of it is stored for the owner yet."""

    def __init__(self, server: FeedServer, count: int) -> None:
        self.server, self.count, self.n = server, count, 0
        self.newest = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def new(self, count: int | None = None) -> str:
        self.n += 1
        value = f"bench{self.n:03d}"
        videos = feed_videos(
            count or self.count,
            newest=self.newest,
            step=dt.timedelta(hours=1),
            prefix=f"{self.n:03d}",
        )
        self.server.add("profile", value, videos)
        return value

    def media_gets(self) -> int:
        with self.server._lock:
            return sum(n for path, n in self.server.gets.items() if path.startswith("/media/"))


# --- direct ------------------------------------------------------------------------------------


def direct_command(feed_url: str, out: Path, count: int) -> list[str]:
    """yt-dlp as one would run it by hand, with the worker's choices where they change what
    is fetched or written: the same format, each video's info JSON (not the playlist's), no
    cache dir, no mtime."""
    return [
        str(YTDLP),
        "--quiet",
        "--no-progress",
        "--no-cache-dir",
        "--no-mtime",
        "--write-info-json",
        "--no-write-playlist-metafiles",  # the worker writes no playlist's info JSON
        "--playlist-end",
        str(count),
        "--format",
        FORMAT,
        "--output",
        str(out / "%(id)s.%(ext)s"),
        feed_url,
    ]


def run_direct(feeds: Feeds, out_parent: Path, count: int, clip_size: int) -> dict[str, Any]:
    value = feeds.new()
    url = feeds.server.profile_url.replace("{value}", value)
    out = out_parent / f"direct-{value}"
    out.mkdir()
    gets_before = feeds.media_gets()
    try:
        seconds, proc = timed(
            subprocess.run, direct_command(url, out, count), capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise BenchError(f"yt-dlp exited {proc.returncode}: {proc.stderr[-1500:]}")
        videos = sorted(out.glob("*.mp4"))
        infos = list(out.glob("*.info.json"))
        if len(videos) != count or len(infos) != count:
            raise BenchError(f"yt-dlp wrote {len(videos)} videos, {len(infos)} info JSONs")
        sizes = {v.stat().st_size for v in videos}
        if sizes != {clip_size}:
            raise BenchError(f"yt-dlp wrote videos of {sizes} bytes, expected {clip_size}")
        return {
            "value": value,
            "seconds": seconds,
            "videos": len(videos),
            "bytes": sum(v.stat().st_size for v in videos),
            "info_json_bytes": sum(i.stat().st_size for i in infos),
            "media_gets": feeds.media_gets() - gets_before,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


# --- jobs --------------------------------------------------------------------------------------


def job_status(body: dict[str, Any]) -> tuple[str, float, Any]:
    """(status, fraction done, error) of a `GET /api/v1/jobs/{id}` body."""
    job = body["job"]
    return job["status"], (job["progress"] or 0) / 100, job.get("error")


def run_job(api: Api, feeds: Feeds, count: int, clip_size: int) -> dict[str, Any]:
    """Submit a scrape job on a fresh feed of `count` videos, wait for `completed`, return
    the timings; every video must have been downloaded (none failed, none reused)."""
    value = feeds.new(count)
    gets_before = feeds.media_gets()
    feeds.server.most_sending = 0
    sent = api.submit("/api/v1/jobs", json={"mode": "profile", "value": value, "limit": count})
    job_id = sent.body["id"]
    e2e_s, polls = api.wait(f"/api/v1/jobs/{job_id}", job_id, job_status, sent.start)
    job = api.job(job_id)
    result = job.get("result") or {}
    want = {
        "total_videos": count,
        "successful_downloads": count,
        "failed_downloads": 0,
        "skipped_existing": 0,
    }
    got = {k: result.get(k) for k in want}
    if got != want or result.get("bytes") != count * clip_size:
        raise BenchError(f"job {job_id} result {result}, expected {want} and all bytes")
    return {
        "job_id": job_id,
        "value": value,
        "e2e_s": e2e_s,
        "handler_s": float(result["seconds"]),
        "post_s": sent.post_s,
        **job_phases(job, sent, e2e_s, first="submit_s"),
        "polls": polls,
        "attempt": job["attempt"],
        "bytes": result["bytes"],
        "media_gets": feeds.media_gets() - gets_before,
        "most_parallel_sends": feeds.server.most_sending,  # enclosures sent at once (peak)
    }


def restart_worker(bench: Bench, concurrency: int) -> None:
    """A `jobgate-worker scrape` with SCRAPE_DOWNLOAD_CONCURRENCY=`concurrency` (it reads
    the setting at start); the previous one is stopped first (SIGTERM, as the stack does)."""
    stack = bench.stack
    assert stack is not None
    for name, proc in stack.procs.items():
        if name.startswith(WORKER) and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    stack.start_worker(
        "scrape", name=f"{WORKER}-c{concurrency}", SCRAPE_DOWNLOAD_CONCURRENCY=str(concurrency)
    )


# --- per-video costs ------------------------------------------------------------------------


def per_video_costs(feeds: Feeds, clip: Path, tmp: Path, times: int = 10) -> list[dict]:
    """In this process, the pieces of a job's time per video, each the median of `times`
    calls: a `YoutubeDL` built, one video's extraction and download in a new `YoutubeDL`, in
    one reused `YoutubeDL` as the worker's download processes and the yt-dlp command line
    keep it (with the worker's first read of 16 KiB, then yt-dlp's growing reads), the same
    with fixed 16 KiB reads (the worker's earlier way to see a cancel quickly), the two
    probes (an ffmpeg process: uploads; PyAV: the download processes) and moving a copy into
    storage (sha256)."""
    import yt_dlp  # only here: the stack's worker imports its own

    value = feeds.new(1)
    url = feeds.server.profile_url.replace("{value}", value)
    quiet = {"quiet": True, "no_warnings": True, "noprogress": True, "cachedir": False}
    quiet["updatetime"] = False
    with yt_dlp.YoutubeDL({**quiet, "extract_flat": "in_playlist"}) as ydl:
        entry = ydl.extract_info(url, download=False)["entries"][0]
    work = tmp / "costs"
    work.mkdir()
    storage = DirectoryStorage(work / "storage")
    cleanups: list[Any] = []

    def download(reuse: bool = False, **extra: Any) -> Any:
        options = {
            **quiet,
            "outtmpl": {"default": str(work / "dl" / "video.%(ext)s")},
            "writeinfojson": True,
            "noplaylist": True,
            "format": FORMAT,
            "progress_hooks": [lambda _status: None],
            **extra,
        }
        shared = yt_dlp.YoutubeDL(options) if reuse else None
        if shared is not None:
            cleanups.append(shared.close)

        def once() -> None:
            for name in os.listdir(work / "dl") if (work / "dl").exists() else ():
                os.unlink(work / "dl" / name)
            if shared is not None:
                shared.process_ie_result(dict(entry), download=True)
                return
            with yt_dlp.YoutubeDL(options) as ydl:
                ydl.process_ie_result(dict(entry), download=True)

        return once

    def store() -> None:
        copy = work / "copy.mp4"
        shutil.copyfile(clip, copy)
        storage.put_file(copy)

    def ms(fn: Any) -> float:
        fn()  # warm
        return median(timed(fn)[0] for _ in range(times)) * 1000

    try:
        return [
            {
                "what": "YoutubeDL() built and closed",
                "ms": ms(lambda: yt_dlp.YoutubeDL(quiet).close()),
            },
            {
                "what": "1 video, new YoutubeDL",
                "ms": ms(download(buffersize=FIRST_READ_BYTES)),
            },
            {
                "what": "1 video, YoutubeDL reused (the worker's way)",
                "ms": ms(download(reuse=True, buffersize=FIRST_READ_BYTES)),
            },
            {
                "what": "1 video, YoutubeDL reused, fixed 16 KiB reads",
                "ms": ms(download(reuse=True, buffersize=16 * 1024, noresizebuffer=True)),
            },
            {"what": "probe, ffmpeg process (media.probe)", "ms": ms(lambda: media.probe(clip))},
            {"what": "probe, PyAV (media.probe_here)", "ms": ms(lambda: media.probe_here(clip))},
            {"what": "copy + put_file (sha256, move)", "ms": ms(store)},
        ]
    finally:
        for close in cleanups:
            close()
        shutil.rmtree(work, ignore_errors=True)


# --- reporting ---------------------------------------------------------------------------------


def summarize(
    concurrency: int,
    runs: list[dict[str, Any]],
    direct: list[dict[str, Any]],
    count: int,
    clip_size: int,
    judged: bool,
) -> dict[str, Any]:
    direct_s = median(d["seconds"] for d in direct)
    e2e = median(r["e2e_s"] for r in runs)
    hdl = median(r["handler_s"] for r in runs)
    run_s = median(r["run_s"] for r in runs)
    nbytes = count * clip_size
    return {
        "concurrency": concurrency,
        "videos": count,
        "bytes": nbytes,
        "direct_s": direct_s,
        "job_e2e_s": e2e,
        "job_handler_s": hdl,
        "job_run_s": run_s,
        "direct_mb_s": nbytes / direct_s / MB,
        "job_e2e_mb_s": nbytes / e2e / MB,
        "job_e2e_videos_s": count / e2e,
        "direct_videos_s": count / direct_s,
        "ratio_e2e": e2e / direct_s,
        "ratio_handler": hdl / direct_s,
        "ratio_run": run_s / direct_s,
        "target": f"<= {TARGET_RATIO} x direct" if judged else "(info)",
        "verdict_e2e": verdict(e2e / direct_s <= TARGET_RATIO) if judged else "-",
        "verdict_handler": verdict(hdl / direct_s <= TARGET_RATIO) if judged else "-",
        "median_breakdown_s": medians(runs, ("post_s", "submit_s", *PHASES)),
        "runs": runs,
        "direct_runs": direct,
    }


MAIN_COLUMNS = [
    ("dl conc", cell("concurrency", "d")),
    ("videos", cell("videos", ",")),
    ("bytes", lambda r: human_bytes(r["bytes"])),
    ("direct s", cell("direct_s")),
    ("job e2e s", cell("job_e2e_s")),
    ("job hdl s", cell("job_handler_s")),
    ("claimed->done s", cell("job_run_s")),
    ("direct MB/s", cell("direct_mb_s", ",.1f")),
    ("e2e MB/s", cell("job_e2e_mb_s", ",.1f")),
    ("e2e videos/s", cell("job_e2e_videos_s", ",.1f")),
    ("ratio e2e", cell("ratio_e2e", ".2f")),
    ("ratio hdl", cell("ratio_handler", ".2f")),
    ("target", cell("target", "")),
    ("e2e", cell("verdict_e2e", "")),
    ("hdl", cell("verdict_handler", "")),
]


def tables(results: list[dict[str, Any]], costs: list[dict[str, Any]]) -> list[str]:
    base = results[0]
    speedup = [
        {
            "concurrency": r["concurrency"],
            "job_e2e_s": r["job_e2e_s"],
            "job_handler_s": r["job_handler_s"],
            "speedup_e2e": base["job_e2e_s"] / r["job_e2e_s"],
            "speedup_handler": base["job_handler_s"] / r["job_handler_s"],
            "per_video_ms": r["job_handler_s"] / r["videos"] * 1000,
            "direct_per_video_ms": r["direct_s"] / r["videos"] * 1000,
            "most_parallel": max(x["most_parallel_sends"] for x in r["runs"]),
        }
        for r in results
    ]
    concurrency = table(
        speedup,
        [
            ("dl conc", cell("concurrency", "d")),
            ("job e2e s", cell("job_e2e_s")),
            ("job hdl s", cell("job_handler_s")),
            (f"speedup e2e vs {base['concurrency']}", cell("speedup_e2e", ".2f")),
            (f"speedup hdl vs {base['concurrency']}", cell("speedup_handler", ".2f")),
            ("hdl ms/video", cell("per_video_ms", ".1f")),
            ("direct ms/video", cell("direct_per_video_ms", ".1f")),
            ("peak parallel sends", cell("most_parallel", "d")),
        ],
    )
    breakdown = breakdown_table(
        [
            (
                f"job c={r['concurrency']}",
                r["median_breakdown_s"],
                r["job_handler_s"],
                r["job_e2e_s"],
            )
            for r in results
        ],
        label="job",
        first=("auth+insert s", "submit_s"),
        queue="queue s",
        inner="of which handler s",
    )
    return [
        table(results, MAIN_COLUMNS),
        f"Parallel downloads per job (SCRAPE_DOWNLOAD_CONCURRENCY):\n{concurrency}",
        f"Where the job's end-to-end time goes (medians):\n{breakdown}",
        "Per-video costs, measured in the benchmark's process (median of 10):\n"
        + table(costs, [("piece", cell("what", "")), ("ms", cell("ms", ".1f"))]),
    ]


CONDITIONS = """\
Loopback only: the feeds and the ~2 MB MP4 every item points at come from a local feed
server (tests/feeds.py, in the benchmark's own process) on 127.0.0.1, so this measures the
cost of the stack and of yt-dlp per video (extraction, HTTP, info JSON, probing, storage,
bookkeeping), not a network. Both sides write to the same filesystem under the temp dir;
the direct run's files are removed after each run, the job's stay in STORAGE_DIR."""

LEGEND = """\
direct s: median of every yt-dlp run (`yt-dlp --write-info-json --format <the worker's>
--playlist-end N FEED`, process started -> exited, one process listing and downloading
sequentially). job e2e s: POST sent -> a poll of `GET /api/v1/jobs/{id}` saw `completed`;
job hdl s: the worker's `result.seconds` (the handler: listing, downloads, probes, storage,
per-video transactions); claimed->done: `started_at` -> `completed_at`. ratio = job time /
direct time (lower is better); the target (<= 1.1) is judged at the first concurrency, on
e2e and on the handler alone. speedup = time at the first concurrency / time at this one.
Breakdown: auth+insert = POST sent -> `created_at`; queue = `created_at` -> `started_at`;
poll lag = `completed_at` -> seen. Server timestamps have 1 ms resolution."""


# --- the run -----------------------------------------------------------------------------------


def run(bench: Bench) -> None:
    args = bench.args
    if not YTDLP.exists():
        raise BenchError(f"{YTDLP} not found (make venv)")

    # (1) the clip and the feed server
    t0 = time.perf_counter()
    clip = make_video(bench.tmp / "clip.mp4", seconds=args.clip_seconds, size="640x360", rate=25)
    clip_size = clip.stat().st_size
    gen_s = time.perf_counter() - t0
    log(f"clip: {human_bytes(clip_size)} ({clip_size / MB:.2f} MB), made in {gen_s:.1f}s")
    server = FeedServer(clip).start()
    bench.cleanup.push("stop the feed server", server.close)
    feeds = Feeds(server, args.videos)
    log(f"feed server on {server.base}")

    # (2) throwaway database and vhost, auth, gateway, one scrape worker
    first = args.concurrency[0]
    storage = bench.tmp / "storage"
    stack = bench.start_stack(
        "scrape",
        {
            "STORAGE_DIR": str(storage),
            "SCRAPE_PROFILE_URL": server.profile_url,
            "SCRAPE_HASHTAG_URL": server.hashtag_url,
            "SCRAPE_DOWNLOAD_CONCURRENCY": str(first),
        },
    )
    api = Api(stack.url, args, api_key=API_KEY)
    run_job(api, feeds, 2, clip_size)  # warm-up: the worker consumes, pools are open
    log(f"stack up and warm in {time.perf_counter() - bench.stack_t0:.1f}s ({stack.url})")
    run_direct(feeds, bench.tmp, 2, clip_size)  # warm-up: yt-dlp's modules in the page cache

    # (3) per concurrency, alternating direct and job
    results, settings = [], {}
    for i, conc in enumerate(args.concurrency):
        if i:
            restart_worker(bench, conc)
            run_job(api, feeds, 2, clip_size)  # the new worker consumes
        settings[str(conc)] = effective_settings(
            {**stack.env, "SCRAPE_DOWNLOAD_CONCURRENCY": str(conc)}, SETTINGS
        )
        direct, runs = [], []
        for n in range(args.repeat):
            direct.append(run_direct(feeds, bench.tmp, args.videos, clip_size))
            runs.append(run_job(api, feeds, args.videos, clip_size))
            log(
                f"c={conc} #{n + 1}: yt-dlp {direct[-1]['seconds']:.3f}s, job e2e"
                f" {runs[-1]['e2e_s']:.3f}s (handler {runs[-1]['handler_s']:.3f}s,"
                f" claimed->done {runs[-1]['run_s']:.3f}s)"
            )
        results.append(summarize(conc, runs, direct, args.videos, clip_size, judged=i == 0))

    costs = per_video_costs(feeds, clip, bench.tmp)

    # (4) report
    bench.print_report(CONDITIONS, tables(results, costs), LEGEND)
    bench.write_report(
        conditions=CONDITIONS,
        machine=machine_info(bench.tmp, {"yt_dlp_version": [str(YTDLP), "--version"]}),
        settings=settings,
        clip={"bytes": clip_size, "seconds": args.clip_seconds, "size": "640x360", "fps": 25},
        direct_command=direct_command("<feed url>", Path("<tmp>"), args.videos),
        targets={"job_over_direct_wall_time": TARGET_RATIO},
        stored_bytes=sum(f.stat().st_size for f in storage.rglob("*") if f.is_file()),
        results=results,
        per_video_costs_ms=costs,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("scrape", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
