"""Shared fixtures: one real PostgreSQL database and one RabbitMQ vhost per test run.

Unit tests of pure logic request neither; integration and end-to-end tests do, and
get real servers (DESIGN.md: "Real parts, not stand-ins").
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import psycopg2
import pytest

from jobgate.config import Settings
from jobgate.db import Database
from jobgate.migrate import apply_migrations

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_TEST_HOST = os.environ.get("TEST_PG_HOST_URL", "postgresql://jobgate:jobgate@127.0.0.1:5432")
RUN_ID = uuid.uuid4().hex[:10]


def _admin_execute(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN_URL)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A freshly migrated database for this run, dropped at the end."""
    name = f"jobgate_test_{RUN_ID}"
    _admin_execute(f'CREATE DATABASE "{name}" OWNER jobgate')
    url = f"{PG_TEST_HOST}/{name}"
    apply_migrations(url)
    yield url
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A throwaway RabbitMQ vhost for this run (nameko's habit), deleted at the end."""
    vhost = f"jobgate-test-{RUN_ID}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


TABLES = (
    "files, workers, outbox, job_logs, job_items, jobs, api_keys, refresh_tokens, users,"
    " proxy_routes, proxy_upstreams, proxy_edges, proxy_server_health, proxy_request_stats,"
    " proxy_stats_totals, runtime_config"
)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The run's database, emptied after each test so tests never see each other's rows."""
    database = Database(database_url, maxconn=20)
    yield database
    with database.transaction() as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} CASCADE")
    database.close()


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    """Settings pointing at the run's database; broker tests add `amqp_url` themselves."""
    return Settings.from_env(
        environ={},
        env="test",
        database_url=database_url,
        jwt_private_key_file=str(tmp_path / "keys" / "jwt-private.pem"),
        cache_root=str(tmp_path / "filespace"),
        storage_dir=str(tmp_path / "storage"),
        log_format="text",
    )


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """The run's own Podman engine (tests/engine.py): its DOCKER_HOST. Started on first use,
    so only the tests that need containers pay for it."""
    from tests.engine import podman_engine

    with podman_engine() as url:
        yield url
