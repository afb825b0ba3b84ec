"""Timestamps as every API of the platform prints them: ISO 8601, UTC, milliseconds, `Z`.

One module for the gateway's views, seed 004's envelopes and webhook payloads, so a time
reads the same wherever a client meets it.
"""

from __future__ import annotations

import datetime as dt


def _format(value: dt.datetime) -> str:
    if value.tzinfo is None:  # naive times are UTC throughout the platform
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_ms(value: dt.datetime | None) -> str | None:
    """`value` in UTC with milliseconds and `Z`; None stays None (a time not reached yet)."""
    return None if value is None else _format(value)


def now_iso_ms() -> str:
    """Now, printed as `iso_ms` prints a time."""
    return _format(dt.datetime.now(dt.UTC))
