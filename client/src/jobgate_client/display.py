"""How the command line shows work in progress: rich bars on a terminal, plain lines when
the output goes to a file or a pipe (a bar redrawn in a log file is noise). Bars and
progress lines go to stderr, so stdout keeps only results."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from jobgate_client.models import Job, JobEvent

UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
ITEM_WORDS = {"cache": "files", "scrape": "videos", "container": "files"}


def readable(size: float) -> str:
    """Bytes as the server writes them (seed 000's style, powers of 1024): `5.72 MB`."""
    value = float(size)
    if value < 1024:
        return f"{int(value)} B"
    index = 0
    while value >= 1024 and index < len(UNITS) - 1:
        value /= 1024
        index += 1
    return f"{round(value, 2)} {UNITS[index]}"


class JobDisplay:
    """A job's progress from its events: a bar with items, bytes, MB/s and ETA on a
    terminal; a line per change of percentage or status otherwise."""

    def __init__(self, console: Console, job: Job, *, label: str | None = None) -> None:
        self.console = console
        self.kind = str(job.get("kind", "job"))
        self.job_id = str(job.get("id"))
        self.label = label or f"{self.kind} {self.job_id[:8]}"
        self.status = str(job.get("status", "pending"))
        self.progress = int(job.get("progress") or 0)
        self.detail: dict[str, Any] = dict(job.get("progress_detail") or {})
        self.bps: float | None = None
        self._seen_status_event = False
        self._rate_sample: tuple[float, int] | None = None
        self._last_key: tuple[str, int] | None = None
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> JobDisplay:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[status]}"),
                TextColumn("{task.fields[items]}"),
                TextColumn("{task.fields[bytes]}"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(elapsed_when_finished=True),
                console=self.console,
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=100, **self._fields())
        self._render()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._render()
            self._bar.__exit__(exc_type, exc, tb)

    def update(self, event: JobEvent) -> None:
        """Take in one event. Progress never goes backwards on screen (a state change read
        late from the database may carry older counters than the live ticks before it)."""
        if event.type in ("file", "container_event"):
            return
        if event.status:
            late_created = event.event == "created" and self._seen_status_event
            if not late_created or event.final:
                self.status = event.status
            self._seen_status_event = True
        if event.progress is not None and (event.progress >= self.progress or event.final):
            self.progress = max(int(event.progress), self.progress)
            if event.progress_detail:
                self.detail = dict(event.progress_detail)
        self._rate(event)
        self._render()

    def _rate(self, event: JobEvent) -> None:
        if event.throughput_bps is not None:
            self.bps = float(event.throughput_bps)
            return
        done = int(self.detail.get("bytes_done") or 0)
        now = time.monotonic()
        if self._rate_sample is not None and done > self._rate_sample[1]:
            elapsed = now - self._rate_sample[0]
            if elapsed > 0:
                self.bps = (done - self._rate_sample[1]) / elapsed
        self._rate_sample = (now, done)

    def _fields(self) -> dict[str, str]:
        items_total = int(self.detail.get("items_total") or 0)
        bytes_total = int(self.detail.get("bytes_total") or 0)
        word = ITEM_WORDS.get(self.kind, "items")
        items = (
            f"{word} {self.detail.get('items_done', 0)}/{items_total}"
            + (
                f" ({self.detail['items_failed']} failed)"
                if self.detail.get("items_failed")
                else ""
            )
            if items_total
            else ""
        )
        size = (
            f"{readable(self.detail.get('bytes_done') or 0)}/{readable(bytes_total)}"
            if bytes_total
            else ""
        )
        running = self.status == "running"
        rate = f"{self.bps / 1024**2:.1f} MB/s" if self.bps and running and bytes_total else ""
        return {"status": self.status, "items": items, "bytes": size, "rate": rate}

    def _render(self) -> None:
        fields = self._fields()
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.progress, **fields)
            return
        key = (self.status, self.progress)
        if key == self._last_key:  # plain output: a line per new percentage or status
            return
        self._last_key = key
        parts = [f"{self.label}: {self.status} {self.progress}%"]
        parts += [value for name, value in fields.items() if name != "status" and value]
        self.console.print(" · ".join(parts), highlight=False, soft_wrap=True)


class TransferDisplay:
    """An upload or download: bytes, a bar, speed and ETA; plain start and end lines
    when not on a terminal."""

    def __init__(self, console: Console, description: str, total: int | None) -> None:
        self.console = console
        self.description = description
        self.total = total
        self.done = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> TransferDisplay:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(elapsed_when_finished=True),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total)
        else:
            size = f" ({readable(self.total)})" if self.total else ""
            self.console.print(f"{self.description}{size}…", highlight=False)
        return self

    def __call__(self, done: int, total: int | None) -> None:
        """The progress callback of uploads and downloads."""
        self.done = done
        if total is not None:
            self.total = total
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=self.total)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
        elif exc_type is None:
            self.console.print(f"{self.description}: {readable(self.done)} done", highlight=False)
