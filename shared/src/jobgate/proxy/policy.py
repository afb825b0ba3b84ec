"""Which servers an upstream may point at: the operator's allowed networks, never Jobgate's
own services.

A `proxy` principal publishes whatever it names on Jobgate's public address. Without a
policy it could publish RabbitMQ's management console or auth-service itself, so addresses
must lie in `PROXY_ALLOWED_UPSTREAMS` (loopback by default: the issue's case is a container
published on 127.0.0.1) and must not be the port of a service Jobgate itself uses. A host
name is checked by every address it resolves to now; validation already made sure it
resolves (`model.normal_address`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from jobgate import config
from jobgate.config import Settings
from jobgate.errors import Forbidden

Network = config.IPNetwork


def allowed_networks(settings: Settings) -> tuple[Network, ...]:
    """PROXY_ALLOWED_UPSTREAMS (Settings refuses entries that are no network)."""
    return config.parse_networks(settings.proxy_allowed_upstreams)


def jobgate_ports(settings: Settings) -> set[int]:
    """The ports of the services Jobgate talks to: never an upstream of the edge, on any
    host (a published PostgreSQL or RabbitMQ console is one typo away otherwise)."""
    ports = set()
    for url in (
        settings.database_url,
        settings.amqp_url,
        settings.auth_service_url,
        settings.rabbitmq_management.base_url,
        settings.rate_limit_storage_uri,
    ):
        try:
            port = urlsplit(url).port
        except ValueError:
            continue
        if port:
            ports.add(port)
    return ports


LOOPBACK = config.parse_networks(["127.0.0.0/8", "::1/128"])


def own_listeners(settings: Settings) -> list[tuple[Network, int]]:
    """Where the edge, the gateway and stats-service listen (EDGE_BIND, GATEWAY_BIND,
    STATS_BIND), as (addresses, port): an upstream there sends the edge's requests back
    through the edge. A wildcard or empty host listens on every address: loopback counts;
    a specific address is only itself, so `10.1.2.3:8080` stays a fine upstream."""
    listeners = []
    for bind in (settings.edge_bind, settings.gateway_bind, settings.stats_bind):
        host, _, port_text = bind.strip().rpartition(":")
        if not port_text.isdigit():
            continue
        port, host = int(port_text), host.strip("[]")
        ips = _addresses(host, port) if host else []
        if not ips or any(ip.is_unspecified for ip in ips):
            listeners += [(network, port) for network in LOOPBACK]
        listeners += [(ipaddress.ip_network(ip), port) for ip in ips]
    return listeners


def check_servers(upstreams: Iterable[dict], settings: Settings) -> None:
    """Forbidden (403) for the first server outside the policy; upstreams as sent (their
    addresses are normalised by the store's validation, so a bad one is its 400)."""
    for _, refusal in refusals(upstreams, settings):
        raise refusal


def refusals(upstreams: Iterable[dict], settings: Settings) -> Iterator[tuple[str, Forbidden]]:
    """Every server outside the policy: where it is in `upstreams` (`[0].servers[1].address`)
    and why (a dry run, `PUT /api/config/validate`, lists them all)."""
    policy = _Policy(allowed_networks(settings), jobgate_ports(settings), own_listeners(settings))
    for i, upstream in enumerate(upstreams):
        servers = upstream.get("servers") if isinstance(upstream, dict) else None
        for j, server in enumerate(servers if isinstance(servers, list) else []):
            address = server.get("address") if isinstance(server, dict) else None
            refusal = policy.refusal(address) if isinstance(address, str) else None
            if refusal is not None:
                yield f"[{i}].servers[{j}].address", refusal


@dataclasses.dataclass(frozen=True)
class _Policy:
    networks: Sequence[Network]
    denied_ports: set[int]
    listeners: Sequence[tuple[Network, int]]

    def refusal(self, address: str) -> Forbidden | None:
        host, _, port_text = address.rpartition(":")
        host = host.strip("[]")
        if not port_text.isdigit() or not host:
            return None  # not an address at all: validation answers it
        port = int(port_text)
        if port in self.denied_ports:
            return Forbidden(
                f"{address} is a port of a service Jobgate itself uses",
                details={"address": address},
            )
        ips = _addresses(host, port)
        if any(ip in net and port == p for ip in ips for net, p in self.listeners):
            return Forbidden(
                f"{address} is where Jobgate itself listens (the edge, the gateway or"
                " stats-service): its requests would come back through the edge",
                details={"address": address},
            )
        for ip in ips:
            if not any(ip in network for network in self.networks):
                return Forbidden(
                    f"{address} is outside the networks upstreams may use"
                    " (PROXY_ALLOWED_UPSTREAMS)",
                    details={"address": address, "allowed": [str(n) for n in self.networks]},
                )
        return None


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # IDNA refuses an over-long label before any lookup
        return []  # validation refuses a name that does not resolve
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
