"""Convert jobs: an uploaded video (MP4/MOV/AVI) becomes an MP3 of its first audio stream.

ffmpeg runs as a child process writing into a private scratch directory on the storage
volume. Its `-progress` output (media time converted so far) against the input's duration
gives `progress_pct`, written at most every `convert_progress_interval_ms`. ffmpeg's pipes
are drained by reader threads, so the handler thread is free to check for cancel/hand-back
every TICK_S and stop ffmpeg within about a second. The output file row, the removal of an
earlier attempt's outputs and progress 100 are one transaction: a retried or resumed job
never ends with two outputs. The scratch directory is removed however the attempt ends.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from jobgate import db, files, media
from jobgate.config import Settings
from jobgate.storage import DirectoryStorage
from jobgate_worker import metrics
from jobgate_worker.context import JobContext
from jobgate_worker.errors import JobFailed

log = logging.getLogger(__name__)

NO_AUDIO = "input has no audio stream"
TICK_S = 0.2  # how often the handler looks for a stop request while ffmpeg runs
TERM_GRACE_S = 1.0  # SIGTERM, then SIGKILL after this long
STDERR_LINES = 40  # the tail of ffmpeg's stderr kept for the failure reason
LINE_LIMIT = 4096  # bytes per line read from ffmpeg's pipes (longer lines are split)
REASON_LIMIT = 300  # characters of ffmpeg's reason shown to users
OUTPUT_NAME = "output.mp3"

# ffmpeg's stderr lines that restate an error already given in more specific words.
_BOILERPLATE = re.compile(
    r"Conversion failed!?"
    r"|Error opening (?:input|output) file .*\."
    r"|Error parsing options for (?:input|output) file .*"
    r"|To ignore this, add a trailing .*"
    r"|Exiting normally.*"
)
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)+")  # "[in#0 @ 0x55d0...] "


class _Progress:
    """What ffmpeg's `-progress` stream said last (written by the reader thread)."""

    def __init__(self) -> None:
        self.out_time_us: int | None = None


def run(ctx: JobContext) -> dict[str, Any]:
    """Convert the job's input file to MP3 and record the result as its output file."""
    settings = ctx.settings
    storage = DirectoryStorage(settings.storage_dir)
    bitrate = ctx.params["bitrate"] or settings.convert_default_bitrate
    upload = _load_input(ctx)
    source = storage.path(upload["storage_key"])
    if not source.is_file():
        raise JobFailed(f"the stored data of input file {upload['id']} is missing", retryable=False)
    info = upload["media"] or _probe_input(source, upload["filename"])
    if not info.get("has_audio", info.get("audio_codec") is not None):
        raise JobFailed(NO_AUDIO, retryable=False)
    duration = info.get("duration_s")
    output_name = ctx.params.get("output_name") or f"{Path(upload['filename']).stem}.mp3"
    ctx.log("info", f"converting {upload['filename']} ({_seconds(duration)}) to MP3 at {bitrate}")

    scratch = storage.scratch_dir()
    try:
        target = os.path.join(scratch, OUTPUT_NAME)
        started = time.monotonic()
        written_s = _ffmpeg(
            ctx, source, target, bitrate, duration, names={str(source): upload["filename"]}
        )
        seconds = time.monotonic() - started
        out_info = _describe_output(target, written_s)
        key, size, sha256 = storage.put_file(target)
        try:
            output, replaced = _record_output(
                ctx,
                key=key,
                size=size,
                sha256=sha256,
                filename=output_name,
                media_info=out_info.to_dict(),
            )
        except BaseException:
            storage.delete(key)  # the row was not written: the object would be an orphan
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for old_key in replaced:  # after commit: a rolled-back delete must not lose objects
        try:
            storage.delete(old_key)
        except OSError as exc:
            log.warning("job %s: replaced output %s not deleted: %s", ctx.job_id, old_key, exc)
    metrics.observe_conversion(out_info.duration_s or 0.0)
    ctx.log("info", f"converted to {output_name} ({size} bytes) in {seconds:.1f}s")
    return {
        "output_file": str(output["id"]),
        "filename": output_name,
        "size": size,
        "duration_s": out_info.duration_s,
        "bitrate": bitrate,
        "seconds": round(seconds, 3),
    }


