"""The `jobgate` command line, run as a user runs it (the installed script, in a
pseudo-terminal where a terminal matters), against the real processes through the edge:
nginx, gateway, auth-service, stats-service, cache/convert/scrape/task/container workers
(a local feed server stands in for the video site, the run's Podman for the engine).

Each command of issue 11: `login`, `cache --watch` (the live bar reaches 100 % and the
command exits 0), `convert` (upload, conversion, download), `scrape --watch`, `run` (a
container's output followed), `task submit`, `jobs …`, `workers`, `schedules …`; `--json`
parsed; plain lines instead of bars when not on a terminal; the exit codes (1 a failed job,
2 usage, 3 API error, 4 connection refused with one clear line); Ctrl-C while watching
leaves the job running, `--cancel-on-interrupt` cancels it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from jobgate_client import Client
from tests.e2e.conftest import ADMIN_PASSWORD, start_shared_stack, stop_shared_stack
from tests.e2e.test_cache_e2e import make_tree
from tests.e2e.test_client_e2e import SLOW_CACHE
from tests.feeds import FeedServer, feed_videos
from tests.helpers import DEMO_KEY
from tests.media import make_video, mp3_header_ok
from tests.stack import VENV_BIN, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
JOBGATE = str(VENV_BIN / "jobgate")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-clips")
    return {"short": make_video(root / "holiday.mp4", seconds=2)}


@pytest.fixture(scope="module")
def feeds(clips) -> Iterator[FeedServer]:
    server = FeedServer(clips["short"]).start()
    newest = dt.datetime(2025, 6, 15, 12, tzinfo=dt.UTC)
    server.add("profile", "khaby.lame", feed_videos(3, newest=newest, step=dt.timedelta(days=1)))
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url, amqp_url, feeds, docker_host) -> Iterator[Stack]:
    stack = start_shared_stack(
        tmp_path_factory.mktemp("cli-e2e"),
        database_url,
        amqp_url,
        SCRAPE_PROFILE_URL=feeds.profile_url,
        SCRAPE_HASHTAG_URL=feeds.hashtag_url,
        DOCKER_HOST=docker_host,
    )
    for kind in ("task", "convert", "scrape", "container"):
        stack.start_worker(kind)
    stack.start_worker("cache", **SLOW_CACHE)
    stack.tree_files, _ = make_tree(stack.filespace, folders=2, files=12, size=90_000)
    yield stack
    stop_shared_stack(stack, database_url)


@pytest.fixture
def env(stack, tmp_path) -> dict[str, str]:
    """The command line's environment: the edge, the demo key, a config file of its own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBGATE_")}
    return {
        **base,
        "JOBGATE_URL": stack.edge_url,
        "JOBGATE_API_KEY": DEMO_KEY,
        "JOBGATE_CONFIG": str(tmp_path / "jobgate" / "config.json"),
        "COLUMNS": "160",
    }


@pytest.fixture
def api(stack) -> Iterator[Client]:
    with Client(stack.edge_url, api_key=DEMO_KEY) as client:
        yield client


