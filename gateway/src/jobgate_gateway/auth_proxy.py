"""`/api/v1/auth/…`: auth-service's public operations, forwarded unchanged (method, headers,
body, status). Each is declared here with auth-service's own schemas (`jobgate.auth_schemas`),
so the gateway's OpenAPI document describes them and a malformed body is refused before it
travels; auth-service's internal routes (`/validate`, JWKS, health) are not exposed.
"""

from __future__ import annotations

from typing import Any

import requests
from flask import Response, g, request
from flask.views import MethodView

from jobgate.auth_schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeyListQuerySchema,
    ApiKeyListSchema,
    LoginSchema,
    MessageSchema,
    PageQuerySchema,
    RefreshSchema,
    TokenResponseSchema,
    UserCreateSchema,
    UserListSchema,
    UserSchema,
    UserUpdateSchema,
)
from jobgate.errors import ServiceUnavailable
from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.services import services

blp = Blueprint(
    "auth", __name__, url_prefix="/api/v1/auth", description="Forwarded to auth-service"
)

FORWARDED_REQUEST_HEADERS = ("Authorization", "X-API-Key", "Content-Type", "Accept")
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "WWW-Authenticate")
BASIC_LOGIN = {"security": [{}, {"Basic": []}]}


def forward(path: str) -> Response:
    """Send this request to auth-service at `path` and answer with its response."""
    svc = services()
    headers = {h: request.headers[h] for h in FORWARDED_REQUEST_HEADERS if h in request.headers}
    headers["X-Request-ID"] = g.request_id
    headers["X-Forwarded-For"] = request.remote_addr or ""
    try:
        upstream = svc.authenticator.session.request(
            request.method,
            f"{svc.settings.auth_service_url}{path}",
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


@blp.route("/login", methods=["POST"])
@ratelimit.login_limit
@blp.arguments(LoginSchema, required=False)
@blp.alt_response(200, schema=TokenResponseSchema, success=True)
@blp.doc(**BASIC_LOGIN)
def login(_body: dict[str, Any]) -> Response:
    """Exchange a username and password (JSON body or HTTP Basic) for tokens."""
    return forward("/login")


@blp.route("/refresh", methods=["POST"])
@ratelimit.login_limit
@blp.arguments(RefreshSchema)
@blp.alt_response(200, schema=TokenResponseSchema, success=True)
@blp.doc(security=[])
def refresh(_body: dict[str, Any]) -> Response:
    """Rotate a refresh token: the old one dies, a reused one kills its whole family."""
    return forward("/refresh")


@blp.route("/logout", methods=["POST"])
@blp.arguments(RefreshSchema)
@blp.alt_response(200, schema=MessageSchema, success=True)
@blp.doc(security=[])
def logout(_body: dict[str, Any]) -> Response:
    """Revoke the session's refresh-token family (idempotent)."""
    return forward("/logout")


@blp.route("/me", methods=["GET"])
@blp.alt_response(200, schema=UserSchema, success=True)
def me() -> Response:
    """The calling user."""
    return forward("/me")


@blp.route("/api-keys")
class ApiKeys(MethodView):
    @blp.arguments(ApiKeyListQuerySchema, location="query")
    @blp.alt_response(200, schema=ApiKeyListSchema, success=True)
    def get(self, _query: dict[str, Any]) -> Response:
        """List the caller's keys (never the key itself); admins may pass `user_id`."""
        return forward("/api-keys")

    @blp.arguments(ApiKeyCreateSchema)
    @blp.alt_response(201, schema=ApiKeyCreatedSchema, success=True)
    def post(self, _body: dict[str, Any]) -> Response:
        """Create a key; the full key is in this response only."""
        return forward("/api-keys")


@blp.route("/api-keys/<uuid:key_id>", methods=["DELETE"])
@blp.alt_response(204, success=True)
def revoke_api_key(key_id: Any) -> Response:
    """Revoke a key; someone else's key is answered like a missing one (404)."""
    return forward(f"/api-keys/{key_id}")


@blp.route("/users")
class Users(MethodView):
    @blp.arguments(PageQuerySchema, location="query")
    @blp.alt_response(200, schema=UserListSchema, success=True)
    def get(self, _query: dict[str, Any]) -> Response:
        """List users (admin only)."""
        return forward("/users")

    @blp.arguments(UserCreateSchema)
    @blp.alt_response(201, schema=UserSchema, success=True)
    def post(self, _body: dict[str, Any]) -> Response:
        """Create a user (admin only)."""
        return forward("/users")


@blp.route("/users/<uuid:user_id>")
class UserById(MethodView):
    @blp.alt_response(200, schema=UserSchema, success=True)
    def get(self, user_id: Any) -> Response:
        """One user (admin only)."""
        return forward(f"/users/{user_id}")

    @blp.arguments(UserUpdateSchema)
    @blp.alt_response(200, schema=UserSchema, success=True)
    def patch(self, _body: dict[str, Any], user_id: Any) -> Response:
        """Change role, scopes, is_active or password (admin only)."""
        return forward(f"/users/{user_id}")

    @blp.alt_response(200, schema=UserSchema, success=True)
    def delete(self, user_id: Any) -> Response:
        """Deactivate a user and revoke their keys and sessions (admin only)."""
        return forward(f"/users/{user_id}")
