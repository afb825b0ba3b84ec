"""Entry point for gunicorn: `gunicorn jobgate_auth.wsgi:app`."""

from __future__ import annotations

from jobgate.config import Settings
from jobgate.logs import configure_logging
from jobgate_auth import create_app

settings = Settings.from_env()
configure_logging("auth-service", settings.log_level, settings.log_format)
app = create_app(settings)
