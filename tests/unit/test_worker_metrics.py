"""A worker's (and the scheduler's) Prometheus endpoint listens where WORKER_METRICS_HOST
says: loopback by default, so local runs stay private; all addresses when a cluster sets
0.0.0.0, so the kubelet's httpGet probes and Prometheus reach it. The image's HEALTHCHECK
fetches 127.0.0.1, which answers either way. Only 127.0.0.1 is ever fetched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from jobgate.config import Settings
from jobgate_worker import metrics
from tests.stack import free_port


@pytest.fixture
def serve() -> Iterator:
    """Start the metrics server for an environment; every server started is shut down."""
    started = []

    def start(environ: dict[str, str]):
        served = metrics.start_server(Settings.from_env(environ=environ))
        if served is not None:
            started.append(served)
        return served

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_endpoint_is_private_unless_told_otherwise():
    assert Settings.from_env(environ={}).worker_metrics_host == "127.0.0.1"
    assert Settings.from_env(environ={"WORKER_METRICS_HOST": "0.0.0.0"}).worker_metrics_host == (
        "0.0.0.0"
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_metrics_listen_where_worker_metrics_host_says(serve, host):
    port = free_port()
    metrics.observe("cache", "completed", 0.2)
    server, _ = serve({"WORKER_METRICS_HOST": host, "WORKER_METRICS_PORT": str(port)})
    # The socket's own address: the bind, not just the setting.
    assert server.socket.getsockname()[:2] == (host, port)
    # What the image's HEALTHCHECK (and a probe on the pod's address) fetches.
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    assert 'jobgate_worker_jobs_total{kind="cache",outcome="completed"}' in response.text


def test_no_port_no_endpoint(serve):
    assert serve({"WORKER_METRICS_HOST": "0.0.0.0"}) is None
    assert serve({"WORKER_METRICS_PORT": "0"}) is None
