"""Receiving uploads: the multipart body streams straight into storage, never into memory.

werkzeug's multipart parser asks the request for a stream per file part; ours is a
storage PendingObject that hashes and counts as it writes and stops at MAX_FILE_SIZE. The
extension of a media upload is checked before a byte of the file is read, the whole body is
refused with 413 up front when its Content-Length is already too large, and a part left
uncommitted (a refused or interrupted upload) is removed when the request ends.

Two ways in: `receive_upload` for the media routes (extension, probe), and the `multipart`
argument location of `UploadBlueprint` for routes taking files of any type with form fields
beside them (seed 003's `/api/files/upload`); both end in `store_upload`.
"""

from __future__ import annotations

import mimetypes
import os
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Request, request
from flask_smorest.fields import Upload
from marshmallow import ValidationError
from werkzeug.datastructures import CombinedMultiDict, FileStorage, MultiDict
from werkzeug.formparser import FormDataParser, MultiPartParser

from jobgate import db, files, media
from jobgate.errors import InvalidRequest, PayloadTooLarge
from jobgate.identity import Principal
from jobgate.storage import PendingObject, TooLarge
from jobgate.web import Blueprint, Parser
from jobgate_gateway.metrics import UPLOAD_BYTES, UPLOADS
from jobgate_gateway.services import Services, services

T = TypeVar("T")

MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries around the file itself
UPLOAD_READ_BYTES = 1024 * 1024


class _RefusedExtension(InvalidRequest):
    pass


class _LargeBufferFormParser(FormDataParser):
    """werkzeug's form parser reading the body 1 MiB at a time (its default, 64 KiB, spends
    most of an upload's CPU re-slicing the server's read buffer)."""

    def _parse_multipart(self, stream, mimetype, content_length, options):  # type: ignore[override]
        parser = MultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
            buffer_size=UPLOAD_READ_BYTES,
        )
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        form, files = parser.parse(stream, boundary, content_length)
        return stream, form, files


class UploadRequest(Request):
    """A Flask request whose file parts go to Jobgate storage (when a route asked for it)."""

    form_data_parser_class = _LargeBufferFormParser

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> Any:
        svc: Services | None = getattr(self, "jobgate_upload_to", None)
        if svc is None:
            return super()._get_file_stream(
                total_content_length, content_type, filename, content_length
            )
        if self.jobgate_pending:
            raise InvalidRequest("Send one file per request, in the multipart field 'file'")
        if self.jobgate_media_only:
            check_extension(svc, filename or "")
        pending = svc.storage.begin(max_bytes=max_file_bytes(svc))
        self.jobgate_pending.append(pending)
        return pending


def max_file_bytes(svc: Services) -> int:
    return svc.settings.max_file_size * 1024 * 1024


def check_extension(svc: Services, filename: str) -> None:
    ext = os.path.splitext(filename)[1].lower().lstrip(".")
    allowed = [e.lower().lstrip(".") for e in svc.settings.allowed_extensions]
    if ext not in allowed:
        raise _RefusedExtension(
            f"File type '.{ext}' is not allowed; allowed: {', '.join(allowed)}"
            if ext
            else f"File name has no extension; allowed: {', '.join(allowed)}",
            details={"filename": filename, "allowed_extensions": allowed},
        )


def init_uploads(app: Flask) -> None:
    app.request_class = UploadRequest

    @app.teardown_request
    def _discard_uncommitted(_exc: BaseException | None) -> None:
        for pending in getattr(request, "jobgate_pending", ()):
            app.extensions["jobgate"].storage.discard(pending)


def stream_parts_to_storage(svc: Services, *, media_only: bool) -> None:
    """Make the request's file part stream into storage when the body is parsed (call it
    before `request.form` or `request.files` is first read): 413 at once when the
    Content-Length is already over MAX_FILE_SIZE, 400 unless the body is multipart.
    `media_only` refuses a file whose extension is not allowed before reading it."""
    limit = max_file_bytes(svc)
    if request.content_length is not None and request.content_length > limit + MULTIPART_OVERHEAD:
        raise _too_large(svc)
    if not (request.mimetype or "").startswith("multipart/form-data"):
        raise InvalidRequest("Send the file as multipart/form-data in the field 'file'")
    request.jobgate_upload_to = svc
    request.jobgate_media_only = media_only
    request.jobgate_pending = []
    request.max_content_length = limit + MULTIPART_OVERHEAD
    # The parser buffers up to one read in memory; werkzeug counts that against this limit.
    request.max_form_memory_size = 2 * UPLOAD_READ_BYTES
    request.max_form_parts = 10  # a file and a few small fields; each part costs a descriptor


