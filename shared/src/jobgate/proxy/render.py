"""The proxy set as nginx configuration: pure text, no I/O.

The edge agent renders the static edge once (`scripts/edge.sh render`), then for every set
and health state fills the two marker lines of deploy/nginx/jobgate.conf.template with
`render()`'s two parts (`compose()`), checks the result with `nginx -t` and reloads.

nginx 1.22 behaviours this text is shaped by (verified on Debian's 1.22.1, see
/tmp/issue14-design.md section 4):
- `proxy_set_header` and `error_page` are all-or-nothing per level: a route location that
  sets one loses the server's whole set, so each route repeats the template's base set.
- A server-level `set` reruns on every internal redirect: route variables are only `set`
  in route locations, and `uninitialized_variable_warn off` keeps other requests quiet.
- The proxy access log is a server-level `access_log ... if=$jobgate_routed`, not one in
  each route location: nginx logs with the final location's configuration, so a route's
  request answered by an error page (502, 429, 401) would otherwise escape the stats. The
  condition is a flag of its own: `if=` skips "0", which is a valid route id.
- `limit_req_zone` cannot change its key on reload (the HUP is refused while `nginx -t`
  passes), so the zone name carries a hash of key, size and rate.
- An auth subrequest may only answer 2xx/401/403: the gateway signals "auth-service down"
  with 403 + `X-Jobgate-Auth-Error`, and a gateway that is down becomes 403 through
  `@jobgate_auth_down`; the route's 403 page turns both into a 503 JSON error.
- `proxy_next_upstream_tries 0` means unlimited: `retries: 0` renders `proxy_next_upstream off`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable

from jobgate.proxy.model import parse_duration

HTTP_MARKER = "# @jobgate:proxy-http"
SERVER_MARKER = "# @jobgate:proxy-server"
ACCESS_LOG = "proxy-access.log"  # under state_dir: JSON lines, one per routed request
STATUS_SOCKET = "edge-status.sock"  # under state_dir: GET /version answers the generation
LOG_FORMAT = "jobgate_proxy"
UPSTREAM_PREFIX = "jobgate_u_"
UPSTREAM_ZONE = "jobgate_upstreams"
AUTH_LOCATION = "/_jobgate/auth"
ROUTE_LOCATION = "/_jobgate/route/"  # + route id: where a path shared by methods dispatches
ERROR_LOCATION = "/_jobgate/error/"  # + status: the proxy's own JSON errors
RATE_KEY = "$binary_remote_addr$jobgate_route"  # per client per route
RATE_ZONE_SIZE = "10m"
INDENT = "    "

# The template's server-level `proxy_set_header` set, repeated in every route location
# (tests/unit/test_proxy_render.py checks it against deploy/nginx/jobgate.conf.template).
BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Host", "$jobgate_host"),
    ("X-Forwarded-For", "$remote_addr"),
    ("X-Forwarded-Proto", "$scheme"),
    ("X-Forwarded-Host", "$jobgate_host"),
    ("X-Real-IP", "$remote_addr"),
    ("Forwarded", '""'),
    ("X-Request-ID", "$jobgate_request_id"),
    ("Upgrade", "$http_upgrade"),
    ("Connection", "$jobgate_connection"),
)
# The template's server-level `error_page` set, likewise repeated.
BASE_ERROR_PAGES: tuple[str, ...] = (
    "400 /_edge/error/400",
    "404 /_edge/error/404",
    "411 /_edge/error/411",
    "413 /_edge/error/413",
    "414 /_edge/error/414",
    "494 =431 /_edge/error/431",
    "500 /_edge/error/500",
    "501 /_edge/error/501",
    "502 /_edge/error/502",
    "503 /_edge/error/503",
    "504 /_edge/error/504",
    "505 /_edge/error/505",
)
# Gateway answers to the auth subrequest that mean "cannot tell": 503 JSON at the edge.
AUTH_DOWN_STATUSES = "400 404 429 500 502 503 504"

LOG_FIELDS = (
    '{"ts":$msec,"route":"$jobgate_route","upstream":"$jobgate_upstream","status":$status,'
    '"request_time":$request_time,"upstream_addr":"$upstream_addr",'
    '"upstream_status":"$upstream_status","upstream_response_time":"$upstream_response_time",'
    '"request_id":"$jobgate_request_id"}'
)

GENERATION_RE = re.compile(r"^[A-Za-z0-9._-]+$")
STATE_DIR_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")
RATE_RE = re.compile(r"^[1-9][0-9]{0,5}r/[sm]$")
URI_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    state_dir: str  # absolute: where the access log and status socket live
    rate_limit: str = "10r/s"  # nginx rate for the rate_limit middleware (per client per route)
    rate_burst: int = 20
    auth_check_uri: str = "/api/proxy/auth-check"  # on upstream jobgate_gateway (the template's)


@dataclasses.dataclass(frozen=True)
class Rendered:
    http: str  # replaces the line HTTP_MARKER (http context)
    server: str  # replaces the line SERVER_MARKER (inside the public server)


def render(
    proxy_set: dict, *, down: frozenset[tuple[str, str]], generation: str, settings: RenderSettings
) -> Rendered:
    """`proxy_set` (validate_set's output) as the two parts of the edge's configuration;
    `down` holds the (upstream, address) pairs failing their health check."""
    _check_settings(generation, settings)
    routes, upstreams = proxy_set["routes"], proxy_set["upstreams"]
    http = [f"# Jobgate proxy set: generation {generation} (jobgate.proxy.render)"]
    http += _status_server(generation, settings)
    if routes:
        http.append(f"log_format {LOG_FORMAT} escape=json '{LOG_FIELDS}';")
    if any("rate_limit" in r["middleware"] for r in routes):
        http.append(
            f"limit_req_zone {RATE_KEY} zone={rate_zone(settings)}:{RATE_ZONE_SIZE} "
            f"rate={settings.rate_limit};"
        )
    http += _upstreams(upstreams, down)
    return Rendered(http="\n".join(http), server="\n".join(_server_part(routes, settings)))


def compose(base_conf: str, rendered: Rendered) -> str:
    """The edge's whole configuration: `base_conf` (scripts/edge.sh's output) with its two
    marker lines replaced, indented like them; ValueError unless each appears once."""
    lines = base_conf.split("\n")
    for marker, text in ((HTTP_MARKER, rendered.http), (SERVER_MARKER, rendered.server)):
        found = [i for i, line in enumerate(lines) if line.strip() == marker]
        if len(found) != 1:
            raise ValueError(
                f"{marker!r} must appear once in the base configuration, not {len(found)} times"
            )
        line = lines[found[0]]
        indent = line[: len(line) - len(line.lstrip())]
        lines[found[0]] = "\n".join(indent + t if t else t for t in text.split("\n"))
    return "\n".join(lines)


def rate_zone(settings: RenderSettings) -> str:
    """The limit_req zone's name: a new key, size or rate makes a new zone, because nginx
    refuses a reload that changes an existing zone's key (and keeps the old config)."""
    digest = hashlib.sha256(f"{RATE_KEY}|{RATE_ZONE_SIZE}|{settings.rate_limit}".encode())
    return f"jobgate_rl_{digest.hexdigest()[:8]}"


