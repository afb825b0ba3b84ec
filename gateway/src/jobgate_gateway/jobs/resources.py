"""/api/v1/jobs: submit, list, read, cancel, retry and read the logs of jobs of any kind."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request
from flask.views import MethodView

from jobgate import files, jobs, kinds
from jobgate.errors import Forbidden, InvalidRequest, JobgateError, NotFound
from jobgate.identity import Principal
from jobgate.jobs import job_logs
from jobgate.jobs.submission import Submission
from jobgate.kinds.spec import schema_of
from jobgate.web import WITH_DETAIL, Blueprint, load_or_400
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.files.resources import DOWNLOAD_RESPONSES
from jobgate_gateway.files.views import file_to_dict, send_stored_file
from jobgate_gateway.jobs import service
from jobgate_gateway.jobs.schemas import (
    BATCH_MAX,
    LIST_TOTAL_HEADERS,
    JobBatchCreateSchema,
    JobBatchItemOptionsSchema,
    JobBatchSchema,
    JobCreateSchema,
    JobDetailSchema,
    JobListQuerySchema,
    JobLogsQuerySchema,
    JobLogsSchema,
    JobOptionsSchema,
    JobOutputsSchema,
    JobSchema,
    kind_request_schemas,
)
from jobgate_gateway.jobs.views import job_to_dict, kind_hook
from jobgate_gateway.services import Services, services
from jobgate_gateway.timefmt import iso_ms

blp = Blueprint(
    "jobs",
    __name__,
    url_prefix="/api/v1/jobs",
    description="Jobs of every kind",
    error_dialect=WITH_DETAIL,  # /api/v1/jobs is also seed 002's (DESIGN.md, "Public API")
)
blp.before_request(authenticate_blueprint)

SEED002_KIND = "scrape"  # a body with `mode` and no `kind` is seed 002's scrape job
INTERNAL_KINDS = tuple(spec.name for spec in kinds.specs() if spec.internal)

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    "description": "the same owner and key return the first job (200)",
}

JOB_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": list(kind_request_schemas(JobOptionsSchema, suffix="JobRequest").values()),
                "discriminator": {"propertyName": "kind"},
            }
        }
    },
}

BATCH_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["jobs"],
                "properties": {
                    "jobs": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": BATCH_MAX,
                        "items": {
                            "oneOf": list(
                                kind_request_schemas(
                                    JobBatchItemOptionsSchema, suffix="BatchItem"
                                ).values()
                            ),
                            "discriminator": {"propertyName": "kind"},
                        },
                    }
                },
            }
        }
    },
}

LIST_HEADERS = {
    **LIST_TOTAL_HEADERS,
    "Link": {
        "description": "first/prev/next/last pages by offset (RFC 8288); a page asked for by "
        "`cursor` links first and next only, next by cursor",
        "schema": {"type": "string"},
    },
}


OPTION_NAMES = frozenset(JobOptionsSchema().fields)


def _split_options(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The kind's params and the job's options of a body."""
    params = {k: v for k, v in body.items() if k not in OPTION_NAMES and k != "kind"}
    options = load_or_400(
        schema_of(JobOptionsSchema), {k: v for k, v in body.items() if k in OPTION_NAMES}
    )
    return params, {k: v for k, v in options.items() if v is not None}


def _kind_of(body: dict[str, Any]) -> tuple[kinds.KindSpec, dict[str, Any]]:
    """The submitted kind's spec, and the body with `kind` set (a body with `mode` and no
    `kind` is seed 002's: a scrape job); 400 for a missing, unknown or internal kind."""
    if "kind" not in body and "mode" in body:
        body = {**body, "kind": SEED002_KIND}
    if "kind" not in body:
        raise InvalidRequest(
            "Request validation failed",
            details={"fields": {"kind": ["Missing data for required field."]}},
        )
    try:
        spec = kinds.get(body["kind"])
        if spec.internal:  # made by the platform (webhook deliveries), never submitted
            raise kinds.UnknownKind(spec.name)
    except (kinds.UnknownKind, TypeError):
        supported = [s.name for s in kinds.specs() if not s.internal]
        raise InvalidRequest(
            f"Unsupported job kind '{body['kind']}'", details={"supported": supported}
        ) from None
    return spec, body


