"""Job rows -> seed 000's camelCase bodies."""

from __future__ import annotations

from typing import Any

from jobgate.sizes import readable_size
from jobgate_gateway.jobs.views import fresh_throughput, percent, progress
from jobgate_gateway.timefmt import iso_ms


def created_body(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "success": True,
        "jobId": str(job["id"]),
        "status": job["status"],
        "totalFiles": job["items_total"],
        "totalSize": {"bytes": job["bytes_total"], "readable": readable_size(job["bytes_total"])},
        "message": "Cache job created successfully",
        "createdAt": iso_ms(job["created_at"]),
    }


def status_body(job: dict[str, Any], failures: list[dict[str, Any]]) -> dict[str, Any]:
    pct = progress(job)
    tput = fresh_throughput(job)
    body: dict[str, Any] = {
        "id": str(job["id"]),
        "status": job["status"],
        "totalFiles": job["items_total"],
        "progress": {
            "files": {
                "completed": job["items_done"],
                "failed": job["items_failed"],
                "total": job["items_total"],
                "percentage": pct["files_pct"],
            },
            "size": {
                "completedBytes": job["bytes_done"],
                "totalBytes": job["bytes_total"],
                "completedReadable": readable_size(job["bytes_done"]),
                "totalReadable": readable_size(job["bytes_total"]),
                "percentage": pct["size_pct"],
            },
            "percentage": pct["overall_pct"],
        },
        # Always present (null when stale) so clients may test `job['throughput']`.
        "throughput": None
        if tput is None
        else {"mbps": tput["mbps"], "readable": tput["readable"], "timestamp": iso_ms(tput["at"])},
        "createdAt": iso_ms(job["created_at"]),
        "startedAt": iso_ms(job["started_at"]),
        "completedAt": iso_ms(job["completed_at"]),
        "error": job["error"],
    }
    if failures:
        body["failedFiles"] = failures
    return body


def list_item(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(job["id"]),
        "status": job["status"],
        "totalFiles": job["items_total"],
        "totalSizeBytes": job["bytes_total"],
        "totalSizeReadable": readable_size(job["bytes_total"]),
        "completedFiles": job["items_done"],
        "completedSizeBytes": job["bytes_done"],
        "completedSizeReadable": readable_size(job["bytes_done"]),
        "failedFiles": job["items_failed"],
        "percentage": percent(
            job["items_done"], job["items_total"], finished=job["status"] == "completed"
        ),
        "createdAt": iso_ms(job["created_at"]),
        "completedAt": iso_ms(job["completed_at"]),
    }
