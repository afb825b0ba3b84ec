"""Files rows with their stored objects: uploads as the gateway records them, outputs as a
worker does, files at a path of an owner's namespace (seed 003)."""

from __future__ import annotations

import mimetypes
import posixpath
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
    content_type: str = "audio/mpeg",
) -> dict[str, Any]:
    """A job's output as a worker records it (a convert worker's by default; an earlier
    attempt's, say); `path` is moved into storage."""
    return _store(
        database,
        storage,
        path,
        owner_id=str(job["owner_id"]),
        role="output",
        filename=filename,
        content_type=content_type,
        job_id=str(job["id"]),
    )


def make_path_file(
    database: db.Database,
    storage: DirectoryStorage,
    owner: dict[str, Any],
    path: str,
    data: bytes,
    tmp_path: Path,
    *,
    permissions: str = "644",
) -> dict[str, Any]:
    """A file at `path` in the owner's namespace (seed 003's /api/files), as an upload there
    records it: a file already at that path is replaced (its object removed when no job
    refers to it). For tests of what resolves job inputs by path."""
    source = tmp_path / f"path-file-{time.monotonic_ns()}"
    source.write_bytes(data)
    key, size, sha256 = storage.put_file(source)
    name = posixpath.basename(files.normalize_path(path))
    with database.transaction() as conn:
        row, obsolete = files.put_at_path(
            conn,
            owner_id=str(owner["id"]),
            path=path,
            permissions=permissions,
            filename=name,
            content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
            size=size,
            sha256=sha256,
            storage_key=key,
        )
    for old_key in obsolete:
        storage.delete(old_key)
    return row
