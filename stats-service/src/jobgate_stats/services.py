"""The stats-service's long-lived parts, made once per process and handed to the routes
(nameko-style injected dependencies; tests build their own)."""

from __future__ import annotations

import dataclasses

from jobgate import db
from jobgate.authn import Authenticator
from jobgate.config import Settings
from jobgate_stats.hub import Hub
from jobgate_stats.sources import BrokerSource, EventTail, Sampler
from jobgate_stats.web import Gatekeeper


@dataclasses.dataclass
class Services:
    settings: Settings
    database: db.Database
    hub: Hub
    gate: Gatekeeper
    broker: BrokerSource
    tail: EventTail
    sampler: Sampler

    @classmethod
    def create(cls, settings: Settings) -> Services:
        database = db.Database(
            settings.database_url, minconn=1, maxconn=settings.db_pool_max, wait_s=5.0
        )
        hub = Hub()
        return cls(
            settings=settings,
            database=database,
            hub=hub,
            gate=Gatekeeper(
                Authenticator(settings), max_streams=settings.stats_max_streams_per_principal
            ),
            broker=BrokerSource(settings.amqp_url, hub),
            tail=EventTail(database, hub, poll_s=settings.stats_poll_seconds),
            sampler=Sampler(database, hub, interval_s=settings.stats_metrics_seconds),
        )
