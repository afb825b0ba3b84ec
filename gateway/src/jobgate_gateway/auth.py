"""Who is calling, per request: the principal from `jobgate.authn.Authenticator` (JWTs
through JWKS, API keys through auth-service), and the checks routes make on it.

The principal is resolved once per request, before rate limiting, so limits count per
user or key; routes then demand it with `require_auth()`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, g, request

from jobgate.errors import Forbidden, ServiceUnavailable, Unauthorized
from jobgate.identity import Principal

log = logging.getLogger(__name__)


def resolve_principal() -> None:
    """before_request: remember the principal or the reason there is none (never rejects)."""
    g.principal, g.auth_error = None, None
    try:
        authenticator = current_app.extensions["jobgate"].authenticator
        g.principal = authenticator.authenticate(
            request.headers, request_id=getattr(g, "request_id", "") or ""
        )
    except (Unauthorized, ServiceUnavailable) as exc:
        g.auth_error = exc


def require_auth(scope: str | None = None) -> Principal:
    """The authenticated principal, or 401/503; 403 when it lacks `scope`."""
    if g.get("auth_error") is not None:
        raise g.auth_error
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise Unauthorized("Invalid or missing API key")
    if scope and not principal.has_scope(scope):
        raise Forbidden(f"This credential lacks the '{scope}' scope")
    return principal


def authenticate_blueprint() -> None:
    """before_request of protected blueprints: 401 comes before any body validation."""
    require_auth()


def rate_limit_key() -> str:
    """Limits count per API key or user; unauthenticated calls per client address."""
    principal: Principal | None = g.get("principal")
    if principal is None:
        return f"ip:{request.remote_addr}"
    return f"key:{principal.key_id}" if principal.key_id else f"user:{principal.user_id}"


def owner_filter(principal: Principal) -> str | None:
    """Admins see every job; users only their own."""
    return None if principal.is_admin else principal.user_id


def can_access(principal: Principal, resource: dict[str, Any]) -> bool:
    return principal.is_admin or str(resource["owner_id"]) == principal.user_id
