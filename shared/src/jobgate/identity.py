"""Who is calling: the identity auth-service vouches for and the gateway acts on."""

from __future__ import annotations

import dataclasses
from typing import Any

ROLES = ("admin", "user")
# jobs:read / jobs:write gate the job APIs; containers gates container runs (DESIGN.md);
# workers:write registers external workers (seed 004's heartbeat); admin lets an admin's API
# key act as admin (a JWT of an admin always does); proxy manages the edge's published
# upstreams and routes (seed 003's reverse-proxy API).
KNOWN_SCOPES = ("jobs:read", "jobs:write", "containers", "workers:write", "proxy", "admin")
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
        """An admin's login acts as admin; an admin's API key only if it holds `admin`."""
        if self.role != "admin":
            return False
        return self.auth_method != "api_key" or "admin" in self.scopes

    def has_scope(self, scope: str) -> bool:
        """An API key holds exactly its own scopes (so an admin can make a narrow key);
        a login holds its user's scopes, and an admin's login every scope."""
        if self.auth_method == "api_key":
            return scope in self.scopes
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
