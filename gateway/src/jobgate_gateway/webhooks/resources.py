"""/api/v1/webhooks: subscriptions to the owner's job events, and their deliveries."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from jobgate.web import Blueprint
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.services import services
from jobgate_gateway.webhooks import service
from jobgate_gateway.webhooks.schemas import (
    DeliveryListQuerySchema,
    DeliveryListSchema,
    DeliverySchema,
    PageQuerySchema,
    WebhookCreateSchema,
    WebhookListSchema,
    WebhookSchema,
    WebhookUpdateSchema,
    WebhookWithSecretSchema,
)
from jobgate_gateway.webhooks.views import delivery_to_dict, webhook_to_dict

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1/webhooks",
    description="Job events delivered to your URL, signed the Standard Webhooks way",
)
blp.before_request(authenticate_blueprint)


@blp.route("")
class Webhooks(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookWithSecretSchema)
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Create a webhook: `url`, `events` (types such as `job.completed`, or `job.*`,
        `task.*`, `*`). The answer carries the signing `secret`, shown only this once."""
        principal = require_auth("jobs:write")
        row = service.create_webhook(services(), principal, **body)
        return webhook_to_dict(row, with_secret=True), 201

    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, WebhookListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Your webhooks, newest first (never their secrets)."""
        principal = require_auth("jobs:read")
        rows, total = service.list_webhooks(
            services(), principal, limit=query["limit"], offset=query["offset"]
        )
        return {
            "webhooks": [webhook_to_dict(r) for r in rows],
            "total": total,
            "limit": query["limit"],
            "offset": query["offset"],
        }


@blp.route("/<uuidstr:webhook_id>")
class WebhookById(MethodView):
    decorators = [ratelimit.create_limit, ratelimit.status_limit]

    @blp.response(200, WebhookSchema)
    def get(self, webhook_id: str) -> dict[str, Any]:
        """One of your webhooks."""
        principal = require_auth("jobs:read")
        return webhook_to_dict(service.find_webhook(services(), principal, webhook_id))

    @blp.arguments(WebhookUpdateSchema)
    @blp.response(200, WebhookSchema)
    def patch(self, body: dict[str, Any], webhook_id: str) -> dict[str, Any]:
        """Change what is sent: `url`, `events`, `description`, `active`."""
        principal = require_auth("jobs:write")
        row = service.update_webhook(services(), principal, webhook_id, changes=body)
        return webhook_to_dict(row)

    @blp.response(204)
    def delete(self, webhook_id: str) -> None:
        """Delete a webhook; deliveries not sent yet are skipped."""
        principal = require_auth("jobs:write")
        service.delete_webhook(services(), principal, webhook_id)


@blp.route("/<uuidstr:webhook_id>/rotate-secret", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, WebhookWithSecretSchema)
def rotate_secret(webhook_id: str) -> dict[str, Any]:
    """A new signing secret, shown only in this answer; deliveries from now on (retries
    included) are signed with it."""
    principal = require_auth("jobs:write")
    return webhook_to_dict(
        service.rotate_secret(services(), principal, webhook_id), with_secret=True
    )


@blp.route("/<uuidstr:webhook_id>/deliveries")
@blp.arguments(DeliveryListQuerySchema, location="query")
@ratelimit.status_limit
@blp.response(200, DeliveryListSchema)
def deliveries(query: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    """The webhook's deliveries, newest first: status, attempts, the last answer's status
    code and error, and when the next retry is due."""
    principal = require_auth("jobs:read")
    rows, total = service.list_deliveries(
        services(),
        principal,
        webhook_id,
        status=query.get("status"),
        limit=query["limit"],
        offset=query["offset"],
    )
    return {
        "deliveries": [delivery_to_dict(r) for r in rows],
        "total": total,
        "limit": query["limit"],
        "offset": query["offset"],
    }


@blp.route("/<uuidstr:webhook_id>/deliveries/<uuidstr:delivery_id>/retry", methods=["POST"])
@ratelimit.create_limit
@blp.response(200, DeliverySchema)
def retry_delivery(webhook_id: str, delivery_id: str) -> dict[str, Any]:
    """Send a failed or cancelled delivery again (its attempts start over)."""
    principal = require_auth("jobs:write")
    return delivery_to_dict(service.retry_delivery(services(), principal, webhook_id, delivery_id))
