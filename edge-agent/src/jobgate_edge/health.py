"""Active health checks (commercial-only in nginx): GET http://<address><path> every
interval; `unhealthy_threshold` failures in a row take a server out (rendered `down`, one
reload), `healthy_threshold` passes in a row bring it back. New servers start healthy, so a
new set serves at once; the hysteresis and the agent's reload cap damp flapping. nginx's
passive max_fails/fail_timeout stay underneath.

Each edge routes on its own results. State lives in memory; `proxy_server_health` mirrors
it, one row per edge and server: transitions at once, `checked_at` at most every FLUSH_S. A
restarted agent starts from its own rows (`restore`), so a server that was down stays down
until it passes `healthy_threshold` checks again."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from jobgate import db

log = logging.getLogger(__name__)

FLUSH_S = 5.0  # checked_at and run counts reach the table at most this often per server
HEALTHY, UNHEALTHY = "healthy", "unhealthy"


@dataclasses.dataclass(frozen=True)
class Check:
    path: str
    interval_s: float
    timeout_s: float
    healthy_threshold: int
    unhealthy_threshold: int


@dataclasses.dataclass
class ServerState:
    status: str = HEALTHY
    passes: int = 0
    failures: int = 0
    last_error: str | None = None
    checked_at: float | None = None  # time.time()
    changed_at: float | None = None

    def observe(self, ok: bool, check: Check, error: str | None = None) -> bool:
        """Count one result; True when the status changed."""
        self.checked_at = time.time()
        if ok:
            self.passes, self.failures = self.passes + 1, 0
            if self.status == UNHEALTHY and self.passes >= check.healthy_threshold:
                self.status, self.changed_at = HEALTHY, self.checked_at
                return True
        else:
            self.passes, self.failures = 0, self.failures + 1
            self.last_error = error
            if self.status == HEALTHY and self.failures >= check.unhealthy_threshold:
                self.status, self.changed_at = UNHEALTHY, self.checked_at
                return True
        return False


def split_address(address: str) -> tuple[str, int]:
    """`127.0.0.1:80`, `[::1]:80`, `host:80` -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def probe(address: str, check: Check) -> tuple[bool, str | None]:
    """One check: a 200-399 answer within the timeout passes (no redirect is followed)."""
    host, port = split_address(address)
    conn = http.client.HTTPConnection(host, port, timeout=check.timeout_s)
    try:
        conn.request(
            "GET", check.path, headers={"Host": address, "User-Agent": "jobgate-edge-health"}
        )
        response = conn.getresponse()
        response.read(65536)
        if 200 <= response.status < 400:
            return True, None
        return False, f"HTTP {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"[:500]
    finally:
        conn.close()


def checks_from_set(proxy_set: dict[str, Any]) -> dict[tuple[str, str], Check]:
    """(upstream, address) -> its check, for every upstream whose check is enabled."""
    from jobgate.proxy.model import parse_duration

    targets: dict[tuple[str, str], Check] = {}
    for upstream in proxy_set.get("upstreams", []):
        hc = upstream.get("health_check") or {}
        if not hc.get("enabled"):
            continue
        check = Check(
            path=hc.get("path", "/health"),
            interval_s=parse_duration(str(hc.get("interval", "30s"))),
            timeout_s=parse_duration(str(hc.get("timeout", "5s"))),
            healthy_threshold=int(hc.get("healthy_threshold", 2)),
            unhealthy_threshold=int(hc.get("unhealthy_threshold", 3)),
        )
        for server in upstream.get("servers", []):
            targets[(upstream["name"], server["address"])] = check
    return targets


