"""Prometheus metrics of a worker process, served on WORKER_METRICS_PORT when set."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

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


def start_server(port: int) -> None:
    if port:
        start_http_server(port, addr="127.0.0.1")


def observe(kind: str, outcome: str, seconds: float) -> None:
    JOBS.labels(kind, outcome).inc()
    DURATION.labels(kind).observe(seconds)


def observe_conversion(media_seconds: float) -> None:
    CONVERTED_MEDIA.inc(max(0.0, media_seconds))
