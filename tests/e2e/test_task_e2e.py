"""Generic tasks (seed 004) through the whole running stack: gunicorn gateway and auth-service,
`jobgate-worker task` processes with their pools of handler processes, PostgreSQL, RabbitMQ.

The seed's own Testing and Python examples run unchanged against it (login `.token`, the
create-and-monitor loop), and a task worker killed with SIGKILL mid-task takes its handler
process with it, while the task runs again on the next worker.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ADMIN_PASSWORD
from tests.helpers import process_alive

pytestmark = pytest.mark.e2e
DONE = {"completed", "failed", "cancelled"}


@pytest.fixture
def task_stack(make_stack):
    # The seed's limit on /tasks (100/minute) is its own test's business (tests/integration);
    # here the polling loops below would run into it while a killed worker's task waits.
    return make_stack(TASK_CONCURRENCY="2", RATE_LIMIT_TASKS="100000/minute")


def seed_token(base_url: str) -> str:
    """The seed's Testing section: `curl -X POST .../auth/login ... | jq -r '.token'`."""
    r = requests.post(
        f"{base_url}/api/v1/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]


def wait_task(base: str, headers: dict[str, str], task_id: str, until, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(f"{base}/tasks/{task_id}", headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        task = r.json()["data"]
        if until(task):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id}: {task}")


def test_the_seeds_examples_run_unchanged(task_stack):
    task_stack.start_worker("task")
    # "Using Python", with the token of "Using cURL" and the gateway's address.
    BASE_URL = f"{task_stack.url}/api/v1"
    TOKEN = seed_token(task_stack.url)
    HEADERS = {"Authorization": f"Bearer {TOKEN}"}

    response = requests.get(f"{BASE_URL}/tasks", headers=HEADERS)
    tasks = response.json()["data"]
    assert tasks == [] and response.json()["pagination"]["total"] == 0
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert header in response.headers

    payload = {"name": "New Task", "priority": "high"}
    response = requests.post(f"{BASE_URL}/tasks", json=payload, headers=HEADERS)
    task = response.json()["data"]
    assert response.status_code == 201 and response.json()["status"] == "success"
    assert task["name"] == "New Task" and task["priority"] == "high"

    # "Create and Monitor Task": poll `.data.status` until completed or failed.
    done = wait_task(BASE_URL, HEADERS, task["id"], lambda t: t["status"] in DONE)
    assert done["status"] == "completed", done
    assert done["worker_id"] and done["started_at"] and done["completed_at"]

    # The seed's curl for the workers' health, at the root path.
    r = requests.get(f"{task_stack.url}/workers/status", headers=HEADERS)
    assert r.status_code == 200 and r.json()["status"] == "success"
    r = requests.get(f"{BASE_URL}/workers", headers=HEADERS)
    [worker] = [w for w in r.json()["data"] if w["kind"] == "task"]
    assert worker["status"] == "active" and worker["max_capacity"] == 2


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_task_takes_its_handler_process_and_the_task_runs_again(
    task_stack,
):
    worker = task_stack.start_worker("task")
    base = f"{task_stack.url}/api/v1"
    headers = {"Authorization": f"Bearer {seed_token(task_stack.url)}"}
    r = requests.post(
        f"{base}/tasks",
        json={"name": "nap", "handler": "sleep", "payload": {"seconds": 3}, "retry_count": 2},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    task_id = r.json()["data"]["id"]
    wait_task(base, headers, task_id, lambda t: t["status"] == "running")
    below = descendants(worker.pid)
    assert below, "the task worker runs its handlers in processes of its own"

    worker.send_signal(signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 10
    while any(process_alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in below if process_alive(p)], "handler processes outlived their worker"

    task_stack.start_worker("task", name="worker-task-2")
    done = wait_task(base, headers, task_id, lambda t: t["status"] in DONE, timeout=60)
    assert done["status"] == "completed", done
    job = requests.get(f"{base}/jobs/{task_id}", headers=headers).json()["job"]
    assert job["attempt"] == 2
