"""The `cache` kind's contract: warm a file cache by reading files and folders (seed 000)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from jobgate.errors import InvalidRequest
from jobgate.kinds.spec import KindSpec, Plan, schema_of
from jobgate.paths import CacheFile, CacheRoot, PathError

if TYPE_CHECKING:  # jobgate.config imports the kinds
    from jobgate.config import Settings

MAX_PATHS = 100_000
MAX_MISSING_NAMED = 20

DEFAULT_CLIENT_PREFIXES = (
    "/Volumes/dmpfs/tc-east-1",
    "C:\\dmpfs\\tc-east-1",
    "/mnt/lucidlink/tc-east-1",
)


class CacheParams(Schema):
    """Paths as the client sees them: relative to the filespace root or client-absolute."""

    files = fields.List(fields.String(), load_default=list, validate=validate.Length(max=MAX_PATHS))
    directories = fields.List(
        fields.String(), load_default=list, validate=validate.Length(max=MAX_PATHS)
    )
    recursive = fields.Boolean(load_default=True)

    @validates_schema
    def _needs_paths(self, data, **_kwargs) -> None:
        if not data.get("files") and not data.get("directories"):
            raise ValidationError("Provide at least one path in 'files' or 'directories'")


@dataclasses.dataclass(frozen=True)
class CacheSettings:
    cache_root: str = "var/filespace"
    cache_client_prefixes: tuple[str, ...] = DEFAULT_CLIENT_PREFIXES
    cache_progress_file_threshold: int = 10
    cache_progress_time_threshold_ms: int = 2000
    cache_concurrency: int = 4  # jobs one cache worker process runs at once (I/O bound)
    cache_read_concurrency: int = 4  # files one job reads at once
    cache_read_chunk_bytes: int = 1024 * 1024
    cache_read_bandwidth_limit: int = 0  # bytes/s per job, 0 = as fast as the storage allows
    cache_max_files_per_job: int = 1_000_000


def expand_paths(
    settings: Settings, *, files: list[str], directories: list[str], recursive: bool
) -> list[CacheFile]:
    """Every regular file the params name, once each; InvalidRequest (a 400 at submission,
    a failed run for a schedule) naming any bad or missing path."""
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


def plan(_conn: Any, settings: Settings, _owner_id: str, params: dict[str, Any]) -> Plan:
    """Every file the params name becomes one item of the job, with its size, as the
    filespace holds them now (the filespace is everyone's: no connection or owner needed)."""
    found = expand_paths(
        settings,
        files=params["files"],
        directories=params["directories"],
        recursive=params["recursive"],
    )
    return Plan(
        params=schema_of(CacheParams).dump(params),
        items=[(f.relpath, f.size) for f in found],
        bytes_total=sum(f.size for f in found),
    )


SPEC = KindSpec(
    name="cache",
    description="Warm a file cache by reading files and folders",
    params=CacheParams,
    settings=CacheSettings,
    seed="000",
    plan=plan,
)
