"""Rows for tests (warehouse-style factories), written through the real domain functions."""

from __future__ import annotations

import uuid
from typing import Any

from jobgate import db, jobs


def make_user(
    database: db.Database, *, username: str | None = None, role: str = "user"
) -> dict[str, Any]:
    with database.transaction() as conn:
        return db.fetch_one(
            conn,
            "INSERT INTO users (username, password_hash, role, scopes)"
            " VALUES (%s, 'not-a-hash', %s, %s) RETURNING *",
            (username or f"user-{uuid.uuid4().hex[:8]}", role, ["jobs:read", "jobs:write"]),
        )


def make_job(
    database: db.Database,
    *,
    owner_id: Any,
    kind: str = "cache",
    items: list[tuple[str, int]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    items = items or []
    with database.transaction() as conn:
        job = jobs.create_job(
            conn,
            job_id=jobs.new_job_id(),
            kind=kind,
            owner_id=str(owner_id),
            params=fields.pop("params", {}),
            items_total=len(items),
            bytes_total=sum(size for _, size in items),
            **fields,
        )
        if items:
            jobs.insert_items(conn, job_id=str(job["id"]), items=items)
    return job