def _check_settings(generation: str, settings: RenderSettings) -> None:
    """Refuse values that would change the file's syntax (they are written unquoted)."""
    if not GENERATION_RE.match(generation):
        raise ValueError(f"generation {generation!r} must match {GENERATION_RE.pattern}")
    state_dir = settings.state_dir.rstrip("/")
    if not STATE_DIR_RE.match(settings.state_dir) or "//" in settings.state_dir:
        raise ValueError(f"state_dir {settings.state_dir!r} must be an absolute plain path")
    if len(f"{state_dir}/{STATUS_SOCKET}") > MAX_SOCKET_PATH:
        raise ValueError(f"state_dir {settings.state_dir!r} is too long for a unix socket path")
    if not RATE_RE.match(settings.rate_limit):
        raise ValueError(f"rate_limit {settings.rate_limit!r} must look like 10r/s or 600r/m")
    if isinstance(settings.rate_burst, bool) or not 0 <= settings.rate_burst <= 100000:
        raise ValueError("rate_burst must be an integer from 0 to 100000")
    if not URI_RE.match(settings.auth_check_uri):
        raise ValueError(f"auth_check_uri {settings.auth_check_uri!r} must be a plain path")


def _state_path(settings: RenderSettings, name: str) -> str:
    return f"{settings.state_dir.rstrip('/')}/{name}"


