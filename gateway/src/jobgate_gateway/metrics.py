"""Prometheus metrics; multi-process aware when PROMETHEUS_MULTIPROC_DIR is set (gunicorn)."""

from __future__ import annotations

import os
import time

from flask import Flask, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("jobgate_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram("jobgate_http_request_seconds", "HTTP request latency", ["method", "endpoint"])
JOBS_CREATED = Counter("jobgate_jobs_created_total", "Jobs accepted", ["kind"])
UPLOADS = Counter("jobgate_uploads_total", "Files uploaded")
UPLOAD_BYTES = Counter("jobgate_upload_bytes_total", "Bytes uploaded")


def init_metrics(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.metrics_start = time.perf_counter()

    @app.after_request
    def _record(response):
        endpoint = request.endpoint or "unknown"
        REQUESTS.labels(request.method, endpoint, response.status_code).inc()
        if "metrics_start" in g:
            LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - g.metrics_start)
        return response


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
