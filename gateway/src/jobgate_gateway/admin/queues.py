"""`GET /api/v1/admin/queues`: the broker's queue depths and the dead-letter count, for admins.

RabbitMQ's management HTTP API (`/api/queues/{vhost}`) is asked on each request, for the
vhost the services use (AMQP_URL's), at RABBITMQ_MANAGEMENT_URL (default: AMQP_URL's host on
port 15672 with its credentials). The gateway keeps no broker state of its own: what the
console shows is what this route shows. When the management API cannot be reached, or
refuses the credentials, the answer is a 503 saying so (the broker itself may be fine).
Counts are the management API's, which samples them every few seconds (RabbitMQ's
`collect_statistics_interval`, 5 s by default).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests
from marshmallow import Schema, fields, validate

from jobgate import kinds
from jobgate.broker import DEAD_QUEUE
from jobgate.config import ManagementApi
from jobgate.errors import Forbidden, ServiceUnavailable
from jobgate.timefmt import now_iso_ms
from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.services import services

log = logging.getLogger(__name__)

blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/api/v1/admin",
    description="Operators' read-outs (admin only): the broker's queues",
)
blp.before_request(authenticate_blueprint)

WORK_PREFIX = "jobgate.jobs."
RETRY_PREFIX = "jobgate.retry."
RPC_PREFIX = "jobgate.rpc."
ROLES = ("work", "dead_letter", "retry", "rpc", "other")
COLUMNS = "name,messages,messages_ready,messages_unacknowledged,consumers,state"


class QueueSchema(Schema):
    name = fields.String(required=True)
    role = fields.String(
        required=True,
        validate=validate.OneOf(ROLES),
        metadata={
            "description": "work (a kind's jobs), dead_letter, retry (a delay queue), rpc, "
            "other (a stream consumer's own queue, …)"
        },
    )
    kind = fields.String(
        required=True, allow_none=True, metadata={"description": "the kind of a work queue"}
    )
    messages = fields.Integer(required=True)
    messages_ready = fields.Integer(required=True)
    messages_unacknowledged = fields.Integer(required=True)
    consumers = fields.Integer(required=True)
    state = fields.String(required=True, allow_none=True)


class DeadLetterSchema(Schema):
    queue = fields.String(required=True)
    messages = fields.Integer(
        required=True, metadata={"description": "messages waiting in the dead-letter queue"}
    )


class QueueTotalsSchema(Schema):
    messages_ready = fields.Integer(required=True)
    messages_unacknowledged = fields.Integer(required=True)
    consumers = fields.Integer(required=True)


class QueuesSchema(Schema):
    vhost = fields.String(required=True)
    queues = fields.List(fields.Nested(QueueSchema), required=True)
    dead_letter = fields.Nested(DeadLetterSchema, required=True)
    totals = fields.Nested(QueueTotalsSchema, required=True)
    timestamp = fields.String(required=True)


def queue_role(name: str) -> tuple[str, str | None]:
    """What a queue is for in Jobgate's topology, and the kind of a work queue."""
    if name == DEAD_QUEUE:
        return "dead_letter", None
    if name.startswith(WORK_PREFIX) and name[len(WORK_PREFIX) :] in kinds.names():
        return "work", name[len(WORK_PREFIX) :]
    if name.startswith(RETRY_PREFIX):
        return "retry", None
    if name.startswith(RPC_PREFIX):
        return "rpc", None
    return "other", None


def _count(raw: dict[str, Any], key: str) -> int:
    # A queue declared a moment ago has no sampled counts yet: none is zero.
    value = raw.get(key)
    return int(value) if isinstance(value, int | float) else 0


def read_queues(api: ManagementApi, timeout: float) -> list[dict[str, Any]]:
    """The vhost's queues from the management API, or ServiceUnavailable saying why not."""
    url = f"{api.base_url}/api/queues/{quote(api.vhost, safe='')}"
    where = {"management_url": api.base_url, "vhost": api.vhost}
    try:
        r = requests.get(
            url,
            params={"columns": COLUMNS},
            auth=(api.username, api.password),
            timeout=timeout,
        )
    except requests.RequestException as exc:
        log.warning("RabbitMQ management API unreachable at %s: %s", api.base_url, exc)
        raise ServiceUnavailable(
            "RabbitMQ management API unreachable",
            details={**where, "reason": type(exc).__name__},
        ) from None
    if r.status_code != 200:
        log.warning("RabbitMQ management API at %s answered %s", api.base_url, r.status_code)
        raise ServiceUnavailable(
            f"RabbitMQ management API answered {r.status_code}",
            details={**where, "status": r.status_code},
        )
    try:
        body = r.json()
    except ValueError:
        body = None
    if not isinstance(body, list):
        raise ServiceUnavailable("RabbitMQ management API answered something else", details=where)
    return [q for q in body if isinstance(q, dict) and isinstance(q.get("name"), str)]


def queues_report(raw: list[dict[str, Any]], vhost: str) -> dict[str, Any]:
    """The route's body from the management API's queue objects: work queues first (by
    kind), then the dead letters, the delay queues, RPC and the rest, each by name."""
    queues = []
    for q in raw:
        role, kind = queue_role(q["name"])
        queues.append(
            {
                "name": q["name"],
                "role": role,
                "kind": kind,
                "messages": _count(q, "messages"),
                "messages_ready": _count(q, "messages_ready"),
                "messages_unacknowledged": _count(q, "messages_unacknowledged"),
                "consumers": _count(q, "consumers"),
                "state": q.get("state") if isinstance(q.get("state"), str) else None,
            }
        )
    queues.sort(key=lambda q: (ROLES.index(q["role"]), q["name"]))
    dead = next((q for q in queues if q["role"] == "dead_letter"), None)
    return {
        "vhost": vhost,
        "queues": queues,
        "dead_letter": {"queue": DEAD_QUEUE, "messages": dead["messages"] if dead else 0},
        "totals": {
            key: sum(q[key] for q in queues)
            for key in ("messages_ready", "messages_unacknowledged", "consumers")
        },
        "timestamp": now_iso_ms(),
    }


@blp.route("/queues")
@ratelimit.status_limit
@blp.response(200, QueuesSchema)
@blp.alt_response(403, response="FORBIDDEN", description="not an admin")
@blp.alt_response(
    503, response="SERVICE_UNAVAILABLE", description="the management API is unreachable"
)
def queues() -> dict[str, Any]:
    """Every queue of the services' vhost with its ready and unacknowledged messages and
    consumers, and the dead-letter count (RabbitMQ's management API; admins only)."""
    principal = require_auth()
    if not principal.is_admin:
        raise Forbidden("Only administrators may read the broker's queues")
    settings = services().settings
    api = settings.rabbitmq_management
    return queues_report(read_queues(api, settings.request_timeout), api.vhost)
