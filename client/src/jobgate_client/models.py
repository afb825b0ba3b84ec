"""What the API answers, typed. Resources are `TypedDict`s of the JSON exactly as the server
sends it (nothing is converted or dropped, so `--json` prints what the API said and a field
added on the server needs no client release); `Page` and `JobEvent` are the client's own
shapes: a listing with its total, and one event of a job's stream whatever the transport."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Generic, TypedDict, TypeVar

T = TypeVar("T")

TERMINAL = frozenset({"completed", "failed", "cancelled"})
STATUSES = ("pending", "running", "retrying", "completed", "failed", "cancelled")


class ProgressDetail(TypedDict, total=False):
    items_done: int
    items_failed: int
    items_total: int
    bytes_done: int
    bytes_total: int
    bytes_done_readable: str
    bytes_total_readable: str
    items_percentage: int
    bytes_percentage: int
    percentage: int
    current_item: str | None


class Throughput(TypedDict, total=False):
    bytes_per_second: float
    mbps: float
    readable: str
    at: str


class Job(TypedDict, total=False):
    """A job of any kind (`GET /api/v1/jobs/{id}`'s `job`, an item of the list)."""

    id: str
    kind: str
    status: str
    owner_id: str
    params: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    backoff: str
    backoff_seconds: float
    progress: int
    progress_detail: ProgressDetail
    throughput: Throughput | None
    error: str | None
    result: Any
    cancel_requested: bool
    request_id: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    updated_at: str
    next_attempt_at: str | None
    failures: list[dict[str, Any]]
    # container jobs
    name: str | None
    image: str
    container_id: str | None
    exit_code: int | None
    resource_usage: dict[str, Any]
    # scrape jobs (seed 002)
    mode: str
    value: str
    limit: int
    total_videos: int
    successful_downloads: int
    failed_downloads: int


class JobDetail(TypedDict, total=False):
    """`GET /api/v1/jobs/{id}`: the job, and what its kind adds beside it."""

    job: Job
    videos: list[dict[str, Any]]
    drive_links: list[dict[str, Any]]


class LogLine(TypedDict):
    id: int
    ts: str
    level: str  # info, warning, error; a container's stdout / stderr
    message: str


class FileInfo(TypedDict, total=False):
    id: str
    filename: str
    size: int
    sha256: str
    content_type: str
    role: str  # upload or output
    job_id: str | None
    media: dict[str, Any] | None
    created_at: str
    download_url: str


class Schedule(TypedDict, total=False):
    id: str
    name: str
    kind: str
    owner_id: str
    params: dict[str, Any]
    priority: int | None
    max_attempts: int | None
    backoff: str | None
    backoff_seconds: float | None
    interval_minutes: int | None
    cron: str | None
    enabled: bool
    next_run_at: str | None
    last_run_at: str | None
    total_runs: int
    successful_runs: int
    failed_runs: int
    created_at: str
    updated_at: str


class Webhook(TypedDict, total=False):
    id: str
    owner_id: str
    url: str
    events: list[str]
    description: str | None
    active: bool
    secret: str  # only when created or rotated
    created_at: str
    updated_at: str


class Delivery(TypedDict, total=False):
    id: str
    webhook_id: str
    event_id: int
    event_type: str
    message_id: str
    job_id: str
    status: str
    attempts: int
    max_attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: str | None
    next_retry_at: str | None
    result: dict[str, Any] | None
    created_at: str
    completed_at: str | None


class User(TypedDict, total=False):
    id: str
    username: str
    role: str
    scopes: list[str]
    is_active: bool
    created_at: str
    updated_at: str


class ApiKey(TypedDict, total=False):
    id: str
    user_id: str
    name: str
    prefix: str
    scopes: list[str]
    key: str  # only in the answer that created it
    created_at: str
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None


class Tokens(TypedDict, total=False):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    user: User


class Worker(TypedDict, total=False):
    worker_id: str
    kind: str
    status: str  # active / inactive
    active: bool
    state: str  # idle, busy, stopping, stopped
    external: bool
    hostname: str
    pid: int
    current_load: int
    max_capacity: int
    current_task_id: str | None
    jobs_completed: int
    jobs_failed: int
    started_at: str
    last_heartbeat: str
    stopped_at: str | None


class WorkersStatus(TypedDict, total=False):
    healthy: bool
    total: int
    active: int
    inactive: int
    current_load: int
    max_capacity: int
    by_kind: dict[str, dict[str, int]]
    workers: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its items, the total matching the filters, and where the next
    page starts (None on the last page). `total` is None when the server did not count
    them all (a `created_since` listing of more than 1,000 jobs): `total_min` is then how
    many there are at least. `next_cursor` continues the listing by keyset (jobs only)."""

    items: list[T]
    total: int | None
    limit: int
    offset: int
    next_offset: int | None = None
    next_cursor: str | None = None
    total_min: int | None = None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclasses.dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream, the same whether it came over the WebSocket, Server-Sent
    Events or polling.

    `type`: `snapshot` (the job as it is, first), `progress`, `status` (a state change:
    `event` says which, e.g. `started`, `retrying`, `completed`), `file` (a cache job's file
    read: its path and status are in `data`), `container_event` (in `data["container"]`).
    `status` is the job's status after the event (None for `file`/`container_event`)."""

    type: str
    job_id: str
    transport: str
    status: str | None = None
    event: str | None = None
    progress: int | None = None
    progress_detail: ProgressDetail | None = None
    throughput_bps: float | None = None
    error: str | None = None
    event_id: int | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def final(self) -> bool:
        """The job has ended (completed, failed or cancelled): the stream is over."""
        return self.type in ("snapshot", "status") and self.status in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
