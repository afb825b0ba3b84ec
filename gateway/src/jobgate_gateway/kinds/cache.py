"""The `cache` kind's API module: the contract's plan expands and totals the paths (the same
code a schedule's run goes through), then the job is submitted with one item per file."""

from __future__ import annotations

from typing import Any

from jobgate.identity import Principal
from jobgate.kinds import cache
from jobgate_gateway.jobs.service import submit_planned
from jobgate_gateway.services import Services


def submit(
    svc: Services,
    principal: Principal,
    params: dict[str, Any],
    options: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Every file the params name becomes one item of the job, with its size."""
    return submit_planned(svc, principal, cache.SPEC, params, options, idempotency_key)
