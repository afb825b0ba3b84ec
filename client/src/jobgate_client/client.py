"""`Client`: every canonical route of the API, grouped by area (`client.jobs`,
`client.files`, `client.schedules`, `client.webhooks`, `client.workers`, `client.auth`,
`client.users`), on one `HttpTransport`.

```python
from jobgate_client import Client

client = Client("http://localhost:8080", api_key="demo-api-key-2024")
job = client.jobs.cache(directories=["00_Media/Farm"])
for event in client.jobs.watch(job["id"]):
    print(event.type, event.status, event.progress)
```
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlparse

import requests

from jobgate_client import transfer
from jobgate_client.errors import JobFailed
from jobgate_client.models import (
    TERMINAL,
    ApiKey,
    Delivery,
    FileInfo,
    Job,
    JobDetail,
    JobEvent,
    LogLine,
    Page,
    Schedule,
    Tokens,
    User,
    Webhook,
    Worker,
    WorkersStatus,
)
from jobgate_client.streams import TRANSPORTS, Watcher
from jobgate_client.transfer import Progress
from jobgate_client.transport import DEFAULT_URL, HttpTransport, TokensCallback

JOB_OPTIONS = ("priority", "max_attempts", "backoff", "backoff_seconds")
BATCH_MAX = 1000  # jobs in one `POST /api/v1/jobs/batch`


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Leave out what the caller did not give (None), so the server's defaults apply."""
    return {k: v for k, v in values.items() if v is not None}


def _next_offset(response: requests.Response) -> int | None:
    """The offset of the next page from the `Link` header (RFC 8288), if there is one."""
    link = response.links.get("next")
    if not link:
        return None
    values = parse_qs(urlparse(link["url"]).query).get("offset")
    return int(values[0]) if values and values[0].isdigit() else None


class _Area:
    def __init__(self, http: HttpTransport) -> None:
        self.http = http


