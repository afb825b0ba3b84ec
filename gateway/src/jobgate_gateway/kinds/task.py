"""The `task` kind's API module (seed 004): the payload's size is checked and the handler
resolved at submission, so a task naming a handler nobody registered is a 400 listing the
registered ones, and the worker runs exactly the handler stored in `params.handler`."""

from __future__ import annotations

import json
from typing import Any

from jobgate import task_handlers
from jobgate.errors import InvalidRequest
from jobgate.identity import Principal
from jobgate.kinds import task
from jobgate_gateway.jobs.service import submit_job
from jobgate_gateway.services import Services


def payload_size(payload: Any) -> int:
    """Bytes of the payload as compact UTF-8 JSON: what TASK_MAX_PAYLOAD_BYTES limits."""
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())


def resolve_handler(svc: Services, params: dict[str, Any]) -> str:
    """The handler the task will run (see `task_handlers.resolve_name`); 400 if an explicit
    `handler` is not registered."""
    try:
        return task_handlers.resolve_name(
            handler=params.get("handler"),
            name=params["name"],
            default=svc.settings.task_default_handler,
        )
    except task_handlers.UnknownHandler as exc:
        raise InvalidRequest(
            f"Unknown handler '{exc.name}'",
            details={"handler": exc.name, "available": exc.available},
        ) from None


def submit(
    svc: Services,
    principal: Principal,
    params: dict[str, Any],
    options: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Queue a task with its handler resolved; a payload over TASK_MAX_PAYLOAD_BYTES is a 400."""
    limit = svc.settings.task_max_payload_bytes
    size = payload_size(params.get("payload") or {})
    if size > limit:
        raise InvalidRequest(
            f"payload is {size} bytes as JSON; the limit is {limit}",
            details={"field": "payload", "size": size, "max_bytes": limit},
        )
    handler = resolve_handler(svc, params)
    return submit_job(
        svc,
        principal,
        kind=task.SPEC.name,
        params=task.SPEC.dump_params({**params, "handler": handler}),
        options=options,
        idempotency_key=idempotency_key,
    )


def job_fields(job: dict[str, Any]) -> dict[str, Any]:
    """A task's name in its job object (the handler, description and payload are in
    `params`)."""
    return {"name": (job.get("params") or {}).get("name")}
