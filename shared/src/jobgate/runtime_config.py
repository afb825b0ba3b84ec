"""Settings that change without a restart (issue 14: `/api/config`), and their redaction.

Settings are frozen values read at start (`jobgate.config`: environment > JOBGATE_CONFIG_FILE
> default). `POST /api/config/reload` re-reads the file, validates it and stores its document
in the one `runtime_config` row (migration 0016) under a new version. Every process holds a
`RuntimeSettings`: at most once a second (one monotonic-clock comparison otherwise) it reads
the row's version, and when it changed rebuilds its settings as
`base.replace(**reloadable values)`. Only the RELOADABLE keys change that way; a variable the
process's environment sets always wins over the file, as at start. Other keys differing from
what runs are reported as `requires_restart`.

Secrets never leave through these APIs: `public_settings` shows secret fields as "********"
(an empty one stays "") and the password of any URL as `scheme://user:********@host`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg2.extras import Json

from jobgate import config, db
from jobgate.config import ConfigFileError, Settings

log = logging.getLogger(__name__)

CONFIG_CHANNEL = "jobgate_config"  # pg_notify at reload, payload = the new version
PROXY_CHANNEL = "jobgate_proxy"  # the edge agents re-render on the payload "reload"
REDACTED = "********"
CHECK_INTERVAL_S = 1.0

RATE_LIMIT_KEYS = (
    "rate_limit_job_create",
    "rate_limit_status",
    "rate_limit_default",
    "rate_limit_login",
    "rate_limit_tasks",
)
# Read through the process's current settings on every use (the limiter's lambdas, the
# gateway's and workers' allow-list checks), so a reload reaches them.
RELOADABLE = frozenset(
    {
        *RATE_LIMIT_KEYS,
        "rate_limit_enabled",
        "container_image_allowlist",
        "task_http_allowed_hosts",
        "proxy_allowed_upstreams",
    }
)

SECRET_FIELDS = frozenset({"bootstrap_admin_password", "bootstrap_api_key"})
_SECRET_NAME = re.compile(r"password|secret|api_key|_token$|private_key$|credential")
_SECRET_PARAM = re.compile(r"password|passwd|pwd|secret|token|key|auth|credential", re.I)

CHOICES: dict[str, tuple[str, ...]] = {
    "job_backoff": ("fixed", "exponential"),
    "job_queue_type": ("classic", "quorum"),
    "log_format": ("json", "text"),
}

Doc = dict[str, Any]


# --- redaction ---------------------------------------------------------------------------------


def is_secret(name: str) -> bool:
    """A field whose whole value is secret (not a path to one: `jwt_private_key_file`)."""
    return name in SECRET_FIELDS or bool(_SECRET_NAME.search(name))


def redact_url(value: str) -> str:
    """`value` with the password of a URL (and secret-looking query values) replaced; any
    other string unchanged."""
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:  # not a URL after all; hide what may be credentials
        return REDACTED if "@" in value else value
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode(
                [(k, REDACTED if _SECRET_PARAM.search(k) and v else v) for k, v in pairs],
                safe="*/{}",
            )
    if netloc == parts.netloc and query == parts.query:
        return value
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(name: str, value: Any) -> Any:
    """The value of setting `name` as the API shows it (JSON: tuples are lists)."""
    if isinstance(value, tuple | list):
        return [redact(name, item) for item in value]
    if isinstance(value, str):
        if is_secret(name):
            return REDACTED if value else ""
        return redact_url(value)
    return value


def public_settings(settings: Settings) -> Doc:
    """Every field of `settings`, redacted, in declaration order."""
    return {f.name: redact(f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def redacted_keys(settings: Settings) -> list[str]:
    """The fields whose shown value hides something."""
    return [
        f.name
        for f in dataclasses.fields(settings)
        if redact(f.name, getattr(settings, f.name)) != _jsonable(getattr(settings, f.name))
    ]


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def jsonable_document(values: Mapping[str, Any]) -> Doc:
    """Typed values as JSON (tuples as lists): what the row stores."""
    return {k: _jsonable(v) for k, v in values.items()}


# --- validation --------------------------------------------------------------------------------


def _check_rate_limit(value: str) -> str | None:
    try:
        from limits import parse_many
    except ImportError:  # only the gateway enforces limits; it has `limits`
        return None
    try:
        if not parse_many(value):
            return "no rate limit in it"
    except ValueError as exc:
        return f"not a rate limit ('10/minute', '1000/hour;100/minute'): {exc}"
    return None


def check_values(values: Mapping[str, Any]) -> list[dict[str, str]]:
    """Problems of typed values beyond their type."""
    errors = []
    for key, value in values.items():
        message = None
        if key in RATE_LIMIT_KEYS:
            message = _check_rate_limit(value)
        elif key in CHOICES and value not in CHOICES[key]:
            message = f"must be one of {', '.join(CHOICES[key])}"
        elif key in config.NETWORK_FIELDS:
            try:
                config.parse_networks(value)
            except ValueError as exc:
                message = str(exc)
        elif isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            message = "must not be negative"
        if message:
            errors.append({"path": key, "message": message})
    return errors


def check_document(doc: Any) -> Doc:
    """A settings document (JOBGATE_CONFIG_FILE's, or a proposed one) as typed values keyed
    by field name; ConfigFileError lists every problem (unknown keys, bad values)."""
    values, errors = config.parse_document_partly(doc)
    errors += check_values(values)
    if errors:
        raise ConfigFileError(errors)
    return values


def read_file(path: str) -> Doc:
    """The file's typed values (ConfigFileError on any problem)."""
    return check_document(config.read_config_file(path))


# --- applying ----------------------------------------------------------------------------------

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}


