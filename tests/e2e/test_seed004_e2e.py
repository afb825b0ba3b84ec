"""Seed 004 (Distributed Task Queue) as its users drive it, through the real processes
(gunicorn gateway and auth-service, a task worker): the document's own cURL and Python
examples, run as written. Only what the document leaves to its reader is filled in: the
address (`http://localhost:5000` becomes the gateway's), the admin's password in its login
example, and `<token>` / `your-bearer-token` (the token that login returned)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
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
def seed_stack(make_stack):
    stack = make_stack()
    stack.start_worker("task")
    return stack


def run(script: str, stack, token: str = "") -> subprocess.CompletedProcess:
    """A seed example as bash, pointed at the stack, with `<token>` filled in."""
    script = script.replace("http://localhost:5000", stack.url).replace("<token>", token)
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
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
    code = code.replace("http://localhost:5000", seed_stack.url)
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
