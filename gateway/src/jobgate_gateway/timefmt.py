"""Timestamps as the seeds print them: `jobgate.timefmt`, re-exported for the gateway's views."""

from __future__ import annotations

from jobgate.timefmt import iso_ms

__all__ = ["iso_ms"]
