"""Small helpers that more than one test layer needs (unit, integration, end-to-end), kept
here so that no conftest or test module copies another's."""

from __future__ import annotations

import socketserver
import threading
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

# Seed 000's documented demo key: every test stack bootstraps it, so clients can use it as-is.
DEMO_KEY = "demo-api-key-2024"

# Seed 003's own upstream example, verbatim (the proxy's unit and integration tests).
SEED_UPSTREAM = {
    "name": "api-servers",
    "strategy": "round_robin",
    "health_check": {
        "enabled": True,
        "path": "/health",
        "interval": "30s",
        "timeout": "5s",
        "healthy_threshold": 2,
        "unhealthy_threshold": 3,
    },
    "servers": [
        {"address": "127.0.0.1:3001", "weight": 1, "max_fails": 3, "fail_timeout": "30s"},
        {"address": "127.0.0.1:3002", "weight": 2, "max_fails": 3, "fail_timeout": "30s"},
    ],
}
# The seed's route example, on a path Jobgate does not serve (its "/api/*" is Jobgate's own).
SEED_ROUTE = {
    "id": "route_123",
    "path": "/apps/*",
    "method": "ANY",
    "upstream": "api-servers",
    "middleware": ["rate_limit", "auth"],
    "headers": {"X-Forwarded-For": "$remote_addr", "X-Real-IP": "$remote_addr"},
    "timeout": "30s",
    "retries": 3,
}


def serve_in_thread(server: socketserver.BaseServer) -> threading.Thread:
    """Serve on a started daemon thread that notices `server.shutdown()` within 50 ms: the
    default poll interval (0.5 s) was paid at the teardown of every test with a server, some
    six minutes of the whole suite."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return thread


def process_alive(pid: int) -> bool:
    """Whether `pid` still runs: a zombie has ended, and so has a process that vanishes while
    its /proc entry is read (the read then fails with ESRCH)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # the name in parentheses may hold spaces


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
