"""Offline checks of docker-compose.yml beyond the Compose specification's schema, which
does not notice a service, network, volume, secret or config that is referenced but never
defined (there is no Docker engine or compose v2 on these machines to ask)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"

Compose = dict[str, Any]
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$\$")


def load(text: str | None = None) -> Compose:
    """The compose file as compose reads it: YAML with anchors and merge keys, then
    `${VAR:-default}` interpolated with the defaults (an unset variable is empty)."""
    data = yaml.safe_load(COMPOSE.read_text() if text is None else text)
    return _interpolate(data)


def _interpolate(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            op, default = m.group(2), m.group(3) or ""
            if op in (":-", "-"):
                return default
            if op in (":?", "?"):
                return "<required>"
            return ""

        return _VARIABLE.sub(one, value)
    return value


def _named_volume(entry: Any) -> str | None:
    """The named volume a service's `volumes` entry uses (None for a bind mount or tmpfs)."""
    if isinstance(entry, dict):
        return entry.get("source") if entry.get("type", "volume") == "volume" else None
    source = str(entry).split(":", 1)[0] if ":" in str(entry) else None
    if not source or source.startswith((".", "/", "~")):
        return None
    return source


def _bind_source(entry: Any) -> str | None:
    if isinstance(entry, dict):
        return entry.get("source") if entry.get("type") == "bind" else None
    source = str(entry).split(":", 1)[0]
    return source if source.startswith(("./", "../")) else None


def _names(section: Any) -> list[str]:
    """Names in a list-or-mapping field (depends_on, networks, secrets, configs)."""
    if isinstance(section, dict):
        return list(section)
    names = []
    for item in section or []:
        names.append(item["source"] if isinstance(item, dict) else str(item))
    return names


def reference_problems(compose: Compose, root: Path = ROOT) -> list[str]:
    """Everything a service refers to is defined: services (depends_on, links, extends,
    volumes_from, network_mode), networks, named volumes, secrets, configs; bind mounts and
    build contexts of the repository exist."""
    services = compose.get("services", {})
    networks = set(compose.get("networks") or {}) | {"default"}
    volumes = set(compose.get("volumes") or {})
    secrets = set(compose.get("secrets") or {})
    configs = set(compose.get("configs") or {})
    problems = []
    for svc_name, svc in services.items():
        where = f"service {svc_name}"
        refs = _names(svc.get("depends_on"))
        refs += [link.split(":")[0] for link in svc.get("links", [])]
        refs += [v.split(":")[0] for v in svc.get("volumes_from", [])]
        if isinstance(svc.get("extends"), dict) and "file" not in svc["extends"]:
            refs.append(svc["extends"]["service"])
        mode = svc.get("network_mode", "")
        if mode.startswith("service:"):
            refs.append(mode.split(":", 1)[1])
        problems += [f"{where}: unknown service {r}" for r in refs if r not in services]
        problems += [
            f"{where}: unknown network {n}"
            for n in _names(svc.get("networks"))
            if n not in networks
        ]
        problems += [
            f"{where}: unknown secret {s}" for s in _names(svc.get("secrets")) if s not in secrets
        ]
        problems += [
            f"{where}: unknown config {c}" for c in _names(svc.get("configs")) if c not in configs
        ]
        for entry in svc.get("volumes", []):
            volume = _named_volume(entry)
            if volume is not None and volume not in volumes:
                problems.append(f"{where}: unknown volume {volume}")
            source = _bind_source(entry)
            if source and not source.startswith("./var/") and not (root / source).exists():
                problems.append(f"{where}: bind mount {source} does not exist")
        build = svc.get("build")
        if build is not None:
            context = root / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            if not (context / dockerfile).exists():
                problems.append(f"{where}: {context / dockerfile} does not exist")
    return problems


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def exposed(service: dict[str, Any]) -> set[int]:
    """Ports a service listens on for the others (expose, or the container side of ports)."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for p in service.get("ports", []):
        target = p.get("target") if isinstance(p, dict) else str(p).rsplit(":", 1)[-1]
        ports.add(int(str(target).split("/")[0]))
    return ports


def address_problems(compose: Compose, *, defaults: dict[str, set[int]]) -> list[str]:
    """Every `host:port` or URL a Jobgate service is given for another service names a
    service that exists and listens there (`defaults`: image-provided ports, e.g. postgres's
    5432, which compose files do not repeat)."""
    services = compose["services"]
    problems = []
    for svc_name, svc in services.items():
        for var, value in environment(svc).items():
            if var.endswith("_UPSTREAM"):
                host, _, port = value.rpartition(":")
            elif var.endswith(("_URL", "_URI")) and "://" in value:
                url = urlsplit(value)
                host, port = url.hostname or "", str(url.port or "")
            else:
                continue
            if host in ("", "127.0.0.1", "localhost", "::1") or "." in host:
                continue
            if host not in services:
                problems.append(f"service {svc_name}: {var} names unknown service {host}")
                continue
            listening = exposed(services[host]) | defaults.get(host, set())
            if port and int(port) not in listening:
                problems.append(f"service {svc_name}: {var}: {host} does not listen on {port}")
    return problems
