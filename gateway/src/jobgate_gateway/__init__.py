"""The Jobgate gateway: the one public entry point (flaskr-style app factory)."""

from __future__ import annotations

import swagger_ui_bundle
from flask import Flask, Response, send_from_directory

from jobgate.config import Settings
from jobgate.web import Api, init_web
from jobgate_gateway import auth, auth_proxy, dashboard, health, proxies, ratelimit
from jobgate_gateway.admin import config as admin_config
from jobgate_gateway.admin import queues as admin_queues
from jobgate_gateway.compat import seed000, seed001, seed002, seed003, seed004
from jobgate_gateway.files import resources as file_resources
from jobgate_gateway.jobs import resources as job_resources
from jobgate_gateway.metrics import init_metrics
from jobgate_gateway.schedules import resources as schedule_resources
from jobgate_gateway.services import Services
from jobgate_gateway.uploads import init_uploads
from jobgate_gateway.webhooks import resources as webhook_resources

MAX_JSON_BODY = 16 * 1024 * 1024


def swagger_ui_static(filename: str) -> Response:
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)


def create_app(config: Settings | None = None, *, services: Services | None = None) -> Flask:
    settings = config or Settings.from_env()
    app = Flask(__name__)
    # Behind the edge, the client is X-Forwarded-For's last address (TRUSTED_PROXIES only).
    app.wsgi_app = proxies.TrustedProxies(app.wsgi_app, settings.trusted_proxies)
    app.config.update(
        API_TITLE="Jobgate API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        # Swagger UI is served from the swagger-ui-bundle wheel: /docs works offline.
        OPENAPI_SWAGGER_UI_URL="/docs/static/",
        OPENAPI_REDOC_PATH="/redoc",
        OPENAPI_REDOC_URL="https://cdn.jsdelivr.net/npm/redoc/bundles/redoc.standalone.js",
        MAX_CONTENT_LENGTH=MAX_JSON_BODY,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    app.extensions["jobgate"] = services or Services.create(settings)

    init_web(app)
    init_uploads(app)
    init_metrics(app)
    app.before_request(auth.resolve_principal)  # before the rate limiter: limits count per key
    ratelimit.init_rate_limits(app)

    api = Api(app)
    api.spec.components.security_scheme(
        "ApiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    )
    api.spec.components.security_scheme(
        "Bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    api.spec.components.security_scheme("Basic", {"type": "http", "scheme": "basic"})
    api.spec.options["security"] = [{"ApiKey": []}, {"Bearer": []}]
    app.add_url_rule("/docs/static/<path:filename>", "swagger_ui_static", swagger_ui_static)
    blueprints = (
        health.blp,
        auth_proxy.blp,
        job_resources.blp,
        file_resources.blp,
        schedule_resources.blp,
        webhook_resources.blp,
        admin_queues.blp,
        admin_config.blp,
        seed000.health_blp,
        seed000.blp,
        seed001.blp,
        seed002.health_blp,
        seed002.blp,
        *seed003.BLUEPRINTS,
        *seed004.BLUEPRINTS,
    )
    for blp in blueprints:
        api.register_blueprint(blp)
    ratelimit.limiter.exempt(health.blp)
    ratelimit.limiter.exempt(seed000.health_blp)
    ratelimit.limiter.exempt(seed002.health_blp)
    ratelimit.limiter.exempt(seed003.proxy.edge_blp)  # nginx's auth_request takes no 429
    # The dashboard's own files: not API operations (no OpenAPI entry), not rate limited.
    app.register_blueprint(dashboard.blp)
    ratelimit.limiter.exempt(dashboard.blp)
    return app
