"""Task handlers by name: the built-ins and those of installed packages (seed 004's tasks).

A handler is a plain function `handler(payload: dict, task: TaskInfo) -> JSON value`. The
gateway only needs the names (to resolve a task's handler at submission and refuse unknown
ones); the task worker runs handlers in child processes through `call`, which never raises:
it answers a `Called` tuple the worker turns into the attempt's outcome.

Users add handlers with the entry-point group `jobgate.tasks` of an installed package
(`examples/task-handlers`): the entry point's name is the handler's name. A user entry point
never replaces a built-in (it is logged and ignored), so `echo` means the same everywhere.
Entry points are read once per process: install a package, then restart the gateway and
the task workers.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import re
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from jobgate.kinds.task import HANDLER_NAME

log = logging.getLogger(__name__)

GROUP = "jobgate.tasks"
SLEEP_MAX_S = 86400
HTTP_BODY_MAX_CHARS = 65536  # of a response's text kept in the `http` handler's result
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# `\u0000` in JSON text (not an escaped backslash before it): PostgreSQL's jsonb refuses it.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
TRACEBACK_LINES = 20  # of a failing handler's traceback written to the job log
MESSAGE_LIMIT = 1000  # characters of an exception's message kept in the job's error

Handler = Callable[[dict[str, Any], "TaskInfo"], Any]


class UnknownHandler(LookupError):
    """No handler is registered under `name`; `available` lists those that are."""

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"Unknown handler '{name}'")
        self.name = name
        self.available = available


class PermanentFailure(Exception):
    """Raise it from a handler when retrying cannot help (bad payload, refused host): the
    task fails at once, whatever its `retry_count`."""


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a handler knows of its task besides the payload (picklable: it crosses into the
    handler's process). `settings` holds the worker's `task_*` settings."""

    job_id: str
    name: str
    handler: str
    attempt: int = 1
    max_attempts: int = 1
    timeout: int = 3600
    description: str | None = None
    owner_id: str | None = None
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# --- built-ins ------------------------------------------------------------------------------


def echo(payload: dict[str, Any], task: TaskInfo) -> Any:
    """The payload back, unchanged: the default handler, so any task completes."""
    return payload


def sleep(payload: dict[str, Any], task: TaskInfo) -> dict[str, Any]:
    """Sleep `payload.seconds` (0..86400): a stand-in for long work, killed by cancel and by
    the task's timeout like any handler."""
    seconds = payload.get("seconds", 1)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise PermanentFailure("payload.seconds must be a number")
    if not 0 <= seconds <= SLEEP_MAX_S:  # NaN compares false too
        raise PermanentFailure(f"payload.seconds must be between 0 and {SLEEP_MAX_S}")
    started = time.monotonic()
    time.sleep(seconds)
    return {"slept": round(time.monotonic() - started, 3)}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answered, not followed: a redirect could lead off the allowed hosts."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def host_allowed(url: str, allowed: Iterable[str]) -> bool:
    """Whether `url` is http(s) to one of the `allowed` hosts (`host`, or `host:port` for
    that port only; names compared without case). Never with userinfo (`user@host`): urllib
    would take all of it for the host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = parts.hostname.lower().rstrip(".")
    for entry in allowed:
        entry = entry.strip().lower()
        if not entry:
            continue
        entry_host, sep, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        entry_host = entry_host.strip("[]").rstrip(".")
        if entry_host == host and (not sep or entry_port == str(port)):
            return True
    return False


def _has_port(entry: str) -> bool:
    """`host:port` or `[v6]:port` (a bare IPv6 address has colons but no port)."""
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


def request_url(url: str, allowed: Iterable[str]) -> str:
    """`url` rebuilt from the parts `host_allowed` judges (scheme, host, port, path, query),
    for the `http` handler to request: urllib connects to whatever precedes the path, so
    `http://evil.com@allowed.com/` would reach 'evil.com@allowed.com'. PermanentFailure for
    a URL with userinfo, a host not allowed, or one urllib would read otherwise."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        raise PermanentFailure(
            "payload.url must not hold credentials (user@host): send them in payload.headers"
        )
    if not host_allowed(url, allowed):
        raise PermanentFailure(f"host '{parts.hostname or url}' is not in TASK_HTTP_ALLOWED_HOSTS")
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    rebuilt = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    if urllib.request.Request(rebuilt).host != netloc:  # urllib unquotes it: `%2e`, a zone id
        raise PermanentFailure(f"host '{host}' of payload.url is not a plain host name")
    return rebuilt


