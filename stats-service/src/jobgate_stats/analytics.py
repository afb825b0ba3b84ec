"""Seed 004's analytics routes, computed in PostgreSQL (`jobgate.analytics`).

The seed documents the dashboard as a bare object and every answer as the
`{"status": "success", "data": ...}` envelope; the dashboard answers both (its fields at the
top and in `data`), the other routes the envelope. A user's numbers cover their own jobs
(and the workers they see), an admin's everybody's; `kind` narrows to one kind.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobgate import analytics, kinds
from jobgate.errors import InvalidRequest, JobgateError
from jobgate.identity import Principal
from jobgate.timefmt import now_iso_ms
from jobgate_stats.services import Services
from jobgate_stats.web import envelope, error_response

DAYS_DEFAULT, DAYS_MAX = 7, 365
EXPORT_DAYS_DEFAULT = 30


class NotAcceptable(JobgateError):
    status, code, default_message = 406, "INVALID_REQUEST", "Not acceptable"


def _kind(request: Request) -> str | None:
    raw = request.query_params.get("kind")
    if raw in (None, ""):
        return None
    public = [name for name in kinds.names() if not kinds.get(name).internal]
    if raw not in public:
        raise InvalidRequest(
            f"Unknown kind '{raw[:40]}'", details={"field": "kind", "allowed": public}
        )
    return raw


def _days(request: Request, default: int) -> int:
    raw = request.query_params.get("days")
    if raw in (None, ""):
        return default
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if not 1 <= days <= DAYS_MAX:
        raise InvalidRequest(
            f"days must be a whole number from 1 to {DAYS_MAX}",
            details={"field": "days", "value": raw[:40]},
        )
    return days


def _metric(request: Request) -> str:
    raw = request.query_params.get("metric") or analytics.METRICS[0]
    if raw not in analytics.METRICS:
        raise InvalidRequest(
            f"Unknown metric '{raw[:40]}'",
            details={"field": "metric", "allowed": list(analytics.METRICS)},
        )
    return raw


def _owner(principal: Principal) -> str | None:
    return None if principal.is_admin else principal.user_id


def success(data: Any, **top: Any) -> dict[str, Any]:
    return {"status": "success", "data": data, "timestamp": now_iso_ms(), **top}


async def _query(services: Services, work: Any) -> Any:
    def run() -> Any:
        with services.database.transaction() as conn:
            return work(conn)

    return await anyio.to_thread.run_sync(run)


async def dashboard(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        principal = await services.gate.principal(request)
        kind = _kind(request)
        board = await _query(
            services,
            lambda conn: analytics.dashboard(
                conn, owner_id=_owner(principal), kind=kind, reader_id=_owner(principal)
            ),
        )
    except JobgateError as exc:
        return error_response(exc, envelope)
    return JSONResponse({**board, **success(board)})


async def trends(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        principal = await services.gate.principal(request)
        kind, days, metric = _kind(request), _days(request, DAYS_DEFAULT), _metric(request)
        points = await _query(
            services,
            lambda conn: analytics.trends(
                conn, owner_id=_owner(principal), kind=kind, days=days, metric=metric
            ),
        )
    except JobgateError as exc:
        return error_response(exc, envelope)
    return JSONResponse(success({"metric": metric, "days": days, "kind": kind, "points": points}))


def _wants_csv(request: Request) -> bool:
    """`?format=csv|json` wins; else the first type of `Accept` that we have (q-values are
    not weighed: clients ask for one of the two); no `Accept` means JSON."""
    fmt = request.query_params.get("format")
    if fmt in ("csv", "json"):
        return fmt == "csv"
    accept = request.headers.get("accept", "").lower()
    if not accept.strip():
        return False
    for part in accept.split(","):
        media = part.split(";")[0].strip()
        if media in ("text/csv", "text/*"):
            return True
        if media in ("application/json", "application/*", "*/*"):
            return False
    raise NotAcceptable(
        "The export is available as application/json or text/csv",
        details={"accept": accept[:200], "available": ["application/json", "text/csv"]},
    )


async def export(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        principal = await services.gate.principal(request)
        kind, days = _kind(request), _days(request, EXPORT_DAYS_DEFAULT)
        as_csv = _wants_csv(request)
        owner = _owner(principal)

        def work(conn: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            board = analytics.dashboard(conn, owner_id=owner, kind=kind, reader_id=owner)
            rows = analytics.export_rows(conn, owner_id=owner, kind=kind, days=days)
            return board, rows

        board, rows = await _query(services, work)
    except JobgateError as exc:
        return error_response(exc, envelope)
    if as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(analytics.EXPORT_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows({col: row.get(col) for col in analytics.EXPORT_COLUMNS} for row in rows)
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="analytics-export.csv"'},
        )
    body = success(
        {
            "generated_at": now_iso_ms(),
            "days": days,
            "kind": kind,
            "dashboard": board,
            "daily": rows,
        }
    )
    return JSONResponse(
        body, headers={"Content-Disposition": 'attachment; filename="analytics-export.json"'}
    )
