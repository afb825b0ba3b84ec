"""API keys of the caller (admins: of anyone)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from jobgate.auth_schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeyListQuerySchema,
    ApiKeyListSchema,
)
from jobgate.errors import NotFound
from jobgate.web import Blueprint
from jobgate_auth import api_keys, authn, users
from jobgate_auth.scopes import grantable_scopes
from jobgate_auth.state import get_state

blp = Blueprint("api-keys", __name__, description="API keys (shown once, revocable)")


@blp.route("/api-keys")
class ApiKeys(MethodView):
    @blp.arguments(ApiKeyListQuerySchema, location="query")
    @blp.response(200, ApiKeyListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List the caller's keys (never the key itself); admins may pass `user_id`."""
        state = get_state()
        with state.db.transaction() as conn:
            principal = authn.authenticate(conn, state)
            owner_id = principal.user_id
            requested = query.get("user_id")
            if requested is not None and str(requested) != principal.user_id:
                authn.require_admin(principal)
                owner_id = str(users.require_user(conn, user_id=requested)["id"])
            rows = api_keys.list_keys(
                conn, user_id=owner_id, include_revoked=query["include_revoked"]
            )
        return {"api_keys": rows}

    @blp.arguments(ApiKeyCreateSchema)
    @blp.response(201, ApiKeyCreatedSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a key; the full key is in this response only, it is stored hashed."""
        state = get_state()
        with state.db.transaction() as conn:
            principal = authn.authenticate(conn, state)
            scopes = grantable_scopes(principal, body.get("scopes"))
            row, key = api_keys.create_key(
                conn,
                user_id=principal.user_id,
                name=body["name"],
                scopes=scopes,
                expires_in_days=body.get("expires_in_days"),
            )
        return {**row, "key": key}


@blp.route("/api-keys/<uuid:key_id>", methods=["DELETE"])
@blp.response(204)
def revoke_api_key(key_id: uuid.UUID) -> None:
    """Revoke a key; someone else's key is answered like a missing one (404)."""
    state = get_state()
    with state.db.transaction() as conn:
        principal = authn.authenticate(conn, state)
        owner_id = None if principal.is_admin else principal.user_id
        if api_keys.revoke_key(conn, key_id=key_id, owner_id=owner_id) is None:
            raise NotFound("API key not found")
