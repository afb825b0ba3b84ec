"""Flask glue shared by the gateway and auth-service: request ids and one error format.

Every error — ours, Werkzeug's, webargs validation, an unexpected exception — leaves as
JSON (`{"error": {...}}`), never as HTML, and validation errors are 400, not 422.
Routes that must speak a seed's own error dialect register a formatter for their prefix.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import flask_smorest
from flask import Flask, Response, g, has_request_context, jsonify, request
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from jobgate.db import DataError, OperationalError, PoolError
from jobgate.errors import InvalidRequest, JobgateError, code_for_status
from jobgate.logs import request_id_var

log = logging.getLogger(__name__)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# (status, code, message, details) -> response body; chosen by URL prefix.
ErrorFormatter = Callable[[int, str, str, dict[str, Any]], dict[str, Any]]


class Parser(FlaskParser):
    """webargs parser answering 400 (not 422) on invalid input, as DESIGN.md requires."""

    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()


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


def canonical_error_body(status: int, code: str, message: str, details: dict[str, Any]) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "request_id": current_request_id(),
        }
    }


def _formatter_for_path(app: Flask) -> ErrorFormatter:
    for prefix, formatter in app.extensions.get("jobgate_error_formatters", []):
        if has_request_context() and request.path.startswith(prefix):
            return formatter
    return canonical_error_body


def register_error_formatter(app: Flask, prefix: str, formatter: ErrorFormatter) -> None:
    """Use `formatter` for errors on paths under `prefix` (longest prefixes first)."""
    formatters = app.extensions.setdefault("jobgate_error_formatters", [])
    formatters.append((prefix, formatter))
    formatters.sort(key=lambda item: len(item[0]), reverse=True)


def error_response(
    app: Flask,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Any = None,
) -> Response:
    body = _formatter_for_path(app)(status, code, message, details or {})
    response = jsonify(body)
    response.status_code = status
    if headers:
        for key, value in dict(headers).items():
            response.headers[key] = value
    return response


class Api(flask_smorest.Api):
    """flask-smorest Api whose HTTP errors use the Jobgate error format."""

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


def init_web(app: Flask) -> None:
    """Install request-id handling and the JSON error handlers on a Flask app."""

    @app.before_request
    def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request_id_var.set(g.request_id)

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
