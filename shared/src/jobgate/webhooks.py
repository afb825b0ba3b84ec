"""The `webhooks` table, the target address policy, and the dispatcher's one transition.

Every status change of every job (deliveries aside) is a `job_events` row, written by the
database's triggers (migrations 0008, 0009) with a snapshot of what a payload needs; when
the job's owner has an active webhook the trigger also queues the event in
`webhook_pending`. `dispatch_pending` turns those rows into deliveries — jobs of the
internal `webhook` kind, one per (event, matching webhook) — and deletes them, all in the
caller's transaction: rows are taken with `FOR UPDATE SKIP LOCKED`, so any number of
dispatchers never make one delivery twice, and a crash before commit makes none. Events
outlive their job, so a job deleted right after a change still has it delivered.

Event types are `job.<event>` for every job and also `task.<event>` for a `task` job;
subscriptions hold exact types or the patterns `job.*`, `task.*` and `*`. A webhook that
matches both types of one task event gets one delivery, of the more specific `task.` type.

Target addresses (`check_target`): http(s) only, and the host's addresses must all be
public unless WEBHOOK_ALLOW_PRIVATE; the check runs when a webhook is saved and again at
every delivery, which then connects to the very addresses it checked.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import secrets
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from jobgate import db, jobs, outbox
from jobgate.errors import Conflict, InvalidRequest
from jobgate.jobs import submission
from jobgate.kinds import webhook as webhook_kind
from jobgate.timefmt import iso_ms

Webhook = dict[str, Any]

KIND = webhook_kind.SPEC.name
# The events a subscription can name (job_events.event); `pending` (a job handed back to
# the queue, or run again by its owner) is internal bookkeeping and is never delivered.
EVENTS = ("created", "started", "retrying", "completed", "failed", "cancelled")
# Kinds whose jobs also make `<kind>.<event>` types (seed 004's tasks).
KIND_PREFIXES = ("task",)
EVENT_TYPES = tuple(f"{prefix}.{event}" for prefix in ("job", *KIND_PREFIXES) for event in EVENTS)
PATTERNS = ("*", *(f"{prefix}.*" for prefix in ("job", *KIND_PREFIXES)))
MAX_SUBSCRIPTIONS = 50
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 1000
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
DELIVERY_PRIORITY = 5
DISPATCH_BATCH = 500  # events per dispatcher transaction
DISPATCH_BATCH_BYTES = 4 * 1024 * 1024  # payloads written per dispatcher transaction, about
PAYLOAD_OVERHEAD_BYTES = 1024  # a payload without its result, at most about
RESULT_MAX_BYTES = 64 * 1024  # a completed job's result (JSON) larger than this is not sent
UPDATABLE = ("url", "events", "description", "active")


# --- event types -----------------------------------------------------------------------------


def check_events(events: Any) -> list[str]:
    """The subscriptions as stored (duplicates dropped, order kept); InvalidRequest listing
    the known types and patterns when one is neither."""
    known = {"known": list(EVENT_TYPES), "patterns": list(PATTERNS)}
    if (
        not isinstance(events, list | tuple)
        or not events
        or not all(isinstance(e, str) for e in events)
    ):
        raise InvalidRequest(
            "'events' must be a non-empty list of event types or patterns", details=known
        )
    unknown = [e for e in events if e not in EVENT_TYPES and e not in PATTERNS]
    if unknown:
        raise InvalidRequest(
            f"Unknown event type(s): {', '.join(unknown)}", details={"unknown": unknown, **known}
        )
    unique = list(dict.fromkeys(events))
    if len(unique) > MAX_SUBSCRIPTIONS:
        raise InvalidRequest(f"At most {MAX_SUBSCRIPTIONS} event types", details=known)
    return unique


def matches(subscription: str, event_type: str) -> bool:
    """Whether one subscription (an exact type, `<prefix>.*` or `*`) covers `event_type`."""
    if subscription in ("*", event_type):
        return True
    return subscription.endswith(".*") and event_type.startswith(subscription[:-1])


def event_types_for(kind: str, event: str) -> list[str]:
    """The types one job event is delivered as, the most specific first (`task.completed`
    before `job.completed`); none for an event that is never delivered (`pending`)."""
    if event not in EVENTS:
        return []
    own = [f"{kind}.{event}"] if kind in KIND_PREFIXES else []
    return [*own, f"job.{event}"]


def delivery_type(subscriptions: Sequence[str], types: Sequence[str]) -> str | None:
    """The one type a webhook gets an event as: the most specific it subscribes to."""
    for event_type in types:
        if any(matches(sub, event_type) for sub in subscriptions):
            return event_type
    return None


def message_id(event_id: int, webhook_id: Any) -> str:
    """The `webhook-id` of one event's delivery to one webhook: the same on every retry, so
    receivers can drop duplicates."""
    return f"msg_{event_id}_{uuid.UUID(str(webhook_id)).hex[:16]}"


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


# --- target addresses ------------------------------------------------------------------------


class TargetRefused(Exception):
    """The URL is not one Jobgate delivers to (scheme, form, or a non-public address)."""


class TargetUnresolved(TargetRefused):
    """The host name did not resolve (now): at a delivery, worth another try later."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A checked webhook URL: where to connect (the addresses that were checked) and what
    to send as Host, TLS server name and request target."""

    scheme: str
    host: str  # as in the URL: the Host header and the certificate's name
    port: int
    path: str  # path and query, at least "/"
    addresses: tuple[str, ...]


NAT64 = ipaddress.ip_network("64:ff9b::/96")

# The special-purpose ranges no webhook goes to, from the IANA IPv4 and IPv6 Special-Purpose
# Address Registries (plus multicast and the deprecated site-local range), written out here
# so the policy does not depend on the interpreter's tables (Python 3.11's `is_global` lets
# 192.0.0.8 and fec0::1 through). Checked before `ipaddress`'s own flags, which stay as a
# second net. IPv4-mapped and NAT64 addresses are judged by the IPv4 address inside.
DENIED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), name)
    for network, name in (
        ("0.0.0.0/8", "'this network'"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation"),
        ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "dummy prefix"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing (SRv6) SIDs"),
        ("fc00::/7", "unique-local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a tunnelling IPv6 one leads to (6to4, Teredo), if any."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def refusal(address: str) -> str | None:
    """Why an address is not a public one (a special-purpose range of `DENIED_NETWORKS`,
    or what `ipaddress` knows as non-global), or None when it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:a.b.c.d is a.b.c.d; 64:ff9b::a.b.c.d is a NAT64 gateway's way to it.
        translated = ip.ipv4_mapped or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None
        )
        if translated is not None:
            reason = refusal(str(translated))
            return f"{reason} (as {ip})" if reason else None
        inner = _embedded_ipv4(ip)
        reason = refusal(str(inner)) if inner is not None else None
        if reason:
            return f"{reason} (inside {ip})"
    for network, name in DENIED_NETWORKS:
        if ip.version == network.version and ip in network:
            return f"{ip} is {name} ({network})"
    flags = ["is_unspecified", "is_loopback", "is_link_local", "is_multicast", "is_private"]
    flags += ["is_reserved", "is_site_local"] if ip.version == 6 else ["is_reserved"]
    for attribute in flags:
        if getattr(ip, attribute):
            return f"{ip} is {attribute[3:].replace('_', '-')}"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def parse_url(url: Any) -> tuple[str, str, int, str]:
    """(scheme, host, port, path and query) of an http(s) URL; TargetRefused otherwise."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_LENGTH:
        raise TargetRefused(f"The URL must be 1-{MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise TargetRefused("The URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"Not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("Only http and https URLs are supported")
    if not parts.hostname:
        raise TargetRefused("The URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("Credentials in the URL are not supported: verify the signature")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address `host` resolves to (a literal address is its own), in resolver order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetUnresolved(f"Cannot resolve host '{host}': {exc}") from None
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def check_target(url: Any, *, allow_private: bool) -> Target:
    """The URL parsed and its host resolved, every address checked; TargetRefused when the
    URL is not http(s) or any address is not public (unless `allow_private`)."""
    scheme, host, port, path = parse_url(url)
    addresses = resolve(host, port)
    if not addresses:
        raise TargetUnresolved(f"Host '{host}' has no address")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason:
                raise TargetRefused(
                    f"Webhook targets must be public: '{host}' resolves to a non-public address"
                    f" ({reason})"
                )
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)


# --- the webhooks table ----------------------------------------------------------------------


def create(
    conn: db.Connection,
    *,
    owner_id: str,
    url: str,
    events: Sequence[str],
    description: str | None = None,
    active: bool = True,
) -> Webhook:
    """A new webhook with a fresh secret (the row carries it: show it this once)."""
    return db.fetch_one(
        conn,
        """
        INSERT INTO webhooks (owner_id, url, events, description, secret, active)
        VALUES (%s, %s, %s, %s, %s, %s) RETURNING *
        """,
        (owner_id, url, list(events), description, new_secret(), active),
    )


def check_room(
    conn: db.Connection, *, owner_id: str, limit: int, webhook_id: str | None = None
) -> None:
    """Conflict when the owner already has `limit` active webhooks (`webhook_id`, being
    re-activated, aside): every event fans out to all of them. Writers for one owner take
    turns (an advisory lock to the end of the caller's transaction), so two requests at once
    cannot both take the last place."""
    db.execute(
        conn, "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"webhooks:{owner_id}",)
    )
    active = db.fetch_one(
        conn,
        "SELECT count(*) AS n FROM webhooks WHERE owner_id = %s AND active"
        " AND (%s::uuid IS NULL OR id <> %s::uuid)",
        (owner_id, webhook_id, webhook_id),
    )["n"]
    if active >= limit:
        raise Conflict(
            f"You already have {active} active webhooks, the most allowed ({limit}):"
            " deactivate or delete one first",
            details={"active": int(active), "limit": limit},
        )


def get(conn: db.Connection, *, webhook_id: str, owner_id: str | None = None) -> Webhook | None:
    """A webhook by id (only if `owner_id` owns it, when given)."""
    return db.fetch_one(
        conn,
        "SELECT * FROM webhooks WHERE id = %s AND (%s::uuid IS NULL OR owner_id = %s::uuid)",
        (webhook_id, owner_id, owner_id),
    )


def list_webhooks(
    conn: db.Connection, *, owner_id: str, limit: int = 50, offset: int = 0
) -> tuple[list[Webhook], int]:
    """A page of one owner's webhooks, newest first, and their total."""
    total = db.fetch_one(
        conn, "SELECT count(*) AS n FROM webhooks WHERE owner_id = %s", (owner_id,)
    )["n"]
    rows = db.fetch_all(
        conn,
        "SELECT * FROM webhooks WHERE owner_id = %s ORDER BY created_at DESC, id"
        " LIMIT %s OFFSET %s",
        (owner_id, limit, offset),
    )
    return rows, int(total)


def update(
    conn: db.Connection, *, webhook_id: str, owner_id: str, changes: Mapping[str, Any]
) -> Webhook | None:
    """Set the columns in `changes` (PATCH: the others stay); None if it is not there."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values = {k: list(v) if k == "events" else v for k, v in changes.items()}
    sets = "".join(f"{column} = %({column})s, " for column in values)
    return db.fetch_one(
        conn,
        f"UPDATE webhooks SET {sets}updated_at = now()"
        " WHERE id = %(id)s AND owner_id = %(owner)s RETURNING *",
        {**values, "id": webhook_id, "owner": owner_id},
    )


def rotate_secret(conn: db.Connection, *, webhook_id: str, owner_id: str) -> Webhook | None:
    """A new signing secret; deliveries from now on (retries included) are signed with it."""
    return db.fetch_one(
        conn,
        "UPDATE webhooks SET secret = %s, updated_at = now()"
        " WHERE id = %s AND owner_id = %s RETURNING *",
        (new_secret(), webhook_id, owner_id),
    )


def delete(conn: db.Connection, *, webhook_id: str, owner_id: str) -> bool:
    """Delete a webhook; its deliveries stay as jobs (a queued one completes as skipped)."""
    return (
        db.execute(
            conn, "DELETE FROM webhooks WHERE id = %s AND owner_id = %s", (webhook_id, owner_id)
        )
        == 1
    )


# --- deliveries (jobs of the `webhook` kind) -------------------------------------------------


def list_deliveries(
    conn: db.Connection,
    *,
    webhook_id: str,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[jobs.Job], int]:
    """A page of a webhook's deliveries (their job rows), newest first, and their total."""
    where = (
        "kind = %(kind)s AND params ->> 'webhook_id' = %(webhook)s"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
    )
    args = {"kind": KIND, "webhook": str(webhook_id), "status": status}
    total = db.fetch_one(conn, f"SELECT count(*) AS n FROM jobs WHERE {where}", args)["n"]
    rows = db.fetch_all(
        conn,
        f"SELECT * FROM jobs WHERE {where}"
        " ORDER BY created_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s",
        {**args, "limit": limit, "offset": offset},
    )
    return rows, int(total)


def get_delivery(conn: db.Connection, *, webhook_id: str, delivery_id: str) -> jobs.Job | None:
    return db.fetch_one(
        conn,
        "SELECT * FROM jobs WHERE id = %s AND kind = %s AND params ->> 'webhook_id' = %s",
        (delivery_id, KIND, str(webhook_id)),
    )


# --- the dispatcher --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dispatched:
    """One dispatcher batch: how many queued events it took, the outbox rows of the
    deliveries it made (publish them after commit), and whether it stopped at a limit (the
    count or the bytes), so more may be waiting."""

    taken: int
    outbox_ids: list[int]
    more: bool = False


def payload(event: Mapping[str, Any], event_type: str) -> dict[str, Any]:
    """The body of a delivery (Standard Webhooks style): `type`, `timestamp` (when the job
    changed) and `data` about the job as the event left it (the event's own snapshot, so a
    deleted job's events are delivered too). A completed event carries the job's `result`
    when the job still exists and its JSON is at most RESULT_MAX_BYTES, else
    `result_truncated: true` (the job's API has it)."""
    data = event["data"] or {}
    body: dict[str, Any] = {
        "job_id": str(event["job_id"]),
        "kind": event["kind"],
        "status": data.get("status"),
        "attempt": event["attempt"],
        "error": data.get("error"),
        "created_at": iso_ms(event["job_created_at"]),
    }
    if event["kind"] == "task":
        body["name"] = event["name"]
    if event["event"] == "completed":
        if _result_too_big(event):
            body["result_truncated"] = True
        elif "result" in event:
            body["result"] = event["result"]
    return {"type": event_type, "timestamp": iso_ms(event["created_at"]), "data": body}


def _result_too_big(event: Mapping[str, Any]) -> bool:
    return event["job_exists"] and (event["result_bytes"] or 0) > RESULT_MAX_BYTES


def _carries_result(event: Mapping[str, Any]) -> bool:
    return event["event"] == "completed" and event["job_exists"] and not _result_too_big(event)


def _owners_webhooks(conn: db.Connection, owners: Iterable[Any]) -> dict[str, list[Webhook]]:
    rows = db.fetch_all(
        conn,
        "SELECT id, owner_id, events, created_at FROM webhooks"
        " WHERE active AND owner_id = ANY(%s::uuid[]) ORDER BY created_at, id",
        ([str(owner) for owner in owners],),
    )
    by_owner: dict[str, list[Webhook]] = {}
    for row in rows:
        by_owner.setdefault(str(row["owner_id"]), []).append(row)
    return by_owner


def _results(conn: db.Connection, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The results the chosen events carry, by job id (a job deleted meanwhile is absent)."""
    ids = list({str(event["job_id"]) for event in events if _carries_result(event)})
    if not ids:
        return {}
    rows = db.fetch_all(conn, "SELECT id, result FROM jobs WHERE id = ANY(%s::uuid[])", (ids,))
    return {str(row["id"]): row["result"] for row in rows}


def dispatch_batch(
    conn: db.Connection,
    *,
    settings: Any,
    app_id: str,
    limit: int = DISPATCH_BATCH,
    max_bytes: int = DISPATCH_BATCH_BYTES,
) -> Dispatched:
    """Take up to `limit` queued events (SKIP LOCKED), write one delivery job and its
    outbox message per matching webhook, and delete the events from the queue, all in the
    caller's transaction. A webhook gets the events that happened after it was created.

    The job is LEFT JOINed: an event of a deleted job is delivered from its own snapshot.
    Results are read only for the events taken, after the batch stops at `max_bytes` of
    payloads (an estimate: the result's size plus PAYLOAD_OVERHEAD_BYTES per delivery; the
    first event is always taken), so a batch of big results never loads nor writes more."""
    events = db.fetch_all(
        conn,
        """
        SELECT e.id, e.job_id, e.owner_id, e.kind, e.event, e.attempt, e.data, e.created_at,
               COALESCE((e.data ->> 'job_created_at')::timestamptz, j.created_at)
                   AS job_created_at,
               COALESCE(e.data ->> 'name', j.params ->> 'name') AS name,
               j.id IS NOT NULL AS job_exists,
               CASE WHEN e.event = 'completed' THEN octet_length(j.result::text) END
                   AS result_bytes
        FROM webhook_pending p
        JOIN job_events e ON e.id = p.event_id
        LEFT JOIN jobs j ON j.id = e.job_id
        ORDER BY p.event_id
        LIMIT %s
        FOR UPDATE OF p SKIP LOCKED
        """,
        (limit,),
    )
    if not events:
        return Dispatched(0, [])
    hooks = _owners_webhooks(conn, {event["owner_id"] for event in events})
    planned: list[tuple[dict[str, Any], list[tuple[Webhook, str]]]] = []
    spent = 0
    for event in events:
        targets = []
        types = event_types_for(event["kind"], event["event"])
        for hook in hooks.get(str(event["owner_id"]), ()):
            event_type = delivery_type(hook["events"], types)
            if event_type is not None and hook["created_at"] <= event["created_at"]:
                targets.append((hook, event_type))
        result_bytes = (event["result_bytes"] or 0) if _carries_result(event) else 0
        cost = len(targets) * (PAYLOAD_OVERHEAD_BYTES + result_bytes)
        if planned and spent + cost > max_bytes:
            break
        spent += cost
        planned.append((event, targets))
    results = _results(conn, (event for event, _ in planned))
    outbox_ids = []
    for event, targets in planned:
        if _carries_result(event) and str(event["job_id"]) in results:
            event["result"] = results[str(event["job_id"])]
        for hook, event_type in targets:
            params = {
                "webhook_id": str(hook["id"]),
                "event_id": int(event["id"]),
                "event_type": event_type,
                "message_id": message_id(event["id"], hook["id"]),
                "payload": payload(event, event_type),
            }
            job = submission.create_job(
                conn,
                job_id=jobs.new_job_id(),
                kind=KIND,
                owner_id=str(hook["owner_id"]),
                params=params,
                priority=DELIVERY_PRIORITY,
                max_attempts=settings.webhook_max_attempts,
                backoff="exponential",
                backoff_seconds=settings.webhook_backoff_seconds,
            )
            outbox_ids.append(outbox.add_job_message(conn, job=job, app_id=app_id))
    db.execute(
        conn,
        "DELETE FROM webhook_pending WHERE event_id = ANY(%s)",
        ([int(event["id"]) for event, _ in planned],),
    )
    more = len(planned) < len(events) or len(events) == limit
    return Dispatched(len(planned), outbox_ids, more)


def dispatch_pending(
    conn: db.Connection, *, settings: Any, app_id: str, limit: int = DISPATCH_BATCH
) -> list[int]:
    """`dispatch_batch`, answering only the outbox ids to publish after commit."""
    return dispatch_batch(conn, settings=settings, app_id=app_id, limit=limit).outbox_ids
