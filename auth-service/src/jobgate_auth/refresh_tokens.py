"""Refresh tokens: the `refresh_tokens` table. Opaque, single use, rotating, in families.

Each login starts a family; each refresh marks the presented token used and issues the
next one in the same family. A used token presented again means it was copied (either
the thief or the user is replaying it), so the whole family is revoked (reuse detection).
Only SHA-256 hashes are stored: a database leak does not leak live sessions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import uuid
from typing import Any

from jobgate.db import Connection, execute, fetch_one

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Rotation:
    user_id: uuid.UUID
    family_id: uuid.UUID
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(
    conn: Connection, *, user_id: uuid.UUID | str, ttl: int, family_id: uuid.UUID | None = None
) -> tuple[str, uuid.UUID]:
    """Store a new token (a new family unless `family_id` is given); return it and its family."""
    token = secrets.token_urlsafe(32)
    family = family_id or uuid.uuid4()
    execute(
        conn,
        """
        INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at)
        VALUES (%s, %s, %s, now() + make_interval(secs => %s))
        """,
        (str(user_id), family, hash_token(token), ttl),
    )
    return token, family


def rotate(conn: Connection, *, token: str, ttl: int) -> Rotation | None:
    """Exchange a live token for its successor; None if it is unknown, dead or reused.

    A reused token revokes its family here, inside the caller's transaction: the caller
    must commit before answering 401, or the revocation would roll back with the error.
    """
    row = fetch_one(
        conn,
        """
        SELECT rt.id, rt.user_id, rt.family_id, rt.used_at, rt.revoked_at,
               rt.expires_at <= now() AS expired, u.is_active
        FROM refresh_tokens rt JOIN users u ON u.id = rt.user_id
        WHERE rt.token_hash = %s
        FOR UPDATE OF rt
        """,
        (hash_token(token),),
    )
    if row is None or row["revoked_at"] is not None:
        return None
    if row["used_at"] is not None:
        revoked = revoke_family(conn, family_id=row["family_id"])
        log.warning(
            "refresh token reuse detected; revoked family %s of user %s (%d live tokens)",
            row["family_id"],
            row["user_id"],
            revoked,
        )
        return None
    if row["expired"] or not row["is_active"]:
        return None
    execute(conn, "UPDATE refresh_tokens SET used_at = now() WHERE id = %s", (row["id"],))
    new_token, family = issue(conn, user_id=row["user_id"], ttl=ttl, family_id=row["family_id"])
    return Rotation(user_id=row["user_id"], family_id=family, token=new_token)


def revoke_family(conn: Connection, *, family_id: uuid.UUID | str) -> int:
    return execute(
        conn,
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = %s AND revoked_at IS NULL",
        (str(family_id),),
    )


def revoke_family_of(conn: Connection, *, token: str) -> bool:
    """Log out: revoke the family the token belongs to; False if the token is unknown."""
    row = fetch_one(
        conn, "SELECT family_id FROM refresh_tokens WHERE token_hash = %s", (hash_token(token),)
    )
    if row is None:
        return False
    revoke_family(conn, family_id=row["family_id"])
    return True


def revoke_all_for_user(conn: Connection, *, user_id: uuid.UUID | str) -> int:
    return execute(
        conn,
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
        (str(user_id),),
    )
