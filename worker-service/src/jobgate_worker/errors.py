"""How a handler tells the runtime what became of an attempt."""

from __future__ import annotations

from typing import Any

from jobgate import db

# The database is unreachable or went away: not the job's fault (hand it back, or wait).
DATABASE_ERRORS = (db.OperationalError, db.InterfaceError)


class JobFailed(Exception):
    """The attempt failed; retried with backoff while attempts remain, if `retryable`."""

    def __init__(self, message: str, *, retryable: bool = True, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.details = details


class Cancelled(Exception):
    """The job was cancelled while running; the runtime records `cancelled`."""


class HandBack(Exception):
    """The worker is shutting down; the job goes back to the queue untouched."""


class LeaseLost(Exception):
    """Another worker took the job over (our heartbeats stopped); drop it without writing."""
