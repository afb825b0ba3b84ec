"""Integration fixtures: a real auth-service on a loopback port, in-process workers, and the
gateway app (Flask test client) in front of that auth-service, with the logins, users, API
keys and uploads its route tests make through the API."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from jobgate import kinds
from jobgate.broker import declare_topology
from jobgate.config import Settings
from jobgate.db import Database
from jobgate.storage import DirectoryStorage
from jobgate_auth import create_app as create_auth_app
from jobgate_gateway import create_app
from jobgate_worker.consumer import Worker
from tests.helpers import DEMO_KEY, bearer, create_user, login_tokens, serve_in_thread
from tests.media import make_video

ADMIN_PASSWORD = "admin-password-for-tests"
DEMO = {"X-API-Key": DEMO_KEY}


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """argon2id at its lowest cost for the in-process auth-service: its default cost (~0.1 s
    a hash, on purpose) was paid by every test's admin bootstrap and every login. No test
    here depends on the cost; the end-to-end stacks run the services with the real one."""
    from argon2 import PasswordHasher

    from jobgate_auth import passwords

    real = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    yield
    passwords._hasher = real


@pytest.fixture
def auth_server(settings: Settings, db: Database) -> Iterator[str]:
    """auth-service on 127.0.0.1:<free port>, bootstrapped with an admin and the demo key."""
    app = create_auth_app(
        settings.replace(bootstrap_admin_password=ADMIN_PASSWORD, bootstrap_api_key=DEMO_KEY)
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def worker_settings(settings: Settings, amqp_url: str) -> Settings:
    """Settings for in-process workers: fast heartbeats, short leases and backoff; scrape
    sources on a loopback port where nothing listens (a scrape test serves its own feeds),
    so no test ever reaches the video site."""
    return settings.replace(
        amqp_url=amqp_url,
        scrape_profile_url="http://127.0.0.1:9/@{value}",
        scrape_hashtag_url="http://127.0.0.1:9/tag/{value}",
        worker_heartbeat_seconds=0.2,
        job_lease_seconds=5,
        worker_grace_seconds=2,
        job_backoff_seconds=0.1,
        outbox_relay_seconds=0.2,
    )


@pytest.fixture
def start_worker(worker_settings: Settings, db: Database) -> Iterator[Callable[..., Worker]]:
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


@pytest.fixture
def storage(worker_settings: Settings) -> DirectoryStorage:
    """The storage directory the in-process workers write to."""
    return DirectoryStorage(worker_settings.storage_dir)


# --- the gateway --------------------------------------------------------------------------


@pytest.fixture
def filespace(settings: Settings) -> Path:
    """The cache root with seed 000's example tree, and a file just outside it to escape to.
    Modules whose routes submit cache jobs use it (`pytest.mark.usefixtures`)."""
    root = Path(settings.cache_root)
    farm = root / "00_Media" / "Farm" / "ProRes422"
    farm.mkdir(parents=True)
    for i in range(3):
        (farm / f"Farm0010{i}.mov").write_bytes(b"x" * (1000 + i))
    (root / "00_Media" / "video.mp4").write_bytes(b"v" * 5000)
    (root.parent / "outside.txt").write_text("secret")
    return root


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s MP4 with audio, made once per run: every upload test sends the same bytes."""
    return make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=2)


@pytest.fixture
def empty_job_queues(amqp_url: str) -> None:
    """Empty every kind's work queue. The run shares one vhost and no worker consumes what
    the gateway publishes in its route tests, so without this a test that reads a queue
    would see earlier tests' messages (the broker's counterpart of the per-test TRUNCATE)."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = conn.channel()
        declare_topology(channel)
        for spec in kinds.specs():
            channel.queue_purge(spec.queue_name)
    finally:
        conn.close()


@pytest.fixture
def gateway_settings(
    settings: Settings, amqp_url: str, auth_server: str, empty_job_queues: None
) -> Settings:
    """The gateway against the run's broker (its work queues empty) and the test
    auth-service; uploads capped at 1 MB, so oversize tests send 2 MB, not the default."""
    return settings.replace(amqp_url=amqp_url, auth_service_url=auth_server, max_file_size=1)


class RelayedClient(FlaskClient):
    """The test client, waiting after each request for the gateway's relay thread: a test
    sees what a request published once the call returns (the thread runs as in production;
    tests/integration/test_broker_outbox.py shows the request does not wait for it)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        assert self.application.extensions["jobgate"].relay.flush(timeout=30)
        return response


