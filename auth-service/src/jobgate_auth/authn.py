"""Who is calling: turn a Bearer JWT or an API key into a Principal.

The database, not the token, has the last word on role and scopes: a user deactivated
or demoted a minute ago is refused here even though their JWT still verifies.
"""

from __future__ import annotations

import uuid

from flask import request

from jobgate.db import Connection
from jobgate.errors import Forbidden, Unauthorized
from jobgate.identity import Principal
from jobgate_auth import api_keys, tokens, users
from jobgate_auth.scopes import effective_scopes
from jobgate_auth.state import AuthState

INVALID_TOKEN = "Invalid or expired token"
INVALID_API_KEY = "Invalid or missing API key"


def unauthorized(message: str = "Authentication required") -> Unauthorized:
    exc = Unauthorized(message)
    exc.headers = {"WWW-Authenticate": 'Bearer realm="jobgate"'}  # type: ignore[attr-defined]
    return exc


def principal_from_api_key(conn: Connection, *, key: str) -> Principal:
    """An API key acts with its own scopes, never more than its owner now holds."""
    row = api_keys.lookup_key(conn, key=key) if key else None
    if row is None:
        raise unauthorized(INVALID_API_KEY)
    owner_scopes = set(effective_scopes(row["role"], row["user_scopes"]))
    scopes = [s for s in row["key_scopes"] if s in owner_scopes]
    return Principal(
        user_id=str(row["user_id"]),
        username=row["username"],
        role=row["role"],
        scopes=tuple(scopes),
        auth_method="api_key",
        key_id=str(row["key_id"]),
    )


def principal_from_jwt(conn: Connection, state: AuthState, *, token: str) -> Principal:
    try:
        claims = tokens.verify_access_token(state.signing_key, settings=state.settings, token=token)
        user_id = uuid.UUID(str(claims["sub"]))
    except (tokens.InvalidToken, ValueError) as exc:
        raise unauthorized(INVALID_TOKEN) from exc
    user = users.get_user(conn, user_id=user_id)
    if user is None or not user["is_active"]:
        raise unauthorized(INVALID_TOKEN)
    return Principal(
        user_id=str(user["id"]),
        username=user["username"],
        role=user["role"],
        scopes=tuple(effective_scopes(user["role"], user["scopes"])),
        auth_method="jwt",
    )


def credential_from_headers() -> tuple[str, str] | None:
    """("api_key", key) from `X-API-Key`, else ("jwt", token) from `Authorization: Bearer`.

    X-API-Key wins when both are sent, the same precedence as the gateway's, so a request
    forwarded to us is judged by the same credential the gateway judged it by.
    """
    api_key = request.headers.get("X-API-Key", "").strip()
    if api_key:
        return "api_key", api_key
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return "jwt", value.strip()
    return None


def identify(conn: Connection, state: AuthState, *, method: str, credential: str) -> Principal:
    if method == "jwt":
        return principal_from_jwt(conn, state, token=credential)
    return principal_from_api_key(conn, key=credential)


def authenticate(conn: Connection, state: AuthState) -> Principal:
    """The caller of the current request, or 401."""
    found = credential_from_headers()
    if found is None:
        raise unauthorized()
    method, credential = found
    return identify(conn, state, method=method, credential=credential)


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Admin role required")
