"""The edge agents' health-check rows against the real database: each edge keeps rows of its
own (edges no longer overwrite each other), GET /api/proxy/stats shows a server unhealthy
when any live edge finds it so, and a restarted agent starts from its own rows: a server that
was down stays out of the rendered set until it passes its checks again."""

from __future__ import annotations

import threading

from jobgate import db as jdb
from jobgate.db import Database
from jobgate.proxy import store
from jobgate.proxy.stats import EDGE_GONE_S, read_stats, server_health
from jobgate_edge.health import (
    UNHEALTHY,
    Check,
    HealthChecker,
    ServerState,
    load_states,
    save_states,
)

A, B, C = ("web", "127.0.0.1:3001"), ("web", "127.0.0.1:3002"), ("web", "127.0.0.1:3003")
CHECK = Check(
    path="/health", interval_s=30, timeout_s=1, healthy_threshold=2, unhealthy_threshold=3
)


def heard_from(conn: jdb.Connection, edge_id: str, seconds_ago: float = 0) -> None:
    jdb.execute(
        conn,
        "INSERT INTO proxy_edges (edge_id, heartbeat_at)"
        " VALUES (%s, now() - make_interval(secs => %s))",
        (edge_id, seconds_ago),
    )


def test_each_edge_keeps_its_rows_and_any_live_edges_finding_counts(db: Database):
    down = ServerState(status=UNHEALTHY, failures=3, last_error="HTTP 503")
    with db.transaction() as conn:
        store.replace_set(
            conn,
            {
                "upstreams": [
                    {
                        "name": "web",
                        "servers": [{"address": A[1]}, {"address": B[1]}],
                        "health_check": {"enabled": True},
                    }
                ],
                "routes": [],
            },
        )
        heard_from(conn, "e1")
        heard_from(conn, "e2")
        heard_from(conn, "gone", seconds_ago=EDGE_GONE_S + 60)
        save_states(conn, "e1", [(A, ServerState()), (B, ServerState())], [])
        save_states(conn, "e2", [(A, down)], [])  # e2 alone finds A down
        save_states(conn, "gone", [(B, down)], [])  # an edge not heard from: no say
        assert server_health(conn) == {A: "unhealthy", B: "healthy"}
        servers = read_stats(conn)["upstreams"]["web"]["servers"]
        assert [(s["address"], s["status"]) for s in servers] == [
            (A[1], "unhealthy"),
            (B[1], "healthy"),
        ]
        # e1's rows are e1's: writing and deleting them leaves e2's as they were.
        save_states(conn, "e1", [(A, ServerState(passes=5))], [B])
        assert load_states(conn, "e1") == {A: ServerState(passes=5)}
        assert load_states(conn, "e2")[A].status == UNHEALTHY
        assert server_health(conn) == {A: "unhealthy"}  # B: only "gone" has a row of it


def test_a_restarted_agent_starts_from_its_own_rows(db: Database):
    with db.transaction() as conn:
        save_states(conn, "e1", [(A, ServerState(status=UNHEALTHY, failures=3))], [])
        save_states(conn, "e1", [(B, ServerState()), (C, ServerState(status=UNHEALTHY))], [])
        save_states(conn, "e2", [(B, ServerState(status=UNHEALTHY))], [])
    checker = HealthChecker(db, edge_id="e1", on_change=lambda: None)
    checker.restore()
    checker.set_checks({A: CHECK, B: CHECK})  # C is no longer in the set
    # Down before a single check ran: nginx is rendered without A from the first reload on.
    assert checker.down() == frozenset({A})
    assert checker.states()[A].failures == 3
    stop = threading.Event()
    stop.set()
    checker.run(stop)  # stopped at once: it only writes what it holds
    with db.transaction() as conn:
        assert set(load_states(conn, "e1")) == {A, B}  # C's row went with C
        assert load_states(conn, "e2")[B].status == UNHEALTHY  # another edge's, untouched


def test_restore_without_rows_starts_every_server_healthy(db: Database):
    checker = HealthChecker(db, edge_id="new-edge", on_change=lambda: None)
    checker.restore()
    checker.set_checks({A: CHECK})
    assert checker.down() == frozenset()