@blp.route("")
class Jobs(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.arguments(JobCreateSchema)
    @blp.doc(requestBody=JOB_REQUEST_BODY, parameters=[IDEMPOTENCY_KEY])
    @blp.response(201, JobSchema)
    @blp.alt_response(200, schema=JobSchema, description="Idempotency-Key seen: the first job")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Submit a job: `kind` plus the kind's parameters and optional retry policy. A body
        with `mode` and no `kind` is seed 002's: a scrape job."""
        principal = require_auth("jobs:write")
        spec, body = _kind_of(body)
        raw_params, options = _split_options(body)
        params = load_or_400(schema_of(spec.params), raw_params)
        key = service.idempotency_key()
        job, created = service.submit(services(), principal, spec.prepare, params, options, key)
        return job_to_dict(job), 201 if created else 200

    @blp.arguments(JobListQuerySchema, location="query")
    @blp.response(200, JobSchema(many=True), headers=LIST_HEADERS)
    def get(self, query: dict[str, Any]) -> tuple[Response, int, dict[str, str]]:
        """List jobs, a JSON array (seed 002) with the total in `X-Total-Count` and the pages
        in `Link`; own jobs, admins see all and may filter by `owner`. Page by `offset`, or by
        `cursor` (`X-Next-Cursor`): as fast at any depth and stable under inserts."""
        principal = require_auth("jobs:read")
        owner = service.list_owner(principal, owner=query.get("owner"), kind=query.get("kind"))
        svc = services()
        cursor = query.get("cursor")
        # The count and the page are two statements, each its own snapshot (no BEGIN/COMMIT:
        # two round trips instead of four); see docs/architecture.md, "Listing a million jobs".
        with svc.db.autocommit() as conn:
            page = jobs.list_jobs_page(
                conn,
                owner_id=owner,
                kind=query.get("kind"),
                # internal kinds' jobs (webhook deliveries) only when asked for by kind
                exclude_kinds=() if "kind" in query else INTERNAL_KINDS,
                status=query.get("status"),
                created_since=query.get("created_since"),
                limit=query["limit"],
                offset=query["offset"],
                cursor=cursor,
                sort=query["sort"],
                order=query["order"],
                count_cap=jobs.COUNT_CAP,
            )
        headers = {}
        if page.total is not None:
            headers["X-Total-Count"] = str(page.total)
        else:
            headers["X-Total-Count-Min"] = str(page.total_min)
        next_cursor = None
        if page.has_more:
            sort, order = (cursor.sort, cursor.order) if cursor else (query["sort"], query["order"])
            next_cursor = jobs.encode_cursor(sort, order, page.rows[-1])
            headers["X-Next-Cursor"] = next_cursor
        links = page_links(
            total=page.total,
            limit=query["limit"],
            offset=query["offset"],
            has_more=page.has_more,
            next_cursor=next_cursor if cursor is not None else None,
            by_cursor=cursor is not None,
        )
        if links:
            headers["Link"] = links
        # job_to_dict is already the documented shape (JobSchema): sent as it is, not dumped
        # through marshmallow again (the response schema stays for the OpenAPI document).
        return jsonify([job_to_dict(r) for r in page.rows]), 200, headers


# A batch item's own key, checked like the Idempotency-Key header.
_ITEM_KEY = JobBatchItemOptionsSchema(only=("idempotency_key",))


def _prepare_item(
    svc: Services, principal: Principal, item: dict[str, Any]
) -> tuple[Submission, str | None]:
    """One batch item validated and planned (nothing written): (Submission, its key)."""
    spec, item = _kind_of(item)
    key = None
    if "idempotency_key" in item:
        key = load_or_400(_ITEM_KEY, {"idempotency_key": item["idempotency_key"]}).get(
            "idempotency_key"
        )
    raw_params, options = _split_options({k: v for k, v in item.items() if k != "idempotency_key"})
    params = load_or_400(schema_of(spec.params), raw_params)
    return spec.prepare(svc, principal, params, options), key


@blp.route("/batch", methods=["POST"])
@ratelimit.create_limit
@blp.arguments(JobBatchCreateSchema)
@blp.doc(requestBody=BATCH_REQUEST_BODY)
@blp.response(201, JobBatchSchema)
def batch(body: dict[str, Any]) -> tuple[Response, int]:
    """Submit up to 1,000 jobs of any kinds in one transaction: each item is a
    `POST /api/v1/jobs` body plus an optional `idempotency_key`. All or nothing: any invalid
    item is a 400 with `details.items` by index and nothing is written. An item whose key
    was used before answers the first job (`created: false`); the batch counts as one
    request against the create rate limit."""
    principal = require_auth("jobs:write")
    svc = services()
    prepared, keys, errors = [], [], {}
    for index, item in enumerate(body["jobs"]):
        try:
            submission, key = _prepare_item(svc, principal, item)
        except Forbidden as exc:  # the credential, not the item: the whole batch is refused
            raise Forbidden(exc.message, details={**exc.details, "index": index}) from None
        except JobgateError as exc:
            if exc.status != 400:
                raise
            errors[str(index)] = {"message": exc.message, **exc.details}
            continue
        prepared.append(submission)
        keys.append(key)
    if errors:
        raise InvalidRequest(
            f"{len(errors)} of {len(body['jobs'])} jobs are invalid; none was submitted",
            details={"items": errors},
        )
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key is not None and key in seen:
            raise InvalidRequest(
                "Idempotency keys must be unique within a batch",
                details={"items": {str(index): {"message": f"same key as item {seen[key]}"}}},
            )
        if key is not None:
            seen[key] = index
    answers = service.submit_batch(svc, principal, prepared, keys)
    listed = [{**job_to_dict(job), "created": created} for job, created in answers]
    # Already the documented shape (job_to_dict is what JobSchema dumps): sent as it is,
    # since dumping a thousand jobs through marshmallow again cost a third of the request.
    body = {"jobs": listed, "created": sum(created for _, created in answers)}
    return jsonify(body), 201


def page_links(
    *,
    total: int | None,
    limit: int,
    offset: int,
    has_more: bool | None = None,
    next_cursor: str | None = None,
    by_cursor: bool = False,
) -> str:
    """RFC 8288 links to the first, previous, next and last pages of this listing, keeping
    its filters. By offset as before (no `last` when the total is unknown); a page asked for
    by cursor links `first` and, with `next_cursor`, `next` by cursor (a keyset page has no
    offset to go back from)."""
    args = {k: v for k, v in request.args.to_dict().items() if k not in ("cursor", "offset")}
    links = []

    def link(rel: str, **page: Any) -> None:
        query = urlencode({**args, "limit": limit, **page})
        links.append(f'<{request.base_url}?{query}>; rel="{rel}"')

    link("first", offset=0)
    if by_cursor:
        if next_cursor is not None:
            link("next", cursor=next_cursor)
        return ", ".join(links)
    if offset > 0:
        link("prev", offset=max(0, offset - limit))
    if offset + limit < total if total is not None else has_more:
        link("next", offset=offset + limit)
    if total is not None:
        link("last", offset=max(0, (total - 1) // limit * limit))
    return ", ".join(links)


@blp.route("/<uuidstr:job_id>")
class JobById(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.response(200, JobDetailSchema)
    def get(self, job_id: str) -> Response:
        """`{"job": …}` with progress, throughput (while fresh) and per-item failures, and
        beside it what the kind adds (a scrape job's `videos` and `drive_links`)."""
        svc, job = service.job_for_request("jobs:read", job_id)
        body = {"job": job_to_dict(job, failures=service.failures_of(svc, job))}
        extras = kind_hook(job, "job_extras")
        if extras is not None:
            body.update(extras(svc, job))
        return jsonify(body)  # already JobDetailSchema's shape, as the list's rows

    @blp.response(204)
    def delete(self, job_id: str) -> None:
        """Delete a job with what it produced (seed 002: "and all associated videos"); a job
        still pending or running is cancelled first."""
        svc, job = service.job_for_request("jobs:write", job_id)
        service.delete_job(svc, job)


def _cancel(job_id: str) -> dict[str, Any]:
    svc, job = service.job_for_request("jobs:write", job_id)
    return job_to_dict(service.cancel_job(svc, job))


@blp.route("/<uuidstr:job_id>/cancel", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, JobSchema)
def cancel(job_id: str) -> dict[str, Any]:
    """Cancel a pending or running job; running work stops within about a second."""
    return _cancel(job_id)


@blp.route("/<uuidstr:job_id>/retry", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, JobSchema)
def retry(job_id: str) -> dict[str, Any]:
    """Run a failed or cancelled job again; work already done is not redone."""
    svc, job = service.job_for_request("jobs:write", job_id)
    return job_to_dict(service.retry_failed_job(svc, job))


@blp.route("/<uuidstr:job_id>/logs")
@blp.arguments(JobLogsQuerySchema, location="query")
@ratelimit.status_limit
@blp.response(200, JobLogsSchema)
def logs(query: dict[str, Any], job_id: str) -> dict[str, Any]:
    """The job's log lines (attempts, retries, failures), oldest first."""
    svc, job = service.job_for_request("jobs:read", job_id)
    with svc.db.transaction() as conn:
        rows = job_logs.get_logs(
            conn, job_id=str(job["id"]), after_id=query["after_id"], limit=query["limit"]
        )
    return {"job_id": str(job["id"]), "logs": [{**r, "ts": iso_ms(r["ts"])} for r in rows]}


def _outputs(job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    svc, job = service.job_for_request("jobs:read", job_id)
    with svc.db.transaction() as conn:
        return job, files.outputs_of(conn, job_id=str(job["id"]))


@blp.route("/<uuidstr:job_id>/output")
@ratelimit.status_limit
@blp.response(200, JobOutputsSchema)
def outputs(job_id: str) -> dict[str, Any]:
    """The files a job produced (a conversion's MP3), with their download URLs."""
    job, rows = _outputs(job_id)
    listed = [
        {**file_to_dict(r), "download_url": f"/api/v1/jobs/{job['id']}/output/{r['filename']}"}
        for r in rows
    ]
    return {"job_id": str(job["id"]), "status": job["status"], "files": listed}


@blp.route("/<uuidstr:job_id>/output/<path:name>")
@ratelimit.status_limit
@blp.doc(responses=DOWNLOAD_RESPONSES)
def output_file(job_id: str, name: str) -> Response:
    """One output file by name (Range and ETag supported)."""
    _, rows = _outputs(job_id)
    for row in reversed(rows):
        if row["filename"] == name:
            return send_stored_file(services(), row)
    raise NotFound("Output file not found")
