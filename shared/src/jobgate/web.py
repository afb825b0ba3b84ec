"""Flask glue shared by the gateway and auth-service: request ids and one error format.

Every error — ours, Werkzeug's, webargs validation, an unexpected exception — leaves as
JSON (`{"error": {...}}`), never as HTML, and validation errors are 400, not 422.
A blueprint that speaks a seed's own error dialect says so when it is made
(`Blueprint(..., error_dialect=...)`): its errors are written, and documented, that way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import flask_smorest
from flask import Flask, Response, g, has_request_context, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from jobgate import timefmt
from jobgate.db import DataError, OperationalError, PoolError
from jobgate.errors import InvalidRequest, JobgateError, code_for_status
from jobgate.logs import request_id_var

log = logging.getLogger(__name__)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# (status, code, message, details) -> response body.
ErrorFormatter = Callable[[int, str, str, dict[str, Any]], dict[str, Any]]


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"example": "NOT_FOUND"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)
    request_id = fields.String(required=True, allow_none=True)


class ErrorSchema(Schema):
    """The canonical error body (DESIGN.md, "Public API")."""

    error = fields.Nested(ErrorDetailSchema, required=True)


def canonical_error_body(status: int, code: str, message: str, details: dict[str, Any]) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "request_id": current_request_id(),
        }
    }


@dataclasses.dataclass(frozen=True)
class ErrorDialect:
    """How a blueprint's errors look: the body it writes and the schema documenting it."""

    formatter: ErrorFormatter
    schema: type[Schema]


CANONICAL = ErrorDialect(canonical_error_body, ErrorSchema)


LOCATIONS = {
    "json": "body",
    "form": "body",
    "files": "body",
    "query": "query",
    "headers": "header",
    "view_args": "path",
}


