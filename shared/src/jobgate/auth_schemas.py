"""Marshmallow schemas of auth-service's request bodies and responses, shared with the gateway
(which documents and validates the same operations when it forwards them).

Inputs are strict (unknown fields, wrong types → 400): a typo in a scope or a field
name must fail loudly rather than silently grant or drop something.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from jobgate.identity import KNOWN_SCOPES, ROLES

USERNAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$",
    error="1-64 characters: letters, digits and _ . @ -, starting with a letter or digit",
)
NEW_PASSWORD = validate.Length(min=8, max=1024)


def _scope() -> fields.String:
    return fields.String(validate=validate.OneOf(KNOWN_SCOPES))


class StrictBoolean(fields.Boolean):
    """Only JSON true/false: "false" or 0 must not be read as a boolean by accident."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


# --- sessions -------------------------------------------------------------------------


class LoginSchema(ma.Schema):
    # Not required here: HTTP Basic may carry the credentials instead.
    username = fields.String(validate=validate.Length(min=1, max=256))
    password = fields.String(validate=validate.Length(min=1, max=4096))


class RefreshSchema(ma.Schema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=512))


class UserSchema(ma.Schema):
    id = fields.UUID()
    username = fields.String()
    role = fields.String()
    scopes = fields.List(fields.String())
    is_active = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class TokenResponseSchema(ma.Schema):
    access_token = fields.String()
    token = fields.String(
        metadata={"description": "login only: the access token again, as seed 004 reads it"}
    )
    token_type = fields.String()
    expires_in = fields.Integer()
    refresh_token = fields.String()
    user = fields.Nested(UserSchema)


class MessageSchema(ma.Schema):
    message = fields.String()


class ValidateSchema(ma.Schema):
    api_key = fields.String(validate=validate.Length(min=1, max=512))
    token = fields.String(validate=validate.Length(min=1, max=8192))


class ValidateResponseSchema(ma.Schema):
    valid = fields.Boolean()
    user_id = fields.String()
    username = fields.String()
    role = fields.String()
    scopes = fields.List(fields.String())
    auth_method = fields.String()
    key_id = fields.String(allow_none=True)


class JwkSchema(ma.Schema):
    kty = fields.String()
    kid = fields.String()
    use = fields.String()
    alg = fields.String()
    n = fields.String()
    e = fields.String()


class JwksSchema(ma.Schema):
    keys = fields.List(fields.Nested(JwkSchema))


# --- API keys -------------------------------------------------------------------------


class ApiKeyCreateSchema(ma.Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    scopes = fields.List(_scope(), validate=validate.Length(max=len(KNOWN_SCOPES) * 4))
    expires_in_days = fields.Integer(strict=True, validate=validate.Range(min=1, max=3650))


class ApiKeyListQuerySchema(ma.Schema):
    user_id = fields.UUID()
    include_revoked = fields.Boolean(load_default=False)


class ApiKeySchema(ma.Schema):
    id = fields.UUID()
    user_id = fields.UUID()
    name = fields.String()
    prefix = fields.String()
    scopes = fields.List(fields.String())
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(metadata={"description": "The full key; shown only in this response"})


class ApiKeyListSchema(ma.Schema):
    api_keys = fields.List(fields.Nested(ApiKeySchema))


# --- users ----------------------------------------------------------------------------


class UserCreateSchema(ma.Schema):
    username = fields.String(required=True, validate=USERNAME)
    password = fields.String(required=True, validate=NEW_PASSWORD)
    role = fields.String(validate=validate.OneOf(ROLES))
    scopes = fields.List(_scope())


class UserUpdateSchema(ma.Schema):
    role = fields.String(validate=validate.OneOf(ROLES))
    scopes = fields.List(_scope())
    is_active = StrictBoolean()
    password = fields.String(validate=NEW_PASSWORD)


class PageQuerySchema(ma.Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


class UserListSchema(ma.Schema):
    users = fields.List(fields.Nested(UserSchema))
    total = fields.Integer()
    limit = fields.Integer()
    offset = fields.Integer()


class HealthSchema(ma.Schema):
    status = fields.String()
    service = fields.String()
    database = fields.String()