class Jobs(_Area):
    """`/api/v1/jobs`: jobs of every kind."""

    def submit(
        self,
        kind: str,
        *,
        idempotency_key: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: str | None = None,
        backoff_seconds: float | None = None,
        **params: Any,
    ) -> Job:
        """Submit a job of `kind` with the kind's parameters. Every submission carries an
        `Idempotency-Key` (a new one unless given), so it is safe to retry: a repeated key
        answers the first job."""
        body = {
            "kind": kind,
            **_clean(params),
            **_clean(
                {
                    "priority": priority,
                    "max_attempts": max_attempts,
                    "backoff": backoff,
                    "backoff_seconds": backoff_seconds,
                }
            ),
        }
        key = idempotency_key or uuid.uuid4().hex
        return cast(
            Job, self.http.json("POST", "/api/v1/jobs", json=body, headers={"Idempotency-Key": key})
        )

    def submit_many(
        self, jobs: Sequence[Mapping[str, Any]], *, batch_size: int = BATCH_MAX
    ) -> list[Job]:
        """Submit many jobs, each a `POST /api/v1/jobs` body (`kind`, its params, options,
        optional `idempotency_key`), through `POST /api/v1/jobs/batch` in batches of at most
        1,000; the jobs in the order given. Each item without a key gets a new one, so a
        batch is safe to retry (its jobs answer as the first time, `created` false). Each
        batch is all or nothing; batches before a failing one stay submitted."""
        if not 1 <= batch_size <= BATCH_MAX:
            raise ValueError(f"batch_size must be 1-{BATCH_MAX}")
        items = [
            {**_clean(job), "idempotency_key": job.get("idempotency_key") or uuid.uuid4().hex}
            for job in jobs
        ]
        submitted: list[Job] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            # Every item carries its key, so the request may be retried: the header only
            # tells the transport so (the route answers by the items' own keys).
            body = self.http.json(
                "POST",
                "/api/v1/jobs/batch",
                json={"jobs": chunk},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            submitted.extend(cast(list[Job], body["jobs"]))
        return submitted

    def cache(
        self,
        files: Sequence[str] = (),
        directories: Sequence[str] = (),
        *,
        recursive: bool = True,
        **options: Any,
    ) -> Job:
        """Warm the cache: read these files and folders (paths relative to the filespace
        root, or absolute from a client mount)."""
        return self.submit(
            "cache",
            files=list(files),
            directories=list(directories),
            recursive=recursive,
            **options,
        )

    def convert(
        self,
        input_file: str,
        *,
        bitrate: str | None = None,
        output_name: str | None = None,
        **options: Any,
    ) -> Job:
        """Convert an uploaded video (`files.upload`'s id) to MP3."""
        return self.submit(
            "convert", input_file=input_file, bitrate=bitrate, output_name=output_name, **options
        )

    def scrape(
        self,
        mode: str,
        value: str,
        *,
        limit: int | None = None,
        no_watermark: bool | None = None,
        since: str | None = None,
        until: str | None = None,
        drive_folder_id: str | None = None,
        video_ids: Sequence[str] | None = None,
        **options: Any,
    ) -> Job:
        """Collect a profile's (`mode="profile"`) or hashtag's videos with their metadata."""
        return self.submit(
            "scrape",
            mode=mode,
            value=value,
            limit=limit,
            no_watermark=no_watermark,
            since=since,
            until=until,
            drive_folder_id=drive_folder_id,
            video_ids=list(video_ids) if video_ids is not None else None,
            **options,
        )

    def container(
        self,
        image: str,
        command: Sequence[str] | None = None,
        *,
        name: str | None = None,
        environment: Mapping[str, str] | None = None,
        input_files: Sequence[Mapping[str, str]] | None = None,
        output_patterns: Sequence[str] | None = None,
        resources: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Job:
        """Run `command` in `image` (needs the `containers` scope). `input_files` are
        `{"source": <a path of your files API>, "destination": <container path>}`;
        `resources` takes `cpu_limit`, `memory_limit`, `timeout` ("30m")."""
        return self.submit(
            "container",
            image=image,
            command=list(command) if command is not None else None,
            name=name,
            environment=dict(environment) if environment is not None else None,
            input_files=[dict(f) for f in input_files] if input_files is not None else None,
            output_patterns=list(output_patterns) if output_patterns is not None else None,
            resources=dict(resources) if resources is not None else None,
            **options,
        )

    def task(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        handler: str | None = None,
        description: str | None = None,
        timeout: int | None = None,
        **options: Any,
    ) -> Job:
        """Run a task: the handler named `handler`, else the one named like `name`, else
        the server's default handler."""
        return self.submit(
            "task",
            name=name,
            payload=dict(payload) if payload is not None else None,
            handler=handler,
            description=description,
            timeout=timeout,
            **options,
        )

    def list(
        self,
        *,
        kind: str | None = None,
        status: str | None = None,
        owner: str | None = None,
        created_since: str | None = None,
        limit: int = 50,
        offset: int = 0,
        sort: str | None = None,
        order: str | None = None,
        cursor: str | None = None,
    ) -> Page[Job]:
        """One page of jobs, newest first unless `sort`/`order` say otherwise; yours (an
        admin's: everyone's, or `owner`'s). `cursor` (a page's `next_cursor`) continues a
        listing by keyset instead of `offset`: as fast at any depth, and no job is skipped
        or repeated while new ones arrive."""
        params = {
            "kind": kind,
            "status": status,
            "owner": owner,
            "created_since": created_since,
            "limit": limit,
            "offset": None if cursor else offset,
            "sort": None if cursor else sort,
            "order": None if cursor else order,
            "cursor": cursor,
        }
        response = self.http.request("GET", "/api/v1/jobs", params=params)
        counted = response.headers.get("X-Total-Count")
        at_least = response.headers.get("X-Total-Count-Min")
        return Page(
            response.json(),
            int(counted) if counted is not None else None,
            limit,
            offset,
            _next_offset(response),
            next_cursor=response.headers.get("X-Next-Cursor"),
            total_min=int(at_least) if at_least is not None else None,
        )

    def iter(self, *, page_size: int = 100, **filters: Any) -> Iterator[Job]:
        """Every job matching the filters, page after page by keyset (`next_cursor`)."""
        page = self.list(limit=page_size, **filters)
        yield from page.items
        while page.next_cursor:
            page = self.list(limit=page_size, cursor=page.next_cursor, **filters)
            yield from page.items

    def detail(self, job_id: str) -> JobDetail:
        """The job and what its kind adds (a scrape job's `videos` and `drive_links`)."""
        return cast(JobDetail, self.http.json("GET", f"/api/v1/jobs/{job_id}"))

    def get(self, job_id: str) -> Job:
        return self.detail(job_id)["job"]

    def cancel(self, job_id: str) -> Job:
        """Cancel a pending or running job (a finished one is a `Conflict`)."""
        return cast(Job, self.http.json("POST", f"/api/v1/jobs/{job_id}/cancel"))

    def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again; work already done is not redone."""
        return cast(Job, self.http.json("POST", f"/api/v1/jobs/{job_id}/retry"))

    def delete(self, job_id: str) -> None:
        """Delete the job and what it produced (a running job is cancelled first)."""
        self.http.request("DELETE", f"/api/v1/jobs/{job_id}")

    def logs(self, job_id: str, *, after_id: int = 0, limit: int = 500) -> list[LogLine]:
        """The job's log lines after `after_id`, oldest first (a container's output is at
        levels `stdout`/`stderr`)."""
        body = self.http.json(
            "GET", f"/api/v1/jobs/{job_id}/logs", params={"after_id": after_id, "limit": limit}
        )
        return cast(list[LogLine], body["logs"])

    def follow_logs(
        self, job_id: str, *, after_id: int = 0, poll_interval: float = 0.5
    ) -> Iterator[LogLine]:
        """The job's log lines as they are written, until the job has ended and its last
        lines are read. (The log is read by polling; the streams carry no log lines.)"""
        while True:
            lines = self.logs(job_id, after_id=after_id, limit=5000)
            yield from lines
            if lines:
                after_id = lines[-1]["id"]
                if len(lines) == 5000:
                    continue
            if self.get(job_id)["status"] in TERMINAL:
                for line in self.logs(job_id, after_id=after_id, limit=5000):
                    after_id = line["id"]
                    yield line
                return
            self.http.sleep(poll_interval)

    def outputs(self, job_id: str) -> list[FileInfo]:
        """The files the job produced (a conversion's MP3, a container's collected files)."""
        body = self.http.json("GET", f"/api/v1/jobs/{job_id}/output")
        return cast(list[FileInfo], body["files"])

    def download_output(
        self,
        job_id: str,
        name: str,
        dest: str | os.PathLike[str] = ".",
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Save one output file (by its name in `outputs`) to `dest`, a file or folder."""
        path = f"/api/v1/jobs/{job_id}/output/{quote(name)}"
        return transfer.download(
            self.http, path, dest, progress=progress, default_name=Path(name).name
        )

    def watch(
        self,
        job_id: str,
        *,
        transports: Sequence[str] = TRANSPORTS,
        poll_interval: float = 0.5,
        timeout: float | None = None,
    ) -> Watcher:
        """The job's events until it ends: over the WebSocket, else Server-Sent Events,
        else polling (in the order of `transports`). Iterate it; `.used` says which
        transport carried the stream. `timeout` raises `TimeoutError` when exceeded."""
        return Watcher(
            self.http,
            job_id,
            transports=tuple(transports),
            poll_interval=poll_interval,
            timeout=timeout,
        )

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        raise_on_failure: bool = False,
        transports: Sequence[str] = TRANSPORTS,
    ) -> Job:
        """Block until the job ends; its final state. `raise_on_failure` raises
        `JobFailed` for a failed or cancelled job."""
        for _event in self.watch(job_id, timeout=timeout, transports=transports):
            pass
        job = self.get(job_id)
        if raise_on_failure and job.get("status") != "completed":
            raise JobFailed(dict(job))
        return job


