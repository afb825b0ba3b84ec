"""`/api/v1/auth/*` is auth-service's API, forwarded unchanged (method, headers, body, status)."""

from __future__ import annotations

import requests
from flask import Response, g, request

from jobgate.errors import ServiceUnavailable
from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.services import services

blp = Blueprint(
    "auth", __name__, url_prefix="/api/v1/auth", description="Forwarded to auth-service"
)

FORWARDED_REQUEST_HEADERS = ("Authorization", "X-API-Key", "Content-Type", "Accept")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "WWW-Authenticate")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@blp.route("/<path:subpath>", methods=METHODS)
@ratelimit.login_limit
def forward(subpath: str) -> Response:
    svc = services()
    headers = {h: request.headers[h] for h in FORWARDED_REQUEST_HEADERS if h in request.headers}
    headers["X-Request-ID"] = g.request_id
    headers["X-Forwarded-For"] = request.remote_addr or ""
    try:
        upstream = svc.authenticator.session.request(
            request.method,
            f"{svc.settings.auth_service_url}/{subpath}",
            params=request.args,
            data=request.get_data(),
            headers=headers,
            timeout=svc.settings.request_timeout,
        )
    except requests.RequestException as exc:
        raise ServiceUnavailable("Authentication service unavailable") from exc
    response = Response(upstream.content, status=upstream.status_code)
    for name in FORWARDED_RESPONSE_HEADERS:
        if name in upstream.headers:
            response.headers[name] = upstream.headers[name]
    return response
