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

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from jobgate.config import Settings
from jobgate.errors import Forbidden

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_networks(settings: Settings) -> list[Network]:
    return [ipaddress.ip_network(text, strict=False) for text in settings.proxy_allowed_upstreams]


def jobgate_ports(settings: Settings) -> set[int]:
    """The ports of the services Jobgate itself talks to: never an upstream of the edge."""
    ports = set()
    for url in (
        settings.database_url,
        settings.amqp_url,
        settings.auth_service_url,
        settings.rabbitmq_management.base_url,
        settings.rate_limit_storage_uri,
        f"//{settings.stats_bind}",
    ):
        try:
            port = urlsplit(url).port
        except ValueError:
            continue
        if port:
            ports.add(port)
    return ports


def check_servers(upstreams: Iterable[dict], settings: Settings) -> None:
    """Forbidden (403) for the first server outside the policy; upstreams as sent (their
    addresses are normalised by the store's validation, so a bad one is its 400)."""
    networks = allowed_networks(settings)
    denied = jobgate_ports(settings)
    for upstream in upstreams:
        servers = upstream.get("servers") if isinstance(upstream, dict) else None
        for server in servers if isinstance(servers, list) else []:
            address = server.get("address") if isinstance(server, dict) else None
            if isinstance(address, str):
                _check_address(address, networks, denied)


def _check_address(address: str, networks: Sequence[Network], denied: set[int]) -> None:
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not port_text.isdigit() or not host:
        return  # not an address at all: validation answers it
    port = int(port_text)
    if port in denied:
        raise Forbidden(
            f"{address} is a port of a service Jobgate itself uses",
            details={"address": address},
        )
    for ip in _addresses(host, port):
        if not any(ip in network for network in networks):
            raise Forbidden(
                f"{address} is outside the networks upstreams may use (PROXY_ALLOWED_UPSTREAMS)",
                details={"address": address, "allowed": [str(n) for n in networks]},
            )


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
