"""The Celery side of bench/task_bench.py and bench/throughput_bench.py: the same tasks as
Jobgate's `echo`, the example package's `example.clock` and a one-file cache job,
configured as a careful Celery deployment would be for the comparison (issue 9): RabbitMQ
broker, PostgreSQL result backend (SQLAlchemy), late acks, prefetch 1, prefork pool. Broker
and backend come from the environment (`BENCH_CELERY_BROKER`, `BENCH_CELERY_BACKEND`), so
the bench points them at throwaway ones.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

app = Celery(
    "jobgate_bench",
    broker=os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("BENCH_CELERY_BACKEND", "db+postgresql://127.0.0.1/celery_bench"),
)
app.conf.update(
    task_acks_late=True,  # like Jobgate: a task is acked after its outcome is stored
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.echo")
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@app.task(name="bench.clock")
def clock(_payload: dict[str, Any]) -> float:
    """When the task's code started (wall clock): submit-to-start latency."""
    return time.time()


@app.task(name="bench.cache_file")
def cache_file(path: str) -> int:
    """A one-file cache job's work (bench/throughput_bench.py): read the file to its end in
    1 MiB reads, as the cache worker does, and return the bytes read."""
    read = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1024 * 1024):
            read += len(chunk)
    return read
