"""Requests and answers as the gateway gives them: request ids, the error formats (canonical,
seed 002's `detail`, seed 004's envelope), and who is calling (`jobgate.authn`, the
gateway's own code) with a limit on the streams one caller may hold open."""

from __future__ import annotations

import collections
import re
import uuid
from collections.abc import Callable
from typing import Any

import anyio
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from jobgate.authn import Authenticator
from jobgate.errors import Forbidden, JobgateError, RateLimited, Unauthorized
from jobgate.identity import Principal
from jobgate.logs import request_id_var
from jobgate.timefmt import now_iso_ms

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def canonical(status: int, code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details,
            "request_id": request_id_var.get(),
        }
    }


def with_detail(status: int, code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """Seed 002's routes (`/api/v1/jobs/...`): its clients read `detail`."""
    return {**canonical(status, code, message, details), "detail": message}


def envelope(status: int, code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """Seed 004's routes (`/api/v1/analytics/...`, its WebSockets)."""
    return {
        "status": "error",
        **canonical(status, code, message, details),
        "timestamp": now_iso_ms(),
    }


Dialect = Callable[[int, str, str, dict[str, Any]], dict[str, Any]]


def error_response(exc: JobgateError, dialect: Dialect = canonical) -> JSONResponse:
    headers = dict(getattr(exc, "headers", None) or {})
    rid = request_id_var.get()
    if rid:
        headers["X-Request-ID"] = rid
    body = dialect(exc.status, exc.code, exc.message, exc.details)
    return JSONResponse(body, status_code=exc.status, headers=headers)


def dialect_for(path: str) -> Dialect:
    if path.startswith("/api/v1/analytics") or path in ("/ws/metrics", "/ws/tasks"):
        return envelope
    if path.startswith("/api/v1/jobs/"):
        return with_detail
    return canonical


class Stamp:
    """Takes a well-formed `X-Request-ID` (or makes one) into the log context, and puts it
    and `X-Jobgate-Service: stats` on every HTTP answer (a refused handshake's included),
    so operators see which service behind the one public address answered. One wrapper
    for both: it sits in the path of every WebSocket message."""

    HEADER = (b"x-jobgate-service", b"stats")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
        rid = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        stamps = [(b"x-request-id", rid.encode()), self.HEADER]

        async def stamped(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                message["headers"] = [*message.get("headers", []), *stamps]
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        finally:
            request_id_var.reset(token)


def _query_token(conn: HTTPConnection) -> str:
    """A browser's credential in the URL (`?token=`, `?access_token=`, `?api_key=`)."""
    for name in ("token", "access_token", "api_key"):
        value = conn.query_params.get(name)
        if value:
            return value
    return ""


class Gatekeeper:
    """Authenticates a request or handshake and counts each caller's open streams."""

    def __init__(self, authenticator: Authenticator, *, max_streams: int) -> None:
        self.authenticator = authenticator
        self.max_streams = max_streams
        self._open: collections.Counter[str] = collections.Counter()

    async def principal(self, conn: HTTPConnection, *, scope: str = "jobs:read") -> Principal:
        principal = await anyio.to_thread.run_sync(
            lambda: self.authenticator.authenticate(
                conn.headers,  # case-insensitive, as the authenticator's lookups need
                request_id=request_id_var.get() or "",
                query_token=_query_token(conn),
            )
        )
        if principal is None:
            raise Unauthorized("Invalid or missing API key")
        if scope and not principal.has_scope(scope):
            raise Forbidden(f"This credential lacks the '{scope}' scope")
        return principal

    @staticmethod
    def key(principal: Principal) -> str:
        return f"key:{principal.key_id}" if principal.key_id else f"user:{principal.user_id}"

    def acquire(self, principal: Principal) -> Callable[[], None]:
        """Take one of the caller's STATS_MAX_STREAMS_PER_PRINCIPAL slots (429 past it); the
        returned function gives it back."""
        key = self.key(principal)
        if self._open[key] >= self.max_streams:
            raise RateLimited(
                f"Too many open streams for this credential (at most {self.max_streams})",
                details={"limit": self.max_streams},
            )
        self._open[key] += 1

        def release() -> None:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

        return release


async def deny(websocket: WebSocket, exc: JobgateError) -> None:
    """Refuse a WebSocket handshake with an HTTP answer (401, 403, 404, 429 as JSON) when
    the server can send one; otherwise close it with a policy-violation code."""
    response = error_response(exc, dialect_for(websocket.url.path))
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:
        await websocket.close(code=1008, reason=exc.message[:120])