class Files(_Area):
    """`/api/v1/files`: uploads (inputs of conversions) and job outputs."""

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        progress: Progress | None = None,
    ) -> FileInfo:
        """Upload a video (MP4/MOV/AVI) from disk, streamed; `progress(done, total)` is
        called as it is sent. The server probes it and answers its id, size and SHA-256."""
        return cast(
            FileInfo,
            transfer.upload(self.http, "/api/v1/files", path, filename=filename, progress=progress),
        )

    def get(self, file_id: str) -> FileInfo:
        return cast(FileInfo, self.http.json("GET", f"/api/v1/files/{file_id}"))

    def download(
        self,
        file_id: str,
        dest: str | os.PathLike[str] = ".",
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Save a file to `dest` (a file path, or a folder: the server's file name)."""
        return transfer.download(
            self.http, f"/api/v1/files/{file_id}/content", dest, progress=progress
        )


class Schedules(_Area):
    """`/api/v1/schedules`: recurring jobs of any schedulable kind."""

    def create(
        self,
        name: str,
        kind: str,
        *,
        interval_minutes: int | None = None,
        cron: str | None = None,
        enabled: bool = True,
        priority: int | None = None,
        max_attempts: int | None = None,
        backoff: str | None = None,
        backoff_seconds: float | None = None,
        params: Mapping[str, Any] | None = None,
        **kind_params: Any,
    ) -> Schedule:
        """A schedule running a `kind` job with the kind's parameters (`params`, or as
        keywords) every `interval_minutes` (>= 5) or on a `cron` expression (UTC); an
        enabled one runs at once. A task's `name` is the schedule's: they are one field."""
        merged = {**(params or {}), **kind_params}
        if merged.get("name", name) != name:
            raise ValueError("a task schedule's name is also its tasks' name: give it once")
        merged.pop("name", None)
        body = {
            "name": name,
            "kind": kind,
            "enabled": enabled,
            **_clean(
                {
                    "interval_minutes": interval_minutes,
                    "cron": cron,
                    "priority": priority,
                    "max_attempts": max_attempts,
                    "backoff": backoff,
                    "backoff_seconds": backoff_seconds,
                }
            ),
            **_clean(merged),
        }
        return cast(Schedule, self.http.json("POST", "/api/v1/schedules", json=body))

    def list(
        self,
        *,
        enabled: bool | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[Schedule]:
        params = {
            "enabled": None if enabled is None else str(enabled).lower(),
            "kind": kind,
            "limit": limit,
            "offset": offset,
        }
        body = self.http.json("GET", "/api/v1/schedules", params=params)
        return _page(body, "schedules")

    def get(self, schedule_id: str) -> Schedule:
        return cast(Schedule, self.http.json("GET", f"/api/v1/schedules/{schedule_id}"))

    def update(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change what is given (PATCH): name, timing, `enabled`, options, kind params."""
        return cast(
            Schedule, self.http.json("PATCH", f"/api/v1/schedules/{schedule_id}", json=changes)
        )

    def enable(self, schedule_id: str) -> Schedule:
        return self.update(schedule_id, enabled=True)

    def disable(self, schedule_id: str) -> Schedule:
        return self.update(schedule_id, enabled=False)

    def toggle(self, schedule_id: str) -> Schedule:
        return cast(Schedule, self.http.json("POST", f"/api/v1/schedules/{schedule_id}/toggle"))

    def delete(self, schedule_id: str) -> None:
        """Delete a schedule; the jobs it made are kept."""
        self.http.request("DELETE", f"/api/v1/schedules/{schedule_id}")


class Webhooks(_Area):
    """`/api/v1/webhooks`: your jobs' status changes POSTed to a URL, signed."""

    def create(
        self,
        url: str,
        events: Sequence[str],
        *,
        description: str | None = None,
        active: bool = True,
    ) -> Webhook:
        """The answer's `secret` (to verify signatures) is shown only this once."""
        body = _clean(
            {"url": url, "events": list(events), "description": description, "active": active}
        )
        return cast(Webhook, self.http.json("POST", "/api/v1/webhooks", json=body))

    def list(self, *, limit: int = 50, offset: int = 0) -> Page[Webhook]:
        body = self.http.json("GET", "/api/v1/webhooks", params={"limit": limit, "offset": offset})
        return _page(body, "webhooks")

    def get(self, webhook_id: str) -> Webhook:
        return cast(Webhook, self.http.json("GET", f"/api/v1/webhooks/{webhook_id}"))

    def update(self, webhook_id: str, **changes: Any) -> Webhook:
        return cast(
            Webhook, self.http.json("PATCH", f"/api/v1/webhooks/{webhook_id}", json=changes)
        )

    def delete(self, webhook_id: str) -> None:
        self.http.request("DELETE", f"/api/v1/webhooks/{webhook_id}")

    def rotate_secret(self, webhook_id: str) -> Webhook:
        return cast(Webhook, self.http.json("POST", f"/api/v1/webhooks/{webhook_id}/rotate-secret"))

    def deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> Page[Delivery]:
        body = self.http.json(
            "GET",
            f"/api/v1/webhooks/{webhook_id}/deliveries",
            params={"status": status, "limit": limit, "offset": offset},
        )
        return _page(body, "deliveries")

    def retry_delivery(self, webhook_id: str, delivery_id: str) -> Delivery:
        return cast(
            Delivery,
            self.http.json("POST", f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"),
        )


class Workers(_Area):
    """`/api/v1/workers` (seed 004's envelope, unwrapped here)."""

    def list(self, *, status: str | None = None, skip: int = 0, limit: int = 50) -> Page[Worker]:
        body = self.http.json(
            "GET", "/api/v1/workers", params={"status": status, "skip": skip, "limit": limit}
        )
        total = int(body.get("pagination", {}).get("total", len(body["data"])))
        following = skip + limit if skip + limit < total else None
        return Page(body["data"], total, limit, skip, following)

    def get(self, worker_id: str) -> Worker:
        body = self.http.json("GET", f"/api/v1/workers/{quote(worker_id, safe='')}")
        return cast(Worker, body["data"])

    def status(self) -> WorkersStatus:
        """Counts of active and busy workers per kind, and each worker's load."""
        return cast(WorkersStatus, self.http.json("GET", "/api/v1/workers/status")["data"])

    def heartbeat(
        self,
        worker_id: str,
        *,
        status: str = "active",
        current_load: int | None = None,
        max_capacity: int | None = None,
    ) -> Worker:
        """Register or refresh a worker running outside Jobgate (`workers:write` scope)."""
        body = _clean(
            {
                "worker_id": worker_id,
                "status": status,
                "current_load": current_load,
                "max_capacity": max_capacity,
            }
        )
        return cast(Worker, self.http.json("POST", "/api/v1/workers/heartbeat", json=body)["data"])


class Auth(_Area):
    """`/api/v1/auth`: sessions, the caller, API keys."""

    def login(self, username: str, password: str) -> Tokens:
        """Log in; the client uses the new tokens from now on (and refreshes them)."""
        tokens = cast(
            Tokens,
            self.http.json(
                "POST",
                "/api/v1/auth/login",
                json={"username": username, "password": password},
                authenticate=False,
            ),
        )
        self.http.api_key = None
        self.http.use_tokens(tokens)
        return tokens

    def refresh(self) -> None:
        self.http.refresh()

    def logout(self) -> None:
        """Revoke this session's refresh token (and forget the tokens)."""
        if self.http.refresh_token:
            self.http.request(
                "POST",
                "/api/v1/auth/logout",
                json={"refresh_token": self.http.refresh_token},
                authenticate=False,
            )
        self.http.token = self.http.refresh_token = None

    def me(self) -> User:
        return cast(User, self.http.json("GET", "/api/v1/auth/me"))

    def api_keys(
        self, *, user_id: str | None = None, include_revoked: bool = False
    ) -> list[ApiKey]:
        params = {"user_id": user_id, "include_revoked": str(include_revoked).lower()}
        body = self.http.json("GET", "/api/v1/auth/api-keys", params=params)
        return cast(list[ApiKey], body["api_keys"])

    def create_api_key(
        self,
        name: str,
        *,
        scopes: Sequence[str] | None = None,
        expires_in_days: int | None = None,
    ) -> ApiKey:
        """A new key for the caller; its `key` is in this answer only."""
        body = _clean(
            {
                "name": name,
                "scopes": list(scopes) if scopes is not None else None,
                "expires_in_days": expires_in_days,
            }
        )
        return cast(ApiKey, self.http.json("POST", "/api/v1/auth/api-keys", json=body))

    def revoke_api_key(self, key_id: str) -> None:
        self.http.request("DELETE", f"/api/v1/auth/api-keys/{key_id}")


class Users(_Area):
    """`/api/v1/auth/users` (admins only)."""

    def list(self, *, limit: int = 100, offset: int = 0) -> Page[User]:
        body = self.http.json(
            "GET", "/api/v1/auth/users", params={"limit": limit, "offset": offset}
        )
        return _page(body, "users")

    def create(
        self,
        username: str,
        password: str,
        *,
        role: str | None = None,
        scopes: Sequence[str] | None = None,
    ) -> User:
        body = _clean(
            {
                "username": username,
                "password": password,
                "role": role,
                "scopes": list(scopes) if scopes is not None else None,
            }
        )
        return cast(User, self.http.json("POST", "/api/v1/auth/users", json=body))

    def get(self, user_id: str) -> User:
        return cast(User, self.http.json("GET", f"/api/v1/auth/users/{user_id}"))

    def update(self, user_id: str, **changes: Any) -> User:
        """Change `role`, `scopes`, `is_active` or `password`."""
        return cast(User, self.http.json("PATCH", f"/api/v1/auth/users/{user_id}", json=changes))

    def deactivate(self, user_id: str) -> User:
        """Deactivate the user and revoke their keys and sessions."""
        return cast(User, self.http.json("DELETE", f"/api/v1/auth/users/{user_id}"))


def _page(body: dict[str, Any], key: str) -> Page[Any]:
    items = body[key]
    total = int(body.get("total", len(items)))
    limit = int(body.get("limit", len(items)))
    offset = int(body.get("offset", 0))
    following = offset + limit if offset + limit < total else None
    return Page(items, total, limit, offset, following)


class Client:
    """Jobgate's API at `url` (default `JOBGATE_URL`, else http://127.0.0.1:8080, the
    edge), authenticated with `api_key` (default `JOBGATE_API_KEY`) or an access `token`
    (with `refresh_token`, renewed on a 401; `on_tokens` hears of new tokens, to store
    them). `retries` applies to idempotent calls and submissions (see `transport`)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        refresh_token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        on_tokens: TokensCallback | None = None,
        session: requests.Session | None = None,
    ) -> None:
        url = url or os.environ.get("JOBGATE_URL") or DEFAULT_URL
        if api_key is None and token is None:
            api_key = os.environ.get("JOBGATE_API_KEY") or None
        self.http = HttpTransport(
            url,
            api_key=api_key,
            token=token,
            refresh_token=refresh_token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            on_tokens=on_tokens,
            session=session,
        )
        self.jobs = Jobs(self.http)
        self.files = Files(self.http)
        self.schedules = Schedules(self.http)
        self.webhooks = Webhooks(self.http)
        self.workers = Workers(self.http)
        self.auth = Auth(self.http)
        self.users = Users(self.http)

    @property
    def url(self) -> str:
        return self.http.base_url

    def health(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.http.json("GET", "/health", authenticate=False))

    def info(self) -> dict[str, Any]:
        """The server's name, version and job kinds."""
        return cast(dict[str, Any], self.http.json("GET", "/info", authenticate=False))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


__all__ = ["Client", "JobEvent", "Page"]
