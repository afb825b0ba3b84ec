"""Webhook deliveries (the internal `webhook` kind) and the dispatcher that makes them.

`run(ctx)` is one attempt of one delivery: POST the event's payload, signed the Standard
Webhooks way (`standardwebhooks`: `webhook-id`, `webhook-timestamp`, `webhook-signature`),
to the webhook's current URL, within WEBHOOK_TIMEOUT_S for the whole request (a receiver
trickling its answer cannot hold a delivery thread), watching for cancel and shutdown at
least every half second. A 2xx completes it; any other answer, a timeout or a
connection error fails the attempt, so the platform retries it with backoff and, after the
last attempt, leaves it `failed` with its message in the dead-letter queue. A URL that is
not (or no longer) allowed fails it at once: retrying cannot change the policy. Each
attempt's status code and error go to `jobs.details` for the deliveries list. No redirect
is followed. A webhook deleted or deactivated since the event completes its deliveries as
skipped, sending nothing.

`background(settings, database, stop)` is the dispatcher, run by every webhook worker
process: it LISTENs on `jobgate_webhooks` (the trigger on `jobs` notifies it), wakes on a
notification or every WEBHOOK_DISPATCH_INTERVAL_S, and turns queued events into deliveries
(`jobgate.webhooks.dispatch_batch`, SKIP LOCKED, so processes never duplicate one), then
publishes them after commit; what it cannot publish, the workers' outbox relay does.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import http.client
import io
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from standardwebhooks import Webhook

from jobgate import db, outbox, webhooks
from jobgate.broker import Publisher
from jobgate.config import Settings
from jobgate.jobs import attempts
from jobgate.timefmt import now_iso_ms
from jobgate_worker.context import JobContext
from jobgate_worker.errors import JobFailed, LeaseLost

log = logging.getLogger(__name__)

USER_AGENT = "Jobgate-Webhooks/1"
CHANNEL = "jobgate_webhooks"
APP_ID = "jobgate-webhook-dispatcher"
RESPONSE_READ_LIMIT = 64 * 1024  # bytes of a receiver's answer read (and dropped)
READ_CHUNK = 4096
SLICE_S = 0.5  # longest socket wait before cancel and the deadline are looked at again
PATH_SAFE = "".join(map(chr, range(0x21, 0x7F)))  # printable ASCII stays as it is in a path
ERROR_TEXT_LIMIT = 300  # characters of an answer or error kept in `jobs.details`
MAX_BATCHES_PER_WAKE = 20  # then let the interval come round (other work, stop checks)
WAIT_SLICE_S = 0.5  # how often a waiting dispatcher looks at `stop`
OUTAGE_FIRST_S = 1.0
OUTAGE_MAX_S = 30.0


# --- one delivery -----------------------------------------------------------------------------


def _record(ctx: JobContext, **details: Any) -> None:
    """The attempt's status code and error, in `jobs.details` (shown by the deliveries list)."""
    details["last_attempt_at"] = now_iso_ms()
    details["last_attempt"] = ctx.job["attempt"]
    with ctx.db.transaction() as conn:
        if not attempts.set_details(
            conn, job_id=ctx.job_id, worker_id=ctx.worker_id, details=details
        ):
            raise LeaseLost(ctx.job_id)


def signed_headers(secret: str, message_id: str, body: str, now: dt.datetime) -> dict[str, str]:
    """The Standard Webhooks headers for `body`, signed with the webhook's secret now."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class _Replay:
    """What `http.client.HTTPResponse` parses an answer from: the bytes already received."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, *_args: Any, **_kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self.data)


def _parsed(data: bytes) -> http.client.HTTPResponse:
    """The answer in `data`, parsed by http.client (status, headers, then the body on read);
    RemoteDisconnected or BadStatusLine when it has no valid status line."""
    response = http.client.HTTPResponse(_Replay(data))  # type: ignore[arg-type]  # duck-typed
    response.begin()
    return response


