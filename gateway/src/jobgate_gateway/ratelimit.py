"""Rate limits per API key or user (flask-limiter), shared through Redis when configured.

Job creation has its own low limit (seed 000: 10/minute); status polling has a separate,
higher one so a client polling every few seconds never sees a 429. 429s carry
`Retry-After` and `X-RateLimit-*` headers.
"""

from __future__ import annotations

from flask import Flask, current_app, request
from flask_limiter import Limiter

from jobgate_gateway.auth import rate_limit_key


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


def _not_a_login() -> bool:
    return request.path.rstrip("/").rsplit("/", 1)[-1] not in ("login", "refresh")


login_limit = limiter.shared_limit(
    lambda: _settings().rate_limit_login,
    scope="auth-login",
    key_func=lambda: f"ip:{request.remote_addr}",
    exempt_when=_not_a_login,
    override_defaults=False,
)


def init_rate_limits(app: Flask) -> None:
    settings = app.extensions["jobgate"].settings
    app.config["RATELIMIT_STORAGE_URI"] = settings.rate_limit_storage_uri
    app.config["RATELIMIT_ENABLED"] = settings.rate_limit_enabled
    app.config["RATELIMIT_KEY_PREFIX"] = "jobgate"
    limiter.init_app(app)
