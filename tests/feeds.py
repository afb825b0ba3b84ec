"""A local stand-in for the video site scrape jobs read (127.0.0.1 only, never the internet).

`FeedServer` serves RSS 2.0 feeds at the two URL templates a scrape job fills in
(`/@<user>` for a profile, `/tag/<tag>` for a hashtag): one `<item>` per video, newest
first, with `guid` = the video id, `pubDate`, a description carrying `#tags`, and an
`enclosure` pointing at a real small MP4 served under `/media/<id>.mp4`. yt-dlp's generic
extractor reads such a feed as a playlist (Atom and plain m3u are not read as playlists).

Tests steer it: `add` videos to a feed, `fail` a video (404) and `heal` it later, `throttle`
enclosures (so a download can be cancelled mid-way), and read `gets` (GETs per path) to
prove what was and was not downloaded.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import email.utils
import html
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers import serve_in_thread

CHUNK = 1024  # bytes per write of a throttled enclosure


@dataclasses.dataclass
class FeedVideo:
    """One video of a feed: its id (`guid`), publication time, and description."""

    id: str
    published: dt.datetime
    description: str = ""
    title: str = ""


class FeedServer:
    """RSS feeds and MP4 enclosures on 127.0.0.1:<free port>, in a daemon thread."""

    def __init__(self, clip: Path) -> None:
        self.clip = clip.read_bytes()
        self.feeds: dict[str, list[FeedVideo]] = {}  # path ("/@user", "/tag/x") -> videos
        self.failing: set[str] = set()  # video ids whose enclosure answers 404
        self.feed_failing: set[str] = set()  # feed paths that answer 404
        self.rate_bps = 0  # enclosure bytes per second, 0 = unthrottled
        self.gets: collections.Counter[str] = collections.Counter()
        self.aborted: collections.Counter[str] = collections.Counter()  # clients that hung up
        self.sending: collections.Counter[str] = collections.Counter()  # video id -> responses
        self.most_sending = 0  # the most videos sent at once (parallel downloads)
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- setup ---------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def profile_url(self) -> str:
        """The `SCRAPE_PROFILE_URL` template pointing here."""
        return self.base + "/@{value}"

    @property
    def hashtag_url(self) -> str:
        """The `SCRAPE_HASHTAG_URL` template pointing here."""
        return self.base + "/tag/{value}"

    def start(self) -> FeedServer:
        self._thread = serve_in_thread(self._server)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def add(self, mode: str, value: str, videos: list[FeedVideo]) -> None:
        """Publish videos on a profile (`mode="profile"`) or hashtag feed."""
        path = ("/@" if mode == "profile" else "/tag/") + urllib.parse.quote(value)
        with self._lock:
            self.feeds.setdefault(path, []).extend(videos)

    def fail(self, video_id: str) -> None:
        self.failing.add(video_id)

    def heal(self, video_id: str) -> None:
        self.failing.discard(video_id)

    def throttle(self, rate_bps: int) -> None:
        """Serve enclosures at about `rate_bps` bytes/s from now on (0: full speed)."""
        self.rate_bps = rate_bps

    def media_path(self, video_id: str) -> str:
        return f"/media/{video_id}.mp4"

    def downloads(self, video_id: str) -> int:
        """GETs of a video's enclosure so far."""
        with self._lock:
            return self.gets[self.media_path(video_id)]

    # --- serving -------------------------------------------------------------------------

    def _sending(self, video_id: str, change: int) -> None:
        with self._lock:
            self.sending[video_id] += change
            self.sending += collections.Counter()  # drops ids no longer sent
            self.most_sending = max(self.most_sending, len(self.sending))

    def _count(self, path: str) -> None:
        with self._lock:
            self.gets[path] += 1

    def render(self, path: str) -> bytes | None:
        """The RSS document of a feed path, newest item first; None if there is none."""
        with self._lock:
            videos = list(self.feeds.get(path, ()))
        if path in self.feed_failing or path not in self.feeds:
            return None
        items = []
        for video in sorted(videos, key=lambda v: v.published, reverse=True):
            link = f"{self.base}{path}/video/{video.id}"
            items.append(
                "<item>"
                f"<title>{html.escape(video.title or video.id)}</title>"
                f"<link>{html.escape(link)}</link>"
                f'<guid isPermaLink="false">{html.escape(video.id)}</guid>'
                f"<pubDate>{email.utils.format_datetime(video.published)}</pubDate>"
                f"<description>{html.escape(video.description)}</description>"
                f'<enclosure url="{self.base}{self.media_path(video.id)}"'
                f' length="{len(self.clip)}" type="video/mp4"/>'
                "</item>"
            )
        doc = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>{html.escape(path)}</title><link>{self.base}{path}</link>"
            f"<description>videos of {html.escape(path)}</description>"
            + "".join(items)
            + "</channel></rss>"
        )
        return doc.encode()

    def body_chunks(self) -> Iterator[bytes]:
        """An enclosure's bytes, paced to `rate_bps` when throttled."""
        if not self.rate_bps:
            yield self.clip
            return
        for start in range(0, len(self.clip), CHUNK):
            rate = self.rate_bps  # a test may lift the throttle mid-send
            if not rate:
                yield self.clip[start:]
                return
            yield self.clip[start : start + CHUNK]
            time.sleep(CHUNK / rate)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up (a cancelled download, yt-dlp's probe) are expected here."""


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            server._count(path)
            if path.startswith("/media/") and path.endswith(".mp4"):
                video_id = path[len("/media/") : -len(".mp4")]
                if video_id in server.failing:
                    return self._send(404, b"not found", "text/plain")
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(server.clip)))
                self.end_headers()
                server._sending(video_id, +1)
                try:
                    for chunk in server.body_chunks():
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:
                        server.aborted[path] += 1
                finally:
                    server._sending(video_id, -1)
                return None
            doc = server.render(path)
            if doc is None:
                return self._send(404, b"no such feed", "text/plain")
            return self._send(200, doc, "application/rss+xml; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def feed_videos(
    count: int, *, newest: dt.datetime, step: dt.timedelta, prefix: str = "7"
) -> list[FeedVideo]:
    """`count` videos published `step` apart, the newest at `newest`; ids are 19 digits like
    the site's, descriptions carry two hashtags."""
    return [
        FeedVideo(
            id=f"{prefix}{i:018d}",
            published=newest - i * step,
            description=f"clip number {i} #funny #n{i}",
            title=f"clip {i}",
        )
        for i in range(count)
    ]
