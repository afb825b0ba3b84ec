"""Small helpers that more than one test layer needs (integration and end-to-end), kept here
so that no conftest copies another's."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

# Seed 000's documented demo key: every test stack bootstraps it, so clients can use it as-is.
DEMO_KEY = "demo-api-key-2024"


def bearer(token: str) -> dict[str, str]:
    """Headers carrying an access token, as every client of the platform sends it."""
    return {"Authorization": f"Bearer {token}"}


def login_tokens(client: FlaskClient, username: str, password: str, *, url: str) -> dict[str, Any]:
    """Log in through a Flask test client (auth-service's `/login`, or the gateway's
    `/api/v1/auth/login` that forwards to it) and return the token body; a refused login
    fails the test here, where it happened."""
    r = client.post(url, json={"username": username, "password": password})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def create_user(
    client: FlaskClient,
    admin_headers: dict[str, str],
    *,
    url: str,
    username: str,
    password: str,
    **fields: Any,
) -> dict[str, Any]:
    """A user made by an admin through the users API (auth-service's `/users` or the
    gateway's `/api/v1/auth/users`), as a real client makes one; the created user's body."""
    r = client.post(
        url, json={"username": username, "password": password, **fields}, headers=admin_headers
    )
    assert r.status_code == 201, r.get_json()
    return r.get_json()
