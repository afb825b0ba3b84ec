"""The agent: nginx's parent, keeping it configured from PostgreSQL.

Start: `scripts/edge.sh render` writes the static part once (`nginx.base.conf` in the state
directory: the gateway and stats-service routes, JSON error pages), the proxy set is rendered
into its two marker lines (jobgate.proxy.render), checked, and nginx starts on it. Then three
threads: the config loop (LISTEN jobgate_proxy + a poll; debounced; one reload in flight, at
most ~4 a second), the health checker and the access-log tailer. SIGTERM/SIGINT stop nginx
fast, SIGQUIT gracefully; SIGHUP re-reads the set and reloads; the agent exits with nginx.

A set that fails to apply is tried again after a growing pause (RETRY_S) even when nothing
changed: a failure can pass (a name nginx -t could not resolve, a reload not live in time)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2

from jobgate import db
from jobgate.proxy.store import PROXY_CHANNEL
from jobgate_edge.apply import Applier, Outcome
from jobgate_edge.health import HealthChecker, checks_from_set
from jobgate_edge.nginx import Nginx
from jobgate_edge.settings import EdgeSettings
from jobgate_edge.tailer import Tailer, reopen_signal

log = logging.getLogger(__name__)

EMPTY_SET: dict[str, Any] = {"upstreams": [], "routes": []}
START_TIMEOUT_S = 15.0
OUTAGE_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
RETRY_S = (5.0, 15.0, 60.0, 300.0)  # a failed apply of the same set: tried again after these

Key = tuple[int | None, frozenset]  # what is applied: the set's version and the servers down


@dataclasses.dataclass(frozen=True)
class Failed:
    """The last key that failed to apply, how many times in a row, and when it is due again."""

    key: Key
    attempts: int
    retry_at: float

    @classmethod
    def after(cls, previous: Failed | None, key: Key, now: float) -> Failed:
        attempts = previous.attempts + 1 if previous is not None and previous.key == key else 1
        return cls(key, attempts, now + RETRY_S[min(attempts, len(RETRY_S)) - 1])

    def holds(self, key: Key, now: float) -> bool:
        """Whether `key` is this failure and not yet due again."""
        return key == self.key and now < self.retry_at


def render_base(settings: EdgeSettings) -> str:
    """The static configuration from scripts/edge.sh (EDGE_BIND, GATEWAY_UPSTREAM, ... as it
    reads them), written once next to nginx.conf so its pid and temp paths are ours."""
    base = Path(settings.state_dir) / "nginx.base.conf"
    base.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [settings.script, "render", str(base)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"{settings.script} render failed: {done.stderr.strip()}")
    return base.read_text(encoding="utf-8")


def load_set(conn: db.Connection) -> tuple[int, dict[str, Any]]:
    """The set and its version from one REPEATABLE READ snapshot (no half-written set)."""
    from jobgate.proxy import store

    db.execute(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    return store.load_set(conn)


def record_outcome(
    conn: db.Connection, edge_id: str, version: int | None, outcome: Outcome
) -> None:
    """proxy_edges: what this edge runs (on success) or why it could not (the error)."""
    if outcome.ok:
        db.execute(
            conn,
            "INSERT INTO proxy_edges (edge_id, applied_version, applied_generation, applied_at,"
            " error, heartbeat_at) VALUES (%s, %s, %s, now(), NULL, now())"
            " ON CONFLICT (edge_id) DO UPDATE SET applied_version = EXCLUDED.applied_version,"
            " applied_generation = EXCLUDED.applied_generation, applied_at = now(),"
            " error = NULL, heartbeat_at = now()",
            (edge_id, version, outcome.generation),
        )
    else:
        db.execute(
            conn,
            "INSERT INTO proxy_edges (edge_id, error, heartbeat_at) VALUES (%s, %s, now())"
            " ON CONFLICT (edge_id) DO UPDATE SET error = EXCLUDED.error, heartbeat_at = now()",
            (edge_id, outcome.error),
        )


def heartbeat(conn: db.Connection, edge_id: str) -> None:
    db.execute(
        conn,
        "INSERT INTO proxy_edges (edge_id, heartbeat_at) VALUES (%s, now())"
        " ON CONFLICT (edge_id) DO UPDATE SET heartbeat_at = now()",
        (edge_id,),
    )


class Agent:
    def __init__(self, settings: EdgeSettings, database_url: str) -> None:
        from jobgate.proxy import render

        self.settings = settings
        self.render = render
        self.render_settings = render.RenderSettings(
            state_dir=settings.state_dir,
            rate_limit=settings.rate_limit,
            rate_burst=settings.rate_burst,
        )
        self.db = db.Database(database_url, maxconn=4, wait_s=5.0)
        self.nginx = Nginx(settings.nginx, settings.state_dir)
        self.applier = Applier(self.nginx, probe_timeout_s=settings.probe_timeout_s)
        self.stop = threading.Event()
        self.health = HealthChecker(
            self.db,
            edge_id=settings.edge_id,
            on_change=self.wake,
            workers=settings.health_workers,
        )
        self.tailer = Tailer(
            self.db,
            settings.state_dir,
            settings.edge_id,
            flush_s=settings.stats_flush_s,
            max_bytes=int(settings.access_log_max_mb * 1024 * 1024),
            retention_s=settings.stats_retention_hours * 3600.0,
            reopen=reopen_signal(lambda: self.nginx.pid),
        )
        self.base = ""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._listener = db.Listener(database_url, PROXY_CHANNEL, "jobgate-edge")
        self._seq = 0
        self._applied: Key | None = None
        self._failed: Failed | None = None
        self._applied_at = 0.0
        # SIGHUP (the main thread) counts requests up; the config loop remembers the count it
        # acted on: a request arriving while it reads the count is never lost.
        self._hups = 0
        self._hups_seen = 0
        self._notified = False  # a NOTIFY "reload" (the config loop's own thread)
        self._threads: list[threading.Thread] = []

    # --- rendering -------------------------------------------------------------------------

    def _generation(self, version: int | None) -> str:
        self._seq += 1
        return f"v{version if version is not None else 'none'}-a{self._seq}"

    def compose(self, version: int | None, proxy_set: dict, down: frozenset) -> tuple[str, str]:
        generation = self._generation(version)
        rendered = self.render.render(
            proxy_set, down=down, generation=generation, settings=self.render_settings
        )
        return self.render.compose(self.base, rendered), generation

    # --- start and stop --------------------------------------------------------------------

    def start(self) -> None:
        """Render, check and start nginx on the current set (the empty set when the database
        cannot be read or the set does not pass `nginx -t`: the edge still serves Jobgate)."""
        self.base = render_base(self.settings)
        version: int | None
        try:
            with self.db.transaction() as conn:
                version, proxy_set = load_set(conn)
        except db.UNAVAILABLE as exc:
            log.warning("proxy set not read at start (serving none until it is): %s", exc)
            version, proxy_set = None, EMPTY_SET
        self.health.restore()
        self.health.set_checks(checks_from_set(proxy_set))
        down = self.health.down()
        try:
            text, generation = self.compose(version, proxy_set, down)
        except ValueError as exc:  # a stored set render() refuses
            outcome = Outcome(False, f"v{version}", f"the set does not render: {exc}")
        else:
            outcome = self.applier.install_initial(text, generation)
        if not outcome.ok:
            log.error("set v%s refused by nginx -t at start: %s", version, outcome.error)
            self._failed = Failed.after(None, (version, down), time.monotonic())
            self._record(version, outcome)
            version, down = None, frozenset()
            text, generation = self.compose(None, EMPTY_SET, down)
            fallback = self.applier.install_initial(text, generation)
            if not fallback.ok:
                raise RuntimeError(f"nginx -t refused the base configuration: {fallback.error}")
        self.nginx.start()
        if not self.nginx.wait_generation(self.applier.good[1], START_TIMEOUT_S):  # type: ignore[index]
            self.nginx.signal(signal.SIGTERM)
            self.nginx.wait(timeout=5)
            raise RuntimeError("nginx did not start (see its error log above)")
        if outcome.ok:
            self._applied = (version, down)
            self._applied_at = time.monotonic()
            self._record(version, Outcome(True, self.applier.good[1]))  # type: ignore[index]
        for name, target in (
            ("edge-config", self._config_loop),
            ("edge-health", self.health.run),
            ("edge-tailer", self.tailer.run),
        ):
            args = () if target == self._config_loop else (self.stop,)
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait(self) -> int:
        """Until nginx exits; then the threads stop (the tailer counts the last lines)."""
        rc = self.nginx.wait()
        self.stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout=10)
        self._listener.close()
        self.db.close()
        return rc

    def forward(self, signum: int) -> None:
        """SIGTERM/SIGINT: nginx's fast shutdown; SIGQUIT: graceful (requests finish)."""
        self.nginx.signal(signum)

    def wake(self, force: bool = False) -> None:
        """Wake the config loop (safe in a signal handler: one counter, one pipe write);
        `force`: apply the set even if it did not change (SIGHUP, from the main thread)."""
        if force:
            self._hups += 1
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # --- the config loop ---------------------------------------------------------------------

    def _record(self, version: int | None, outcome: Outcome) -> None:
        try:
            with self.db.transaction() as conn:
                record_outcome(conn, self.settings.edge_id, version, outcome)
        except db.UNAVAILABLE as exc:
            log.warning("apply outcome not recorded: %s", exc)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.set_blocking(self._wake_r, False)
            while os.read(self._wake_r, 4096):
                pass

    def _wait_event(self, timeout: float) -> bool:
        """Until a NOTIFY, a wake (health change, stop) or the timeout; True on an event."""
        waitables: list[Any] = [self._wake_r]
        listener = None
        try:
            listener = self._listener.connection()
            waitables.append(listener)
        except psycopg2.Error as exc:
            log.warning("LISTEN failed (polling only): %s", exc)
            self._listener.close()
        readable, _, _ = select.select(waitables, [], [], max(0.0, timeout))
        event = False
        if self._wake_r in readable:
            self._drain_wake()
            event = True
        if listener is not None and listener in readable:
            try:
                listener.poll()
            except psycopg2.Error:
                self._listener.close()
            else:
                if listener.notifies:
                    if any(n.payload == "reload" for n in listener.notifies):
                        self._notified = True
                    listener.notifies.clear()
                    event = True
        return event

    def _config_loop(self) -> None:
        outage = 0
        while not self.stop.is_set():
            timeout = self.settings.poll_s
            if self._failed is not None:  # wake up when the failed set is due again
                timeout = min(timeout, max(0.0, self._failed.retry_at - time.monotonic()))
            if self._wait_event(timeout):
                # Debounce: changes arriving together make one reload.
                deadline = time.monotonic() + self.settings.debounce_s
                while not self.stop.is_set() and time.monotonic() < deadline:
                    self._wait_event(deadline - time.monotonic())
            if self.stop.is_set():
                return
            pause = self.settings.reload_min_interval_s - (time.monotonic() - self._applied_at)
            if pause > 0:
                self.stop.wait(pause)
            try:
                self.sync()
                outage = 0
            except db.UNAVAILABLE as exc:
                delay = OUTAGE_BACKOFF_S[min(outage, len(OUTAGE_BACKOFF_S) - 1)]
                outage += 1
                log.warning("proxy set not read (again in %s s): %s", delay, exc)
                self._listener.close()
                self.stop.wait(delay)
            except Exception:  # the loop outlives any one bad round
                log.exception("proxy config round failed")
                self.stop.wait(1.0)

    def _wanted(self, key: Key, force: bool, now: float) -> bool:
        """Whether to apply `key` now: forced, new, or a failed one due again. A failure of
        another key than the one running is forgotten once the running one is wanted again
        (a server back up): its retry time would otherwise keep the loop from sleeping."""
        if force:
            return True
        if key == self._applied:
            self._failed = None
            return False
        return self._failed is None or not self._failed.holds(key, now)

    def sync(self) -> Outcome | None:
        """One round: read the set, update the checks, apply when (version, down) changed."""
        with self.db.transaction() as conn:
            version, proxy_set = load_set(conn)
        with self.db.transaction() as conn:
            heartbeat(conn, self.settings.edge_id)
        self.health.set_checks(checks_from_set(proxy_set))
        down = self.health.down()
        key = (version, down)
        hups = self._hups
        force = self._notified or hups != self._hups_seen
        self._notified, self._hups_seen = False, hups
        if not self._wanted(key, force, time.monotonic()):
            return None
        try:
            text, generation = self.compose(version, proxy_set, down)
        except ValueError as exc:  # a stored set render() refuses: reported like a failed -t
            outcome = Outcome(False, f"v{version}", f"the set does not render: {exc}")
        else:
            outcome = self.applier.apply(text, generation)
        self._applied_at = time.monotonic()
        if outcome.ok:
            self._applied, self._failed = key, None
        else:
            self._failed = Failed.after(self._failed, key, self._applied_at)
            pause = self._failed.retry_at - self._applied_at
            log.warning("set v%s not applied: tried again in %.0f s", version, pause)
        self._record(version, outcome)
        return outcome