def jobgate(*args: str, env: dict[str, str], cwd: Path | None = None, **kw: Any):
    """Run the command with pipes (not a terminal); the finished process."""
    return subprocess.run(
        [JOBGATE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, **kw
    )


def jobgate_json(*args: str, env: dict[str, str], code: int = 0) -> Any:
    done = jobgate(*args, "--json", env=env)
    assert done.returncode == code, done.stderr
    return json.loads(done.stdout)


def _interactive_signals() -> None:
    """Ctrl-C as a shell gives it: a suite started in the background (`make test &`)
    ignores SIGINT, and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def terminal(*args: str, env: dict[str, str], cwd: Path | None = None) -> pexpect.spawn:
    """Run the command in a pseudo-terminal, as from an interactive shell."""
    return pexpect.spawn(
        JOBGATE,
        list(args),
        env={**env, "TERM": "xterm-256color"},
        cwd=str(cwd) if cwd else None,
        encoding="utf-8",
        timeout=90,
        dimensions=(40, 160),
        preexec_fn=_interactive_signals,
    )


def finish(child: pexpect.spawn) -> tuple[int | None, str]:
    """Wait for the end; the exit status and everything it printed, without escapes."""
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, ANSI.sub("", child.before or "")


def test_help_lists_every_command(env):
    done = jobgate("--help", env=env)
    assert done.returncode == 0
    for command in ("login", "cache", "convert", "scrape", "run", "task", "jobs", "workers"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.M), command
    assert "schedules" in done.stdout and "Exit codes" in done.stdout
    jobs_help = jobgate("jobs", "--help", env=env).stdout
    for sub in ("list", "get", "cancel", "retry", "logs", "watch", "download"):
        assert re.search(rf"^\s+{sub}\s", jobs_help, re.M), sub


def test_login_stores_a_session_that_later_commands_use(env):
    env = {k: v for k, v in env.items() if k != "JOBGATE_API_KEY"}
    child = terminal("login", env=env)
    child.expect("Username: ")
    child.sendline("admin")
    child.expect("Password: ")
    child.sendline(ADMIN_PASSWORD)
    code, out = finish(child)
    assert code == 0, out
    assert "Logged in to" in out and "as admin" in out
    config = Path(env["JOBGATE_CONFIG"])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    stored = json.loads(config.read_text())
    assert stored["servers"][env["JOBGATE_URL"]]["refresh_token"]
    assert jobgate_json("whoami", env=env)["username"] == "admin"
    assert jobgate("logout", env=env).returncode == 0
    refused = jobgate("whoami", env=env)
    assert refused.returncode == 3 and "UNAUTHORIZED" in refused.stderr


def test_cache_watch_in_a_terminal_reaches_100_percent(stack, env):
    child = terminal("cache", "tree", "--watch", env=env)
    child.expect("MB/s")  # the live bar while files are read
    child.expect("100%")
    code, out = finish(child)
    assert code == 0, out
    assert f"files {stack.tree_files}/{stack.tree_files}" in out
    assert re.search(r"cache job [0-9a-f-]{36} completed: 24 files", out)


def test_json_output_and_plain_lines_off_a_terminal(stack, env, api):
    job = jobgate_json("cache", "tree/shoot00", env=env)
    assert job["kind"] == "cache" and job["params"]["directories"] == ["tree/shoot00"]
    events = [
        json.loads(line)
        for line in jobgate("jobs", "watch", job["id"], "--json", env=env).stdout.splitlines()
    ]
    assert events[-1]["status"] == "completed" and events[-1]["type"] in ("status", "snapshot")
    detail = jobgate_json("jobs", "get", job["id"], env=env)
    assert detail["job"]["progress"] == 100
    listed = jobgate_json("jobs", "list", "--kind", "cache", "--limit", "1", env=env)
    assert listed["total"] >= 1 and len(listed["jobs"]) == 1

    # A file path among folder paths; watched through a pipe: lines, no bar.
    done = jobgate("cache", "tree/shoot01", "tree/shoot00/day2/cam/clip000.mov", "--watch", env=env)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert re.match(r"cache [0-9a-f]{8}: (pending|running) \d+%", lines[0])
    assert any("completed 100%" in line for line in lines)
    assert len(done.stdout.splitlines()) == 1 and "completed: 13 files" in done.stdout


def test_convert_uploads_converts_and_downloads_in_a_terminal(env, clips, tmp_path):
    child = terminal("convert", str(clips["short"]), "-o", "song.mp3", env=env, cwd=tmp_path)
    child.expect("upload holiday.mp4")
    child.expect("100%")
    code, out = finish(child)
    assert code == 0, out
    assert "download song.mp3" in out and "saved song.mp3" in out
    assert mp3_header_ok((tmp_path / "song.mp3").read_bytes())


def test_scrape_profile_watch(env):
    child = terminal("scrape", "profile", "khaby.lame", "--limit", "2", "--watch", env=env)
    child.expect("100%")
    code, out = finish(child)
    assert code == 0, out
    assert "videos 2/2" in out and "completed: 2 videos (0 failed)" in out


def test_run_follows_a_containers_output_and_reflects_its_outcome(env):
    done = jobgate("run", "busybox", "--", "sh", "-c", "echo hello; echo oops >&2", env=env)
    assert done.returncode == 0, done.stderr
    assert "hello" in done.stdout.splitlines() and "oops" in done.stderr
    assert "exit code 0" in done.stdout
    failed = jobgate("run", "busybox", "--", "sh", "-c", "echo about to fail; exit 3", env=env)
    assert failed.returncode == 1
    assert "about to fail" in failed.stdout and "exited with code 3" in failed.stderr


def test_tasks_and_the_jobs_commands(env, api):
    job = jobgate_json("task", "submit", "echo", "--payload", '{"a": 1}', "--watch", env=env)
    assert job["status"] == "completed" and job["result"] == {"a": 1}

    slow = jobgate_json("task", "submit", "sleep", "--payload", '{"seconds": 30}', env=env)
    cancelled = jobgate_json("jobs", "cancel", slow["id"], env=env)
    assert cancelled["id"] == slow["id"]
    assert api.jobs.wait(slow["id"])["status"] == "cancelled"
    retried = jobgate_json("jobs", "retry", slow["id"], env=env)
    assert retried["status"] in ("pending", "running")
    assert jobgate("jobs", "cancel", slow["id"], env=env).returncode == 0
    followed = jobgate("jobs", "logs", slow["id"], "-f", env=env)
    assert followed.returncode == 0 and followed.stdout.strip()
    logs = jobgate_json("jobs", "logs", slow["id"], env=env)
    assert logs["job_id"] == slow["id"]
    messages = [line["message"] for line in logs["logs"]]
    followed_lines = followed.stdout.splitlines()
    assert len(followed_lines) <= len(messages)
    assert all(m in text for m, text in zip(messages, followed_lines, strict=False))
    assert jobgate("jobs", "delete", slow["id"], env=env).returncode == 0
    assert jobgate("jobs", "get", slow["id"], env=env).returncode == 3


def test_jobs_submit_sends_a_file_of_jobs_in_batches(env, api, tmp_path):
    lines = [
        json.dumps(
            {"kind": "task", "name": "echo", "payload": {"n": n}, "idempotency_key": f"k{n}"}
        )
        for n in range(3)
    ]
    source = tmp_path / "jobs.jsonl"
    source.write_text("# three echo tasks\n" + "\n".join(lines) + "\n\n")
    first = jobgate_json("jobs", "submit", str(source), env=env)
    assert first["created"] == 3 and [j["kind"] for j in first["jobs"]] == ["task"] * 3
    for job in first["jobs"]:
        assert api.jobs.wait(job["id"])["status"] == "completed"
    # The same file again: the keys answer the jobs already submitted, nothing new runs.
    again = jobgate("jobs", "submit", str(source), env=env)
    assert again.returncode == 0, again.stderr
    assert "3 job(s): 0 new, 3 submitted before" in again.stderr
    assert [line.split()[0] for line in again.stdout.splitlines()] == [
        j["id"] for j in first["jobs"]
    ]
    # From stdin, an invalid second job: nothing of the batch is sent, its position named.
    bad = "\n".join([lines[0], json.dumps({"kind": "task", "payload": {}})])
    refused = jobgate("jobs", "submit", "-", env=env, input=bad)
    assert refused.returncode == 3
    assert "job 2:" in refused.stderr and "name" in refused.stderr
    garbled = jobgate("jobs", "submit", "-", env=env, input='{"kind": "task"\n')
    assert garbled.returncode == 2 and "line 1" in garbled.stderr


def test_a_failing_job_exits_1(env):
    done = jobgate(
        "task", "submit", "sleep", "--payload", '{"seconds": 5}', "--timeout", "1",
        "--max-attempts", "1", "--watch", env=env,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert re.search(r"task job [0-9a-f-]{36} failed", done.stderr)


def test_workers_and_schedules(env):
    workers = jobgate_json("workers", env=env)
    assert {"cache", "convert", "scrape", "task", "container"} <= {
        w["kind"] for w in workers["workers"]
    }
    assert "WORKER" in jobgate("workers", env=env).stdout

    created = jobgate_json(
        "schedules", "create", "echo", "--kind", "task", "--every", "60",
        "--param", 'payload={"from": "schedule"}', "--disabled", env=env,
    )  # fmt: skip
    assert created["enabled"] is False and created["params"]["payload"] == {"from": "schedule"}
    sid = created["id"]
    assert jobgate_json("schedules", "enable", sid, env=env)["enabled"] is True
    assert jobgate_json("schedules", "disable", sid, env=env)["enabled"] is False
    listed = jobgate_json("schedules", "list", "--kind", "task", env=env)
    assert sid in [s["id"] for s in listed["schedules"]]
    assert jobgate_json("schedules", "get", sid, env=env)["name"] == "echo"
    assert jobgate("schedules", "delete", sid, env=env).returncode == 0
    assert jobgate("schedules", "get", sid, env=env).returncode == 3


def test_exit_codes_tell_usage_api_and_connection_errors_apart(env):
    usage = jobgate("schedules", "create", "x", "--kind", "task", env=env)
    assert usage.returncode == 2 and "--every" in usage.stderr

    missing = jobgate("jobs", "get", "00000000-0000-0000-0000-000000000000", env=env)
    assert missing.returncode == 3 and missing.stdout == ""
    [line] = missing.stderr.splitlines()
    assert re.fullmatch(r"jobgate: 404 NOT_FOUND: Job not found \(request [0-9a-f]{32}\)", line)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    refused = jobgate("--url", f"http://127.0.0.1:{port}", "jobs", "list", env=env)
    assert refused.returncode == 4 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"jobgate: cannot connect to http://127.0.0.1:{port} (connection refused)"
    ]


def _running_sleep_in_a_terminal(env: dict[str, str], *flags: str) -> pexpect.spawn:
    """`task submit sleep --watch` in a terminal, once its bar says the job runs."""
    child = terminal(
        "task", "submit", "sleep", "--payload", '{"seconds": 60}', "--watch", *flags, env=env
    )
    child.expect("running")
    return child


def _job_id(output: str) -> str:
    found = re.search(r"job ([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


def test_ctrl_c_while_watching_leaves_the_job_running(env, api):
    child = _running_sleep_in_a_terminal(env)
    child.sendintr()
    code, out = finish(child)
    assert code == 130, out
    job_id = _job_id(out)
    assert "keeps running" in out and f"jobgate jobs watch {job_id}" in out
    assert api.jobs.get(job_id)["status"] == "running"
    api.jobs.cancel(job_id)


def test_ctrl_c_with_cancel_on_interrupt_cancels_the_job(env, api):
    child = _running_sleep_in_a_terminal(env, "--cancel-on-interrupt")
    child.sendintr()
    code, out = finish(child)
    assert code == 130, out
    job_id = _job_id(out)
    assert f"cancelled job {job_id}" in out
    assert api.jobs.wait(job_id, timeout=30)["status"] == "cancelled"
