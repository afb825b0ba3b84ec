"""Where the hub's events come from.

- `BrokerSource`: the `jobgate.events` exchange, through one exclusive, auto-deleted queue per
  process (aio-pika, reconnecting). It carries what the workers announce live and the
  database does not keep: progress ticks the moment they are written, a cache job's per-file
  events, a container's engine events. Best effort: a tick lost costs freshness only. Its
  copies of state changes only tell a job's stream that the worker's live events are over
  (they travel behind them), so the final state is not sent before the last ticks.
- `EventTail`: the `job_events` table, polled every STATS_POLL_SECONDS. Every state change of
  every job is a row there (the database's triggers write them, whichever process made the
  change: a worker, the gateway cancelling a pending job, a retry), each with its id, so the
  streams that must not lose an event (SSE with `Last-Event-ID`) and every status message come
  from here, never from the broker.
- `Sampler`: snapshots every STATS_METRICS_SECONDS for the metrics streams (the host's CPU and
  memory, and each reader's dashboard numbers).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import time
from typing import Any

import aio_pika
import anyio
import psutil

from jobgate import analytics, db
from jobgate.broker import EVENTS_EXCHANGE
from jobgate.jobs import events as job_events
from jobgate.timefmt import iso_ms, now_iso_ms
from jobgate_stats.hub import Event, Hub

log = logging.getLogger(__name__)

QUEUE_MAX_LENGTH = 10_000  # a stalled process's queue keeps the newest events only
RETRY_S = 1.0
RETRY_MAX_S = 15.0


def event_from_message(routing_key: str, body: dict[str, Any]) -> Event | None:
    """A broker message -> an Event (None for what is not a job event)."""
    parts = routing_key.split(".")
    if len(parts) != 3 or parts[0] != "job":
        return None
    job_id, kind = body.get("job_id"), body.get("kind") or parts[1]
    if not isinstance(job_id, str):
        return None
    head = {"job_id", "kind", "owner_id", "event", "ts"}
    return Event(
        name=parts[2],
        job_id=job_id,
        kind=str(kind),
        owner_id=body.get("owner_id"),
        data={k: v for k, v in body.items() if k not in head},
        source="broker",
        id=body.get("event_id"),
        ts=body.get("ts"),
    )


def event_from_row(row: dict[str, Any]) -> Event:
    return Event(
        name=row["event"],
        job_id=str(row["job_id"]),
        kind=row["kind"],
        owner_id=str(row["owner_id"]),
        data={**(row["data"] or {}), "attempt": row["attempt"]},
        source="db",
        id=int(row["id"]),
        ts=iso_ms(row["created_at"]),
    )


class BrokerSource:
    """Consumes `job.#` from `jobgate.events` into the hub until stopped."""

    def __init__(self, amqp_url: str, hub: Hub) -> None:
        self.amqp_url = amqp_url
        self.hub = hub
        self.connected = False

    async def run(self) -> None:
        delay = RETRY_S
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker comes back; so do we
                self.connected = False
                log.warning("events exchange unavailable (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _consume(self) -> None:
        connection = await aio_pika.connect_robust(
            self.amqp_url, client_properties={"connection_name": "jobgate-stats"}
        )
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1000)
            exchange = await channel.declare_exchange(
                EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(
                exclusive=True,
                auto_delete=True,
                arguments={"x-max-length": QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
            )
            await queue.bind(exchange, routing_key="job.#")
            self.connected = True
            log.info("consuming %s (job.#) on %s", EVENTS_EXCHANGE, queue.name)
            async with queue.iterator(no_ack=True) as messages:
                async for message in messages:
                    self._dispatch(message)

    def _dispatch(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            body = json.loads(message.body)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        event = event_from_message(message.routing_key or "", body)
        if event is not None:
            self.hub.publish(event)


class GapCursor:
    """Reads a table by increasing id when ids are not handed out in commit order.

    `low` is the id up to which everything was delivered (or given up). Ids above it that
    were delivered are remembered in `seen`; an id not seen while higher ones are is a gap:
    a transaction still open (its row comes later) or one rolled back (it never comes). The
    cursor waits `gap_s` seconds for a gap before passing it, and re-reads from `low`, so a
    late commit is still delivered once. A job's own events never overtake each other (its
    writers hold the job's row lock), so per job the order stays right.
    """

    def __init__(self, low: int, *, gap_s: float = 5.0) -> None:
        self.low = low
        self.gap_s = gap_s
        self.seen: set[int] = set()
        self.gaps: dict[int, float] = {}

    def take(self, rows: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
        now = time.monotonic() if now is None else now
        fresh = [row for row in rows if row["id"] > self.low and row["id"] not in self.seen]
        self.seen.update(row["id"] for row in fresh)
        top = max(self.seen, default=self.low)
        if top - self.low > 100_000:  # ids jumped (a restored sequence): do not count them
            self.low, self.seen, self.gaps = top, set(), {}
            return fresh
        for missing in range(self.low + 1, top):
            if missing not in self.seen:
                self.gaps.setdefault(missing, now)
        while self.low < top:
            nxt = self.low + 1
            if nxt in self.seen:
                self.seen.discard(nxt)
            elif now - self.gaps.get(nxt, now) < self.gap_s:
                break
            self.gaps.pop(nxt, None)
            self.low = nxt
        return fresh


class EventTail:
    """Polls `job_events` for new rows and publishes them, in id order, to the hub."""

    def __init__(
        self,
        database: db.Database,
        hub: Hub,
        *,
        poll_s: float,
        gap_s: float = 5.0,
        batch: int = 2000,
    ) -> None:
        self.database = database
        self.hub = hub
        self.poll_s = poll_s
        self.gap_s = gap_s
        self.batch = batch
        self.cursor: GapCursor | None = None
        self.healthy = False

    def _read(self, after_id: int | None) -> tuple[int, list[dict[str, Any]]]:
        with self.database.transaction() as conn:
            if after_id is None:
                return job_events.last_id(conn), []
            return after_id, job_events.after(conn, after_id=after_id, limit=self.batch)

    async def run(self) -> None:
        delay = RETRY_S
        while True:
            try:
                low = None if self.cursor is None else self.cursor.low
                start, rows = await anyio.to_thread.run_sync(self._read, low)
                if self.cursor is None:
                    self.cursor = GapCursor(start, gap_s=self.gap_s)
                for row in self.cursor.take(rows):
                    self.hub.publish(event_from_row(row))
                self.healthy, delay = True, RETRY_S
                if len(rows) < self.batch:
                    await asyncio.sleep(self.poll_s)
            except asyncio.CancelledError:
                raise
            except db.UNAVAILABLE as exc:
                self.healthy = False
                log.warning("job events unreadable (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)


def system_metrics() -> dict[str, Any]:
    """The host's CPU use (percent since the last call) and memory in use (bytes)."""
    memory = psutil.virtual_memory()
    return {
        "cpu_usage": psutil.cpu_percent(interval=None),
        "memory_usage": memory.total - memory.available,
        "memory_total": memory.total,
        "timestamp": now_iso_ms(),
    }


