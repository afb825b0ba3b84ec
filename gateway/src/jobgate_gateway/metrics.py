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
from prometheus_client.core import GaugeMetricFamily

from jobgate import kinds
from jobgate.db import Database, fetch_all
from jobgate.jobs import STATUSES

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


class JobsCollector:
    """Job counts by kind and status, and run times of finished jobs, read from PostgreSQL
    at scrape time: the truth for every gateway process and worker at once."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def collect(self):
        jobs = GaugeMetricFamily(
            "jobgate_jobs", "Jobs by kind and status", labels=["kind", "status"]
        )
        seconds = GaugeMetricFamily(
            "jobgate_job_run_seconds_total",
            "Summed run time (started to completed) of completed jobs",
            labels=["kind"],
        )
        done = GaugeMetricFamily("jobgate_jobs_completed", "Completed jobs", labels=["kind"])
        try:
            with self.db.transaction() as conn:
                # Every registered kind and status has a series, zero until a job has it.
                counts = {(k, s): 0 for k in kinds.names() for s in STATUSES}
                for row in fetch_all(
                    conn, "SELECT kind, status, count(*) AS n FROM jobs GROUP BY 1, 2"
                ):
                    counts[row["kind"], row["status"]] = row["n"]
                for (kind, status), n in counts.items():
                    jobs.add_metric([kind, status], n)
                for row in fetch_all(
                    conn,
                    "SELECT kind, count(*) AS n, coalesce(sum(extract(epoch FROM completed_at"
                    " - started_at)), 0) AS s FROM jobs WHERE status = 'completed' GROUP BY 1",
                ):
                    seconds.add_metric([row["kind"]], float(row["s"]))
                    done.add_metric([row["kind"]], row["n"])
        except Exception:  # noqa: BLE001 - a scrape must answer even without the database
            return
        yield jobs
        yield seconds
        yield done


def render(database: Database) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, LATENCY, JOBS_CREATED, UPLOADS, UPLOAD_BYTES):
            registry.register(collector)
    registry.register(JobsCollector(database))
    return generate_latest(registry), CONTENT_TYPE_LATEST
