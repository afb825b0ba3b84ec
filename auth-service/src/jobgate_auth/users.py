"""Users: the `users` table and the rules around it (SQL lives only here).

Passwords are stored as argon2 hashes; the hash never leaves this module's callers
except through `authenticate`. Deactivation also ends every session and API key.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from jobgate.db import Connection, execute, fetch_all, fetch_one
from jobgate.errors import Conflict, InvalidRequest, NotFound
from jobgate.identity import DEFAULT_USER_SCOPES, KNOWN_SCOPES, ROLES
from jobgate_auth import api_keys, passwords, refresh_tokens
from jobgate_auth.scopes import normalize_scopes

log = logging.getLogger(__name__)

Row = dict[str, Any]

_COLUMNS = "id, username, role, scopes, is_active, created_at, updated_at"


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRequest("Unknown role", details={"role": role, "known_roles": list(ROLES)})


def default_scopes(role: str) -> list[str]:
    return list(KNOWN_SCOPES if role == "admin" else DEFAULT_USER_SCOPES)


def get_user(conn: Connection, *, user_id: uuid.UUID | str) -> Row | None:
    return fetch_one(conn, f"SELECT {_COLUMNS} FROM users WHERE id = %s", (str(user_id),))


def require_user(conn: Connection, *, user_id: uuid.UUID | str) -> Row:
    user = get_user(conn, user_id=user_id)
    if user is None:
        raise NotFound("User not found")
    return user


def list_users(conn: Connection, *, limit: int, offset: int) -> tuple[list[Row], int]:
    """One page of users, oldest first, and the total count."""
    rows = fetch_all(
        conn,
        f"SELECT {_COLUMNS} FROM users ORDER BY created_at, id LIMIT %s OFFSET %s",
        (limit, offset),
    )
    total = fetch_one(conn, "SELECT count(*) AS n FROM users")
    return rows, int(total["n"]) if total else 0


def create_user(
    conn: Connection,
    *,
    username: str,
    password: str,
    role: str = "user",
    scopes: Sequence[str] | None = None,
) -> Row:
    """Insert a user; a taken username is a Conflict (checked by the unique index, race-free)."""
    _check_role(role)
    granted = normalize_scopes(default_scopes(role) if scopes is None else scopes)
    row = _insert(conn, username, passwords.hash_password(password), role, granted)
    if row is None:
        raise Conflict("Username already exists", details={"username": username})
    return row


def authenticate(conn: Connection, *, username: str, password: str) -> Row | None:
    """The active user with these credentials, else None (one answer for every failure)."""
    row = fetch_one(
        conn,
        f"SELECT {_COLUMNS}, password_hash FROM users WHERE username = %s",
        (username,),
    )
    if row is None:
        passwords.burn_verification(password)
        return None
    password_hash = row.pop("password_hash")
    if not passwords.verify_password(password_hash, password) or not row["is_active"]:
        return None
    if passwords.needs_rehash(password_hash):
        execute(
            conn,
            "UPDATE users SET password_hash = %s WHERE id = %s",
            (passwords.hash_password(password), row["id"]),
        )
    return row


def _lock_user(conn: Connection, user_id: uuid.UUID | str) -> Row:
    row = fetch_one(conn, f"SELECT {_COLUMNS} FROM users WHERE id = %s FOR UPDATE", (str(user_id),))
    if row is None:
        raise NotFound("User not found")
    return row


def _guard_last_admin(conn: Connection, user: Row, *, role: str, is_active: bool) -> None:
    """Refuse to demote or deactivate the last active admin: nobody could administer after."""
    if not (user["role"] == "admin" and user["is_active"]):
        return
    if role == "admin" and is_active:
        return
    # Locking the other admins serialises two admins demoting each other at once.
    others = fetch_all(
        conn,
        "SELECT id FROM users WHERE role = 'admin' AND is_active AND id <> %s FOR UPDATE",
        (user["id"],),
    )
    if not others:
        raise Conflict("Cannot demote or deactivate the last active admin")


def update_user(
    conn: Connection,
    *,
    user_id: uuid.UUID | str,
    role: str | None = None,
    scopes: Sequence[str] | None = None,
    is_active: bool | None = None,
    password: str | None = None,
) -> Row:
    """Change the given fields (None = unchanged); a new password or deactivation ends sessions."""
    user = _lock_user(conn, user_id)
    changes: dict[str, Any] = {}
    if role is not None:
        _check_role(role)
        changes["role"] = role
    if scopes is not None:
        changes["scopes"] = normalize_scopes(scopes)
    if is_active is not None:
        changes["is_active"] = is_active
    if password is not None:
        changes["password_hash"] = passwords.hash_password(password)
    if not changes:
        return user
    _guard_last_admin(
        conn,
        user,
        role=changes.get("role", user["role"]),
        is_active=changes.get("is_active", user["is_active"]),
    )
    assignments = ", ".join(f"{column} = %s" for column in changes)
    row = fetch_one(
        conn,
        f"UPDATE users SET {assignments}, updated_at = now() WHERE id = %s RETURNING {_COLUMNS}",
        (*changes.values(), user["id"]),
    )
    assert row is not None  # locked above
    if password is not None or is_active is False:
        refresh_tokens.revoke_all_for_user(conn, user_id=user["id"])
    return row


def deactivate_user(conn: Connection, *, user_id: uuid.UUID | str) -> Row:
    """Soft delete: keep the row (jobs reference it) but revoke every way to act as the user."""
    row = update_user(conn, user_id=user_id, is_active=False)  # also ends refresh sessions
    api_keys.revoke_all_for_user(conn, user_id=row["id"])
    return row


def ensure_user(
    conn: Connection,
    *,
    username: str,
    role: str,
    scopes: Sequence[str],
    password: str | None,
) -> tuple[Row, bool]:
    """Create the user unless it exists (never touching an existing one); True if created.

    Safe when several processes bootstrap at once: the unique index decides, and the
    loser of the race reads the winner's row.
    """
    existing = fetch_one(conn, f"SELECT {_COLUMNS} FROM users WHERE username = %s", (username,))
    if existing is not None:
        return existing, False
    password_hash = (
        passwords.hash_password(password) if password else passwords.unusable_password_hash()
    )
    row = _insert(conn, username, password_hash, role, list(scopes))
    if row is not None:
        return row, True
    existing = fetch_one(conn, f"SELECT {_COLUMNS} FROM users WHERE username = %s", (username,))
    assert existing is not None
    return existing, False


def _insert(
    conn: Connection, username: str, password_hash: str, role: str, scopes: list[str]
) -> Row | None:
    """Insert a user row; None when the username is taken (the unique index decides)."""
    return fetch_one(
        conn,
        f"""
        INSERT INTO users (username, password_hash, role, scopes)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (username) DO NOTHING
        RETURNING {_COLUMNS}
        """,
        (username, password_hash, role, scopes),
    )
