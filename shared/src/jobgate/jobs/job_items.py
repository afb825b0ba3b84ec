"""The `job_items` table: a job's units of work, so a resumed attempt skips work done.

An item is whatever a kind counts progress in: a file to read (cache, key = its path
relative to the root), a video (scrape, key = its id), an input or output file (container,
key = its name). `size` is in bytes (0 when unknown), `meta` holds kind-specific details.
Items are numbered (`seq`) in the order they were stored; workers mark them by number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import psycopg2.extensions
import psycopg2.extras

from jobgate import db


class NewItem(NamedTuple):
    """One unit of work to store; a plain `(key, size)` tuple is accepted too."""

    key: str
    size: int = 0  # bytes
    meta: dict[str, Any] | None = None


def insert_items(
    conn: db.Connection, *, job_id: str, items: Iterable[NewItem | tuple[Any, ...]]
) -> None:
    """Store a job's items, numbered in order."""
    _insert(conn, job_id=job_id, first_seq=0, items=items)


def _insert(
    conn: db.Connection, *, job_id: str, first_seq: int, items: Iterable[NewItem | tuple[Any, ...]]
) -> None:
    # COPY, not INSERT: a cache job over a folder tree stores tens of thousands of items,
    # and COPY takes 10,000 in a fraction of the time multi-row INSERTs did (issue 13).
    # CSV with every text field quoted carries any key (tabs, newlines, quotes, even ""); a
    # missing meta is written "" and read back as NULL (FORCE_NULL).
    buffer = io.StringIO()
    out = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    for n, item in enumerate(NewItem(*raw) for raw in items):
        meta = None if item.meta is None else json.dumps(item.meta)
        out.writerow((job_id, first_seq + n, item.key, item.size, meta))
    buffer.seek(0)
    with conn.cursor() as cur:
        cur.copy_expert(
            "COPY job_items (job_id, seq, key, size, meta) FROM STDIN"
            " WITH (FORMAT csv, FORCE_NULL (meta))",
            buffer,
        )


def append_items(
    conn: db.Connection, *, job_id: str, items: Iterable[NewItem | tuple[Any, ...]]
) -> int:
    """Store items a worker found while running (a scrape job lists its videos), numbered
    after those already stored, and make `items_total` count them all; returns that total."""
    row = db.fetch_one(
        conn,
        "SELECT coalesce(max(seq) + 1, 0) AS next FROM job_items WHERE job_id = %s",
        (job_id,),
    )
    _insert(conn, job_id=job_id, first_seq=int(row["next"]), items=items)
    total = db.fetch_one(
        conn,
        "UPDATE jobs SET items_total = (SELECT count(*) FROM job_items WHERE job_id = %(id)s)"
        " WHERE id = %(id)s RETURNING items_total",
        {"id": job_id},
    )
    return int(total["items_total"]) if total else 0


def record_inputs(
    conn: db.Connection, *, job_id: str, inputs: Iterable[tuple[str, int, dict[str, Any]]]
) -> None:
    """Items recording what a job read, `(key, size, meta)` with the file's id in `meta`
    (`{"file_id": ...}`): done at once, numbered after the job's other items, `items_total`
    untouched (they are not work to do). `jobgate.files.file_in_use` finds the ids there, so
    a file replaced at its path keeps its row and object while the job refers to it. An
    input already recorded (an earlier attempt read the same file) is not added again."""
    for key, size, meta in inputs:
        db.execute(
            conn,
            """
            INSERT INTO job_items (job_id, seq, key, size, status, meta)
            SELECT %(job)s, coalesce(max(seq) + 1, 0), %(key)s, %(size)s, 'done', %(meta)s
            FROM job_items WHERE job_id = %(job)s
            HAVING NOT coalesce(bool_or(meta @> %(meta)s::jsonb), false)
            """,
            {"job": job_id, "key": key, "size": size, "meta": meta},
        )


def open_items(conn: db.Connection, *, job_id: str) -> list[dict[str, Any]]:
    """Items not yet done (pending or failed), in order: what a (resumed) attempt must do."""
    return db.fetch_all(
        conn,
        "SELECT seq, key, size, meta FROM job_items WHERE job_id = %s AND status <> 'done'"
        " ORDER BY seq",
        (job_id,),
    )


class OpenItem(NamedTuple):
    """An item an attempt must still do (pending, or failed in an earlier attempt)."""

    seq: int
    key: str
    size: int
    meta: dict[str, Any] | None