class HealthChecker:
    """Runs the checks on a small pool; `down()` is what the renderer marks `down`."""

    def __init__(
        self,
        database: db.Database | None,
        *,
        edge_id: str,
        on_change: Callable[[], None],
        workers: int = 8,
        prober: Callable[[str, Check], tuple[bool, str | None]] = probe,
    ) -> None:
        self.db = database
        self.edge_id = edge_id
        self.on_change = on_change
        self.prober = prober
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "edge-health")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._checks: dict[tuple[str, str], Check] = {}
        self._states: dict[tuple[str, str], ServerState] = {}
        self._due: dict[tuple[str, str], float] = {}
        self._running: set[tuple[str, str]] = set()
        self._dirty: set[tuple[str, str]] = set()  # to write at the next flush
        self._deleted: set[tuple[str, str]] = set()
        self._stored: dict[tuple[str, str], ServerState] = {}  # restored, not yet checked
        self._flushed_at = 0.0

    def restore(self) -> None:
        """Start from this edge's stored states (before the first `set_checks`): a server
        found unhealthy before a restart is not sent traffic again until it recovers."""
        if self.db is None:
            return
        try:
            with self.db.transaction() as conn:
                stored = load_states(conn, self.edge_id)
        except db.UNAVAILABLE as exc:
            log.warning("stored health states not read (every server starts healthy): %s", exc)
            return
        with self._lock:
            self._stored = stored

    def set_checks(self, checks: dict[tuple[str, str], Check]) -> None:
        """The servers to check from now on; states of servers still checked are kept."""
        with self._lock:
            if checks == self._checks and not self._stored:
                return
            gone = set(self._checks) - set(checks)
            was_down = self._down_locked()
            for key in gone:
                self._states.pop(key, None)
                self._due.pop(key, None)
                self._dirty.discard(key)
            self._deleted |= gone
            now = time.monotonic()
            for key, check in checks.items():
                if key not in self._states:
                    self._states[key] = self._stored.pop(key, None) or ServerState()
                    self._dirty.add(key)
                old = self._checks.get(key)
                if old is None or old.interval_s != check.interval_s:
                    self._due[key] = now  # new, or a new interval: check at once
            self._deleted |= set(self._stored) - set(checks)  # stored, no longer checked
            self._stored.clear()
            self._checks = dict(checks)
            changed = self._down_locked() != was_down
        self._wake.set()
        if changed:
            self.on_change()

    def _down_locked(self) -> frozenset[tuple[str, str]]:
        return frozenset(k for k, s in self._states.items() if s.status == UNHEALTHY)

    def down(self) -> frozenset[tuple[str, str]]:
        with self._lock:
            return self._down_locked()

    def states(self) -> dict[tuple[str, str], ServerState]:
        with self._lock:
            return {k: dataclasses.replace(s) for k, s in self._states.items()}

    def run(self, stop: threading.Event) -> None:
        """Start due checks until `stop`; flush states to the table now and then."""
        try:
            while not stop.is_set():
                now = time.monotonic()
                with self._lock:
                    due = [k for k, t in self._due.items() if t <= now and k not in self._running]
                    for key in due:
                        self._running.add(key)
                        self._due[key] = now + self._checks[key].interval_s
                    nxt = min(
                        (t for k, t in self._due.items() if k not in self._running),
                        default=now + 1.0,
                    )
                for key in due:
                    self._pool.submit(self._check, key)
                try:
                    self._flush()
                except Exception:  # the checks go on; the table catches up later
                    log.exception("health states not stored")
                self._wake.wait(max(0.01, min(nxt - time.monotonic(), 1.0)))
                self._wake.clear()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._flush(force=True)

    def _check(self, key: tuple[str, str]) -> None:
        with self._lock:
            check = self._checks.get(key)
        changed = False
        try:
            if check is None:
                return
            ok, error = self.prober(key[1], check)
            with self._lock:
                state = self._states.get(key)
                if state is None or self._checks.get(key) != check:
                    return  # removed or changed meanwhile: this result is stale
                changed = state.observe(ok, check, error)
                self._dirty.add(key)
            if changed:
                log.warning(
                    "upstream %s server %s is now %s%s",
                    key[0],
                    key[1],
                    state.status,
                    f" ({error})" if error else "",
                )
        except Exception:  # one broken check never stops the others
            log.exception("health check of %s failed", key)
        finally:
            with self._lock:
                self._running.discard(key)
            self._wake.set()
        if changed:
            self.on_change()
            self._flush(force=True)

    def _flush(self, *, force: bool = False) -> None:
        """Write changed states (and forget removed servers) in one transaction."""
        if self.db is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._flushed_at < FLUSH_S:
                return
            if not self._dirty and not self._deleted:
                return
            rows = [(k, dataclasses.replace(self._states[k])) for k in self._dirty]
            deleted = list(self._deleted)
            self._dirty.clear()
            self._deleted.clear()
            self._flushed_at = now
        try:
            with self.db.transaction() as conn:
                save_states(conn, self.edge_id, rows, deleted)
        except (*db.UNAVAILABLE, db.DataError) as exc:
            log.warning("health states not stored (kept for the next flush): %s", exc)
            with self._lock:
                self._dirty.update(k for k, _ in rows if k in self._states)
                self._deleted.update(deleted)


def save_states(
    conn: db.Connection,
    edge_id: str,
    rows: list[tuple[tuple[str, str], ServerState]],
    deleted: list[tuple[str, str]],
) -> None:
    """Upsert this edge's server states into proxy_server_health and delete its rows of
    servers no longer checked."""
    for (upstream, address), state in rows:
        db.execute(
            conn,
            "INSERT INTO proxy_server_health AS h (edge_id, upstream, address, status, passes,"
            " failures, checked_at, changed_at, last_error)"
            " VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s), %s)"
            " ON CONFLICT (edge_id, upstream, address) DO UPDATE SET status = EXCLUDED.status,"
            " passes = EXCLUDED.passes, failures = EXCLUDED.failures,"
            " checked_at = EXCLUDED.checked_at,"
            " changed_at = coalesce(EXCLUDED.changed_at, h.changed_at),"
            " last_error = EXCLUDED.last_error",
            (
                edge_id,
                upstream,
                address,
                state.status,
                state.passes,
                state.failures,
                state.checked_at,
                state.changed_at,
                state.last_error,
            ),
        )
    for upstream, address in deleted:
        db.execute(
            conn,
            "DELETE FROM proxy_server_health WHERE edge_id = %s AND upstream = %s AND address = %s",
            (edge_id, upstream, address),
        )


def load_states(conn: db.Connection, edge_id: str) -> dict[tuple[str, str], ServerState]:
    """This edge's stored states, as `save_states` wrote them."""
    rows = db.fetch_all(
        conn,
        "SELECT upstream, address, status, passes, failures, last_error,"
        " extract(epoch FROM checked_at) AS checked_at,"
        " extract(epoch FROM changed_at) AS changed_at"
        " FROM proxy_server_health WHERE edge_id = %s",
        (edge_id,),
    )
    return {
        (r["upstream"], r["address"]): ServerState(
            status=r["status"],
            passes=r["passes"],
            failures=r["failures"],
            last_error=r["last_error"],
            checked_at=float(r["checked_at"]) if r["checked_at"] is not None else None,
            changed_at=float(r["changed_at"]) if r["changed_at"] is not None else None,
        )
        for r in rows
    }
