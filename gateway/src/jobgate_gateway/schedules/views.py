"""Schedule rows -> canonical JSON (snake_case, ISO 8601 UTC times)."""

from __future__ import annotations

from typing import Any

from jobgate_gateway.timefmt import iso_ms

OPTION_NAMES = ("priority", "max_attempts", "backoff", "backoff_seconds")


def schedule_to_dict(row: dict[str, Any]) -> dict[str, Any]:
    options = row["options"] or {}
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "kind": row["kind"],
        "owner_id": str(row["owner_id"]),
        "params": row["params"],
        **{name: options.get(name) for name in OPTION_NAMES},
        "interval_minutes": row["interval_minutes"],
        "cron": row["cron"],
        "enabled": row["enabled"],
        "next_run_at": iso_ms(row["next_run_at"]),
        "last_run_at": iso_ms(row["last_run_at"]),
        "total_runs": row["total_runs"],
        "successful_runs": row["successful_runs"],
        "failed_runs": row["failed_runs"],
        "created_at": iso_ms(row["created_at"]),
        "updated_at": iso_ms(row["updated_at"]),
    }
