"""The `container` kind's API module: who may run containers, which images, which inputs.

The gateway never talks to the container engine: it checks what it can answer from its own
state (the `containers` scope, the image allow-list, that every input file exists in the
owner's files-by-path namespace) and records the job; an image the engine does not have
fails in the worker, without retries. Seed 003's routes (`compat/seed003/jobs.py`) and
`POST /api/v1/jobs` with `"kind": "container"` both submit through `submit`.
"""

from __future__ import annotations

from typing import Any

from jobgate import files
from jobgate.errors import Forbidden, InvalidRequest
from jobgate.identity import Principal
from jobgate.jobs.submission import Submission
from jobgate.kinds import container
from jobgate_gateway.services import Services

SCOPE = "containers"
# Seed 003's `retry_policy.backoff` -> `jobs.backoff` (which knows `fixed` and `exponential`).
# `linear` (base * n) is served as `exponential` (base * 2^(n-1)): the same delays for the
# first two retries, which is all the default three attempts make.
STORED_BACKOFF = {"exponential": "exponential", "fixed": "fixed", "linear": "exponential"}


def require_scope(principal: Principal) -> Principal:
    """Container runs need the `containers` scope (DESIGN.md; an admin's login has it)."""
    if not principal.has_scope(SCOPE):
        raise Forbidden(f"This credential lacks the '{SCOPE}' scope")
    return principal


def check_image(svc: Services, image: str) -> None:
    """An image outside `CONTAINER_IMAGE_ALLOWLIST` is refused with 403: the request is
    well-formed, the platform's policy forbids it."""
    allowlist = tuple(svc.settings.container_image_allowlist)
    if not container.image_allowed(image, allowlist):
        raise Forbidden(
            f"Image '{image}' is not allowed on this server",
            details={"image": image, "allowed": list(allowlist)},
        )


def missing_inputs(svc: Services, owner_id: str, params: dict[str, Any]) -> list[str]:
    """The `input_files[].source` paths that are not in the owner's files namespace (a
    path that cannot name a file, an escape attempt, is a 400 of its own: InvalidPath)."""
    sources = list(dict.fromkeys(spec["source"] for spec in params.get("input_files") or []))
    if not sources:
        return []
    with svc.db.transaction() as conn:
        return [
            source
            for source in sources
            if files.file_at_path(conn, owner_id=owner_id, path=source) is None
        ]


def check_options(options: dict[str, Any]) -> None:
    """The kind's contract caps attempts lower than the canonical API does."""
    attempts = options.get("max_attempts")
    if attempts is not None and attempts > container.MAX_ATTEMPTS:
        raise InvalidRequest(
            "Request validation failed",
            details={"fields": {"max_attempts": [f"Must be at most {container.MAX_ATTEMPTS}."]}},
        )


def prepare(
    svc: Services, principal: Principal, params: dict[str, Any], options: dict[str, Any]
) -> Submission:
    """Scope, then options, image and inputs (each input missing is named in one 400), then
    the job; its params are stored as the contract dumps them, for the worker to load."""
    require_scope(principal)
    check_options(options)
    check_image(svc, params["image"])
    missing = missing_inputs(svc, principal.user_id, params)
    if missing:
        raise InvalidRequest(
            f"Input files not found: {', '.join(missing[:20])}", details={"missing": missing}
        )
    return Submission(
        kind=container.SPEC.name, params=container.SPEC.dump_params(params), options=options
    )


def seed_options(priority: str, retry_policy: dict[str, Any] | None) -> dict[str, Any]:
    """Seed 003's `priority` word and `retry_policy` as the job's options."""
    options: dict[str, Any] = {"priority": container.PRIORITIES[priority]}
    policy = retry_policy or {}
    if policy.get("max_attempts") is not None:
        options["max_attempts"] = policy["max_attempts"]
    if policy.get("backoff") is not None:
        options["backoff"] = STORED_BACKOFF[policy["backoff"]]
    return options


def priority_word(priority: int) -> str:
    """`jobs.priority` in seed 003's words; numbers from the canonical API go to the nearest."""
    if priority <= 3:
        return "low"
    return "high" if priority >= 7 else "normal"


def details_of(job: dict[str, Any]) -> dict[str, Any]:
    """What the worker records about the run (`jobs.details`, migration 0007); {} before."""
    details = job.get("details")
    return details if isinstance(details, dict) else {}


def resource_usage(job: dict[str, Any]) -> dict[str, Any]:
    """Seed 003's `resource_usage`: what the worker measured, 0 until it measured anything."""
    usage = details_of(job).get("resource_usage") or {}
    return {
        "cpu_time": float(usage.get("cpu_time") or 0),
        "memory_peak": int(usage.get("memory_peak") or 0),
        "network_io": int(usage.get("network_io") or 0),
    }


def job_fields(job: dict[str, Any]) -> dict[str, Any]:
    """A container job's own fields in canonical job objects: its name and image, and what
    the worker recorded (container id, exit code, resource usage)."""
    params = job.get("params") or {}
    details = details_of(job)
    return {
        "name": params.get("name"),
        "image": params.get("image"),
        "container_id": details.get("container_id"),
        "exit_code": details.get("exit_code"),
        "resource_usage": resource_usage(job),
    }
