"""Seed 004 (Distributed Task Queue): tasks (`tasks`, jobs of the `task` kind) and workers
(`workers`, the `workers` table: Jobgate's own and those registered from outside).

One module per route group of the seed, each with its own blueprint. Every answer is in the
seed's envelope: `{"status": "success", "data": …, "timestamp"}`, and errors
`{"status": "error", "error": {code, message, details, request_id}, "timestamp"}`
(`jobgate.web.ENVELOPE`). Its `/health`, `/ready` and `/info` are the root ones
(`jobgate_gateway.health`), which answer the union of the seeds' fields.
"""

from __future__ import annotations

from jobgate_gateway.compat.seed004 import tasks, workers

BLUEPRINTS = (tasks.blp, workers.blp, workers.root_blp)
