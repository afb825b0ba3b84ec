"""Sessions and identity: login, refresh, logout, me, validate, JWKS."""

from __future__ import annotations

import logging
from typing import Any

from flask import request
from flask.views import MethodView

from jobgate.auth_schemas import (
    JwksSchema,
    LoginSchema,
    MessageSchema,
    RefreshSchema,
    TokenResponseSchema,
    UserSchema,
    ValidateResponseSchema,
    ValidateSchema,
)
from jobgate.errors import InvalidRequest, Unauthorized
from jobgate.web import Blueprint
from jobgate_auth import authn, sessions, users
from jobgate_auth.state import get_state

log = logging.getLogger(__name__)

blp = Blueprint("auth", __name__, description="Login, tokens and identity")

INVALID_CREDENTIALS = "Invalid username or password"


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginSchema)
@blp.response(200, TokenResponseSchema)
def login(body: dict[str, Any]) -> dict[str, Any]:
    """Exchange a username and password (JSON body or HTTP Basic) for tokens."""
    username, password = body.get("username"), body.get("password")
    basic = request.authorization
    if username is None and password is None and basic is not None and basic.type == "basic":
        username, password = basic.username, basic.password
    if not username or not password:
        raise InvalidRequest("username and password are required (JSON body or HTTP Basic)")
    state = get_state()
    with state.db.transaction() as conn:
        user = users.authenticate(conn, username=username, password=password)
        if user is None:
            # No username in the log: people type passwords into the username field.
            log.info("login failed")
            raise Unauthorized(INVALID_CREDENTIALS)
        log.info("login succeeded for user %s", user["id"])
        answer = sessions.open_session(conn, state, user=user)
    # Seed 004's clients read the access token as `.token` (its "Testing API" section).
    return {**answer, "token": answer["access_token"]}


@blp.route("/refresh", methods=["POST"])
@blp.arguments(RefreshSchema)
@blp.response(200, TokenResponseSchema)
def refresh(body: dict[str, Any]) -> dict[str, Any]:
    """Rotate a refresh token: the old one dies, a reused one kills its whole family."""
    state = get_state()
    with state.db.transaction() as conn:
        result = sessions.refresh_session(conn, state, refresh_token=body["refresh_token"])
    # Raised only after commit, so a reuse-detection revocation is kept.
    if result is None:
        raise Unauthorized("Invalid or expired refresh token")
    return result


@blp.route("/logout", methods=["POST"])
@blp.arguments(RefreshSchema)
@blp.response(200, MessageSchema)
def logout(body: dict[str, Any]) -> dict[str, str]:
    """Revoke the session's refresh-token family; idempotent, unknown tokens included."""
    with get_state().db.transaction() as conn:
        sessions.close_session(conn, refresh_token=body["refresh_token"])
    return {"message": "Logged out"}


@blp.route("/me", methods=["GET"])
@blp.response(200, UserSchema)
def me() -> dict[str, Any]:
    """The calling user (Bearer JWT or X-API-Key)."""
    state = get_state()
    with state.db.transaction() as conn:
        principal = authn.authenticate(conn, state)
        return users.require_user(conn, user_id=principal.user_id)


def _validation_answer(method: str, credential: str) -> dict[str, Any]:
    state = get_state()
    with state.db.transaction() as conn:
        principal = authn.identify(conn, state, method=method, credential=credential)
    return {
        "valid": True,
        "user_id": principal.user_id,
        "username": principal.username,
        "role": principal.role,
        "scopes": list(principal.scopes),
        "auth_method": principal.auth_method,
        "key_id": principal.key_id,
    }


def _credential_from_headers() -> tuple[str, str]:
    found = authn.credential_from_headers()
    if found is None:
        raise authn.unauthorized()
    return found


@blp.route("/validate")
class Validate(MethodView):
    """The gateway's question "who is this?": a credential in, an identity (or 401) out."""

    @blp.arguments(ValidateSchema)
    @blp.response(200, ValidateResponseSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        api_key, token = body.get("api_key"), body.get("token")
        if api_key and token:
            raise InvalidRequest("Send either api_key or token, not both")
        if api_key:
            return _validation_answer("api_key", api_key)
        if token:
            return _validation_answer("jwt", token)
        return _validation_answer(*_credential_from_headers())

    @blp.response(200, ValidateResponseSchema)
    def get(self) -> dict[str, Any]:
        """Header-only form, as seed 001's gateway calls it."""
        return _validation_answer(*_credential_from_headers())


@blp.route("/.well-known/jwks.json", methods=["GET"])
@blp.response(200, JwksSchema)
def jwks() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Public keys for local JWT verification; cacheable, verifiers refetch on unknown kid."""
    key = get_state().signing_key
    return {"keys": [key.public_jwk()]}, 200, {"Cache-Control": "public, max-age=300"}
