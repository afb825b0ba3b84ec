"""Proxy statistics: the latency histogram both sides share, and `GET /api/proxy/stats`.

The edge agent (edge-agent, jobgate_edge.tailer) turns nginx's JSON access log into 10-second
buckets (`proxy_request_stats`) and running totals (`proxy_stats_totals`), in the transaction
that stores how far it read the log (migration 0015). This module reads them back in the
seed's shape. Rows with `address = ''` count client requests (one per log line); rows with a
server address count attempts at that server (retries included, so a server's count can sum
above the requests).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from jobgate import db
from jobgate.proxy import store
from jobgate.timefmt import iso_ms

BUCKET_S = 10  # the width of a stats bucket, seconds
# Latency histogram: slot 0 is below 1 ms, slot i (1..N-2) is [R^(i-1), R^i) ms, the last is
# 60 s and above. ~5 % steps keep interpolated percentiles within a few per cent of the truth,
# and one fixed layout lets buckets of any age and any edge be added slot by slot.
HIST_RATIO = 1.05
HIST_MAX_MS = 60_000.0
HIST_SIZE = 2 + math.ceil(math.log(HIST_MAX_MS) / math.log(HIST_RATIO))
ACTIVE_WINDOW_S = 10.0  # active_connections: Little's law over the last 10 s


def hist_slot(ms: float) -> int:
    """The histogram slot of a duration in milliseconds."""
    if ms < 1.0:
        return 0
    return min(HIST_SIZE - 1, 1 + int(math.log(ms) / math.log(HIST_RATIO)))


def _slot_bounds(slot: int) -> tuple[float, float]:
    if slot == 0:
        return 0.0, 1.0
    if slot >= HIST_SIZE - 1:
        edge = HIST_RATIO ** (HIST_SIZE - 2)
        return edge, edge
    return HIST_RATIO ** (slot - 1), HIST_RATIO**slot


def add_hists(hists: Iterable[Sequence[int] | None]) -> list[int]:
    """Slot-by-slot sum (None and short arrays count as zeros)."""
    total = [0] * HIST_SIZE
    for hist in hists:
        for i, count in enumerate(hist or ()):
            if i < HIST_SIZE and count:
                total[i] += count
    return total


def percentile(hist: Sequence[int], q: float) -> float:
    """The q-quantile (0..1) in milliseconds, interpolated linearly inside its slot."""
    count = sum(hist)
    if count == 0:
        return 0.0
    target = q * count
    seen = 0
    for slot, n in enumerate(hist):
        if n and seen + n >= target:
            low, high = _slot_bounds(slot)
            return low + (high - low) * max(0.0, target - seen) / n
        seen += n
    return _slot_bounds(HIST_SIZE - 1)[0]


def read_stats(conn: db.Connection, *, window_s: float = 60.0) -> dict[str, Any]:
    """The seed's `GET /api/proxy/stats` body.

    `requests_total` and every `total_requests`/server `requests` count since stats began;
    rate, response times (ms, client-side `$request_time`) and `error_rate` (final status
    >= 500) cover the last `window_s` seconds, rounded out to whole buckets (the rate divides
    by the span actually covered). `active_connections` is an estimate (Little's law: upstream
    busy time in the last ~10 s divided by that time): access logs do not see open
    connections. Only upstreams of the current set are listed, with their configured servers;
    `status` is `unknown` when the check is off or has not run."""
    window_s = max(float(window_s), 1.0)
    now = float(db.fetch_one(conn, "SELECT extract(epoch FROM now()) AS now")["now"])
    since = math.floor((now - window_s) / BUCKET_S) * BUCKET_S
    span = max(now - since, 1.0)
    rows = db.fetch_all(
        conn,
        "SELECT requests, errors, time_sum_ms, hist FROM proxy_request_stats"
        " WHERE address = '' AND bucket >= to_timestamp(%s)",
        (since,),
    )
    requests = sum(int(r["requests"]) for r in rows)
    errors = sum(int(r["errors"]) for r in rows)
    time_ms = sum(float(r["time_sum_ms"]) for r in rows)
    hist = add_hists(r["hist"] for r in rows)

    totals = {
        (r["upstream"], r["address"]): r
        for r in db.fetch_all(
            conn, "SELECT upstream, address, requests, time_sum_ms FROM proxy_stats_totals"
        )
    }
    active_since = math.floor((now - ACTIVE_WINDOW_S) / BUCKET_S) * BUCKET_S
    busy = {
        r["upstream"]: float(r["busy_ms"])
        for r in db.fetch_all(
            conn,
            "SELECT upstream, sum(time_sum_ms) AS busy_ms FROM proxy_request_stats"
            " WHERE address <> '' AND bucket >= to_timestamp(%s) GROUP BY upstream",
            (active_since,),
        )
    }
    active_span_ms = max(now - active_since, 1.0) * 1000.0
    health = server_health(conn)

    upstreams: dict[str, Any] = {}
    for upstream in store.list_upstreams(conn):
        name = upstream["name"]
        checked = bool((upstream.get("health_check") or {}).get("enabled"))
        servers = []
        for server in upstream.get("servers", []):
            address = server["address"]
            total = totals.get((name, address))
            attempts = int(total["requests"]) if total else 0
            servers.append(
                {
                    "address": address,
                    "status": health.get((name, address), "unknown") if checked else "unknown",
                    "requests": attempts,
                    "response_time": round(float(total["time_sum_ms"]) / attempts, 1)
                    if attempts
                    else 0.0,
                }
            )
        own = totals.get((name, ""))
        upstreams[name] = {
            "total_requests": int(own["requests"]) if own else 0,
            "active_connections": round(busy.get(name, 0.0) / active_span_ms),
            "servers": servers,
        }

    return {
        "requests_total": sum(int(r["requests"]) for (_, addr), r in totals.items() if addr == ""),
        "requests_per_second": round(requests / span, 2),
        "response_times": {
            "avg": round(time_ms / requests, 1) if requests else 0.0,
            "p50": round(percentile(hist, 0.50), 1),
            "p95": round(percentile(hist, 0.95), 1),
            "p99": round(percentile(hist, 0.99), 1),
        },
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "upstreams": upstreams,
    }


EDGE_GONE_S = 600  # an edge silent this long is gone (it heartbeats every EDGE_POLL_SECONDS)


def server_health(conn: db.Connection) -> dict[tuple[str, str], str]:
    """(upstream, address) -> `unhealthy` when any live edge finds the server so (that edge
    sends it no traffic), else `healthy`. Each edge checks on its own: edges may disagree
    for a moment, and a gone edge's rows count no more."""
    rows = db.fetch_all(
        conn,
        "SELECT h.upstream, h.address, bool_or(h.status = 'unhealthy') AS down"
        " FROM proxy_server_health h JOIN proxy_edges e USING (edge_id)"
        " WHERE e.heartbeat_at > now() - make_interval(secs => %s)"
        " GROUP BY h.upstream, h.address",
        (EDGE_GONE_S,),
    )
    return {(r["upstream"], r["address"]): "unhealthy" if r["down"] else "healthy" for r in rows}


def edges(conn: db.Connection) -> list[dict[str, Any]]:
    """What each live edge agent reported (GET /api/proxy/config): the set version it runs,
    when it applied it, its last error, and its heartbeat. An edge silent for EDGE_GONE_S is
    left out: in Kubernetes every rollout leaves the old pods' rows behind, and a client
    waiting for every edge to apply a version must not wait for a pod that is gone."""
    rows = db.fetch_all(
        conn,
        "SELECT edge_id, applied_version, applied_at, error, heartbeat_at FROM proxy_edges"
        " WHERE heartbeat_at > now() - make_interval(secs => %s) ORDER BY edge_id",
        (EDGE_GONE_S,),
    )
    return [
        {
            **row,
            "applied_at": iso_ms(row["applied_at"]),
            "heartbeat_at": iso_ms(row["heartbeat_at"]),
        }
        for row in rows
    ]
