"""The convert worker in-process with real ffmpeg, PostgreSQL and RabbitMQ: the MP3 and its
files row, inputs without audio, corrupt inputs, progress, cancel, hand-back, and an earlier
attempt's output being replaced rather than kept next to the new one."""

from __future__ import annotations

import functools
import os
import subprocess
import time
from pathlib import Path

import pytest

from jobgate import files, jobs, media
from jobgate.jobs import job_logs, submission
from tests.factories.files import make_output, make_upload
from tests.factories.jobs import convert_params, enqueue, make_job, wait_for_job
from tests.factories.users import make_user
from tests.media import mp3_header_ok

LONG_SECONDS = 480  # ~3 s of conversion here: long enough to watch, cancel and hand back
NO_SUCH_FILE = "00000000-0000-4000-8000-000000000000"


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [media.ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=60,
    )


def _lavfi(*sources: str) -> list[str]:
    return [arg for source in sources for arg in ("-f", "lavfi", "-i", source)]


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Inputs made by ffmpeg itself, cheaply: tiny video; the long one's audio is lossless
    FLAC of a sine (fast to write, small), so its conversion time is mostly MP3 encoding."""
    root = tmp_path_factory.mktemp("clips")
    out = {name: root / f"{name}.mp4" for name in ("short", "silent", "long", "garbage")}
    video = "testsrc=duration=3:size=64x48:rate=10"
    tone = "sine=frequency=440:duration=3:sample_rate=44100"
    _ffmpeg(*_lavfi(video, tone), "-ac", "1", "-c:v", "libx264", "-c:a", "aac", str(out["short"]))
    _ffmpeg(*_lavfi(video), "-c:v", "libx264", "-an", str(out["silent"]))
    _ffmpeg(
        *_lavfi(
            f"color=size=16x16:rate=1:duration={LONG_SECONDS}",
            f"sine=frequency=440:duration={LONG_SECONDS}:sample_rate=44100",
        ),
        *("-ac", "2", "-c:v", "libx264", "-c:a", "flac", str(out["long"])),
    )
    out["garbage"].write_bytes(os.urandom(64 * 1024))
    return out


@pytest.fixture
def run_worker(start_worker):
    return functools.partial(start_worker, "convert")


def submit(db, settings, owner, upload_row, **fields):
    params = convert_params(upload_row, output_name="clip.mp3") | fields.pop("params", {})
    job = make_job(db, owner_id=owner["id"], kind="convert", params=params, **fields)
    enqueue(db, settings.amqp_url, job)
    return job


def get_job(db, job_id):
    with db.transaction() as conn:
        return jobs.get_job(conn, job_id=str(job_id))


def outputs(db, job_id):
    with db.transaction() as conn:
        return files.outputs_of(conn, job_id=str(job_id))


def scratch_left(settings) -> list[str]:
    return os.listdir(Path(settings.storage_dir) / "tmp")


def ffmpeg_pids(settings) -> list[int]:
    """Live ffmpeg processes working on this test's storage directory."""
    needle = os.fsencode(os.path.abspath(settings.storage_dir))
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline and b"libmp3lame" in cmdline:
                pids.append(int(entry))
    return pids


def test_converts_to_an_mp3_output_file(db, worker_settings, run_worker, storage, clips, tmp_path):
    owner = make_user(db)
    source = make_upload(db, storage, owner, clips["short"], tmp_path)
    run_worker()
    job = submit(db, worker_settings, owner, source, params={"bitrate": "96k"})
    done = wait_for_job(db, job["id"], {"completed", "failed"})
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 1 and done["progress_pct"] == 100

    [out] = outputs(db, job["id"])
    assert out["owner_id"] == owner["id"] and out["role"] == "output"
    assert (out["filename"], out["content_type"]) == ("clip.mp3", "audio/mpeg")
    path = storage.path(out["storage_key"])
    data = path.read_bytes()
    assert mp3_header_ok(data)
    assert out["size"] == len(data)
    # 96 kbit/s for 3 s is 36 000 bytes, plus tags: the requested bitrate was used.
    assert 34_000 < len(data) < 40_000
    info = media.probe(path)
    assert info.audio_codec == "mp3" and info.video_codec is None
    assert abs(info.duration_s - source["media"]["duration_s"]) <= 0.1
    assert out["media"]["duration_s"] == info.duration_s
    assert done["result"]["output_file"] == str(out["id"])
    assert done["result"]["filename"] == "clip.mp3"
    assert done["result"]["size"] == len(data)
    assert done["result"]["bitrate"] == "96k"
    assert done["result"]["duration_s"] == info.duration_s
    assert 0 < done["result"]["seconds"] < 10
    assert scratch_left(worker_settings) == []
    assert ffmpeg_pids(worker_settings) == []


def test_an_earlier_attempts_output_is_replaced(
    db, worker_settings, run_worker, storage, clips, tmp_path
):
    """A retried or resumed job ends with one output: the new one, with the default
    bitrate; the earlier row and its stored object are gone."""
    owner = make_user(db)
    source = make_upload(db, storage, owner, clips["short"], tmp_path)
    job = make_job(db, owner_id=owner["id"], kind="convert", params=convert_params(source))
    old_file = tmp_path / "old.mp3"
    old_file.write_bytes(b"an earlier attempt's output")
    old_key = make_output(db, storage, job, old_file)["storage_key"]
    enqueue(db, worker_settings.amqp_url, job)
    run_worker()
    done = wait_for_job(db, job["id"], {"completed", "failed"})
    assert done["status"] == "completed", done["error"]
    [out] = outputs(db, job["id"])
    assert out["storage_key"] != old_key
    assert not storage.path(old_key).exists()
    assert storage.path(out["storage_key"]).exists()
    # No output_name in the params: named after the upload.
    assert done["result"]["filename"] == out["filename"] == "clip.mp3"
    assert done["result"]["bitrate"] == worker_settings.convert_default_bitrate == "192k"