def _block(header: str, body: Iterable[str]) -> list[str]:
    return [f"{header} {{", *(INDENT + line if line else line for line in body), "}"]


def _json_error(status: int, code: str, message: str, details: str = "{}") -> str:
    """`return` of the canonical error body, as the template's /_edge/error/ pages write it."""
    body = (
        f'{{"error": {{"code": "{code}", "message": "{message}", "details": {details}, '
        f'"request_id": "$jobgate_request_id"}}}}\\n'
    )
    return f"return {status} '{body}';"


# --- http context ---------------------------------------------------------------------------


def _status_server(generation: str, settings: RenderSettings) -> list[str]:
    """A server on a unix socket only the agent talks to: GET /version proves which
    generation the workers run (a passing `nginx -t` does not prove a reload happened)."""
    return _block(
        "server",
        [
            f"listen unix:{_state_path(settings, STATUS_SOCKET)};",
            "access_log off;",
            *_block(
                "location = /version", ["default_type text/plain;", f'return 200 "{generation}";']
            ),
            *_block("location = /stub", ["stub_status;"]),
            *_block("location /", ["return 404;"]),
        ],
    )


def zone_megabytes(servers: int) -> int:
    """The shared upstream zone's size: about 500 bytes a server, 1 MB at least (a size
    change reloads fine)."""
    return 1 + math.floor(servers / 1000)


def _upstreams(upstreams: list[dict], down: frozenset[tuple[str, str]]) -> list[str]:
    """One group per upstream, all in one shared zone (weights and passive failure counts
    shared by the workers: a 1:2 weight is an exact 1:2 split)."""
    servers = sum(len(u["servers"]) for u in upstreams)
    zone = f"zone {UPSTREAM_ZONE} {zone_megabytes(servers)}m;"
    lines: list[str] = []
    for upstream in upstreams:
        body = [zone]
        zone = f"zone {UPSTREAM_ZONE};"  # the size is given once
        if upstream["strategy"] != "round_robin":
            body.append(f"{upstream['strategy']};")
        body += [_server_line(upstream["name"], s, down) for s in upstream["servers"]]
        lines += _block(f"upstream {UPSTREAM_PREFIX}{upstream['name']}", body)
    return lines


def _server_line(name: str, server: dict, down: frozenset[tuple[str, str]]) -> str:
    fail_timeout = int(parse_duration(server["fail_timeout"]))
    flag = " down" if (name, server["address"]) in down else ""
    return (
        f"server {server['address']} weight={server['weight']} "
        f"max_fails={server['max_fails']} fail_timeout={fail_timeout}s{flag};"
    )


# --- the public server ------------------------------------------------------------------------


def _server_part(routes: list[dict], settings: RenderSettings) -> list[str]:
    if not routes:
        return ["# Jobgate proxy: no routes"]
    lines = [
        "uninitialized_variable_warn off;",
        f"access_log {_state_path(settings, ACCESS_LOG)} {LOG_FORMAT} if=$jobgate_routed;",
    ]
    for path in sorted({r["path"] for r in routes}):
        lines += _path_locations(path, [r for r in routes if r["path"] == path], settings)
    if any("auth" in r["middleware"] for r in routes):
        lines += _auth_locations(settings)
    if any("rate_limit" in r["middleware"] for r in routes):
        lines += _rate_limited_page()
    return lines


