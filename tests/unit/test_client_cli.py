"""Pieces of the `jobgate` command line that need no server: how positional cache paths are
told apart, the one-line API error, and the progress shown off a terminal (plain lines,
never going backwards when a late state change carries older counters)."""

from __future__ import annotations

import io

from rich.console import Console

from jobgate_client.cli import _move_guessed_path, _split_cache_paths, error_line
from jobgate_client.display import JobDisplay, readable
from jobgate_client.errors import InvalidRequest, NotFound
from jobgate_client.models import JobEvent


def test_positional_cache_paths_are_guessed_and_corrected_by_the_server():
    files, dirs = _split_cache_paths(
        ["00_Media/Farm", "a/clip.mov", "b/", "C:\\dmpfs\\x\\y.mxf", ".hidden"], ["f"], ["d"]
    )
    assert files == ["f", "a/clip.mov", "C:\\dmpfs\\x\\y.mxf"]
    assert dirs == ["d", "00_Media/Farm", "b/", ".hidden"]
    refused = InvalidRequest(
        "Invalid path",
        details={
            "path": "a/clip.mov",
            "reason": "path is a directory; list it under 'directories'",
        },
    )
    assert _move_guessed_path(refused, files, dirs, explicit={"f", "d"})
    assert "a/clip.mov" in dirs and "a/clip.mov" not in files
    named = InvalidRequest("Invalid path", details={"path": "f", "reason": "path is a directory"})
    assert not _move_guessed_path(named, files, dirs, explicit={"f", "d"}), "as the user said"


def test_an_api_error_is_one_line_with_code_details_and_request_id():
    exc = NotFound("Job\nnot found", status=404, request_id="abc", details={"job_id": "j1"})
    assert error_line(exc) == 'jobgate: 404 NOT_FOUND: Job not found {"job_id":"j1"} (request abc)'


def event(type_: str, status: str, progress: int, event_name: str | None = None) -> JobEvent:
    detail = {"items_done": progress // 10, "items_total": 10, "bytes_done": 0, "bytes_total": 0}
    return JobEvent(
        type=type_,
        job_id="0123456789",
        transport="websocket",
        status=status,
        event=event_name,
        progress=progress,
        progress_detail=detail,
    )


def test_off_a_terminal_progress_is_plain_lines_that_never_go_back():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    job = {"id": "0123456789", "kind": "cache", "status": "pending", "progress": 0}
    with JobDisplay(console, job) as display:
        display.update(event("snapshot", "running", 10))
        display.update(event("progress", "running", 60))
        display.update(event("status", "pending", 0, "created"))  # read late from the table
        display.update(event("status", "running", 0, "started"))
        display.update(event("progress", "running", 60))  # unchanged: no new line
        display.update(event("status", "completed", 100, "completed"))
    lines = out.getvalue().splitlines()
    assert lines == [
        "cache 01234567: pending 0%",
        "cache 01234567: running 10% · files 1/10",
        "cache 01234567: running 60% · files 6/10",
        "cache 01234567: completed 100% · files 10/10",
    ]
    assert "\x1b[" not in out.getvalue()


def test_sizes_read_like_the_servers():
    assert [readable(n) for n in (0, 1023, 6_000_000, 60 * 1024**3)] == [
        "0 B",
        "1023 B",
        "5.72 MB",
        "60.0 GB",
    ]
