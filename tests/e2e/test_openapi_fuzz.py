"""Property-based run over `/openapi.json` with schemathesis, against the real gunicorn
gateway and auth-service: every generated request, valid or not, must get a documented
status, content type and body, and never a 5xx. Once with an admin's JWT, once with the
demo API key. The operations that can lock the fuzzer out (deactivating or changing its own
user, revoking its own key) run last, on their own."""

import re
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from jobgate.config import Settings
from jobgate_worker.kinds.container import instance_label
from tests.e2e.conftest import login
from tests.helpers import DEMO_KEY

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)
# 30 examples an operation: ~3,300 generated requests a run; 2 to 5 minutes for the test on
# 2 cores (50 took 7.5 minutes on a slow runner, a third of the suite's budget).
MAX_EXAMPLES = 30
MIN_REQUESTS_PER_RUN = 1500
SELF_DESTRUCTIVE = [
    "PATCH /api/v1/auth/users/{user_id}",
    "DELETE /api/v1/auth/users/{user_id}",
    "DELETE /api/v1/auth/api-keys/{key_id}",
]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# High limits keep the limiter's code in the path without turning most requests into 429s.
UNLIMITED = "1000000/minute"


@pytest.fixture
def fuzz_stack(make_stack, docker_host):
    """The stack with a container worker on the run's engine, so the containers API and
    seed 003's health answer as they do under `make run` (without one they are 503s)."""
    stack = make_stack(
        RATE_LIMIT_JOB_CREATE=UNLIMITED,
        RATE_LIMIT_STATUS=UNLIMITED,
        RATE_LIMIT_DEFAULT=UNLIMITED,
        RATE_LIMIT_LOGIN=UNLIMITED,
        RATE_LIMIT_TASKS=UNLIMITED,
        DOCKER_HOST=docker_host,
    )
    stack.start_worker("container")
    yield stack
    engine = docker.DockerClient(base_url=docker_host)
    mine = {"label": f"jobgate.instance={instance_label(stack_settings(stack))}"}
    for container in engine.containers.list(all=True, filters=mine):
        container.remove(force=True)
    engine.close()


def stack_settings(stack) -> Settings:
    return Settings.from_env(environ={"DATABASE_URL": stack.env["DATABASE_URL"]})


def fuzz(url: str, header: str, seed: int, workdir: Path, *, only: list[str] | None = None) -> int:
    """Run schemathesis over every operation but the self-destructive ones (or `only` those);
    returns how many requests it generated, and fails on any finding."""
    selection = [
        ("--include-name" if only else "--exclude-name", n) for n in only or SELF_DESTRUCTIVE
    ]
    run = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{url}/openapi.json",
            "--checks",
            CHECKS,
            "--header",
            header,
            "--max-examples",
            str(MAX_EXAMPLES),
            # One worker: with two threads, CPython 3.11's ast.parse (which hypothesis calls to
            # describe filters) can fail "AST constructor recursion depth mismatch".
            "--workers",
            "1",
            "--seed",
            str(seed),
            "--request-timeout",
            "20",
            "--no-color",
            *(part for pair in selection for part in pair),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=workdir,  # schemathesis keeps its state (.schemathesis/) in the working directory
    )
    tail = run.stdout[-20000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    generated = re.search(r"(\d+) generated", run.stdout)
    assert generated, tail
    return int(generated.group(1))


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_openapi_schema_holds_for_generated_requests(fuzz_stack, tmp_path):
    url = fuzz_stack.url
    jwt = f"Authorization: {login(fuzz_stack)['Authorization']}"
    with_jwt = fuzz(url, jwt, seed=1, workdir=tmp_path)
    with_key = fuzz(url, f"X-API-Key: {DEMO_KEY}", seed=2, workdir=tmp_path)
    assert with_jwt >= MIN_REQUESTS_PER_RUN and with_key >= MIN_REQUESTS_PER_RUN
    assert fuzz(url, jwt, seed=3, workdir=tmp_path, only=SELF_DESTRUCTIVE) > 0