def http(payload: dict[str, Any], task: TaskInfo) -> dict[str, Any]:
    """One HTTP request described by the payload (`method`, `url`, `headers`, `json` or
    `body`, `raise_for_status`), to `TASK_HTTP_ALLOWED_HOSTS` only; redirects are not
    followed. The result is the response: `status_code`, `headers`, `body` (text,
    truncated) and `truncated`."""
    url = payload.get("url")
    if not isinstance(url, str) or not url:
        raise PermanentFailure("payload.url is required")
    target = request_url(url, task.settings.get("task_http_allowed_hosts") or ())
    method = str(payload.get("method") or "GET").upper()
    if method not in HTTP_METHODS:
        raise PermanentFailure(f"payload.method must be one of {', '.join(HTTP_METHODS)}")
    headers = payload.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise PermanentFailure("payload.headers must be an object of strings")
    if any(name.strip().lower() == "host" for name in headers):
        # Refused, not dropped: another virtual host of an allowed server is not allowed.
        raise PermanentFailure("payload.headers must not set Host: it is payload.url's host")
    data: bytes | None = None
    if payload.get("json") is not None:
        data = json.dumps(payload["json"]).encode()
        headers = {"Content-Type": "application/json", **headers}
    elif payload.get("body") is not None:
        if not isinstance(payload["body"], str):
            raise PermanentFailure("payload.body must be a string (use payload.json for JSON)")
        data = payload["body"].encode()
    request = urllib.request.Request(target, data=data, headers=headers, method=method)
    timeout = float(task.settings.get("task_http_timeout_s") or 30.0)
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:  # 3xx (not followed), 4xx, 5xx: still an answer
        response = exc
    except ValueError as exc:  # http.client refuses the path or a header: so would a retry
        raise PermanentFailure(f"the request cannot be sent: {exc}") from exc
    with response:
        raw = response.read(HTTP_BODY_MAX_CHARS * 4 + 1)
        status = response.status if hasattr(response, "status") else response.code
        charset = response.headers.get_content_charset() or "utf-8"
        try:
            text = raw.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            text = raw.decode("utf-8", errors="replace")
        text = text.replace("\x00", "\ufffd")  # jsonb cannot hold NUL
        truncated = len(raw) > HTTP_BODY_MAX_CHARS * 4 or len(text) > HTTP_BODY_MAX_CHARS
        result = {
            "status_code": status,
            "headers": dict(response.headers.items()),
            "body": text[:HTTP_BODY_MAX_CHARS],
            "truncated": truncated,
        }
    if payload.get("raise_for_status") and status >= 400:
        raise RuntimeError(f"HTTP {status} from {url}")  # retryable: the job's retries apply
    return result


BUILTINS: dict[str, Handler] = {"echo": echo, "sleep": sleep, "http": http}


# --- the registry ---------------------------------------------------------------------------


