"""Error types shared by every service; each maps to one HTTP status and one error code.

The canonical error body is
`{"error": {"code", "message", "details", "request_id"}}` (DESIGN.md, "Public API").
"""

from __future__ import annotations

from typing import Any


class JobgateError(Exception):
    """Base error: carries an HTTP status, a stable code and optional details."""

    status = 500
    code = "INTERNAL_ERROR"

    def __init__(
        self, message: str | None = None, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details or {}

    default_message = "Internal server error"

    def to_dict(self, request_id: str | None = None) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
                "request_id": request_id,
            }
        }


class InvalidRequest(JobgateError):
    status, code, default_message = 400, "INVALID_REQUEST", "Invalid request"


class Unauthorized(JobgateError):
    status, code, default_message = 401, "UNAUTHORIZED", "Authentication required"


class Forbidden(JobgateError):
    status, code, default_message = 403, "FORBIDDEN", "Not allowed"


class NotFound(JobgateError):
    status, code, default_message = 404, "NOT_FOUND", "Not found"


class Conflict(JobgateError):
    status, code, default_message = 409, "CONFLICT", "Conflict"


class PayloadTooLarge(JobgateError):
    status, code, default_message = 413, "PAYLOAD_TOO_LARGE", "Payload too large"


class RateLimited(JobgateError):
    status, code, default_message = 429, "RATE_LIMITED", "Too many requests, please try again later"


class ServiceUnavailable(JobgateError):
    status, code, default_message = 503, "SERVICE_UNAVAILABLE", "Service unavailable"


ERROR_CODES_BY_STATUS: dict[int, str] = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "INVALID_REQUEST",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "INVALID_REQUEST",
    422: "INVALID_REQUEST",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


def code_for_status(status: int) -> str:
    """The error code for an HTTP status; unknown 4xx are INVALID_REQUEST, 5xx INTERNAL_ERROR."""
    if status in ERROR_CODES_BY_STATUS:
        return ERROR_CODES_BY_STATUS[status]
    return "INVALID_REQUEST" if 400 <= status < 500 else "INTERNAL_ERROR"
