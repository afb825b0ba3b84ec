"""Sessions: what login and refresh hand out — an access JWT plus a rotating refresh token."""

from __future__ import annotations

from typing import Any

from jobgate.db import Connection
from jobgate_auth import refresh_tokens, tokens, users
from jobgate_auth.scopes import effective_scopes
from jobgate_auth.state import AuthState


def _token_response(
    state: AuthState, *, user: dict[str, Any], refresh_token: str
) -> dict[str, Any]:
    settings = state.settings
    access_token = tokens.issue_access_token(
        state.signing_key,
        settings=settings,
        user_id=str(user["id"]),
        username=user["username"],
        role=user["role"],
        scopes=effective_scopes(user["role"], user["scopes"]),
    )
    return {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": settings.access_token_ttl,
        "refresh_token": refresh_token,
        "user": user,
    }


def open_session(conn: Connection, state: AuthState, *, user: dict[str, Any]) -> dict[str, Any]:
    """After a successful login: a new refresh-token family and a first access token."""
    refresh_token, _ = refresh_tokens.issue(
        conn, user_id=user["id"], ttl=state.settings.refresh_token_ttl
    )
    return _token_response(state, user=user, refresh_token=refresh_token)


def refresh_session(
    conn: Connection, state: AuthState, *, refresh_token: str
) -> dict[str, Any] | None:
    """Rotate the refresh token; None when it is not accepted (the caller answers 401
    after committing, so a detected reuse keeps its revocation)."""
    rotation = refresh_tokens.rotate(
        conn, token=refresh_token, ttl=state.settings.refresh_token_ttl
    )
    if rotation is None:
        return None
    user = users.get_user(conn, user_id=rotation.user_id)
    if user is None:
        return None
    return _token_response(state, user=user, refresh_token=rotation.token)


def close_session(conn: Connection, *, refresh_token: str) -> None:
    """Log out: revoke the whole family, so no token of this login works any more."""
    refresh_tokens.revoke_family_of(conn, token=refresh_token)
