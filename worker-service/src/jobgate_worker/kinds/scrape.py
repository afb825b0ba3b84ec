"""Scrape jobs: a profile's or a hashtag's newest videos, each stored with its metadata.

yt-dlp runs as a library. The source (`SCRAPE_PROFILE_URL` / `SCRAPE_HASHTAG_URL` with the
URL-quoted `{value}`) is listed flat, newest first: `playlistend` = `limit` when no dates
are asked for; with `since`/`until`, up to `scrape_list_max` entries are listed and the
first `limit` published inside the window are kept (checked on the listing's own dates,
since yt-dlp does not apply `match_filter` to the unresolved entries of a feed). Reading
the source is retried `scrape_list_retries` times inside the attempt; after that the
attempt fails with the extractor's error text, and the job's own retries take over.

The videos listed become the job's items (key = the source's video id) and `videos` rows,
in one transaction; a resumed attempt finds them and does not list again. Each video is
then *claimed* (`jobgate.videos`): one already stored for this owner is linked to the job
and counts as downloaded, without a byte fetched; one another running job is downloading
is waited for. Otherwise it is fully extracted and downloaded into a private scratch
directory by a download process (`scrape_fetch`: killed as soon as the attempt must stop;
the directory, `.part` file included, is removed however the download ends), retried
`scrape_video_retries` times with backoff, and stored with its info JSON as two `files`
rows (role `output`) under `[drive_folder_id/]TikTok/<mode>/<value>/<YYYY>/<MM>` (the
month it was published), kept on the video's row. A video that fails does not fail the
job. Each video's outcome, its item and the job's counters are one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import mimetypes
import os
import queue
import re
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import yt_dlp
from yt_dlp.utils import DownloadCancelled, YoutubeDLError, unsmuggle_url

from jobgate import files, jobs, videos
from jobgate.config import Settings
from jobgate.jobs import job_items
from jobgate.kinds.scrape import VIDEO_ID
from jobgate.storage import DirectoryStorage
from jobgate_worker.context import JobContext
from jobgate_worker.errors import JobFailed
from jobgate_worker.kinds import convert
from jobgate_worker.kinds.scrape_fetch import Fetched, Fetcher, error_text

log = logging.getLogger(__name__)

TICK_S = 0.2  # how often the handler looks for a stop request
STOP_WAIT_S = 1.0  # how long a stopping attempt waits for its downloads to let go
HOLDER_POLL_S = 0.5  # how often a video another job is downloading is looked at again
# Bytes of a download's first read; yt-dlp then sizes its reads to about a second of data
# (fixed 16 KiB reads made a 2 MB video 39 ms on loopback instead of 18 ms). A cancel does
# not wait for a read to end: the download process is killed.
FIRST_READ_BYTES = 16 * 1024
NO_WATERMARK_FORMAT = "b[format_note!*=?watermarked]/b"  # yt-dlp marks such formats so
HASHTAG = re.compile(r"#(\w+)")
# The parts of a listed entry kept in its item, so a resumed attempt needs no new listing.
ENTRY_KEYS = (
    "_type",
    "ie_key",
    "url",
    "id",
    "title",
    "description",
    "timestamp",
    "upload_date",
    "uploader",
    "uploader_id",
    "channel",
    "view_count",
    "like_count",
    "comment_count",
    "repost_count",
    "duration",
    "track",
    "webpage_url",
)

T = TypeVar("T")


class _Stopped(Exception):
    """A download or wait gave up because the attempt is stopping (cancel or hand-back)."""


class _VideoFailed(Exception):
    """One video could not be downloaded or stored; the job goes on."""


class _YtdlpLog:
    """yt-dlp's messages into our log (it would print them otherwise); its errors also
    arrive as exceptions, which is where the job takes them from."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    info = debug

    def warning(self, message: str) -> None:
        log.info("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        log.info("yt-dlp: %s", message)


@dataclasses.dataclass
class _Stored:
    """A video and its info JSON moved into storage, their rows not yet written."""

    objects: list[dict[str, Any]]  # files rows to write (storage key, size, hash, names)
    folder: str
    file_size: int


def run(ctx: JobContext) -> dict[str, Any]:
    """List the source (first attempt only), then download and store every open video."""
    return _Scrape(ctx).run()


housekeeping = convert.housekeeping  # the same sweep of storage leftovers (shared volume)


class _Scrape:
    """One attempt of one scrape job."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.settings: Settings = ctx.settings
        self.params = ctx.params
        self.owner_id = str(ctx.job["owner_id"])
        self.storage = DirectoryStorage(self.settings.storage_dir)
        self.stop = threading.Event()  # set by the handler thread; downloads watch it
        # One download process per download slot, taken by the thread that downloads; a
        # downloaded video is stored (probe, checksum, rows) outside its slot, so storing
        # one overlaps downloading the next.
        self.width = max(1, self.settings.scrape_download_concurrency)
        self.fetchers: queue.SimpleQueue[Fetcher] = queue.SimpleQueue()
        self._all_fetchers = [Fetcher(self._download_options()) for _ in range(self.width)]
        for fetcher in self._all_fetchers:
            self.fetchers.put(fetcher)
        # One recording transaction at a time: each recounts the job's items, which must
        # see the other downloads' outcomes.
        self.record_lock = threading.Lock()
        # Claims and the stopping attempt's release of its held videos: no claim lands
        # after the release (a claim under this lock first looks whether the attempt stops).
        self.hold_lock = threading.Lock()
        self.started = time.monotonic()

    # --- the attempt ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        ctx = self.ctx
        for fetcher in self._all_fetchers:
            fetcher.start()  # they ready yt-dlp while the source is listed
        with ctx.db.transaction() as conn:
            items = job_items.open_items(conn, job_id=ctx.job_id)
            before = job_items.item_totals(conn, job_id=ctx.job_id)
        if not items and not before["items_done"]:
            self._list_and_record()
            with ctx.db.transaction() as conn:
                items = job_items.open_items(conn, job_id=ctx.job_id)
        elif before["items_done"]:
            ctx.log("info", f"resuming: {before['items_done']} videos already done are skipped")
        self._process_all(items)
        with ctx.db.transaction() as conn:
            totals = job_items.item_totals(conn, job_id=ctx.job_id)
            reused = videos.reused_count(conn, job_id=ctx.job_id)
            total = int(jobs.get_job(conn, job_id=ctx.job_id)["items_total"])
            ctx.progress(conn, progress_pct=100.0)
        ctx.log(
            "info",
            f"{totals['items_done']} of {total} videos stored ({reused} were already),"
            f" {totals['items_failed']} failed",
        )
        return {
            "total_videos": total,
            "successful_downloads": totals["items_done"],
            "failed_downloads": totals["items_failed"],
            "skipped_existing": reused,
            "bytes": totals["bytes_done"],
            "seconds": round(time.monotonic() - self.started, 3),
        }

    def _list_and_record(self) -> None:
        """The job's videos become its items and `videos` rows (one transaction)."""
        ctx, params = self.ctx, self.params
        if params.get("video_ids"):
            entries = self._stored_entries(params["video_ids"])
        else:
            entries = self._list_source()
        with ctx.db.transaction() as conn:
            rows = videos.record_listed(
                conn,
                owner_id=self.owner_id,
                job_id=ctx.job_id,
                mode=params["mode"],
                value=params["value"],
                videos=[
                    {**describe_video(entry, params), "video_id": vid} for vid, entry in entries
                ],
            )
            total = job_items.append_items(
                conn,
                job_id=ctx.job_id,
                items=[
                    job_items.NewItem(vid, 0, {"record": str(row["id"]), "entry": entry})
                    for (vid, entry), row in zip(entries, rows, strict=True)
                ],
            )
            ctx.progress(conn, items_done=0, items_failed=0, progress_pct=0.0)
        stored = sum(videos.is_stored(row) for row in rows)
        ctx.log(
            "info",
            f"{total} videos to scrape from {params['mode']} {params['value']}"
            + (f" ({stored} already stored)" if stored else ""),
        )

    def _stored_entries(self, video_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """A retry of named videos: the owner's rows, extracted again from their URL; the
        profile or hashtag is not listed."""
        with self.ctx.db.transaction() as conn:
            rows = videos.videos_by_source_ids(conn, owner_id=self.owner_id, video_ids=video_ids)
        missing = sorted(set(video_ids) - {row["video_id"] for row in rows})
        if missing:
            raise JobFailed(f"no such video: {', '.join(missing)}", retryable=False)
        entries = []
        for row in rows:
            if not row["url"]:
                raise JobFailed(f"video {row['video_id']} has no URL to download", retryable=False)
            published = row["created_at_tiktok"]
            entry = {
                "_type": "url_transparent",  # what the row knows fills what the source omits
                "url": row["url"],
                "description": row["description"],
                "timestamp": int(published.timestamp()) if published else None,
            }
            entries.append((row["video_id"], {k: v for k, v in entry.items() if v is not None}))
        return entries

    def _list_source(self) -> list[tuple[str, dict[str, Any]]]:
        """Read the profile or hashtag: (video id, entry) of the videos to scrape, newest
        first. JobFailed with the extractor's text once the retries are used up."""
        params, settings = self.params, self.settings
        template = (
            settings.scrape_profile_url
            if params["mode"] == "profile"
            else settings.scrape_hashtag_url
        )
        url = template.replace("{value}", urllib.parse.quote(params["value"], safe=""))
        since, until = params.get("since"), params.get("until")
        window = since is not None or until is not None
        options = self._ydl_options(
            extract_flat="in_playlist",
            playlistend=settings.scrape_list_max if window else params["limit"],
        )

        def read() -> dict[str, Any]:
            with yt_dlp.YoutubeDL(options) as ydl:
                return ydl.extract_info(url, download=False) or {}

        try:
            info = self._interruptible(
                lambda: self._with_retries(read, retries=settings.scrape_list_retries, what=url)
            )
        except YoutubeDLError as exc:
            raise JobFailed(error_text(exc)) from None
        raw = info.get("entries") if info.get("_type") == "playlist" else [info]
        selected: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        unnamed = 0
        for entry in raw or ():
            vid = entry_id(entry) if isinstance(entry, dict) else None
            if vid is None:
                unnamed += 1
            elif vid not in seen and in_window(entry, since, until):
                seen.add(vid)
                selected.append(
                    (vid, {k: entry[k] for k in ENTRY_KEYS if entry.get(k) is not None})
                )
                if len(selected) >= params["limit"]:
                    break
        if unnamed:
            self.ctx.log("warning", f"{unnamed} listed entries had no usable video id")
        return selected

    # --- downloads -----------------------------------------------------------------------

    def _process_all(self, items: list[dict[str, Any]]) -> None:
        """Download the open items, `scrape_download_concurrency` at a time, each stored
        while the next downloads; stop within about a second when the attempt must end."""
        ctx = self.ctx
        todo = iter(items)
        running: dict[Future[None], dict[str, Any]] = {}
        width = 2 * self.width  # as many again being stored
        pool = ThreadPoolExecutor(width, thread_name_prefix="scrape-dl")
        try:
            while True:
                while len(running) < width and (item := next(todo, None)) is not None:
                    running[pool.submit(self._process, item)] = item
                if not running:
                    return
                finished, _ = wait(list(running), timeout=TICK_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.pop(future)
                    exc = future.exception()
                    if exc is not None and not isinstance(exc, _Stopped):
                        raise exc  # the database, a lost lease: the attempt cannot go on
                reason = ctx.stop_reason()
                if reason is not None:
                    self.stop.set()
                    wait(list(running), timeout=STOP_WAIT_S)  # their partial files removed
                    with self.hold_lock, ctx.db.transaction() as conn:
                        released = videos.release_held(conn, job_id=ctx.job_id)
                    ctx.log(
                        "info",
                        f"scrape stopped ({reason.__name__.lower()});"
                        f" {released} unfinished downloads dropped",
                    )
                    raise reason()
        finally:
            self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            for fetcher in self._all_fetchers:
                fetcher.close()

    def _process(self, item: dict[str, Any]) -> None:
        """One video: reuse it if stored, else download and store it; record the outcome."""
        vid, seq = item["key"], item["seq"]
        meta = item["meta"] or {}
        record_id = meta.get("record")
        scratch = None
        try:
            video, stored = self._claim(vid, record_id)
            if stored:
                self._record_reused(seq, video)
                return
            scratch = self.storage.scratch_dir()
            with self._download_slot() as fetcher:
                fetched = self._fetch(fetcher, vid, meta.get("entry") or {}, scratch)
            self._record_stored(seq, video, self._store(vid, video, *fetched))
        except _VideoFailed as exc:
            self._record_failed(seq, vid, record_id, str(exc))
        finally:
            if scratch is not None:  # the partial or downloaded files, however this ended
                shutil.rmtree(scratch, ignore_errors=True)

    @contextlib.contextmanager
    def _download_slot(self) -> Iterator[Fetcher]:
        """One of the `scrape_download_concurrency` download processes; _Stopped when the
        attempt stops while waiting for one."""
        while True:
            try:
                fetcher = self.fetchers.get(timeout=TICK_S)
                break
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stopped from None
        try:
            if self.stop.is_set():
                raise _Stopped
            yield fetcher
        finally:
            self.fetchers.put(fetcher)

    def _claim(self, vid: str, record_id: str | None) -> tuple[dict[str, Any], bool]:
        """The video's row and whether it is stored already; when it is not, this job now
        holds it for download: `downloading`, and the job's `current_item`. It is taken
        before a download slot is free (at most one video per slot ahead), so a slot never
        waits for the database. Waits while another running job downloads it."""
        ctx = self.ctx
        if record_id is None:
            raise _VideoFailed("the video has no record")
        while True:
            with self.hold_lock, ctx.db.transaction() as conn:
                if self.stop.is_set():
                    raise _Stopped
                claimed = videos.claim_download(conn, record_id=record_id, job_id=ctx.job_id)
                current = claimed or videos.get_record(conn, record_id=record_id)
                if claimed is not None:
                    ctx.progress(conn, current_item=vid)
            if current is None:
                raise _VideoFailed("the video's record was deleted")
            if claimed is not None or videos.is_stored(current):
                return current, claimed is None
            if self.stop.wait(HOLDER_POLL_S):  # another job is downloading it right now
                raise _Stopped

    def _store(
        self, vid: str, video: dict[str, Any], info: dict[str, Any], probed: dict[str, Any] | None
    ) -> _Stored:
        """Move the downloaded video and its info JSON from the scratch directory into
        storage (the video `downloaded`, then `uploading`); their rows are not written yet."""
        record_id = str(video["id"])
        download = (info.get("requested_downloads") or [info])[0]
        path = download.get("filepath") or download.get("_filename")
        infojson = download.get("infojson_filename") or info.get("infojson_filename")
        if not path or not os.path.isfile(path):
            raise _VideoFailed("yt-dlp wrote no video file")
        if not infojson or not os.path.isfile(infojson):
            raise _VideoFailed("yt-dlp wrote no info JSON")
        fields = describe_video(info, self.params)
        fields["file_size"] = os.path.getsize(path)
        fields["has_watermark"] = "watermark" in str(download.get("format_note") or "")
        if fields["duration"] is None and probed is not None:
            fields["duration"] = probed["duration_s"]
        with self.ctx.db.transaction() as conn:  # this job holds the row: no lock needed
            videos.mark_downloaded(conn, record_id=record_id, job_id=self.ctx.job_id, fields=fields)
            videos.mark_status(
                conn, record_id=record_id, job_id=self.ctx.job_id, status="uploading"
            )
        published = fields["created_at_tiktok"] or video["created_at_tiktok"]
        folder = folder_path(
            self.params.get("drive_folder_id"), video["mode"], video["value"], published
        )
        ext = os.path.splitext(path)[1].lstrip(".") or "mp4"
        objects = []
        try:
            for source, filename, content_type, media_info in (
                (path, f"{vid}.{ext}", mimetypes.guess_type(f"v.{ext}")[0], probed),
                (infojson, f"{vid}.info.json", "application/json", None),
            ):
                key, size, sha256 = self.storage.put_file(source)
                objects.append(
                    {
                        "storage_key": key,
                        "size": size,
                        "sha256": sha256,
                        "filename": filename,
                        "content_type": content_type or "application/octet-stream",
                        "media": media_info,
                    }
                )
        except BaseException:
            self._delete_objects(objects)
            raise
        return _Stored(objects, folder, fields["file_size"])

    def _fetch(self, fetcher: Fetcher, vid: str, entry: dict[str, Any], scratch: str) -> Fetched:
        """Full extraction and download of one entry into `scratch`, retried with backoff."""

        def fetch() -> Fetched:
            for name in os.listdir(scratch):  # what a failed try left
                os.unlink(os.path.join(scratch, name))
            return fetcher.fetch(entry, scratch, self.stop)

        try:
            return self._with_retries(fetch, retries=self.settings.scrape_video_retries, what=vid)
        except DownloadCancelled:
            raise _Stopped from None
        except YoutubeDLError as exc:
            if self.stop.is_set():
                raise _Stopped from None
            raise _VideoFailed(error_text(exc)) from None

    # --- recording: the video, its item and the job's counters in one transaction ---------

    def _record_stored(self, seq: int, video: dict[str, Any], stored: _Stored) -> None:
        ctx = self.ctx
        try:
            with self.record_lock, ctx.db.transaction() as conn:
                video_file, metadata_file = (
                    files.create_file(
                        conn, owner_id=self.owner_id, role="output", job_id=ctx.job_id, **obj
                    )
                    for obj in stored.objects
                )
                if not videos.mark_uploaded(
                    conn,
                    record_id=str(video["id"]),
                    job_id=ctx.job_id,
                    video_file_id=str(video_file["id"]),
                    metadata_file_id=str(metadata_file["id"]),
                    folder_path=stored.folder,
                    file_size=stored.file_size,
                ):
                    raise _VideoFailed("the video's record was deleted while it was downloaded")
                job_items.mark_items(
                    conn, job_id=ctx.job_id, done=[seq], sizes={seq: stored.file_size}
                )
                self._counters(conn)
        except BaseException:
            self._delete_objects(stored.objects)  # their rows were not written
            raise

    def _record_reused(self, seq: int, video: dict[str, Any]) -> None:
        ctx = self.ctx
        with self.record_lock, ctx.db.transaction() as conn:
            videos.mark_reused(conn, record_id=str(video["id"]), job_id=ctx.job_id)
            job_items.mark_items(
                conn, job_id=ctx.job_id, done=[seq], sizes={seq: int(video["file_size"] or 0)}
            )
            self._counters(conn)

    def _record_failed(self, seq: int, vid: str, record_id: str | None, error: str) -> None:
        ctx = self.ctx
        ctx.log("warning", f"video {vid} failed: {error}")
        with self.record_lock, ctx.db.transaction() as conn:
            if record_id is not None:
                videos.mark_failed(conn, record_id=record_id, job_id=ctx.job_id, error=error)
            job_items.mark_items(conn, job_id=ctx.job_id, failed={seq: error})
            self._counters(conn)

    def _counters(self, conn: Any) -> None:
        """The job's counters recomputed from its items (exact on every resume);
        `current_item` stays the video taken last."""
        totals = job_items.item_totals(conn, job_id=self.ctx.job_id)
        total = int(jobs.get_job(conn, job_id=self.ctx.job_id)["items_total"])
        finished = totals["items_done"] + totals["items_failed"]
        self.ctx.progress(
            conn,
            items_done=totals["items_done"],
            items_failed=totals["items_failed"],
            bytes_done=totals["bytes_done"],
            progress_pct=round(min(99.9, finished * 100 / total), 1) if total else None,
        )

    def _delete_objects(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            try:
                self.storage.delete(obj["storage_key"])
            except OSError as exc:
                log.warning("job %s: object %s not deleted: %s", self.ctx.job_id, obj, exc)

    # --- helpers -------------------------------------------------------------------------

    def _download_options(self) -> dict[str, Any]:
        return self._ydl_options(
            outtmpl={"default": "video.%(ext)s"},
            writeinfojson=True,
            buffersize=FIRST_READ_BYTES,
            noplaylist=True,
            format=NO_WATERMARK_FORMAT if self.params["no_watermark"] else "b",
        )

    def _ydl_options(self, **extra: Any) -> dict[str, Any]:
        return {
            "logger": _YtdlpLog(),
            "quiet": True,
            "noprogress": True,
            "socket_timeout": self.settings.scrape_socket_timeout_s,
            "retries": 1,  # our own retries (with backoff) decide
            "extractor_retries": 0,
            "cachedir": False,
            "updatetime": False,
            **extra,
        }

    def _with_retries(self, call: Callable[[], T], *, retries: int, what: str = "") -> T:
        """`call`, tried again after scrape_retry_backoff_s, doubled each time, when yt-dlp
        fails; the wait ends early when the attempt stops."""
        for n in range(max(0, retries) + 1):
            try:
                return call()
            except DownloadCancelled:
                raise
            except YoutubeDLError as exc:
                if n >= retries or self.stop.is_set():
                    raise
                delay = self.settings.scrape_retry_backoff_s * 2**n
                log.info(
                    "job %s %s: %s; again in %.1fs", self.ctx.job_id, what, error_text(exc), delay
                )
                if self.stop.wait(delay):
                    raise
        raise AssertionError("unreachable")

    def _interruptible(self, call: Callable[[], T]) -> T:
        """Run a blocking yt-dlp call on a thread of its own, so a cancel or hand-back is
        answered within a tick even while a slow source is being read."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                box["error"] = exc

        thread = threading.Thread(target=target, name="scrape-list", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(TICK_S)
            reason = self.ctx.stop_reason()
            if reason is not None:
                self.stop.set()
                raise reason()
        if "error" in box:
            raise box["error"]
        return box["value"]


def folder_path(
    drive_folder_id: str | None, mode: str, value: str, published: dt.datetime | None
) -> str:
    """`[<drive_folder_id>/]TikTok/<mode>/<value>/<YYYY>/<MM>`: the month the video was
    published (UTC), or this month when the source does not say."""
    when = (published or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    parts = [drive_folder_id] if drive_folder_id else []
    return "/".join([*parts, "TikTok", mode, value, f"{when:%Y}", f"{when:%m}"])


def entry_id(entry: dict[str, Any]) -> str | None:
    """A listed entry's video id: its own, or the feed item's guid that yt-dlp's generic
    extractor carries in the (smuggled) URL."""
    vid = entry.get("id")
    if not vid and entry.get("url"):
        _url, data = unsmuggle_url(entry["url"], {})
        vid = (data or {}).get("force_videoid")
    vid = str(vid) if vid else None
    return vid if vid and VIDEO_ID.match(vid) else None


def _published(info: dict[str, Any]) -> dt.datetime | None:
    if info.get("timestamp") is not None:
        return dt.datetime.fromtimestamp(float(info["timestamp"]), dt.UTC)
    date = info.get("upload_date")
    if date and len(str(date)) == 8:
        return dt.datetime.strptime(str(date), "%Y%m%d").replace(tzinfo=dt.UTC)
    return None


def in_window(entry: dict[str, Any], since: dt.datetime | None, until: dt.datetime | None) -> bool:
    """Published within [since, until]; an entry without a date is outside any window."""
    if since is None and until is None:
        return True
    published = _published(entry)
    if published is None:
        return False
    return (since is None or published >= since) and (until is None or published <= until)


def describe_video(info: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A `videos` row's description from yt-dlp's info (a listed entry or a full one), with
    DESIGN.md's field mapping; hashtags from the description, lower-cased."""
    text = info.get("description") or info.get("title")
    url = info.get("webpage_url") or info.get("url")
    author = info.get("uploader") or info.get("uploader_id")
    if author is None and params["mode"] == "profile":
        author = params["value"]  # a profile lists its own videos
    return {
        "url": unsmuggle_url(url)[0] if url else None,
        "description": info.get("description"),
        "author_username": author,
        "author_nickname": info.get("channel"),
        "views": info.get("view_count"),
        "likes": info.get("like_count"),
        "comments": info.get("comment_count"),
        "shares": info.get("repost_count"),
        "created_at_tiktok": _published(info),
        "hashtags": list(dict.fromkeys(tag.lower() for tag in HASHTAG.findall(text or ""))),
        "music_title": info.get("track"),
        "duration": info.get("duration"),
    }
