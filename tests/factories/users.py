"""Users rows, for tests that need an owner but no login (no password hash is made)."""

from __future__ import annotations

import uuid
from typing import Any

from jobgate import db


def make_user(
    database: db.Database, *, username: str | None = None, role: str = "user"
) -> dict[str, Any]:
    """A users row with the default scopes; it owns jobs and files but cannot log in."""
    with database.transaction() as conn:
        return db.fetch_one(
            conn,
            "INSERT INTO users (username, password_hash, role, scopes)"
            " VALUES (%s, 'not-a-hash', %s, %s) RETURNING *",
            (username or f"user-{uuid.uuid4().hex[:8]}", role, ["jobs:read", "jobs:write"]),
        )
