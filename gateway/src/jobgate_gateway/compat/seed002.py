"""Seed 002 (TikTok scraper API) beyond `/api/v1/jobs`, which the canonical job routes serve
in its shapes: `/api/v1/videos…`, `/api/v1/scheduled-jobs…`, `/api/v1/stats` and
`/api/v1/stats/health`. Built on the `scrape` kind's API module, the schedules service and
the job services; errors carry seed 002's `detail` beside the canonical `error`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from jobgate import jobs, videos
from jobgate.errors import NotFound
from jobgate.identity import Principal
from jobgate.kinds import scrape
from jobgate.web import WITH_DETAIL, Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, owner_filter, require_auth
from jobgate_gateway.health import VERSION
from jobgate_gateway.jobs.schemas import JobSchema
from jobgate_gateway.jobs.views import job_to_dict
from jobgate_gateway.kinds import scrape as scrape_api
from jobgate_gateway.schedules import service as schedule_service
from jobgate_gateway.services import Services, services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint(
    "seed002",
    __name__,
    url_prefix="/api/v1",
    description="TikTok scraper: videos, scheduled jobs, stats (seed 002)",
    error_dialect=WITH_DETAIL,
)
blp.before_request(authenticate_blueprint)

# `/stats/health` answers without credentials, like the other health checks.
health_blp = Blueprint(
    "seed002-health", __name__, description="Seed 002's health check", error_dialect=WITH_DETAIL
)

KIND = scrape.SPEC.name


# --- bodies -----------------------------------------------------------------------------------


class Seed002VideoSchema(Schema):
    id = fields.String(required=True, metadata={"description": "the source's video id"})
    record_id = fields.String(required=True)
    job_id = fields.String(required=True, allow_none=True)
    mode = fields.String(required=True)
    value = fields.String(required=True)
    url = fields.String(required=True, allow_none=True)
    desc = fields.String(required=True, allow_none=True)
    author_username = fields.String(required=True, allow_none=True)
    author_nickname = fields.String(required=True, allow_none=True)
    views = fields.Integer(required=True, allow_none=True)
    likes = fields.Integer(required=True, allow_none=True)
    comments = fields.Integer(required=True, allow_none=True)
    shares = fields.Integer(required=True, allow_none=True)
    created_at_tiktok = fields.String(required=True, allow_none=True)
    hashtags = fields.List(fields.String(), required=True)
    music_title = fields.String(required=True, allow_none=True)
    has_watermark = fields.Boolean(required=True, allow_none=True)
    file_size = fields.Integer(required=True, allow_none=True)
    duration = fields.Float(required=True, allow_none=True)
    drive_file_id = fields.String(
        required=True, allow_none=True, metadata={"description": "the stored video's file id"}
    )
    metadata_file_id = fields.String(required=True, allow_none=True)
    drive_folder_path = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(videos.STATUSES))
    error = fields.String(required=True, allow_none=True)
    created_at = fields.String(required=True)
    updated_at = fields.String(required=True)


class Seed002VideoListSchema(Schema):
    total = fields.Integer(required=True)
    videos = fields.List(fields.Nested(Seed002VideoSchema), required=True)


class Seed002VideoQuerySchema(Schema):
    mode = fields.String(validate=validate.OneOf(scrape.MODES))
    value = fields.String(validate=validate.Length(min=1, max=200))
    author_username = fields.String(validate=validate.Length(min=1, max=200))
    hashtag = fields.String(validate=validate.Length(min=1, max=200))
    status = fields.String(validate=validate.OneOf(videos.STATUSES))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


class Seed002RetrySchema(Schema):
    message = fields.String(required=True)
    video = fields.Nested(Seed002VideoSchema, required=True)
    job = fields.Nested(JobSchema, required=True)


def _interval(*, required: bool) -> fields.Integer:
    return fields.Integer(
        required=required, validate=validate.Range(min=5), metadata={"description": "minutes, >= 5"}
    )


class Seed002ScheduleCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    mode = fields.String(required=True, validate=validate.OneOf(scrape.MODES))
    value = fields.String(required=True)
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))
    no_watermark = fields.Boolean(load_default=True)
    drive_folder_id = fields.String()
    interval_minutes = _interval(required=True)
    enabled = fields.Boolean(load_default=True)


class Seed002ScheduleUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    mode = fields.String(validate=validate.OneOf(scrape.MODES))
    value = fields.String()
    limit = fields.Integer(validate=validate.Range(1, 200))
    no_watermark = fields.Boolean()
    drive_folder_id = fields.String()
    interval_minutes = _interval(required=False)
    enabled = fields.Boolean()


class Seed002ScheduleQuerySchema(Schema):
    enabled = fields.Boolean()
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


class Seed002ScheduleSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    mode = fields.String(required=True)
    value = fields.String(required=True)
    limit = fields.Integer(required=True)
    no_watermark = fields.Boolean(required=True)
    drive_folder_id = fields.String(allow_none=True)
    interval_minutes = fields.Integer(required=True, allow_none=True)
    enabled = fields.Boolean(required=True)
    last_run_at = fields.String(required=True, allow_none=True)
    next_run_at = fields.String(required=True, allow_none=True)
    total_runs = fields.Integer(required=True)
    successful_runs = fields.Integer(required=True)
    failed_runs = fields.Integer(required=True)
    created_at = fields.String(required=True)


class Seed002StatsSchema(Schema):
    total_jobs = fields.Integer(required=True)
    pending_jobs = fields.Integer(required=True)
    running_jobs = fields.Integer(required=True)
    completed_jobs = fields.Integer(required=True)
    failed_jobs = fields.Integer(required=True)
    total_videos = fields.Integer(required=True)
    downloaded_videos = fields.Integer(required=True)
    uploaded_videos = fields.Integer(required=True)
    failed_videos = fields.Integer(required=True)
    total_storage_bytes = fields.Integer(required=True)
    scheduled_jobs_count = fields.Integer(required=True)
    active_scheduled_jobs = fields.Integer(required=True)


class Seed002HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["healthy", "unhealthy"]))
    version = fields.String(required=True)
    timestamp = fields.String(required=True)
    database = fields.Boolean(required=True)
    google_drive = fields.Boolean(
        required=True, metadata={"description": "the storage backend that replaces Drive"}
    )
    scheduler = fields.Boolean(required=True, metadata={"description": "a live heartbeat"})


def schedule_body(row: dict[str, Any]) -> dict[str, Any]:
    """A scrape schedule in seed 002's shape: its params flat beside its timing and counters."""
    params = row["params"] or {}
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "mode": params.get("mode"),
        "value": params.get("value"),
        "limit": params.get("limit"),
        "no_watermark": params.get("no_watermark"),
        "drive_folder_id": params.get("drive_folder_id"),
        "interval_minutes": row["interval_minutes"],
        "enabled": row["enabled"],
        "last_run_at": iso_ms(row["last_run_at"]),
        "next_run_at": iso_ms(row["next_run_at"]),
        "total_runs": row["total_runs"],
        "successful_runs": row["successful_runs"],
        "failed_runs": row["failed_runs"],
        "created_at": iso_ms(row["created_at"]),
    }


