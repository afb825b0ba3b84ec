"""The `cache` kind's contract: warm a file cache by reading files and folders (seed 000)."""

from __future__ import annotations

import dataclasses

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from jobgate.kinds.spec import KindSpec

MAX_PATHS = 100_000

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
    cache_read_concurrency: int = 4
    cache_read_chunk_bytes: int = 1024 * 1024
    cache_read_bandwidth_limit: int = 0  # bytes/s per job, 0 = as fast as the storage allows
    cache_max_files_per_job: int = 1_000_000


SPEC = KindSpec(
    name="cache",
    description="Warm a file cache by reading files and folders",
    params=CacheParams,
    settings=CacheSettings,
    seed="000",
)
