"""Seed 004 (Distributed Task Queue) as its users drive it, through the real processes
(the edge in front of the gunicorn gateway and uvicorn stats-service, auth-service, a task
worker): the document's own cURL, Python and JavaScript examples, run as written. Only what
the document leaves to its reader is filled in: the address (`http://localhost:5000`
becomes the edge's), the admin's password in its login example, and `<token>` /
`your-bearer-token` (the token that login returned). The JavaScript passes headers to
`new WebSocket(url, {headers})`, which is the `ws` package's API under Node.js: the test
adds its `require` (tests/js, installed by `make test`)."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ADMIN_PASSWORD

SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "004_b0df230a9acf2abb.txt"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("jq") is None, reason="the seed's cURL examples use jq"),
]


def section(heading: str) -> str:
    """The seed's text from `heading` to the next heading of the same level."""
    text = SEED.read_text()
    start = text.index(heading + "\n")
    level = heading.split(" ")[0]
    following = re.search(rf"^{level} ", text[start + len(heading) :], re.M)
    end = start + len(heading) + following.start() if following else len(text)
    return text[start:end]


def blocks(heading: str, language: str = "bash") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(heading), re.S)


@pytest.fixture
def seed_stack(make_stack, tmp_path):
    stack = make_stack(STATS_METRICS_SECONDS="0.5", STATS_POLL_SECONDS="0.1")
    stack.start_worker("task")
    stack.start_stats()
    stack.start_edge()
    stack.cwd = tmp_path  # where `curl -o` writes
    return stack


def run(script: str, stack, token: str = "") -> subprocess.CompletedProcess:
    """A seed example as bash, pointed at the stack's edge, with `<token>` filled in."""
    script = script.replace("http://localhost:5000", stack.edge_url).replace("<token>", token)
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=stack.cwd,
    )


def login_token(stack) -> str:
    """The seed's "Using cURL": log in, `jq -r '.token'`, then list tasks with it."""
    [script] = blocks("### Using cURL")
    script = script.replace('"password":"password"', f'"password":"{ADMIN_PASSWORD}"')
    script += '\necho "TOKEN=$TOKEN"\n'
    out = run(script, stack)
    assert out.returncode == 0, out.stderr
    listed, token_line = out.stdout.rstrip("\n").rsplit("\n", 1)
    assert json.loads(listed)["status"] == "success"
    token = token_line.removeprefix("TOKEN=")
    assert token.count(".") == 2, out.stdout  # a JWT, not "null"
    return token


def test_the_seeds_curl_examples(seed_stack):
    token = login_token(seed_stack)

    # "Create and Monitor Task", as written (it polls every 2 s until completed or failed).
    [monitor] = blocks("### Create and Monitor Task")
    out = run(monitor, seed_stack, token)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"Created task: [0-9a-f-]{36}", lines[0]), out.stdout
    assert lines[-1] == "Status: completed", out.stdout

    # Every endpoint example: each answers JSON in the seed's shapes.
    for heading in ("## Health Endpoints", "## Task Management Endpoints"):
        for script in blocks(heading):
            done = run(script, seed_stack, token)
            assert done.returncode == 0, (script, done.stderr)
            if not done.stdout:
                continue  # DELETE answers 204 without a body
            body = json.loads(done.stdout)
            # `/health` is also seed 001's: `degraded` here, where no convert worker runs.
            statuses = {"healthy", "degraded", "ready", "success", "error", None}
            assert body.get("status") in statuses, body
            if body.get("status") == "error":  # the examples name a task that does not exist
                assert body["error"]["code"] == "NOT_FOUND" and body["timestamp"], body
    for script in blocks("## Worker Management Endpoints"):
        done = run(script, seed_stack, token)
        assert done.returncode == 0, (script, done.stderr)
        body = json.loads(done.stdout)
        if "/workers/worker-001" in script and "heartbeat" not in script:
            continue  # asked before anything registered worker-001, or after: either is fine
        assert body["status"] == "success", (script, body)
    # The heartbeat example registered worker-001 as an external worker of the admin.
    worker = run(
        "curl -s http://localhost:5000/api/v1/workers/worker-001"
        ' -H "Authorization: Bearer <token>"',
        seed_stack,
        token,
    )
    data = json.loads(worker.stdout)["data"]
    assert data["external"] and data["current_load"] == 5 and data["max_capacity"] == 10


