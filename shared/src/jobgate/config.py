"""Settings read from the environment, one frozen object handed to every factory.

Every variable has a documented default (README "Configuration") that works for
`make run` on one host; production overrides them through the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from jobgate import kinds

CONFIG_FILE_VAR = "JOBGATE_CONFIG_FILE"  # optional JSON (or .toml) file of settings


def _split(value: str, sep: str = ",") -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(sep) if part.strip())


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses or CIDR networks (a bare address is a one-address network); ValueError
    names the first entry that is neither."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is no address or network (like 10.0.0.0/8)") from None
    return tuple(networks)


# Settings holding addresses or networks: a process does not start with one that is neither
# (every use would fail), and a reload or validation refuses it (jobgate.runtime_config).
NETWORK_FIELDS = ("trusted_proxies", "proxy_allowed_upstreams")


@dataclasses.dataclass(frozen=True)
class CoreSettings:
    """Configuration every service shares; each kind adds its own block (`jobgate.kinds`)."""

    env: str = "development"
    database_url: str = "postgresql://jobgate:jobgate@127.0.0.1:5432/jobgate"
    db_pool_min: int = 1
    db_pool_max: int = 10
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    job_queue_type: str = "classic"  # classic (with x-max-priority) or quorum
    log_level: str = "INFO"
    log_format: str = "json"  # json or text

    # auth-service
    auth_service_url: str = "http://127.0.0.1:8081"
    jwt_issuer: str = "jobgate"
    jwt_audience: str = "jobgate-api"
    jwt_private_key_file: str = "var/keys/jwt-private.pem"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    bootstrap_admin_username: str = "admin"
    bootstrap_admin_password: str = ""
    bootstrap_api_key: str = ""

    # gateway
    api_key_cache_ttl: float = 30.0
    jwks_cache_ttl: float = 300.0
    rate_limit_storage_uri: str = "memory://"
    rate_limit_job_create: str = "10/minute"
    rate_limit_status: str = "600/minute"
    rate_limit_default: str = "1200/minute"
    rate_limit_login: str = "30/minute"  # login and refresh attempts per client address
    rate_limit_tasks: str = "1000/hour;100/minute"  # seed 004: every /api/v1/tasks route
    rate_limit_enabled: bool = True
    request_timeout: float = 5.0

    # jobs and workers
    job_max_attempts: int = 3
    job_backoff: str = "exponential"  # fixed or exponential
    job_backoff_seconds: float = 2.0
    job_backoff_max_seconds: float = 600.0
    job_lease_seconds: float = 15.0
    worker_heartbeat_seconds: float = 5.0
    worker_concurrency: int = 1
    worker_grace_seconds: float = 30.0
    worker_metrics_port: int = 0  # 0 = no metrics endpoint
    # Its address: loopback keeps it private; a cluster sets 0.0.0.0 (probes, scraping).
    worker_metrics_host: str = "127.0.0.1"
    outbox_relay_seconds: float = 2.0
    stale_requeue_seconds: float = 3600.0
    job_events_retention_days: int = 30  # job_events older than this are swept (not queued ones)

    # scheduler
    scheduler_interval_seconds: float = 5.0  # how often due schedules are looked for

    # Where the edge (its public address) and the gateway listen: EDGE_BIND and GATEWAY_BIND
    # as scripts/edge.sh and the Procfile read them. An upstream of the edge's proxy may
    # never point at either: a request would loop through the edge (jobgate.proxy.policy).
    edge_bind: str = "127.0.0.1:8080"
    gateway_bind: str = "127.0.0.1:8083"

    # stats-service (live streams, analytics) and the edge in front of it and the gateway
    stats_bind: str = "127.0.0.1:8082"
    stats_client_queue: int = 256  # messages waiting per stream client; old ticks drop first
    stats_send_timeout_seconds: float = 10.0  # a client that takes longer for one send is closed
    stats_ping_seconds: float = 20.0  # WebSocket pings and SSE comments keep idle streams open
    stats_max_streams_per_principal: int = 50  # open streams per user or API key
    stats_poll_seconds: float = 0.25  # how often new job events are read from PostgreSQL
    stats_metrics_seconds: float = 5.0  # metrics snapshots on /ws/metrics and /api/ws/updates
    job_events_progress_keep: int = 1000  # progress events kept per job (state changes: all)
    # Addresses (or CIDR networks) of proxies whose X-Forwarded-For is believed: the edge.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")

    # RabbitMQ's management HTTP API, read for the admins' queue depths (GET
    # /api/v1/admin/queues). Empty: AMQP_URL's host and credentials on port 15672 (15671 and
    # https for amqps). The vhost is always AMQP_URL's: the one the services use.
    rabbitmq_management_url: str = ""

    # The edge's reverse proxy (seed 003's /api/proxy): networks an upstream's servers may be
    # in (CIDR). Loopback by default: a container published on 127.0.0.1. Ports of the
    # services Jobgate itself uses are refused whatever the network (jobgate.proxy.policy).
    proxy_allowed_upstreams: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    # analytics: housekeeping folds the job-change deltas into the rollups (jobgate.analytics)
    analytics_compact_batch: int = 10000  # deltas folded per transaction
    analytics_compact_max_batches: int = 100  # transactions per round at most (0 = no folding)

    # files: uploads (inputs of jobs) and outputs
    storage_dir: str = "var/storage"
    max_file_size: int = 100  # MB per upload (seed 001)
    allowed_extensions: tuple[str, ...] = ("mp4", "avi", "mov")
    storage_tmp_max_age_s: float = 86400.0  # leftovers of killed processes are swept after this

    def __post_init__(self) -> None:
        for name in NETWORK_FIELDS:
            try:
                parse_networks(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name.upper()}: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from environment variables named like the fields, upper-cased,
        over JOBGATE_CONFIG_FILE's values when that names a file (environment > file >
        default); a bad file is a ConfigFileError (the process does not start)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = env.get(CONFIG_FILE_VAR, "")
        if path:
            values.update(load_config_file(path, cls))
        values.update(env_values(env, cls))
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def rabbitmq_management(self) -> ManagementApi:
        """Where RABBITMQ_MANAGEMENT_URL (or AMQP_URL's host) says the management API is,
        with the credentials to use and the services' vhost."""
        return management_api(self.amqp_url, self.rabbitmq_management_url)


@dataclasses.dataclass(frozen=True)
class ManagementApi:
    """RabbitMQ's management HTTP API: its base URL (no credentials in it), the user and
    password for HTTP Basic, and the vhost whose queues matter (AMQP_URL's)."""

    base_url: str
    username: str
    password: str
    vhost: str


def management_api(amqp_url: str, management_url: str = "") -> ManagementApi:
    """The management API for `amqp_url`: `management_url` when given (its own credentials,
    else AMQP's), else the broker's host on 15672 (15671 over TLS) with AMQP's credentials.
    The vhost is AMQP_URL's path (`/` when there is none, RabbitMQ's default)."""
    amqp = urlsplit(amqp_url)
    path = amqp.path[1:] if amqp.path.startswith("/") else amqp.path
    vhost = unquote(path) if path else "/"
    username, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
    if management_url:
        given = urlsplit(management_url)
        if given.username is not None:
            username, password = unquote(given.username), unquote(given.password or "")
        host = given.hostname or "127.0.0.1"
        netloc = f"[{host}]" if ":" in host else host
        if given.port is not None:
            netloc += f":{given.port}"
        base = urlunsplit((given.scheme or "http", netloc, given.path.rstrip("/"), "", ""))
    else:
        tls = amqp.scheme == "amqps"
        host = amqp.hostname or "127.0.0.1"
        netloc = f"[{host}]" if ":" in host else host
        base = f"{'https' if tls else 'http'}://{netloc}:{15671 if tls else 15672}"
    return ManagementApi(base_url=base, username=username, password=password, vhost=vhost)


@dataclasses.dataclass(frozen=True)
class Settings(CoreSettings, *kinds.settings_classes()):
    """All configuration of all services and kinds; each service reads the fields it needs."""


# Fields whose variable is not simply the upper-cased field name.
ENV_NAMES: dict[str, tuple[str, ...]] = {"env": ("JOBGATE_ENV",)}

# Names users of the seeds already know, accepted next to ours.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "cache_progress_time_threshold_ms": ("CACHE_PROGRESS_TIME_THRESHOLD",),
    "bootstrap_api_key": ("API_GATEWAY_KEY",),
    "rate_limit_storage_uri": ("REDIS_URL",),
    "rate_limit_job_create": ("RATE_LIMIT_REQUESTS_PER_MINUTE",),  # seed 002
}

