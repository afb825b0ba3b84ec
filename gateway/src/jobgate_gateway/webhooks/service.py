"""Creating, finding, changing and listing webhooks and their deliveries for a principal.

A webhook is its owner's alone: another user's (an admin's too) is a 404, like another
user's job. Every check lives here: the URL must be http(s) and, unless
WEBHOOK_ALLOW_PRIVATE, resolve to public addresses only (checked again at each delivery);
the event types must be known ones or patterns; an owner has at most
WEBHOOK_MAX_PER_OWNER active webhooks (409 beyond).
"""

from __future__ import annotations

import uuid
from typing import Any

from jobgate import webhooks
from jobgate.errors import InvalidRequest, NotFound
from jobgate.identity import Principal
from jobgate_gateway.jobs.service import retry_failed_job
from jobgate_gateway.services import Services


def _uuid(raw: str, what: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidRequest(f"Invalid {what} ID format", details={f"{what}_id": raw}) from None


def checked_url(svc: Services, url: str) -> str:
    """The URL if Jobgate may deliver to it; 400 naming why not."""
    try:
        webhooks.check_target(url, allow_private=svc.settings.webhook_allow_private)
    except webhooks.TargetRefused as exc:
        raise InvalidRequest(str(exc), details={"url": url}) from None
    return url


def create_webhook(
    svc: Services,
    principal: Principal,
    *,
    url: str,
    events: list[str],
    description: str | None = None,
    active: bool = True,
) -> dict[str, Any]:
    """A webhook of the principal's with a fresh secret (in the row: show it once); 409
    when it would be one active webhook too many."""
    subscriptions = webhooks.check_events(events)
    checked_url(svc, url)
    with svc.db.transaction() as conn:
        if active:
            webhooks.check_room(
                conn, owner_id=principal.user_id, limit=svc.settings.webhook_max_per_owner
            )
        return webhooks.create(
            conn,
            owner_id=principal.user_id,
            url=url,
            events=subscriptions,
            description=description,
            active=active,
        )


def find_webhook(svc: Services, principal: Principal, raw_id: str) -> dict[str, Any]:
    """The principal's own webhook; 400 for a malformed id, else 404."""
    webhook_id = _uuid(raw_id, "webhook")
    with svc.db.transaction() as conn:
        row = webhooks.get(conn, webhook_id=webhook_id, owner_id=principal.user_id)
    if row is None:
        raise NotFound("Webhook not found")
    return row


def list_webhooks(
    svc: Services, principal: Principal, *, limit: int = 50, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    with svc.db.transaction() as conn:
        return webhooks.list_webhooks(conn, owner_id=principal.user_id, limit=limit, offset=offset)


def update_webhook(
    svc: Services, principal: Principal, raw_id: str, *, changes: dict[str, Any]
) -> dict[str, Any]:
    """PATCH: what is sent changes (a new URL and new events are checked as at creation;
    re-activating one is a 409 when the owner has no room left)."""
    current = find_webhook(svc, principal, raw_id)
    changes = dict(changes)
    if "events" in changes:
        changes["events"] = webhooks.check_events(changes["events"])
    if "url" in changes:
        checked_url(svc, changes["url"])
    if not changes:
        return current
    with svc.db.transaction() as conn:
        if changes.get("active") and not current["active"]:
            webhooks.check_room(
                conn,
                owner_id=principal.user_id,
                limit=svc.settings.webhook_max_per_owner,
                webhook_id=str(current["id"]),
            )
        row = webhooks.update(
            conn, webhook_id=str(current["id"]), owner_id=principal.user_id, changes=changes
        )
    if row is None:
        raise NotFound("Webhook not found")
    return row


def rotate_secret(svc: Services, principal: Principal, raw_id: str) -> dict[str, Any]:
    current = find_webhook(svc, principal, raw_id)
    with svc.db.transaction() as conn:
        row = webhooks.rotate_secret(
            conn, webhook_id=str(current["id"]), owner_id=principal.user_id
        )
    if row is None:
        raise NotFound("Webhook not found")
    return row


def delete_webhook(svc: Services, principal: Principal, raw_id: str) -> None:
    """Delete it; deliveries already made stay listed as jobs (queued ones are skipped)."""
    current = find_webhook(svc, principal, raw_id)
    with svc.db.transaction() as conn:
        if not webhooks.delete(conn, webhook_id=str(current["id"]), owner_id=principal.user_id):
            raise NotFound("Webhook not found")


def list_deliveries(
    svc: Services,
    principal: Principal,
    raw_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of the webhook's deliveries, newest first, and their total."""
    current = find_webhook(svc, principal, raw_id)
    with svc.db.transaction() as conn:
        return webhooks.list_deliveries(
            conn, webhook_id=str(current["id"]), status=status, limit=limit, offset=offset
        )


def retry_delivery(
    svc: Services, principal: Principal, raw_id: str, raw_delivery_id: str
) -> dict[str, Any]:
    """Send a failed (or cancelled) delivery again, with all its attempts (the jobs retry
    path); 409 for one that is still under way or completed."""
    current = find_webhook(svc, principal, raw_id)
    delivery_id = _uuid(raw_delivery_id, "delivery")
    with svc.db.transaction() as conn:
        job = webhooks.get_delivery(conn, webhook_id=str(current["id"]), delivery_id=delivery_id)
    if job is None:
        raise NotFound("Delivery not found")
    return retry_failed_job(svc, job, what="deliveries")
