"""Fan-out of job events to stream clients, each behind its own bounded queue.

Sources (`jobgate_stats.sources`) hand every event to `Hub.publish`, which never waits: it
finds the subscribers that may see the event (by job, by owner, or every job for admins),
renders each message once per format, and offers it to each subscriber's queue. A slow
client therefore never holds up the others: when its queue is full it loses its oldest
progress ticks; when nothing in it may be dropped (state changes) it is closed, and a
client that reconnects resumes from PostgreSQL (`Last-Event-ID`) or from a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

# Events whose loss costs only freshness: the next one says as much.
DROPPABLE = frozenset({"progress", "file", "metrics", "system_metric"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclasses.dataclass(frozen=True)
class Event:
    """One job event, from the broker (live ticks) or from `job_events` (with its `id`)."""

    name: str  # created, started, retrying, completed, failed, cancelled, pending, progress, ...
    job_id: str
    kind: str
    owner_id: str | None
    data: dict[str, Any]
    source: str  # "db" (job_events, complete and ordered) or "broker" (live, best effort)
    id: int | None = None
    ts: str | None = None  # when it happened (the publisher's clock for live ticks)

    @property
    def terminal(self) -> bool:
        return self.name in TERMINAL


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """A rendered message: text to send, plus what the queue needs to know about it."""

    text: str
    droppable: bool = False
    event_id: int | None = None
    event: str | None = None  # the SSE event name
    closes: bool = False  # the stream ends after this message (a job finished)
    hold: bool = False  # a final state from the table: wait for the broker's `broker_done`
    broker_done: bool = False  # the worker announced the end: nothing more on the broker


# Renders an event for one stream format, or None when the stream does not show it.
Renderer = Callable[[Event], Outgoing | None]


class Subscriber:
    """One client's queue. `offer` is called by the hub (never blocks); the client's own
    task drains it with `get`. `limit` bounds what waits; past it the oldest droppable
    message goes, and with none to drop the subscriber overflows and must be closed."""

    def __init__(
        self,
        render: Renderer,
        *,
        limit: int,
        accepts: Callable[[Event], bool] = lambda event: True,
    ) -> None:
        self.render = render
        self.accepts = accepts
        self.limit = max(1, limit)
        self.dropped = 0
        self.overflowed = False
        self._queue: collections.deque[Outgoing] = collections.deque()
        self._ready = asyncio.Event()
        self.keys: list[tuple[dict[str, set[Subscriber]], str]] = []  # where the hub holds it

    def offer(self, message: Outgoing) -> None:
        if self.overflowed:
            return
        if len(self._queue) >= self.limit and not self._drop_one():
            self.overflowed = True
            self._queue.clear()
        else:
            self._queue.append(message)
        self._ready.set()

    def _drop_one(self) -> bool:
        for i, waiting in enumerate(self._queue):
            if waiting.droppable:
                del self._queue[i]
                self.dropped += 1
                return True
        return False

    async def get(self) -> Outgoing | None:
        """The next message; None once the subscriber overflowed (close the client)."""
        while not self._queue and not self.overflowed:
            self._ready.clear()
            await self._ready.wait()
        if self.overflowed:
            return None
        return self._queue.popleft()

    def pending(self) -> int:
        return len(self._queue)


class Hub:
    """Who listens to what, and one `publish` that reaches them all without waiting."""

    def __init__(self) -> None:
        self._by_job: dict[str, set[Subscriber]] = collections.defaultdict(set)
        self._by_owner: dict[str, set[Subscriber]] = collections.defaultdict(set)
        self._everything: set[Subscriber] = set()
        self._ticks: set[Subscriber] = set()  # periodic snapshots (metrics)
        self.published = 0

    # --- subscriptions --------------------------------------------------------------

    def add(
        self,
        subscriber: Subscriber,
        *,
        job_id: str | None = None,
        owner_id: str | None = None,
        everything: bool = False,
        ticks: bool = False,
    ) -> None:
        for index, key in ((self._by_job, job_id), (self._by_owner, owner_id)):
            if key is not None:
                index[key].add(subscriber)
                subscriber.keys.append((index, key))
        if everything:
            self._everything.add(subscriber)
        if ticks:
            self._ticks.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        for index, key in subscriber.keys:
            subs = index.get(key)
            if subs is not None:
                subs.discard(subscriber)
                if not subs:
                    del index[key]
        subscriber.keys.clear()
        self._everything.discard(subscriber)
        self._ticks.discard(subscriber)

    def watched_jobs(self) -> int:
        return len(self._by_job)

    def subscribers(self) -> int:
        every: set[Subscriber] = set(self._everything) | self._ticks
        for index in (self._by_job, self._by_owner):
            for subs in index.values():
                every |= subs
        return len(every)

    # --- fan-out --------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Offer `event` to every subscriber that may see it, rendered once per format."""
        self.published += 1
        targets: set[Subscriber] = set(self._by_job.get(event.job_id, ()))
        if event.owner_id is not None:
            targets |= self._by_owner.get(event.owner_id, set())
        targets |= self._everything
        self._deliver(event, targets)

    def tick(self, event: Event) -> None:
        """A periodic snapshot for the subscribers of ticks (each renders its own view)."""
        self._deliver(event, self._ticks)

    def _deliver(self, event: Event, targets: Iterable[Subscriber]) -> None:
        rendered: dict[Renderer, Outgoing | None] = {}
        for subscriber in targets:
            if not subscriber.accepts(event):
                continue
            if subscriber.render not in rendered:
                try:
                    rendered[subscriber.render] = subscriber.render(event)
                except Exception:  # one bad event must not stop the fan-out
                    log.exception("event %s of job %s not rendered", event.name, event.job_id)
                    rendered[subscriber.render] = None
            message = rendered[subscriber.render]
            if message is not None:
                subscriber.offer(message)
