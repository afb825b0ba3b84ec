"""Cache jobs through the whole running stack: gunicorn gateway and auth-service, a worker
process, real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import wait_status
from tests.helpers import DEMO_KEY

pytestmark = pytest.mark.e2e

SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "000_552dea8be018bb6d.txt"


def make_tree(root: Path, *, folders: int, files: int, size: int) -> tuple[int, int]:
    """Nested folders of random files; returns (file count, byte count)."""
    count = total = 0
    for d in range(folders):
        folder = root / "tree" / f"shoot{d:02d}" / ("day1" if d % 2 else "day2") / "cam"
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(files):
            n = size + (f * 37) % 1000
            (folder / f"clip{f:03d}.mov").write_bytes(os.urandom(n))
            count, total = count + 1, total + n
    return count, total


def test_cache_job_over_a_tree_completes_with_exact_counters(stack, api):
    count, total = make_tree(stack.filespace, folders=8, files=40, size=10_000)
    stack.start_worker()
    r = api.post(f"{api.base}/cache/jobs", json={"directories": ["tree"]})
    assert r.status_code == 201, r.text
    assert r.json()["totalFiles"] == count and r.json()["totalSize"]["bytes"] == total
    job_url = f"{api.base}/cache/jobs/{r.json()['jobId']}"
    job = wait_status(job_url, api.headers, {"completed", "failed"})
    assert job["status"] == "completed", job["error"]
    assert job["progress"]["files"] == {
        "completed": count,
        "failed": 0,
        "total": count,
        "percentage": 100,
    }
    assert job["progress"]["size"]["completedBytes"] == total
    assert job["progress"]["percentage"] == 100
    assert job["throughput"] is None  # only shown while the job runs
    canonical = api.get(f"{api.base}/jobs/{job['id']}").json()["job"]
    assert canonical["result"]["files"] == count and canonical["result"]["bytes"] == total


@pytest.mark.slow
def test_cancel_stops_a_running_job(stack, api):
    make_tree(stack.filespace, folders=2, files=20, size=100_000)
    stack.start_worker(CACHE_READ_BANDWIDTH_LIMIT="400000", CACHE_READ_CHUNK_BYTES="65536")
    job_id = api.post(f"{api.base}/cache/jobs", json={"directories": ["tree"]}).json()["jobId"]
    job_url = f"{api.base}/cache/jobs/{job_id}"
    running = wait_status(job_url, api.headers, {"running"})
    time.sleep(1.0)
    r = api.delete(f"{api.base}/cache/jobs/{job_id}")
    assert r.json() == {"success": True, "message": "Job cancelled successfully"}
    asked = time.monotonic()
    job = wait_status(job_url, api.headers, {"cancelled", "completed", "failed"}, timeout=10)
    assert job["status"] == "cancelled"
    assert time.monotonic() - asked < 2.0
    assert job["progress"]["files"]["completed"] < running["totalFiles"]


@pytest.mark.slow
def test_worker_killed_mid_job_resumes_without_counting_twice(stack, api):
    count, total = make_tree(stack.filespace, folders=4, files=25, size=20_000)
    worker = stack.start_worker(
        CACHE_READ_BANDWIDTH_LIMIT="300000", CACHE_PROGRESS_FILE_THRESHOLD="5"
    )
    job_id = api.post(f"{api.base}/cache/jobs", json={"directories": ["tree"]}).json()["jobId"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = api.get(f"{api.base}/cache/jobs/{job_id}").json()["job"]
        if job["progress"]["files"]["completed"] >= 20:
            break
        time.sleep(0.1)
    assert job["status"] == "running" and job["progress"]["files"]["completed"] < count
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    stack.start_worker(name="worker-cache-2")
    job_url = f"{api.base}/cache/jobs/{job_id}"
    job = wait_status(job_url, api.headers, {"completed", "failed"}, timeout=60)
    assert job["status"] == "completed", job["error"]
    assert (
        job["progress"]["files"]["completed"] == count and job["progress"]["files"]["failed"] == 0
    )
    assert job["progress"]["size"]["completedBytes"] == total
    canonical = api.get(f"{api.base}/jobs/{job_id}").json()["job"]
    assert canonical["attempt"] == 2
    # The second attempt skipped what the first had recorded as read.
    assert canonical["result"]["bytes_read_this_attempt"] < total


@pytest.mark.slow
def test_sigterm_exits_zero_and_hands_back(stack, api):
    make_tree(stack.filespace, folders=1, files=20, size=100_000)
    worker = stack.start_worker(CACHE_READ_BANDWIDTH_LIMIT="200000", WORKER_GRACE_SECONDS="1")
    job_id = api.post(f"{api.base}/cache/jobs", json={"directories": ["tree"]}).json()["jobId"]
    job_url = f"{api.base}/cache/jobs/{job_id}"
    wait_status(job_url, api.headers, {"running"})
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert wait_status(job_url, api.headers, {"pending"}, timeout=5)["status"] == "pending"
    stack.start_worker(name="worker-cache-2")
    assert wait_status(job_url, api.headers, {"completed"}, timeout=60)["status"] == "completed"


def _seed_python_client() -> str:
    text = SEED.read_text()
    code = re.search(r"### Python Client Example\n```python\n(.*?)```", text, re.S).group(1)
    return code


def test_seed_python_client_runs_unchanged(stack, tmp_path):
    (stack.filespace / "00_Media" / "Farm" / "ProRes422").mkdir(parents=True)
    for i in range(3):
        (stack.filespace / "00_Media" / "Farm" / "ProRes422" / f"Farm0010{i}.mov").write_bytes(
            os.urandom(50_000)
        )
    stack.start_worker()
    code = _seed_python_client().replace("http://localhost:8095/api/v1", f"{stack.url}/api/v1")
    script = tmp_path / "seed_client.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Created job:" in out.stdout and "Total size: 146.48 KB" in out.stdout
    assert "Progress: 146.48 KB / 146.48 KB" in out.stdout


def test_seed_curl_examples(stack):
    (stack.filespace / "00_Media" / "Farm" / "ProRes422").mkdir(parents=True)
    (stack.filespace / "00_Media" / "Farm" / "ProRes422" / "Farm00103.mov").write_bytes(b"m" * 1000)
    health = subprocess.run(
        ["curl", "-s", f"{stack.url}/api/v1/health"], capture_output=True, text=True, check=True
    )
    assert '"status":"healthy"' in health.stdout.replace(" ", "")
    for body in (
        '{"files": ["00_Media/Farm/ProRes422/Farm00103.mov"],'
        ' "directories": ["00_Media/Farm/ProRes422"], "recursive": true}',
        '{"directories": ["00_Media/Farm/ProRes422"], "recursive": false}',
    ):
        out = subprocess.run(
            [
                "curl",
                "-s",
                "-X",
                "POST",
                f"{stack.url}/api/v1/cache/jobs",
                "-H",
                f"X-API-Key: {DEMO_KEY}",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert '"success":true' in out.stdout.replace(
            " ", ""
        ) and '"totalFiles":1' in out.stdout.replace(" ", "")


def test_metrics_and_docs_are_served(stack):
    assert "jobgate_http_requests_total" in requests.get(f"{stack.url}/metrics", timeout=5).text
    spec = requests.get(f"{stack.url}/openapi.json", timeout=5).json()
    assert "/api/v1/cache/jobs" in spec["paths"]
    docs = requests.get(f"{stack.url}/docs", timeout=5)
    assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text
    assert (
        requests.get(f"{stack.url}/docs/static/swagger-ui-bundle.js", timeout=5).status_code == 200
    )


def test_gunicorn_processes_share_one_creation_limit_through_redis(make_stack):
    # With per-process memory storage the two gunicorn workers would each allow 6.
    stack = make_stack(
        RATE_LIMIT_STORAGE_URI="redis://127.0.0.1:6379/0", RATE_LIMIT_JOB_CREATE="6/minute"
    )
    (stack.filespace / "a.mov").write_bytes(b"a" * 10)
    codes = []
    for _ in range(12):  # new connections, spread over both gunicorn worker processes
        r = requests.post(
            f"{stack.url}/api/v1/cache/jobs",
            json={"files": ["a.mov"]},
            headers={"X-API-Key": DEMO_KEY},
        )
        codes.append(r.status_code)
    assert codes.count(201) == 6 and codes.count(429) == 6
    assert r.json() == {"success": False, "error": "Too many requests, please try again later"}
    assert "Retry-After" in r.headers and r.headers["X-RateLimit-Limit"] == "6"