def housekeeping(settings: Settings, database: db.Database) -> None:
    """Sweep scratch directories and upload leftovers that killed processes left in storage."""
    swept = DirectoryStorage(settings.storage_dir).sweep_tmp(
        older_than_s=settings.storage_tmp_max_age_s
    )
    if swept:
        log.info("removed %d stale temporary file(s) from storage", swept)


def _load_input(ctx: JobContext) -> dict[str, Any]:
    """The input file's row; a missing one fails for good (retrying cannot help)."""
    file_id = str(ctx.params["input_file"])
    with ctx.db.transaction() as conn:
        upload = files.get_file(conn, file_id=file_id)
    if upload is None:
        raise JobFailed(f"input file {file_id} does not exist", retryable=False)
    return upload


def _describe_output(target: str, written_s: float | None) -> media.MediaInfo:
    """The MP3 as ffmpeg reported writing it. A full probe would cost a second ffmpeg run;
    checking that an MPEG audio header opens a non-empty file is enough to catch a bad one."""
    with open(target, "rb") as f:
        head = f.read(4)
    if not (head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)):
        raise JobFailed("ffmpeg wrote no readable MP3")
    return media.MediaInfo(written_s, "mp3", None, "mp3")


def _probe_input(source: Path, filename: str) -> dict[str, Any]:
    """Describe an input whose upload recorded no media description."""
    try:
        return media.probe(source).to_dict()
    except media.NotMedia as exc:
        # The same bytes give the same answer on every attempt.
        reason = _sanitize(str(exc), {str(source): filename})
        raise JobFailed(reason or "input is not a media file", retryable=False) from None


def _ffmpeg(
    ctx: JobContext,
    source: Path,
    target: str,
    bitrate: str,
    duration: float | None,
    *,
    names: dict[str, str],
) -> float | None:
    """Run ffmpeg to completion, writing progress; stop it on cancel or hand-back.
    Returns the media time ffmpeg reported writing last (the output's duration)."""
    command = ffmpeg_command(source, target, bitrate)
    names = {**names, f"file:{source}": names.get(str(source), ""), f"file:{target}": "output"}
    state = _Progress()
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
    # Its own process group: a Ctrl-C or SIGTERM aimed at the worker's group must not kill
    # ffmpeg behind the runtime's back (the runtime decides: finish in the grace period, or
    # hand back, which stops ffmpeg here).
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        process_group=0,
    )
    stdout_closed = threading.Event()  # ffmpeg closes stdout as it exits: no polling lag

    def follow_progress() -> None:
        try:
            _read_progress(proc.stdout, state)
        finally:
            stdout_closed.set()

    readers = [
        threading.Thread(target=follow_progress, name="ffmpeg-out", daemon=True),
        threading.Thread(
            target=_read_tail, args=(proc.stderr, tail), name="ffmpeg-err", daemon=True
        ),
    ]
    for reader in readers:
        reader.start()
    interval = max(0, ctx.settings.convert_progress_interval_ms) / 1000
    last_write = time.monotonic()
    last_pct = -1.0
    try:
        while True:
            code: int | None = proc.wait() if stdout_closed.wait(TICK_S) else None
            reason = ctx.stop_reason()
            if reason is not None:
                _stop(proc)
                ctx.log("info", f"ffmpeg stopped ({reason.__name__.lower()})")
                raise reason()
            if code is not None:
                break
            now = time.monotonic()
            pct = _percent(state.out_time_us, duration)
            if pct is not None and pct > last_pct and now - last_write >= interval:
                with ctx.db.transaction() as conn:
                    ctx.progress(conn, progress_pct=pct)
                last_pct, last_write = pct, now
    finally:
        _stop(proc)  # a no-op once it exited; kills it if anything above raised
        for reader in readers:
            reader.join(timeout=2)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if code != 0:
        raise JobFailed(_failure(code, list(tail), names), retryable=_retryable(tail))
    return None if state.out_time_us is None else state.out_time_us / 1e6


