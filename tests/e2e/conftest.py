"""End-to-end fixtures: the real processes against the run's database and vhost, and the
two things every e2e module does over HTTP: log in, and wait for a job's status."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
import requests

from tests.helpers import DEMO_KEY, bearer
from tests.stack import Stack

ADMIN_PASSWORD = "e2e-admin-password"
NO_SITE = "http://127.0.0.1:9"  # the discard port: nothing listens, a scrape fails at once


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
                # Never the video site: a scrape test passes its feed server's (tests/feeds.py).
                "SCRAPE_PROFILE_URL": NO_SITE + "/@{value}",
                "SCRAPE_HASHTAG_URL": NO_SITE + "/tag/{value}",
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


def login(stack: Stack, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
    """Bearer headers from the running gateway's login route (the bootstrapped admin's by
    default)."""
    r = requests.post(
        f"{stack.url}/api/v1/auth/login",
        json={"username": username, "password": password},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return bearer(r.json()["access_token"])


def wait_status(
    url: str,
    headers: Mapping[str, str],
    wanted: set[str],
    *,
    timeout: float = 60.0,
    min_progress: int | None = None,
) -> dict[str, Any]:
    """Poll a seed's status route until the job's status is one of `wanted` (and, for seed
    001's whole-number progress, at least `min_progress`); returns the job. Seed 000 wraps
    the job in `{"job": ...}`, seed 001 answers with the job itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(url, headers=headers).json()
        job = body.get("job", body)
        if job["status"] in wanted and (min_progress is None or job["progress"] >= min_progress):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job at {url}: {body}, wanted {wanted}")
