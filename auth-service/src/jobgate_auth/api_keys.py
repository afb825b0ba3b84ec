"""API keys: the `api_keys` table. Shown once, stored as a display prefix + SHA-256 hash.

Keys are 256-bit random strings, so a fast hash looked up by equality is safe (no
dictionary attack to slow down) and keeps `/validate` cheap; passwords get argon2.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from jobgate.db import Connection, execute, fetch_all, fetch_one

Row = dict[str, Any]

KEY_PREFIX = "jg_"
DISPLAY_PREFIX_LENGTH = 12

_COLUMNS = "id, user_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """The start of a key, to recognise it in a list; at most a quarter of a short key,
    so a short externally chosen key (the bootstrap key) is not half disclosed."""
    if key.startswith(KEY_PREFIX):
        return key[:DISPLAY_PREFIX_LENGTH]
    return key[: min(DISPLAY_PREFIX_LENGTH, len(key) // 4)]


def create_key(
    conn: Connection,
    *,
    user_id: uuid.UUID | str,
    name: str,
    scopes: Sequence[str],
    expires_in_days: int | None = None,
) -> tuple[Row, str]:
    """Store a new key and return its row and the full key, which is never retrievable again."""
    key = generate_key()
    row = fetch_one(
        conn,
        f"""
        INSERT INTO api_keys (user_id, name, prefix, key_hash, scopes, expires_at)
        VALUES (%s, %s, %s, %s, %s,
                CASE WHEN %s::int IS NULL THEN NULL ELSE now() + make_interval(days => %s::int) END)
        RETURNING {_COLUMNS}
        """,
        (
            str(user_id),
            name,
            display_prefix(key),
            hash_key(key),
            list(scopes),
            expires_in_days,
            expires_in_days,
        ),
    )
    assert row is not None
    return row, key


def list_keys(
    conn: Connection, *, user_id: uuid.UUID | str, include_revoked: bool = False
) -> list[Row]:
    where = "user_id = %s" if include_revoked else "user_id = %s AND revoked_at IS NULL"
    return fetch_all(
        conn,
        f"SELECT {_COLUMNS} FROM api_keys WHERE {where} ORDER BY created_at, id",
        (str(user_id),),
    )


def revoke_key(
    conn: Connection, *, key_id: uuid.UUID | str, owner_id: uuid.UUID | str | None
) -> Row | None:
    """Revoke a key (idempotent); with `owner_id`, only that user's key. None if not found."""
    sql = f"""
        UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
        WHERE id = %s {"AND user_id = %s" if owner_id is not None else ""}
        RETURNING {_COLUMNS}
    """
    params = (str(key_id), str(owner_id)) if owner_id is not None else (str(key_id),)
    return fetch_one(conn, sql, params)


def revoke_all_for_user(conn: Connection, *, user_id: uuid.UUID | str) -> int:
    return execute(
        conn,
        "UPDATE api_keys SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
        (str(user_id),),
    )


def lookup_key(conn: Connection, *, key: str) -> Row | None:
    """The usable key and its owner (unrevoked, unexpired, active user), else None.

    Marks the key used at most once a minute, so validation does not write on every call.
    """
    row = fetch_one(
        conn,
        """
        SELECT k.id AS key_id, k.scopes AS key_scopes, k.last_used_at,
               u.id AS user_id, u.username, u.role, u.scopes AS user_scopes
        FROM api_keys k JOIN users u ON u.id = k.user_id
        WHERE k.key_hash = %s
          AND k.revoked_at IS NULL
          AND (k.expires_at IS NULL OR k.expires_at > now())
          AND u.is_active
        """,
        (hash_key(key),),
    )
    if row is None:
        return None
    execute(
        conn,
        """
        UPDATE api_keys SET last_used_at = now()
        WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
        """,
        (row["key_id"],),
    )
    return row


def ensure_key(
    conn: Connection, *, key: str, user_id: uuid.UUID | str, name: str, scopes: Sequence[str]
) -> Row:
    """Make sure a row for this exact key exists (bootstrap); an existing row is left as is,
    so a key an operator revoked stays revoked."""
    fetch_one(
        conn,
        """
        INSERT INTO api_keys (user_id, name, prefix, key_hash, scopes)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (key_hash) DO NOTHING
        RETURNING id
        """,
        (str(user_id), name, display_prefix(key), hash_key(key), list(scopes)),
    )
    row = fetch_one(conn, f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = %s", (hash_key(key),))
    assert row is not None
    return row
