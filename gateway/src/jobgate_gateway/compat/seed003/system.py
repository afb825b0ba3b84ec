"""Seed 003's `GET /api/system/info` and `GET /api/health` (authenticated, as every seed 003
route is; `/health` and `/ready` stay public for load balancers).

system/info describes this gateway process: `uptime` (s), `memory_usage` (its resident
bytes), `cpu_usage` (its average CPU % since it started), `active_connections` (requests it
is serving now). health checks the database, the rate-limit store (Redis) and the container
engine, the last through a container worker (RPC `ping`): only those workers hold the
engine's socket. The database down is `unhealthy` (503); Redis or the engine down is
`degraded` (200), since the rest of the API still works.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import threading
import time
from typing import Any

from marshmallow import Schema, fields

from jobgate.errors import JobgateError
from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.health import VERSION
from jobgate_gateway.services import services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint("seed003_system", __name__, url_prefix="/api", description="seed 003 system")
blp.before_request(authenticate_blueprint)

STARTED = time.monotonic()
ENGINE_PING_TIMEOUT_S = 3.0
_in_flight = 0
_in_flight_lock = threading.Lock()


@blp.before_app_request
def _count_in() -> None:
    global _in_flight
    with _in_flight_lock:
        _in_flight += 1


@blp.teardown_app_request
def _count_out(_exc: BaseException | None) -> None:
    global _in_flight
    with _in_flight_lock:
        _in_flight = max(0, _in_flight - 1)


class SystemInfoSchema(Schema):
    version = fields.String(required=True)
    uptime = fields.Integer(required=True, metadata={"description": "seconds"})
    memory_usage = fields.Integer(required=True, metadata={"description": "resident bytes"})
    cpu_usage = fields.Float(required=True, metadata={"description": "average % since start"})
    active_connections = fields.Integer(required=True)


class ChecksSchema(Schema):
    database = fields.String(required=True)
    redis = fields.String(required=True)
    docker = fields.String(required=True)


class Seed003HealthSchema(Schema):
    status = fields.String(required=True, metadata={"description": "healthy|degraded|unhealthy"})
    timestamp = fields.String(required=True)
    checks = fields.Nested(ChecksSchema, required=True)


@blp.route("/system/info")
@blp.response(200, SystemInfoSchema)
def system_info() -> dict[str, Any]:
    """This gateway process: version, uptime, memory, CPU, requests in flight."""
    require_auth()
    uptime = time.monotonic() - STARTED
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with _in_flight_lock:
        active = _in_flight
    return {
        "version": VERSION,
        "uptime": int(uptime),
        "memory_usage": _resident_bytes(),
        "cpu_usage": round((usage.ru_utime + usage.ru_stime) * 100 / max(uptime, 1e-3), 1),
        "active_connections": active,
    }


@blp.route("/health")
@blp.response(200, Seed003HealthSchema)
@blp.alt_response(503, schema=Seed003HealthSchema, description="the database is down")
def health() -> tuple[dict[str, Any], int]:
    """The database, the rate-limit store and the container engine."""
    require_auth()
    svc = services()
    checks = {
        "database": _state(svc.db.ping()),
        "redis": _redis_state(),
        "docker": _engine_state(),
    }
    if checks["database"] != "healthy":
        status = "unhealthy"
    elif all(v in ("healthy", "not configured") for v in checks.values()):
        status = "healthy"
    else:
        status = "degraded"
    body = {"status": status, "timestamp": iso_ms(dt.datetime.now(dt.UTC)), "checks": checks}
    return body, 503 if status == "unhealthy" else 200


def _state(ok: bool) -> str:
    return "healthy" if ok else "unhealthy"


def _redis_state() -> str:
    if not services().settings.rate_limit_storage_uri.startswith(("redis://", "rediss://")):
        return "not configured"  # rate limits are kept per process (memory://)
    try:
        return _state(bool(ratelimit.limiter.storage.check()))
    except Exception:  # noqa: BLE001 - any failure of the store reads as unhealthy
        return "unhealthy"


def _engine_state() -> str:
    try:
        services().containers.call("ping", timeout_s=ENGINE_PING_TIMEOUT_S)
    except JobgateError:
        return "unhealthy"
    return "healthy"


def _resident_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
