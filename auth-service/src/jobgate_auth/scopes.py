"""Scope rules shared by users and API keys."""

from __future__ import annotations

from collections.abc import Iterable

from jobgate.errors import Forbidden, InvalidRequest
from jobgate.identity import KNOWN_SCOPES, Principal


def normalize_scopes(scopes: Iterable[str]) -> list[str]:
    """Deduplicate (keeping order) and reject scopes nobody checks, which are always typos."""
    result: list[str] = []
    unknown: list[str] = []
    for scope in scopes:
        if scope not in KNOWN_SCOPES:
            unknown.append(scope)
        elif scope not in result:
            result.append(scope)
    if unknown:
        raise InvalidRequest(
            "Unknown scope",
            details={"unknown_scopes": unknown, "known_scopes": list(KNOWN_SCOPES)},
        )
    return result


def effective_scopes(role: str, scopes: Iterable[str]) -> list[str]:
    """What a user may actually do: admins hold every scope, others what they were granted."""
    if role == "admin":
        return list(KNOWN_SCOPES)
    return [scope for scope in scopes if scope in KNOWN_SCOPES and scope != "admin"]


def grantable_scopes(principal: Principal, requested: Iterable[str] | None) -> list[str]:
    """Scopes for a new API key: by default the caller's own; never beyond them (admin: any).

    A key must not let its creator (or a key that creates keys) do more than they can.
    """
    scopes = normalize_scopes(principal.scopes if requested is None else requested)
    allowed = set(KNOWN_SCOPES) if principal.is_admin else set(principal.scopes)
    excess = [scope for scope in scopes if scope not in allowed]
    if excess:
        raise Forbidden(
            "Requested scopes exceed your own",
            details={"scopes": excess, "allowed_scopes": sorted(allowed)},
        )
    return scopes
