"""Transactional outbox: messages are written with the state change, published after commit.

`add_*` runs inside the caller's transaction; `relay` publishes committed rows with
confirms and deletes each one the broker confirmed. The gateway relays its own rows
right after commit (warehouse's publish-after-commit); every worker's housekeeping
loop relays whatever is left (broker down, gateway killed between commit and publish).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pika.exceptions
import psycopg2.extras

from jobgate import db
from jobgate.broker import (
    CONNECTION_ERRORS,
    JOBS_EXCHANGE,
    RETRY_DELAY_HEADER,
    RETRY_EXCHANGE,
    Publisher,
)
from jobgate.messages import JobMessage, job_message_properties

log = logging.getLogger(__name__)

# The broker refused this one message (no queue bound, or a nack); it stays in the outbox.
REFUSED = (pika.exceptions.UnroutableError, pika.exceptions.NackError)


def add(
    conn: db.Connection,
    *,
    exchange: str,
    routing_key: str,
    body: dict[str, Any],
    properties: dict[str, Any],
) -> int:
    row = db.fetch_one(
        conn,
        "INSERT INTO outbox (exchange, routing_key, body, properties)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        (exchange, routing_key, body, properties),
    )
    return int(row["id"])


def add_job_message(
    conn: db.Connection,
    *,
    job: dict[str, Any],
    app_id: str,
    request_id: str | None = None,
    delay_s: int | None = None,
) -> int:
    """Queue the message that makes a worker pick `job` up (after `delay_s` seconds if set)."""
    exchange, routing_key, body, properties = _job_message(
        job, app_id=app_id, request_id=request_id, delay_s=delay_s
    )
    return add(conn, exchange=exchange, routing_key=routing_key, body=body, properties=properties)


def _job_message(
    job: dict[str, Any], *, app_id: str, request_id: str | None, delay_s: int | None = None
) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """(exchange, routing key, body, properties) of the message for the job's next attempt."""
    attempt = int(job["attempt"]) + 1
    message = JobMessage(job_id=str(job["id"]), kind=job["kind"], attempt=attempt)
    extra = {RETRY_DELAY_HEADER: f"{delay_s}s"} if delay_s else None
    properties = job_message_properties(
        job_id=str(job["id"]),
        attempt=attempt,
        priority=int(job["priority"]),
        owner_id=str(job["owner_id"]),
        request_id=request_id or job.get("request_id"),
        app_id=app_id,
        extra_headers=extra,
    )
    exchange = RETRY_EXCHANGE if delay_s else JOBS_EXCHANGE
    return exchange, job["kind"], message.to_body(), properties


def add_job_messages(
    conn: db.Connection, *, jobs: Sequence[dict[str, Any]], app_id: str, request_id: str | None
) -> list[int]:
    """`add_job_message` for many new jobs in one statement (a batch submission); the ids
    in the jobs' order."""
    if not jobs:
        return []
    values = [_job_message(job, app_id=app_id, request_id=request_id) for job in jobs]
    with conn.cursor() as cur:
        rows = psycopg2.extras.execute_values(
            cur,
            "INSERT INTO outbox (exchange, routing_key, body, properties) VALUES %s RETURNING id",
            values,
            page_size=len(values),
            fetch=True,
        )
    return [int(row["id"]) for row in rows]


def relay(
    database: db.Database,
    publisher: Publisher,
    *,
    ids: Sequence[int] | None = None,
    min_age_s: float = 0.0,
    limit: int = 500,
) -> int:
    """Publish committed outbox rows (these `ids`, or any older than `min_age_s`).

    Rows are locked with SKIP LOCKED so concurrent relays never publish the same row
    twice at once; a row is deleted only after the broker confirmed it. Returns the
    number published; stops at the first broker failure and leaves the rest.
    """
    confirmed: list[int] = []
    with database.transaction() as conn:
        if ids is not None:
            rows = db.fetch_all(
                conn,
                "SELECT * FROM outbox WHERE id = ANY(%s) ORDER BY id FOR UPDATE SKIP LOCKED",
                (list(ids),),
            )
        else:
            rows = db.fetch_all(
                conn,
                "SELECT * FROM outbox WHERE created_at <= now() - make_interval(secs => %s)"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (min_age_s, limit),
            )
        for row in rows:
            try:
                publisher.publish(
                    row["exchange"], row["routing_key"], row["body"], row["properties"]
                )
            except (*REFUSED, *CONNECTION_ERRORS) as exc:
                log.warning("outbox row %s not published yet: %s", row["id"], exc)
                db.execute(
                    conn,
                    "UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE id = %s",
                    (str(exc)[:500] or type(exc).__name__, row["id"]),
                )
                if isinstance(exc, REFUSED):
                    continue  # this row only: the ones after it may well go through
                break  # the broker is gone: try again next round
            confirmed.append(row["id"])
        # One statement for every confirmed row (a batch submission's are many); the rows
        # stay locked until this commits, so no other relay publishes them meanwhile.
        if confirmed:
            db.execute(conn, "DELETE FROM outbox WHERE id = ANY(%s)", (confirmed,))
    return len(confirmed)


def pending_count(conn: db.Connection) -> int:
    return int(db.fetch_one(conn, "SELECT count(*) AS n FROM outbox")["n"])