def ffmpeg_command(source: Path | str, target: Path | str, bitrate: str) -> list[str]:
    """The conversion's ffmpeg command (also what bench/convert_bench.py times directly)."""
    return [
        media.ffmpeg_binary(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-i",
        f"file:{source}",  # "file:" so no part of a path is read as a protocol
        "-vn",
        "-map",
        "0:a:0",
        "-c:a",
        "libmp3lame",
        "-b:a",
        bitrate,
        "-f",
        "mp3",
        "-progress",
        "pipe:1",
        "-nostats",
        f"file:{target}",
    ]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, SIGKILL after TERM_GRACE_S, and always reap (no zombie, no orphan)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_progress(pipe: IO[bytes], state: _Progress) -> None:
    """Follow ffmpeg's `key=value` progress blocks until EOF (`progress=end` comes last)."""
    while line := pipe.readline(LINE_LIMIT):
        key, _, value = line.decode("ascii", "replace").strip().partition("=")
        # out_time_ms is in microseconds too (an old ffmpeg mistake kept for compatibility).
        if key in ("out_time_us", "out_time_ms") and value.isdigit():
            state.out_time_us = int(value)


def _read_tail(pipe: IO[bytes], tail: collections.deque[str]) -> None:
    """Keep the last STDERR_LINES lines of ffmpeg's stderr; memory stays bounded."""
    while line := pipe.readline(LINE_LIMIT):
        text = line.decode("utf-8", "replace").strip()
        if text:
            tail.append(text)


def _percent(out_time_us: int | None, duration: float | None) -> float | None:
    """Media time converted over the input's duration; below 100 until the output is saved."""
    if out_time_us is None or not duration or duration <= 0:
        return None
    return round(min(99.9, max(0.0, out_time_us / 1e6 / duration * 100)), 1)


def _failure(code: int | None, tail: list[str], names: dict[str, str]) -> str:
    """The reason users see: ffmpeg's last line that says what went wrong."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"ffmpeg was killed by {name}"
    if any("matches no streams" in line for line in tail):
        return NO_AUDIO
    for line in reversed(tail):
        text = _sanitize(_LOG_PREFIX.sub("", line), names)
        if text and not _BOILERPLATE.fullmatch(text):
            return text
    return f"ffmpeg exited with status {code}"


def _retryable(tail: collections.deque[str]) -> bool:
    """An input with no audio stream stays so; anything else may be transient (disk, memory)."""
    return not any("matches no streams" in line for line in tail)


def _sanitize(text: str, names: dict[str, str]) -> str:
    """Show users their file names, never storage paths; keep the reason short."""
    for path, name in sorted(names.items(), key=lambda item: -len(item[0])):
        text = text.replace(path, name)
    return text.strip()[:REASON_LIMIT]


def _record_output(
    ctx: JobContext,
    *,
    key: str,
    size: int,
    sha256: str,
    filename: str,
    media_info: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """One transaction: progress 100, earlier outputs of this job replaced by the new one.

    Returns the new row and the storage keys of the replaced outputs, for the caller to
    delete once this has committed.
    """
    with ctx.db.transaction() as conn:
        # First, so the job row is locked and still ours (LeaseLost rolls all of this back).
        ctx.progress(conn, progress_pct=100.0)
        replaced = db.fetch_all(
            conn,
            "DELETE FROM files WHERE job_id = %s AND role = 'output' RETURNING storage_key",
            (ctx.job_id,),
        )
        row = files.create_file(
            conn,
            owner_id=str(ctx.job["owner_id"]),
            role="output",
            filename=filename,
            content_type="audio/mpeg",
            size=size,
            sha256=sha256,
            storage_key=key,
            media=media_info,
            job_id=ctx.job_id,
        )
    return row, [r["storage_key"] for r in replaced]


def _seconds(duration: float | None) -> str:
    return f"{duration:.1f}s" if duration else "unknown duration"
