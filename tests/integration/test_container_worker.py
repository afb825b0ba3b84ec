"""The container worker in-process against the run's own Podman (tests/engine.py), with real
PostgreSQL and RabbitMQ: inputs in, outputs out, environment and command, logs while
running, progress lines, output globs, timeout, memory limit, network none, retries of a
failing exit, cancel, refused images and inputs, an engine that is away, and the removal of
a dead attempt's container by housekeeping."""

from __future__ import annotations

import contextlib
import functools
import io
import tarfile
import time
from typing import Any

import docker
import pytest

from jobgate import files, jobs
from jobgate.jobs import attempts, job_logs, submission
from jobgate_worker.kinds import container as worker_container
from tests.factories.files import make_path_file
from tests.factories.jobs import container_params, enqueue, make_job, wait_for_job
from tests.factories.users import make_user

FINISHED = {"completed", "failed", "cancelled"}


@pytest.fixture
def engine_api(docker_host: str) -> Any:
    client = docker.DockerClient(base_url=docker_host, version="1.41", timeout=30)
    yield client.api
    client.close()


@pytest.fixture
def run_worker(start_worker, docker_host):
    return functools.partial(start_worker, "container", docker_host=docker_host)


def submit(db, settings, owner, params, **fields):
    fields.setdefault("max_attempts", 1)
    job = make_job(db, owner_id=owner["id"], kind="container", params=params, **fields)
    enqueue(db, settings.amqp_url, job)
    return job


def logs_of(db, job_id) -> list[tuple[str, str]]:
    with db.transaction() as conn:
        return [(r["level"], r["message"]) for r in job_logs.get_logs(conn, job_id=str(job_id))]


def outputs(db, job_id) -> dict[str, dict[str, Any]]:
    with db.transaction() as conn:
        return {row["filename"]: row for row in files.outputs_of(conn, job_id=str(job_id))}


def containers_of(api, job_id) -> list[dict[str, Any]]:
    return api.containers(all=True, filters={"label": f"jobgate.job={job_id}"})


def has_container(job: dict[str, Any]) -> bool:
    """The worker wrote the container's id into `details`: the container exists."""
    return bool(job["details"].get("container_id"))


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def test_input_file_in_output_file_out(
    db, worker_settings, run_worker, storage, engine_api, tmp_path
):
    """The input is where the job said, environment and command are the job's, the output
    is stored with its container path as name, and stdout/stderr are in the job's log."""
    owner = make_user(db)
    data = b"hello jobgate\n"
    source = make_path_file(db, storage, owner, "/uploads/data.txt", data, tmp_path)
    run_worker()
    script = (
        "tr a-z A-Z < /input/nested/data.txt > /output/result.txt;"
        ' echo "$GREETING from $0"; echo to-stderr >&2'
    )
    params = container_params(
        command=sh(script),
        environment={"GREETING": "hi"},
        input_files=[{"source": "/uploads/data.txt", "destination": "/input/nested/data.txt"}],
        output_patterns=["/output/*.txt"],
    )
    job = submit(db, worker_settings, owner, params)
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "completed", done["error"]
    assert done["progress_pct"] == 100

    [out] = outputs(db, job["id"]).values()
    assert out["filename"] == "output/result.txt" and out["role"] == "output"
    assert out["content_type"] == "text/plain" and out["owner_id"] == owner["id"]
    assert storage.path(out["storage_key"]).read_bytes() == b"HELLO JOBGATE\n"

    result = done["result"]
    assert result["exit_code"] == 0
    assert result["output_files"] == ["/output/result.txt"]
    assert result["outputs"] == [
        {"path": "/output/result.txt", "file_id": str(out["id"]), "size": 14}
    ]
    assert set(result["resource_usage"]) == {"cpu_time", "memory_peak", "network_io"}
    assert result["resource_usage"]["network_io"] == 0
    assert done["details"]["container_id"] == result["container_id"]
    assert done["details"]["exit_code"] == 0

    lines = logs_of(db, job["id"])
    assert ("stdout", "hi from sh") in lines
    assert ("stderr", "to-stderr") in lines
    assert containers_of(engine_api, job["id"]) == []
    # The input's row is recorded on the job, so replacing it at its path keeps it.
    with db.transaction() as conn:
        assert files.file_in_use(conn, file_id=str(source["id"]))


