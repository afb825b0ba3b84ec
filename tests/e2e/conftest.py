"""End-to-end fixtures: the real processes against the run's database and vhost (one stack
per test, or one shared by a module), and the two things every e2e module does over HTTP:
log in, and wait for a job's status."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from jobgate.db import Database
from tests.conftest import TABLES
from tests.helpers import DEMO_KEY, bearer
from tests.stack import Stack

ADMIN_PASSWORD = "e2e-admin-password"
NO_SITE = "http://127.0.0.1:9"  # the discard port: nothing listens, a scrape fails at once


def new_stack(workdir: Path, database_url: str, amqp_url: str, **env: str) -> Stack:
    """A stack (nothing started yet) with the e2e settings: fast heartbeats and relay, a
    filespace under `workdir`, the bootstrapped admin and demo key."""
    root = workdir / "filespace"
    root.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        workdir,
        {
            "DATABASE_URL": database_url,
            "AMQP_URL": amqp_url,
            "CACHE_ROOT": str(root),
            "STORAGE_DIR": str(workdir / "storage"),
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
    stack.filespace = root
    return stack


def start_shared_stack(workdir: Path, database_url: str, amqp_url: str, **env: str) -> Stack:
    """auth-service, gateway, stats-service and the edge for a whole module to share (a
    browser or a command line talks to the edge); limits raised for a module's worth of
    submissions and logins. The caller starts the workers it needs and calls
    `stop_shared_stack` at the end."""
    stack = new_stack(
        workdir,
        database_url,
        amqp_url,
        **{
            "JOB_LEASE_SECONDS": "8",
            "STATS_POLL_SECONDS": "0.1",
            "RATE_LIMIT_JOB_CREATE": "1000/minute",
            "RATE_LIMIT_LOGIN": "1000/minute",
            **env,
        },
    )
    try:
        stack.start_auth()
        stack.start_gateway()
        stack.start_stats()
        stack.start_edge()
    except BaseException:
        stack.stop()
        raise
    return stack


def stop_shared_stack(stack: Stack, database_url: str) -> None:
    """Stop the processes and empty the tables, as the per-test `db` fixture does."""
    stack.stop()
    database = Database(database_url, maxconn=2)
    try:
        with database.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"TRUNCATE {TABLES} CASCADE")
    finally:
        database.close()


@pytest.fixture
def make_stack(tmp_path, database_url, amqp_url, db):
    """Start auth-service and gateway with extra settings; tests start the workers they need."""
    stacks: list[Stack] = []

    def start(**env: str) -> Stack:
        s = new_stack(tmp_path, database_url, amqp_url, **env)
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
def edge(make_stack):
    """The stack behind its edge (jobgate-edge and nginx) with stats-service: requests go to
    `edge.edge_url`. (test_edge_agent_e2e.py has an `edge` of its own: the agent alone.)"""
    stack = make_stack()
    stack.start_stats()
    stack.start_edge()
    return stack


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
