"""The scrape worker in-process with real yt-dlp, PostgreSQL and RabbitMQ, reading a local
feed server (tests/feeds.py) instead of the video site: limit and date selection, the
storage layout and files rows, per-video failures, source failures, no second download of
a stored video, cancel mid-download, hand-back and resume, parallel downloads, and the
single-video retry."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobgate import db as dbmod
from jobgate import files, jobs, videos
from jobgate.errors import Conflict
from jobgate.identity import Principal
from jobgate.jobs import job_items, submission
from jobgate_gateway.kinds import scrape as scrape_api
from tests.factories.jobs import enqueue, make_job, scrape_params, wait_for_job
from tests.factories.users import make_user
from tests.factories.videos import make_video_row
from tests.feeds import FeedServer, FeedVideo, feed_videos
from tests.media import make_video

UTC = dt.UTC
NEWEST = dt.datetime(2025, 3, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def feeds(video: Path) -> Iterator[FeedServer]:
    server = FeedServer(video).start()
    yield server
    server.close()


@pytest.fixture
def worker_settings(worker_settings, feeds):
    """Every scrape worker of this module reads the local feed server, never the site."""
    return worker_settings.replace(
        scrape_profile_url=feeds.profile_url,
        scrape_hashtag_url=feeds.hashtag_url,
        scrape_retry_backoff_s=0.05,
        scrape_socket_timeout_s=5.0,
    )


@pytest.fixture
def run_worker(start_worker):
    return functools.partial(start_worker, "scrape")


def submit(db, settings, owner, **params):
    job = make_job(db, owner_id=owner["id"], kind="scrape", params=scrape_params(**params))
    enqueue(db, settings.amqp_url, job)
    return job


def finished(db, job, **kwargs):
    return wait_for_job(db, job["id"], {"completed", "failed", "cancelled"}, **kwargs)


def job_videos(db, job):
    with db.transaction() as conn:
        return {v["video_id"]: v for v in videos.videos_of_job(conn, job_id=str(job["id"]))}


def outputs(db, job):
    with db.transaction() as conn:
        return files.outputs_of(conn, job_id=str(job["id"]))


def scratch_left(settings) -> list[str]:
    return os.listdir(Path(settings.storage_dir) / "tmp")


def test_limit_takes_the_newest_videos_and_stores_them_with_metadata(
    db, worker_settings, run_worker, feeds, storage, video
):
    feed = feed_videos(6, newest=NEWEST, step=dt.timedelta(days=7))
    feeds.add("profile", "alice", feed)
    owner = make_user(db)
    run_worker()
    job = submit(db, worker_settings, owner, value="@alice", limit=3)
    done = finished(db, job)
    assert done["status"] == "completed", done["error"]
    newest = [v.id for v in feed[:3]]
    assert (done["items_total"], done["items_done"], done["items_failed"]) == (3, 3, 0)
    assert done["progress_pct"] == 100
    assert done["result"]["total_videos"] == 3
    assert done["result"]["successful_downloads"] == 3
    assert done["result"]["failed_downloads"] == done["result"]["skipped_existing"] == 0
    assert done["bytes_done"] == 3 * video.stat().st_size

    rows = job_videos(db, job)
    assert sorted(rows) == sorted(newest)
    first = rows[feed[0].id]
    assert first["status"] == "uploaded" and first["error"] is None
    assert first["owner_id"] == owner["id"] and first["job_id"] == job["id"]
    assert (first["mode"], first["value"]) == ("profile", "alice")  # the '@' was dropped
    assert first["author_username"] == "alice"  # a profile's videos are its own
    assert first["description"] == feed[0].description
    assert first["hashtags"] == ["funny", "n0"]
    assert first["created_at_tiktok"] == feed[0].published
    assert first["folder_path"] == "TikTok/profile/alice/2025/03"
    assert first["file_size"] == video.stat().st_size
    assert first["has_watermark"] is False
    assert first["duration"] == pytest.approx(2.0, abs=0.2)  # probed: the feed says nothing
    # Two files per video, outputs of the job, served by the files API.
    out = {f["id"]: f for f in outputs(db, job)}
    assert len(out) == 6
    stored = out[first["video_file_id"]]
    assert (stored["filename"], stored["content_type"]) == (f"{feed[0].id}.mp4", "video/mp4")
    assert stored["role"] == "output" and stored["owner_id"] == owner["id"]
    assert storage.path(stored["storage_key"]).read_bytes() == video.read_bytes()
    meta = out[first["metadata_file_id"]]
    assert meta["filename"] == f"{feed[0].id}.info.json"
    info = json.loads(storage.path(meta["storage_key"]).read_text())
    assert info["id"] == feed[0].id and info["description"] == feed[0].description
    assert worker_settings.storage_dir not in json.dumps(info)
    # The feed was read once; only the chosen videos were fetched.
    assert feeds.gets["/@alice"] == 1
    assert all(feeds.downloads(v.id) > 0 for v in feed[:3])
    assert all(feeds.downloads(v.id) == 0 for v in feed[3:])
    with db.transaction() as conn:
        items = job_items.open_items(conn, job_id=str(job["id"]))
    assert items == []
    assert scratch_left(worker_settings) == []


def test_since_and_until_select_by_publication_date(
    db, worker_settings, run_worker, feeds, storage
):
    """A hashtag, with a folder above the layout: the videos published inside the window
    (both ends included) and no others, each in its month's folder."""
    feed = [
        FeedVideo("7100000000000000001", dt.datetime(2025, 5, 2, tzinfo=UTC), "late #x"),
        FeedVideo("7100000000000000002", dt.datetime(2025, 4, 30, 23, 59, 59, tzinfo=UTC), "#x"),
        FeedVideo("7100000000000000003", dt.datetime(2025, 4, 10, tzinfo=UTC), "#x"),
        FeedVideo("7100000000000000004", dt.datetime(2025, 3, 31, 8, tzinfo=UTC), "#x"),
        FeedVideo("7100000000000000005", dt.datetime(2025, 3, 1, tzinfo=UTC), "early #x"),
    ]
    feeds.add("hashtag", "cats", feed)
    run_worker()
    job = submit(
        db,
        worker_settings,
        make_user(db),
        mode="hashtag",
        value="#cats",
        since="2025-03-31T08:00:00Z",
        until="2025-04-30T23:59:59Z",
        drive_folder_id="team-drive",
    )
    done = finished(db, job)
    assert done["status"] == "completed", done["error"]
    rows = job_videos(db, job)
    assert sorted(rows) == [v.id for v in sorted(feed[1:4], key=lambda v: v.id)]
    assert {rows[v.id]["folder_path"] for v in feed[1:3]} == {
        "team-drive/TikTok/hashtag/cats/2025/04"
    }
    assert rows[feed[3].id]["folder_path"] == "team-drive/TikTok/hashtag/cats/2025/03"
    assert rows[feed[2].id]["author_username"] is None  # a tag's feed names no author
    assert feeds.gets["/tag/cats"] == 1
    assert feeds.downloads(feed[0].id) == feeds.downloads(feed[4].id) == 0


