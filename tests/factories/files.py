"""Files rows with their stored objects: uploads as the gateway records them, outputs as a
worker does."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from jobgate import db, files, media
from jobgate.storage import DirectoryStorage


def _store(
    database: db.Database,
    storage: DirectoryStorage,
    path: Path,
    **row: Any,
) -> dict[str, Any]:
    """Move `path` into storage and write its files row (size and hash of what was stored)."""
    key, size, sha256 = storage.put_file(path)
    with database.transaction() as conn:
        return files.create_file(conn, size=size, sha256=sha256, storage_key=key, **row)


def make_upload(
    database: db.Database,
    storage: DirectoryStorage,
    owner: dict[str, Any],
    source: Path,
    tmp_path: Path,
    *,
    filename: str = "clip.mp4",
    info: Any = "probe",
) -> dict[str, Any]:
    """An upload as the gateway records it: stored object plus a files row with its media
    description (`info`: "probe" it, None for none, or a dict to record instead). `source`
    is copied (through `tmp_path`), so one clip serves many uploads."""
    copy = tmp_path / f"upload-{time.monotonic_ns()}"
    shutil.copyfile(source, copy)
    media_info = media.probe(copy).to_dict() if info == "probe" else info
    return _store(
        database,
        storage,
        copy,
        owner_id=str(owner["id"]),
        role="upload",
        filename=filename,
        content_type="video/mp4",
        media=media_info,
    )


def make_output(
    database: db.Database,
    storage: DirectoryStorage,
    job: dict[str, Any],
    path: Path,
    *,
    filename: str = "clip.mp3",
) -> dict[str, Any]:
    """A job's output as a convert worker records it (an earlier attempt's, say); `path` is
    moved into storage."""
    return _store(
        database,
        storage,
        path,
        owner_id=str(job["owner_id"]),
        role="output",
        filename=filename,
        content_type="audio/mpeg",
        job_id=str(job["id"]),
    )
