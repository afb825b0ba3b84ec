"""The proxy set (upstreams and routes, seed 003's "Reverse Proxy API"): validation and the
normalised form every reader sees.

Validation is strict enough that every accepted set renders into a configuration nginx
1.22 accepts (docs in /tmp/issue14-design.md, section 2.4): the gateway refuses a bad set
with 400/409 and nothing is written, so a bad set never reaches the edge. Normalising
fills in every default, so the stored document, GET's answer and the renderer's input are
one and the same; durations stay the strings the user wrote (leading zeros dropped, a
bare integer read as seconds), so GET returns what PUT stored.

Errors are `jobgate.errors` classes, so the gateway answers the canonical JSON error:
InvalidRequest (400) with `details.errors = [{"path": "routes[1].upstream", "message"}]`,
every problem at once; Conflict (409) for a reserved path, a duplicate upstream name
(compared case-insensitively, as nginx compares them), a duplicate route id or a second
route on the same (path, method). 400s are reported before 409s.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from collections.abc import Callable
from typing import Any

from jobgate.errors import Conflict, InvalidRequest
from jobgate.proxy.reserved import reserved_conflict

Doc = dict[str, Any]
Errors = list[dict[str, str]]

STRATEGIES = ("round_robin", "least_conn", "ip_hash")
METHODS = ("ANY", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MIDDLEWARE = ("auth", "rate_limit")

MAX_UPSTREAMS = 256
MAX_ROUTES = 1024
MAX_SERVERS = 64
MAX_HEADERS = 32
MAX_HEADER_VALUE = 1024

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")  # rendered `jobgate_u_<name>`
ROUTE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# No `%`, quotes, `$` or spaces: nginx matches the decoded, normalised URI, and the path is
# written as a quoted location string. `*` only last (a prefix route).
PATH_RE = re.compile(r"^/[A-Za-z0-9_.~/@:+,=!-]{0,255}\*?$")
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
HEALTH_PATH_RE = re.compile(r"^/[\x21-\x7e]{0,1023}$")  # printable, no spaces
DURATION_RE = re.compile(r"^(\d{1,9})(ms|s|m|h)$")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
HOST_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Hop-by-hop or framing headers nginx manages itself, and our own: a route may not set them.
FORBIDDEN_HEADERS = frozenset(
    {
        "connection",
        "upgrade",
        "content-length",
        "transfer-encoding",
        "forwarded",
        "keep-alive",
        "te",
    }
)
# nginx cannot escape a literal `$` in a header value: every `$` must start one of these.
HEADER_VARIABLES = frozenset(
    {
        "remote_addr",
        "host",
        "scheme",
        "server_port",
        "request_uri",
        "uri",
        "args",
        "request_id",
    }
)
HTTP_VARIABLE_RE = re.compile(r"^http_[a-z0-9_]{1,64}$")  # $http_<header>: the client's header
# Jobgate's credentials never reach an upstream, even copied into another header.
FORBIDDEN_VARIABLES = frozenset({"http_authorization", "http_x_api_key"})
VARIABLE_RE = re.compile(r"\$([A-Za-z0-9_]*)")

# Keys GET /api/proxy/config adds to the set; accepted so a GET can be PUT back (`version`
# then guards against a lost update: jobgate.proxy.store.replace_set), not part of the set.
READ_ONLY_SET_KEYS = frozenset({"version", "updated_at", "edges"})

HEALTH_DEFAULTS: Doc = {
    "enabled": False,
    "path": "/health",
    "interval": "30s",
    "timeout": "5s",
    "healthy_threshold": 2,
    "unhealthy_threshold": 3,
}
SERVER_DEFAULTS: Doc = {"weight": 1, "max_fails": 1, "fail_timeout": "10s"}  # nginx's own
ROUTE_DEFAULTS: Doc = {
    "method": "ANY",
    "middleware": [],
    "headers": {},
    "timeout": "60s",
    "retries": 1,
}


# --- durations --------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in "500ms", "30s", "2m" or "1h" (nginx's units, one unit per value)."""
    match = DURATION_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a duration like '500ms', '30s', '2m' or '1h'")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def _normal_duration(value: Any) -> str:
    """The stored spelling: a bare integer is seconds, leading zeros go."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = f"{value}s"  # then checked as written: at most 9 digits
    parse_duration(value)
    match = DURATION_RE.fullmatch(value)
    assert match is not None
    return f"{int(match.group(1))}{match.group(2)}"


# --- small checkers (each records its problem and returns the normalised value) ------------


class _Checker:
    """Collects every problem of a document with its path, so one answer lists them all."""

    def __init__(self, *, resolve_names: bool = True) -> None:
        self.errors: Errors = []
        self.resolve = _resolve if resolve_names else _resolved_already

    def fail(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def integer(self, value: Any, path: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(path, f"must be an integer from {low} to {high}")
            return low
        return value

    def duration(
        self, value: Any, path: str, low: float, high: float, *, whole_seconds: bool = False
    ) -> str:
        try:
            text = _normal_duration(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return "0s"
        seconds = parse_duration(text)
        if whole_seconds and seconds != int(seconds):
            self.fail(path, "must be whole seconds (nginx refuses fractions here)")
        elif not low <= seconds <= high:
            self.fail(path, f"must be from {_spell(low)} to {_spell(high)}")
        return text

    def choice(self, value: Any, path: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            self.fail(path, f"must be one of {', '.join(choices)}")
        return value

    def fields(self, doc: Any, path: str, known: tuple[str, ...]) -> Doc:
        """`doc` as an object; unknown keys are errors (a typo must not pass silently)."""
        if not isinstance(doc, dict):
            self.fail(path, "must be an object")
            return {}
        for key in doc:
            if key not in known:
                self.fail(_join(path, str(key)), f"unknown field (known: {', '.join(known)})")
        return doc


def _spell(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    return prefix + field if field.startswith("[") else f"{prefix}.{field}"


# --- addresses --------------------------------------------------------------------------------


def normal_address(value: Any, *, resolve: Callable[[str, int], None] | None = None) -> str:
    """`IPv4:port`, `[IPv6]:port` or `host:port`, normalised (lower-case host, compressed
    IPv6, no leading zeros). A host name must resolve now: nginx resolves names at every
    reload, and one that does not resolve fails the whole configuration."""
    if not isinstance(value, str):
        raise ValueError("must be a string 'host:port'")
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})", value) or re.fullmatch(
        r"([^:\[\]/\s]+):(\d{1,5})", value
    )
    if match is None:
        raise ValueError("must be 'IPv4:port', '[IPv6]:port' or 'host:port'")
    host, port = match.group(1), int(match.group(2))
    if not 1 <= port <= 65535:
        raise ValueError("port must be from 1 to 65535")
    if value.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]:{port}"
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return f"{ipaddress.IPv4Address(host)}:{port}"
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
    host = host.lower()
    if len(host) > 253 or not all(HOST_LABEL_RE.fullmatch(label) for label in host.split(".")):
        raise ValueError(f"{host!r} is not a host name")
    (resolve or _resolve)(host, port)
    return f"{host}:{port}"


def _resolved_already(host: str, port: int) -> None:
    """Names of a set already stored resolved when they were written."""


def _resolve(host: str, port: int) -> None:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ValueError(
            f"{host!r} does not resolve (nginx would refuse the configuration)"
        ) from None


# --- upstreams --------------------------------------------------------------------------------


def _check_upstream(check: _Checker, doc: Any, at: str) -> Doc:
    doc = check.fields(doc, at, ("name", "strategy", "health_check", "servers"))
    name = doc.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        check.fail(_join(at, "name"), "must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    return {
        "name": name,
        "strategy": check.choice(
            doc.get("strategy", "round_robin"), _join(at, "strategy"), STRATEGIES
        ),
        "health_check": _check_health(
            check, doc.get("health_check", {}), _join(at, "health_check")
        ),
        "servers": _check_servers(check, doc.get("servers"), _join(at, "servers")),
    }


def _check_health(check: _Checker, doc: Any, at: str) -> Doc:
    doc = {**HEALTH_DEFAULTS, **check.fields(doc, at, tuple(HEALTH_DEFAULTS))}
    if not isinstance(doc["enabled"], bool):
        check.fail(_join(at, "enabled"), "must be true or false")
    if not isinstance(doc["path"], str) or not HEALTH_PATH_RE.fullmatch(doc["path"]):
        check.fail(_join(at, "path"), "must start with '/' (no spaces, at most 1024 characters)")
    interval = check.duration(doc["interval"], _join(at, "interval"), 1, 3600)
    timeout = check.duration(doc["timeout"], _join(at, "timeout"), 0.001, 60)
    if _seconds(timeout) >= _seconds(interval) > 0:
        check.fail(_join(at, "timeout"), "must be shorter than the interval")
    return {
        "enabled": doc["enabled"],
        "path": doc["path"],
        "interval": interval,
        "timeout": timeout,
        "healthy_threshold": check.integer(
            doc["healthy_threshold"], _join(at, "healthy_threshold"), 1, 10
        ),
        "unhealthy_threshold": check.integer(
            doc["unhealthy_threshold"], _join(at, "unhealthy_threshold"), 1, 10
        ),
    }


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        return 0.0


def _check_servers(check: _Checker, servers: Any, at: str) -> list[Doc]:
    if not isinstance(servers, list) or not 1 <= len(servers) <= MAX_SERVERS:
        check.fail(at, f"must be a list of 1 to {MAX_SERVERS} servers")
        return []
    checked, seen = [], set()
    for i, server in enumerate(servers):
        item = _check_server(check, server, f"{at}[{i}]")
        if item["address"] is not None and item["address"] in seen:
            check.fail(f"{at}[{i}].address", f"{item['address']} is listed twice")
        seen.add(item["address"])
        checked.append(item)
    return checked


def _check_server(check: _Checker, doc: Any, at: str) -> Doc:
    doc = {**SERVER_DEFAULTS, **check.fields(doc, at, ("address", *SERVER_DEFAULTS))}
    try:
        address = normal_address(doc.get("address"), resolve=check.resolve)
    except ValueError as exc:
        check.fail(_join(at, "address"), str(exc))
        given = doc.get("address")
        address = given if isinstance(given, str) else None
    return {
        "address": address,
        "weight": check.integer(doc["weight"], _join(at, "weight"), 1, 1000),
        "max_fails": check.integer(doc["max_fails"], _join(at, "max_fails"), 0, 100),
        "fail_timeout": check.duration(
            doc["fail_timeout"], _join(at, "fail_timeout"), 1, 3600, whole_seconds=True
        ),
    }


# --- routes -----------------------------------------------------------------------------------


def new_route_id() -> str:
    return f"route_{secrets.token_hex(6)}"


def _check_route(check: _Checker, doc: Any, at: str) -> tuple[Doc, Conflict | None]:
    """The normalised route, and the Conflict its path makes with a reserved path."""
    doc = {**ROUTE_DEFAULTS, **check.fields(doc, at, ("id", "path", "upstream", *ROUTE_DEFAULTS))}
    route_id = doc.get("id")
    if route_id is None:
        route_id = new_route_id()
    elif not isinstance(route_id, str) or not ROUTE_ID_RE.fullmatch(route_id):
        check.fail(_join(at, "id"), "must match ^[A-Za-z0-9_-]{1,64}$")
    path = doc.get("path")
    conflict = None
    if _check_path(check, path, _join(at, "path")):
        reserved = reserved_conflict(path)
        if reserved is not None:
            conflict = Conflict(
                f"Path {path} collides with {reserved}, which Jobgate serves itself",
                details={"path": path, "reserved": reserved, "field": _join(at, "path")},
            )
    method = doc["method"].upper() if isinstance(doc["method"], str) else doc["method"]
    upstream = doc.get("upstream")
    if not isinstance(upstream, str) or not NAME_RE.fullmatch(upstream):
        check.fail(_join(at, "upstream"), "must name an upstream")
    route = {
        "id": route_id,
        "path": path,
        "method": check.choice(method, _join(at, "method"), METHODS),
        "upstream": upstream,
        "middleware": _check_middleware(check, doc["middleware"], _join(at, "middleware")),
        "headers": _check_headers(check, doc["headers"], _join(at, "headers")),
        "timeout": check.duration(doc["timeout"], _join(at, "timeout"), 1, 3600),
        "retries": check.integer(doc["retries"], _join(at, "retries"), 0, 10),
    }
    return route, conflict


def _check_path(check: _Checker, path: Any, at: str) -> bool:
    if not isinstance(path, str) or not PATH_RE.fullmatch(path):
        check.fail(
            at,
            "must start with '/', use only A-Z a-z 0-9 _ . ~ / @ : + , = ! - and may end with '*'",
        )
        return False
    segments = path.rstrip("*").split("/")[1:]
    if "//" in path or any(s in (".", "..") for s in segments):
        check.fail(at, "must be normalised: no '//', '/./' or '/../'")
        return False
    return True


def _check_middleware(check: _Checker, value: Any, at: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        check.fail(at, f"must be a list of: {', '.join(MIDDLEWARE)}")
        return []
    for i, name in enumerate(value):
        if name not in MIDDLEWARE:
            check.fail(f"{at}[{i}]", f"unknown middleware (known: {', '.join(MIDDLEWARE)})")
        elif name in value[:i]:
            check.fail(f"{at}[{i}]", "is listed twice")
    return list(value)


def _check_headers(check: _Checker, value: Any, at: str) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        check.fail(at, f"must be an object of at most {MAX_HEADERS} headers")
        return {}
    seen: set[str] = set()
    for name, text in value.items():
        where = _join(at, str(name))
        lower = str(name).lower()
        if not HEADER_NAME_RE.fullmatch(str(name)):
            check.fail(where, "header names use A-Z a-z 0-9 and '-' (at most 64)")
        elif lower in FORBIDDEN_HEADERS or lower.startswith("x-jobgate-"):
            check.fail(where, "this header is managed by the edge")
        elif lower in seen:
            check.fail(where, "is set twice (header names are case-insensitive)")
        elif lower == "host" and text == "":
            check.fail(where, "cannot be removed (HTTP/1.1 requires it)")
        seen.add(lower)
        _check_header_value(check, text, where)
    return dict(value)


def _check_header_value(check: _Checker, text: Any, at: str) -> None:
    if not isinstance(text, str) or len(text) > MAX_HEADER_VALUE:
        check.fail(at, f"must be a string of at most {MAX_HEADER_VALUE} characters")
    elif not re.fullmatch(r"[\x20-\x7e]*", text) or '"' in text or "\\" in text:
        check.fail(at, "printable ASCII only, without '\"' or '\\'")
    else:
        for match in VARIABLE_RE.finditer(text):
            if not _allowed_variable(match.group(1)):
                known = " ".join(f"${v}" for v in sorted(HEADER_VARIABLES))
                check.fail(
                    at,
                    f"'${match.group(1)}' is not allowed: '$' must start one of "
                    f"{known} $http_<name>",
                )
                break


def _allowed_variable(name: str) -> bool:
    if name in FORBIDDEN_VARIABLES:
        return False
    return name in HEADER_VARIABLES or bool(HTTP_VARIABLE_RE.fullmatch(name))


# --- public -----------------------------------------------------------------------------------


def invalid_request(errors: Errors) -> InvalidRequest:
    """The 400 for `errors`: the first one in the message, all of them in the details."""
    first = errors[0]
    message = f"{first['path']}: {first['message']}" if first["path"] else first["message"]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return InvalidRequest(message, details={"errors": errors})


def _raise_errors(check: _Checker) -> None:
    if check.errors:
        raise invalid_request(check.errors)


def validate_upstream(doc: dict) -> dict:
    """One upstream, normalised; InvalidRequest listing every problem."""
    check = _Checker()
    upstream = _check_upstream(check, doc, "")
    _raise_errors(check)
    return upstream


def validate_route(doc: dict) -> dict:
    """One route, normalised, with a fresh `route_<12 hex>` id when it has none.
    InvalidRequest for its own problems; Conflict when its path is reserved. Whether its
    upstream exists is a question for the whole set (validate_set)."""
    check = _Checker()
    route, conflict = _check_route(check, doc, "")
    _raise_errors(check)
    if conflict is not None:
        raise conflict
    return route


def validate_set(doc: dict, *, resolve_names: bool = True) -> dict:
    """The whole set `{"upstreams": [...], "routes": [...]}`, normalised: upstreams sorted by
    name, routes by id. Paths in errors index the lists as given. `resolve_names=False`: host
    names are not looked up (a stored set with one new item the caller checked already)."""
    check = _Checker(resolve_names=resolve_names)
    doc = check.fields(doc, "", ("upstreams", "routes", *sorted(READ_ONLY_SET_KEYS)))
    upstreams = [
        _check_upstream(check, item, f"upstreams[{i}]")
        for i, item in enumerate(_items(check, doc, "upstreams", MAX_UPSTREAMS))
    ]
    checked = [
        _check_route(check, item, f"routes[{i}]")
        for i, item in enumerate(_items(check, doc, "routes", MAX_ROUTES))
    ]
    routes = [route for route, _ in checked]
    _check_references(check, upstreams, routes)
    _raise_errors(check)
    for _, conflict in checked:
        if conflict is not None:
            raise conflict
    _check_duplicates(upstreams, routes)
    return {
        "upstreams": sorted(upstreams, key=lambda u: u["name"]),
        "routes": sorted(routes, key=lambda r: r["id"]),
    }


def _items(check: _Checker, doc: Doc, key: str, most: int) -> list[Any]:
    items = doc.get(key)
    if not isinstance(items, list) or len(items) > most:
        check.fail(key, f"must be a list of at most {most} items")
        return []
    return items


def _check_references(check: _Checker, upstreams: list[Doc], routes: list[Doc]) -> None:
    names = {u["name"] for u in upstreams if isinstance(u["name"], str)}
    by_lower = {name.lower(): name for name in names}
    for i, route in enumerate(routes):
        target = route["upstream"]
        if isinstance(target, str) and NAME_RE.fullmatch(target) and target not in names:
            hint = by_lower.get(target.lower())
            extra = f" (names are case-sensitive: did you mean {hint!r}?)" if hint else ""
            check.fail(f"routes[{i}].upstream", f"unknown upstream {target!r}{extra}")


def _check_duplicates(upstreams: list[Doc], routes: list[Doc]) -> None:
    """Conflict for two upstreams whose names differ only in case (nginx: "duplicate
    upstream"), two routes with one id, or two routes on one (path, method)."""
    names: dict[str, str] = {}
    for upstream in upstreams:
        lower = upstream["name"].lower()
        if lower in names:
            raise Conflict(
                f"Upstream {upstream['name']!r} is defined twice (names are case-insensitive)",
                details={"upstream": upstream["name"], "existing": names[lower]},
            )
        names[lower] = upstream["name"]
    ids: set[str] = set()
    places: dict[tuple[str, str], str] = {}
    for route in routes:
        if route["id"] in ids:
            raise Conflict(f"Route id {route['id']!r} is used twice", details={"id": route["id"]})
        ids.add(route["id"])
        key = (route["path"], route["method"])
        if key in places:
            raise Conflict(
                f"Two routes serve {route['method']} {route['path']}",
                details={
                    "path": route["path"],
                    "method": route["method"],
                    "routes": [places[key], route["id"]],
                },
            )
        places[key] = route["id"]
