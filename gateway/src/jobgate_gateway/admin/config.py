"""Seed 003's configuration management (issue 14), admins only:

- `GET /api/config`: the settings this gateway process runs with, secrets redacted, with each
  key's source (environment > JOBGATE_CONFIG_FILE > default: an exported variable always
  wins, which is why a reload may leave a key as it was).
- `POST /api/config/reload`: re-read JOBGATE_CONFIG_FILE and apply what can change without a
  restart (`jobgate.runtime_config.RELOADABLE`: rate limits, allow-lists) in every process
  within about a second, and have the edge agents re-render the proxy set. A bad file is a
  400 listing every problem, and nothing changes.
- `PUT /api/config/validate`: what a reload of a proposed document would do (and whether a
  proposed proxy set is valid), applying nothing.

Every answer is redacted the same way (`runtime_config.redact`): no secret leaves the gateway.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from flask import current_app, request
from marshmallow import Schema, fields

from jobgate import runtime_config
from jobgate.config import CONFIG_FILE_VAR, ConfigFileError, Settings
from jobgate.errors import Forbidden, InvalidRequest
from jobgate.identity import Principal
from jobgate.proxy import model as proxy_model
from jobgate.proxy import policy
from jobgate.runtime_config import RELOADABLE, Doc, Loaded, redact
from jobgate.timefmt import iso_ms
from jobgate.web import Blueprint, ErrorSchema
from jobgate_gateway import ratelimit
from jobgate_gateway.auth import authenticate_blueprint, require_auth
from jobgate_gateway.health import VERSION
from jobgate_gateway.services import Services, services

blp = Blueprint(
    "config",
    __name__,
    url_prefix="/api/config",
    description="Configuration management (admin only): effective settings, reload, validate",
)
blp.before_request(authenticate_blueprint)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}
_VALIDATE_KEYS = ("settings", "proxy")


class ChangeSchema(Schema):
    # `from`/`to` are keywords: declared through data_key.
    from_ = fields.Raw(data_key="from", attribute="from", allow_none=True)
    to = fields.Raw(allow_none=True)


class ProxySummarySchema(Schema):
    version = fields.Integer(allow_none=True)
    upstreams = fields.Integer()
    routes = fields.Integer()


class ConfigSchema(Schema):
    version = fields.String(required=True, metadata={"description": "Jobgate's version"})
    environment = fields.String(required=True, metadata={"description": "JOBGATE_ENV"})
    config_file = fields.String(allow_none=True, metadata={"description": CONFIG_FILE_VAR})
    runtime_version = fields.Integer(
        required=True, metadata={"description": "the last reload's version (0: none yet)"}
    )
    reloaded_at = fields.String(allow_none=True)
    reloaded_by = fields.String(allow_none=True)
    settings = fields.Dict(
        keys=fields.String(), required=True, metadata={"description": "secrets redacted"}
    )
    sources = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "environment, file or default, per key"},
    )
    reloadable = fields.List(fields.String())
    redacted = fields.List(fields.String(), metadata={"description": "keys shown redacted"})
    requires_restart = fields.List(
        fields.String(), metadata={"description": "reloaded keys that wait for a restart"}
    )
    proxy = fields.Nested(ProxySummarySchema, allow_none=True)


class ReloadSchema(Schema):
    reloaded = fields.Boolean(required=True)
    version = fields.Integer(required=True)
    config_file = fields.String(allow_none=True)
    changed = fields.Dict(keys=fields.String(), values=fields.Nested(ChangeSchema))
    requires_restart = fields.List(fields.String())
    overridden_by_environment = fields.List(fields.String())
    proxy_version = fields.Integer(allow_none=True)


class ValidateSchema(Schema):
    valid = fields.Boolean(required=True)
    changes = fields.Dict(keys=fields.String(), values=fields.Nested(ChangeSchema))
    requires_restart = fields.List(fields.String())
    overridden_by_environment = fields.List(fields.String())
    proxy = fields.Nested(ProxySummarySchema, allow_none=True)


def require_admin() -> Principal:
    principal = require_auth()
    if not principal.is_admin:
        raise Forbidden("Only administrators may read or change the configuration")
    return principal


def _config_file() -> str | None:
    return os.environ.get(CONFIG_FILE_VAR) or None


def _env_keys(svc: Services) -> frozenset[str]:
    runtime = svc.runtime
    return runtime.env_keys if runtime is not None else runtime_config.environment_keys()


def _loaded(svc: Services) -> Loaded:
    return svc.runtime.loaded if svc.runtime is not None else Loaded()


def _plan(svc: Services, values: Doc) -> dict[str, Any]:
    """What loading `values` (a whole settings document) would do to this process: the
    reloadable keys that change, the others that would differ after a restart, and the keys
    the environment pins (the file's value is not used)."""
    running = svc.settings
    env_keys = _env_keys(svc)
    new = runtime_config.reloaded(running, values, env_keys)
    changed = {
        key: {"from": redact(key, getattr(running, key)), "to": redact(key, getattr(new, key))}
        for key in sorted(RELOADABLE)
        if getattr(running, key) != getattr(new, key)
    }
    restart = {
        key
        for key, value in values.items()
        if key not in RELOADABLE and key not in env_keys and getattr(running, key) != value
    }
    # Keys dropped from the file since the last reload go back to their default at restart.
    previous = _loaded(svc).document
    restart |= {
        key
        for key in previous
        if key in _DEFAULTS
        and key not in values
        and key not in RELOADABLE
        and key not in env_keys
        and getattr(running, key) != _DEFAULTS[key]
    }
    # A gateway started without its limiter cannot start one: enabling needs a restart.
    if new.rate_limit_enabled and not current_app.config.get("RATELIMIT_ENABLED", True):
        restart.add("rate_limit_enabled")
        changed.pop("rate_limit_enabled", None)
    return {
        "changed": changed,
        "requires_restart": sorted(restart),
        "overridden_by_environment": sorted(key for key in values if key in env_keys),
    }


def _sources(svc: Services, path: str | None) -> dict[str, str]:
    env_keys = _env_keys(svc)
    loaded = _loaded(svc)
    if loaded.version:
        from_file = set(loaded.document)
    else:  # no reload yet: what the file says (read at start)
        try:
            from_file = set(runtime_config.read_file(path)) if path else set()
        except ConfigFileError:
            from_file = set()
    return {
        name: "environment" if name in env_keys else "file" if name in from_file else "default"
        for name in _DEFAULTS
    }


_PROXY_SQL = """
SELECT (SELECT version FROM proxy_state LIMIT 1) AS version,
       (SELECT count(*) FROM proxy_upstreams) AS upstreams,
       (SELECT count(*) FROM proxy_routes) AS routes
"""


def _proxy_summary(conn: Any) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute(_PROXY_SQL)
        row = cur.fetchone()
    return {"version": row["version"], "upstreams": row["upstreams"], "routes": row["routes"]}


@blp.route("", methods=["GET"])
@ratelimit.status_limit
@blp.response(200, ConfigSchema)
@blp.alt_response(403, schema=ErrorSchema, description="not an admin")
def get_config() -> dict[str, Any]:
    """The settings this gateway runs with (secrets as "********", URL passwords hidden),
    where each comes from, which a reload can change, and the proxy set's version."""
    require_admin()
    svc = services()
    svc.refresh_settings(force=True)
    settings = svc.settings
    loaded = _loaded(svc)
    path = _config_file()
    pending: list[str] = []
    if loaded.version:
        try:
            values = runtime_config.check_document(loaded.document)
        except ConfigFileError:
            values = {}
        pending = _plan(svc, values)["requires_restart"]
    with svc.db.transaction() as conn:
        proxy = _proxy_summary(conn)
    return {
        "version": VERSION,
        "environment": settings.env,
        "config_file": path,
        "runtime_version": loaded.version,
        "reloaded_at": iso_ms(loaded.loaded_at),
        "reloaded_by": loaded.loaded_by,
        "settings": runtime_config.public_settings(settings),
        "sources": _sources(svc, path),
        "reloadable": sorted(RELOADABLE),
        "redacted": runtime_config.redacted_keys(settings),
        "requires_restart": pending,
        "proxy": proxy,
    }


@blp.route("/reload", methods=["POST"])
@blp.response(200, ReloadSchema)
@blp.alt_response(400, schema=ErrorSchema, description="the file is not valid")
@blp.alt_response(403, schema=ErrorSchema, description="not an admin")
def reload_config() -> dict[str, Any]:
    """Re-read JOBGATE_CONFIG_FILE; every process applies its reloadable keys within about
    a second (jobs claimed after that see them); the edge agents re-render the proxy set.
    A file with any problem changes nothing (400 with every problem)."""
    principal = require_admin()
    svc = services()
    path = _config_file()
    try:
        values = runtime_config.read_file(path) if path else {}
    except ConfigFileError as exc:
        raise proxy_model.invalid_request(exc.errors) from None
    plan = _plan(svc, values)
    with svc.db.transaction() as conn:
        loaded = runtime_config.store(conn, values, principal.username)
        proxy_version = _proxy_summary(conn)["version"]
    svc.refresh_settings(force=True)
    return {
        "reloaded": True,
        "version": loaded.version,
        "config_file": path,
        **plan,
        "proxy_version": proxy_version,
    }


@blp.route("/validate", methods=["PUT"])
@blp.doc(
    requestBody={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "settings": {"type": "object", "description": "a settings document"},
                        "proxy": {"type": "object", "description": "{upstreams, routes}"},
                    },
                }
            }
        },
    }
)
@blp.response(200, ValidateSchema)
@blp.alt_response(400, schema=ErrorSchema, description="not valid: every problem")
@blp.alt_response(403, schema=ErrorSchema, description="not an admin")
def validate_config() -> dict[str, Any]:
    """Check a proposed settings document (as JOBGATE_CONFIG_FILE would hold it) and/or a
    proxy set (as PUT /api/proxy/config takes it): what a reload would change, what would
    need a restart. Nothing is applied."""
    require_admin()
    svc = services()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    errors = [
        {"path": key, "message": f"unknown field (expected: {', '.join(_VALIDATE_KEYS)})"}
        for key in body
        if key not in _VALIDATE_KEYS
    ]
    values: Doc = {}
    if "settings" in body:
        try:
            values = runtime_config.check_document(body["settings"])
        except ConfigFileError as exc:
            errors += [
                {**e, "path": f"settings.{e['path']}" if e["path"] else "settings"}
                for e in exc.errors
            ]
    proxy = None
    if "proxy" in body:
        try:
            if not isinstance(body["proxy"], dict):
                raise InvalidRequest(details={"errors": [{"path": "", "message": "not an object"}]})
            checked = proxy_model.validate_set(body["proxy"])
        except InvalidRequest as exc:
            errors += [
                {**e, "path": f"proxy.{e['path']}" if e.get("path") else "proxy"}
                for e in exc.details.get("errors", [{"path": "", "message": exc.message}])
            ]
        else:
            # What PUT /api/proxy/config would refuse with 403, under the proposed settings.
            settings = runtime_config.reloaded(svc.settings, values, _env_keys(svc))
            errors += [
                {"path": f"proxy.upstreams{at}", "message": refusal.message}
                for at, refusal in policy.refusals(checked["upstreams"], settings)
            ]
            proxy = {
                "version": None,
                "upstreams": len(checked["upstreams"]),
                "routes": len(checked["routes"]),
            }
    if errors:
        raise proxy_model.invalid_request(errors)
    plan = _plan(svc, values) if "settings" in body else {}
    return {
        "valid": True,
        "changes": plan.get("changed", {}),
        "requires_restart": plan.get("requires_restart", []),
        "overridden_by_environment": plan.get("overridden_by_environment", []),
        "proxy": proxy,
    }
