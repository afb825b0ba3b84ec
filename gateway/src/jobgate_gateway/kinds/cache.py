"""The `cache` kind's API module: normalize, expand and total the paths, then submit."""

from __future__ import annotations

from typing import Any

from jobgate.config import Settings
from jobgate.errors import InvalidRequest
from jobgate.identity import Principal
from jobgate.kinds import cache
from jobgate.paths import CacheFile, CacheRoot, PathError
from jobgate_gateway.jobs.service import submit_job
from jobgate_gateway.services import Services

MAX_MISSING_NAMED = 20


def expand_paths(
    settings: Settings, *, files: list[str], directories: list[str], recursive: bool
) -> list[CacheFile]:
    """Every regular file the request names, once each; 400 naming any bad or missing path."""
    root = CacheRoot(settings.cache_root, settings.cache_client_prefixes)
    try:
        found, missing = root.expand(files, directories, recursive=recursive)
    except PathError as exc:
        raise InvalidRequest(
            f"Invalid path '{exc.path}': {exc.reason}",
            details={"path": exc.path, "reason": exc.reason},
        ) from None
    except OSError as exc:
        raise InvalidRequest(
            f"Cannot read '{exc.filename}': {exc.strerror}", details={"path": str(exc.filename)}
        ) from None
    if missing:
        named = ", ".join(missing[:MAX_MISSING_NAMED])
        more = len(missing) - MAX_MISSING_NAMED
        raise InvalidRequest(
            f"Paths not found: {named}" + (f" (and {more} more)" if more > 0 else ""),
            details={"missing": missing},
        )
    if not found:
        raise InvalidRequest("No files found for the given paths")
    if len(found) > settings.cache_max_files_per_job:
        limit = settings.cache_max_files_per_job
        raise InvalidRequest(f"Too many files in one job ({len(found)}); the limit is {limit}")
    return found


def submit(
    svc: Services,
    principal: Principal,
    params: dict[str, Any],
    options: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Every file the params name becomes one item of the job, with its size."""
    found = expand_paths(
        svc.settings,
        files=params["files"],
        directories=params["directories"],
        recursive=params["recursive"],
    )
    return submit_job(
        svc,
        principal,
        kind=cache.SPEC.name,
        params=cache.SPEC.dump_params(params),
        items=[(f.relpath, f.size) for f in found],
        bytes_total=sum(f.size for f in found),
        options=options,
        idempotency_key=idempotency_key,
    )