# Seed variables whose value is written differently from ours.
ENV_ALIAS_FORMATS: dict[str, str] = {"RATE_LIMIT_REQUESTS_PER_MINUTE": "{}/minute"}


# --- the optional settings file (JOBGATE_CONFIG_FILE) -------------------------------------------


class ConfigFileError(ValueError):
    """A settings file that cannot be used: every problem, as {"path", "message"} items."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        first = errors[0]
        message = f"{first['path']}: {first['message']}" if first["path"] else first["message"]
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        super().__init__(message)
        self.errors = errors


def _env_names(field_name: str) -> tuple[str, ...]:
    return (
        *ENV_NAMES.get(field_name, (field_name.upper(),)),
        *ENV_ALIASES.get(field_name, ()),
    )


def _coerce(field: dataclasses.Field, raw: str) -> Any:
    """An environment string as the field's type (ValueError when it is not one)."""
    default = field.default
    if isinstance(default, bool):
        return _bool(raw)
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        return _split(raw, ";" if ";" in raw else ",")
    return raw


def env_values(environ: Mapping[str, str], cls: type | None = None) -> dict[str, Any]:
    """The settings the environment sets (non-empty variables only), typed."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls or Settings):
        name = next((n for n in _env_names(field.name) if environ.get(n, "") != ""), None)
        if name is not None:
            raw = ENV_ALIAS_FORMATS.get(name, "{}").format(environ[name])
            values[field.name] = _coerce(field, raw)
    return values


def field_name(key: str, cls: type | None = None) -> str | None:
    """The field a settings-file key means: the field's name or one of its variables."""
    fields = {f.name for f in dataclasses.fields(cls or Settings)}
    if key in fields:
        return key
    for name in fields:
        if key in _env_names(name):
            return name
    return None