# --- videos -----------------------------------------------------------------------------------


def _video(video_id: str, scope: str) -> tuple[Services, Principal, dict[str, Any]]:
    """The caller's video by its source id (or record id), with the services and principal."""
    principal = require_auth(scope)
    svc = services()
    with svc.db.transaction() as conn:
        row = videos.get_video(conn, video_id=video_id, owner_id=owner_filter(principal))
    if row is None:
        raise NotFound("Video not found")
    return svc, principal, row


@blp.route("/videos")
@ratelimit.status_limit
@blp.arguments(Seed002VideoQuerySchema, location="query")
@blp.response(200, Seed002VideoListSchema)
def list_videos(query: dict[str, Any]) -> dict[str, Any]:
    """Videos matching the filters, newest first, and how many match."""
    principal = require_auth("jobs:read")
    svc = services()
    limit, offset = query.pop("limit"), query.pop("offset")
    with svc.db.transaction() as conn:
        rows, total = videos.list_videos(
            conn, owner_id=owner_filter(principal), limit=limit, offset=offset, **query
        )
    return {"total": total, "videos": [scrape_api.video_to_dict(r) for r in rows]}


@blp.route("/videos/<video_id>")
class Video(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.response(200, Seed002VideoSchema)
    def get(self, video_id: str) -> dict[str, Any]:
        """One video by its source id (or its `record_id`)."""
        return scrape_api.video_to_dict(_video(video_id, "jobs:read")[2])

    @blp.response(204)
    def delete(self, video_id: str) -> None:
        """Forget a video record; its stored files stay (as Drive's did in the seed)."""
        svc, _, row = _video(video_id, "jobs:write")
        with svc.db.transaction() as conn:
            videos.delete_video(conn, record_id=str(row["id"]))


@blp.route("/videos/<video_id>/retry", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, Seed002RetrySchema)
def retry_video(video_id: str) -> dict[str, Any]:
    """Download this one video again, through the queue (a scrape job for it alone)."""
    svc, principal, row = _video(video_id, "jobs:write")
    job = scrape_api.retry_video(svc, principal, row)
    return {
        "message": "Video queued for download",
        "video": scrape_api.video_to_dict(row),
        "job": job_to_dict(job),
    }


# --- scheduled jobs ---------------------------------------------------------------------------

PARAM_NAMES = ("mode", "value", "limit", "no_watermark", "drive_folder_id")


@blp.route("/scheduled-jobs")
class ScheduledJobs(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.arguments(Seed002ScheduleQuerySchema, location="query")
    @blp.response(200, Seed002ScheduleSchema(many=True))
    def get(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Scrape schedules, a JSON array; `enabled` filters."""
        principal = require_auth("jobs:read")
        rows, _total = schedule_service.list_schedules(services(), principal, kind=KIND, **query)
        return [schedule_body(r) for r in rows]

    @blp.arguments(Seed002ScheduleCreateSchema)
    @blp.response(201, Seed002ScheduleSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """A recurring scrape; enabled, its first run is due at once."""
        principal = require_auth("jobs:write")
        row = schedule_service.create_schedule(
            services(),
            principal,
            name=body["name"],
            kind=KIND,
            params={k: body[k] for k in PARAM_NAMES if k in body},
            interval_minutes=body["interval_minutes"],
            enabled=body["enabled"],
        )
        return schedule_body(row)


@blp.route("/scheduled-jobs/<uuidstr:schedule_id>")
class ScheduledJob(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.response(200, Seed002ScheduleSchema)
    def get(self, schedule_id: str) -> dict[str, Any]:
        principal = require_auth("jobs:read")
        row = schedule_service.find_schedule(services(), principal, schedule_id, kind=KIND)
        return schedule_body(row)

    @blp.arguments(Seed002ScheduleUpdateSchema)
    @blp.response(200, Seed002ScheduleSchema)
    def patch(self, body: dict[str, Any], schedule_id: str) -> dict[str, Any]:
        """Change any of the create fields; the others stay."""
        params = {k: body[k] for k in PARAM_NAMES if k in body}
        row = schedule_service.update_schedule(
            services(),
            require_auth("jobs:write"),
            schedule_id,
            name=body.get("name"),
            params=params or None,
            interval_minutes=body.get("interval_minutes"),
            enabled=body.get("enabled"),
            only_kind=KIND,
        )
        return schedule_body(row)

    @blp.response(204)
    def delete(self, schedule_id: str) -> None:
        principal = require_auth("jobs:write")
        schedule_service.delete(services(), principal, schedule_id, only_kind=KIND)


@blp.route("/scheduled-jobs/<uuidstr:schedule_id>/toggle", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, Seed002ScheduleSchema)
def toggle_scheduled_job(schedule_id: str) -> dict[str, Any]:
    """Enable a disabled schedule or disable an enabled one."""
    principal = require_auth("jobs:write")
    row = schedule_service.toggle(services(), principal, schedule_id, only_kind=KIND)
    return schedule_body(row)


# --- stats ------------------------------------------------------------------------------------


@blp.route("/stats")
@ratelimit.status_limit
@blp.response(200, Seed002StatsSchema)
def stats() -> dict[str, Any]:
    """Scrape jobs by status, videos, stored bytes and schedules: the caller's own (an
    admin's: everyone's)."""
    principal = require_auth("jobs:read")
    svc = services()
    owner = owner_filter(principal)
    with svc.db.transaction() as conn:
        by_status = jobs.count_by_status(conn, kind=KIND, owner_id=owner)
        video_totals = videos.video_stats(conn, owner_id=owner)
    scheduled = schedule_service.count_schedules(svc, principal, kind=KIND)
    return {
        "total_jobs": sum(by_status.values()),
        **{f"{s}_jobs": by_status.get(s, 0) for s in ("pending", "running", "completed")},
        "failed_jobs": by_status.get("failed", 0),
        **video_totals,
        "scheduled_jobs_count": scheduled["total"],
        "active_scheduled_jobs": scheduled["enabled"],
    }


@health_blp.route("/api/v1/stats/health")
@health_blp.doc(security=[])
@health_blp.response(200, Seed002HealthSchema)
def stats_health() -> dict[str, Any]:
    """The database, the storage backend (Drive's stand-in) and the scheduler's heartbeat;
    always 200, the booleans say what is down (as the seed shows)."""
    svc = services()
    database = svc.db.ping()
    storage = svc.storage.healthy()
    scheduler = database and schedule_service.scheduler_alive(svc)
    return {
        "status": "healthy" if database and storage else "unhealthy",
        "version": VERSION,
        "timestamp": iso_ms(dt.datetime.now(dt.UTC)),
        "database": database,
        "google_drive": storage,
        "scheduler": scheduler,
    }
