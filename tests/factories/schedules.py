"""Schedules rows as the gateway writes them (through `jobgate.schedules.create`), with cache
params by default."""

from __future__ import annotations

from typing import Any

from jobgate import db, kinds, schedules


def make_schedule(
    database: db.Database,
    *,
    owner_id: Any,
    kind: str = "cache",
    params: dict[str, Any] | None = None,
    interval_minutes: int | None = 5,
    cron: str | None = None,
    enabled: bool = True,
    options: dict[str, Any] | None = None,
    name: str = "every five minutes",
) -> dict[str, Any]:
    """A schedule whose params passed the kind's contract (default: the whole filespace
    fixture's `00_Media/Farm` folder); cron instead of the interval when `cron` is given."""
    spec = kinds.get(kind)
    loaded = spec.load_params(params or {"directories": ["00_Media/Farm"]})
    with database.transaction() as conn:
        return schedules.create(
            conn,
            owner_id=str(owner_id),
            name=name,
            kind=kind,
            params=spec.dump_params(loaded),
            options=options or {"priority": 5},
            interval_minutes=None if cron else interval_minutes,
            cron=cron,
            enabled=enabled,
        )
