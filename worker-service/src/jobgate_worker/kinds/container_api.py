"""The containers API's engine side (seed 003's /api/containers), served by container
workers over RabbitMQ RPC (`jobgate.rpc.containers`, jobgate.rpc): only they hold the
engine's socket; the gateway authenticates, validates (`jobgate.kinds.container.
ContainerCreate`) and asks.

Every call names its caller (`owner_id`, `is_admin`). Jobgate's containers carry the labels
`jobgate.managed=containers-api`, `jobgate.instance` (the deployment), `jobgate.owner` and
`jobgate.name` (the name the user gave;
the engine's name is `jobgate-<owner>-<name>`, so two users may both have a `web`). A
container without Jobgate's label, or another user's (for a non-admin), does not exist here:
CONTAINER_NOT_FOUND. Safety by default, as for container jobs: network `none` unless
`bridge` is asked (never `host`), all capabilities dropped, no-new-privileges, a pids limit,
the default memory limit, never privileged, ports published on `container_publish_host`
only, host volumes only below `container_volume_roots` (none by default: 403), the image
allow-list.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import time
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from marshmallow import ValidationError

from jobgate import runtime_config
from jobgate.config import Settings
from jobgate.errors import Conflict, Forbidden, InvalidRequest, NotFound, ServiceUnavailable
from jobgate.kinds.container import ContainerCreate, image_allowed, parse_cpus, parse_memory

# stop/restart: SIGTERM, then SIGKILL after this long (the gateway waits this much longer
# for those two: jobgate_gateway.compat.seed003.containers)
STOP_TIMEOUT_S = 5
MANAGED = {"jobgate.managed": "containers-api"}
# The seed's three states; the engine's others fold into them.
STATUS = {"running": "running", "paused": "paused", "restarting": "running"}
LOG_LINES_MAX = 10_000


@dataclasses.dataclass(frozen=True)
class Sample:
    """What one of the engine's stats samples (`container.stats(stream=False)`) says, read
    in one place for the containers API and for container jobs' `resource_usage`."""

    cpu_ns: int  # CPU time used since the container started
    memory_usage: int
    memory_peak: int  # Podman keeps no peak: its current usage
    memory_limit: int
    network_rx: int
    network_tx: int
    block_read: int
    block_write: int

    @classmethod
    def of(cls, stats: dict[str, Any]) -> Sample:
        cpu = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
        memory = stats.get("memory_stats") or {}
        nets = (stats.get("networks") or {}).values()
        blkio = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
        usage = int(memory.get("usage") or 0)
        return cls(
            cpu_ns=int(cpu or 0),
            memory_usage=usage,
            memory_peak=max(int(memory.get("max_usage") or 0), usage),
            memory_limit=int(memory.get("limit") or 0),
            network_rx=sum(int(n.get("rx_bytes") or 0) for n in nets),
            network_tx=sum(int(n.get("tx_bytes") or 0) for n in nets),
            block_read=sum(int(b.get("value") or 0) for b in blkio if b.get("op") == "Read"),
            block_write=sum(int(b.get("value") or 0) for b in blkio if b.get("op") == "Write"),
        )


class ContainerNotFound(NotFound):
    code = "CONTAINER_NOT_FOUND"


