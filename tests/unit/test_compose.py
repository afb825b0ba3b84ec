"""docker-compose.yml, offline (no Docker engine or compose v2 here): it validates against the
Compose specification's schema (check-jsonschema's built-in copy), everything it refers to
is defined, and its services are the registry's workers plus the fixed services, wired to
each other and to the edge as the Procfile wires them locally. Each check is also shown to
catch a broken copy."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobgate import kinds
from tests import compose

CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
# Services besides one `worker-<kind>` per kind of the registry.
FIXED = {
    "postgres",
    "rabbitmq",
    "redis",
    "migrate",
    "auth",
    "gateway",
    "stats",
    "edge",
    "scheduler",
}
# Ports the servers' images listen on without saying so in the compose file.
IMAGE_PORTS = {"postgres": {5432}, "rabbitmq": {5672}, "redis": {6379}}
JOBGATE_IMAGES = {
    "jobgate/gateway:local",
    "jobgate/auth:local",
    "jobgate/stats:local",
    "jobgate/worker:local",
    "jobgate/edge:local",
}


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def spec() -> compose.Compose:
    return compose.load()


def test_compose_file_follows_the_compose_specification():
    result = schema_check(compose.COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_file(tmp_path):
    text = compose.COMPOSE.read_text()
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("    stop_grace_period: 45s", "    stop_grace_perod: 45s", 1))
    result = schema_check(broken)
    assert result.returncode != 0
    assert "stop_grace_perod" in result.stdout + result.stderr


def test_everything_referenced_is_defined(spec):
    assert compose.reference_problems(spec) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: c["volumes"].pop("storage"), "unknown volume storage"),
        (lambda c: c["services"].pop("migrate"), "unknown service migrate"),
        (
            lambda c: c["services"]["gateway"].update(networks=["backend"]),
            "unknown network backend",
        ),
        (lambda c: c["services"]["auth"].update(secrets=["jwt"]), "unknown secret jwt"),
        (
            lambda c: c["services"]["rabbitmq"]["volumes"].append("./deploy/rabbitmq/gone.conf:/x"),
            "bind mount ./deploy/rabbitmq/gone.conf does not exist",
        ),
        (
            lambda c: c["services"]["stats"]["build"].update(dockerfile="stats/Dockerfile"),
            "stats/Dockerfile does not exist",
        ),
    ],
)
def test_reference_check_catches_what_the_schema_does_not(spec, change, problem):
    broken = copy.deepcopy(spec)
    change(broken)
    assert any(problem in p for p in compose.reference_problems(broken))


def test_services_are_the_registrys_workers_and_the_fixed_ones(spec):
    services = spec["services"]
    workers = {n.removeprefix("worker-") for n in services if n.startswith("worker-")}
    assert workers == set(kinds.names())
    assert set(services) - {f"worker-{k}" for k in workers} == FIXED
    for kind in kinds.names():
        worker = services[f"worker-{kind}"]
        assert worker["command"] == ["jobgate-worker", kind]
        assert worker["image"] == "jobgate/worker:local"
        # Above WORKER_GRACE_SECONDS (30 s by default), as the Kubernetes workers.
        assert int(worker["stop_grace_period"].rstrip("s")) > 30
    images = {s["image"] for s in services.values() if s["image"].startswith("jobgate/")}
    assert images == JOBGATE_IMAGES
    # Only the container workers hold the engine's socket.
    holders = {n for n, s in services.items() if "DOCKER_HOST" in compose.environment(s)}
    assert holders == {"worker-container"}


def test_services_reach_each_other_where_they_listen(spec):
    assert compose.address_problems(spec, defaults=IMAGE_PORTS) == []
    broken = copy.deepcopy(spec)
    broken["services"]["edge"]["environment"]["STATS_UPSTREAM"] = "stats:8083"
    broken["services"]["gateway"]["environment"]["AUTH_SERVICE_URL"] = "http://authx:8081"
    problems = compose.address_problems(broken, defaults=IMAGE_PORTS)
    assert any("stats does not listen on 8083" in p for p in problems)
    assert any("unknown service authx" in p for p in problems)


def test_the_edge_fronts_gateway_and_stats_like_the_procfile(spec):
    services = spec["services"]
    edge = services["edge"]
    env = compose.environment(edge)
    # (Their ports: test_services_reach_each_other_where_they_listen.)
    hosts = (env["GATEWAY_UPSTREAM"].split(":")[0], env["STATS_UPSTREAM"].split(":")[0])
    assert hosts == ("gateway", "stats")
    assert {"gateway", "stats"} <= set(edge["depends_on"])
    # The edge is the only published API port; the Procfile's edge runs the same agent.
    published = {n for n, s in services.items() if s.get("ports")}
    assert published == {"edge", "rabbitmq"}
    assert edge["ports"] == ["127.0.0.1:8080:8080"]
    procfile = (compose.ROOT / "Procfile").read_text()
    assert re.search(r"^edge: exec jobgate-edge$", procfile, re.M)
    assert edge["command"] == ["jobgate-edge"]
    # Every compose process of the Procfile is a compose service (the engine is the host's).
    procs = set(re.findall(r"^([\w-]+):", procfile, re.M)) - {"engine"}
    assert procs <= set(services)


def test_compose_and_kubernetes_agree_on_the_workers():
    """One list of kinds everywhere: compose's workers are the manifests' worker files."""
    files = {p.stem for p in (compose.ROOT / "manifests" / "base" / "workers").glob("*.yaml")}
    base = yaml.safe_load((compose.ROOT / "manifests" / "base" / "kustomization.yaml").read_text())
    listed = {Path(r).stem for r in base["resources"] if r.startswith("workers/")}
    assert files == listed == set(kinds.names())
