"""Jobgate auth-service: users, passwords, RS256 JWTs + JWKS, refresh tokens, API keys.

`create_app` is a flaskr-style factory: tests build apps with their own Settings, and
`jobgate_auth.wsgi` builds the one gunicorn serves from the environment.
"""

from __future__ import annotations

from flask import Flask

from jobgate.config import Settings
from jobgate.db import Database
from jobgate.web import Api, init_web
from jobgate_auth.bootstrap import run_bootstrap
from jobgate_auth.keys import load_signing_key
from jobgate_auth.state import EXTENSION, AuthState
from jobgate_auth.views import api_keys, auth, health, users

__all__ = ["create_app"]

MAX_BODY_BYTES = 64 * 1024  # credentials and small admin bodies only


def create_app(config: Settings | None = None) -> Flask:
    """Build the app: load (or create) the signing key, register routes, bootstrap users."""
    settings = config if config is not None else Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE="Jobgate auth-service",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    init_web(app)

    signing_key = load_signing_key(settings.jwt_private_key_file, env=settings.env)
    db = Database(settings.database_url, minconn=settings.db_pool_min, maxconn=settings.db_pool_max)
    app.extensions[EXTENSION] = AuthState(settings=settings, db=db, signing_key=signing_key)

    api = Api(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    for module in (auth, api_keys, users, health):
        api.register_blueprint(module.blp)

    run_bootstrap(db, settings)
    # Drop the pool opened by bootstrap: with `gunicorn --preload` it would otherwise be
    # shared by forked workers. Each process reopens its own on first use.
    db.close()
    return app
