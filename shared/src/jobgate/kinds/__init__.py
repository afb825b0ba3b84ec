"""The job kinds: one `KindSpec` each, in one registry that everything listing kinds iterates.

A kind touches three places (docs/architecture.md, "Kinds"):
1. its registry entry: a contract module here (`jobgate.kinds.<name>`: params schema,
   settings, `SPEC`) and its line in `REGISTRY` below;
2. its worker module `jobgate_worker.kinds.<name>`: `run(ctx)` and, optionally,
   `housekeeping(settings, database)`;
3. its API module `jobgate_gateway.kinds.<name>`: `prepare(svc, principal, params, options)`
   (validate and plan, no write); `jobgate_gateway.jobs.service` writes one prepared job
   (`submit`) or many in one transaction (`submit_batch`).
The shared package cannot import the services, so a spec names its worker and API modules
and resolves their functions on first use.
"""

from __future__ import annotations

from collections.abc import Iterator

from jobgate.kinds import cache, container, convert, scrape, task, webhook
from jobgate.kinds.spec import KindSpec, QueueOptions

__all__ = ["REGISTRY", "KindSpec", "QueueOptions", "UnknownKind", "get", "names", "specs"]

REGISTRY: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        cache.SPEC,
        convert.SPEC,
        scrape.SPEC,
        container.SPEC,
        task.SPEC,
        webhook.SPEC,
    )
}


class UnknownKind(LookupError):
    """A kind name no spec is registered under."""


def specs() -> Iterator[KindSpec]:
    return iter(REGISTRY.values())


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> KindSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownKind(name) from None


def settings_classes() -> tuple[type, ...]:
    """Every kind's settings dataclass, for `jobgate.config.Settings` to inherit."""
    return tuple(spec.settings for spec in specs() if spec.settings is not None)