def field_errors(messages: dict[str, Any], loc: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """marshmallow's nested field messages as seed 002's `[{"loc": [...], "msg", "type"}]`."""
    found = []
    for name, value in messages.items():
        # `loc` starts with where the field was, as seed 002's (FastAPI's) clients expect:
        # webargs nests messages by location, bodies checked in a view are the body's.
        if loc:
            where = (*loc, str(name))
        elif name in LOCATIONS:
            where = (LOCATIONS[name],)
        else:
            where = ("body", str(name))
        if isinstance(value, dict):
            found += field_errors(value, where)
        else:
            for msg in value if isinstance(value, list) else [value]:
                found.append({"loc": list(where), "msg": str(msg), "type": "value_error"})
    return found


def error_body_with_detail(status: int, code: str, message: str, details: dict[str, Any]) -> dict:
    """The canonical body plus seed 002's `detail`: the message, or for invalid fields the
    list of `{loc, msg, type}` its clients print."""
    fields_ = details.get("fields")
    detail: Any = field_errors(fields_) if isinstance(fields_, dict) else message
    return {**canonical_error_body(status, code, message, details), "detail": detail}


class ErrorWithDetailSchema(ErrorSchema):
    detail = fields.Raw(
        required=True,
        metadata={
            "description": "seed 002's: the message, or a list of {loc, msg, type} for fields",
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
        },
    )


# Routes seed 002's clients share (`/api/v1/jobs`, `/videos`, `/scheduled-jobs`, `/stats`).
WITH_DETAIL = ErrorDialect(error_body_with_detail, ErrorWithDetailSchema)


def utc_timestamp() -> str:
    """Now as seed 004 prints it: ISO 8601, UTC, milliseconds, `Z`."""
    return timefmt.now_iso_ms()


def envelope_error_body(status: int, code: str, message: str, details: dict[str, Any]) -> dict:
    """Seed 004's error envelope: `status: "error"`, the canonical `error` object (with
    `request_id`) and a `timestamp`, so its clients can branch on `status` for every answer."""
    return {
        "status": "error",
        **canonical_error_body(status, code, message, details),
        "timestamp": utc_timestamp(),
    }


class EnvelopeErrorSchema(ErrorSchema):
    status = fields.String(required=True, validate=validate.Equal("error"))
    timestamp = fields.String(required=True, metadata={"example": "2024-02-09T10:30:00.000Z"})


# Seed 004's routes (`/api/v1/tasks`, `/api/v1/workers`, `/workers/status`).
ENVELOPE = ErrorDialect(envelope_error_body, EnvelopeErrorSchema)


class Parser(FlaskParser):
    """webargs parser answering 400 (not 422) on invalid input, as DESIGN.md requires."""

    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest Blueprint with 400 validation errors and its own error dialect."""

    ARGUMENTS_PARSER = Parser()

    def __init__(self, *args: Any, error_dialect: ErrorDialect = CANONICAL, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.error_dialect = error_dialect
        if error_dialect is not CANONICAL:
            self._prepare_doc_cbks.append(self._document_dialect_errors)

    def _document_dialect_errors(
        self, doc: dict[str, Any], _doc_info: Any, **_kwargs: Any
    ) -> dict[str, Any]:
        """Error responses of this blueprint's operations are in its dialect, not the
        Api-wide error schema that flask-smorest references by default."""
        for status, response in doc.get("responses", {}).items():
            is_error = status == "default" or int(status) >= 400
            if is_error and not isinstance(response, Mapping):
                doc["responses"][status] = {
                    "description": "Error",
                    "content": {"application/json": {"schema": self.error_dialect.schema}},
                }
        return doc


class UtcDateTime(fields.AwareDateTime):
    """An ISO 8601 instant with a zone, loaded in UTC: PostgreSQL refuses offsets beyond
    ±15:59 that Python accepts (`+17:45`, found by the API fuzz test as a 500), and an
    instant outside what a timestamp holds is a 400, not an overflow."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError("Not a time a timestamp can hold.") from None


def load_or_400(schema: Schema, data: Any) -> dict[str, Any]:
    """Validate `data` with a marshmallow schema; a validation error is our 400 body."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise InvalidRequest(
            "Request validation failed", details={"fields": exc.messages}
        ) from None


def current_request_id() -> str | None:
    return getattr(g, "request_id", None) if has_request_context() else request_id_var.get()


def _dialect(app: Flask) -> ErrorDialect:
    """The dialect of the blueprint serving this request. A request that matched no route
    (404, 405) takes the dialect of the blueprint whose URL prefix covers its path."""
    if not has_request_context():
        return CANONICAL
    blueprint = app.blueprints.get(request.blueprint or "")
    if blueprint is None:
        covering = [
            b
            for b in app.blueprints.values()
            if b.url_prefix and (request.path + "/").startswith(b.url_prefix.rstrip("/") + "/")
        ]
        blueprint = max(covering, key=lambda b: len(b.url_prefix), default=None)
    return getattr(blueprint, "error_dialect", CANONICAL)


def error_response(
    app: Flask,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Any = None,
) -> Response:
    body = _dialect(app).formatter(status, code, message, details or {})
    response = jsonify(body)
    response.status_code = status
    if headers:
        for key, value in dict(headers).items():
            response.headers[key] = value
    return response


class UuidText(BaseConverter):
    """`<uuidstr:job_id>`: documented as a uuid, handed to the view as text, so a malformed
    id reaches the view and gets the route's own 400 (seed 000: "Invalid job ID format")."""


class Api(flask_smorest.Api):
    """flask-smorest Api whose HTTP errors use the Jobgate error format (and say so)."""

    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app: Flask, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        app.url_map.converters["uuidstr"] = UuidText
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.register_converter(UuidText, lambda _converter: {"type": "string", "format": "uuid"})

    def handle_http_exception(self, error: HTTPException) -> Response:
        return _http_exception_response(self._app, error)


def _http_exception_response(app: Flask, error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    details: dict[str, Any] = {}
    message = error.description or "Error"
    if "messages" in data:
        details = {"fields": data["messages"]}
        message = "Request validation failed"
    elif "message" in data:
        message = data["message"]
    if status == 422:
        status = 400
    if status >= 500:
        message = "Internal server error"
    headers = data.get("headers") or (error.get_headers() if status in (405, 429) else None)
    if headers and not isinstance(headers, dict):
        headers = {k: v for k, v in headers if k.lower() not in ("content-type",)}
    return error_response(app, status, code_for_status(status), message, details, headers)


# Deeper JSON is refused (400) before any view parses it: Python's parsers recurse, and a
# body nested a few thousand levels deep would be a RecursionError (500) wherever it is read.
MAX_JSON_DEPTH = 100


def _with_nul(value: Any) -> str | None:
    """The first string in a JSON value (keys included) that holds a NUL character;
    InvalidRequest when the value is nested deeper than MAX_JSON_DEPTH. Iterative: a
    value as deep as the parser allows does not exhaust the stack here."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return item
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= MAX_JSON_DEPTH:
            raise _too_deep()
        parts = [p for kv in item.items() for p in kv] if isinstance(item, dict) else item
        pending += [(part, depth + 1) for part in reversed(parts)]
    return None


def _too_deep() -> InvalidRequest:
    return InvalidRequest(
        f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep",
        details={"location": "body", "max_depth": MAX_JSON_DEPTH},
    )


def refuse_unstorable_text() -> None:
    """before_request: text PostgreSQL cannot store (NUL) or that is not UTF-8, anywhere in
    the path, the query or a JSON body, is the client's error: a 400 on every route, before
    any view or query sees it. The message names the offending text. So is a JSON body
    nested deeper than MAX_JSON_DEPTH."""
    try:
        path = request.environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        query = parse_qsl(
            request.environ.get("QUERY_STRING", ""), keep_blank_values=True, errors="strict"
        )
    except UnicodeError:
        raise InvalidRequest("The request URL is not valid UTF-8") from None
    found = _with_nul([path, *(part for pair in query for part in pair)])
    where = "URL"
    if found is None and request.is_json:
        # Parsed once here; Flask keeps the result for the view (invalid JSON is its own 400).
        try:
            body = request.get_json(silent=True, cache=True)
        except RecursionError:
            raise _too_deep() from None
        found, where = _with_nul(body), "body"
    if found is not None:
        raise InvalidRequest(
            f"The request {where} contains a NUL character in '{found[:200]}'",
            details={"location": where.lower(), "value": found[:200]},
        )


def init_web(app: Flask) -> None:
    """Install request-id handling, the text guard and the JSON error handlers on an app."""

    @app.before_request
    def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request_id_var.set(g.request_id)

    app.before_request(refuse_unstorable_text)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        rid = getattr(g, "request_id", None)
        if rid:
            response.headers["X-Request-ID"] = rid
        return response

    @app.errorhandler(JobgateError)
    def _jobgate_error(exc: JobgateError) -> Response:
        headers = getattr(exc, "headers", None)
        return error_response(app, exc.status, exc.code, exc.message, exc.details, headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _http_exception_response(app, exc)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolError)
    def _database_down(exc: Exception) -> Response:
        log.error("database unavailable on %s %s: %s", request.method, request.path, exc)
        return error_response(app, 503, "SERVICE_UNAVAILABLE", "Database unavailable")

    @app.errorhandler(DataError)
    def _bad_value(exc: DataError) -> Response:
        # A value PostgreSQL cannot store (out of range, bad encoding) is the client's input.
        log.info("value refused by the database on %s %s: %s", request.method, request.path, exc)
        return error_response(app, 400, "INVALID_REQUEST", "A value in the request is out of range")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return _http_exception_response(app, exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(app, 500, "INTERNAL_ERROR", "Internal server error")