def environment_keys(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The fields the environment sets: a file never overrides those."""
    try:
        return frozenset(config.env_values(os.environ if environ is None else environ))
    except ValueError:  # the process would not have started; be safe: nothing is env-set
        return frozenset()


def reloaded(base: Settings, document: Mapping[str, Any], env_keys: Iterable[str]) -> Settings:
    """`base` with the reloadable values of `document` (typed): environment > file > default."""
    pinned = set(env_keys)
    changes = {key: document.get(key, _DEFAULTS[key]) for key in RELOADABLE if key not in pinned}
    changes = {k: v for k, v in changes.items() if getattr(base, k) != v}
    return base.replace(**changes) if changes else base


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The `runtime_config` row: version 0 (and no document) when nothing was reloaded."""

    version: int = 0
    document: Doc = dataclasses.field(default_factory=dict)
    loaded_at: Any = None
    loaded_by: str | None = None


def load(conn: db.Connection) -> Loaded:
    row = db.fetch_one(
        conn, "SELECT version, document, loaded_at, loaded_by FROM runtime_config WHERE id"
    )
    if row is None:
        return Loaded()
    return Loaded(row["version"], dict(row["document"] or {}), row["loaded_at"], row["loaded_by"])


def store(conn: db.Connection, values: Mapping[str, Any], loaded_by: str | None) -> Loaded:
    """Write the document under a new version and tell the listeners at commit: every
    process (`jobgate_config`) and the edge agents (`jobgate_proxy` "reload": re-render)."""
    document = jsonable_document(values)
    row = db.fetch_one(
        conn,
        """
        INSERT INTO runtime_config (id, version, document, loaded_at, loaded_by)
        VALUES (true, nextval('runtime_config_version'), %s, now(), %s)
        ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version,
            document = EXCLUDED.document, loaded_at = EXCLUDED.loaded_at,
            loaded_by = EXCLUDED.loaded_by
        RETURNING version, loaded_at, loaded_by
        """,
        (Json(document), loaded_by),
    )
    assert row is not None
    with conn.cursor() as cur:
        cur.execute("SELECT pg_notify(%s, %s)", (CONFIG_CHANNEL, str(row["version"])))
        cur.execute("SELECT pg_notify(%s, 'reload')", (PROXY_CHANNEL,))
    return Loaded(row["version"], document, row["loaded_at"], row["loaded_by"])


class RuntimeSettings:
    """A process's current settings: `base` (what it started with) plus the reloadable values
    of the last reload. `current()` costs a clock reading; at most once per `interval_s` it
    also reads the row's version (one short query), never failing its caller: a database
    away keeps the settings it has."""

    def __init__(
        self,
        base: Settings,
        database: db.Database | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.base = base
        self.env_keys = environment_keys(environ)
        self.interval_s = interval_s
        self.loaded = Loaded()
        self._database = database
        self._settings = base
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._failing = False

    @property
    def database(self) -> db.Database:
        if self._database is None:  # a process without a pool of its own (an RPC server)
            self._database = db.Database(self.base.database_url, minconn=1, maxconn=1)
        return self._database

    def due(self) -> bool:
        """Whether the next `current()` would read the row (a clock reading)."""
        return time.monotonic() >= self._next_check

    def current(self) -> Settings:
        if time.monotonic() >= self._next_check:
            self.refresh()
        return self._settings

    def refresh(self, *, force: bool = False) -> bool:
        """Read the row now (`force`) or if due; True when the settings changed."""
        if not self._lock.acquire(blocking=force):
            return False  # another thread is reading it
        try:
            now = time.monotonic()
            if not force and now < self._next_check:
                return False
            self._next_check = now + self.interval_s
            try:
                with self.database.autocommit() as conn:
                    loaded = load(conn)
            except Exception as exc:  # noqa: BLE001 - keep what we have; try again later
                if not self._failing:
                    log.warning("runtime settings not read (kept): %s", exc)
                self._failing = True
                return False
            self._failing = False
            if loaded.version == self.loaded.version:
                return False
            return self.apply(loaded)
        finally:
            self._lock.release()

    def apply(self, loaded: Loaded) -> bool:
        """Use `loaded`'s reloadable values; a document this code cannot read keeps the
        settings as they are (a newer process wrote a key this one does not know)."""
        try:
            values = check_document({k: v for k, v in loaded.document.items() if k in RELOADABLE})
        except ConfigFileError as exc:
            log.warning("runtime settings v%s not applied: %s", loaded.version, exc)
            self.loaded = loaded
            return False
        # No row (deleted): back to what the process started with.
        new = reloaded(self.base, values, self.env_keys) if loaded.version else self.base
        changed = new != self._settings
        self._settings = new
        self.loaded = loaded
        if changed:
            log.info("runtime settings v%s applied", loaded.version)
        return changed
