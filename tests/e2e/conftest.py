"""End-to-end fixtures: the real processes against the run's database and vhost."""

from __future__ import annotations

import pytest
import requests

from tests.stack import Stack

ADMIN_PASSWORD = "e2e-admin-password"
DEMO_KEY = "demo-api-key-2024"


@pytest.fixture
def make_stack(tmp_path, database_url, amqp_url, db):
    """Start auth-service and gateway with extra settings; tests start the workers they need."""
    stacks: list[Stack] = []

    def start(**env: str) -> Stack:
        root = tmp_path / "filespace"
        root.mkdir(exist_ok=True)
        s = Stack(
            tmp_path,
            {
                "DATABASE_URL": database_url,
                "AMQP_URL": amqp_url,
                "CACHE_ROOT": str(root),
                "STORAGE_DIR": str(tmp_path / "storage"),
                "BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "BOOTSTRAP_API_KEY": DEMO_KEY,
                "WORKER_HEARTBEAT_SECONDS": "0.5",
                "JOB_LEASE_SECONDS": "3",
                "OUTBOX_RELAY_SECONDS": "0.5",
                "WORKER_GRACE_SECONDS": "5",
                **env,
            },
        )
        s.filespace = root
        stacks.append(s)
        s.start_auth()
        s.start_gateway()
        return s

    yield start
    for s in stacks:
        s.stop()


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.fixture
def api(stack):
    session = requests.Session()
    session.headers["X-API-Key"] = DEMO_KEY
    session.base = f"{stack.url}/api/v1"
    return session
