"""Submitting, finding, cancelling, retrying and deleting jobs on behalf of a principal.

Submission writes the job, its items and its outbox message in one transaction, then
publishes after commit; a lost publish is picked up by the outbox relay. Jobs of internal
kinds (webhook deliveries, whose payloads are the owner's events) are their owner's alone
on these routes: an admin gets a 404 for another user's, as for their webhook.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from flask import g, request

from jobgate import files, jobs, kinds, outbox
from jobgate.errors import Conflict, Forbidden, InvalidRequest, NotFound
from jobgate.identity import Principal
from jobgate.jobs import job_items, submission
from jobgate.jobs.submission import Submission
from jobgate.kinds import KindSpec
from jobgate_gateway.auth import can_access, require_auth
from jobgate_gateway.jobs.views import kind_hook
from jobgate_gateway.metrics import JOBS_CREATED
from jobgate_gateway.services import APP_ID, Services, services

log = logging.getLogger(__name__)

INTERNAL_KINDS = frozenset(spec.name for spec in kinds.specs() if spec.internal)


def parse_job_id(raw: str, *, message: str = "Invalid job ID format") -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidRequest(message, details={"job_id": raw}) from None


def idempotency_key() -> str | None:
    """The request's Idempotency-Key header: printable ASCII, at most 255 characters."""
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        return None
    if len(key) > 255 or not key.isascii() or not key.isprintable():
        raise InvalidRequest("Idempotency-Key must be 1-255 printable ASCII characters")
    return key


