"""Who is calling: the identity auth-service vouches for and the gateway acts on."""

from __future__ import annotations

import dataclasses
from typing import Any

ROLES = ("admin", "user")
# jobs:read / jobs:write gate the job APIs; containers gates container runs (DESIGN.md).
KNOWN_SCOPES = ("jobs:read", "jobs:write", "containers")
DEFAULT_USER_SCOPES = ("jobs:read", "jobs:write")


@dataclasses.dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    role: str
    scopes: tuple[str, ...]
    auth_method: str  # "jwt" or "api_key"
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def has_scope(self, scope: str) -> bool:
        """Admins hold every scope; others only those granted."""
        return self.is_admin or scope in self.scopes

    @classmethod
    def from_claims(cls, claims: dict[str, Any], *, auth_method: str) -> Principal:
        return cls(
            user_id=str(claims["sub"] if "sub" in claims else claims["user_id"]),
            username=str(claims.get("username", "")),
            role=str(claims.get("role", "user")),
            scopes=tuple(claims.get("scopes") or ()),
            auth_method=auth_method,
            key_id=claims.get("key_id"),
        )
