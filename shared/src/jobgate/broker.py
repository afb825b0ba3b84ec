"""RabbitMQ topology and a confirming publisher (nameko's defaults: confirms, persistent, retry).

Topology (DESIGN.md, "RabbitMQ topology"), declared idempotently by whoever connects:
- `jobgate.jobs` (direct) -> `jobgate.jobs.<kind>`, dead-lettering to `jobgate.dlx`;
- `jobgate.retry` (headers) -> `jobgate.retry.<N>s` (TTL N s), dead-lettering back to
  `jobgate.jobs` with the original routing key (the kind);
- `jobgate.dlx` (fanout) -> `jobgate.jobs.dead`;
- `jobgate.events` (topic) and `jobgate.control` (fanout).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions

from jobgate import kinds
from jobgate.kinds import KindSpec

log = logging.getLogger(__name__)

JOBS_EXCHANGE = "jobgate.jobs"
RETRY_EXCHANGE = "jobgate.retry"
DLX_EXCHANGE = "jobgate.dlx"
DEAD_QUEUE = "jobgate.jobs.dead"
EVENTS_EXCHANGE = "jobgate.events"
CONTROL_EXCHANGE = "jobgate.control"
RPC_CONTAINERS_QUEUE = "jobgate.rpc.containers"
RETRY_DELAY_HEADER = "x-retry-delay"

# Errors after which the connection is unusable and must be opened again.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)


def job_queue(kind: str) -> str:
    return kinds.get(kind).queue_name


def work_queue_arguments(spec: KindSpec, queue_type: str) -> dict[str, Any]:
    args: dict[str, Any] = {"x-dead-letter-exchange": DLX_EXCHANGE}
    if queue_type == "quorum":
        args["x-queue-type"] = "quorum"
    else:
        args["x-max-priority"] = spec.queue.max_priority
    return args


def retry_queue(delay_s: int) -> str:
    return f"{RETRY_EXCHANGE}.{delay_s}s"


def retry_queue_arguments(delay_s: int) -> dict[str, Any]:
    return {
        "x-message-ttl": delay_s * 1000,
        "x-dead-letter-exchange": JOBS_EXCHANGE,
        # An unused delay queue disappears, but only well after its last message expired.
        "x-expires": (delay_s + 600) * 1000,
    }


def declare_topology(channel: Any, *, queue_type: str = "classic") -> None:
    """Declare every exchange and every registered kind's queue; safe to call from every
    process at every start."""
    channel.exchange_declare(JOBS_EXCHANGE, "direct", durable=True)
    channel.exchange_declare(RETRY_EXCHANGE, "headers", durable=True)
    channel.exchange_declare(DLX_EXCHANGE, "fanout", durable=True)
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(CONTROL_EXCHANGE, "fanout", durable=True)
    channel.queue_declare(DEAD_QUEUE, durable=True)
    channel.queue_bind(DEAD_QUEUE, DLX_EXCHANGE)
    for spec in kinds.specs():
        channel.queue_declare(
            spec.queue_name, durable=True, arguments=work_queue_arguments(spec, queue_type)
        )
        channel.queue_bind(spec.queue_name, JOBS_EXCHANGE, routing_key=spec.name)


def declare_retry_queue(channel: Any, delay_s: int) -> str:
    name = retry_queue(delay_s)
    channel.queue_declare(name, durable=True, arguments=retry_queue_arguments(delay_s))
    channel.queue_bind(
        name, RETRY_EXCHANGE, arguments={"x-match": "all", RETRY_DELAY_HEADER: f"{delay_s}s"}
    )
    return name


def definitions(*, queue_type: str = "classic", vhost: str = "/") -> dict[str, Any]:
    """The topology as a RabbitMQ definitions document, for compose/Kubernetes brokers."""
    exchanges = [
        (JOBS_EXCHANGE, "direct"),
        (RETRY_EXCHANGE, "headers"),
        (DLX_EXCHANGE, "fanout"),
        (EVENTS_EXCHANGE, "topic"),
        (CONTROL_EXCHANGE, "fanout"),
    ]
    queues = [{"name": DEAD_QUEUE, "arguments": {}}] + [
        {"name": s.queue_name, "arguments": work_queue_arguments(s, queue_type)}
        for s in kinds.specs()
    ]
    bindings = [{"source": DLX_EXCHANGE, "destination": DEAD_QUEUE, "routing_key": ""}] + [
        {"source": JOBS_EXCHANGE, "destination": s.queue_name, "routing_key": s.name}
        for s in kinds.specs()
    ]
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {
                "name": n,
                "vhost": vhost,
                "type": t,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for n, t in exchanges
        ],
        "queues": [{**q, "vhost": vhost, "durable": True, "auto_delete": False} for q in queues],
        "bindings": [
            {**b, "vhost": vhost, "destination_type": "queue", "arguments": {}} for b in bindings
        ],
    }


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """One message for `Publisher.publish_many`."""

    exchange: str
    routing_key: str
    body: dict[str, Any] | bytes
    properties: dict[str, Any] | None = None

    def payload(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


def connection_parameters(amqp_url: str, *, heartbeat: int | None = None) -> pika.URLParameters:
    params = pika.URLParameters(amqp_url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 30
    if heartbeat is not None:
        params.heartbeat = heartbeat
    return params


def basic_properties(props: dict[str, Any]) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type=props.get("content_type", "application/json"),
        delivery_mode=props.get("delivery_mode", 2),
        message_id=props.get("message_id"),
        app_id=props.get("app_id"),
        timestamp=props.get("timestamp"),
        priority=props.get("priority"),
        headers=props.get("headers"),
        correlation_id=props.get("correlation_id"),
        reply_to=props.get("reply_to"),
    )


class Publisher:
    """One connection, publisher confirms, persistent messages, one reconnect on failure.

    Thread-safe by a lock; `publish` returns only once the broker confirmed the message,
    and raises if it could not (the outbox then keeps the row for the relay).
    """

    def __init__(
        self, amqp_url: str, *, app_id: str, queue_type: str = "classic", confirm: bool = True
    ) -> None:
        self.amqp_url = amqp_url
        self.app_id = app_id
        self.queue_type = queue_type
        self.confirm = confirm
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._tx_channel: Any = None  # for publish_many: one AMQP transaction per batch
        self._returned: list[tuple[str, str, str | None]] = []

    def _open(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._close_quietly()
        self._connection = pika.BlockingConnection(connection_parameters(self.amqp_url))
        self._channel = self._connection.channel()
        if self.confirm:
            self._channel.confirm_delivery()
        declare_topology(self._channel, queue_type=self.queue_type)
        return self._channel

    def _close_quietly(self) -> None:
        if self._connection is not None:
            # Closing a connection that already died raises whatever pika saw last.
            with contextlib.suppress(Exception):
                if self._connection.is_open:
                    self._connection.close()
        self._connection = None
        self._channel = None
        self._tx_channel = None

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: dict[str, Any] | bytes,
        properties: dict[str, Any] | None = None,
        *,
        mandatory: bool = True,
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        props = dict(properties or {})
        props.setdefault("app_id", self.app_id)
        with self._lock:
            for attempt in (1, 2):
                try:
                    channel = self._open()
                    self._connection.process_data_events(0)  # service heartbeats
                    if exchange == RETRY_EXCHANGE:
                        delay = str((props.get("headers") or {}).get(RETRY_DELAY_HEADER, ""))
                        declare_retry_queue(channel, int(delay.rstrip("s")))
                    channel.basic_publish(
                        exchange, routing_key, payload, basic_properties(props), mandatory=mandatory
                    )
                    return
                except pika.exceptions.UnroutableError:
                    raise
                except CONNECTION_ERRORS:
                    self._close_quietly()
                    if attempt == 2:
                        raise
                    log.info("broker connection lost; reconnecting to publish")

    def publish_many(self, messages: Sequence[Outgoing]) -> set[int]:
        """Publish many persistent messages in one AMQP transaction; returns the indexes of
        the messages the broker returned as unroutable (the others are routed).

        Once `tx.commit` is answered the broker is responsible for every routed message, as
        with a confirm (RabbitMQ, "Broker Semantics": durability and no-route returns happen
        on commit), but the batch costs one round trip instead of one per message: the
        outbox relay sends a batch submission's thousand messages this way. Raises on a
        connection failure (after one reconnect), leaving the caller to retry them all."""
        if not messages:
            return set()
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._publish_in_tx(messages)
                except CONNECTION_ERRORS:
                    self._close_quietly()
                    if attempt == 2:
                        raise
                    log.info("broker connection lost; reconnecting to publish a batch")
        raise AssertionError("unreachable")

    def _publish_in_tx(self, messages: Sequence[Outgoing]) -> set[int]:
        self._open()
        if self._tx_channel is None or not self._tx_channel.is_open:
            self._tx_channel = self._connection.channel()
            self._tx_channel.add_on_return_callback(self._on_return)
            self._tx_channel.tx_select()
        channel = self._tx_channel
        self._connection.process_data_events(0)  # service heartbeats
        self._returned = []
        keys: list[tuple[str, str, str | None]] = []
        for message in messages:
            props = dict(message.properties or {})
            props.setdefault("app_id", self.app_id)
            if message.exchange == RETRY_EXCHANGE:
                delay = str((props.get("headers") or {}).get(RETRY_DELAY_HEADER, ""))
                declare_retry_queue(channel, int(delay.rstrip("s")))
            # The channel's own publish flushes the socket per message; the transaction's
            # frames are only buffered here and go out together, ahead of tx.commit.
            channel._impl.basic_publish(
                message.exchange,
                message.routing_key,
                message.payload(),
                basic_properties(props),
                mandatory=True,
            )
            keys.append((message.exchange, message.routing_key, props.get("message_id")))
        channel.tx_commit()
        # No-route returns arrive before commit-ok; this hands them to `_on_return`.
        self._connection.process_data_events(0)
        refused: set[int] = set()
        for key in self._returned:
            refused.add(next(i for i, k in enumerate(keys) if k == key and i not in refused))
        return refused

    def _on_return(self, _channel: Any, method: Any, props: Any, _body: bytes) -> None:
        self._returned.append((method.exchange, method.routing_key, props.message_id))

    def ping(self) -> bool:
        with self._lock:
            try:
                self._open()
                self._connection.process_data_events(0)
                return True
            except CONNECTION_ERRORS:
                self._close_quietly()
                return False

    def close(self) -> None:
        with self._lock:
            self._close_quietly()
