"""The in-memory rate-limit storage sweeps expired entries with one long-lived thread
(`ratelimit.ExpirySweeper`) instead of a new `threading.Timer` every 10 ms of traffic
(issue 13: most of the limiter's cost per request), and limits still apply."""

from __future__ import annotations

import threading
import time

import pytest

from jobgate_gateway import create_app, ratelimit
from tests.integration.conftest import DEMO

pytestmark = pytest.mark.usefixtures("filespace")


def test_status_limit_applies_and_no_timer_thread_is_started_per_hit(gateway_settings, monkeypatch):
    client = create_app(gateway_settings.replace(rate_limit_status="5/second")).test_client()
    storage = ratelimit.limiter.storage
    assert isinstance(storage.timer, ratelimit.ExpirySweeper)
    started: list[str] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(f"{type(thread).__name__}:{thread.name}")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    job = "/api/v1/jobs/00000000-0000-4000-8000-000000000000"
    codes = []
    for _ in range(6):
        codes.append(client.get(job, headers=DEMO).status_code)
        time.sleep(0.02)  # past the library's 10 ms Timer: it would start another one
    assert codes == [404] * 5 + [429]
    assert not [t for t in started if t.startswith("Timer")]
    assert started.count("Thread:ratelimit-expiry") <= 1  # started on the first hit at most

    time.sleep(1.1)  # the window has moved on: allowed again, expired entries swept
    assert client.get(job, headers=DEMO).status_code == 404
    time.sleep(0.1)
    assert [len(events) for events in storage.events.values()] == [1]


def test_the_sweeper_restarts_when_its_thread_is_gone():
    swept = threading.Event()
    sweeper = ratelimit.ExpirySweeper(swept.set)
    assert sweeper.is_alive()
    assert swept.wait(2)
    sweeper._pid = -1  # as in a forked child, where the parent's thread does not run
    swept.clear()
    assert sweeper.is_alive()
    assert swept.wait(2)
