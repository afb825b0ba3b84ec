"""Transactional outbox: messages are written with the state change, published after commit.

`add_*` runs inside the caller's transaction; `relay` publishes committed rows in one
AMQP transaction and deletes the ones the broker took. The gateway relays its own rows
right after commit (warehouse's publish-after-commit); every worker's housekeeping
loop relays whatever is left (broker down, gateway killed between commit and publish).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg2.extras

from jobgate import db
from jobgate.broker import (
    CONNECTION_ERRORS,
    JOBS_EXCHANGE,
    RETRY_DELAY_HEADER,
    RETRY_EXCHANGE,
    Outgoing,
    Publisher,
)
from jobgate.messages import JobMessage, job_message_properties

log = logging.getLogger(__name__)


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
    exchange, routing_key, body, properties = job_message(
        job, app_id=app_id, request_id=request_id, delay_s=delay_s
    )
    return add(conn, exchange=exchange, routing_key=routing_key, body=body, properties=properties)


def job_message(
    job: dict[str, Any], *, app_id: str, request_id: str | None, delay_s: int | None = None
) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """(exchange, routing key, body, properties) of the message for the job's next attempt:
    `job` needs its id, kind, attempt, priority, owner_id (and request_id)."""
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
    values = [job_message(job, app_id=app_id, request_id=request_id) for job in jobs]
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
    twice at once; they go to the broker in one AMQP transaction, and the database
    transaction that took them out of the table commits only once the broker took
    responsibility for them (commit answered; rows returned as unroutable are put back with
    the failure counted). Returns the number published; on a broker failure every row stays
    for the next round.
    """
    with database.transaction() as conn:
        # Taken out of the table and locked in one statement; they come back if the publish
        # fails (rollback). Losing this commit in a database crash only publishes them again
        # (workers drop duplicate deliveries), so it need not wait for the WAL flush.
        if ids is not None:
            which, params = "id = ANY(%s)", [list(ids)]
        else:
            which = "created_at <= now() - make_interval(secs => %s)"
            params = [min_age_s]
        rows = db.fetch_all(
            conn,
            db.RELAXED
            + f"""
            DELETE FROM outbox WHERE id IN (
                SELECT id FROM outbox WHERE {which} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
            RETURNING *
            """,
            [*params, limit if ids is None else len(ids)],
        )
        if not rows:
            return 0
        rows.sort(key=lambda row: row["id"])
        messages = [
            Outgoing(row["exchange"], row["routing_key"], row["body"], row["properties"])
            for row in rows
        ]
        try:
            refused = publisher.publish_many(messages)
        except CONNECTION_ERRORS as exc:
            conn.rollback()  # every row back, still unpublished
            log.warning("%d outbox row(s) not published yet: %s", len(rows), exc)
            _note_failure(conn, [row["id"] for row in rows], str(exc) or type(exc).__name__)
            return 0
        if refused:
            kept = [rows[i] for i in sorted(refused)]
            log.warning(
                "outbox rows %s returned as unroutable; kept for the relay",
                [row["id"] for row in kept],
            )
            _put_back(conn, kept, "unroutable: no queue bound for the routing key")
    return len(rows) - len(refused)


EXIT_FLUSH_S = 5.0


class BackgroundRelay:
    """`relay` from a thread of its own, for a process whose requests commit outbox rows: a
    request hands over its ids and answers at once; the thread publishes whatever has
    accumulated in one AMQP transaction — at once when idle, many requests' messages per
    broker commit under load. What it cannot publish stays in the table for the workers'
    housekeeping relay, exactly as when a request's own publish failed. The thread starts
    on first use in each process (gunicorn forks workers after the app is made)."""

    def __init__(self, database: db.Database, publisher: Publisher, *, batch_max: int = 1000):
        self.database = database
        self.publisher = publisher
        self.batch_max = batch_max
        self._pending: list[int] = []
        self._busy = False
        self._cond = threading.Condition()
        self._pid: int | None = None

    def submit(self, ids: Sequence[int]) -> None:
        with self._cond:
            self._pending.extend(ids)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="outbox-relay", daemon=True).start()
                atexit.register(self.flush, EXIT_FLUSH_S)  # a graceful stop publishes the rest
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every id handed over was tried; False on timeout (tests; exit)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch = self._pending[: self.batch_max]
                del self._pending[: self.batch_max]
                self._busy = True
            try:
                relay(self.database, self.publisher, ids=batch)
            except Exception as exc:  # noqa: BLE001 - the rows stay; housekeeping relays them
                log.warning("publish deferred to the outbox relay: %s", exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


def _put_back(conn: db.Connection, rows: list[dict[str, Any]], error: str) -> None:
    """Rows this relay took out but the broker refused: back, with the failure counted."""
    with conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO outbox (id, exchange, routing_key, body, properties, created_at,"
            " attempts, last_error) VALUES %s",
            [
                (
                    row["id"],
                    row["exchange"],
                    row["routing_key"],
                    row["body"],
                    row["properties"],
                    row["created_at"],
                    row["attempts"] + 1,
                    error[:500],
                )
                for row in rows
            ],
        )


def _note_failure(conn: db.Connection, ids: list[int], error: str) -> None:
    db.execute(
        conn,
        "UPDATE outbox SET attempts = attempts + 1, last_error = %s WHERE id = ANY(%s)",
        (error[:500], ids),
    )


def pending_count(conn: db.Connection) -> int:
    return int(db.fetch_one(conn, "SELECT count(*) AS n FROM outbox")["n"])