def open_items_with_totals(
    conn: db.Connection, *, job_id: str
) -> tuple[list[OpenItem], dict[str, int]]:
    """`open_items` and `item_totals` in one round trip: what a (resumed) attempt must do,
    and the counters of what earlier attempts did. Tuples rather than dict rows: a job may
    hold a great many items."""
    with conn.cursor(cursor_factory=psycopg2.extensions.cursor) as cur:
        cur.execute(
            """
            SELECT t.items_done, t.items_failed, t.bytes_done, i.seq, i.key, i.size, i.meta
            FROM (SELECT count(*) FILTER (WHERE status = 'done') AS items_done,
                         count(*) FILTER (WHERE status = 'failed') AS items_failed,
                         coalesce(sum(size) FILTER (WHERE status = 'done'), 0) AS bytes_done
                  FROM job_items WHERE job_id = %(id)s) AS t
            LEFT JOIN job_items AS i ON i.job_id = %(id)s AND i.status <> 'done'
            ORDER BY i.seq
            """,
            {"id": job_id},
        )
        rows = cur.fetchall()
    done, failed, nbytes = rows[0][:3]
    totals = {"items_done": int(done), "items_failed": int(failed), "bytes_done": int(nbytes)}
    # No open item: one row of totals, its item columns NULL (the LEFT JOIN found nothing).
    items = [
        OpenItem(seq, key, int(size), meta) for *_, seq, key, size, meta in rows if seq is not None
    ]
    return items, totals


def item_totals(conn: db.Connection, *, job_id: str) -> dict[str, int]:
    """Counters recomputed from the items, so a resumed job never counts an item twice."""
    row = db.fetch_one(
        conn,
        """
        SELECT count(*) FILTER (WHERE status = 'done') AS items_done,
               count(*) FILTER (WHERE status = 'failed') AS items_failed,
               coalesce(sum(size) FILTER (WHERE status = 'done'), 0) AS bytes_done
        FROM job_items WHERE job_id = %s
        """,
        (job_id,),
    )
    return {k: int(v) for k, v in row.items()}


def mark_items(
    conn: db.Connection,
    *,
    job_id: str,
    done: Sequence[int] = (),
    failed: dict[int, str] | None = None,
    sizes: dict[int, int] | None = None,
    durable: bool = True,
) -> None:
    """Mark items (by `seq`) done, or failed with their error; `sizes` sets the bytes of
    done items whose size was unknown when they were stored (a downloaded video).

    One statement (one round trip) whatever the number of items. `durable=False` relaxes
    the transaction's durability in the same round trip (`db.RELAXED`): for
    progress that may be redone after a database crash."""
    # seq -> [status, error, size]; a null status or size leaves the column as it is.
    rows: dict[str, list[Any]] = {}
    for seq in done:
        rows[str(int(seq))] = ["done", None, None]
    for seq, error in (failed or {}).items():
        rows[str(int(seq))] = ["failed", error, None]
    for seq, size in (sizes or {}).items():
        rows.setdefault(str(int(seq)), [None, None, None])[2] = int(size)
    relax = "" if durable else db.RELAXED
    if not rows:
        if relax:
            db.relax_durability(conn)
        return
    seqs = [int(seq) for seq in rows]
    # The rows are found by a range of the primary key, whatever the table's statistics say:
    # a job's items were often inserted moments ago, and a planner that believes the job has
    # a few rows would rather filter them all than look each `seq` up.
    where = "job_id = %(job)s AND seq BETWEEN %(lo)s AND %(hi)s AND seq = ANY(%(seqs)s)"
    params = {"job": job_id, "lo": min(seqs), "hi": max(seqs), "seqs": seqs}
    if not failed and not sizes:  # the common case, and the cheapest statement
        sql = f"UPDATE job_items SET status = 'done', error = NULL WHERE {where}"
        db.execute(conn, relax + sql, params)
        return
    # Each row looks its change up in the map: no join for the planner to get wrong.
    db.execute(
        conn,
        relax
        + """
        UPDATE job_items AS i
        SET status = coalesce(c.m -> i.seq::text ->> 0, i.status),
            error = CASE WHEN c.m -> i.seq::text ->> 0 IS NULL THEN i.error
                         ELSE c.m -> i.seq::text ->> 1 END,
            size = coalesce((c.m -> i.seq::text ->> 2)::bigint, i.size)
        FROM (SELECT %(rows)s::jsonb AS m) AS c
        WHERE """
        + where,
        {**params, "rows": rows},
    )


def reset_failed_items(conn: db.Connection, *, job_id: str) -> None:
    """Failed items become pending again: the next attempt tries them once more."""
    db.execute(
        conn,
        "UPDATE job_items SET status = 'pending', error = NULL"
        " WHERE job_id = %s AND status = 'failed'",
        (job_id,),
    )
    db.execute(conn, "UPDATE jobs SET items_failed = 0 WHERE id = %s", (job_id,))


def failed_items(conn: db.Connection, *, job_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Failed items as the APIs report them, `{path, error}`: seed 000's `failedFiles` and
    the canonical `failures` call an item's key its `path`, and their clients read that."""
    return db.fetch_all(
        conn,
        "SELECT key AS path, error FROM job_items WHERE job_id = %s AND status = 'failed'"
        " ORDER BY seq LIMIT %s",
        (job_id, limit),
    )
