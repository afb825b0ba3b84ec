"""JWT access tokens (RS256): short-lived, verified by the gateway with the JWKS alone.

Claims follow DESIGN.md: iss, aud, sub (user id), username, role, scopes, iat, exp, jti;
the header names the signing key (kid) so keys can rotate without breaking verifiers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import jwt

from jobgate.config import Settings
from jobgate_auth.keys import ALGORITHM, SigningKey


class InvalidToken(Exception):
    """The token is malformed, expired, not ours or signed by an unknown key."""


def issue_access_token(
    key: SigningKey,
    *,
    settings: Settings,
    user_id: str,
    username: str,
    role: str,
    scopes: Sequence[str],
    now: int | None = None,
) -> str:
    """Sign an access token valid for `settings.access_token_ttl` seconds."""
    issued_at = int(time.time()) if now is None else now
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(user_id),
        "username": username,
        "role": role,
        "scopes": list(scopes),
        "iat": issued_at,
        "exp": issued_at + settings.access_token_ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify_access_token(key: SigningKey, *, settings: Settings, token: str) -> dict[str, Any]:
    """Return the claims of a token we issued and that is still valid, else raise InvalidToken."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("kid") != key.kid:
            raise InvalidToken("unknown signing key")
        return jwt.decode(
            token,
            key.public_key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "jti"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
