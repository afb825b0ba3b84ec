"""The `task` kind's API module (seed 004): the contract's plan checks the payload's size and
resolves the handler (the same code a schedule's run goes through), so a task naming a
handler nobody registered is a 400 listing the registered ones, and the worker runs exactly
the handler stored in `params.handler`."""

from __future__ import annotations

from typing import Any

from jobgate.identity import Principal
from jobgate.jobs.submission import Submission
from jobgate.kinds import task
from jobgate_gateway.jobs.service import prepare_planned
from jobgate_gateway.services import Services


def prepare(
    svc: Services, principal: Principal, params: dict[str, Any], options: dict[str, Any]
) -> Submission:
    """Queue a task as its plan stores it (handler resolved, payload within the limit)."""
    return prepare_planned(svc, principal, task.SPEC, params, options)


def job_fields(job: dict[str, Any]) -> dict[str, Any]:
    """A task's name in its job object (the handler, description and payload are in
    `params`)."""
    return {"name": (job.get("params") or {}).get("name")}
