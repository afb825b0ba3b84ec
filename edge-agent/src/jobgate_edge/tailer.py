"""nginx's JSON access log of the published routes -> the stats tables, each line once.

The log (`<state_dir>/proxy-access.log`, one JSON object per routed request, written by the
master's workers with O_APPEND) is read from (inode, offset) kept in `proxy_edges`, whole
lines only. Every flush adds the lines' counts to the buckets and totals and stores the new
offset in ONE transaction, so a crash anywhere repeats or loses nothing. Above
PROXY_ACCESS_LOG_MAX_MB the file is renamed to `.1`, nginx reopens its logs (USR1) and the
old file is drained before the stored position moves to the new one.

`$upstream_addr`, `$upstream_status` and `$upstream_response_time` are lists: ", " between
the servers tried for one request (retries), " : " between internal redirects, "-" where a
value is missing; when no server could be tried the address is the group's name."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg2.extras

from jobgate import db
from jobgate.proxy.stats import BUCKET_S, HIST_SIZE, hist_slot

log = logging.getLogger(__name__)

ACCESS_LOG = "proxy-access.log"  # jobgate.proxy.render.ACCESS_LOG
READ_CHUNK = 4 * 1024 * 1024  # bytes per transaction at most
RETENTION_SWEEP_S = 60.0
_LIST_SEP = re.compile(r", | : ")
_SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d+$|^unix:")


@dataclasses.dataclass(frozen=True)
class Attempt:
    address: str
    status: int | None  # None: no answer ("-")
    time_ms: float | None


@dataclasses.dataclass(frozen=True)
class Record:
    ts: float
    route: str
    upstream: str
    status: int
    request_time_ms: float
    attempts: tuple[Attempt, ...]


def split_list(value: Any) -> list[str]:
    """An nginx `$upstream_*` list as its items (", " and " : " separate them)."""
    text = "" if value is None else str(value).strip()
    return [item.strip() for item in _LIST_SEP.split(text)] if text else []


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "-") else None
    except ValueError:
        return None


def parse_line(line: str | bytes) -> Record | None:
    """One access-log line, or None when it is not one of ours (logged by the caller)."""
    try:
        doc = json.loads(line)
        ts = float(doc["ts"])
        status = int(doc["status"])
        request_time = float(doc.get("request_time") or 0.0)
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(doc, dict):
        return None
    addresses = split_list(doc.get("upstream_addr"))
    statuses = split_list(doc.get("upstream_status"))
    times = split_list(doc.get("upstream_response_time"))
    attempts = []
    for i, address in enumerate(addresses):
        if not _SERVER.match(address):
            continue  # "-", or the group's name: no server was tried
        code = _number(statuses[i] if i < len(statuses) else None)
        seconds = _number(times[i] if i < len(times) else None)
        attempts.append(
            Attempt(
                address,
                int(code) if code is not None else None,
                seconds * 1000.0 if seconds is not None else None,
            )
        )
    return Record(
        ts=ts,
        route=str(doc.get("route") or ""),
        upstream=str(doc.get("upstream") or ""),
        status=status,
        request_time_ms=request_time * 1000.0,
        attempts=tuple(attempts),
    )


@dataclasses.dataclass
class Counts:
    requests: int = 0
    errors: int = 0
    time_sum_ms: float = 0.0
    hist: list[int] | None = None


class Aggregate:
    """Counts of a batch of lines, keyed as the tables are."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[float, str, str, str], Counts] = {}
        self.totals: dict[tuple[str, str], Counts] = {}
        self.lines = 0

    def add(self, record: Record) -> None:
        self.lines += 1
        bucket = math.floor(record.ts / BUCKET_S) * BUCKET_S
        failed = record.status >= 500
        own = self.buckets.setdefault(
            (bucket, record.route, record.upstream, ""), Counts(hist=[0] * HIST_SIZE)
        )
        self._count(own, failed, record.request_time_ms)
        own.hist[hist_slot(record.request_time_ms)] += 1  # type: ignore[index]
        total = self.totals.setdefault((record.upstream, ""), Counts())
        self._count(total, failed, record.request_time_ms)
        for attempt in record.attempts:
            bad = attempt.status is None or attempt.status >= 500
            spent = attempt.time_ms or 0.0
            key = (bucket, record.route, record.upstream, attempt.address)
            self._count(self.buckets.setdefault(key, Counts()), bad, spent)
            total = self.totals.setdefault((record.upstream, attempt.address), Counts())
            self._count(total, bad, spent)

    @staticmethod
    def _count(counts: Counts, failed: bool, ms: float) -> None:
        counts.requests += 1
        counts.errors += int(failed)
        counts.time_sum_ms += ms