def parsed_parts(svc: Services) -> tuple[MultiDict, MultiDict]:
    """The body's form fields and file parts (parsing it now if nothing has yet)."""
    try:
        return request.form, request.files
    except TooLarge:
        raise _too_large(svc) from None


def file_part(svc: Services, field: str = "file") -> tuple[FileStorage, PendingObject]:
    """The file part `field` and the pending storage object it was streamed into."""
    upload = parsed_parts(svc)[1].get(field)
    if upload is None or not upload.filename:
        raise InvalidRequest(f"No file in the multipart field '{field}'")
    return upload, upload.stream


def store_upload(
    svc: Services, pending: PendingObject, record: Callable[[db.Connection, str], T]
) -> T:
    """Make a received part a stored object and `record(conn, key)` it in one transaction.
    An object whose row was not written is deleted at once: it would be an orphan."""
    key = svc.storage.commit(pending)
    try:
        with svc.db.transaction() as conn:
            recorded = record(conn, key)
    except BaseException:
        svc.storage.delete(key)
        raise
    UPLOADS.inc()
    UPLOAD_BYTES.inc(pending.size)
    return recorded


def content_type_of(filename: str, declared: str | None) -> str:
    """The type its name says, else what the client declared, else a generic one."""
    return mimetypes.guess_type(filename)[0] or declared or "application/octet-stream"


def receive_upload(svc: Services, principal: Principal, *, field: str = "file") -> dict[str, Any]:
    """Store the request's file part `field`, probe it with ffmpeg, and record it."""
    stream_parts_to_storage(svc, media_only=True)
    upload, pending = file_part(svc, field)
    if pending.size == 0:
        raise InvalidRequest("File is empty")
    pending.flush()
    try:
        info = media.probe(pending.path)
    except media.NotMedia as exc:
        reason = str(exc).replace(str(pending.path), upload.filename)  # never show our paths
        raise InvalidRequest(
            f"'{upload.filename}' is not a readable video or audio file",
            details={"ffmpeg": reason},
        ) from None
    filename = clean_filename(upload.filename)
    content_type = content_type_of(filename, upload.mimetype)
    return store_upload(
        svc,
        pending,
        lambda conn, key: files.create_file(
            conn,
            owner_id=principal.user_id,
            role="upload",
            filename=filename,
            content_type=content_type,
            size=pending.size,
            sha256=pending.sha256,
            storage_key=key,
            media=info.to_dict(),
        ),
    )


class UploadedFile(Upload):
    """A multipart file part (documented as binary): the FileStorage whose stream is the
    pending storage object, or a 400 when the field came as plain text."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, FileStorage) or not value.filename:
            raise ValidationError("Not a file: send it as a file part, with a file name.")
        return value


class UploadParser(Parser):
    """The gateway's parser plus a `multipart` location: the form fields and file parts of
    one multipart body, its file part streamed into storage as it is parsed (any type: no
    extension check, no probe). The view stores it with `store_upload`."""

    __location_map__ = {**Parser.__location_map__, "multipart": "load_multipart"}

    def load_multipart(self, req: Request, schema: Any) -> Any:
        svc = services()
        stream_parts_to_storage(svc, media_only=False)
        form, file_parts = parsed_parts(svc)
        return self._makeproxy(CombinedMultiDict([file_parts, form]), schema)


class UploadBlueprint(Blueprint):
    """A Blueprint whose `@blp.arguments(..., location="multipart")` takes uploads."""

    ARGUMENTS_PARSER = UploadParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }


def clean_filename(raw: str, max_bytes: int = 255) -> str:
    """A name safe to store and to send back in Content-Disposition: the last path part,
    NFC, without control or format characters, at most 255 bytes (extension kept)."""
    name = unicodedata.normalize("NFC", raw.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf")).strip()
    stem, ext = os.path.splitext(name)
    while len((stem + ext).encode()) > max_bytes and stem:
        stem = stem[:-1]
    return (stem + ext) if stem else f"upload{ext}"


def delete_upload(svc: Services, row: dict[str, Any]) -> None:
    """Undo receive_upload when the request it belongs to is refused afterwards."""
    with svc.db.transaction() as conn:
        files.delete_file(conn, file_id=str(row["id"]))
    svc.storage.delete(row["storage_key"])


def _too_large(svc: Services) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"File is larger than the {svc.settings.max_file_size} MB limit",
        details={"max_file_size_mb": svc.settings.max_file_size},
    )