@pytest.mark.parametrize("recorded", ["probed", "absent", "wrong"])
def test_a_video_without_audio_fails_at_once(
    db, worker_settings, run_worker, storage, clips, tmp_path, recorded
):
    """Whether the upload's media says so, says nothing (the worker probes), or wrongly
    claims audio (ffmpeg finds none): one attempt, and the reason users are shown."""
    owner = make_user(db)
    info = {
        "probed": "probe",
        "absent": None,
        "wrong": {"duration_s": 3.0, "audio_codec": "aac", "has_audio": True},
    }[recorded]
    source = make_upload(db, storage, owner, clips["silent"], tmp_path, info=info)
    run_worker()
    job = submit(db, worker_settings, owner, source, max_attempts=3, backoff="fixed")
    done = wait_for_job(db, job["id"], {"completed", "failed"})
    assert done["status"] == "failed"
    assert done["error"] == "input has no audio stream"
    assert done["attempt"] == 1
    assert outputs(db, job["id"]) == []
    assert scratch_left(worker_settings) == []


@pytest.mark.parametrize(("recorded", "attempts"), [(True, 2), (False, 1)])
def test_a_corrupt_input_fails_with_ffmpegs_reason(
    db, worker_settings, run_worker, storage, clips, tmp_path, recorded, attempts
):
    """Garbage bytes named .mp4. With a media description from upload, ffmpeg's failure
    is retried (it may be transient) until the attempts run out; without one, the probe
    finds no media, which no retry changes. Either way users see ffmpeg's reason, with no
    storage path in it."""
    owner = make_user(db)
    info = {"duration_s": 3.0, "audio_codec": "aac", "has_audio": True} if recorded else None
    source = make_upload(db, storage, owner, clips["garbage"], tmp_path, info=info)
    run_worker()
    job = submit(
        db, worker_settings, owner, source, max_attempts=2, backoff="fixed", backoff_seconds=0.1
    )
    done = wait_for_job(db, job["id"], {"completed", "failed"})
    assert done["status"] == "failed"
    assert done["attempt"] == attempts
    assert "Invalid data found when processing input" in done["error"]
    assert worker_settings.storage_dir not in done["error"]
    assert source["storage_key"] not in done["error"]
    if recorded:
        with db.transaction() as conn:
            logs = job_logs.get_logs(conn, job_id=str(job["id"]))
        assert any("retry in" in entry["message"] for entry in logs)
    assert outputs(db, job["id"]) == []
    assert scratch_left(worker_settings) == []


def test_progress_rises_while_converting_and_ends_at_100(
    db, worker_settings, run_worker, storage, clips, tmp_path
):
    owner = make_user(db)
    source = make_upload(db, storage, owner, clips["long"], tmp_path, filename="long.mp4")
    run_worker(convert_progress_interval_ms=200)
    job = submit(db, worker_settings, owner, source)
    seen: list[float] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = get_job(db, job["id"])
        if row["progress_pct"] is not None:
            seen.append(row["progress_pct"])
        if row["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert row["status"] == "completed", row["error"]
    assert seen[-1] == 100
    assert seen == sorted(seen)
    during = sorted({pct for pct in seen if 0 < pct < 100})
    assert len(during) >= 3, seen
    [out] = outputs(db, job["id"])
    assert abs(out["media"]["duration_s"] - LONG_SECONDS) <= 0.1


def test_cancel_stops_ffmpeg_within_a_second(
    db, worker_settings, run_worker, storage, clips, tmp_path
):
    owner = make_user(db)
    source = make_upload(db, storage, owner, clips["long"], tmp_path, filename="long.mp4")
    run_worker(convert_progress_interval_ms=100)
    job = submit(db, worker_settings, owner, source)
    wait_for_job(db, job["id"], {"running"}, until=lambda j: (j["progress_pct"] or 0) > 0)
    [pid] = ffmpeg_pids(worker_settings)
    assert len(scratch_left(worker_settings)) == 1  # the scratch directory, in use
    with db.transaction() as conn:
        submission.request_cancel(conn, job_id=str(job["id"]))
    asked = time.monotonic()
    done = wait_for_job(db, job["id"], {"cancelled", "completed", "failed"})
    assert done["status"] == "cancelled", done["error"]
    assert time.monotonic() - asked < 1.5
    assert done["progress_pct"] < 100
    # ffmpeg is gone and reaped (a zombie would still have its /proc entry).
    assert not os.path.exists(f"/proc/{pid}")
    assert ffmpeg_pids(worker_settings) == []
    assert scratch_left(worker_settings) == []
    assert outputs(db, job["id"]) == []


def test_shutdown_hands_a_conversion_back(
    db, worker_settings, run_worker, storage, clips, tmp_path
):
    owner = make_user(db)
    source = make_upload(db, storage, owner, clips["long"], tmp_path, filename="long.mp4")
    worker = run_worker(worker_grace_seconds=0.2, convert_progress_interval_ms=100)
    job = submit(db, worker_settings, owner, source)
    wait_for_job(db, job["id"], {"running"}, until=lambda j: (j["progress_pct"] or 0) > 0)
    worker.request_stop()
    back = wait_for_job(db, job["id"], {"pending"}, timeout=10)
    assert back["attempt"] == 0 and back["worker_id"] is None
    assert ffmpeg_pids(worker_settings) == []
    assert scratch_left(worker_settings) == []
    assert outputs(db, job["id"]) == []
