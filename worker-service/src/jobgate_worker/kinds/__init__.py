"""Job handlers by kind: `HANDLERS[kind](ctx) -> result` (see jobgate_worker.context)."""

from __future__ import annotations

from jobgate_worker.kinds import cache, convert

HANDLERS = {"cache": cache.run, "convert": convert.run}
