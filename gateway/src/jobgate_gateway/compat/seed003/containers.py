"""Seed 003's containers API (`/api/containers`): long-running containers, asked of the
container workers over RabbitMQ RPC (`services().containers`, jobgate.rpc) since only they
hold the engine's socket; no worker answering in time is a 503 JSON. Every route needs the
`containers` scope; a user sees only their own containers, an admin all of Jobgate's, and
containers Jobgate did not create are never listed or touched (the worker side,
`jobgate_worker.kinds.container_api`, enforces both and answers CONTAINER_NOT_FOUND).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Response, stream_with_context
from marshmallow import Schema, fields, validate

from jobgate.identity import Principal
from jobgate.kinds.container import ContainerCreate
from jobgate.web import Blueprint
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.services import services

blp = Blueprint(
    "seed003_containers", __name__, url_prefix="/api/containers", description="seed 003 containers"
)
blp.before_request(authenticate_blueprint)

STOP_WAIT_S = 10.0  # beyond the RPC timeout, for the worker's SIGTERM-then-SIGKILL (5 s)
FOLLOW_POLL_S = 1.0  # a followed log is asked for new lines this often
FOLLOW_MAX_S = 3600.0  # and given up after this long (the client may ask again)
SCOPE = "containers"
STATUSES = ("running", "stopped", "paused")


class ContainerSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    image = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "running|stopped|paused"})
    created_at = fields.String(required=True, allow_none=True)
    ports = fields.List(fields.String(), required=True, metadata={"description": "host:container"})
    cpu_usage = fields.Float(required=True)
    memory_usage = fields.Integer(required=True)


class ContainerListSchema(Schema):
    containers = fields.List(fields.Nested(ContainerSchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class ContainerListQuery(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    image = fields.String(validate=validate.Length(1, 300))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 1_000_000))


class ContainerStatsSchema(Schema):
    cpu_usage = fields.Float(required=True)
    memory_usage = fields.Integer(required=True)
    memory_limit = fields.Integer(required=True)
    network_rx = fields.Integer(required=True)
    network_tx = fields.Integer(required=True)
    block_read = fields.Integer(required=True)
    block_write = fields.Integer(required=True)
    timestamp = fields.String(required=True)


class LogsQuery(Schema):
    follow = fields.Boolean(load_default=False)
    tail = fields.Integer(validate=validate.Range(0, 10_000))
    since = fields.String(
        validate=validate.Length(1, 64), metadata={"description": "epoch seconds or ISO-8601"}
    )
    timestamps = fields.Boolean(load_default=False)


TEXT = {
    "200": {"description": "log lines", "content": {"text/plain": {"schema": {"type": "string"}}}}
}


def _ask(method: str, principal: Principal, **params: Any) -> Any:
    svc = services()
    timeout = svc.settings.container_rpc_timeout_s
    if method in ("stop", "restart"):  # the worker waits for the process to end first
        timeout += STOP_WAIT_S
    return svc.containers.call(
        method,
        {"owner_id": principal.user_id, "is_admin": principal.is_admin, **params},
        timeout_s=timeout,
    )


@blp.route("", methods=["GET"])
@blp.arguments(ContainerListQuery, location="query")
@blp.response(200, ContainerListSchema)
def list_containers(query: dict[str, Any]) -> Any:
    """The caller's containers (an admin's: all of Jobgate's), newest first, with usage."""
    return _ask("list", require_auth(SCOPE), **query)


@blp.route("", methods=["POST"])
@blp.arguments(ContainerCreate)
@blp.response(201, ContainerSchema)
def create_container(body: dict[str, Any]) -> Any:
    """Create (not start) a container; network `none` unless `bridge` is asked, ports on
    127.0.0.1, host volumes only below the configured roots."""
    return _ask("create", require_auth(SCOPE), body=ContainerCreate().dump(body))


@blp.route("/<string:container_id>", methods=["GET"])
@blp.response(200, ContainerSchema)
def get_container(container_id: str) -> Any:
    return _ask("get", require_auth(SCOPE), id=container_id)


def _operation(verb: str) -> None:
    def operate(container_id: str) -> Any:
        return _ask(verb, require_auth(SCOPE), id=container_id)

    operate.__name__ = f"{verb}_container"
    operate.__doc__ = f"{verb.capitalize()} the container; its state afterwards."
    blp.route(f"/<string:container_id>/{verb}", methods=["POST"])(
        blp.response(200, ContainerSchema)(operate)
    )


for _verb in ("start", "stop", "restart", "pause", "unpause"):
    _operation(_verb)


@blp.route("/<string:container_id>", methods=["DELETE"])
@blp.response(204)
def delete_container(container_id: str) -> None:
    """Remove the container (a running one is killed first)."""
    _ask("remove", require_auth(SCOPE), id=container_id)


@blp.route("/<string:container_id>/logs", methods=["GET"])
@blp.arguments(LogsQuery, location="query")
@blp.doc(responses=TEXT)
def container_logs(query: dict[str, Any], container_id: str) -> Response:
    """stdout and stderr as text; `follow=true` keeps the response open and sends new
    lines as they come (asked every second) until the container stops."""
    principal = require_auth(SCOPE)
    options = {k: query[k] for k in ("tail", "since", "timestamps") if k in query}
    first = _ask("logs", principal, id=container_id, **options)
    if not query["follow"]:
        return Response(first["logs"], mimetype="text/plain")

    def follow() -> Iterator[str]:
        answer, ends = first, time.monotonic() + FOLLOW_MAX_S
        yield answer["logs"]
        while answer["status"] == "running" and time.monotonic() < ends:
            time.sleep(FOLLOW_POLL_S)
            since = answer["until"]
            answer = _ask(
                "logs",
                principal,
                id=container_id,
                since=since,
                timestamps=options.get("timestamps", False),
            )
            yield answer["logs"]

    return Response(stream_with_context(follow()), mimetype="text/plain")


@blp.route("/<string:container_id>/stats", methods=["GET"])
@blp.response(200, ContainerStatsSchema)
def container_stats(container_id: str) -> Any:
    return _ask("stats", require_auth(SCOPE), id=container_id)
