"""Rate limits per API key or user (flask-limiter), shared through Redis when configured.

Job creation has its own low limit (seed 000: 10/minute); status polling has a separate,
higher one so a client polling every few seconds never sees a 429; seed 004's task routes
have its two windows (`RATE_LIMIT_TASKS`). Every authenticated response carries
`X-RateLimit-Limit`, `-Remaining` and `-Reset` (seed 004), not only a 429: flask-limiter
writes them for the limit it evaluated, and `_report_default_limit` fills them in from the
default limit where it evaluated none (a request refused before its route's limit was
checked, or one that matched no route). 429s also carry `Retry-After`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from limits import parse_many
from limits.storage import MemoryStorage

from jobgate_gateway.auth import rate_limit_key

log = logging.getLogger(__name__)

KEY_PREFIX = "jobgate"
HEADER_LIMIT = "X-RateLimit-Limit"
HEADER_REMAINING = "X-RateLimit-Remaining"
HEADER_RESET = "X-RateLimit-Reset"


def _settings():
    return current_app.extensions["jobgate"].settings


limiter = Limiter(
    key_func=rate_limit_key,
    default_limits=[lambda: _settings().rate_limit_default],
    headers_enabled=True,
    strategy="moving-window",
    in_memory_fallback_enabled=True,
)

create_limit = limiter.shared_limit(
    lambda: _settings().rate_limit_job_create, scope="job-create", methods=["POST", "DELETE"]
)
status_limit = limiter.shared_limit(
    lambda: _settings().rate_limit_status, scope="job-status", methods=["GET"]
)
# Seed 004: "1000 requests per hour, 100 per minute per API key", both windows on every
# /api/v1/tasks route, in one bucket; the headers report the window nearest to running out
# (flask-limiter's choice: the smallest window, or the one breached).
tasks_limit = limiter.shared_limit(lambda: _settings().rate_limit_tasks, scope="tasks")


@limiter.request_filter
def _disabled_by_reload() -> bool:
    """RATE_LIMIT_ENABLED turned off by a reload (POST /api/config/reload): no limit counts.
    (Turning it on needs a restart when the gateway started without a limiter.)"""
    return not _settings().rate_limit_enabled


def _refresh_settings() -> None:
    """before_request, ahead of the limiter's: a reload's values apply to this request."""
    refresh = getattr(current_app.extensions["jobgate"], "refresh_settings", None)
    if refresh is not None:
        refresh()


def _not_a_login() -> bool:
    return request.path.rstrip("/").rsplit("/", 1)[-1] not in ("login", "refresh")


login_limit = limiter.shared_limit(
    lambda: _settings().rate_limit_login,
    scope="auth-login",
    key_func=lambda: f"ip:{request.remote_addr}",
    exempt_when=_not_a_login,
    override_defaults=False,
)


def _report_default_limit(response: Response) -> Response:
    """after_request (run after flask-limiter's own): an authenticated response that got no
    `X-RateLimit-*` headers gets the default limit's, read without counting the request —
    its route's limit was never evaluated (refused before, or no route matched). And
    `Retry-After`, which flask-limiter writes on every answer, stays only where it means
    something (429, 503): a client must not wait before its next call after a success."""
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    if (
        HEADER_LIMIT in response.headers
        or g.get("principal") is None
        or not limiter.enabled
        or not current_app.config.get("RATELIMIT_ENABLED", True)
        or not _settings().rate_limit_enabled
    ):
        return response
    try:
        limit = min(parse_many(_settings().rate_limit_default), key=lambda item: item.get_expiry())
        # The default limits count per route (flask-limiter scopes them by endpoint).
        args = [KEY_PREFIX, rate_limit_key(), request.endpoint or "unmatched"]
        reset_at, remaining = limiter.limiter.get_window_stats(limit, *args)
    except Exception as exc:  # noqa: BLE001 - headers are advice; never fail the answer
        log.debug("rate-limit headers not reported: %s", exc)
        return response
    response.headers[HEADER_LIMIT] = str(limit.amount)
    response.headers[HEADER_REMAINING] = str(max(0, remaining))
    response.headers[HEADER_RESET] = str(int(reset_at + 1))
    return response


class ExpirySweeper:
    """Stands in for `limits`' MemoryStorage `timer`: one thread that drops expired entries
    10 ms after a hit, as the storage's own `threading.Timer(0.01)` did, without starting a
    thread every 10 ms while requests come in (the storage asks `timer.is_alive()` on every
    hit and starts a new Timer when the last one has fired; in a profile of the gateway under
    job reads that was most of the limiter's cost, `Thread.start` waiting for the GIL).
    Expiry only frees memory: moving windows are judged by the entries' times."""

    DELAY_S = 0.01  # the library's Timer interval

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self._hit = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def is_alive(self) -> bool:
        """Called by the storage on every hit: wake the sweeper (started here on first use
        and again in a forked child, where the parent's thread does not run)."""
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                    self._hit = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run, name="ratelimit-expiry", daemon=True
                    )
                    self._pid = os.getpid()
                    self._thread.start()
        self._hit.set()
        return True

    def cancel(self) -> None:
        """`threading.Timer`'s API; nothing to cancel (the thread is a daemon)."""

    def _run(self) -> None:
        hit = self._hit
        while True:
            hit.wait()
            time.sleep(self.DELAY_S)
            hit.clear()
            try:
                self._expire()
            except Exception:  # a failed sweep must not end the sweeper
                log.exception("rate-limit expiry failed")


def _sweep_memory_storage(storage: object) -> None:
    """Give an in-memory storage the ExpirySweeper (Redis expires keys itself). Left alone
    if `limits` no longer has the private expiry it calls (then its own Timer stays)."""
    expire = getattr(storage, "_MemoryStorage__expire_events", None)
    if isinstance(storage, MemoryStorage) and callable(expire):
        storage.timer = ExpirySweeper(expire)  # type: ignore[assignment]


def init_rate_limits(app: Flask) -> None:
    settings = app.extensions["jobgate"].settings
    app.config["RATELIMIT_STORAGE_URI"] = settings.rate_limit_storage_uri
    app.config["RATELIMIT_ENABLED"] = settings.rate_limit_enabled
    app.config["RATELIMIT_KEY_PREFIX"] = KEY_PREFIX
    # Registered before the limiter's own after_request, so it runs after it (Flask runs
    # after_request functions in reverse order) and sees the headers it wrote.
    app.after_request(_report_default_limit)
    app.before_request(_refresh_settings)
    limiter.init_app(app)
    if settings.rate_limit_enabled:  # a disabled limiter has no storage (asking asserts)
        _sweep_memory_storage(limiter.storage)