def _location(path: str) -> str:
    """`/x/*` is a prefix no regex location can take over; `/x` an exact match."""
    if path.endswith("*"):
        return f'location ^~ "{path[:-1]}"'
    return f'location = "{path}"'


def _path_locations(path: str, routes: list[dict], settings: RenderSettings) -> list[str]:
    """A lone ANY route is served in the path's location itself; otherwise that location
    dispatches on the method (`if` + `rewrite ... last`, the safe uses of `if`) to one
    internal location per route, and answers 405 when no route takes the method."""
    if len(routes) == 1 and routes[0]["method"] == "ANY":
        return _block(_location(path), _route_body(routes[0], settings, dispatched=False))
    by_method = {r["method"]: r for r in routes}
    dispatch: list[str] = []
    for method, route in sorted(by_method.items()):
        if method == "ANY":
            continue
        # A GET route answers HEAD too, unless a route of its own takes HEAD.
        test = '~ "^(GET|HEAD)$"' if method == "GET" and "HEAD" not in by_method else f"= {method}"
        target = f"rewrite ^ {ROUTE_LOCATION}{route['id']} last;"
        dispatch += _block(f"if ($request_method {test})", [target])
    if "ANY" in by_method:
        dispatch.append(f"rewrite ^ {ROUTE_LOCATION}{by_method['ANY']['id']} last;")
    else:
        dispatch += _method_not_allowed(by_method)
    lines = _block(_location(path), dispatch)
    for route in routes:
        body = ["internal;", *_route_body(route, settings, dispatched=True)]
        lines += _block(f"location = {ROUTE_LOCATION}{route['id']}", body)
    return lines


def _method_not_allowed(by_method: dict[str, dict]) -> list[str]:
    allowed = sorted(set(by_method) | ({"HEAD"} if "GET" in by_method else set()))
    listed = ", ".join(f'"{m}"' for m in allowed)
    return [
        "default_type application/json;",
        f'add_header Allow "{", ".join(allowed)}" always;',
        "add_header X-Request-ID $jobgate_request_id always;",
        _json_error(405, "INVALID_REQUEST", "Method not allowed", f'{{"allowed": [{listed}]}}'),
    ]


def _route_body(route: dict, settings: RenderSettings, *, dispatched: bool) -> list[str]:
    upstream = f"http://{UPSTREAM_PREFIX}{route['upstream']}"
    # After a dispatch rewrite $uri is ours: send the client's own URI (query included).
    target = f"{upstream}$request_uri" if dispatched else upstream
    lines = [
        "set $jobgate_routed 1;",
        f'set $jobgate_route "{route["id"]}";',
        f'set $jobgate_upstream "{route["upstream"]}";',
    ]
    lines += _middleware(route, settings)
    lines += [f"error_page {page};" for page in BASE_ERROR_PAGES]
    lines += [
        f"proxy_pass {target};",
        f"proxy_read_timeout {route['timeout']};",
        f"proxy_send_timeout {route['timeout']};",
        *_retries(route["retries"]),
    ]
    lines += [f"proxy_set_header {name} {value};" for name, value in _headers(route)]
    return lines


def _middleware(route: dict, settings: RenderSettings) -> list[str]:
    """rate_limit before auth whatever the order given: nginx runs limit_req (preaccess)
    before auth_request (access), so anonymous floods are limited too."""
    lines: list[str] = []
    if "rate_limit" in route["middleware"]:
        # nginx refuses `burst=0`: no burst is written as no burst parameter.
        burst = f" burst={settings.rate_burst} nodelay" if settings.rate_burst else ""
        lines += [
            f"limit_req zone={rate_zone(settings)}{burst};",
            "limit_req_status 429;",
            f"error_page 429 {ERROR_LOCATION}429;",
        ]
    if "auth" in route["middleware"]:
        lines += [
            f"auth_request {AUTH_LOCATION};",
            "auth_request_set $jobgate_user_id $upstream_http_x_jobgate_user_id;",
            "auth_request_set $jobgate_auth_error $upstream_http_x_jobgate_auth_error;",
            "auth_request_set $jobgate_auth_down $jobgate_auth_sub_down;",
            f"error_page 401 {ERROR_LOCATION}401;",
            f"error_page 403 = {ERROR_LOCATION}403;",
        ]
    return lines