class ContainersApi:
    """The containers of the caller, on the engine. `docker` is the worker's client of the
    engine, `instance` its deployment's label (jobgate_worker.kinds.container): an engine
    may serve several deployments, whose containers never see each other's."""

    def __init__(self, settings: Settings, docker: docker.DockerClient, instance: str) -> None:
        self.settings = settings
        self.runtime = runtime_config.RuntimeSettings(settings)  # the reloadable allow-list
        self.docker = docker
        self.managed = {**MANAGED, "jobgate.instance": instance}
        self._cpu_seen: dict[str, tuple[float, int]] = {}  # id -> (when, total_usage ns)

    def handlers(self) -> dict[str, Any]:
        """What the gateway may ask of this worker's engine, by method name."""
        return {
            "ping": self.ping,
            "list": self.list,
            "create": self.create,
            "get": self.get,
            **{
                verb: self.action(verb) for verb in ("start", "stop", "restart", "pause", "unpause")
            },
            "remove": self.remove,
            "logs": self.logs,
            "stats": self.stats,
        }

    def _engine_call(self, call: Any, *args: Any, gone: str | None = None, **kwargs: Any) -> Any:
        """`call` with the engine's errors as the API's; `gone` names the container a 404
        of the engine is about (it was removed meanwhile), else the 404 is raised as is."""
        try:
            return call(*args, **kwargs)
        except docker.errors.NotFound:
            if gone is not None:
                raise ContainerNotFound(
                    f"Container with ID '{gone}' not found", details={"container_id": gone}
                ) from None
            raise
        except docker.errors.APIError as exc:
            # Docker says 409 when the container's state forbids the call (pausing one that
            # does not run); Podman says 500 "container state improper" (found by the fuzz test).
            if exc.status_code == 409 or "container state improper" in str(exc.explanation):
                raise Conflict(exc.explanation or str(exc)) from None
            raise ServiceUnavailable(
                "the container engine refused", details={"reason": str(exc)[:300]}
            ) from None
        except (docker.errors.DockerException, OSError) as exc:
            raise ServiceUnavailable(
                "the container engine does not answer", details={"reason": str(exc)[:300]}
            ) from None

    # --- methods -----------------------------------------------------------------------

    def ping(self, _params: dict[str, Any]) -> dict[str, Any]:
        version = self._engine_call(self.docker.version)
        return {"engine": "healthy", "version": version.get("Version")}

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        found = [
            c
            for c in self._mine(params)
            if (not params.get("status") or self._status(c) == params["status"])
            and (not params.get("image") or self._image(c) == params["image"])
        ]
        found.sort(key=lambda c: c.attrs.get("Created", ""), reverse=True)
        limit, offset = int(params.get("limit", 50)), int(params.get("offset", 0))
        page = found[offset : offset + limit]
        described = []
        for container in page:
            try:
                described.append(self._describe(container, usage=True))
            except ContainerNotFound:  # removed since it was listed
                continue
        return {
            "containers": described,
            "total": len(found),
            "limit": limit,
            "offset": offset,
        }

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        owner = str(params["owner_id"])
        try:
            body = ContainerCreate().load(params["body"])
        except ValidationError as exc:  # the gateway checked it already; a client of its own
            raise InvalidRequest("Invalid container", details=exc.normalized_messages()) from None
        allowlist = self.runtime.current().container_image_allowlist
        if not image_allowed(body["image"], allowlist):
            raise Forbidden(f"image '{body['image']}' is not allowed here")
        self._image_present(body["image"])
        name = body["name"]
        if any(c.labels.get("jobgate.name") == name for c in self._mine({"owner_id": owner})):
            raise Conflict(f"You already have a container named '{name}'", details={"name": name})
        resources = body["resources"]
        memory = resources.get("memory_limit") or self.settings.container_default_memory
        cpus = parse_cpus(resources.get("cpu_limit") or self.settings.container_default_cpus)
        host = self.settings.container_publish_host
        ports = {
            f"{c}/tcp" if "/" not in c else c: (host, int(h)) for c, h in body["ports"].items()
        }
        if ports and body["network_mode"] == "none":
            raise InvalidRequest("ports need network_mode 'bridge'")
        restart = body["restart_policy"]
        container = self._engine_call(
            self.docker.containers.create,
            body["image"],
            body["command"],
            name=f"jobgate-{owner[:8]}-{name}",
            environment=body["environment"],
            ports=ports,
            volumes=self._volumes(body["volumes"]),
            mem_limit=parse_memory(memory),
            nano_cpus=int(cpus * 1e9),
            pids_limit=self.settings.container_pids_limit,
            network_mode=body["network_mode"],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            restart_policy={"Name": restart} if restart != "no" else None,
            labels={
                **self.managed,
                "jobgate.owner": owner,
                "jobgate.name": name,
                "jobgate.image": body["image"],  # as asked (the engine keeps the resolved name)
            },
            detach=True,
        )
        return self._describe(container)

    def get(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._describe(self._find(params), usage=True)

    def action(self, verb: str) -> Any:
        def act(params: dict[str, Any]) -> dict[str, Any]:
            container = self._find(params)
            gone = container.id[:12]
            if verb in ("stop", "restart"):
                self._engine_call(getattr(container, verb), timeout=STOP_TIMEOUT_S, gone=gone)
            else:
                self._engine_call(getattr(container, verb), gone=gone)
            self._engine_call(container.reload, gone=gone)
            return self._describe(container)

        return act

    def remove(self, params: dict[str, Any]) -> dict[str, Any]:
        container = self._find(params)
        self._engine_call(container.remove, force=True, gone=container.id[:12])
        self._cpu_seen.pop(container.id, None)
        return {"id": container.id[:12], "removed": True}

    def logs(self, params: dict[str, Any]) -> dict[str, Any]:
        """Lines of stdout and stderr: `tail` (last N), `since` (epoch seconds or ISO-8601),
        `timestamps`. `until` is when this answer was made, for the next `since`."""
        container = self._find(params)
        options: dict[str, Any] = {"stdout": True, "stderr": True}
        options["timestamps"] = bool(params.get("timestamps"))
        tail = params.get("tail")
        options["tail"] = min(int(tail), LOG_LINES_MAX) if tail is not None else LOG_LINES_MAX
        if params.get("since") is not None:
            since = _epoch(params["since"])
            if since > 0:  # 0 or before 1970: from the first line (the SDK wants a positive time)
                options["since"] = since
        now = time.time()
        gone = container.id[:12]
        text = self._engine_call(container.logs, **options, gone=gone).decode("utf-8", "replace")
        self._engine_call(container.reload, gone=gone)
        return {"logs": text, "until": now, "status": self._status(container)}

    def stats(self, params: dict[str, Any]) -> dict[str, Any]:
        container = self._find(params)
        if self._status(container) != "running":
            # Nothing runs, so nothing is used (Podman answers a stopped container's stats
            # with an empty body): zeros, and the limit it was made with.
            limit = int((container.attrs.get("HostConfig") or {}).get("Memory") or 0)
            sample = Sample(0, 0, 0, limit, 0, 0, 0, 0)
        else:
            sample = self._sample(container)
        return {
            "cpu_usage": self._cpu_percent(container, sample),
            "memory_usage": sample.memory_usage,
            "memory_limit": sample.memory_limit,
            "network_rx": sample.network_rx,
            "network_tx": sample.network_tx,
            "block_read": sample.block_read,
            "block_write": sample.block_write,
            "timestamp": _iso(dt.datetime.now(dt.UTC)),
        }

    # --- helpers ------------------------------------------------------------------------

    def _image_present(self, image: str) -> None:
        """400 unless the engine has the image (nothing is pulled). Podman answers a name it
        cannot parse with a 500: for the caller that is a name the engine has no image of;
        an engine that cannot be reached stays a 503."""
        try:
            self.docker.images.get(image)
        except docker.errors.APIError as exc:
            raise InvalidRequest(
                f"image '{image}' not found",
                details={"image": image, "reason": str(exc.explanation or exc)[:300]},
            ) from None
        except (docker.errors.DockerException, OSError) as exc:
            raise ServiceUnavailable(
                "the container engine does not answer", details={"reason": str(exc)[:300]}
            ) from None

    def _mine(self, params: dict[str, Any]) -> list[Container]:
        """Jobgate's containers that the caller may see (all of them for an admin)."""
        labels = [f"{k}={v}" for k, v in self.managed.items()]
        if not params.get("is_admin"):
            labels.append(f"jobgate.owner={params['owner_id']}")
        return self._engine_call(self.docker.containers.list, all=True, filters={"label": labels})

    def _find(self, params: dict[str, Any]) -> Container:
        wanted = str(params.get("id", ""))
        mine = self._mine(params)
        for container in mine:
            if wanted and (
                container.id.startswith(wanted) or container.labels.get("jobgate.name") == wanted
            ):
                return container
        raise ContainerNotFound(
            f"Container with ID '{wanted}' not found",
            details={
                "container_id": wanted,
                "available_containers": [c.id[:12] for c in mine][:50],
            },
        )

    def _volumes(self, volumes: dict[str, str]) -> dict[str, dict[str, str]]:
        """Host paths resolved (symlinks included) and checked against the roots."""
        roots = [os.path.realpath(r) for r in self.settings.container_volume_roots]
        binds = {}
        for target, source in volumes.items():
            real = os.path.realpath(source)
            if not any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
                raise Forbidden(
                    f"host path '{source}' is outside the allowed volume roots",
                    details={"volume": source, "allowed_roots": list(roots)},
                )
            if not os.path.isdir(real):
                raise InvalidRequest(f"host path '{source}' is not a directory")
            binds[real] = {"bind": target, "mode": "rw"}
        return binds

    def _status(self, container: Container) -> str:
        return STATUS.get(container.status, "stopped")

    def _image(self, container: Container) -> str:
        return container.labels.get("jobgate.image") or str(
            container.attrs.get("Config", {}).get("Image") or ""
        )

    def _describe(self, container: Container, *, usage: bool = False) -> dict[str, Any]:
        attrs = container.attrs
        bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
        ports = [
            f"{b.get('HostPort')}:{port.split('/')[0]}"
            for port, bs in bindings.items()
            for b in bs or ()
        ]
        status = self._status(container)
        body = {
            "id": container.id[:12],
            "name": container.labels.get("jobgate.name", container.name),
            "image": self._image(container),
            "status": status,
            "created_at": _iso_text(attrs.get("Created")),
            "ports": ports,
            "cpu_usage": 0.0,
            "memory_usage": 0,
        }
        if usage and status == "running":
            sample = self._sample(container)
            body["cpu_usage"] = self._cpu_percent(container, sample)
            body["memory_usage"] = sample.memory_usage
        return body

    def _sample(self, container: Container) -> Sample:
        stats = self._engine_call(container.stats, stream=False, gone=container.id[:12])
        return Sample.of(stats)

    def _cpu_percent(self, container: Container, sample: Sample) -> float:
        """CPU % of one CPU since the last sample this worker took of it (or since the
        container started): Podman's one-shot stats carry no previous sample."""
        total = sample.cpu_ns
        now = time.monotonic()
        before = self._cpu_seen.get(container.id)
        self._cpu_seen[container.id] = (now, total)
        if before is not None and now > before[0]:
            return round(max(0, total - before[1]) / 1e9 / (now - before[0]) * 100, 1)
        started = _parse_time((container.attrs.get("State") or {}).get("StartedAt"))
        if started is None:
            return 0.0
        elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
        return round(total / 1e9 / elapsed * 100, 1) if elapsed > 0 else 0.0


_ENGINE_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


def _parse_time(text: str | None) -> dt.datetime | None:
    """An engine's timestamp (Go's RFC 3339 with nanoseconds) or an ISO-8601 one."""
    match = _ENGINE_TIME.match(text or "")
    if not match or text.startswith("0001-"):
        return None
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    return dt.datetime.fromisoformat(f"{base}.{(fraction or '0')[:6].ljust(6, '0')}{zone}")


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_text(text: str | None) -> str | None:
    when = _parse_time(text)
    return _iso(when) if when else None


def _epoch(since: Any) -> float:
    if isinstance(since, int | float):
        return float(since)
    text = str(since)
    try:
        return float(text)
    except ValueError:
        when = _parse_time(text)
        if when is None:
            raise InvalidRequest(f"'since' is not a time: {text!r}") from None
        return when.timestamp()