def test_a_video_that_fails_is_failed_and_the_job_completes(db, worker_settings, run_worker, feeds):
    feed = feed_videos(3, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "alice", feed)
    feeds.fail(feed[1].id)
    run_worker(scrape_video_retries=1)
    job = submit(db, worker_settings, make_user(db), limit=3)
    done = finished(db, job)
    assert done["status"] == "completed", done["error"]
    assert (done["items_done"], done["items_failed"]) == (2, 1)
    assert done["result"]["failed_downloads"] == 1
    assert done["result"]["successful_downloads"] == 2
    rows = job_videos(db, job)
    bad = rows[feed[1].id]
    assert bad["status"] == "failed"
    assert "HTTP Error 404" in bad["error"] and not bad["error"].startswith("ERROR")
    assert bad["video_file_id"] is None
    assert feeds.downloads(feed[1].id) == 2  # one try and one retry, inside the attempt
    assert {rows[v.id]["status"] for v in (feed[0], feed[2])} == {"uploaded"}
    with db.transaction() as conn:
        failed = job_items.failed_items(conn, job_id=str(job["id"]))
    assert [f["path"] for f in failed] == [feed[1].id]
    assert len(outputs(db, job)) == 4
    assert scratch_left(worker_settings) == []


def test_a_source_that_cannot_be_read_fails_the_job_with_the_extractors_error(
    db, worker_settings, run_worker, feeds
):
    run_worker(scrape_list_retries=1)
    job = make_job(
        db,
        owner_id=make_user(db)["id"],
        kind="scrape",
        params=scrape_params(value="nobody"),
        max_attempts=2,
        backoff="fixed",
        backoff_seconds=0.1,
    )
    enqueue(db, worker_settings.amqp_url, job)
    done = finished(db, job)
    assert done["status"] == "failed"
    assert done["attempt"] == 2
    assert "HTTP Error 404" in done["error"] and "@nobody" in done["error"]
    assert feeds.gets["/@nobody"] == 4  # two tries in each of two attempts
    assert done["items_total"] == 0