def _retries(retries: int) -> list[str]:
    if retries == 0:
        return ["proxy_next_upstream off;"]
    return [
        "proxy_next_upstream error timeout http_502 http_503 http_504;",
        f"proxy_next_upstream_tries {retries + 1};",
    ]


def _headers(route: dict) -> list[tuple[str, str]]:
    """The base set, then the route's own headers, which replace base ones of the same
    name. An upstream never sees Jobgate credentials on an auth route, and never a user id
    a client made up (empty = the header is removed)."""
    auth = "auth" in route["middleware"]
    own = {name.lower(): (name, f'"{value}"') for name, value in route["headers"].items()}
    fixed = [*BASE_HEADERS, ("X-Jobgate-User-Id", "$jobgate_user_id" if auth else '""')]
    if auth:
        fixed += [("X-API-Key", '""'), ("Authorization", '""')]
    merged = [(name, value) for name, value in fixed if name.lower() not in own]
    return merged + sorted(own.values(), key=lambda item: item[0].lower())


def _auth_locations(settings: RenderSettings) -> list[str]:
    """The subrequest to the gateway's auth check, and the route's 401/403 JSON pages."""
    headers = [(n, v) for n, v in BASE_HEADERS if n not in ("Upgrade", "Connection")]
    check = [
        "internal;",
        f"proxy_pass http://jobgate_gateway{settings.auth_check_uri};",
        "proxy_pass_request_body off;",
        'proxy_set_header Content-Length "";',
        "proxy_set_header X-Original-URI $request_uri;",
        "proxy_set_header X-Original-Method $request_method;",
        *(f"proxy_set_header {name} {value};" for name, value in headers),
        'proxy_set_header Upgrade "";',
        'proxy_set_header Connection "";',
        "proxy_connect_timeout 2s;",
        "proxy_read_timeout 5s;",
        "proxy_send_timeout 5s;",
        "proxy_intercept_errors on;",
        f"error_page {AUTH_DOWN_STATUSES} = @jobgate_auth_down;",
    ]
    unavailable = [
        "add_header X-Request-ID $jobgate_request_id always;",
        "add_header Retry-After 5 always;",
        _json_error(503, "SERVICE_UNAVAILABLE", "Authentication is unavailable"),
    ]
    request_id = "add_header X-Request-ID $jobgate_request_id always;"
    return [
        *_block(f"location = {AUTH_LOCATION}", check),
        *_block("location @jobgate_auth_down", ["set $jobgate_auth_sub_down 1;", "return 403;"]),
        *_block(
            f"location = {ERROR_LOCATION}401",
            [
                "internal;",
                "default_type application/json;",
                request_id,
                _json_error(401, "UNAUTHORIZED", "Authentication required"),
            ],
        ),
        *_block(
            f"location = {ERROR_LOCATION}403",
            [
                "internal;",
                "default_type application/json;",
                *_block("if ($jobgate_auth_down)", unavailable),
                *_block("if ($jobgate_auth_error = SERVICE_UNAVAILABLE)", unavailable),
                request_id,
                _json_error(403, "FORBIDDEN", "Not allowed"),
            ],
        ),
    ]


def _rate_limited_page() -> list[str]:
    return _block(
        f"location = {ERROR_LOCATION}429",
        [
            "internal;",
            "default_type application/json;",
            "add_header X-Request-ID $jobgate_request_id always;",
            "add_header Retry-After 1 always;",
            _json_error(429, "RATE_LIMITED", "Too many requests, please try again later"),
        ],
    )