class Registry:
    """Built-ins plus the entry points of one list (the installed packages' by default),
    read once; user handlers are imported on first use."""

    def __init__(self, entry_points: Iterable[importlib.metadata.EntryPoint]) -> None:
        self._entry_points: dict[str, importlib.metadata.EntryPoint] = {}
        self._loaded: dict[str, Handler] = dict(BUILTINS)
        for ep in entry_points:
            if ep.name in BUILTINS:
                log.warning(
                    "task handler entry point %r (%s) ignored: it would shadow a built-in",
                    ep.name,
                    ep.value,
                )
            elif not _valid_name(ep.name):
                log.warning("task handler entry point %r ignored: not a handler name", ep.name)
            elif ep.name in self._entry_points:
                log.warning(
                    "task handler entry point %r (%s) ignored: %s registered it first",
                    ep.name,
                    ep.value,
                    self._entry_points[ep.name].value,
                )
            else:
                self._entry_points[ep.name] = ep
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted({*BUILTINS, *self._entry_points})

    def __contains__(self, name: object) -> bool:
        return name in BUILTINS or name in self._entry_points

    def get(self, name: str) -> Handler:
        """The handler function (importing a user's module); UnknownHandler if none."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            ep = self._entry_points.get(name)
            if ep is None:
                raise UnknownHandler(name, self.names())
            handler = ep.load()
            if not callable(handler):
                raise TypeError(f"entry point {ep.value} is not callable")
            self._loaded[name] = handler
            return handler


def _valid_name(name: str) -> bool:
    try:
        HANDLER_NAME(name)
    except Exception:  # noqa: BLE001 - marshmallow's ValidationError: not a name
        return False
    return True


_registry: Registry | None = None
_registry_lock = threading.Lock()


def registry() -> Registry:
    """This process's registry, read from the installed packages on first use."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = Registry(importlib.metadata.entry_points(group=GROUP))
        return _registry


def refresh() -> Registry:
    """Read the installed packages' entry points again (tests; a long-lived process that
    must see a package installed since it started)."""
    global _registry
    with _registry_lock:
        _registry = None
    return registry()


def names() -> list[str]:
    """Every registered handler's name, sorted."""
    return registry().names()


def resolve_name(*, handler: str | None, name: str, default: str) -> str:
    """The handler a task runs: the explicit `handler` (which must exist, else
    UnknownHandler), else the handler called like the task's `name`, else `default`."""
    reg = registry()
    if handler:
        if handler not in reg:
            raise UnknownHandler(handler, reg.names())
        return handler
    if name in reg:
        return name
    return default


# --- running one handler (in the worker's child process) -----------------------------------


class Called(NamedTuple):
    """How one handler call ended: `outcome` is `ok` (`value` = the result as JSON text),
    `error` (an exception: `value` = "Type: message", `detail` = the traceback's tail),
    `permanent` (PermanentFailure), `invalid` (a result that is not JSON or too large) or
    `unknown` (no such handler; `detail` = the available ones, comma-separated)."""

    outcome: str
    value: str
    detail: str = ""


def call(handler: str, payload: dict[str, Any], task: TaskInfo) -> Called:
    """Run a handler and say how it went; never raises (a child process's exit, a timeout
    or a kill are seen by the caller). The result is checked and serialised here, so nothing
    but text crosses back to the worker."""
    reg = registry()
    try:
        function = reg.get(handler)
    except UnknownHandler as exc:
        return Called("unknown", handler, ", ".join(exc.available))
    except BaseException as exc:  # noqa: BLE001 - a user package that does not import
        return Called("permanent", f"cannot load handler '{handler}': {_describe(exc)}")
    try:
        value = function(payload, task)
    except PermanentFailure as exc:
        return Called("permanent", str(exc)[:MESSAGE_LIMIT] or "PermanentFailure")
    except BaseException as exc:  # noqa: BLE001 - sys.exit() in a handler fails its task only
        lines = traceback.format_exc().rstrip().splitlines()
        return Called("error", _describe(exc), "\n".join(lines[-TRACEBACK_LINES:]))
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        return Called("invalid", f"the handler's result is not JSON: {exc}")
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        return Called("invalid", "the handler's result is not valid Unicode (lone surrogate)")
    if _NUL_ESCAPE.search(text):
        return Called("invalid", "the handler's result holds a NUL character (\\u0000)")
    limit = int(task.settings.get("task_max_result_bytes") or 0)
    if limit and size > limit:
        return Called(
            "invalid",
            f"the handler's result is {size} bytes as JSON; TASK_MAX_RESULT_BYTES is {limit}",
        )
    return Called("ok", text)


def _describe(exc: BaseException) -> str:
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MESSAGE_LIMIT]