ReaderKey = tuple[str | None, str | None]  # (owner filter, workers reader): None = admin


class Sampler:
    """Every `interval_s`, one snapshot for the metrics streams: the host's numbers, and the
    dashboard of each distinct reader listening (computed once per reader, not per client)."""

    def __init__(self, database: db.Database, hub: Hub, *, interval_s: float) -> None:
        self.database = database
        self.hub = hub
        self.interval_s = interval_s
        self._readers: collections.Counter[ReaderKey] = collections.Counter()
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def listen(self, reader: ReaderKey) -> None:
        self._readers[reader] += 1

    def forget(self, reader: ReaderKey) -> None:
        self._readers[reader] -= 1
        if self._readers[reader] <= 0:
            del self._readers[reader]

    def dashboards(self, readers: set[ReaderKey]) -> dict[ReaderKey, dict[str, Any]]:
        if not readers:
            return {}
        with self.database.transaction() as conn:
            return {
                reader: analytics.dashboard(
                    conn, owner_id=reader[0], kind=None, reader_id=reader[1]
                )
                for reader in readers
            }

    async def snapshot(self, readers: set[ReaderKey] | None = None) -> Event:
        """A snapshot for `readers` (default: everyone listening now)."""
        wanted = set(self._readers) if readers is None else readers
        boards: dict[ReaderKey, dict[str, Any]] = {}
        try:
            boards = await anyio.to_thread.run_sync(self.dashboards, wanted)
        except db.UNAVAILABLE as exc:
            log.warning("metrics without dashboards: %s", exc)
        return Event(
            name="metrics",
            job_id="",
            kind="",
            owner_id=None,
            data={"system": system_metrics(), "dashboards": boards},
            source="sampler",
            ts=now_iso_ms(),
        )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                event = await self.snapshot()
                self.hub.tick(event)
                self.hub.tick(dataclasses.replace(event, name="system_metric"))
            except asyncio.CancelledError:
                raise
            except Exception:  # the next round tries again
                log.exception("metrics snapshot failed")