def submit_job(
    svc: Services,
    principal: Principal,
    *,
    kind: str,
    params: dict[str, Any],
    items: Sequence[tuple[str, int]] = (),
    bytes_total: int = 0,
    options: dict[str, Any],
    idempotency_key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Record and enqueue a job; returns (job, created). A repeated Idempotency-Key returns
    the first job unchanged, and is a conflict if the request differs."""
    settings = svc.settings
    row = {
        "id": jobs.new_job_id(),
        "kind": kind,
        "owner_id": principal.user_id,
        "params": params,
        "priority": options.get("priority", 5),
        "max_attempts": options.get("max_attempts") or settings.job_max_attempts,
        "backoff": options.get("backoff") or settings.job_backoff,
        "backoff_seconds": options.get("backoff_seconds", settings.job_backoff_seconds),
        "idempotency_key": idempotency_key,
        "request_id": g.get("request_id"),
        "items_total": len(items),
        "bytes_total": bytes_total,
    }
    if len(items) <= submission.INLINE_ITEMS_MAX:
        # The usual job: row, items and message in one statement, one round trip.
        with svc.db.autocommit() as conn:
            written = submission.create_job_queued(conn, row, items=items, app_id=APP_ID)
    else:
        with svc.db.transaction() as conn:
            job = submission.create_job(conn, job_id=row.pop("id"), **row)
            written = None
            if job is not None:
                job_items.insert_items(conn, job_id=str(job["id"]), items=items)
                outbox_id = outbox.add_job_message(
                    conn, job=job, app_id=APP_ID, request_id=row["request_id"]
                )
                written = job, outbox_id
    if written is None:
        with svc.db.transaction() as conn:
            existing = submission.get_by_idempotency_key(
                conn, owner_id=principal.user_id, key=idempotency_key
            )
        if existing["kind"] != kind or existing["params"] != params:
            raise Conflict(
                "Idempotency-Key was already used for a different request",
                details={"job_id": str(existing["id"])},
            )
        return existing, False
    job, outbox_id = written
    svc.publish_after_commit([outbox_id])
    JOBS_CREATED.labels(kind).inc()
    return job, True


def may_see(principal: Principal, job: dict[str, Any]) -> bool:
    """Whether the principal may see and act on the job: its owner, or an admin unless the
    job is of an internal kind (a delivery is as private as the webhook it belongs to)."""
    if job["kind"] in INTERNAL_KINDS:
        return str(job["owner_id"]) == principal.user_id
    return can_access(principal, job)


def list_owner(principal: Principal, *, owner: Any = None, kind: str | None = None) -> str | None:
    """Whose jobs a list shows (None: everyone's): one's own; an admin's choice of `owner`,
    or all, except for an internal kind, which lists only one's own. 403 when a user (or an
    admin, for an internal kind) asks for another owner's."""
    if owner is not None and str(owner) != principal.user_id:
        if not principal.is_admin:
            raise Forbidden("Only admins may list other users' jobs")
        if kind in INTERNAL_KINDS:
            raise Forbidden(f"Jobs of kind '{kind}' are listed to their owner only")
        return str(owner)
    if owner is None and principal.is_admin and kind not in INTERNAL_KINDS:
        return None
    return principal.user_id


def prepare_planned(
    svc: Services,
    principal: Principal,
    spec: KindSpec,
    params: dict[str, Any],
    options: dict[str, Any],
) -> Submission:
    """A job as its kind's plan makes it (`KindSpec.make_plan`: the path a schedule's run
    takes too), not yet written: the kind's own `prepare` when it needs nothing else."""
    plan = spec.make_plan(None, svc.settings, principal.user_id, params)
    return Submission(
        kind=spec.name,
        params=plan.params,
        items=plan.items,
        bytes_total=plan.bytes_total,
        options=options,
    )


def submit_prepared(
    svc: Services, principal: Principal, prepared: Submission, idempotency_key: str | None
) -> tuple[dict[str, Any], bool]:
    """Write one prepared job in its own transaction (`submit_job`)."""
    return submit_job(
        svc,
        principal,
        kind=prepared.kind,
        params=prepared.params,
        items=prepared.items,
        bytes_total=prepared.bytes_total,
        options=prepared.options,
        idempotency_key=idempotency_key,
    )


def submit(
    svc: Services,
    principal: Principal,
    prepare: Callable[..., Submission],
    params: dict[str, Any],
    options: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """A job of the kind whose API module's `prepare` is given, written in its own
    transaction: what `POST /api/v1/jobs` and the seeds' submission routes do."""
    return submit_prepared(
        svc, principal, prepare(svc, principal, params, options), idempotency_key
    )


def submit_batch(
    svc: Services,
    principal: Principal,
    submissions: Sequence[Submission],
    keys: Sequence[str | None],
) -> list[tuple[dict[str, Any], bool]]:
    """Write prepared jobs, their items and outbox messages in ONE transaction (a handful
    of multi-row statements, whatever the count), then publish; (job, created) in order.

    A key this owner used in an earlier request answers its item with that first job
    (created False); the same key with a different kind or params is a 409 naming the item,
    and nothing is written. Keys are unique within `keys` (the route checks)."""
    settings = svc.settings
    request_id = g.get("request_id")
    rows = [
        {
            "id": jobs.new_job_id(),
            "kind": sub.kind,
            "owner_id": principal.user_id,
            "params": sub.params,
            "priority": sub.options.get("priority", 5),
            "max_attempts": sub.options.get("max_attempts") or settings.job_max_attempts,
            "backoff": sub.options.get("backoff") or settings.job_backoff,
            "backoff_seconds": sub.options.get("backoff_seconds", settings.job_backoff_seconds),
            "idempotency_key": key,
            "request_id": request_id,
            "items_total": len(sub.items),
            "bytes_total": sub.bytes_total,
        }
        for sub, key in zip(submissions, keys, strict=True)
    ]
    with svc.db.transaction() as conn:
        inserted = {str(row["id"]): row for row in submission.create_jobs(conn, rows)}
        missed = [row["idempotency_key"] for row in rows if row["id"] not in inserted]
        earlier = submission.get_by_idempotency_keys(conn, owner_id=principal.user_id, keys=missed)
        answers: list[tuple[dict[str, Any], bool]] = []
        for index, row in enumerate(rows):
            if row["id"] in inserted:
                answers.append((inserted[row["id"]], True))
                continue
            existing = earlier[row["idempotency_key"]]
            if existing["kind"] != row["kind"] or existing["params"] != row["params"]:
                raise Conflict(
                    "Idempotency-Key was already used for a different request",
                    details={"index": index, "job_id": str(existing["id"])},
                )
            answers.append((existing, False))
        new_jobs = [job for job, created in answers if created]
        submission.insert_items_of_jobs(
            conn,
            [
                (str(job["id"]), sub.items)
                for (job, created), sub in zip(answers, submissions, strict=True)
                if created and sub.items
            ],
        )
        outbox_ids = outbox.add_job_messages(
            conn, jobs=new_jobs, app_id=APP_ID, request_id=request_id
        )
    svc.publish_after_commit(outbox_ids)
    for kind, count in Counter(job["kind"] for job in new_jobs).items():
        JOBS_CREATED.labels(kind).inc(count)
    return answers


def find_job(
    svc: Services, principal: Principal, raw_id: str, *, kind: str | None = None
) -> dict[str, Any]:
    """The job if it exists, is of `kind` (when given) and the principal may see it; else 404.

    Another user's job is a 404, not a 403: its existence is not disclosed.
    """
    job_id = parse_job_id(raw_id)
    with svc.db.autocommit() as conn:  # one statement: one round trip, no BEGIN/COMMIT
        job = jobs.get_job(conn, job_id=job_id)
    if job is None or not may_see(principal, job) or (kind and job["kind"] != kind):
        raise NotFound("Job not found")
    return job


def job_for_request(
    scope: str, raw_id: str, *, kind: str | None = None
) -> tuple[Services, dict[str, Any]]:
    """The caller's job named in the URL, with the process's services: 401/403 by `scope`,
    400 for a malformed id, 404 when it is missing, of another kind or someone else's."""
    principal = require_auth(scope)
    svc = services()
    return svc, find_job(svc, principal, raw_id, kind=kind)


def cancel_job(svc: Services, job: dict[str, Any]) -> dict[str, Any]:
    """Cancel now if no worker holds it, else flag it and tell the workers; 409 if finished."""
    with svc.db.transaction() as conn:
        row = submission.request_cancel(conn, job_id=str(job["id"]))
    if row is None:
        raise Conflict(f"Job is already {job['status']}", details={"status": job["status"]})
    if row["status"] == "running":
        svc.broadcast_cancel(str(row["id"]))
    return row


def delete_job(svc: Services, job: dict[str, Any]) -> None:
    """Cancel the job if it still runs, then delete it with what it produced: its output
    files, or what its kind's `on_delete(conn, job)` hook removes instead (returning the
    storage keys to drop). Stored objects go only once the rows are gone for good."""
    job_id = str(job["id"])
    on_delete = kind_hook(job, "on_delete") or (
        lambda conn, _job: files.delete_outputs_of(conn, job_id=job_id)
    )
    with svc.db.transaction() as conn:
        cancelled = submission.request_cancel(conn, job_id=job_id)
        keys = on_delete(conn, job)
        submission.delete_job(conn, job_id=job_id)
    if cancelled is not None and cancelled["status"] == "running":
        svc.broadcast_cancel(job_id)
    for key in keys:
        try:
            svc.storage.delete(key)
        except OSError as exc:
            log.warning("job %s deleted; stored object %s not removed: %s", job_id, key, exc)


def retry_failed_job(svc: Services, job: dict[str, Any], *, what: str = "jobs") -> dict[str, Any]:
    """Run a failed or cancelled job again with all its attempts; 409 (naming `what` it
    is: jobs, deliveries) for one still under way or completed."""
    with svc.db.transaction() as conn:
        try:
            row, outbox_id = submission.retry_job(
                conn, job_id=str(job["id"]), app_id=APP_ID, request_id=g.get("request_id")
            )
        except ValueError:
            raise Conflict(
                f"Only failed or cancelled {what} can be retried; this one is {job['status']}",
                details={"status": job["status"]},
            ) from None
    svc.publish_after_commit([outbox_id])
    return row


def failures_of(svc: Services, job: dict[str, Any]) -> list[dict[str, Any]]:
    if not job["items_failed"] and job["status"] != "failed":
        return []
    with svc.db.autocommit() as conn:  # one read: no BEGIN/COMMIT round trips
        return job_items.failed_items(conn, job_id=str(job["id"]))
