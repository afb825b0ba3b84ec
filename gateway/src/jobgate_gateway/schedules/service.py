"""Creating, finding, changing and listing schedules on behalf of a principal.

Routes of any dialect (the canonical `/api/v1/schedules`, seed 002's `/scheduled-jobs`) call
these with plain values; every check lives here: the kind must be schedulable, its params
pass its contract (the same one the worker loads with) and its plan (a cache schedule's
folders must exist now, as a job's must), the timing is an interval of at least 5 minutes
or a cron expression. Another user's schedule is a 404, like another user's job.
"""

from __future__ import annotations

import uuid
from typing import Any

from jobgate import db, kinds, schedules, workers
from jobgate.errors import InvalidRequest, NotFound
from jobgate.identity import Principal
from jobgate.kinds import KindSpec
from jobgate.web import load_or_400
from jobgate_gateway.auth import can_access, owner_filter
from jobgate_gateway.jobs.schemas import JobOptionsSchema
from jobgate_gateway.services import Services

SCHEDULER_FRESH_S = 30.0


def parse_schedule_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidRequest("Invalid schedule ID format", details={"schedule_id": raw}) from None


def schedulable_kind(name: str) -> KindSpec:
    """The kind's spec; 400 for an unknown kind or one whose jobs cannot be re-made."""
    supported = [spec.name for spec in kinds.specs() if spec.schedulable]
    try:
        spec = kinds.get(name)
    except kinds.UnknownKind:
        raise InvalidRequest(
            f"Unsupported job kind '{name}'", details={"supported": supported}
        ) from None
    if not spec.schedulable:
        why = "the platform makes them" if spec.internal else "each one converts a single upload"
        raise InvalidRequest(
            f"Jobs of kind '{name}' cannot be scheduled: {why}",
            details={"kind": name, "supported": supported},
        )
    return spec


def checked_params(
    svc: Services, spec: KindSpec, owner_id: str, raw: dict[str, Any]
) -> dict[str, Any]:
    """The params as stored: loaded by the kind's contract (400 when they do not fit), and
    planned once, so what would fail every run (a missing folder) is a 400 now."""
    params = load_or_400(spec.params(), raw)
    with svc.db.transaction() as conn:
        spec.make_plan(conn, svc.settings, owner_id, params)
    return spec.dump_params(params)


def _options(raw: dict[str, Any] | None, *, base: dict[str, Any], partial: bool) -> dict[str, Any]:
    """`base` with the options in `raw` validated and applied (with the schema's defaults
    unless `partial`); null means the platform default."""
    loaded = load_or_400(JobOptionsSchema(partial=partial), raw or {})
    merged = {**base, **loaded}
    return {name: value for name, value in merged.items() if value is not None}


def create_schedule(
    svc: Services,
    principal: Principal,
    *,
    name: str,
    kind: str,
    params: dict[str, Any],
    options: dict[str, Any] | None = None,
    interval_minutes: int | None = None,
    cron: str | None = None,
    enabled: bool = True,
) -> dict[str, Any]:
    """A schedule of the principal's; enabled, its first run is due at once."""
    schedules.check_name(name)
    schedules.check_timing(interval_minutes=interval_minutes, cron=cron)
    spec = schedulable_kind(kind)
    stored = checked_params(svc, spec, principal.user_id, params)
    with svc.db.transaction() as conn:
        return schedules.create(
            conn,
            owner_id=principal.user_id,
            name=name,
            kind=spec.name,
            params=stored,
            options=_options(options, base={}, partial=False),
            interval_minutes=interval_minutes,
            cron=cron,
            enabled=enabled,
        )


