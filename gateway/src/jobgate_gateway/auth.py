"""Who is calling: Bearer JWTs verified locally against auth-service's JWKS, API keys
validated by auth-service `/validate` and cached briefly.

The principal is resolved once per request, before rate limiting, so limits count per
user or key; routes then demand it with `require_auth()`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

import jwt
import requests
from cachetools import TTLCache
from flask import current_app, g, request

from jobgate.config import Settings
from jobgate.errors import Forbidden, ServiceUnavailable, Unauthorized
from jobgate.identity import Principal

log = logging.getLogger(__name__)

NEGATIVE_CACHE_TTL = 5.0
JWKS_REFRESH_MIN_S = 10.0


class Authenticator:
    """Turns request credentials into a Principal; one per gateway process."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self.jwks = jwt.PyJWKClient(
            f"{settings.auth_service_url}/.well-known/jwks.json",
            cache_jwk_set=True,
            lifespan=int(settings.jwks_cache_ttl),
            timeout=int(settings.request_timeout),
        )
        self._valid: TTLCache[str, Principal] = TTLCache(
            maxsize=10_000, ttl=settings.api_key_cache_ttl
        )
        self._invalid: TTLCache[str, bool] = TTLCache(maxsize=10_000, ttl=NEGATIVE_CACHE_TTL)
        self._lock = threading.Lock()
        self._last_jwks_refresh = 0.0

    def _signing_key(self, token: str) -> Any:
        """The JWKS key for the token's `kid`. An unknown kid refetches the JWKS (keys may
        have rotated), but at most every JWKS_REFRESH_MIN_S: forged kids cannot make the
        gateway hammer auth-service."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            keys = {k.key_id: k for k in self.jwks.get_signing_keys()}
            if kid not in keys:
                with self._lock:
                    if time.monotonic() - self._last_jwks_refresh < JWKS_REFRESH_MIN_S:
                        raise Unauthorized("Invalid token")
                    self._last_jwks_refresh = time.monotonic()
                keys = {k.key_id: k for k in self.jwks.get_signing_keys(refresh=True)}
        except jwt.PyJWKClientConnectionError as exc:
            raise ServiceUnavailable("Authentication service unavailable") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid token") from exc
        if kid not in keys:
            raise Unauthorized("Invalid token")
        return keys[kid]

    def from_jwt(self, token: str) -> Principal:
        key = self._signing_key(token)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid token") from exc
        return Principal.from_claims(claims, auth_method="jwt")

    def from_api_key(self, api_key: str) -> Principal:
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        with self._lock:
            cached = self._valid.get(digest)
            if cached is not None:
                return cached
            if digest in self._invalid:
                raise Unauthorized("Invalid or missing API key")
        try:
            response = self.session.post(
                f"{self.settings.auth_service_url}/validate",
                json={"api_key": api_key},
                headers={"X-Request-ID": getattr(g, "request_id", "") or ""},
                timeout=self.settings.request_timeout,
            )
        except requests.RequestException as exc:
            log.warning("auth-service unreachable: %s", exc)
            raise ServiceUnavailable("Authentication service unavailable") from exc
        if response.status_code in (401, 403):
            with self._lock:
                self._invalid[digest] = True
            raise Unauthorized("Invalid or missing API key")
        if response.status_code != 200:
            raise ServiceUnavailable("Authentication service unavailable")
        principal = Principal.from_claims(response.json(), auth_method="api_key")
        with self._lock:
            self._valid[digest] = principal
        return principal

    def authenticate(self) -> Principal | None:
        """The caller's principal, None without credentials; raises on bad credentials."""
        api_key = request.headers.get("X-API-Key", "").strip()
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if api_key:
            return self.from_api_key(api_key)
        if scheme.lower() == "bearer" and token.strip():
            return self.from_jwt(token.strip())
        return None


def resolve_principal() -> None:
    """before_request: remember the principal or the reason there is none (never rejects)."""
    g.principal, g.auth_error = None, None
    try:
        g.principal = current_app.extensions["jobgate"].authenticator.authenticate()
    except (Unauthorized, ServiceUnavailable) as exc:
        g.auth_error = exc


def require_auth(scope: str | None = None) -> Principal:
    """The authenticated principal, or 401/503; 403 when it lacks `scope`."""
    if g.get("auth_error") is not None:
        raise g.auth_error
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise Unauthorized("Invalid or missing API key")
    if scope and not principal.has_scope(scope):
        raise Forbidden(f"This credential lacks the '{scope}' scope")
    return principal


def authenticate_blueprint() -> None:
    """before_request of protected blueprints: 401 comes before any body validation."""
    require_auth()


def rate_limit_key() -> str:
    """Limits count per API key or user; unauthenticated calls per client address."""
    principal: Principal | None = g.get("principal")
    if principal is None:
        return f"ip:{request.remote_addr}"
    return f"key:{principal.key_id}" if principal.key_id else f"user:{principal.user_id}"


def owner_filter(principal: Principal) -> str | None:
    """Admins see every job; users only their own."""
    return None if principal.is_admin else principal.user_id


def can_access(principal: Principal, resource: dict[str, Any]) -> bool:
    return principal.is_admin or str(resource["owner_id"]) == principal.user_id
