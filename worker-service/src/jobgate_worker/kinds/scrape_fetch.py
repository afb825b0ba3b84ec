"""Scrape downloads in processes of their own: yt-dlp in a child, driven over a pipe.

yt-dlp's download loop is Python; in a thread it held the worker's GIL against the threads
that claim, store and record videos (a job took 1.5x the time of yt-dlp alone). In a child
process it runs beside them on another core, and a stop ends a download at once however slow
the source: the child is killed (its partial files are in a scratch directory the caller
removes) and the next fetch starts a fresh one.

The children are forked from a `forkserver`, not from the worker, whose threads and
connections a fork must not copy. Importing this module (the fork server does, once) also
compiles every yt-dlp extractor's URL pattern, which yt-dlp does lazily on the first URL it
looks at and which took ~0.45 s of every new process's first video; the worker's own
listing needs them as well.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import re
import signal
import threading
from typing import Any, NamedTuple

import yt_dlp
from yt_dlp.utils import DownloadCancelled, YoutubeDLError

from jobgate import media
from jobgate_worker.children import die_with_worker

POLL_S = 0.2  # how often a waiting fetch looks for a stop
CLOSE_WAIT_S = 1.0  # how long a closing child gets to end on its own
REASON_LIMIT = 500  # characters of an extractor's error kept

_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["jobgate_worker.kinds.scrape"])  # imports this module too

for _extractor in yt_dlp.extractor.gen_extractor_classes():
    _extractor.suitable("")  # compiles and keeps its _VALID_URL pattern
# The extractors a scrape uses: the site's, and the generic one (feeds, direct links).
WARM_EXTRACTORS = ("TikTok", "Generic")
for _name in WARM_EXTRACTORS:
    yt_dlp.extractor.get_info_extractor(_name)()  # imports its real module


class Fetched(NamedTuple):
    """What a download process sends back for one video."""

    info: dict[str, Any]  # yt-dlp's, JSON-safe (`sanitize_info`)
    media: dict[str, Any] | None  # `media.MediaInfo.to_dict()` of the file, None if unreadable


class Fetcher:
    """A download process: one YoutubeDL for every video it is given, as yt-dlp's command
    line keeps one for a playlist (making one per video cost more than the download)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: multiprocessing.connection.Connection | None = None

    def fetch(self, entry: dict[str, Any], scratch: str, stop: threading.Event) -> Fetched:
        """`entry` downloaded into `scratch`: yt-dlp's info and the video's media description.
        YoutubeDLError as yt-dlp raised it (or when the process died); DownloadCancelled once
        `stop` is set."""
        conn = self._started()
        conn.send((entry, scratch))
        while not conn.poll(POLL_S):
            if stop.is_set():
                self.kill()
                raise DownloadCancelled("the job is stopping")
        try:
            outcome, value = conn.recv()
        except (EOFError, OSError):
            code = self.kill()
            raise YoutubeDLError(f"the download process died (exit code {code})") from None
        if outcome == "ok":
            return Fetched(*value)
        if outcome == "error":
            raise YoutubeDLError(value)
        raise RuntimeError(f"yt-dlp failed: {value}")

    def start(self) -> None:
        """Start the process ahead of the first fetch (it readies yt-dlp meanwhile)."""
        self._started()

    def _started(self) -> multiprocessing.connection.Connection:
        if self.process is None or self.conn is None or not self.process.is_alive():
            self.kill()
            self.conn, child = _FORKS.Pipe()
            self.process = _FORKS.Process(
                target=_serve, args=(child, self.options), name="scrape-fetch", daemon=True
            )
            self.process.start()
            child.close()
        return self.conn

    def kill(self) -> int | None:
        """End the process now; its exit code (None when there was no process)."""
        process, self.process = self.process, None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if process is None:
            return None
        process.kill()
        process.join()
        code = process.exitcode
        process.close()
        return code

    def close(self) -> None:
        """Let the process end on its own (it is between videos), else kill it."""
        if self.process is not None and self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(CLOSE_WAIT_S)
        self.kill()


def _serve(conn: multiprocessing.connection.Connection, options: dict[str, Any]) -> None:
    """A download process's life: fetch each (entry, scratch) it is sent and answer
    ("ok", info) | ("error", yt-dlp's text) | ("crash", what else went wrong), until it is
    sent None or the worker goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    die_with_worker()  # a download must not go on, nor be retried, for a lost worker
    with yt_dlp.YoutubeDL(options) as ydl:
        for name in WARM_EXTRACTORS:
            ydl.get_info_extractor(name)
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            if request is None:
                return
            entry, scratch = request
            ydl.params["paths"] = {"home": scratch}
            try:
                info = ydl.process_ie_result(dict(entry), download=True) or {}
                reply: tuple[str, Any] = ("ok", (ydl.sanitize_info(info), _describe(info)))
            except YoutubeDLError as exc:
                reply = ("error", error_text(exc))
            except Exception as exc:  # noqa: BLE001 - the worker fails the attempt with it
                reply = ("crash", f"{type(exc).__name__}: {exc}")
            try:
                conn.send(reply)
            except OSError:
                return


def _describe(info: dict[str, Any]) -> dict[str, Any] | None:
    """The downloaded file's media description, read here: this process is the sandbox
    that a hostile file may crash, and PyAV reads it in ~1 ms where starting ffmpeg took
    ~15 ms of a core that the downloads need."""
    download = (info.get("requested_downloads") or [info])[0]
    path = download.get("filepath") or download.get("_filename")
    try:
        return media.probe_here(path).to_dict() if path else None
    except (media.NotMedia, OSError):
        return None


def error_text(exc: BaseException) -> str:
    """yt-dlp's error text without its "ERROR: " prefix, short enough to show."""
    text = str(getattr(exc, "msg", None) or exc).strip()
    text = re.sub(r"^ERROR:\s*", "", text)
    return text[:REASON_LIMIT] or type(exc).__name__