def save_aggregate(conn: db.Connection, agg: Aggregate) -> None:
    """Add a batch's counts to proxy_request_stats and proxy_stats_totals."""
    if agg.buckets:
        psycopg2.extras.execute_values(
            conn.cursor(),
            "INSERT INTO proxy_request_stats AS s (bucket, route_id, upstream, address,"
            " requests, errors, time_sum_ms, hist) VALUES %s"
            " ON CONFLICT (bucket, route_id, upstream, address) DO UPDATE SET"
            " requests = s.requests + EXCLUDED.requests,"
            " errors = s.errors + EXCLUDED.errors,"
            " time_sum_ms = s.time_sum_ms + EXCLUDED.time_sum_ms,"
            " hist = CASE WHEN s.hist IS NULL THEN EXCLUDED.hist"
            " WHEN EXCLUDED.hist IS NULL THEN s.hist"
            " ELSE ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0)"
            " FROM unnest(s.hist, EXCLUDED.hist) WITH ORDINALITY AS u(a, b, i) ORDER BY i) END",
            [
                (bucket, route, upstream, address, c.requests, c.errors, c.time_sum_ms, c.hist)
                for (bucket, route, upstream, address), c in sorted(agg.buckets.items())
            ],
            template="(to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s::integer[])",
        )
    if agg.totals:
        psycopg2.extras.execute_values(
            conn.cursor(),
            "INSERT INTO proxy_stats_totals AS t (upstream, address, requests, errors,"
            " time_sum_ms) VALUES %s ON CONFLICT (upstream, address) DO UPDATE SET"
            " requests = t.requests + EXCLUDED.requests, errors = t.errors + EXCLUDED.errors,"
            " time_sum_ms = t.time_sum_ms + EXCLUDED.time_sum_ms",
            [
                (upstream, address, c.requests, c.errors, c.time_sum_ms)
                for (upstream, address), c in sorted(agg.totals.items())
            ],
        )


def load_position(conn: db.Connection, edge_id: str) -> tuple[int | None, int]:
    row = db.fetch_one(
        conn, "SELECT log_inode, log_offset FROM proxy_edges WHERE edge_id = %s", (edge_id,)
    )
    if row is None or row["log_inode"] is None:
        return None, 0
    return int(row["log_inode"]), int(row["log_offset"] or 0)


def store_position(
    conn: db.Connection, edge_id: str, expected: tuple[int | None, int], new: tuple[int, int]
) -> bool:
    """Move the stored position from `expected` to `new`; False (nothing written) when the
    row says otherwise: another process with this EDGE_ID has read the lines already."""
    db.execute(
        conn,
        "INSERT INTO proxy_edges (edge_id) VALUES (%s) ON CONFLICT (edge_id) DO NOTHING",
        (edge_id,),
    )
    row = db.fetch_one(
        conn,
        "SELECT log_inode, log_offset FROM proxy_edges WHERE edge_id = %s FOR UPDATE",
        (edge_id,),
    )
    current = (
        int(row["log_inode"]) if row["log_inode"] is not None else None,
        int(row["log_offset"] or 0),
    )
    if current != (expected[0], expected[1] if expected[0] is not None else 0):
        return False
    db.execute(
        conn,
        "UPDATE proxy_edges SET log_inode = %s, log_offset = %s WHERE edge_id = %s",
        (new[0], new[1], edge_id),
    )
    return True


