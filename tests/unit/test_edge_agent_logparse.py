"""The edge agent's access-log parsing and counting (jobgate_edge.tailer) and the latency
histogram GET /api/proxy/stats reads (jobgate.proxy.stats): nginx's `$upstream_*` lists."""

from __future__ import annotations

import json

import pytest

from jobgate.proxy.stats import HIST_SIZE, add_hists, hist_slot, percentile
from jobgate_edge.tailer import Aggregate, Attempt, parse_line, split_list


def line(**fields) -> str:
    doc = {
        "ts": 1700000003.123,
        "route": "route_a",
        "upstream": "web",
        "status": 200,
        "request_time": 0.012,
        "upstream_addr": "127.0.0.1:3001",
        "upstream_status": "200",
        "upstream_response_time": "0.010",
        "request_id": "r1",
        **fields,
    }
    return json.dumps(doc)


def test_lists_split_on_retries_and_redirects():
    assert split_list("") == []
    assert split_list(None) == []
    assert split_list("127.0.0.1:1") == ["127.0.0.1:1"]
    assert split_list("127.0.0.1:1, 127.0.0.1:2 : 127.0.0.1:3") == [
        "127.0.0.1:1",
        "127.0.0.1:2",
        "127.0.0.1:3",
    ]
    assert split_list("[::1]:8080, 127.0.0.1:2") == ["[::1]:8080", "127.0.0.1:2"]


def test_a_plain_line():
    record = parse_line(line())
    assert record is not None
    assert (record.route, record.upstream, record.status) == ("route_a", "web", 200)
    assert record.request_time_ms == pytest.approx(12.0)
    assert record.attempts == (Attempt("127.0.0.1:3001", 200, pytest.approx(10.0)),)


def test_a_retried_request_lists_every_server_tried():
    record = parse_line(
        line(
            upstream_addr="127.0.0.1:39002, 127.0.0.1:39001",
            upstream_status="502, 200",
            upstream_response_time="0.001, 0.004",
        )
    )
    assert [(a.address, a.status) for a in record.attempts] == [
        ("127.0.0.1:39002", 502),
        ("127.0.0.1:39001", 200),
    ]
    assert [a.time_ms for a in record.attempts] == [pytest.approx(1.0), pytest.approx(4.0)]


def test_missing_values_and_no_server():
    # Refused at the edge (429, 401): no upstream fields at all.
    record = parse_line(
        line(status=429, upstream_addr="", upstream_status="", upstream_response_time="")
    )
    assert record.attempts == ()
    # A connection that never answered: "-" status and time.
    record = parse_line(
        line(status=504, upstream_status="-", upstream_response_time="-", upstream_addr="[::1]:9")
    )
    assert record.attempts == (Attempt("[::1]:9", None, None),)
    # Every server down: nginx logs the group's name, which is no server.
    record = parse_line(line(status=502, upstream_addr="jobgate_u_web", upstream_status="502"))
    assert record.attempts == ()
    # Across an internal redirect (" : ") and a "-" entry.
    record = parse_line(
        line(
            upstream_addr="127.0.0.1:1 : -",
            upstream_status="200 : -",
            upstream_response_time="0.002 : -",
        )
    )
    assert [a.address for a in record.attempts] == ["127.0.0.1:1"]


@pytest.mark.parametrize(
    "text", ["", "not json", "[]", '{"ts": 1}', '{"ts": "x", "status": 200}', "{}"]
)
def test_lines_that_are_not_ours(text):
    assert parse_line(text) is None


def test_aggregate_counts_requests_and_attempts():
    agg = Aggregate()
    for text in (
        line(),
        line(
            ts=1700000009.9,
            status=502,
            upstream_addr="127.0.0.1:3001, 127.0.0.1:3002",
            upstream_status="502, 502",
            upstream_response_time="0.001, 0.002",
        ),
        line(ts=1700000010.0, status=429, upstream_addr="", upstream_status=""),
    ):
        agg.add(parse_line(text))
    assert agg.lines == 3
    first = agg.buckets[(1700000000, "route_a", "web", "")]
    assert (first.requests, first.errors) == (2, 1)
    assert sum(first.hist) == 2
    second = agg.buckets[(1700000010, "route_a", "web", "")]
    assert (second.requests, second.errors) == (1, 0)
    server = agg.buckets[(1700000000, "route_a", "web", "127.0.0.1:3001")]
    assert (server.requests, server.errors) == (2, 1)
    assert server.time_sum_ms == pytest.approx(11.0)
    assert server.hist is None
    assert agg.totals[("web", "")].requests == 3
    assert agg.totals[("web", "127.0.0.1:3002")].requests == 1
    assert agg.totals[("web", "127.0.0.1:3002")].errors == 1


def test_histogram_percentiles_are_close():
    assert hist_slot(0.2) == 0
    assert hist_slot(1.0) == 1
    assert hist_slot(10**9) == HIST_SIZE - 1
    hist = [0] * HIST_SIZE
    for ms in range(1, 1001):  # 1..1000 ms, uniform
        hist[hist_slot(float(ms))] += 1
    assert percentile(hist, 0.5) == pytest.approx(500, rel=0.06)
    assert percentile(hist, 0.95) == pytest.approx(950, rel=0.06)
    assert percentile(hist, 0.99) == pytest.approx(990, rel=0.06)
    assert percentile([0] * HIST_SIZE, 0.5) == 0.0
    assert add_hists([[1, 2], None, [0, 1, 3]])[:3] == [1, 3, 3]
