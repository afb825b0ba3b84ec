"""Prometheus metrics of a worker (and the scheduler) process, served on WORKER_METRICS_PORT
when set, bound to WORKER_METRICS_HOST: loopback by default (local runs stay private), all
addresses in a cluster, where the kubelet probes it and Prometheus scrapes it."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Histogram, start_http_server

from jobgate.config import Settings

JOBS = Counter("jobgate_worker_jobs_total", "Job attempts by outcome", ["kind", "outcome"])
DURATION = Histogram(
    "jobgate_worker_job_duration_seconds",
    "Wall time of one job attempt",
    ["kind"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")),
)

CONVERTED_MEDIA = Counter(
    "jobgate_worker_converted_media_seconds_total",
    "Seconds of audio written as MP3 by convert jobs (its rate over wall time is throughput)",
)


def start_server(settings: Settings) -> tuple[WSGIServer, threading.Thread] | None:
    """Serve /metrics on a daemon thread at WORKER_METRICS_HOST:WORKER_METRICS_PORT; nothing
    when the port is 0. Returns the server (and its thread), so a caller may shut it down."""
    if not settings.worker_metrics_port:
        return None
    return start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)


def observe(kind: str, outcome: str, seconds: float) -> None:
    JOBS.labels(kind, outcome).inc()
    DURATION.labels(kind).observe(seconds)


def observe_conversion(media_seconds: float) -> None:
    CONVERTED_MEDIA.inc(max(0.0, media_seconds))