def parse_document(doc: Any, cls: type | None = None) -> dict[str, Any]:
    """A settings document (a file's, or a proposed one) as typed field values. Keys are
    field names or variable names; values are JSON/TOML values of the field's type, or
    strings written as in the environment. ConfigFileError lists every problem."""
    values, errors = parse_document_partly(doc, cls)
    if errors:
        raise ConfigFileError(errors)
    return values


def parse_document_partly(
    doc: Any, cls: type | None = None
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """`parse_document`'s values that could be read, and the problems of the others."""
    cls = cls or Settings
    if not isinstance(doc, Mapping):
        return {}, [{"path": "", "message": "must be an object of settings"}]
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    errors: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    for key, value in doc.items():
        name = field_name(str(key), cls)
        if name is None:
            errors.append({"path": str(key), "message": "unknown setting"})
            continue
        if name in values:
            errors.append({"path": str(key), "message": f"'{name}' is given twice"})
            continue
        try:
            values[name] = _typed(by_name[name], value, str(key))
        except ValueError as exc:
            errors.append({"path": str(key), "message": str(exc)})
    return values, errors


_BOOL_WORDS = frozenset({"1", "0", "true", "false", "yes", "no", "on", "off"})


def _typed(field: dataclasses.Field, value: Any, key: str) -> Any:
    default = field.default
    kind = type(default).__name__
    if isinstance(value, str):
        raw = ENV_ALIAS_FORMATS.get(key, "{}").format(value)
        if isinstance(default, bool) and raw.strip().lower() not in _BOOL_WORDS:
            raise ValueError(f"not a boolean: {value!r}")
        try:
            return _coerce(field, raw)
        except ValueError:
            raise ValueError(f"not a valid {kind}: {value!r}") from None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, tuple):
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(v.strip() for v in value if v.strip())
        kind = "list of strings"
    raise ValueError(f"must be a {kind}, not {type(value).__name__}")


def read_config_file(path: str) -> Any:
    """The file's document: TOML when it ends in .toml, else JSON."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigFileError(
            [{"path": "", "message": f"cannot read {path}: {exc.strerror or exc}"}]
        ) from None
    try:
        if path.endswith(".toml"):
            import tomllib

            return tomllib.loads(data.decode("utf-8"))
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigFileError([{"path": "", "message": f"{path} is not valid: {exc}"}]) from None


def load_config_file(path: str, cls: type | None = None) -> dict[str, Any]:
    """The typed settings of the file at `path` (ConfigFileError on any problem)."""
    return parse_document(read_config_file(path), cls)
