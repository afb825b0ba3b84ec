"""A real auth-service (its WSGI app on a loopback port) for gateway tests."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from jobgate import kinds
from jobgate_auth import create_app as create_auth_app
from jobgate_worker.consumer import Worker

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


@pytest.fixture
def worker_settings(settings, amqp_url):
    """Settings for in-process workers: fast heartbeats, short leases and backoff."""
    return settings.replace(
        amqp_url=amqp_url,
        worker_heartbeat_seconds=0.2,
        job_lease_seconds=5,
        worker_grace_seconds=2,
        job_backoff_seconds=0.1,
        outbox_relay_seconds=0.2,
    )


@pytest.fixture
def start_worker(worker_settings, db):
    """Start a real Worker of `kind` in a thread (stopped after the test)."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(kind: str, **overrides) -> Worker:
        worker = Worker(worker_settings.replace(**overrides), kinds.get(kind), database=db)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.request_stop()
        thread.join(timeout=15)
