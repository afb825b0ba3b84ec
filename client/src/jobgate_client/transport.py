"""HTTP to the public address: one `requests.Session`, credentials, typed errors, retries.

Retries are decided per request, which is why they are here and not in urllib3's `Retry`
(an adapter-wide policy that cannot see a request's headers): GET, HEAD, PUT, DELETE and
OPTIONS, and a POST only when it carries an `Idempotency-Key` (the gateway answers a repeated
key with the first job), are tried again on a connection error, 502/503/504 and 429, with
exponential backoff and jitter; a 429's `Retry-After` is honoured when it is short enough
to wait for. A 401 with a refresh token at hand refreshes the access token once and sends
the request again, whatever its method (it was refused, so nothing happened).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import requests

from jobgate_client import __version__
from jobgate_client.errors import (
    ConnectionFailed,
    JobgateError,
    Unauthorized,
    connection_reason,
    from_response,
    retry_after_seconds,
)
from jobgate_client.models import Tokens

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_URL = "http://127.0.0.1:8080"

TokensCallback = Callable[[Tokens], None]


class HttpTransport:
    """Sends requests to `url` with the caller's credentials (an API key, or an access token
    with an optional refresh token), retrying what is safe to retry."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        token: str | None = None,
        refresh_token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        retry_after_max: float = 30.0,
        on_tokens: TokensCallback | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = url.rstrip("/")
        self.api_key = api_key
        self.token = token
        self.refresh_token = refresh_token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.on_tokens = on_tokens
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = f"jobgate-client/{__version__}"
        self.sleep = sleep
        self._refresh_lock = threading.Lock()

    # --- credentials -----------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """The headers that authenticate a request (also used for WebSocket handshakes)."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.api_key:
            return {"X-API-Key": self.api_key}
        return {}

    @property
    def can_refresh(self) -> bool:
        return bool(self.token and self.refresh_token)

    def use_tokens(self, tokens: Tokens) -> None:
        """Authenticate with these tokens from now on (a login or refresh answer)."""
        self.token = tokens.get("access_token") or self.token
        self.refresh_token = tokens.get("refresh_token") or self.refresh_token
        if self.on_tokens is not None:
            self.on_tokens(tokens)

    def refresh(self, used_token: str | None = None) -> None:
        """Trade the refresh token for new tokens. `used_token` is the access token a
        request was refused with: when another thread already replaced it, nothing is done
        (refresh tokens rotate, and a reused one revokes the whole session)."""
        with self._refresh_lock:
            if used_token is not None and used_token != self.token:
                return
            if not self.refresh_token:
                raise Unauthorized("Access token expired and no refresh token is available")
            response = self.request(
                "POST",
                "/api/v1/auth/refresh",
                json={"refresh_token": self.refresh_token},
                authenticate=False,
            )
            self.use_tokens(response.json())

    # --- requests --------------------------------------------------------------------

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}{path}"

    def backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of base * 2**attempt."""
        delay = min(self.backoff_max, self.backoff * (2**attempt))
        return random.uniform(delay / 2, delay)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        retries: int | None = None,
        authenticate: bool = True,
        raise_for_status: bool = True,
    ) -> requests.Response:
        """Send a request and return its response; an error answer raises its typed
        `JobgateError` (unless `raise_for_status` is false), an unreachable server
        `ConnectionFailed`. `body` makes the request body afresh for each try (a streamed
        upload cannot be sent twice from one object). `retries` overrides the client's."""
        method = method.upper()
        sent_headers = {"X-Request-ID": uuid.uuid4().hex, **(headers or {})}
        retryable = method in IDEMPOTENT_METHODS or "Idempotency-Key" in sent_headers
        allowed = (self.retries if retries is None else retries) if retryable else 0
        clean_params = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        refreshed = False
        while True:
            auth = self.auth_headers() if authenticate else {}
            try:
                response = self.session.request(
                    method,
                    self.url(path),
                    params=clean_params,
                    json=json,
                    data=body() if body is not None else None,
                    headers={**sent_headers, **auth},
                    stream=stream,
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < allowed:
                    self.sleep(self.backoff_delay(attempt))
                    attempt += 1
                    continue
                raise ConnectionFailed(self.base_url, connection_reason(exc)) from exc
            if (
                response.status_code == 401
                and authenticate
                and self.can_refresh
                and not refreshed
                and "Authorization" in auth
            ):
                response.close()
                refreshed = True
                self.refresh(used_token=auth["Authorization"].removeprefix("Bearer "))
                continue
            if response.status_code in RETRY_STATUSES and attempt < allowed:
                delay = self.backoff_delay(attempt)
                if response.status_code == 429:
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                    if wait is not None and wait > self.retry_after_max:
                        return self._finish(response, raise_for_status)
                    delay = max(delay, wait or 0.0)
                response.close()
                self.sleep(delay)
                attempt += 1
                continue
            return self._finish(response, raise_for_status)

    @staticmethod
    def _finish(response: requests.Response, raise_for_status: bool) -> requests.Response:
        if raise_for_status and response.status_code >= 400:
            error: JobgateError = from_response(response)
            response.close()
            raise error
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a request's answer (None for an empty one, e.g. a 204)."""
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def close(self) -> None:
        self.session.close()