def test_logs_progress_and_details_while_running(db, worker_settings, run_worker):
    """Lines are readable while the container runs; `::progress::` lines set progress and
    are not logged; container_id and resource usage are in `details` meanwhile."""
    owner = make_user(db)
    run_worker()
    script = "echo started; echo ::progress::40; sleep 2; echo ::progress::80; sleep 1; echo end"
    job = submit(db, worker_settings, owner, container_params(command=sh(script)))
    running = wait_for_job(
        db, job["id"], {"running"}, until=lambda j: j["progress_pct"] == 40, timeout=15
    )
    assert ("stdout", "started") in logs_of(db, job["id"])
    assert running["details"]["container_id"]
    assert set(running["details"]["resource_usage"]) == {"cpu_time", "memory_peak", "network_io"}
    wait_for_job(db, job["id"], {"running"}, until=lambda j: j["progress_pct"] == 80, timeout=15)
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "completed", done["error"]
    assert done["progress_pct"] == 100
    lines = logs_of(db, job["id"])
    assert ("stdout", "end") in lines
    assert not any("::progress::" in message for _, message in lines)
    assert done["result"]["resource_usage"]["memory_peak"] > 0  # sampled while it slept


def test_output_patterns_collect_only_matching_files(
    db, worker_settings, run_worker, storage, engine_api
):
    owner = make_user(db)
    run_worker()
    script = (
        "mkdir -p /output/sub /output/keep/deep /data/x/y /other;"
        " echo a > /output/a.json; echo b > /output/b.txt; echo c > /output/sub/c.json;"
        " echo d > /output/keep/deep/d.bin; echo e > /other/e.json;"
        " echo f > /data/top.csv; echo g > /data/x/y/g.csv; echo h > /data/x/h.txt"
    )
    patterns = ["/output/*.json", "/output/keep", "/data/**/*.csv", "/missing/*.json"]
    params = container_params(command=sh(script), output_patterns=patterns)
    job = submit(db, worker_settings, owner, params)
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "completed", done["error"]
    found = outputs(db, job["id"])
    assert sorted(found) == [
        "data/top.csv",
        "data/x/y/g.csv",
        "output/a.json",
        "output/keep/deep/d.bin",
    ]
    assert storage.path(found["output/keep/deep/d.bin"]["storage_key"]).read_bytes() == b"d\n"
    assert found["output/a.json"]["content_type"] == "application/json"
    assert done["result"]["output_files"] == [
        "/data/top.csv",
        "/data/x/y/g.csv",
        "/output/a.json",
        "/output/keep/deep/d.bin",
    ]


class _SlowSender:
    """A container whose `put_archive` sends the body in 8 KiB pieces (as `http.client`
    sends a file) a pause apart: what a loaded machine does to the request now and then."""

    PIECE = 8192

    def __init__(self, api: Any, cid: str) -> None:
        self.api, self.id = api, cid

    def put_archive(self, path: str, data: Any) -> None:
        body = data.read()

        def pieces():
            for start in range(0, len(body), self.PIECE):
                yield body[start : start + self.PIECE]
                time.sleep(0.2)

        self.api.put_archive(self.id, path, pieces())


