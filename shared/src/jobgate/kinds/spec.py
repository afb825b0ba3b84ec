"""`KindSpec`: everything Jobgate needs to know about one job kind, declared once."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from marshmallow import Schema

MAX_PRIORITY = 9


@dataclasses.dataclass(frozen=True)
class QueueOptions:
    """How the kind's queue `jobgate.jobs.<kind>` is declared and consumed."""

    max_priority: int = MAX_PRIORITY  # classic queues only (quorum queues have no priorities)
    prefetch: int | None = None  # deliveries held per worker process; None = its concurrency


@dataclasses.dataclass(frozen=True)
class KindSpec:
    """One job kind: its name, params contract, settings, queue, and the modules that
    submit (gateway) and run (worker) it."""

    name: str
    description: str
    params: type[Schema]  # the contract: the gateway validates with it, the worker loads with it
    settings: type | None = None  # a frozen dataclass; `jobgate.config.Settings` inherits it
    queue: QueueOptions = QueueOptions()
    seed: str | None = None  # the seed document whose compatibility routes serve this kind
    worker_module: str = ""  # default: jobgate_worker.kinds.<name>
    api_module: str = ""  # default: jobgate_gateway.kinds.<name>

    def __post_init__(self) -> None:
        if not self.worker_module:
            object.__setattr__(self, "worker_module", f"jobgate_worker.kinds.{self.name}")
        if not self.api_module:
            object.__setattr__(self, "api_module", f"jobgate_gateway.kinds.{self.name}")

    @property
    def queue_name(self) -> str:
        return f"jobgate.jobs.{self.name}"

    def load_params(self, data: Any) -> dict[str, Any]:
        """Validate params (raises marshmallow.ValidationError): the one check on both sides."""
        return self.params().load(data)

    def dump_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Loaded params as the JSON stored in `jobs.params`."""
        return self.params().dump(params)

    @property
    def handler(self) -> Callable[..., dict[str, Any] | None]:
        """The worker's `run(ctx)` (importing the worker package)."""
        return importlib.import_module(self.worker_module).run

    @property
    def housekeeping(self) -> Callable[..., None] | None:
        """The worker module's optional `housekeeping(settings, database)`, run with the
        shared housekeeping rounds."""
        return getattr(importlib.import_module(self.worker_module), "housekeeping", None)

    @property
    def submit(self) -> Callable[..., tuple[dict[str, Any], bool]]:
        """The gateway's `submit(svc, principal, params, options, idempotency_key)`."""
        return importlib.import_module(self.api_module).submit
