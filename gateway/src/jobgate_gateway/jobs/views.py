"""Job rows -> canonical JSON (snake_case), with progress and fresh-only throughput."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jobgate import kinds
from jobgate.jobs.progress import percent, progress
from jobgate.sizes import mib_per_second, readable_rate, readable_size
from jobgate_gateway.timefmt import iso_ms

THROUGHPUT_FRESH_S = 10.0

__all__ = ["fresh_throughput", "job_to_dict", "kind_hook", "percent", "progress"]


def fresh_throughput(job: dict[str, Any], now: dt.datetime | None = None) -> dict[str, Any] | None:
    """Throughput while the job runs and the sample is under 10 s old (seed 000), else None."""
    at, bps = job.get("throughput_at"), job.get("throughput_bps")
    if job["status"] != "running" or at is None or bps is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    if (now - at).total_seconds() >= THROUGHPUT_FRESH_S:
        return None
    return {
        "bytes_per_second": bps,
        "mbps": mib_per_second(bps),
        "readable": readable_rate(bps),
        "at": at,
    }


def kind_hook(job: dict[str, Any], name: str) -> Any:
    """The job's kind's optional API hook (`job_fields`, `job_extras`), if the kind exists."""
    try:
        return kinds.get(job["kind"]).api_hook(name)
    except kinds.UnknownKind:
        return None


def job_to_dict(
    job: dict[str, Any], *, failures: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The job object of `/api/v1/jobs`, which seed 002's clients share (DESIGN.md, "Public
    API"): `progress` is the overall percentage, the detail is in `progress_detail`, and the
    kind adds its own fields (a scrape job's `mode`, `value`, `total_videos`, …)."""
    pct = progress(job)
    tput = fresh_throughput(job)
    body = {
        "id": str(job["id"]),
        "kind": job["kind"],
        "status": job["status"],
        "owner_id": str(job["owner_id"]),
        "params": job["params"],
        "priority": job["priority"],
        "attempt": job["attempt"],
        "max_attempts": job["max_attempts"],
        "backoff": job["backoff"],
        "backoff_seconds": job["backoff_seconds"],
        "progress": pct["overall_pct"],
        "progress_detail": {
            "items_done": job["items_done"],
            "items_failed": job["items_failed"],
            "items_total": job["items_total"],
            "bytes_done": job["bytes_done"],
            "bytes_total": job["bytes_total"],
            "bytes_done_readable": readable_size(job["bytes_done"]),
            "bytes_total_readable": readable_size(job["bytes_total"]),
            "items_percentage": pct["files_pct"],
            "bytes_percentage": pct["size_pct"],
            "percentage": pct["overall_pct"],
            "current_item": job["current_item"],
        },
        "throughput": None if tput is None else {**tput, "at": iso_ms(tput["at"])},
        "error": job["error"],
        "result": job["result"],
        "cancel_requested": job["cancel_requested"],
        "request_id": job["request_id"],
        "created_at": iso_ms(job["created_at"]),
        "started_at": iso_ms(job["started_at"]),
        "completed_at": iso_ms(job["completed_at"]),
        "updated_at": iso_ms(job["updated_at"]),
        "next_attempt_at": iso_ms(job["next_attempt_at"]),
    }
    if failures:
        body["failures"] = failures
    fields = kind_hook(job, "job_fields")
    if fields is not None:
        body.update(fields(job))
    return body
