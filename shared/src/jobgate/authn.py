"""Who is calling: Bearer JWTs verified locally against auth-service's JWKS, API keys
validated by auth-service `/validate` and cached briefly.

One implementation for every service that serves users (the gateway, stats-service), so
a credential means the same everywhere. It takes plain header mappings, not a framework's
request: Flask and Starlette callers pass their own.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import jwt
import requests
from cachetools import TTLCache

from jobgate.config import Settings
from jobgate.errors import ServiceUnavailable, Unauthorized
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

    def from_api_key(self, api_key: str, *, request_id: str = "") -> Principal:
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
                headers={"X-Request-ID": request_id},
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

    def authenticate(
        self, headers: Mapping[str, str], *, request_id: str = "", query_token: str = ""
    ) -> Principal | None:
        """The caller's principal, None without credentials; raises on bad credentials.

        `X-API-Key` wins over `Authorization: Bearer`. `query_token` (a JWT or an API key
        from the URL) is for browsers, whose WebSocket and EventSource cannot set headers;
        only stats-service passes it, and headers still win over it.
        """
        api_key = headers.get("X-API-Key", "").strip()
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if api_key:
            return self.from_api_key(api_key, request_id=request_id)
        if scheme.lower() == "bearer" and token.strip():
            return self.from_jwt(token.strip())
        query_token = query_token.strip()
        if query_token:
            if query_token.count(".") == 2:  # a JWT's three parts; API keys have no dots
                return self.from_jwt(query_token)
            return self.from_api_key(query_token, request_id=request_id)
        return None
