"""Uploads and downloads streamed from and to disk: neither ever holds a whole file.

An upload is a multipart body whose file part is read from disk as the socket takes it (its
length is known up front, so it goes with a `Content-Length` and the gateway can refuse an
oversized file before a byte is sent). A download is written to `<name>.part` beside its
destination and renamed when complete; a connection lost midway resumes with `Range` (the
files API answers 206), restarting only if the file changed (`If-Range` with its ETag).
"""

from __future__ import annotations

import email.message
import mimetypes
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import requests
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.fields import RequestField

from jobgate_client.errors import ConnectionFailed, connection_reason
from jobgate_client.transport import HttpTransport

Progress = Callable[[int, int | None], None]  # (bytes done, total bytes or None)
CHUNK = 1024 * 1024  # upload reads
READ = 64 * 1024  # download reads: a dropped connection loses at most this much


class MultipartFile:
    """A `multipart/form-data` body: optional text fields, then one file part read from
    disk while it is sent. `requests` sees a file-like object with a length, so it streams
    it with a `Content-Length` instead of reading it into memory."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        field: str = "file",
        filename: str | None = None,
        content_type: str | None = None,
        fields: dict[str, str] | None = None,
        progress: Progress | None = None,
        boundary: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.boundary = boundary or secrets.token_hex(16)
        name = filename or self.path.name
        ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        head = b""
        for key, value in (fields or {}).items():
            part = RequestField(name=key, data=value)
            part.make_multipart()
            head += self._part_head(part) + value.encode("utf-8") + b"\r\n"
        part = RequestField(name=field, data=b"", filename=name)
        part.make_multipart(content_type=ctype)
        self._head = head + self._part_head(part)
        self._tail = f"\r\n--{self.boundary}--\r\n".encode("ascii")
        self._progress = progress
        self._file: BinaryIO | None = None
        self._stage = 0  # 0: head, 1: file, 2: tail, 3: done
        self._offset = 0
        self.sent = 0  # file bytes read so far

    def _part_head(self, part: RequestField) -> bytes:
        return f"--{self.boundary}\r\n".encode("ascii") + part.render_headers().encode("utf-8")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self.size + len(self._tail)

    def read(self, size: int = -1) -> bytes:
        """The next bytes of the body (at most `size`; -1: one chunk at a time)."""
        size = CHUNK if size is None or size < 0 else size
        if self._stage == 0:
            chunk = self._head[self._offset : self._offset + size]
            self._offset += len(chunk)
            if self._offset >= len(self._head):
                self._stage, self._offset = 1, 0
                self._file = open(self.path, "rb")  # noqa: SIM115 - closed at the file's end
            return chunk
        if self._stage == 1:
            assert self._file is not None
            chunk = self._file.read(min(size, CHUNK))
            if chunk:
                self.sent += len(chunk)
                if self._progress is not None:
                    self._progress(self.sent, self.size)
                return chunk
            self._file.close()
            self._stage = 2
        if self._stage == 2:
            chunk = self._tail[self._offset : self._offset + size]
            self._offset += len(chunk)
            if self._offset >= len(self._tail):
                self._stage = 3
            return chunk
        return b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def upload(
    transport: HttpTransport,
    path: str,
    source: str | os.PathLike[str],
    *,
    field: str = "file",
    filename: str | None = None,
    fields: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> Any:
    """POST `source` as a multipart upload to `path`; the answer's JSON. Not retried (an
    upload is not idempotent), but a refreshed token sends it again from the start."""
    boundary = secrets.token_hex(16)
    bodies: list[MultipartFile] = []

    def body() -> MultipartFile:
        made = MultipartFile(
            source,
            field=field,
            filename=filename,
            fields=fields,
            progress=progress,
            boundary=boundary,
        )
        bodies.append(made)
        return made

    try:
        response = transport.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            retries=0,
        )
    finally:
        for made in bodies:
            made.close()
    return response.json()


def filename_from(response: requests.Response) -> str | None:
    """The file name a response's `Content-Disposition` gives (`filename*` or `filename`),
    reduced to its last path part."""
    header = response.headers.get("Content-Disposition")
    if not header:
        return None
    message = email.message.Message()
    message["content-disposition"] = header
    name = message.get_filename()
    if not name:
        return None
    name = os.path.basename(name.replace("\\", "/"))
    return name if name not in ("", ".", "..") else None


def _total(response: requests.Response, offset: int) -> int | None:
    if response.status_code == 206:
        content_range = response.headers.get("Content-Range", "")
        total = content_range.rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None


def download(
    transport: HttpTransport,
    path: str,
    dest: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    default_name: str = "download",
) -> Path:
    """GET `path` into `dest` (a file path, or an existing directory: then the server's file
    name is used) without holding it in memory; resumes with `Range` after a dropped
    connection, up to the transport's retries. Returns the written file's path."""
    dest_path = Path(dest)
    done = 0
    etag: str | None = None
    target: Path | None = None
    failures = 0
    while True:
        headers = {}
        if done:
            headers["Range"] = f"bytes={done}-"
            if etag:
                headers["If-Range"] = etag
        response = transport.request("GET", path, headers=headers, stream=True)
        try:
            if target is None:
                name = filename_from(response) or default_name
                target = dest_path / name if dest_path.is_dir() else dest_path
            part = target.with_name(target.name + ".part")
            if response.status_code != 206:
                done = 0  # the whole file (first try, or it changed since)
            etag = response.headers.get("ETag") or etag
            total = _total(response, done)
            with open(part, "ab" if done else "wb") as fh:
                for chunk in response.iter_content(READ):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done < total:
                raise requests.ConnectionError("the connection closed before the file's end")
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            Urllib3Error,
        ) as exc:
            failures += 1
            if failures > transport.retries:
                raise ConnectionFailed(transport.base_url, connection_reason(exc)) from exc
            transport.sleep(transport.backoff_delay(failures - 1))
            continue
        finally:
            response.close()
        os.replace(part, target)
        return target
