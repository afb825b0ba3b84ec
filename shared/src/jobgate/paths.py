"""Client paths -> files under CACHE_ROOT, refusing anything that would leave it.

Clients name files as they see them: relative to the filespace root (recommended), or
absolute from a macOS (`/Volumes/...`), Windows (`C:\\...`) or Linux (`/mnt/...`) mount.
Configured client prefixes are stripped, backslashes become slashes, and the result is
joined under the root. The real path (symlinks resolved) must stay inside the root.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_DRIVE_RE = re.compile(r"^[A-Za-z]:(/|$)")


class PathError(ValueError):
    """A client path that cannot be accepted; `path` is what the client sent."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{reason}: {path!r}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class CacheFile:
    relpath: str  # POSIX path relative to the root, symlinks resolved
    size: int


def _clean_prefix(prefix: str) -> str:
    return prefix.replace("\\", "/").rstrip("/")


def _is_windows(prefix: str) -> bool:
    return bool(_DRIVE_RE.match(prefix))


def strip_client_prefix(path: str, prefixes: Iterable[str]) -> str | None:
    """Remove the first matching client mount prefix; None if none matches."""
    for raw_prefix in prefixes:
        prefix = _clean_prefix(raw_prefix)
        if not prefix:
            continue
        # Windows paths compare case-insensitively, POSIX ones exactly.
        head = path[: len(prefix)]
        same = head.lower() == prefix.lower() if _is_windows(prefix) else head == prefix
        if same and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return path[len(prefix) :].lstrip("/")
    return None


def normalize_client_path(raw: object, prefixes: Sequence[str]) -> str:
    """Return the path relative to the root (POSIX, no `.`/`..`), or raise PathError."""
    if not isinstance(raw, str):
        raise PathError(str(raw), "path must be a string")
    if raw.strip() == "":
        raise PathError(raw, "path is empty")
    if "\x00" in raw:
        raise PathError(raw, "path contains a NUL byte")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise PathError(
            raw.encode("utf-8", "replace").decode(), "path is not valid UTF-8"
        ) from None
    path = raw.replace("\\", "/")
    if path.startswith("//"):
        raise PathError(raw, "UNC paths are not supported")
    if path.startswith("/") or _DRIVE_RE.match(path):
        stripped = strip_client_prefix(path, prefixes)
        if stripped is None:
            raise PathError(raw, "absolute path is not under a known client mount")
        path = stripped
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise PathError(raw, "path escapes the cache root")
        parts.append(part)
    return "/".join(parts)


class CacheRoot:
    """The directory cache jobs read from, with the prefixes clients use for it."""

    def __init__(self, root: str, prefixes: Sequence[str] = ()) -> None:
        self.root = os.path.realpath(root)
        # A client on the server itself may send the root's own absolute path.
        self.prefixes = (*prefixes, self.root, root)

    def resolve(self, raw: object) -> str:
        """Client path -> absolute real path inside the root, or PathError."""
        rel = normalize_client_path(raw, self.prefixes)
        return self._inside(os.path.join(self.root, rel), str(raw))

    def _inside(self, path: str, shown: str) -> str:
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise PathError(shown, "path escapes the cache root")
        return real

    def relative(self, real: str) -> str:
        """`real` (a path inside the root) relative to it; slicing, as relpath is slow."""
        if real == self.root:
            return ""
        return real[len(self.root) + 1 :].replace(os.sep, "/")

    def open_item(self, relpath: str, dir_cache: dict[str, str]) -> int:
        """Open a stored item (a real path relative to the root) for reading, as a file
        descriptor, checking it still lies inside the root.

        Folders are resolved once per job (`dir_cache`, which reader threads may share); the
        file itself is opened with O_NOFOLLOW, so a file swapped for a symlink after
        submission is refused (ELOOP). Per file that is one open, one fstat, one fcntl.
        """
        parent, _, name = relpath.rpartition("/")
        real_parent = dir_cache.get(parent)
        if real_parent is None:
            real_parent = dir_cache[parent] = self._inside(
                os.path.join(self.root, parent), parent or "."
            )
        # O_NONBLOCK: a FIFO or device swapped in cannot block the open; it is refused below.
        fd = os.open(f"{real_parent}/{name}", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", relpath)
            # Blocking reads again; O_NONBLOCK was the only status flag set, so no F_GETFL.
            fcntl.fcntl(fd, fcntl.F_SETFL, 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def absolute(self, relpath: str) -> str:
        return os.path.join(self.root, relpath)

    def expand(
        self, files: Sequence[object], directories: Sequence[object], *, recursive: bool = True
    ) -> tuple[list[CacheFile], list[str]]:
        """Expand files and folders into unique regular files; also return missing paths.

        Paths that would leave the root raise PathError; a path that does not exist is
        collected in the second list so the caller can name every missing one at once.
        """
        seen: dict[str, CacheFile] = {}
        missing: list[str] = []
        for raw in files:
            real = self.resolve(raw)
            try:
                st = os.stat(real)
            except FileNotFoundError:
                missing.append(str(raw))
                continue
            if stat.S_ISDIR(st.st_mode):
                raise PathError(str(raw), "path is a directory; list it under 'directories'")
            if not stat.S_ISREG(st.st_mode):
                raise PathError(str(raw), "path is not a regular file")
            self._add(seen, real, st.st_size)
        for raw in directories:
            real = self.resolve(raw)
            if not os.path.exists(real):
                missing.append(str(raw))
                continue
            if not os.path.isdir(real):
                raise PathError(str(raw), "path is not a directory; list it under 'files'")
            self._walk(seen, real, recursive=recursive)
        return list(seen.values()), missing

    def _add(self, seen: dict[str, CacheFile], real: str, size: int) -> None:
        rel = self.relative(real)
        if rel not in seen:
            seen[rel] = CacheFile(rel, size)

    def _walk(self, seen: dict[str, CacheFile], top: str, *, recursive: bool) -> None:
        stack = [top]
        while stack:
            current = stack.pop()
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
            subdirs = []
            for entry in entries:
                if entry.is_symlink():
                    real = self._inside(entry.path, self.relative(entry.path))
                    try:
                        st = os.stat(real)
                    except FileNotFoundError:
                        continue  # a dangling link names no file to cache
                    if stat.S_ISREG(st.st_mode):
                        self._add(seen, real, st.st_size)
                    continue  # symlinked folders are not followed: no cycles
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        subdirs.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    self._add(seen, entry.path, entry.stat(follow_symlinks=False).st_size)
            stack.extend(reversed(subdirs))