def find_schedule(
    svc: Services, principal: Principal, raw_id: str, *, kind: str | None = None
) -> dict[str, Any]:
    """The schedule if it exists, makes jobs of `kind` (when given; a dialect that serves
    one kind sees no other) and the principal may see it; else 404."""
    schedule_id = parse_schedule_id(raw_id)
    with svc.db.transaction() as conn:
        row = schedules.get(conn, schedule_id=schedule_id)
    if row is None or not can_access(principal, row) or (kind and row["kind"] != kind):
        raise NotFound("Schedule not found")
    return row


def _gone(row: dict[str, Any] | None) -> dict[str, Any]:
    """A row deleted between finding and changing it is a 404 too."""
    if row is None:
        raise NotFound("Schedule not found")
    return row


def update_schedule(
    svc: Services,
    principal: Principal,
    raw_id: str,
    *,
    name: str | None = None,
    kind: str | None = None,
    params: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    interval_minutes: int | None = None,
    cron: str | None = None,
    enabled: bool | None = None,
    only_kind: str | None = None,
) -> dict[str, Any]:
    """PATCH: None leaves a field as it is. `params` are merged onto the stored ones (or
    replace them when `kind` changes); an interval clears the cron expression and the other
    way round; options sent as null go back to the defaults."""
    current = find_schedule(svc, principal, raw_id, kind=only_kind)
    changes: dict[str, Any] = {}
    if name is not None:
        schedules.check_name(name)
        changes["name"] = name
    if interval_minutes is not None or cron is not None:
        changes.update(interval_minutes=interval_minutes, cron=cron)
        schedules.check_timing(interval_minutes=interval_minutes, cron=cron)
    if enabled is not None:
        changes["enabled"] = enabled
    if options is not None:
        changes["options"] = _options(options, base=current["options"] or {}, partial=True)
    if kind is not None or params:
        spec = schedulable_kind(kind or current["kind"])
        base = current["params"] if spec.name == current["kind"] else {}
        owner = str(current["owner_id"])
        changes.update(
            kind=spec.name, params=checked_params(svc, spec, owner, {**base, **(params or {})})
        )
    with svc.db.transaction() as conn:
        return _gone(schedules.update(conn, schedule_id=str(current["id"]), changes=changes))


def toggle(
    svc: Services, principal: Principal, raw_id: str, *, only_kind: str | None = None
) -> dict[str, Any]:
    """Enable a disabled schedule or disable an enabled one."""
    current = find_schedule(svc, principal, raw_id, kind=only_kind)
    with svc.db.transaction() as conn:
        return _gone(schedules.toggle(conn, schedule_id=str(current["id"])))


def delete(
    svc: Services, principal: Principal, raw_id: str, *, only_kind: str | None = None
) -> None:
    """Delete a schedule; the jobs it made stay (no longer linked to it)."""
    current = find_schedule(svc, principal, raw_id, kind=only_kind)
    with svc.db.transaction() as conn:
        if not schedules.delete(conn, schedule_id=str(current["id"])):
            raise NotFound("Schedule not found")


def list_schedules(
    svc: Services,
    principal: Principal,
    *,
    enabled: bool | None = None,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the principal's schedules (every one for an admin) and the total."""
    with svc.db.transaction() as conn:
        return schedules.list_schedules(
            conn,
            owner_id=owner_filter(principal),
            enabled=enabled,
            kind=kind,
            limit=limit,
            offset=offset,
        )


def count_schedules(
    svc: Services, principal: Principal, *, kind: str | None = None
) -> dict[str, int]:
    """`{"total", "enabled"}` of the principal's schedules (every one for an admin)."""
    with svc.db.transaction() as conn:
        return schedules.counts(conn, owner_id=owner_filter(principal), kind=kind)


def scheduler_alive(svc: Services) -> bool:
    """Whether a scheduler heart-beat within the last 30 s (False if the database is down)."""
    try:
        with svc.db.transaction() as conn:
            live = workers.live_workers(
                conn, kind=schedules.SCHEDULER_KIND, fresh_s=SCHEDULER_FRESH_S
            )
    except (db.OperationalError, db.PoolError):
        return False
    return bool(live)
