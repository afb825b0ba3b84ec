"""Per-app state (settings, database, signing key), reached from views via `current_app`."""

from __future__ import annotations

import dataclasses

from flask import current_app

from jobgate.config import Settings
from jobgate.db import Database
from jobgate_auth.keys import SigningKey

EXTENSION = "jobgate_auth"


@dataclasses.dataclass(frozen=True)
class AuthState:
    settings: Settings
    db: Database
    signing_key: SigningKey


def get_state() -> AuthState:
    return current_app.extensions[EXTENSION]
