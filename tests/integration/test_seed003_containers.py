"""Seed 003's containers API with real containers: the gateway asks a container worker's RPC
service (the `engine_rpc` fixture) on the run's own Podman engine. Lifecycle, logs, stats,
ownership, containers Jobgate did not make, and the defaults that keep a container shut in."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import docker
import pytest

from jobgate_worker.kinds.container import instance_label
from tests.helpers import create_user
from tests.integration.conftest import DEMO, login

pytestmark = pytest.mark.usefixtures("engine_rpc")

TICKER = ["sh", "-c", "trap 'exit 0' TERM; echo started; while true; do echo tick; sleep 0.2; done"]


@pytest.fixture
def engine(engine_rpc):
    """The engine the RPC service uses. The engine's storage is the machine's, shared with
    other runs: whatever this test's Jobgate made (its `jobgate.instance`) is removed after
    it, and only that."""
    client = docker.DockerClient(base_url=engine_rpc.docker_host)
    yield client
    for container in client.containers.list(all=True, filters=ours(engine_rpc)):
        container.remove(force=True)
    client.close()


def ours(settings) -> dict[str, list[str]]:
    """The engine filter for the containers API's containers of this test's Jobgate."""
    return {"label": ["jobgate.managed", f"jobgate.instance={instance_label(settings)}"]}


@pytest.fixture
def operator(client, admin):
    """A user with the `containers` scope (not an admin)."""
    create_user(
        client,
        admin,
        url="/api/v1/auth/users",
        username="olga",
        password="password-olga",
        scopes=["jobs:read", "jobs:write", "containers"],
    )
    return login(client, "olga", "password-olga")


def create(client, headers, **body):
    answer = client.post("/api/containers", json={"image": "busybox", **body}, headers=headers)
    assert answer.status_code == 201, answer.json
    return answer.json


def post(client, headers, container_id, verb):
    answer = client.post(f"/api/containers/{container_id}/{verb}", headers=headers)
    assert answer.status_code == 200, answer.json
    return answer.json


def wait_logs(client, headers, container_id, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        logs = client.get(f"/api/containers/{container_id}/logs", headers=headers).text
        if text in logs:
            return logs
        assert time.monotonic() < deadline, logs
        time.sleep(0.1)


def test_the_whole_lifecycle(client, engine, engine_rpc):
    made = create(client, DEMO, name="web", command=TICKER)
    assert made["name"] == "web" and made["image"] == "busybox" and made["status"] == "stopped"
    assert made["created_at"].endswith("Z") and made["ports"] == []
    cid = made["id"]
    # Pausing a container that does not run is the caller's mistake, not the engine's: 409.
    refused = client.post(f"/api/containers/{cid}/pause", headers=DEMO)
    assert refused.status_code == 409, refused.get_data(as_text=True)
    # Before it ever ran: no usage, its limit; and logs "since 0" are all of them (none).
    idle = client.get(f"/api/containers/{cid}/stats", headers=DEMO)
    assert idle.status_code == 200, idle.get_data(as_text=True)
    assert idle.json["memory_usage"] == 0 and idle.json["memory_limit"] == 512 * 1024 * 1024
    early = client.get(f"/api/containers/{cid}/logs?since=0&tail=0", headers=DEMO)
    assert early.status_code == 200, early.get_data(as_text=True)
    assert post(client, DEMO, cid, "start")["status"] == "running"
    logs = wait_logs(client, DEMO, cid, "tick")
    assert logs.startswith("started\n")
    tail = client.get(f"/api/containers/{cid}/logs?tail=1&timestamps=true", headers=DEMO).text
    assert tail.count("\n") == 1 and tail.split(" ", 1)[1] == "tick\n" and "T" in tail.split()[0]
    stats = client.get(f"/api/containers/{cid}/stats", headers=DEMO).json
    assert set(stats) == {
        "cpu_usage",
        "memory_usage",
        "memory_limit",
        "network_rx",
        "network_tx",
        "block_read",
        "block_write",
        "timestamp",
    }
    assert stats["memory_usage"] > 0 and stats["memory_limit"] == 512 * 1024 * 1024
    assert post(client, DEMO, cid, "pause")["status"] == "paused"
    assert post(client, DEMO, cid, "unpause")["status"] == "running"
    assert post(client, DEMO, cid, "stop")["status"] == "stopped"
    assert post(client, DEMO, cid, "restart")["status"] == "running"
    got = client.get(f"/api/containers/{cid}", headers=DEMO).json
    assert got["status"] == "running" and got["memory_usage"] > 0
    assert client.get("/api/containers", headers=DEMO).json["total"] == 1
    assert client.delete(f"/api/containers/{cid}", headers=DEMO).status_code == 204
    missing = client.get(f"/api/containers/{cid}", headers=DEMO)
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "CONTAINER_NOT_FOUND"
    assert missing.json["error"]["details"] == {"container_id": cid, "available_containers": []}
    assert engine.containers.list(all=True, filters=ours(engine_rpc)) == []


def test_following_logs_streams_until_the_container_stops(client, engine):
    cid = create(client, DEMO, name="short", command=["sh", "-c", "echo one; sleep 1.5; echo two"])[
        "id"
    ]
    post(client, DEMO, cid, "start")
    started = time.monotonic()
    answer = client.get(f"/api/containers/{cid}/logs?follow=true", headers=DEMO)
    assert answer.text == "one\ntwo\n"
    assert 1.0 < time.monotonic() - started < 10


def test_list_filters_and_pages(client, engine):
    first = create(client, DEMO, name="a", command=TICKER)["id"]
    create(client, DEMO, name="b", command=TICKER)
    post(client, DEMO, first, "start")
    running = client.get("/api/containers?status=running", headers=DEMO).json
    assert [c["name"] for c in running["containers"]] == ["a"] and running["total"] == 1
    stopped = client.get("/api/containers?status=stopped", headers=DEMO).json
    assert [c["name"] for c in stopped["containers"]] == ["b"]
    assert client.get("/api/containers?image=nginx", headers=DEMO).json["total"] == 0
    page = client.get("/api/containers?limit=1&offset=1", headers=DEMO).json
    assert (page["total"], page["limit"], page["offset"], len(page["containers"])) == (2, 1, 1, 1)
    assert client.get("/api/containers?status=gone", headers=DEMO).status_code == 400


def test_users_see_only_their_own_and_never_containers_jobgate_did_not_make(
    client, engine, admin, operator
):
    mine = create(client, operator, name="web", command=TICKER)["id"]
    theirs = create(client, DEMO, name="web", command=TICKER)["id"]  # the same name: no clash
    stranger = engine.containers.create("busybox", ["sleep", "60"], name="not-jobgate")
    # Another deployment's container on the same engine (another database): not ours either.
    other_labels = {
        "jobgate.managed": "containers-api",
        "jobgate.instance": "another-deployment",
        "jobgate.owner": "someone",
        "jobgate.name": "web",
    }
    other = engine.containers.create("busybox", ["sleep", "60"], labels=other_labels)
    try:
        listed = client.get("/api/containers", headers=operator).json
        assert [c["id"] for c in listed["containers"]] == [mine]
        assert client.get(f"/api/containers/{theirs}", headers=operator).status_code == 404
        assert client.post(f"/api/containers/{theirs}/start", headers=operator).status_code == 404
        assert client.delete(f"/api/containers/{theirs}", headers=operator).status_code == 404
        everyone = {
            c["id"] for c in client.get("/api/containers", headers=admin).json["containers"]
        }
        assert everyone == {mine, theirs}  # an admin sees all of Jobgate's, not the stranger
        for foreign in (stranger, other):
            short = foreign.id[:12]
            assert client.get(f"/api/containers/{short}", headers=admin).status_code == 404
            assert client.delete(f"/api/containers/{short}", headers=admin).status_code == 404
            foreign.reload()
            assert foreign.status == "created"  # untouched
        again = client.post(
            "/api/containers", json={"image": "busybox", "name": "web"}, headers=operator
        )
        assert again.status_code == 409
    finally:
        stranger.remove(force=True)
        other.remove(force=True)


def test_a_container_is_shut_in_by_default(client, engine):
    cid = create(client, DEMO, name="boxed", command=TICKER)["id"]
    config = engine.containers.get(cid).attrs["HostConfig"]
    assert config["NetworkMode"] == "none"
    assert config["Privileged"] is False
    assert "no-new-privileges" in config["SecurityOpt"]
    assert config["PidsLimit"] == 256 and config["Memory"] == 512 * 1024 * 1024
    post(client, DEMO, cid, "start")
    caps = client.get(f"/api/containers/{cid}/logs", headers=DEMO)  # the logs route works here
    assert caps.status_code == 200
    status = engine.containers.get(cid).exec_run(["grep", "CapEff", "/proc/1/status"]).output
    assert status.split()[-1] == b"0000000000000000"  # every capability dropped
    links = engine.containers.get(cid).exec_run(["ls", "/sys/class/net"]).output.split()
    assert links == [b"lo"]


def test_ports_bind_to_loopback_and_volumes_stay_inside_the_roots(client, engine, tmp_path):
    made = create(
        client, DEMO, name="web", command=TICKER, network_mode="bridge", ports={"80": "18089"}
    )
    assert made["ports"] == ["18089:80"]
    bindings = engine.containers.get(made["id"]).attrs["HostConfig"]["PortBindings"]
    assert bindings["80/tcp"][0]["HostIp"] == "127.0.0.1"
    refused = client.post(
        "/api/containers",
        json={"image": "busybox", "name": "vol", "volumes": {"/data": str(tmp_path)}},
        headers=DEMO,
    )
    assert refused.status_code == 403 and refused.json["error"]["code"] == "FORBIDDEN"
    host = client.post(
        "/api/containers",
        json={"image": "busybox", "name": "h", "network_mode": "host"},
        headers=DEMO,
    )
    assert host.status_code == 400
    unknown = client.post(
        "/api/containers", json={"image": "nosuchimage", "name": "x"}, headers=DEMO
    )
    assert unknown.status_code == 400 and "not found" in unknown.json["error"]["message"]


VOLUME_ROOT = Path("/tmp/jobgate-test-volume-root")


@pytest.mark.engine_settings(container_volume_roots=(str(VOLUME_ROOT),))
def test_volumes_below_a_configured_root_are_mounted_and_nothing_else(client, engine, tmp_path):
    data = VOLUME_ROOT / uuid.uuid4().hex / "data"
    data.mkdir(parents=True)
    try:
        (data / "hello.txt").write_text("from the host\n")
        (data.parent / "escape").symlink_to(tmp_path)  # inside the root, pointing out of it
        cmd = ["sh", "-c", "cat /data/hello.txt; sleep 30"]
        cid = create(client, DEMO, name="vol", command=cmd, volumes={"/data": str(data)})["id"]
        post(client, DEMO, cid, "start")
        assert wait_logs(client, DEMO, cid, "from the host") == "from the host\n"
        for outside in (str(tmp_path), str(data.parent / "escape"), f"{data}/../../..", "/etc"):
            body = {"image": "busybox", "name": "out", "volumes": {"/data": outside}}
            answer = client.post("/api/containers", json=body, headers=DEMO)
            assert answer.status_code == 403, outside
    finally:
        shutil.rmtree(data.parent)


def test_the_containers_scope_is_needed(client, admin):
    create_user(client, admin, url="/api/v1/auth/users", username="pat", password="password-pat")
    plain = login(client, "pat", "password-pat")
    answer = client.get("/api/containers", headers=plain)
    assert answer.status_code == 403 and answer.json["error"]["code"] == "FORBIDDEN"
    assert client.get("/api/containers").status_code == 401
