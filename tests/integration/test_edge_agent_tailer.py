"""The edge agent's access-log tailer against the real database: whole lines only, each line
counted exactly once across restarts (the offset is stored with the counts), rotation drained
before the position moves on; and GET /api/proxy/stats' body read back from the tables."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobgate import db as jdb
from jobgate.db import Database
from jobgate_edge.tailer import ACCESS_LOG, Tailer, load_position

EDGE_TABLES = (
    "proxy_routes, proxy_upstreams, proxy_edges, proxy_server_health, proxy_request_stats,"
    " proxy_stats_totals"
)


@pytest.fixture
def edb(db: Database) -> Iterator[Database]:
    """The run's database with the edge tables emptied before and after (until they are in
    tests/conftest.py's TABLES)."""
    with db.transaction() as conn:
        jdb.execute(conn, f"TRUNCATE {EDGE_TABLES}")
    yield db
    with db.transaction() as conn:
        jdb.execute(conn, f"TRUNCATE {EDGE_TABLES}")


def entry(i: int, *, status: int = 200, addr: str = "127.0.0.1:3001", ts: float | None = None):
    return json.dumps(
        {
            "ts": ts if ts is not None else time.time(),
            "route": "route_t",
            "upstream": "tail",
            "status": status,
            "request_time": 0.005,
            "upstream_addr": addr,
            "upstream_status": str(status),
            "upstream_response_time": "0.004",
            "request_id": f"r{i}",
        }
    )


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def totals(database: Database) -> dict[tuple[str, str], int]:
    with database.transaction() as conn:
        rows = jdb.fetch_all(conn, "SELECT upstream, address, requests FROM proxy_stats_totals")
    return {(r["upstream"], r["address"]): int(r["requests"]) for r in rows}


def bucket_requests(database: Database) -> int:
    with database.transaction() as conn:
        row = jdb.fetch_one(
            conn,
            "SELECT coalesce(sum(requests), 0) AS n FROM proxy_request_stats WHERE address = ''",
        )
    return int(row["n"])


def new_tailer(database: Database, state: Path, **kw) -> Tailer:
    tailer = Tailer(database, state, "edge-tail-test", flush_s=0.05, **kw)
    with database.transaction() as conn:
        tailer.position = load_position(conn, "edge-tail-test")
    return tailer


def step_until(tailer: Tailer, lines: int, timeout: float = 10.0) -> int:
    """Step the tailer until it counted `lines` (a renamed file settles after a moment)."""
    counted = 0
    deadline = time.monotonic() + timeout
    while counted < lines and time.monotonic() < deadline:
        counted += tailer.step()
        time.sleep(0.1)
    return counted


def test_each_line_once_across_restarts(edb, tmp_path):
    log = tmp_path / ACCESS_LOG
    append(log, "".join(entry(i) + "\n" for i in range(5)))
    append(log, entry(5)[:30])  # a line nginx is still writing: not counted yet
    tailer = new_tailer(edb, tmp_path)
    assert tailer.step() == 5
    assert totals(edb) == {("tail", ""): 5, ("tail", "127.0.0.1:3001"): 5}
    assert tailer.step() == 0

    # A restart reads the stored position: nothing is counted twice.
    tailer = new_tailer(edb, tmp_path)
    assert tailer.position == (os.stat(log).st_ino, log.stat().st_size - 30)
    assert tailer.step() == 0
    append(log, entry(5)[30:] + "\n" + entry(6, status=502) + "\n")
    assert tailer.step() == 2
    assert totals(edb)[("tail", "")] == 7
    assert bucket_requests(edb) == 7
    with edb.transaction() as conn:
        row = jdb.fetch_one(
            conn,
            "SELECT sum(errors) AS e FROM proxy_request_stats WHERE address = ''",
        )
    assert int(row["e"]) == 1

    # A garbled line is skipped, the position still moves past it.
    append(log, "garbage\n" + entry(7) + "\n")
    assert tailer.step() == 1
    assert tailer.bad_lines == 1

    # Two tailers with one EDGE_ID never count a line twice: the second one's stale
    # position is refused by the row lock and reloaded.
    stale = Tailer(edb, tmp_path, "edge-tail-test", flush_s=0.05)
    stale.position = (os.stat(log).st_ino, 0)
    assert stale.step() == 0
    assert totals(edb)[("tail", "")] == 8


def test_rotation_drains_the_old_file(edb, tmp_path):
    log = tmp_path / ACCESS_LOG
    reopened: list[int] = []

    def reopen() -> bool:  # what nginx does on USR1: a new file at the same name
        reopened.append(1)
        return True

    append(log, "".join(entry(i) + "\n" for i in range(50)))
    tailer = new_tailer(edb, tmp_path, max_bytes=1000, reopen=reopen)
    assert tailer.step() == 50
    assert reopened and (tmp_path / f"{ACCESS_LOG}.1").exists() and not log.exists()
    # nginx's workers may still write to the renamed file until they reopen.
    append(tmp_path / f"{ACCESS_LOG}.1", entry(50) + "\n")
    append(log, entry(51) + "\n")
    counted = step_until(tailer, 2)
    assert counted == 2
    assert tailer.position == (os.stat(log).st_ino, log.stat().st_size)
    assert totals(edb)[("tail", "")] == 52
    # A restart after the switch reads on from the new file.
    append(log, entry(52) + "\n")
    assert new_tailer(edb, tmp_path).step() == 1
    assert totals(edb)[("tail", "")] == 53


