"""The gateway's long-lived collaborators, one set per process, kept on `app.extensions`."""

from __future__ import annotations

import dataclasses
import logging

from flask import current_app

from jobgate import outbox, runtime_config
from jobgate.authn import Authenticator
from jobgate.broker import CONTROL_EXCHANGE, RPC_CONTAINERS_QUEUE, Publisher
from jobgate.config import Settings
from jobgate.db import Database
from jobgate.rpc import RpcClient
from jobgate.storage import DirectoryStorage

log = logging.getLogger(__name__)

APP_ID = "jobgate-gateway"


@dataclasses.dataclass
class Services:
    settings: Settings
    db: Database
    publisher: Publisher
    authenticator: Authenticator
    storage: DirectoryStorage
    containers: RpcClient  # the container workers, which alone hold the engine's socket
    relay: outbox.BackgroundRelay  # publishes what requests committed, off the request path
    # The settings a reload changes without a restart (POST /api/config/reload).
    runtime: runtime_config.RuntimeSettings | None = None

    @classmethod
    def create(cls, settings: Settings) -> Services:
        # The pool, the broker connection and the relay's thread open lazily: nothing is
        # shared across a fork.
        database = Database(settings.database_url, minconn=1, maxconn=settings.db_pool_max)
        publisher = Publisher(settings.amqp_url, app_id=APP_ID, queue_type=settings.job_queue_type)
        return cls(
            settings=settings,
            db=database,
            publisher=publisher,
            relay=outbox.BackgroundRelay(database, publisher),
            runtime=runtime_config.RuntimeSettings(settings, database),
            authenticator=Authenticator(settings),
            storage=DirectoryStorage(settings.storage_dir),
            containers=RpcClient(
                settings.amqp_url,
                RPC_CONTAINERS_QUEUE,
                timeout_s=settings.container_rpc_timeout_s,
            ),
        )

    def refresh_settings(self, *, force: bool = False) -> bool:
        """Before each request: take a reload's values (the row is read at most once a
        second). Only the reloadable keys are replaced, on top of `settings` as it is."""
        runtime = self.runtime
        if runtime is None:
            return False
        if not force and not runtime.due():
            return False
        if not runtime.refresh(force=force):
            return False
        current = runtime.current()
        self.settings = self.settings.replace(
            **{key: getattr(current, key) for key in runtime_config.RELOADABLE}
        )
        return True

    def publish_after_commit(self, outbox_ids: list[int]) -> None:
        """Have what the committed transaction queued published now, by the process's relay
        thread (the request need not wait for the broker); housekeeping retries what fails."""
        self.relay.submit(outbox_ids)

    def broadcast_cancel(self, job_id: str) -> None:
        """Tell running workers at once; they also poll the DB flag, so this may fail."""
        try:
            self.publisher.publish(
                CONTROL_EXCHANGE,
                "",
                {"type": "cancel", "job_id": job_id},
                {"delivery_mode": 1},
                mandatory=False,
            )
        except Exception as exc:  # noqa: BLE001 - workers see the DB flag within a second
            log.warning("cancel broadcast failed for %s: %s", job_id, exc)


def services() -> Services:
    return current_app.extensions["jobgate"]
