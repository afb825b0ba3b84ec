"""Cache-job throughput through the whole stack, next to `cat` over the same files.

`make bench` runs this. It builds a throwaway filespace under /tmp with (a) a few large
files and (b) many small files in nested folders, creates a throwaway PostgreSQL database
and RabbitMQ vhost, starts the real processes (gunicorn auth-service and gateway, one
`jobgate-worker cache`) exactly as the end-to-end tests do, and then, per scenario and
alternating `--repeat` times, times

  * `cat FILES > /dev/null` (small set: `find DIR -type f -print0 | xargs -0 cat > /dev/null`)
  * a cache job: `POST /api/v1/cache/jobs` until `GET /api/v1/cache/jobs/{id}` says
    `completed` (end to end), and the handler's own `result.seconds` from `/api/v1/jobs/{id}`.

Medians are reported next to the targets: >= 0.9 of cat's bytes/s on large files, and
(issue 13, target 4) >= 0.3 of cat's files/s on the small ones, the same run's cat.
Everything runs warm: the files were just written and `cat` reads them once before
timing, so both sides read from the page cache.
A missed target still exits 0 (this is a benchmark, not a test); errors exit 1.

Usage: .venv/bin/python bench/cache_bench.py [--quick] [--repeat N] [--large-files N]
       [--large-size-mib N] [--small-files N] ...   (see --help)
Settings such as CACHE_READ_CONCURRENCY are taken from the environment, like `make run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shlex
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
    human_bytes,
    job_phases,
    log,
    machine_info,
    median,
    medians,
    parse,
    parser,
    residency,
    run_main,
    table,
    timed,
    verdict,
)

TARGET_LARGE_RATIO = 0.9  # of cat's bytes/s
TARGET_SMALL_RATIO = 0.3  # of cat's files/s over the same small files (issue 13, target 4)
SETTINGS = (
    "cache_read_concurrency",
    "cache_read_chunk_bytes",
    "cache_read_bandwidth_limit",
    "cache_progress_file_threshold",
    "cache_progress_time_threshold_ms",
    *COMMON_SETTINGS,
    "rate_limit_storage_uri",
)


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--large-files", type=int, default=4, help="number of large files (4)")
    p.add_argument("--large-size-mib", type=int, default=256, help="size of each large file (256)")
    p.add_argument("--small-files", type=int, default=10_000, help="number of small files (10000)")
    p.add_argument("--small-folders", type=int, default=100, help="leaf folders for them (100)")
    p.add_argument("--small-min-kib", type=int, default=4, help="smallest small file, KiB (4)")
    p.add_argument("--small-max-kib", type=int, default=16, help="largest small file, KiB (16)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per scenario; median (3)")
    add_quick(p, "2 x 16 MiB, 500 small files, 1 repeat")
    add_common_options(p, job_timeout=900.0)
    p.add_argument("--only", choices=("large", "small"), help="run one scenario only")
    args = parse(
        p,
        argv,
        quick={
            "--large-files": 2,
            "--large-size-mib": 16,
            "--small-files": 500,
            "--small-folders": 10,
            "--repeat": 1,
        },
    )
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


# --- cat ---------------------------------------------------------------------------------------


def cat_command(fs: FileSet) -> str:
    if fs.name == "small":
        return f"find {shlex.quote(str(fs.root))} -type f -print0 | xargs -0 cat > /dev/null"
    return "cat " + " ".join(shlex.quote(str(f)) for f in fs.files) + " > /dev/null"


def time_cat(fs: FileSet) -> float:
    cmd = ["bash", "-c", "set -o pipefail; " + cat_command(fs)]
    return timed(subprocess.run, cmd, check=True)[0]


# --- jobs --------------------------------------------------------------------------------------


def cache_status(body: dict[str, Any]) -> tuple[str, float, Any]:
    """(status, fraction done, error) of a `GET /api/v1/cache/jobs/{id}` body: done is the
    larger of the files and the bytes reported done."""
    job = body["job"]
    p = job["progress"]
    done = max(
        p["files"]["completed"] / max(1, p["files"]["total"]),
        p["size"]["completedBytes"] / max(1, p["size"]["totalBytes"]),
    )
    return job["status"], done, job.get("error")


def run_job(api: Api, directory: str, expect_files: int, expect_bytes: int) -> dict[str, Any]:
    """Submit a cache job over `directory`, wait for `completed`, return the timings."""
    sent = api.submit("/api/v1/cache/jobs", json={"directories": [directory]})
    job_id = sent.body["jobId"]
    if sent.body["totalFiles"] != expect_files or sent.body["totalSize"]["bytes"] != expect_bytes:
        raise BenchError(f"job {job_id} expanded to {sent.body}, expected {expect_files} files")
    e2e_s, polls = api.wait(f"/api/v1/cache/jobs/{job_id}", job_id, cache_status, sent.start)
    canonical = api.job(job_id)
    result = canonical.get("result") or {}
    if result.get("files") != expect_files or result.get("bytes") != expect_bytes:
        raise BenchError(f"job {job_id} result {result} != {expect_files} files")
    return {
        "job_id": job_id,
        "e2e_s": e2e_s,
        "handler_s": float(result["seconds"]),
        "post_s": sent.post_s,  # the POST's round trip, as the client saw it
        # expand_s: POST sent -> job row being inserted (after the API key check and the
        # directory expansion); then the queue, the run and the poll's lag (job_phases).
        **job_phases(canonical, sent, e2e_s, first="expand_s"),
        "polls": polls,
        "attempt": canonical["attempt"],
    }


# --- reporting ---------------------------------------------------------------------------------


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
    else:  # the same files on both sides: the files/s ratio is the bytes/s ratio
        target = f">= {TARGET_SMALL_RATIO} x cat files/s"
        e2e_ok = (files / e2e) / (files / cat) >= TARGET_SMALL_RATIO
        hdl_ok = (files / hdl) / (files / cat) >= TARGET_SMALL_RATIO
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
        "verdict_e2e": verdict(e2e_ok),
        "verdict_handler": verdict(hdl_ok),
        "median_breakdown_s": medians(runs, ("post_s", "expand_s", *PHASES)),
        "runs": runs,
        "cat_runs_s": cat_s,
    }


MAIN_COLUMNS = [
    ("scenario", cell("scenario", "")),
    ("files", cell("files", ",")),
    ("bytes", lambda r: human_bytes(r["bytes"])),
    ("cat s", cell("cat_s")),
    ("cat MB/s", cell("cat_mb_s", ",.0f")),
    ("cat files/s", cell("cat_files_s", ",.0f")),
    ("job e2e s", cell("job_e2e_s")),
    ("job hdl s", cell("job_handler_s")),
    ("e2e MB/s", cell("job_e2e_mb_s", ",.0f")),
    ("hdl MB/s", cell("job_handler_mb_s", ",.0f")),
    ("e2e files/s", cell("job_e2e_files_s", ",.0f")),
    ("hdl files/s", cell("job_handler_files_s", ",.0f")),
    ("ratio e2e", cell("ratio_e2e", ".2f")),
    ("ratio hdl", cell("ratio_handler", ".2f")),
    ("target", cell("target", "")),
    ("e2e", cell("verdict_e2e", "")),
    ("hdl", cell("verdict_handler", "")),
]


def tables(results: list[dict[str, Any]]) -> list[str]:
    breakdown = breakdown_table(
        [
            (r["scenario"], r["median_breakdown_s"], r["job_handler_s"], r["job_e2e_s"])
            for r in results
        ],
        label="scenario",
        first=("auth+expand s", "expand_s"),
        queue="insert+queue s",
        inner="of which handler s",
    )
    return [
        table(results, MAIN_COLUMNS),
        f"Where the job's end-to-end time goes (medians):\n{breakdown}",
        *(small_summary(r) for r in results if r["scenario"] == "small"),
    ]


def small_summary(r: dict[str, Any]) -> str:
    """Issue 13's target 4 in one line: files/s against cat's, measured in this run."""
    return (
        f"Small files ({r['files']:,}), files/s vs cat, target >= {TARGET_SMALL_RATIO}x:"
        f" job e2e {r['job_e2e_files_s']:,.0f} files/s = {r['ratio_e2e']:.2f}x"
        f" ({r['verdict_e2e']}), handler {r['job_handler_files_s']:,.0f} files/s ="
        f" {r['ratio_handler']:.2f}x ({r['verdict_handler']}); cat {r['cat_files_s']:,.0f}"
        " files/s"
    )


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


# --- the run -----------------------------------------------------------------------------------


def run(bench: Bench) -> None:
    args = bench.args
    filespace = bench.tmp / "filespace"
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

    # (2) throwaway database and vhost, auth, gateway, one cache worker
    stack = bench.start_stack("cache", {"CACHE_ROOT": str(filespace)})
    settings = effective_settings(stack.env, SETTINGS)
    api = Api(stack.url, args, api_key=API_KEY)
    # A tiny job first: the worker is consuming, pools and caches are warm.
    run_job(api, "warmup", 3, 4096 * 6)
    log(f"stack up and warm in {time.perf_counter() - bench.stack_t0:.1f}s ({stack.url})")
    log("settings: " + ", ".join(f"{k}={v}" for k, v in list(settings.items())[:5]))

    # (3) measure, alternating cat and job
    results = []
    for fs in sets:
        time_cat(fs)  # warm the page cache (the files were also just written)
        res = residency(fs.files)
        if res is not None:
            log(f"{fs.name}: {res:.0%} of sampled bytes in the page cache (fincore)")
        cat_s, runs = [], []
        for i in range(args.repeat):
            cat_s.append(time_cat(fs))
            runs.append(run_job(api, fs.name, len(fs.files), fs.bytes))
            log(
                f"{fs.name} #{i + 1}: cat {cat_s[-1]:.3f}s, job e2e {runs[-1]['e2e_s']:.3f}s"
                f" (handler {runs[-1]['handler_s']:.3f}s, POST {runs[-1]['post_s']:.3f}s)"
            )
        results.append(summarize(fs, runs, cat_s))
        results[-1]["page_cache_residency"] = res

    # (4) report
    bench.print_report(WARM_NOTE, tables(results), LEGEND)
    bench.write_report(
        conditions=WARM_NOTE,
        machine=machine_info(bench.tmp, {"cat_version": ["cat", "--version"]}),
        settings=settings,
        filespace_generation_s=gen_s,
        targets={
            "large_ratio_of_cat_bytes_per_s": TARGET_LARGE_RATIO,
            "small_ratio_of_cat_files_per_s": TARGET_SMALL_RATIO,
        },
        results=results,
    )


def main(argv: list[str] | None = None) -> int:
    return run_main("cache", argv, parse_args, run)


if __name__ == "__main__":
    sys.exit(main())