@pytest.fixture
def gateway_app(gateway_settings: Settings) -> Iterator[Flask]:
    """The gateway app; its relay drained and its publisher closed after the test."""
    app = create_app(gateway_settings)
    app.test_client_class = RelayedClient
    yield app
    app.extensions["jobgate"].relay.flush(timeout=30)
    app.extensions["jobgate"].publisher.close()


@pytest.fixture
def client(gateway_app: Flask) -> FlaskClient:
    return gateway_app.test_client()


@pytest.fixture
def admin(client: FlaskClient) -> dict[str, str]:
    """The bootstrapped admin's bearer headers, logged in through the gateway."""
    return login(client, "admin", ADMIN_PASSWORD)


def login(client: FlaskClient, username: str, password: str) -> dict[str, str]:
    """Bearer headers for a user, from the gateway's forwarded login route."""
    tokens = login_tokens(client, username, password, url="/api/v1/auth/login")
    return bearer(tokens["access_token"])


def make_login(client: FlaskClient, admin: dict[str, str], name: str, scopes: list[str]):
    """A user with `scopes`, logged in: (bearer headers, user id)."""
    password = f"password-{name}"
    user = create_user(
        client, admin, url="/api/v1/auth/users", username=name, password=password, scopes=scopes
    )
    return login(client, name, password), str(user["id"])


def make_api_user(client: FlaskClient, admin: dict[str, str], name: str) -> dict[str, str]:
    """A user made by the admin through the gateway (password `password-<name>`), logged
    in: its bearer headers."""
    password = "password-" + name
    create_user(client, admin, url="/api/v1/auth/users", username=name, password=password)
    return login(client, name, password)


def make_api_key(
    client: FlaskClient, headers: dict[str, str], name: str, *, scopes: list[str] | None = None
) -> dict[str, str]:
    """An API key made through the gateway by whoever `headers` authenticate (with `scopes`,
    or the caller's defaults): its X-API-Key headers."""
    body: dict[str, object] = {"name": name}
    if scopes is not None:
        body["scopes"] = scopes
    r = client.post("/api/v1/auth/api-keys", json=body, headers=headers)
    assert r.status_code == 201, r.json
    return {"X-API-Key": r.json["key"]}


def upload(
    client: FlaskClient,
    name: str,
    data: bytes,
    url: str = "/api/v1/files",
    headers: dict[str, str] | None = None,
) -> TestResponse:
    """POST one file as multipart field `file` (to /api/v1/files, or seed 001's /upload);
    the demo key unless other `headers` are given."""
    return client.post(
        url,
        data={"file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
        headers=DEMO if headers is None else headers,
    )


def leftovers(app: Flask) -> list[str]:
    """Temporary files the gateway left in storage: a refused or finished upload leaves none."""
    return os.listdir(app.extensions["jobgate"].storage.tmp)


@pytest.fixture
def engine_rpc(
    request: pytest.FixtureRequest, gateway_settings: Settings, docker_host: str
) -> Iterator[Settings]:
    """A container worker's RPC service (jobgate_worker.kinds.container.rpc_handlers) on the run's
    vhost and the run's engine, as a container worker serves it; yields its settings
    (changed by a test's `engine_settings` mark)."""
    from jobgate.broker import RPC_CONTAINERS_QUEUE
    from jobgate.rpc import RpcServer
    from jobgate_worker.kinds import container

    mark = request.node.get_closest_marker("engine_settings")
    changes = mark.kwargs if mark else {}
    settings = gateway_settings.replace(docker_host=docker_host, **changes)
    handlers = container.rpc_handlers(settings)
    server = RpcServer(settings.amqp_url, RPC_CONTAINERS_QUEUE, handlers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield settings
    server.stop()
    thread.join(5)
