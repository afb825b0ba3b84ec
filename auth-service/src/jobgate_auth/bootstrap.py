"""First admin and optional bootstrap API key, created from the environment at startup.

Idempotent and safe when several processes start at once (the unique indexes decide);
existing rows are never overwritten, so changing BOOTSTRAP_ADMIN_PASSWORD later does not
reset a password an admin has since changed, and a revoked bootstrap key stays revoked.
"""

from __future__ import annotations

import logging
import time

from jobgate.config import Settings
from jobgate.db import Connection, Database, InterfaceError, OperationalError
from jobgate.identity import KNOWN_SCOPES
from jobgate_auth import api_keys, users

log = logging.getLogger(__name__)

# The key printed in seed 000's documentation: fine for local demos, fatal in production.
DEMO_API_KEY = "demo-api-key-2024"


class BootstrapError(RuntimeError):
    """Bootstrap settings that must not be started with."""


def check_settings(settings: Settings) -> None:
    if settings.env == "production" and settings.bootstrap_api_key == DEMO_API_KEY:
        raise BootstrapError("the public demo API key must not be used in production")
    if settings.bootstrap_admin_password and len(settings.bootstrap_admin_password) < 8:
        log.warning("BOOTSTRAP_ADMIN_PASSWORD is shorter than 8 characters")


def bootstrap(conn: Connection, *, settings: Settings) -> None:
    """Ensure the admin user (and the bootstrap key, owned by it) exist."""
    admin, created = users.ensure_user(
        conn,
        username=settings.bootstrap_admin_username,
        role="admin",
        scopes=KNOWN_SCOPES,
        password=settings.bootstrap_admin_password or None,
    )
    if created:
        log.info(
            "bootstrap: created admin user %r%s",
            admin["username"],
            "" if settings.bootstrap_admin_password else " without a usable password",
        )
    elif admin["role"] != "admin" or not admin["is_active"]:
        log.warning(
            "bootstrap: user %r exists but is not an active admin; left unchanged",
            admin["username"],
        )
    if settings.bootstrap_api_key:
        key = api_keys.ensure_key(
            conn,
            key=settings.bootstrap_api_key,
            user_id=admin["id"],
            name="bootstrap",
            scopes=KNOWN_SCOPES,
        )
        if key["revoked_at"] is not None:
            log.warning("bootstrap: the bootstrap API key %s was revoked; left revoked", key["id"])


def run_bootstrap(
    db: Database, settings: Settings, *, attempts: int = 5, delay: float = 1.0
) -> None:
    """Bootstrap, retrying while the database is unreachable (it may start after us)."""
    check_settings(settings)
    if not (settings.bootstrap_admin_password or settings.bootstrap_api_key):
        return
    for attempt in range(1, attempts + 1):
        try:
            with db.transaction() as conn:
                bootstrap(conn, settings=settings)
            return
        except (OperationalError, InterfaceError) as exc:
            if attempt >= attempts:
                log.error("bootstrap: database unavailable, giving up after %d attempts", attempts)
                raise
            wait = delay * 2 ** (attempt - 1)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning(
                "bootstrap: database unavailable (attempt %d/%d, retrying in %.1fs): %s",
                attempt,
                attempts,
                wait,
                reason,
            )
            time.sleep(wait)
