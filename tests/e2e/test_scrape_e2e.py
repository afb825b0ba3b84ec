"""Scrape jobs through the real processes: the gunicorn gateway, a `jobgate-worker scrape`
process, PostgreSQL and RabbitMQ, with a local feed server (tests/feeds.py) standing in for
the video site. What the in-process tests (tests/integration/test_scrape_worker.py) cannot
show: a worker killed with SIGKILL mid-job, and seed 002's routes (`/api/v1/jobs`,
`/api/v1/videos/{id}/retry`, `/api/v1/files/{id}/content`) driving the worker over HTTP."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import wait_status
from tests.feeds import FeedServer, feed_videos
from tests.helpers import DEMO_KEY
from tests.media import make_video

pytestmark = pytest.mark.e2e
KEY = {"X-API-Key": DEMO_KEY}
NEWEST = dt.datetime(2025, 6, 15, 12, tzinfo=dt.UTC)
DONE = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scrape-clips")
    return {
        "short": make_video(root / "short.mp4", seconds=1),
        # About 180 KB: several seconds at a throttled rate, so a download can be cancelled.
        "long": make_video(root / "long.mp4", seconds=10, size="320x240"),
    }


@pytest.fixture
def feeds(clips):
    server = FeedServer(clips["short"]).start()
    yield server
    server.close()


@pytest.fixture
def scrape_stack(make_stack, feeds):
    stack = make_stack(
        SCRAPE_PROFILE_URL=feeds.profile_url,
        SCRAPE_HASHTAG_URL=feeds.hashtag_url,
        SCRAPE_VIDEO_RETRIES="1",
        SCRAPE_RETRY_BACKOFF_S="0.05",
        SCRAPE_SOCKET_TIMEOUT_S="5",
    )
    stack.start_worker("scrape")
    return stack


def api(stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{stack.url}/api/v1{path}", headers=KEY, timeout=10, **kwargs)


def submit(stack, value: str, limit: int) -> dict[str, Any]:
    r = api(stack, "POST", "/jobs", json={"mode": "profile", "value": value, "limit": limit})
    assert r.status_code == 201, r.text
    return r.json()


def job_body(stack, job_id: str) -> dict[str, Any]:
    """`GET /api/v1/jobs/{id}`: `{"job": ..., "videos": [...], "drive_links": [...]}`."""
    r = api(stack, "GET", f"/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_job(
    stack, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = job_body(stack, job_id)
        if until(body["job"]):
            return body
        assert body["job"]["status"] not in DONE, body["job"]
        time.sleep(0.05)
    raise AssertionError(f"job {job_id}: {body['job']}")


def finished(stack, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    wait_status(f"{stack.url}/api/v1/jobs/{job_id}", KEY, DONE, timeout=timeout)
    return job_body(stack, job_id)


def scratch(stack) -> list[str]:
    """What is left in the stack's storage scratch directory (downloads in progress)."""
    tmp = stack.workdir / "storage" / "tmp"
    return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*")) if tmp.exists() else []


@pytest.mark.slow
def test_worker_killed_mid_job_completes_on_a_new_worker_without_fetching_twice(
    scrape_stack, feeds, clips
):
    stack = scrape_stack
    feed = feed_videos(6, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "alice", feed)
    feeds.throttle(len(feeds.clip) * 2)  # about half a second per enclosure
    job_id = submit(stack, "alice", 6)["id"]
    # Two videos stored and the next one's enclosure on the wire: kill the worker now.
    wait_job(stack, job_id, lambda j: j["successful_downloads"] >= 2 and bool(feeds.sending))
    worker = stack.procs["worker-scrape"]
    worker.send_signal(signal.SIGKILL)
    worker.wait()

    at_kill = job_body(stack, job_id)
    assert at_kill["job"]["status"] == "running"
    stored = {v["id"] for v in at_kill["videos"] if v["status"] == "uploaded"}
    assert 2 <= len(stored) < 6, at_kill["videos"]
    gets_at_kill = {v.id: feeds.downloads(v.id) for v in feed}
    untouched = [v.id for v in feed if gets_at_kill[v.id] == 0]
    in_flight = [v.id for v in feed if gets_at_kill[v.id] and v.id not in stored]
    assert untouched and in_flight, gets_at_kill  # killed mid-job, mid-download

    feeds.throttle(0)
    stack.start_worker("scrape", name="worker-scrape-2")
    done = finished(stack, job_id, timeout=60)
    job = done["job"]
    assert job["status"] == "completed", job["error"]
    assert job["attempt"] == 2
    assert (job["total_videos"], job["successful_downloads"], job["failed_downloads"]) == (6, 6, 0)
    assert {v["id"]: v["status"] for v in done["videos"]} == {v.id: "uploaded" for v in feed}
    assert len(done["drive_links"]) == 6
    for link in done["drive_links"]:
        r = requests.get(f"{stack.url}{link['video_link']}", headers=KEY, timeout=10)
        assert r.status_code == 200 and r.content == feeds.clip, link

    # What one download costs in enclosure GETs (yt-dlp probes, then downloads), measured
    # on videos only the new worker touched.
    per_download = {feeds.downloads(v) for v in untouched}
    assert len(per_download) == 1 and per_download != {0}, per_download
    [cost] = per_download
    # A video stored before the kill is never fetched again, by the new worker or anyone.
    assert {v: feeds.downloads(v) for v in stored} == {v: cost for v in stored}
    # The video in flight at the kill may be fetched again, once, from the start.
    for v in in_flight:
        assert gets_at_kill[v] < feeds.downloads(v) <= gets_at_kill[v] + cost, v
    assert feeds.gets["/@alice"] == 1  # the resumed attempt did not list the profile again


