"""Client addresses behind the edge: X-Forwarded-For is believed from trusted proxies only.

The edge (nginx) replaces X-Forwarded-For with the address of its own peer, so behind it the
client is the header's last address. Rate limits per address (login attempts, anonymous
calls) and the address forwarded to auth-service are only as good as this: a header sent by
anyone else — a client reaching the gateway directly — is dropped, never believed.

werkzeug's ProxyFix rewrites the environ from the headers but believes whoever sends them;
`TrustedProxies` runs it only for a peer inside TRUSTED_PROXIES (addresses or CIDR networks),
after checking the values (an address, `http`/`https`): an empty or garbage header leaves
the peer as the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.middleware.proxy_fix import ProxyFix

from jobgate import config

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = config.IPNetwork

# Proxy headers nobody but a trusted proxy may set; dropped from other peers' requests.
FORWARDED_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_FORWARDED",
)


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES entries as networks (a bare address is a one-address network)."""
    try:
        return config.parse_networks(entries)
    except ValueError as exc:
        raise ValueError(f"TRUSTED_PROXIES: {exc}") from None


def parse_address(value: str | None) -> IPAddress | None:
    """An address as proxies write it (`1.2.3.4`, `::1`, `[::1]`, with or without a port),
    IPv4-mapped IPv6 unwrapped; None when it is none."""
    text = (value or "").strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """WSGI middleware: for a peer in `trusted` (TRUSTED_PROXIES), REMOTE_ADDR becomes the
    last address of X-Forwarded-For and `wsgi.url_scheme` X-Forwarded-Proto (werkzeug's
    ProxyFix, one hop); for any other peer those headers are removed and the peer stays the
    client."""

    def __init__(self, app: WSGIApplication, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks = parse_networks(trusted)
        self.proxy_fix = ProxyFix(app, x_for=1, x_proto=1, x_host=0, x_port=0, x_prefix=0)

    def is_trusted(self, peer: str | None) -> bool:
        address = parse_address(peer)
        return address is not None and any(address in net for net in self.networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self.is_trusted(environ.get("REMOTE_ADDR")):
            for key in FORWARDED_HEADERS:
                environ.pop(key, None)
            return self.app(environ, start_response)
        # Only the last value counts; anything but an address or http/https is ignored.
        client = parse_address(environ.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1])
        if client is None:
            environ.pop("HTTP_X_FORWARDED_FOR", None)
        else:
            environ["HTTP_X_FORWARDED_FOR"] = str(client)
        proto = environ.get("HTTP_X_FORWARDED_PROTO", "").rsplit(",", 1)[-1].strip().lower()
        if proto in ("http", "https"):
            environ["HTTP_X_FORWARDED_PROTO"] = proto
        else:
            environ.pop("HTTP_X_FORWARDED_PROTO", None)
        return self.proxy_fix(environ, start_response)
