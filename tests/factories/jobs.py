"""Jobs rows and their messages, and one params maker per kind (what the kind's contract
accepts), so a new kind adds its maker here rather than in each test module."""

from __future__ import annotations

import time
from typing import Any

from jobgate import db, jobs, outbox
from jobgate.broker import Publisher
from jobgate.jobs import job_items, submission


def cache_params(items: list[tuple[str, int]]) -> dict[str, Any]:
    """Params that the cache kind's contract accepts, naming the items' files."""
    return {"files": [path for path, _ in items] or ["placeholder"], "directories": []}


def convert_params(input_file: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Params that the convert kind's contract accepts, converting the `input_file` row."""
    return {"input_file": str(input_file["id"]), **fields}


def scrape_params(mode: str = "profile", value: str = "alice", **fields: Any) -> dict[str, Any]:
    """Params that the scrape kind's contract accepts: a profile (or hashtag) and options."""
    return {"mode": mode, "value": value, **fields}


def container_params(image: str = "busybox", **fields: Any) -> dict[str, Any]:
    """Params that the container kind's contract accepts, stored as it dumps them: `command`
    (default `["true"]`) in the offline busybox image unless `image` is given."""
    from jobgate.kinds import container

    spec = container.SPEC
    return spec.dump_params(spec.load_params({"image": image, "command": ["true"], **fields}))


def make_job(
    database: db.Database,
    *,
    owner_id: Any,
    kind: str = "cache",
    items: list[tuple[str, int]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A jobs row (and its items) as submission writes it; cache params for the items
    unless `params` are given."""
    items = items or []
    with database.transaction() as conn:
        job = submission.create_job(
            conn,
            job_id=jobs.new_job_id(),
            kind=kind,
            owner_id=str(owner_id),
            params=fields.pop("params", None) or cache_params(items),
            items_total=len(items),
            bytes_total=sum(size for _, size in items),
            **fields,
        )
        if items:
            job_items.insert_items(conn, job_id=str(job["id"]), items=items)
    return job


def enqueue(database: db.Database, amqp_url: str, job: dict[str, Any]) -> None:
    """Publish a job's message the way the gateway does: outbox row, then relay."""
    with database.transaction() as conn:
        row_id = outbox.add_job_message(conn, job=job, app_id="test")
    publisher = Publisher(amqp_url, app_id="test")
    try:
        outbox.relay(database, publisher, ids=[row_id])
    finally:
        publisher.close()


def wait_for_job(
    database: db.Database, job_id: Any, statuses: set[str], timeout: float = 30.0, until: Any = None
) -> dict[str, Any]:
    """Poll the job row until its status is one of `statuses` (and `until(job)` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.transaction() as conn:
            job = jobs.get_job(conn, job_id=str(job_id))
        if job["status"] in statuses and (until is None or until(job)):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job stayed {job['status']} ({job['progress_pct']}%), wanted {statuses}")


def set_job_columns(database: db.Database, job: dict[str, Any], **columns: Any) -> dict[str, Any]:
    """Move a job row to the state a test needs (status, timestamps, progress, details, ...)
    as a worker would have left it; returns the row. Column names are the test's own."""
    assignments = ", ".join(f"{name} = %({name})s" for name in columns)
    with database.transaction() as conn:
        return db.fetch_one(
            conn,
            f"UPDATE jobs SET {assignments}, updated_at = now() WHERE id = %(_id)s RETURNING *",
            {**columns, "_id": str(job["id"])},
        )
