"""The `cache` kind's API module: the contract's plan expands and totals the paths (the same
code a schedule's run goes through), then the job is submitted with one item per file."""

from __future__ import annotations

from typing import Any

from jobgate.identity import Principal
from jobgate.jobs.submission import Submission
from jobgate.kinds import cache
from jobgate_gateway.jobs.service import prepare_planned
from jobgate_gateway.services import Services


def prepare(
    svc: Services, principal: Principal, params: dict[str, Any], options: dict[str, Any]
) -> Submission:
    """Every file the params name becomes one item of the job, with its size."""
    return prepare_planned(svc, principal, cache.SPEC, params, options)
