"""A job's progress as whole percentages, from its counters: one rule for the gateway's
answers and stats-service's streams (a job row or a job event's data both have the keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def percent(done: int, total: int, *, finished: bool) -> int:
    """Whole percent, floored so 100 means really all; an empty total is 100 once finished."""
    if total <= 0:
        return 100 if finished else 0
    return min(100, int(done * 100 // total))


def progress(job: Mapping[str, Any]) -> dict[str, Any]:
    """Whole percentages: of items, of bytes, and overall (seed 000: their average). Items
    of unknown size (a scrape job's videos before download) count by number alone; kinds
    without items (a conversion) report their own percentage instead."""
    finished = job["status"] == "completed"
    files_pct = percent(job["items_done"], job["items_total"], finished=finished)
    size_pct = percent(job["bytes_done"], job["bytes_total"], finished=finished)
    overall = round((files_pct + size_pct) / 2)
    if job["items_total"] and not job["bytes_total"] and not finished:
        overall = files_pct
    if job["items_total"] == 0 and job.get("progress_pct") is not None and not finished:
        overall = min(100, int(job["progress_pct"]))
    return {"files_pct": files_pct, "size_pct": size_pct, "overall_pct": overall}
