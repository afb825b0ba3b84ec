"""A real auth-service (its WSGI app on a loopback port) for gateway tests."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from jobgate_auth import create_app as create_auth_app

ADMIN_PASSWORD = "admin-password-for-tests"
DEMO_KEY = "demo-api-key-2024"


@pytest.fixture
def auth_server(settings, db):
    """auth-service on 127.0.0.1:<free port>, bootstrapped with an admin and the demo key."""
    app = create_auth_app(
        settings.replace(bootstrap_admin_password=ADMIN_PASSWORD, bootstrap_api_key=DEMO_KEY)
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
