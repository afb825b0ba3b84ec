"""Timestamps as the seeds print them: ISO 8601, UTC, milliseconds, `Z`."""

from __future__ import annotations

import datetime as dt


def iso_ms(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
