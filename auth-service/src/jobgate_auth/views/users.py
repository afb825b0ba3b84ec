"""User administration (admin role only)."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from jobgate.auth_schemas import (
    PageQuerySchema,
    UserCreateSchema,
    UserListSchema,
    UserSchema,
    UserUpdateSchema,
)
from jobgate.db import Connection
from jobgate.identity import Principal
from jobgate.web import Blueprint
from jobgate_auth import authn, users
from jobgate_auth.state import get_state

blp = Blueprint("users", __name__, description="User administration (admin only)")


def _admin(conn: Connection) -> Principal:
    principal = authn.authenticate(conn, get_state())
    authn.require_admin(principal)
    return principal


@blp.route("/users")
class Users(MethodView):
    @blp.arguments(PageQuerySchema, location="query")
    @blp.response(200, UserListSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        with get_state().db.transaction() as conn:
            _admin(conn)
            rows, total = users.list_users(conn, limit=query["limit"], offset=query["offset"])
        return {"users": rows, "total": total, "limit": query["limit"], "offset": query["offset"]}

    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        with get_state().db.transaction() as conn:
            _admin(conn)
            return users.create_user(
                conn,
                username=body["username"],
                password=body["password"],
                role=body.get("role", "user"),
                scopes=body.get("scopes"),
            )


@blp.route("/users/<uuid:user_id>")
class UserById(MethodView):
    @blp.response(200, UserSchema)
    def get(self, user_id: uuid.UUID) -> dict[str, Any]:
        with get_state().db.transaction() as conn:
            _admin(conn)
            return users.require_user(conn, user_id=user_id)

    @blp.arguments(UserUpdateSchema)
    @blp.response(200, UserSchema)
    def patch(self, body: dict[str, Any], user_id: uuid.UUID) -> dict[str, Any]:
        """Change role, scopes, is_active or password; deactivating or a new password ends
        the user's sessions."""
        with get_state().db.transaction() as conn:
            _admin(conn)
            return users.update_user(conn, user_id=user_id, **body)

    @blp.response(200, UserSchema)
    def delete(self, user_id: uuid.UUID) -> dict[str, Any]:
        """Deactivate (rows stay: jobs reference them) and revoke all keys and sessions."""
        with get_state().db.transaction() as conn:
            _admin(conn)
            return users.deactivate_user(conn, user_id=user_id)