@pytest.mark.slow
def test_a_failed_video_is_retried_alone_through_the_api(scrape_stack, feeds):
    stack = scrape_stack
    feed = feed_videos(3, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "bob", feed)
    bad = feed[1].id
    feeds.fail(bad)
    job_id = submit(stack, "bob", 3)["id"]
    done = finished(stack, job_id)
    job = done["job"]
    assert job["status"] == "completed", job["error"]
    assert (job["total_videos"], job["successful_downloads"], job["failed_downloads"]) == (3, 2, 1)
    r = api(stack, "GET", f"/videos/{bad}")
    assert r.status_code == 200
    failed = r.json()
    assert failed["status"] == "failed" and "404" in failed["error"]
    assert failed["drive_file_id"] is None
    gets = {v.id: feeds.downloads(v.id) for v in feed}
    listed = feeds.gets["/@bob"]

    feeds.heal(bad)
    r = api(stack, "POST", f"/videos/{bad}/retry")
    assert r.status_code == 200, r.text
    retry = r.json()
    assert retry["video"]["id"] == bad and retry["job"]["params"]["video_ids"] == [bad]
    again = finished(stack, retry["job"]["id"])
    assert again["job"]["status"] == "completed", again["job"]["error"]
    assert (again["job"]["total_videos"], again["job"]["successful_downloads"]) == (1, 1)

    video = api(stack, "GET", f"/videos/{bad}").json()
    assert video["status"] == "uploaded" and video["error"] is None
    assert video["job_id"] == retry["job"]["id"]
    content = api(stack, "GET", f"/files/{video['drive_file_id']}/content")
    assert content.status_code == 200 and content.content == feeds.clip
    # Only the retried video was fetched; the feed was not read again.
    assert feeds.downloads(bad) > gets[bad]
    assert {v.id: feeds.downloads(v.id) for v in feed if v.id != bad} == {
        v.id: gets[v.id] for v in feed if v.id != bad
    }
    assert feeds.gets["/@bob"] == listed
    # Stored now: a second retry is refused.
    assert api(stack, "POST", f"/videos/{bad}/retry").status_code == 409


@pytest.mark.slow
def test_cancel_mid_download_stops_at_once_and_leaves_no_partial_file(scrape_stack, feeds, clips):
    stack = scrape_stack
    feeds.clip = clips["long"].read_bytes()
    feed = feed_videos(2, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "carol", feed)
    feeds.throttle(48_000)  # about 4 s per enclosure
    job_id = submit(stack, "carol", 2)["id"]
    wait_job(stack, job_id, lambda j: j["status"] == "running")
    deadline = time.monotonic() + 15
    while not any(name.endswith(".part") for name in scratch(stack)):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)

    r = api(stack, "POST", f"/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    asked = time.monotonic()
    done = finished(stack, job_id, timeout=10)
    took = time.monotonic() - asked
    assert done["job"]["status"] == "cancelled", done["job"]["error"]
    assert took < 2.0
    assert scratch(stack) == []
    assert api(stack, "GET", f"/jobs/{job_id}/output").json()["files"] == []
    assert done["drive_links"] == []
    assert {v["status"] for v in done["videos"]} <= {"pending"}
    assert feeds.downloads(feed[1].id) == 0


def test_a_second_job_over_the_same_profile_downloads_nothing_again(scrape_stack, feeds):
    stack = scrape_stack
    feed = feed_videos(3, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "dave", feed)
    first = finished(stack, submit(stack, "dave", 3)["id"])
    assert first["job"]["status"] == "completed", first["job"]["error"]
    assert first["job"]["successful_downloads"] == 3
    gets = {v.id: feeds.downloads(v.id) for v in feed}
    assert all(gets.values())

    second = finished(stack, submit(stack, "dave", 3)["id"])
    job = second["job"]
    assert job["status"] == "completed", job["error"]
    assert (job["total_videos"], job["successful_downloads"], job["failed_downloads"]) == (3, 3, 0)
    assert job["result"]["skipped_existing"] == 3
    assert {v.id: feeds.downloads(v.id) for v in feed} == gets
    assert feeds.gets["/@dave"] == 2  # listed again, to find new videos
    assert {v["id"]: v["status"] for v in second["videos"]} == {v.id: "uploaded" for v in feed}
    # The second job links the first job's stored files.
    assert {link["video_link"] for link in second["drive_links"]} == {
        link["video_link"] for link in first["drive_links"]
    }
