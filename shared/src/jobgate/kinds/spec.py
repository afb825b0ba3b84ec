"""`KindSpec`: everything Jobgate needs to know about one job kind, declared once."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Sequence
from typing import Any

from marshmallow import Schema

MAX_PRIORITY = 9


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one job of a kind is made of when it is submitted: its params as stored in
    `jobs.params`, its items `(key, size in bytes)` and their total size."""

    params: dict[str, Any]
    items: Sequence[tuple[str, int]] = ()
    bytes_total: int = 0


# plan(conn, settings, owner_id, loaded params) -> Plan; raises jobgate.errors.InvalidRequest
# when the params name something that is not there (a cache job's missing folder).
Planner = Callable[[Any, Any, str, dict[str, Any]], Plan]


@dataclasses.dataclass(frozen=True)
class QueueOptions:
    """How the kind's queue `jobgate.jobs.<kind>` is declared and consumed."""

    max_priority: int = MAX_PRIORITY  # classic queues only (quorum queues have no priorities)
    prefetch: int | None = None  # deliveries held per worker process; None = its concurrency


@functools.cache
def schema_of(schema_class: type[Schema]) -> Schema:
    """One shared instance per schema class: building a marshmallow schema costs more than
    loading a small body with it (a batch loads a thousand), and load/dump keep no state."""
    return schema_class()


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
    # Recurring schedules (jobgate.schedules): whether a job can be re-made from stored params
    # alone (not so for an upload's conversion), and the work a job needs at submission.
    schedulable: bool = True
    plan: Planner | None = None  # None: the params as they are, no items
    # Jobs the platform makes for itself (webhook deliveries): never submitted through
    # `POST /api/v1/jobs` nor scheduled, and left out of job lists unless asked for by kind.
    internal: bool = False

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
        return schema_of(self.params).load(data)

    def dump_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Loaded params as the JSON stored in `jobs.params`."""
        return schema_of(self.params).dump(params)

    def make_plan(self, conn: Any, settings: Any, owner_id: str, params: dict[str, Any]) -> Plan:
        """The job that loaded `params` make now: the kind's `plan` hook, or the params as
        they are. The gateway and the scheduler both submit through this."""
        if self.plan is None:
            return Plan(params=self.dump_params(params))
        return self.plan(conn, settings, owner_id, params)

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
    def prepare(self) -> Callable[..., Any]:
        """The gateway's `prepare(svc, principal, params, options) -> Submission`: a job
        validated and planned, not yet written (one, or many in a batch)."""
        return importlib.import_module(self.api_module).prepare

    @property
    def rpc(self) -> tuple[str, Callable[..., dict[str, Any]]] | None:
        """The worker module's optional request/reply service: its `RPC_QUEUE` and
        `rpc_handlers(settings)` (method name -> function of the params), served by every
        worker process of the kind (the containers API: only container workers hold the
        engine's socket)."""
        module = importlib.import_module(self.worker_module)
        factory = getattr(module, "rpc_handlers", None)
        return (module.RPC_QUEUE, factory) if factory is not None else None

    def concurrency(self, settings: Any) -> int:
        """Jobs one worker process runs at once: the kind's `<kind>_concurrency` setting
        when it has one (a task worker's pool of handler processes), else
        `WORKER_CONCURRENCY`."""
        own = getattr(settings, f"{self.name}_concurrency", None)
        return int(own or settings.worker_concurrency)

    @property
    def background(self) -> Callable[..., None] | None:
        """The worker module's optional `background(settings, database, stop)`: a loop every
        worker process of the kind runs on a thread of its own until `stop` is set (the
        webhook dispatcher, which turns job events into deliveries)."""
        return getattr(importlib.import_module(self.worker_module), "background", None)

    def api_hook(self, name: str) -> Callable[..., Any] | None:
        """An optional function of the API module: `job_fields(job)` (fields of the kind
        added to its job objects) or `job_extras(svc, job)` (what `GET /api/v1/jobs/{id}`
        returns beside `job`, such as a scrape job's `videos`)."""
        return getattr(importlib.import_module(self.api_module), name, None)