def test_stored_videos_are_linked_not_downloaded_again(
    db, worker_settings, run_worker, feeds, video
):
    """A second job (a schedule's next run, say) over the same profile: the videos the
    owner has are linked to it and count as its downloads; only new ones are fetched.
    Another owner's job downloads its own copy."""
    older = feed_videos(3, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "alice", older)
    owner = make_user(db)
    run_worker()
    first = submit(db, worker_settings, owner, limit=3)
    assert finished(db, first)["status"] == "completed"
    gets_before = {v.id: feeds.downloads(v.id) for v in older}

    newer = feed_videos(
        2, newest=NEWEST + dt.timedelta(days=2), step=dt.timedelta(hours=1), prefix="8"
    )
    feeds.add("profile", "alice", newer)
    second = submit(db, worker_settings, owner, limit=4)
    done = finished(db, second)
    assert done["status"] == "completed", done["error"]
    assert (done["items_total"], done["items_done"], done["items_failed"]) == (4, 4, 0)
    assert done["result"]["skipped_existing"] == 2
    assert done["result"]["successful_downloads"] == 4
    assert {v.id: feeds.downloads(v.id) for v in older} == gets_before
    assert all(feeds.downloads(v.id) > 0 for v in newer)
    rows = job_videos(db, second)
    assert sorted(rows) == sorted([v.id for v in newer] + [v.id for v in older[:2]])
    assert {rows[v.id]["reused"] for v in older[:2]} == {True}
    assert {rows[v.id]["reused"] for v in newer} == {False}
    # A met video now names the job that met it last; its files stay the first job's.
    assert rows[older[0].id]["job_id"] == second["id"]
    assert len(outputs(db, first)) == 6 and len(outputs(db, second)) == 4
    assert len(job_videos(db, first)) == 3  # the first job's own list is unchanged

    other = submit(db, worker_settings, make_user(db), limit=1)
    assert finished(db, other)["status"] == "completed"
    assert feeds.downloads(newer[0].id) == 2 * 2  # its own copy: downloaded once more
    with db.transaction() as conn:
        stats = videos.video_stats(conn, owner_id=str(owner["id"]))
        everyone = videos.video_stats(conn, owner_id=None)
        page, total = videos.list_videos(
            conn, owner_id=str(owner["id"]), hashtag="#FUNNY", limit=2, offset=1
        )
    assert stats["total_videos"] == stats["uploaded_videos"] == stats["downloaded_videos"] == 5
    assert stats["failed_videos"] == 0
    assert stats["total_storage_bytes"] > 5 * video.stat().st_size  # and the info JSONs
    assert everyone["total_videos"] == 6
    assert total == 5 and len(page) == 2


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s MP4 (about 180 KB): several reads long at a throttled rate."""
    return make_video(tmp_path_factory.mktemp("media") / "long.mp4", seconds=10, size="320x240")


def test_cancel_stops_the_download_in_progress_and_leaves_no_partial_file(
    db, worker_settings, run_worker, feeds, storage, long_video
):
    feeds.clip = long_video.read_bytes()
    feed = feed_videos(2, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "alice", feed)
    feeds.throttle(48_000)  # about 4 s per video, a read every third of a second
    run_worker()
    job = submit(db, worker_settings, make_user(db), limit=2)
    deadline = time.monotonic() + 10
    while not (
        feeds.sending[feed[0].id]
        and any(name.endswith(".part") for _, _, names in os.walk(storage.tmp) for name in names)
    ):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.05)
    assert not feeds.sending[feed[1].id]
    with db.transaction() as conn:
        submission.request_cancel(conn, job_id=str(job["id"]))
    asked = time.monotonic()
    done = finished(db, job)
    assert done["status"] == "cancelled", done["error"]
    assert time.monotonic() - asked < 2.0
    assert scratch_left(worker_settings) == []  # the .part file went with its directory
    assert outputs(db, job) == []
    assert [p for p in storage.objects.rglob("*") if p.is_file()] == []
    rows = job_videos(db, job)
    assert {row["status"] for row in rows.values()} == {"pending"}  # not stored, not held
    assert feeds.downloads(feed[1].id) == 0


def test_a_handed_back_job_resumes_without_downloading_a_stored_video_again(
    db, worker_settings, run_worker, feeds, video
):
    feed = feed_videos(5, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "alice", feed)
    feeds.throttle(video.stat().st_size * 2)  # about half a second per video
    worker = run_worker(worker_grace_seconds=0.2)
    job = submit(db, worker_settings, make_user(db), limit=5)
    wait_for_job(db, job["id"], {"running"}, until=lambda j: j["items_done"] >= 2)
    worker.request_stop()
    back = wait_for_job(db, job["id"], {"pending"}, timeout=10)
    assert back["attempt"] == 0 and 2 <= back["items_done"] < 5
    rows = job_videos(db, job).values()
    stored = [v for v in rows if v["status"] == "uploaded"]
    gets = {v["video_id"]: feeds.downloads(v["video_id"]) for v in stored}
    # As a worker killed mid-download leaves it: a video held by this job.
    [held, *_] = [v for v in rows if v["status"] != "uploaded"]
    with db.transaction() as conn:
        assert held["status"] == "pending"  # the hand-back let go of it
        videos.mark_status(
            conn, record_id=str(held["id"]), job_id=str(job["id"]), status="downloading"
        )

    feeds.throttle(0)
    run_worker()
    done = finished(db, job)
    assert done["status"] == "completed", done["error"]
    assert (done["items_total"], done["items_done"]) == (5, 5)
    assert done["result"]["skipped_existing"] == 0  # its own videos, not someone's earlier
    assert {v: feeds.downloads(v) for v in gets} == gets  # none fetched twice
    assert feeds.gets["/@alice"] == 1  # the resumed attempt did not list again
    assert len(outputs(db, job)) == 10  # two files per video, no duplicates
    assert {v["status"] for v in job_videos(db, job).values()} == {"uploaded"}
    assert scratch_left(worker_settings) == []


def test_downloads_run_in_parallel_when_configured(db, worker_settings, run_worker, feeds, video):
    feed = feed_videos(6, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "alice", feed)
    feeds.throttle(video.stat().st_size * 3)
    run_worker(scrape_download_concurrency=3)
    job = submit(db, worker_settings, make_user(db), limit=6)
    done = finished(db, job)
    assert done["status"] == "completed", done["error"]
    assert done["items_done"] == 6
    assert feeds.most_sending >= 3  # one at a time would overlap two at most (a probe)
    assert len(outputs(db, job)) == 12


def test_a_single_video_retry_downloads_exactly_that_video(
    db, worker_settings, run_worker, feeds, gateway_app
):
    """`retry_video` (behind seed 002's POST /videos/{id}/retry) queues a job for one failed
    video: no listing, the folder of the job that met it, and the video stored at last."""
    feed = feed_videos(2, newest=NEWEST, step=dt.timedelta(days=40))
    feeds.add("profile", "alice", feed)
    feeds.fail(feed[1].id)
    owner = make_user(db)
    run_worker(scrape_video_retries=0)
    first = submit(db, worker_settings, owner, limit=2, drive_folder_id="mine")
    assert finished(db, first)["items_failed"] == 1
    with db.transaction() as conn:
        failed = videos.get_video(conn, video_id=feed[1].id, owner_id=str(owner["id"]))
    assert failed["status"] == "failed"

    feeds.heal(feed[1].id)
    principal = Principal(str(owner["id"]), owner["username"], "user", (), "jwt")
    svc = gateway_app.extensions["jobgate"]
    with gateway_app.test_request_context():
        retry = scrape_api.retry_video(svc, principal, failed)
    assert retry["params"]["video_ids"] == [feed[1].id]
    done = finished(db, retry)
    assert done["status"] == "completed", done["error"]
    assert (done["items_total"], done["items_done"]) == (1, 1)
    assert feeds.gets["/@alice"] == 1  # not listed again
    assert feeds.downloads(feed[0].id) == 2  # the stored one was not touched
    with db.transaction() as conn:
        now = videos.get_video(conn, video_id=feed[1].id, owner_id=str(owner["id"]))
        same = videos.get_video(conn, video_id=str(now["id"]), owner_id=None)
    assert now["status"] == "uploaded" and now["job_id"] == retry["id"]
    assert now["folder_path"] == "mine/TikTok/profile/alice/2025/02"
    assert now["description"] == feed[1].description  # kept from the listing
    assert same["id"] == now["id"]
    body = scrape_api.video_to_dict(now)
    assert body["id"] == feed[1].id and body["drive_file_id"] == str(now["video_file_id"])
    assert body["created_at_tiktok"] == "2025-02-08T12:00:00.000Z"
    [link] = scrape_api.drive_links([now])
    assert link == {
        "video_id": feed[1].id,
        "video_link": f"/api/v1/files/{now['video_file_id']}/content",
        "metadata_link": f"/api/v1/files/{now['metadata_file_id']}/content",
        "folder_path": "mine/TikTok/profile/alice/2025/02",
    }
    with gateway_app.test_request_context(), pytest.raises(Conflict, match="already uploaded"):
        scrape_api.retry_video(svc, principal, now)


def test_named_videos_that_are_not_the_owners_fail_the_job_at_once(
    db, worker_settings, run_worker, feeds
):
    owner = make_user(db)
    earlier = make_job(db, owner_id=owner["id"], kind="scrape", params=scrape_params())
    make_video_row(db, earlier, "7000000000000000042")
    run_worker()
    job = submit(
        db, worker_settings, owner, video_ids=["7000000000000000042", "7000000000000000043"]
    )
    done = finished(db, job)
    assert done["status"] == "failed" and done["attempt"] == 1
    assert done["error"] == "no such video: 7000000000000000043"
    assert feeds.gets == {}
    with db.transaction() as conn:
        assert jobs.get_job(conn, job_id=str(job["id"]))["items_total"] == 0


def test_two_jobs_of_one_owner_download_each_video_once(
    db, worker_settings, run_worker, feeds, video
):
    """Two jobs over the same videos at once (a manual job beside a schedule's run): a video
    one job is downloading is waited for by the other, then linked; none is fetched twice."""
    feed = feed_videos(3, newest=NEWEST, step=dt.timedelta(days=1))
    feeds.add("profile", "alice", feed)
    feeds.throttle(video.stat().st_size * 3)
    run_worker(worker_concurrency=2)
    owner = make_user(db)
    first = submit(db, worker_settings, owner, limit=3)
    second = submit(db, worker_settings, owner, limit=3)
    ends = [finished(db, first), finished(db, second)]
    assert [(j["status"], j["items_done"]) for j in ends] == [("completed", 3)] * 2
    assert sum(j["result"]["skipped_existing"] for j in ends) == 3
    assert {feeds.downloads(v.id) for v in feed} == {2}  # probe + download, once each
    assert len(outputs(db, first)) + len(outputs(db, second)) == 6


def test_a_claim_is_held_while_its_job_runs(db):
    """`claim_download`: a video one running job downloads cannot be taken by another
    job of its owner, unless that job stops running (its worker died) or it is stored."""
    owner = make_user(db)
    holder = make_job(db, owner_id=owner["id"], kind="scrape", params=scrape_params())
    other = make_job(db, owner_id=owner["id"], kind="scrape", params=scrape_params())
    row = make_video_row(db, holder, "7000000000000000007", status="pending")
    record_id = str(row["id"])
    with db.transaction() as conn:
        dbmod.execute(conn, "UPDATE jobs SET status = 'running' WHERE id = %s", (holder["id"],))
        assert videos.claim_download(conn, record_id=record_id, job_id=str(holder["id"]))
        assert videos.claim_download(conn, record_id=record_id, job_id=str(other["id"])) is None
        # The holder's own next attempt takes it again.
        assert videos.claim_download(conn, record_id=record_id, job_id=str(holder["id"]))
        dbmod.execute(conn, "UPDATE jobs SET status = 'failed' WHERE id = %s", (holder["id"],))
        taken = videos.claim_download(conn, record_id=record_id, job_id=str(other["id"]))
        assert taken["job_id"] == other["id"] and taken["status"] == "downloading"
        assert videos.release_held(conn, job_id=str(other["id"])) == 1
        assert videos.get_record(conn, record_id=record_id)["status"] == "pending"