def _request_bytes(target: webhooks.Target, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole request, as http.client would write it (`Connection: close`: one answer)."""
    try:
        host = target.host.encode("ascii").decode()
    except UnicodeEncodeError:
        host = target.host.encode("idna").decode()
    if ":" in host:
        host = f"[{host}]"
    if target.port != (443 if target.scheme == "https" else 80):
        host = f"{host}:{target.port}"
    path = quote(target.path, safe=PATH_SAFE)  # non-ASCII as UTF-8 %XX
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(
    target: webhooks.Target,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    check: Callable[[], None] = lambda: None,
) -> tuple[int, str]:
    """POST to the addresses that were checked (never a fresh lookup of the name, so a DNS
    answer that changed since cannot steer the request elsewhere), with the URL's host as
    Host header and TLS server name. Returns the status and the start of the answer.

    `timeout` bounds the whole request (connect, TLS, send, and reading the status and
    headers): a receiver trickling its answer cannot hold a delivery thread longer, and
    TimeoutError("timed out") fails the attempt. No socket wait lasts more than SLICE_S, and
    `check` (the attempt's cancel and shutdown check, which raises) runs between them. Once
    the status is in, the body is read until it ends, RESPONSE_READ_LIMIT or the deadline."""
    deadline = time.monotonic() + timeout

    def wait() -> float:
        """The next socket wait: cancel looked at, the deadline enforced."""
        check()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return min(left, SLICE_S)

    sock = _connect(target, wait)
    try:
        if target.scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(
                sock, server_hostname=target.host, do_handshake_on_connect=False
            )
            _sliced(sock, sock.do_handshake, wait)
        data = memoryview(_request_bytes(target, body, headers))
        while data:
            data = data[_sliced(sock, functools.partial(sock.send, data), wait) :]
        return _answer(sock, wait)
    finally:
        sock.close()


def _sliced(sock: socket.socket, op: Callable[[], Any], wait: Callable[[], float]) -> Any:
    """`op` on `sock`, again after every socket timeout of one slice, until the deadline."""
    while True:
        sock.settimeout(wait())
        try:
            return op()
        except TimeoutError:  # this slice ran out (no data was taken): look again
            continue


def _connect(target: webhooks.Target, wait: Callable[[], float]) -> socket.socket:
    """A socket connected to the first of the checked addresses that answers, in the
    resolver's order (as socket.create_connection), waiting in slices."""
    error: OSError | None = None
    for address in target.addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            code = sock.connect_ex((address, target.port))
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                raise OSError(code, os.strerror(code))
            while not select.select([], [sock], [], wait())[1]:
                pass
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            return sock
        except BaseException as exc:
            sock.close()
            if isinstance(exc, TimeoutError) or not isinstance(exc, OSError):
                raise  # the deadline passed, or the attempt is cancelled or handed back
            error = exc
    raise error or OSError(f"no address for {target.host}")


def _answer(sock: socket.socket, wait: Callable[[], float]) -> tuple[int, str]:
    """Read the answer: the status and headers within the deadline (else TimeoutError), then
    the body until it is complete, RESPONSE_READ_LIMIT, the connection's end or the deadline."""
    buffer = bytearray()
    head: http.client.HTTPResponse | None = None
    body_at = 0
    while len(buffer) < RESPONSE_READ_LIMIT:
        try:
            chunk = _sliced(sock, lambda: sock.recv(READ_CHUNK), wait)
        except TimeoutError:
            if head is None:
                raise
            break  # the status is in: the rest of the body is not worth more time
        if not chunk:
            break
        buffer += chunk
        if head is None and b"\r\n\r\n" in buffer:
            body_at = buffer.index(b"\r\n\r\n") + 4
            head = _parsed(bytes(buffer[:body_at]))
        if head is not None and (
            (head.length is not None and len(buffer) - body_at >= head.length)
            or (head.chunked and buffer.endswith(b"0\r\n\r\n"))
        ):
            break
    response = _parsed(bytes(buffer))
    try:
        text = response.read(RESPONSE_READ_LIMIT)
    except http.client.IncompleteRead as exc:
        text = exc.partial
    except (http.client.HTTPException, ValueError):  # a malformed body: the status stands
        text = b""
    return response.status, text.decode("utf-8", "replace")[:ERROR_TEXT_LIMIT]


def run(ctx: JobContext) -> dict[str, Any]:
    """Deliver one event to one webhook; raises JobFailed for the platform to retry."""
    params = ctx.params
    settings = ctx.settings
    with ctx.db.transaction() as conn:
        hook = webhooks.get(conn, webhook_id=str(params["webhook_id"]))
    if hook is None or not hook["active"]:
        reason = "webhook deleted" if hook is None else "webhook inactive"
        log.info("delivery %s not sent: %s", ctx.job_id, reason)
        return {"skipped": reason}
    ctx.check()
    try:
        target = webhooks.check_target(hook["url"], allow_private=settings.webhook_allow_private)
    except webhooks.TargetUnresolved as exc:
        _record(ctx, last_status_code=None, last_error=str(exc))
        raise JobFailed(str(exc)) from None
    except webhooks.TargetRefused as exc:
        _record(ctx, last_status_code=None, last_error=str(exc))
        raise JobFailed(str(exc), retryable=False) from None
    body = json.dumps(params["payload"], separators=(",", ":"))
    headers = signed_headers(hook["secret"], params["message_id"], body, dt.datetime.now(dt.UTC))
    started = time.monotonic()
    try:
        status, text = post(
            target, body.encode(), headers, timeout=settings.webhook_timeout_s, check=ctx.check
        )
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
        _record(ctx, last_status_code=None, last_error=error)
        raise JobFailed(f"delivery to {target.host} failed: {error}") from None
    ms = round((time.monotonic() - started) * 1000, 1)
    if 200 <= status < 300:
        _record(ctx, last_status_code=status, last_error=None, last_ms=ms)
        return {"status_code": status, "ms": ms}
    error = f"HTTP {status}" + (f": {text.strip()}" if text.strip() else "")
    _record(ctx, last_status_code=status, last_error=error, last_ms=ms)
    raise JobFailed(f"receiver answered {error}"[:ERROR_TEXT_LIMIT])


# --- the dispatcher ---------------------------------------------------------------------------


class Dispatcher:
    """Turns queued job events into deliveries whenever the database says there are some."""

    def __init__(
        self,
        settings: Settings,
        database: db.Database,
        *,
        publisher: Publisher | None = None,
        app_id: str = APP_ID,
    ) -> None:
        self.settings = settings
        self.db = database
        self.app_id = app_id
        self.publisher = publisher or Publisher(
            settings.amqp_url, app_id=app_id, queue_type=settings.job_queue_type
        )
        self._listener = db.Listener(database.url, CHANNEL, APP_ID)

    def dispatch(self) -> int:
        """Dispatch what is queued (a bounded number of batches); returns deliveries made."""
        made = 0
        for _ in range(MAX_BATCHES_PER_WAKE):
            with self.db.transaction() as conn:
                batch = webhooks.dispatch_batch(conn, settings=self.settings, app_id=self.app_id)
            if batch.outbox_ids:
                made += len(batch.outbox_ids)
                self._publish(batch.outbox_ids)
            if not batch.more:
                break
        return made

    def _publish(self, ids: list[int]) -> None:
        try:
            outbox.relay(self.db, self.publisher, ids=ids)
        except Exception as exc:  # noqa: BLE001 - the housekeeping relay publishes them later
            log.warning("webhook deliveries queued; publish deferred to the relay: %s", exc)

    def wait(self, stop: threading.Event) -> None:
        """Until a notification arrives, the interval passes or `stop` is set."""
        listener = self._listener.connection()
        deadline = time.monotonic() + self.settings.webhook_dispatch_interval_s
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([listener], [], [], min(left, WAIT_SLICE_S))
            if readable:
                listener.poll()
                if listener.notifies:
                    listener.notifies.clear()
                    return

    def run(self, stop: threading.Event) -> None:
        """Listen and dispatch until `stop` is set; a database or broker outage is logged
        and waited out with backoff, never the end of the loop."""
        delay = OUTAGE_FIRST_S
        log.info("webhook dispatcher started")
        try:
            while not stop.is_set():
                try:
                    # LISTEN before dispatching: no notification falls in between.
                    self._listener.connection()
                    self.dispatch()
                    self.wait(stop)
                    delay = OUTAGE_FIRST_S
                except Exception as exc:  # noqa: BLE001 - an outage must not end the loop
                    log.warning("webhook dispatcher: %s; retrying in %.0fs", exc, delay)
                    self._listener.close()
                    stop.wait(delay)
                    delay = min(delay * 2, OUTAGE_MAX_S)
        finally:
            self._listener.close()
            self.publisher.close()
            log.info("webhook dispatcher stopped")


def background(settings: Settings, database: db.Database, stop: threading.Event) -> None:
    """The webhook worker's own loop (`KindSpec.background`): the dispatcher."""
    Dispatcher(settings, database).run(stop)
