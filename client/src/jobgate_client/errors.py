"""Typed errors: every API error body (`{"error": {code, message, details, request_id}}`)
becomes a `JobgateError` subclass chosen by its code, so callers catch `NotFound` or
`Conflict` instead of comparing status numbers; `ConnectionFailed` is the server not being
reachable at all (no answer to parse)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import socket
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import requests


class JobgateError(Exception):
    """An error answered by the API (or, for `ConnectionFailed`, no answer at all)."""

    default_code = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.request_id = request_id
        self.details = details or {}

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.code}: {self.message}{where}"


class InvalidRequest(JobgateError):
    default_code = "INVALID_REQUEST"


class Unauthorized(JobgateError):
    default_code = "UNAUTHORIZED"


class Forbidden(JobgateError):
    default_code = "FORBIDDEN"


class NotFound(JobgateError):
    default_code = "NOT_FOUND"


class Conflict(JobgateError):
    default_code = "CONFLICT"


class PayloadTooLarge(JobgateError):
    default_code = "PAYLOAD_TOO_LARGE"


class RateLimited(JobgateError):
    """429: `retry_after` is the server's `Retry-After` in seconds, when it sent one."""

    default_code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(JobgateError):
    default_code = "INTERNAL_ERROR"


class ServiceUnavailable(JobgateError):
    default_code = "SERVICE_UNAVAILABLE"


class ConnectionFailed(JobgateError, ConnectionError):
    """The server could not be reached (refused, unresolvable, timed out, reset) after the
    retries the call allowed. `url` is the base URL tried, `reason` a short phrase."""

    default_code = "CONNECTION_FAILED"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot connect to {url} ({reason})")
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return self.message


class JobFailed(JobgateError):
    """Raised by `Jobs.wait(..., raise_on_failure=True)`: the job ended failed or cancelled.
    `job` is its last state."""

    default_code = "JOB_FAILED"

    def __init__(self, job: dict[str, Any]) -> None:
        reason = f": {job.get('error')}" if job.get("error") else ""
        super().__init__(f"job {job.get('id')} {job.get('status')}{reason}")
        self.job = job


BY_CODE: dict[str, type[JobgateError]] = {
    cls.default_code: cls
    for cls in (
        InvalidRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        RateLimited,
        ServerError,
        ServiceUnavailable,
    )
}
BY_STATUS: dict[int, type[JobgateError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    500: ServerError,
    502: ServiceUnavailable,
    503: ServiceUnavailable,
    504: ServiceUnavailable,
}


def retry_after_seconds(raw: str | None) -> float | None:
    """A `Retry-After` value in seconds (it is a number of seconds or an HTTP date)."""
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
        return max(0.0, (when - dt.datetime.now(when.tzinfo or dt.UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def from_response(response: requests.Response) -> JobgateError:
    """The typed error for an error answer of `requests`."""
    return from_parts(response.status_code, response.headers, response.content, response.reason)


def from_parts(
    status: int, headers: Mapping[str, str], body: bytes | None, reason: str | None = None
) -> JobgateError:
    """The typed error for an error answer. Canonical bodies and seed 004's envelope carry
    `error: {code, message, details, request_id}`; anything else (an HTML page from a proxy)
    is classified by its status."""
    parsed: Any = None
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        message = str(error.get("message") or reason or "error")
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
        request_id = error.get("request_id")
    else:
        code = ""
        text = parsed.get("detail") if isinstance(parsed, dict) else None
        if isinstance(error, str):  # seed 000's {"success": false, "error": "..."}
            text = error
        message = str(text or f"HTTP {status} {reason or ''}".strip())
        details, request_id = {}, None
    request_id = request_id or _header(headers, "X-Request-ID")
    cls = BY_CODE.get(code) or BY_STATUS.get(status) or JobgateError
    kwargs: dict[str, Any] = {
        "code": code or None,
        "status": status,
        "request_id": request_id,
        "details": details,
    }
    if cls is RateLimited:
        retry_after = retry_after_seconds(_header(headers, "Retry-After"))
        return RateLimited(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict from elsewhere: compare names without case
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def connection_reason(exc: BaseException) -> str:
    """A short phrase for why a connection failed, from the innermost cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    chain: list[BaseException] = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        nxt = current.__cause__ or current.__context__
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError, NewConnectionError
        current = reason if isinstance(reason, BaseException) else nxt
    for item in chain:
        if isinstance(item, ConnectionRefusedError) or getattr(item, "errno", None) == (
            errno.ECONNREFUSED
        ):
            return "connection refused"
        if isinstance(item, socket.gaierror):
            return "name not resolved"
        if isinstance(item, ConnectionResetError):
            return "connection reset"
        if isinstance(item, TimeoutError | socket.timeout | requests.Timeout):
            return "timed out"
    text = " ".join(str(exc).split())
    if "refused" in text.lower():
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "name not resolved"
    return text[:160] or type(exc).__name__
