"""The `task` kind's contract: a generic task run by a named handler (seed 004).

A task is `name`, `description`, `payload` (any JSON object) and `timeout`, run by the handler
named in `handler`, resolved when the job is made (`plan`: by the gateway at submission and
by the scheduler at each run): the explicit `handler`, else a handler registered under the
task's `name`, else `TASK_DEFAULT_HANDLER`. Seed 004's `priority` words and `retry_count` are
job options, not params: `jobs.priority` (`PRIORITIES`) and `max_attempts = retry_count + 1`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, fields, validate

from jobgate.errors import InvalidRequest
from jobgate.kinds.spec import KindSpec, Plan, schema_of

if TYPE_CHECKING:  # jobgate.config imports the kinds
    from jobgate.config import Settings

PRIORITIES = {"low": 2, "medium": 5, "high": 8}  # seed word -> jobs.priority (0-9)
MAX_RETRY_COUNT = 9  # max_attempts is at most 10, as for every kind
MAX_TIMEOUT_S = 7 * 24 * 3600
# A handler's name: what an entry point may be called, and safe in logs and URLs.
HANDLER_NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$",
    error="Not a handler name (letters, digits, _ . : -, at most 100).",
)


class TaskParams(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(0, 2000)
    )
    handler = fields.String(
        load_default=None,
        allow_none=True,
        validate=HANDLER_NAME,
        metadata={"description": "the handler to run (default: by name, else the default one)"},
    )
    payload = fields.Dict(keys=fields.String(), load_default=dict)
    timeout = fields.Integer(
        load_default=3600,
        validate=validate.Range(1, MAX_TIMEOUT_S),
        metadata={"description": "seconds one attempt may run before its process is killed"},
    )


@dataclasses.dataclass(frozen=True)
class TaskSettings:
    task_default_handler: str = "echo"
    task_concurrency: int = 4  # handler processes (and tasks at once) per task worker
    task_max_payload_bytes: int = 1024 * 1024  # a task's payload as JSON
    task_max_result_bytes: int = 1024 * 1024  # a handler's return value as JSON
    task_http_allowed_hosts: tuple[str, ...] = ()  # hosts the `http` handler may call
    task_http_timeout_s: float = 30.0


def payload_size(payload: Any) -> int:
    """Bytes of the payload as compact UTF-8 JSON: what TASK_MAX_PAYLOAD_BYTES limits."""
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())


def plan(_conn: Any, settings: Settings, _owner_id: str, params: dict[str, Any]) -> Plan:
    """The task as stored: its payload within TASK_MAX_PAYLOAD_BYTES and its handler
    resolved (400 for an explicit one nobody registered, listing those that are). The
    gateway's submission and every scheduled run go through here, so both check alike."""
    # Imported here: jobgate.task_handlers imports this module (HANDLER_NAME).
    from jobgate import task_handlers

    limit = settings.task_max_payload_bytes
    size = payload_size(params.get("payload") or {})
    if size > limit:
        raise InvalidRequest(
            f"payload is {size} bytes as JSON; the limit is {limit}",
            details={"field": "payload", "size": size, "max_bytes": limit},
        )
    try:
        handler = task_handlers.resolve_name(
            handler=params.get("handler"),
            name=params["name"],
            default=settings.task_default_handler,
        )
    except task_handlers.UnknownHandler as exc:
        raise InvalidRequest(
            f"Unknown handler '{exc.name}'",
            details={"handler": exc.name, "available": exc.available},
        ) from None
    return Plan(params=schema_of(TaskParams).dump({**params, "handler": handler}))


SPEC = KindSpec(
    name="task",
    description="Run a named task handler on a JSON payload",
    params=TaskParams,
    settings=TaskSettings,
    seed="004",
    plan=plan,
)