class Tailer:
    """Reads the access log into the stats tables (see the module's docstring)."""

    def __init__(
        self,
        database: db.Database,
        state_dir: str | Path,
        edge_id: str,
        *,
        flush_s: float = 1.0,
        max_bytes: int = 64 * 1024 * 1024,
        retention_s: float = 24 * 3600.0,
        reopen: Callable[[], bool] | None = None,
    ) -> None:
        self.db = database
        self.path = Path(state_dir) / ACCESS_LOG
        self.rotated = Path(f"{self.path}.1")
        self.edge_id = edge_id
        self.flush_s = flush_s
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.reopen = reopen  # sends USR1 to nginx's master
        self.position: tuple[int | None, int] = (None, 0)
        self._swept_at = 0.0
        self._rotated_at: float | None = None
        self._rotated_size = 0  # the renamed file's size when _rotated_at was last set
        self.bad_lines = 0

    def run(self, stop: threading.Event) -> None:
        """Flush every `flush_s` until `stop`, then a last time (lines nginx wrote while
        stopping are counted too)."""
        loaded = False
        while True:
            stopping = stop.is_set()
            try:
                if not loaded:
                    with self.db.transaction() as conn:
                        self.position = load_position(conn, self.edge_id)
                    loaded = True
                self.step()
            except db.UNAVAILABLE as exc:
                log.warning("access log not counted yet (database): %s", exc)
                loaded = False
            except Exception:  # keep counting whatever one batch did
                log.exception("access log tailer step failed")
                loaded = False
            if stopping:
                return
            stop.wait(self.flush_s)

    def step(self) -> int:
        """Read whatever is complete now; returns the lines counted."""
        counted = 0
        inode, offset = self.position
        current = _stat(self.path)
        if inode is not None and (current is None or current.st_ino != inode):
            # The file we were reading was renamed (rotation) or replaced: finish it first.
            old = _stat(self.rotated)
            if old is not None and old.st_ino == inode:
                counted += self._drain(self.rotated, inode)
                if not self._settled(old):
                    return counted
            if current is None:
                return counted
            if not self._move((current.st_ino, 0)):
                return counted
            inode, offset = self.position
            self._rotated_at = None
        if current is None:
            return counted
        if inode is None:
            if not self._move((current.st_ino, 0)):
                return counted
        elif current.st_size < offset:
            log.warning("%s shrank below the stored offset: reading it again from 0", self.path)
            if not self._move((current.st_ino, 0)):
                return counted
        counted += self._drain(self.path, current.st_ino)
        if current.st_size > self.max_bytes and self.reopen is not None:
            self._rotate()
        self._sweep()
        return counted

    def _settled(self, old: os.stat_result) -> bool:
        """The renamed file is complete once nginx has reopened (the new file exists) and a
        moment has passed without it growing. What is left unread then is a line cut short
        (nginx killed mid-write): it never ends, so it is skipped, not waited for."""
        now = time.monotonic()
        if self._rotated_at is None or old.st_size != self._rotated_size:
            self._rotated_at, self._rotated_size = now, old.st_size
            return False
        if now - self._rotated_at <= max(1.0, 2 * self.flush_s):
            return False
        if self.position[1] < old.st_size:
            self.bad_lines += 1
            log.warning(
                "%s ends in %d bytes of a line cut short: not counted",
                self.rotated,
                old.st_size - self.position[1],
            )
        return True

    def _rotate(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.rotated.exists():
                inode = self.position[0]
                if _stat(self.rotated).st_ino == inode:  # type: ignore[union-attr]
                    return  # still draining the previous rotation
                self.rotated.unlink()
            size = self.path.stat().st_size
            os.rename(self.path, self.rotated)
            self._rotated_at, self._rotated_size = time.monotonic(), size
            if self.reopen is not None and not self.reopen():
                log.warning("could not ask nginx to reopen its logs")
            log.info("rotated %s", self.path)

    def _move(self, new: tuple[int, int]) -> bool:
        with self.db.transaction() as conn:
            moved = store_position(conn, self.edge_id, self.position, new)
            if not moved:
                self.position = load_position(conn, self.edge_id)
                log.warning("another agent moved edge %s's log position", self.edge_id)
                return False
        self.position = new
        return True

    def _drain(self, path: Path, inode: int) -> int:
        counted = 0
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return 0
        with f:
            if os.fstat(f.fileno()).st_ino != inode:
                return 0
            while True:
                start = self.position[1]
                f.seek(start)
                data = f.read(READ_CHUNK)
                end = data.rfind(b"\n")
                if end < 0:
                    return counted
                agg = Aggregate()
                for line in data[: end + 1].splitlines():
                    if not line.strip():
                        continue
                    record = parse_line(line)
                    if record is None:
                        self.bad_lines += 1
                        log.warning("access log line not understood: %r", line[:200])
                        continue
                    agg.add(record)
                new = (inode, start + end + 1)
                with self.db.transaction() as conn:
                    if not store_position(conn, self.edge_id, self.position, new):
                        conn.rollback()
                        self.position = load_position(conn, self.edge_id)
                        log.warning("another agent moved edge %s's log position", self.edge_id)
                        return counted
                    save_aggregate(conn, agg)
                self.position = new
                counted += agg.lines

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < RETENTION_SWEEP_S:
            return
        self._swept_at = now
        with self.db.transaction() as conn:
            db.execute(
                conn,
                "DELETE FROM proxy_request_stats WHERE bucket < now() - make_interval(secs => %s)",
                (self.retention_s,),
            )


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def parse_lines(lines: Iterable[str | bytes]) -> list[Record]:
    """Records of the lines that are ours (tests, tools)."""
    return [r for r in map(parse_line, lines) if r is not None]


def reopen_signal(pid_of: Callable[[], int | None]) -> Callable[[], bool]:
    """USR1 to nginx's master: it reopens its log files (after a rename)."""

    def send() -> bool:
        pid = pid_of()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            return False
        return True

    return send