def test_a_renamed_file_ending_in_a_cut_line_does_not_stall_the_new_one(edb, tmp_path):
    """nginx killed mid-write leaves half a line that never ends: once the renamed file
    stops growing, the rest is skipped and the new file is read."""
    log = tmp_path / ACCESS_LOG
    append(log, "".join(entry(i) + "\n" for i in range(50)))
    tailer = new_tailer(edb, tmp_path, max_bytes=1000, reopen=lambda: True)
    assert tailer.step() == 50
    append(tmp_path / f"{ACCESS_LOG}.1", entry(50)[:40])  # cut short
    append(log, entry(51) + "\n")
    counted = step_until(tailer, 1)
    assert counted == 1 and tailer.bad_lines == 1
    assert tailer.position == (os.stat(log).st_ino, log.stat().st_size)
    assert totals(edb)[("tail", "")] == 51


def test_old_buckets_are_swept(edb, tmp_path):
    log = tmp_path / ACCESS_LOG
    append(log, entry(0, ts=time.time() - 7200) + "\n" + entry(1) + "\n")
    tailer = new_tailer(edb, tmp_path, retention_s=3600)
    assert tailer.step() == 2
    assert bucket_requests(edb) == 1  # the two-hour-old bucket is gone
    assert totals(edb)[("tail", "")] == 2  # totals stay


def test_read_stats_has_the_seeds_shape(edb, tmp_path):
    from jobgate.proxy import store
    from jobgate.proxy.stats import read_stats

    with edb.transaction() as conn:
        store.replace_set(
            conn,
            {
                "upstreams": [
                    {
                        "name": "tail",
                        "servers": [{"address": "127.0.0.1:3001"}, {"address": "127.0.0.1:3002"}],
                        "health_check": {"enabled": True},
                    },
                    {"name": "idle", "servers": [{"address": "127.0.0.1:3003"}]},
                ],
                "routes": [{"id": "route_t", "path": "/t/*", "upstream": "tail"}],
            },
        )
        jdb.execute(conn, "INSERT INTO proxy_edges (edge_id, heartbeat_at) VALUES ('e1', now())")
        jdb.execute(
            conn,
            "INSERT INTO proxy_server_health (edge_id, upstream, address, status)"
            " VALUES ('e1', 'tail', '127.0.0.1:3001', 'healthy')",
        )
        empty = read_stats(conn)
    assert empty["requests_total"] == 0 and empty["error_rate"] == 0.0
    assert empty["upstreams"]["idle"] == {
        "total_requests": 0,
        "active_connections": 0,
        "servers": [
            {"address": "127.0.0.1:3003", "status": "unknown", "requests": 0, "response_time": 0.0}
        ],
    }

    log = tmp_path / ACCESS_LOG
    lines = [entry(i) for i in range(8)]
    lines.append(
        json.dumps(
            {
                **json.loads(entry(8)),
                "status": 502,
                "upstream_addr": "127.0.0.1:3002, 127.0.0.1:3001",
                "upstream_status": "502, 502",
                "upstream_response_time": "0.010, 0.020",
            }
        )
    )
    lines.append(entry(9, status=200, addr="127.0.0.1:3002"))
    append(log, "\n".join(lines) + "\n")
    assert new_tailer(edb, tmp_path).step() == 10
    with edb.transaction() as conn:
        stats = read_stats(conn, window_s=60)
    assert set(stats) == {
        "requests_total",
        "requests_per_second",
        "response_times",
        "error_rate",
        "upstreams",
    }
    assert set(stats["response_times"]) == {"avg", "p50", "p95", "p99"}
    assert stats["requests_total"] == 10
    assert stats["error_rate"] == 0.1
    assert 0.14 <= stats["requests_per_second"] <= 0.17  # 10 over the 60-70 s covered
    assert stats["response_times"]["avg"] == 5.0
    assert stats["response_times"]["p50"] == pytest.approx(5.0, rel=0.06)
    tail = stats["upstreams"]["tail"]
    assert set(tail) == {"total_requests", "active_connections", "servers"}
    assert tail["total_requests"] == 10
    assert tail["servers"] == [
        # 8 first tries + 1 retry; 4 ms each, the retry 20 ms
        {"address": "127.0.0.1:3001", "status": "healthy", "requests": 9, "response_time": 5.8},
        {"address": "127.0.0.1:3002", "status": "unknown", "requests": 2, "response_time": 7.0},
    ]