def test_the_seeds_python_example(seed_stack):
    token = login_token(seed_stack)
    [code] = blocks("### Using Python", "python")
    code = code.replace("http://localhost:5000", seed_stack.edge_url)
    code = code.replace('"your-bearer-token"', repr(token))
    code += "\nprint(json.dumps({'tasks': tasks, 'task': task}))\n"
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert isinstance(result["tasks"], list)
    assert result["task"]["name"] == "New Task" and result["task"]["priority"] == "high"
    assert result["task"]["status"] in {"pending", "running", "completed"}


def test_the_seeds_analytics_examples(seed_stack):
    token = login_token(seed_stack)
    [monitor] = blocks("### Create and Monitor Task")
    assert run(monitor, seed_stack, token).returncode == 0  # one completed task to count
    dashboard, trends = blocks("## Analytics Endpoints")
    board = json.loads(run(dashboard, seed_stack, token).stdout)
    fields = ["total_tasks", "completed_tasks", "failed_tasks", "pending_tasks"]
    fields += ["completion_rate", "average_duration", "workers_active", "workers_total"]
    assert list(board)[: len(fields)] == fields, board  # the document's fields, its order
    assert board["total_tasks"] >= 1 and board["completed_tasks"] >= 1
    assert board["workers_active"] >= 1 and board["average_duration"] > 0
    body = json.loads(run(trends, seed_stack, token).stdout)
    assert body["status"] == "success" and len(body["data"]["points"]) == 7
    export = blocks("### Export Analytics Data")[0]  # the section runs on to the next ###
    out = run(export, seed_stack, token)
    assert out.returncode == 0, out.stderr
    exported = json.loads((seed_stack.cwd / "analytics-export.json").read_text())
    assert exported["data"]["dashboard"]["total_tasks"] == board["total_tasks"]
    rows = list(csv.DictReader(io.StringIO((seed_stack.cwd / "analytics-export.csv").read_text())))
    assert rows and sum(int(row["completed"]) for row in rows) == board["completed_tasks"]


NODE_PATH = Path(__file__).resolve().parents[1] / "js" / "node_modules"


def node(script: str, stack, token: str) -> subprocess.Popen:
    """A seed's JavaScript under Node.js, with the `ws` package as its `WebSocket`."""
    script = script.replace("ws://localhost:5000", stack.edge_url.replace("http://", "ws://"))
    script = 'const WebSocket = require("ws");\n' + script.replace("<token>", token)
    return subprocess.Popen(
        ["node", "-e", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NODE_PATH": str(NODE_PATH)},
    )


def lines_until(proc: subprocess.Popen, wanted, timeout: float = 30.0) -> list[str]:
    """Node's output lines until `wanted(line)` is true; then the script is stopped."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pipe() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pipe, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if wanted(line):
                return seen
    finally:
        proc.kill()
        proc.wait()
    raise AssertionError(f"no such line: {seen} {proc.stderr.read()[-2000:]}")


@pytest.mark.skipif(not NODE_PATH.is_dir(), reason="tests/js not installed (make test does it)")
def test_the_seeds_websocket_examples(seed_stack):
    token = login_token(seed_stack)
    [metrics_js] = blocks("### ws://localhost:5000/ws/metrics", "javascript")
    lines = lines_until(node(metrics_js, seed_stack, token), lambda x: "total_tasks" in x)
    assert lines[0].startswith("Updated metrics:")
    [tasks_js] = blocks("### ws://localhost:5000/ws/tasks", "javascript")
    proc = node(tasks_js, seed_stack, token)
    time.sleep(1.0)  # connected before the task exists
    [monitor] = blocks("### Create and Monitor Task")
    assert run(monitor, seed_stack, token).returncode == 0
    lines = lines_until(proc, lambda x: "status: 'completed'" in x)
    assert all(line.startswith("Task update:") for line in lines if line.strip().startswith("T"))
