"""Where uploads and job outputs live: a directory (`STORAGE_DIR`) behind a small interface,
so an object store can follow.

Writes stream to a temporary file in the same directory tree, hashed and counted as they
go, and become an object only on `commit` (an atomic rename): an interrupted upload leaves
nothing behind but a temp file that `discard` removes (or, after a crash, `sweep_tmp`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Protocol


class TooLarge(Exception):
    """More bytes arrived than the writer allows."""


class PendingObject:
    """A file being written: counts and hashes every byte; limited to `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int | None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.size = 0
        self.committed = False
        self._hash = hashlib.sha256()
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()/discard()

    # The file-like surface werkzeug's multipart parser writes to.
    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise TooLarge(self.size)
        self._hash.update(data)
        return self._file.write(data)

    def seek(self, *args: int) -> int:
        return self._file.seek(*args)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, *args: int) -> bytes:
        return self._file.read(*args)

    def readline(self, *args: int) -> bytes:
        return self._file.readline(*args)

    def flush(self) -> None:
        self._file.flush()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed


class Storage(Protocol):
    def begin(self, *, max_bytes: int | None = None) -> PendingObject: ...
    def commit(self, pending: PendingObject) -> str: ...
    def discard(self, pending: PendingObject) -> None: ...
    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int, str]: ...
    def path(self, key: str) -> Path: ...
    def delete(self, key: str) -> None: ...
    def healthy(self) -> bool: ...
    def scratch_dir(self) -> str: ...


class DirectoryStorage:
    """Objects as files under `root/objects/ab/<key>`; temporary files under `root/tmp`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()  # absolute: callers may run from another directory
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def begin(self, *, max_bytes: int | None = None) -> PendingObject:
        fd, name = tempfile.mkstemp(prefix="upload-", dir=self.tmp)
        os.close(fd)
        return PendingObject(Path(name), max_bytes)

    def _new_key(self) -> tuple[str, Path]:
        key = secrets.token_hex(16)
        target = self.objects / key[:2] / key
        target.parent.mkdir(exist_ok=True)
        return key, target

    def commit(self, pending: PendingObject) -> str:
        pending.flush()
        os.fsync(pending._file.fileno())
        pending.close()
        key, target = self._new_key()
        os.replace(pending.path, target)
        pending.committed = True
        return key

    def discard(self, pending: PendingObject) -> None:
        """Drop an uncommitted write (a no-op once committed)."""
        pending.close()
        if not pending.committed:
            pending.path.unlink(missing_ok=True)

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int, str]:
        """Move a finished local file (e.g. ffmpeg's output) in; returns (key, size, sha256)."""
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                digest.update(chunk)
        key, target = self._new_key()
        shutil.move(os.fspath(path), target)
        return key, target.stat().st_size, digest.hexdigest()

    def path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"not a storage key: {key!r}")
        return self.objects / key[:2] / key

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def healthy(self) -> bool:
        """Whether objects can be stored now: both directories exist and are writable."""
        return all(os.access(d, os.W_OK | os.X_OK) for d in (self.objects, self.tmp))

    def scratch_dir(self) -> str:
        """A private temporary directory on the storage volume (same filesystem as objects)."""
        return tempfile.mkdtemp(prefix="job-", dir=self.tmp)

    def sweep_tmp(self, *, older_than_s: float) -> int:
        """Remove temporary uploads and scratch dirs untouched for `older_than_s` seconds:
        what a killed process (SIGKILL, OOM) could not clean up. Returns how many went."""
        cutoff = time.time() - older_than_s
        removed = 0
        for entry in self.tmp.iterdir():
            try:
                newest = max(
                    [entry.lstat().st_mtime]
                    + ([p.lstat().st_mtime for p in entry.iterdir()] if entry.is_dir() else [])
                )
                if newest >= cutoff:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
            except FileNotFoundError:
                continue  # removed by its owner meanwhile
        return removed
