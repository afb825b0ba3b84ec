"""The `cache` kind's API module: the contract's plan expands and totals the paths (the same
code a schedule's run goes through), then the job is submitted with one item per file."""

from __future__ import annotations

from typing import Any

from jobgate.identity import Principal
from jobgate.kinds import cache
from jobgate_gateway.jobs.service import submit_job
from jobgate_gateway.services import Services


def submit(
    svc: Services,
    principal: Principal,
    params: dict[str, Any],
    options: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Every file the params name becomes one item of the job, with its size."""
    plan = cache.SPEC.make_plan(None, svc.settings, principal.user_id, params)
    return submit_job(
        svc,
        principal,
        kind=cache.SPEC.name,
        params=plan.params,
        items=plan.items,
        bytes_total=plan.bytes_total,
        options=options,
        idempotency_key=idempotency_key,
    )
