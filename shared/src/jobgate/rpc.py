"""Request/reply over RabbitMQ, so a service can ask the one process that holds a resource
(the container engine's socket) to act on it: the gateway never holds that socket.

The client publishes `{"method", "params"}` to a queue (`jobgate.rpc.containers`) with
`reply_to` = RabbitMQ's direct reply-to pseudo-queue and a fresh `correlation_id`, and waits
for the answer up to a timeout; the request expires in the queue after that timeout, so a
server that comes back late never acts on a question nobody waits for. No server, or none
in time: `ServiceUnavailable` (503). The server answers `{"ok": true, "result"}` or
`{"ok": false, "error": {status, code, message, details}}`, which the client raises again as
a `JobgateError` of the same status and code (a 404 stays a 404 with its code, such as
CONTAINER_NOT_FOUND).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

from jobgate.broker import CONNECTION_ERRORS, connection_parameters
from jobgate.errors import JobgateError, ServiceUnavailable

log = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"

Handler = Callable[[dict[str, Any]], Any]  # params -> a JSON-able result


class RemoteError(JobgateError):
    """An error the server answered with; status and code are the server's."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, details=details)
        self.status = status
        self.code = code


def declare_queue(channel: Any, queue: str) -> None:
    """The request queue: not durable (a request is worth nothing after its timeout)."""
    channel.queue_declare(queue, durable=False)


class RpcClient:
    """Calls methods of the server of one queue. One connection per thread (pika's
    connections are not thread-safe), opened on first use and again after a failure.

    A blocking connection answers heartbeats only while it is used, so the broker closes one
    that sat idle (a gateway thread that served no container route for a while); each call
    therefore first reads what the connection has pending, which finds such a close before
    anything is sent, and opens a new connection instead of answering 503."""

    def __init__(
        self, amqp_url: str, queue: str, *, timeout_s: float = 10.0, heartbeat: int | None = None
    ) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.timeout_s = timeout_s
        self.heartbeat = heartbeat
        self._local = threading.local()

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> Any:
        """The method's result; RemoteError as the server raised it; ServiceUnavailable when
        no server answered within the timeout or the broker cannot be reached."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            return self._call(method, params or {}, timeout)
        except CONNECTION_ERRORS as exc:
            self._drop()
            raise ServiceUnavailable(
                f"the message broker is unreachable ({type(exc).__name__})",
                details={"queue": self.queue},
            ) from None

    def _call(self, method: str, params: dict[str, Any], timeout: float) -> Any:
        state = self._open()
        correlation_id = uuid.uuid4().hex
        state.replies.clear()
        state.channel.basic_publish(
            "",
            self.queue,
            json.dumps({"method": method, "params": params}).encode(),
            pika.BasicProperties(
                content_type="application/json",
                correlation_id=correlation_id,
                reply_to=REPLY_TO,
                expiration=str(max(1, int(timeout * 1000))),
                delivery_mode=1,
            ),
            mandatory=False,
        )
        deadline = time.monotonic() + timeout
        while correlation_id not in state.replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceUnavailable(
                    f"no answer from {self.queue} within {timeout:g} s",
                    details={"queue": self.queue, "method": method},
                )
            state.connection.process_data_events(time_limit=min(left, 0.5))
        reply = state.replies.pop(correlation_id)
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise RemoteError(
            int(error.get("status", 500)),
            str(error.get("code", "INTERNAL_ERROR")),
            str(error.get("message", "the remote call failed")),
            dict(error.get("details") or {}),
        )

    def _open(self) -> Any:
        state = getattr(self._local, "state", None)
        if state is not None and state.channel.is_open:
            try:
                state.connection.process_data_events(time_limit=0)
                return state
            except CONNECTION_ERRORS as exc:
                log.info(
                    "rpc %s: the idle connection was closed (%r); opening another", self.queue, exc
                )
        self._drop()
        params = connection_parameters(self.amqp_url, heartbeat=self.heartbeat)
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        replies: dict[str, Any] = {}

        def on_reply(_ch: Any, _method: Any, props: Any, body: bytes) -> None:
            if props.correlation_id:  # late answers to timed-out calls are dropped at the next call
                replies[props.correlation_id] = json.loads(body)

        channel.basic_consume(REPLY_TO, on_reply, auto_ack=True)
        state = _ClientState(connection, channel, replies)
        self._local.state = state
        return state

    def _drop(self) -> None:
        state = getattr(self._local, "state", None)
        self._local.state = None
        if state is not None:
            # Closing a connection that already died raises whatever pika saw last.
            with contextlib.suppress(Exception):
                if state.connection.is_open:
                    state.connection.close()

    def close(self) -> None:
        self._drop()


class _ClientState:
    def __init__(self, connection: Any, channel: Any, replies: dict[str, Any]) -> None:
        self.connection = connection
        self.channel = channel
        self.replies = replies


class RpcServer:
    """Answers the requests of one queue with `handlers[method](params)`, one at a time,
    until `stop()`; reconnects after a broker failure. Run it on a thread of its own."""

    def __init__(self, amqp_url: str, queue: str, handlers: dict[str, Handler]) -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.handlers = handlers
        self._stop = threading.Event()

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve()
            except CONNECTION_ERRORS as exc:
                log.warning("rpc %s: broker connection lost (%s); again in 1 s", self.queue, exc)
                self._stop.wait(1.0)

    def _serve(self) -> None:
        connection = pika.BlockingConnection(connection_parameters(self.amqp_url, heartbeat=30))
        try:
            channel = connection.channel()
            declare_queue(channel, self.queue)
            channel.basic_qos(prefetch_count=1)
            channel.basic_consume(self.queue, self._on_request)
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.5)
        finally:
            if connection.is_open:
                connection.close()

    def _on_request(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        reply = self.answer(body)
        if props.reply_to:
            channel.basic_publish(
                "",
                props.reply_to,
                json.dumps(reply, default=str).encode(),
                pika.BasicProperties(
                    content_type="application/json", correlation_id=props.correlation_id
                ),
            )
        channel.basic_ack(method.delivery_tag)

    def answer(self, body: bytes) -> dict[str, Any]:
        """The reply to one request body (errors as data: the server never dies of one)."""
        try:
            request = json.loads(body)
            handler = self.handlers.get(request.get("method"))
            if handler is None:
                raise RemoteError(
                    400, "INVALID_REQUEST", f"no method {request.get('method')!r}", {}
                )
            return {"ok": True, "result": handler(dict(request.get("params") or {}))}
        except JobgateError as exc:
            error = {"status": exc.status, "code": exc.code, "message": exc.message}
            return {"ok": False, "error": {**error, "details": exc.details}}
        except Exception as exc:  # answered as a 500, logged with its traceback
            log.exception("rpc %s: request failed", self.queue)
            error = {"status": 500, "code": "INTERNAL_ERROR", "message": type(exc).__name__}
            return {"ok": False, "error": {**error, "details": {}}}

    def stop(self) -> None:
        self._stop.set()
