"""gunicorn entry point: `gunicorn jobgate_gateway.wsgi:app`."""

from jobgate.config import Settings
from jobgate.logs import configure_logging
from jobgate_gateway import create_app

settings = Settings.from_env()
configure_logging("gateway", settings.log_level, settings.log_format)
app = create_app(settings)