def test_a_tar_whose_last_piece_arrives_late_is_extracted(engine_api):
    """Podman stops reading a tar at its end blocks; padding that came after them failed
    the request with "broken pipe" (containers/buildah#6573). `put_tar` sends none."""

    def fill(tar: tarfile.TarFile) -> None:
        for name in ("output", "data/x"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        info = tarfile.TarInfo("data/x/small.txt")
        info.size = 100  # the end blocks in the first piece, Python's padding past it
        tar.addfile(info, io.BytesIO(b"j" * info.size))

    cid = engine_api.create_container("busybox", ["true"])["Id"]
    try:
        worker_container.put_tar(_SlowSender(engine_api, cid), fill)
        assert engine_api.get_archive(cid, "/data/x/small.txt")[1]["size"] == 100
        assert engine_api.get_archive(cid, "/output")[1]["name"] == "output"
    finally:
        engine_api.remove_container(cid, force=True)


def test_glob_rules():
    """`*` stays in one segment, `**` spans any, a directory pattern takes what is below."""
    match = worker_container.matches
    assert match("/output/a.json", ["/output/*.json"])
    assert not match("/output/sub/a.json", ["/output/*.json"])
    assert match("/output/sub/a.json", ["/output/**/*.json"])
    assert match("/output/a.json", ["/output/**/*.json"])
    assert match("/output/sub/deep/x", ["/output/sub"])
    assert match("/output/sub/deep/x", ["/output/*"])
    assert match("/output/r1.csv", ["/output/r[0-9].csv"])
    assert not match("/output/rx.csv", ["/output/r[0-9].csv"])
    assert not match("/outputs/a.json", ["/output"])


def test_timeout_kills_and_fails(db, worker_settings, run_worker, engine_api):
    owner = make_user(db)
    run_worker()
    params = container_params(command=["sleep", "60"], resources={"timeout": "2s"})
    job = submit(db, worker_settings, owner, params)
    running = wait_for_job(db, job["id"], {"running"}, until=has_container)
    started = time.monotonic()
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "failed"
    assert done["error"] == "timed out after 2 s"
    assert time.monotonic() - started < 5
    assert done["details"]["exit_code"] == 137
    assert containers_of(engine_api, job["id"]) == []
    assert running["details"]["container_id"] == done["details"]["container_id"]


def test_memory_limit_is_out_of_memory(db, worker_settings, run_worker):
    owner = make_user(db)
    run_worker()
    script = "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived"
    params = container_params(command=sh(script), resources={"memory_limit": "16m"})
    job = submit(db, worker_settings, owner, params)
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "failed"
    assert done["error"] == "out of memory (limit 16m)"
    assert ("stdout", "survived") not in logs_of(db, job["id"])


def test_network_is_none(db, worker_settings, run_worker):
    """Only the loopback interface, as `ip` and the kernel's own table see it."""
    owner = make_user(db)
    run_worker()
    script = "ip -o link | cut -d: -f2; echo ---; tail -n +3 /proc/net/dev | cut -d: -f1"
    job = submit(db, worker_settings, owner, container_params(command=sh(script)))
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "completed", done["error"]
    lines = [message.strip() for level, message in logs_of(db, job["id"]) if level == "stdout"]
    assert lines == ["lo", "---", "lo"]


def test_a_failing_exit_is_retried_then_fails(db, worker_settings, run_worker, engine_api):
    owner = make_user(db)
    run_worker()
    params = container_params(command=sh("echo attempt; exit 3"))
    job = submit(
        db, worker_settings, owner, params, max_attempts=2, backoff="fixed", backoff_seconds=0.1
    )
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "failed"
    assert done["error"] == "exited with code 3"
    assert done["attempt"] == 2
    lines = logs_of(db, job["id"])
    assert sum(1 for line in lines if line == ("stdout", "attempt")) == 2
    assert any("retry in" in message for _, message in lines)
    assert done["details"]["exit_code"] == 3
    assert containers_of(engine_api, job["id"]) == []


def test_cancel_kills_within_a_second(db, worker_settings, run_worker, engine_api):
    owner = make_user(db)
    run_worker()
    job = submit(db, worker_settings, owner, container_params(command=["sleep", "60"]))
    wait_for_job(db, job["id"], {"running"}, until=has_container)
    assert len(containers_of(engine_api, job["id"])) == 1
    with db.transaction() as conn:
        submission.request_cancel(conn, job_id=str(job["id"]))
    asked = time.monotonic()
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "cancelled", done["error"]
    assert time.monotonic() - asked < 1.5
    assert containers_of(engine_api, job["id"]) == []


@pytest.mark.parametrize(
    ("params", "reason", "overrides"),
    [
        (container_params(image="nosuchimage:1"), "image 'nosuchimage:1' not found", {}),
        (
            container_params(command=["true"]),
            "image 'busybox' is not allowed",
            {"container_image_allowlist": ("python:*", "alpine*")},
        ),
        (
            container_params(
                command=["true"], input_files=[{"source": "/nope.csv", "destination": "/in/a.csv"}]
            ),
            "input file '/nope.csv' not found",
            {},
        ),
    ],
    ids=["unknown-image", "not-allowed", "missing-input"],
)
def test_fails_at_once_without_retries(
    db, worker_settings, run_worker, engine_api, params, reason, overrides
):
    owner = make_user(db)
    run_worker(**overrides)
    job = submit(db, worker_settings, owner, params, max_attempts=3)
    done = wait_for_job(db, job["id"], FINISHED)
    assert (done["status"], done["error"], done["attempt"]) == ("failed", reason, 1)
    assert containers_of(engine_api, job["id"]) == []


def test_an_unreachable_engine_hands_the_job_back(
    db, worker_settings, start_worker, docker_host, monkeypatch, tmp_path
):
    """Not the job's fault: it goes back to the queue without using an attempt, and runs
    once an engine answers."""
    monkeypatch.setattr(worker_container, "ENGINE_WAIT_S", 0.3)
    owner = make_user(db)
    away = start_worker("container", docker_host=f"unix://{tmp_path}/nothing.sock")
    job = submit(db, worker_settings, owner, container_params(command=["true"]))
    wait_for_job(db, job["id"], {"running"})
    time.sleep(1.5)  # several claims and hand-backs
    row = wait_for_job(db, job["id"], {"pending", "running"})
    assert row["attempt"] <= 1 and row["error"] is None
    away.request_stop()
    start_worker("container", docker_host=docker_host)
    done = wait_for_job(db, job["id"], FINISHED)
    assert done["status"] == "completed", done["error"]


def test_housekeeping_removes_containers_of_attempts_that_are_over(
    db, worker_settings, docker_host, engine_api
):
    """A dead attempt's container goes; a live attempt's, another deployment's and one
    without our labels stay."""
    owner = make_user(db)
    settings = worker_settings.replace(docker_host=docker_host)
    instance = worker_container.instance_label(settings)
    dead = make_job(db, owner_id=owner["id"], kind="container", params=container_params())
    live = make_job(db, owner_id=owner["id"], kind="container", params=container_params())
    with db.transaction() as conn:
        held = attempts.claim_job(conn, job_id=str(live["id"]), worker_id="w-live", lease_s=60)
    assert held is not None

    def create(labels: dict[str, str]) -> str:
        return engine_api.create_container("busybox", ["sleep", "60"], labels=labels)["Id"]

    def labels(job, attempt, worker, instance=instance):
        return {
            "jobgate.job": str(job["id"]),
            "jobgate.attempt": str(attempt),
            "jobgate.worker": worker,
            "jobgate.instance": instance,
        }

    orphan = create(labels(dead, 1, "w-dead"))
    old_attempt = create(labels(live, 0, "w-live"))
    keep = [
        create(labels(live, 1, "w-live")),
        create(labels(dead, 1, "w-dead", instance="another-deployment")),
        create({"purpose": "not ours"}),
    ]
    try:
        worker_container.housekeeping(settings, db)
        left = {c["Id"] for c in engine_api.containers(all=True)}
        assert orphan not in left and old_attempt not in left
        assert set(keep) <= left
    finally:
        for cid in [orphan, old_attempt, *keep]:
            with contextlib.suppress(docker.errors.NotFound):
                engine_api.remove_container(cid, force=True)
    with db.transaction() as conn:
        assert jobs.get_job(conn, job_id=str(live["id"]))["status"] == "running"
