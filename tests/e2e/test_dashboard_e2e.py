"""The web dashboard (`/dashboard`) in headless Chromium, against the real stack through the
edge: nginx in front of the gunicorn gateway and the uvicorn stats-service, auth-service, a
cache worker, PostgreSQL and RabbitMQ (and, for the one test that follows a container's log,
a container worker on the run's Podman engine, started only for it). Also stats-service's
`/ws/jobs`, the one stream of all of a caller's jobs that keeps the dashboard's list moving.

Chromium is Debian's (`scripts/browser.sh install`; `CHROMIUM_PATH` overrides), driven by
Playwright through `executable_path`. Screenshots go to `var/artifacts/dashboard/` (or
`$JOBGATE_ARTIFACTS_DIR`); to refresh the README's picture, run

    JOBGATE_DOCS_SCREENSHOT=1 .venv/bin/pytest tests/e2e/test_dashboard_e2e.py

which also writes `docs/dashboard.png`. One stack and one browser serve the whole module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e.conftest import ADMIN_PASSWORD, start_shared_stack, stop_shared_stack
from tests.media import make_video, mp3_header_ok
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FILE_SIZE = 256 * 1024
# A cache worker reading 1 MiB/s in 64 KiB chunks, one file at a time, a progress tick per
# file: a job of 16 such files moves for about 4 s, slow enough to watch its bar move.
READ_LIMIT = str(1024 * 1024)
WAIT_MS = 60_000
LOG_FOLLOW_S = 2.0  # the job page's log polling period (job.js: LOG_FOLLOW_MS)
FOLLOWING = "Following the log while the job runs."
WHOLE_LOG = "The job has finished: this is its whole log."
NO_LINES = "No log lines."


# --- the stack, the browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def dash(tmp_path_factory, database_url: str, amqp_url: str) -> Iterator[Stack]:
    """Auth-service, gateway, stats-service, the edge and one slowed cache worker, shared by
    the module's tests; the run's tables are emptied afterwards, as the `db` fixture does."""
    stack = start_shared_stack(
        tmp_path_factory.mktemp("dashboard"),
        database_url,
        amqp_url,
        # Access tokens of 65 s: the page refreshes them 60 s early, so every few seconds.
        ACCESS_TOKEN_TTL="65",
    )
    try:
        stack.start_worker(
            "cache",
            CACHE_READ_BANDWIDTH_LIMIT=READ_LIMIT,
            CACHE_READ_CHUNK_BYTES="65536",
            CACHE_READ_CONCURRENCY="1",
            CACHE_PROGRESS_FILE_THRESHOLD="1",
            CACHE_PROGRESS_TIME_THRESHOLD="250",
        )
        stack.start_worker("convert")
        yield stack
    finally:
        stop_shared_stack(stack, database_url)


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail(f"no Chromium at {path}: run `scripts/browser.sh install` (make test does)")
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("JOBGATE_ARTIFACTS_DIR") or REPO / "var" / "artifacts")
    folder = folder / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Tab:
    """A fresh browser context (its own sessionStorage) on the dashboard, recording what
    the page complains about: script errors, refused requests, CSP violations."""

    def __init__(self, browser, stack: Stack, *, width: int = 1280, height: int = 860) -> None:
        self.stack = stack
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.set_default_timeout(20_000)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.expected: list[str] = []  # texts of complaints a test provokes on purpose
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)

    def _console(self, msg) -> None:
        if msg.type == "error" and not any(text in msg.text for text in self.expected):
            self.problems.append(f"console: {msg.text}")

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.stack.edge_url}/dashboard{fragment}")

    def login(self, username: str, password: str) -> None:
        self.open()
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.locator("#nav").wait_for(state="visible")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, dash) -> Iterator[Tab]:
    opened = Tab(browser, dash)
    yield opened
    problems = opened.problems
    opened.close()
    assert not problems, problems


# --- helpers over the API ----------------------------------------------------------------


def make_files(stack: Stack, folder: str, *, count: int, size: int = FILE_SIZE) -> None:
    target = stack.filespace / folder
    target.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (target / f"clip{i:03d}.mov").write_bytes(os.urandom(size))


def submit_cache(stack: Stack, headers: dict[str, str], folder: str) -> str:
    r = requests.post(
        f"{stack.edge_url}/api/v1/jobs",
        json={"kind": "cache", "directories": [folder]},
        headers=headers,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def job_status(stack: Stack, headers: dict[str, str], job_id: str) -> str:
    r = requests.get(f"{stack.edge_url}/api/v1/jobs/{job_id}", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["job"]["status"]


def wait_job(stack: Stack, headers: dict[str, str], job_id: str, wanted: set[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = job_status(stack, headers, job_id)
        if status in wanted:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} is {status}, wanted {wanted}")


def add_user(stack: Stack, admin: dict[str, str], name: str) -> tuple[dict[str, str], str]:
    """A user made through the admin API, logged in: (bearer headers, password)."""
    password = f"password-{name}"
    r = requests.post(
        f"{stack.edge_url}/api/v1/auth/users",
        json={"username": name, "password": password},
        headers=admin,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    r = requests.post(
        f"{stack.edge_url}/api/v1/auth/login",
        json={"username": name, "password": password},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}, password


def edge_login(stack: Stack, username: str = "admin", password: str = ADMIN_PASSWORD):
    r = requests.post(
        f"{stack.edge_url}/api/v1/auth/login",
        json={"username": username, "password": password},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def api_logs(stack: Stack, headers: dict[str, str], job_id: str) -> list[str]:
    r = requests.get(
        f"{stack.edge_url}/api/v1/jobs/{job_id}/logs?limit=5000", headers=headers, timeout=10
    )
    assert r.status_code == 200, r.text
    return [line["message"] for line in r.json()["logs"]]


@pytest.fixture(scope="module")
def container_worker(dash, docker_host) -> Iterator[list[str]]:
    """A container worker joining the module's stack on the run's Podman engine, started
    only when a test asks for it (the engine's first start costs seconds). Yields a list
    the tests put their job ids in: whatever container of theirs is left is removed."""
    dash.start_worker("container", DOCKER_HOST=docker_host)
    job_ids: list[str] = []
    yield job_ids
    engine = docker.DockerClient(base_url=docker_host, version="1.41", timeout=30)
    try:
        for job_id in job_ids:
            for leftover in engine.containers.list(
                all=True, filters={"label": f"jobgate.job={job_id}"}
            ):
                leftover.remove(force=True)
    finally:
        engine.close()


# --- the tests ---------------------------------------------------------------------------


def test_the_dashboard_is_served_with_a_same_origin_policy(dash):
    r = requests.get(f"{dash.edge_url}/dashboard", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert f"ws://127.0.0.1:{dash.edge_port}" in policy.split("connect-src", 1)[1]
    assert "://" not in r.text, "nothing from anywhere else"
    static = REPO / "gateway" / "src" / "jobgate_gateway" / "dashboard" / "static"
    for asset in sorted(p.name for p in static.iterdir()):
        a = requests.get(f"{dash.edge_url}/dashboard/static/{asset}", timeout=10)
        assert a.status_code == 200, asset
        text = a.text.replace("http://www.w3.org/2000/svg", "")  # a namespace, not a fetch
        assert "http://" not in text and "https://" not in text, f"{asset} reaches outside"
    assert requests.get(f"{dash.edge_url}/dashboard/static/nope.js").status_code == 404
    spec = requests.get(f"{dash.edge_url}/openapi.json", timeout=10).json()
    assert not [p for p in spec["paths"] if p.startswith("/dashboard")]


def test_a_cache_job_submitted_from_the_api_moves_live_to_100_percent(dash, tab, artifacts):
    admin = edge_login(dash)
    make_files(dash, "watch", count=16)
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    page.get_by_role("heading", name="Jobs").wait_for()
    page.locator(".live-state[data-state=live]").wait_for()
    # Every value a job's bar takes, and every list read, from now on.
    page.evaluate(
        """() => {
            window.stillTheSamePage = true;
            window.barValues = {};
            new MutationObserver((changes) => {
                for (const change of changes) {
                    const bar = change.target;
                    const id = bar.closest("tr")?.dataset.jobId;
                    if (!id) continue;
                    (window.barValues[id] ||= []).push(Number(bar.dataset.value));
                }
            }).observe(document.querySelector("table.jobs tbody"), {
                subtree: true, attributes: true, attributeFilter: ["data-value"],
            });
        }"""
    )
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/api/v1/jobs?" in r.url else None)

    job_id = submit_cache(dash, admin, "watch")
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    row.wait_for(timeout=WAIT_MS)  # it came in on the stream, no reload
    bar = row.locator("progress")
    page.wait_for_function(
        "id => { const v = window.barValues[id] || []; return v.includes(100); }",
        arg=job_id,
        timeout=WAIT_MS,
    )
    row.locator(".badge", has_text="completed").wait_for(timeout=WAIT_MS)
    assert bar.get_attribute("data-value") == "100"
    assert row.locator(".pct").inner_text() == "100 %"
    assert page.evaluate("window.stillTheSamePage") is True, "the page was reloaded"
    values = page.evaluate("id => window.barValues[id]", job_id)
    between = sorted({v for v in values if 0 < v < 100})
    assert len(between) >= 4, values  # the bar moved through the job, tick by tick
    assert values == sorted(values), values  # and never went back
    assert len(reads) < len(between), (reads, values)  # moved by the stream, not by reads
    assert job_status(dash, admin, job_id) == "completed"
    page.screenshot(path=str(artifacts / "jobs-live.png"), full_page=True)
    assert (artifacts / "jobs-live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_running_job_is_cancelled_from_its_page(dash, tab, artifacts):
    admin = edge_login(dash)
    make_files(dash, "long", count=64)  # about 16 s of reading: cancelled long before
    job_id = submit_cache(dash, admin, "long")
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    tab.open(f"#/jobs/{job_id}")
    page.locator(".status-box .badge", has_text="running").wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        "() => Number(document.querySelector('.summary progress').dataset.value) > 0",
        timeout=WAIT_MS,
    )
    page.locator("ol.timeline li[data-event=started]").wait_for()
    log_state = page.locator(".log-state")
    expect(log_state).to_have_text(FOLLOWING)
    assert page.get_by_role("button", name="Retry job").is_disabled()
    page.get_by_role("button", name="Cancel job").click()
    assert wait_job(dash, admin, job_id, {"cancelled", "completed", "failed"}) == "cancelled"
    page.locator(".status-box .badge", has_text="cancelled").wait_for()
    page.locator("ol.timeline li[data-event=cancelled]").wait_for()
    # A cache job logs nothing of its own: once final, the page stops saying it follows.
    assert api_logs(dash, admin, job_id) == []
    expect(log_state).to_have_text(NO_LINES)
    assert page.get_by_label("Log lines").is_hidden()
    assert page.get_by_role("button", name="Cancel job").is_disabled()
    assert page.get_by_role("button", name="Retry job").is_enabled()
    assert int(page.locator(".summary progress").get_attribute("data-value")) < 100
    page.screenshot(path=str(artifacts / "job-cancelled.png"), full_page=True)


AT_BOTTOM = "el => el.scrollHeight - el.scrollTop - el.clientHeight <= 4"
AT_TOP = "el => el.scrollTop === 0"
# Forty lines at once (more than the log's box shows), then one line a second.
LOG_SCRIPT = (
    "for i in $(seq 1 40); do echo filler-$i; done;"
    " for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 1; done"
)


def scroll_with_key(page, log, key: str, reached: str) -> None:
    """Press `key` in the focused log until it has scrolled where `reached` says (a line
    arriving in the very frame the key is pressed may win over the keyboard's scroll)."""
    log.focus()
    for _ in range(5):
        page.keyboard.press(key)
        try:
            page.wait_for_function(reached, arg=log.element_handle(), timeout=2_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"{key} did not scroll the log")


def wait_new_lines(page, log) -> None:
    """Until a line more than now is shown."""
    count = log.locator("li").count()
    page.wait_for_function(
        "([el, n]) => el.children.length > n", arg=[log.element_handle(), count], timeout=WAIT_MS
    )


def test_a_running_containers_log_is_followed_on_its_page(dash, tab, container_worker, artifacts):
    admin = edge_login(dash)
    r = requests.post(
        f"{dash.edge_url}/api/v1/jobs",
        json={"kind": "container", "image": "busybox", "command": ["sh", "-c", LOG_SCRIPT]},
        headers=admin,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    container_worker.append(job_id)
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    log_reads: list[str] = []
    page.on("request", lambda r: log_reads.append(r.url) if "/logs?" in r.url else None)
    tab.open(f"#/jobs/{job_id}")
    log = page.get_by_label("Log lines")
    log_state = page.locator(".log-state")

    def line(n: int):
        return log.locator(".message", has_text=re.compile(rf"^line-{n}$"))

    # The first lines come in while the job runs, without a reload.
    line(1).wait_for(timeout=WAIT_MS)
    assert job_status(dash, admin, job_id) == "running"
    expect(log_state).to_have_text(FOLLOWING)
    page.evaluate("window.stillTheSamePage = true")
    # The reader at the bottom is kept there as lines arrive.
    assert log.evaluate("el => el.scrollHeight > el.clientHeight"), "the log should overflow"
    assert log.evaluate(AT_BOTTOM)
    # Scrolled up (with the keyboard), the reader stays where they are as lines arrive...
    scroll_with_key(page, log, "Home", AT_TOP)
    wait_new_lines(page, log)
    assert log.evaluate(AT_TOP), "a new line pulled the reader away from what they read"
    # ...and back at the bottom, the log follows again.
    scroll_with_key(page, log, "End", AT_BOTTOM)
    wait_new_lines(page, log)
    assert log.evaluate(AT_BOTTOM), "the log did not follow its new lines"

    line(8).wait_for(timeout=WAIT_MS)
    expect(log_state).to_have_text(WHOLE_LOG, timeout=WAIT_MS)
    assert job_status(dash, admin, job_id) == "completed"
    page.locator(".status-box .badge", has_text="completed").wait_for()
    assert page.evaluate("window.stillTheSamePage") is True, "the page was reloaded"
    # Every line once, in order: the container's output and the platform's lines.
    shown = log.locator(".message").all_inner_texts()
    expected = api_logs(dash, admin, job_id)
    assert shown == expected
    output = [m for m in shown if re.fullmatch(r"(filler|line)-\d+", m)]
    assert output == [f"filler-{i}" for i in range(1, 41)] + [f"line-{i}" for i in range(1, 9)]
    # Read piece by piece while it ran, then no more reads once the job is final.
    assert len(log_reads) >= 3 and any("after_id=0&" not in url for url in log_reads)
    reads = len(log_reads)
    page.wait_for_timeout(LOG_FOLLOW_S * 1.5 * 1000)
    assert len(log_reads) == reads, log_reads[reads:]
    page.screenshot(path=str(artifacts / "job-log.png"), full_page=True)


def test_a_conversions_mp3_is_downloaded_from_its_page(dash, tab, tmp_path):
    admin = edge_login(dash)
    clip = make_video(tmp_path / "holiday.mp4", seconds=2)
    with clip.open("rb") as fh:
        r = requests.post(
            f"{dash.edge_url}/api/v1/files",
            files={"file": ("holiday.mp4", fh, "video/mp4")},
            headers=admin,
            timeout=30,
        )
    assert r.status_code == 201, r.text
    r = requests.post(
        f"{dash.edge_url}/api/v1/jobs",
        json={"kind": "convert", "input_file": r.json()["id"]},
        headers=admin,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert wait_job(dash, admin, job_id, {"completed", "failed"}) == "completed"
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    log_reads: list[str] = []
    page.on("request", lambda r: log_reads.append(r.url) if "/logs?" in r.url else None)
    tab.open(f"#/jobs/{job_id}")
    # A finished job's log is read once, whole, and not followed.
    expect(page.locator(".log-state")).to_have_text(WHOLE_LOG)
    messages = page.get_by_label("Log lines").locator(".message").all_inner_texts()
    assert messages == api_logs(dash, admin, job_id) and messages
    assert len(log_reads) == 1, log_reads
    button = page.get_by_role("button", name="Download holiday.mp3")
    with page.expect_download() as started:
        button.click()  # fetched with the page's token, handed over as a blob
    download = started.value
    assert download.suggested_filename == "holiday.mp3"
    got = Path(download.path()).read_bytes()
    url = f"{dash.edge_url}/api/v1/jobs/{job_id}/output/holiday.mp3"
    assert got == requests.get(url, headers=admin, timeout=10).content
    assert mp3_header_ok(got)
    assert page.locator("ol.timeline li[data-event=completed]").count() == 1


def test_the_cache_worker_is_listed_with_its_heartbeat(dash, tab):
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    page.get_by_role("link", name="Workers").click()
    row = page.locator("table.workers tr[data-kind=cache]").first
    row.wait_for()
    assert row.locator(".badge").inner_text() == "active"
    assert "ago" in row.locator("td[data-label='Last heartbeat']").inner_text()
    # load / capacity: a cache worker runs CACHE_CONCURRENCY (4) jobs at once
    assert "/4" in row.locator("td[data-label=Load]").inner_text()


def test_an_admin_sees_queue_depths_and_the_dead_letter_count(dash, tab):
    admin = edge_login(dash)
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    page.get_by_role("link", name="Queues").click()
    page.locator("table.queues tr[data-queue='jobgate.jobs.cache']").wait_for()
    body = requests.get(f"{dash.edge_url}/api/v1/admin/queues", headers=admin, timeout=10).json()
    shown = page.locator("#dead-letters .stat-value").inner_text()
    assert int(shown) == body["dead_letter"]["messages"]
    cache = page.locator("table.queues tr[data-queue='jobgate.jobs.cache']")
    assert cache.locator("td[data-label=Consumers]").inner_text() == "1"  # the cache worker
    assert page.locator("table.queues tr[data-queue='jobgate.jobs.dead']").count() == 1


def test_a_user_never_sees_another_users_jobs(dash, tab, browser):
    admin = edge_login(dash)
    carol, password = add_user(dash, admin, "carol")
    make_files(dash, "tiny", count=1, size=1000)
    hers = submit_cache(dash, carol, "tiny")
    admins = submit_cache(dash, admin, "tiny")
    wait_job(dash, admin, admins, {"completed"})
    tab.login("carol", password)
    page = tab.page
    page.locator(f'tr[data-job-id="{hers}"]').wait_for()
    page.locator(".live-state[data-state=live]").wait_for()
    assert page.locator(f'tr[data-job-id="{admins}"]').count() == 0
    assert page.locator("#filter-owner").count() == 0  # the owner filter is for admins
    assert page.get_by_role("link", name="Queues").is_hidden()

    # Live: the admin's next job never arrives; hers, submitted after it, does.
    admins_next = submit_cache(dash, admin, "tiny")
    hers_next = submit_cache(dash, carol, "tiny")
    page.locator(f'tr[data-job-id="{hers_next}"]').wait_for(timeout=WAIT_MS)
    wait_job(dash, admin, admins_next, {"completed"})
    wait_job(dash, carol, hers_next, {"completed"})
    page.locator(f'tr[data-job-id="{hers_next}"] .badge', has_text="completed").wait_for()
    assert page.locator(f'tr[data-job-id="{admins_next}"]').count() == 0
    ids = page.locator("table.jobs tbody tr[data-job-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.jobId)"
    )
    assert set(ids) == {hers, hers_next}

    # The admin's job by its address is not found; queues are not a page for her.
    tab.expected.append("the server responded with a status of 404")
    tab.open(f"#/jobs/{admins}")
    page.get_by_role("heading", name="Job not found").wait_for()
    tab.open("#/queues")
    page.get_by_role("heading", name="Not found").wait_for()

    # The admin, meanwhile, sees both users' jobs and may filter by owner.
    other = Tab(browser, dash)
    try:
        other.login("admin", ADMIN_PASSWORD)
        other.page.locator(f'tr[data-job-id="{hers_next}"]').wait_for()
        other.page.locator(f'tr[data-job-id="{admins_next}"]').wait_for()
        other.page.locator("#filter-owner").select_option(label="carol")
        other.page.locator(f'tr[data-job-id="{admins_next}"]').wait_for(state="detached")
        assert other.page.locator(f'tr[data-job-id="{hers_next}"]').count() == 1
        assert not other.problems, other.problems
    finally:
        other.close()


def test_an_api_key_logs_in_and_acts_with_its_own_scopes(dash, tab):
    admin = edge_login(dash)
    r = requests.post(
        f"{dash.edge_url}/api/v1/auth/api-keys",
        json={"name": "dashboard", "scopes": ["jobs:read"]},
        headers=admin,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    page = tab.page
    tab.expected.append("status of 403")  # the page asks whether the key may act as admin
    tab.open()
    page.get_by_text("Log in with an API key instead").click()
    page.get_by_label("API key").fill(r.json()["key"])
    page.get_by_role("button", name="Use this key").click()
    page.locator("#nav").wait_for(state="visible")
    assert page.locator("#who").inner_text() == "admin (user, API key)"
    page.locator("table.jobs tbody tr[data-job-id]").first.wait_for()  # X-API-Key on reads
    page.locator(".live-state[data-state=live]").wait_for()  # and ?token=<key> on the stream
    # An admin's key without the `admin` scope does not act as admin.
    assert page.get_by_role("link", name="Queues").is_hidden()
    assert page.locator("#filter-owner").count() == 0


def test_keyboard_only_at_phone_width(dash, browser, artifacts):
    phone = Tab(browser, dash, width=375, height=740)
    try:
        page = phone.page
        phone.open()
        page.get_by_label("Username").wait_for()
        # The username field has the focus; the rest is typing, Tab and Enter.
        page.keyboard.type("admin")
        page.keyboard.press("Tab")
        page.keyboard.type(ADMIN_PASSWORD)
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Jobs").wait_for()
        page.locator("table.jobs tbody tr[data-job-id]").first.wait_for()
        # After a login the focus is on the view's heading; the top bar is just before it.
        for _ in range(12):
            page.keyboard.press("Shift+Tab")
            if page.evaluate("document.activeElement.textContent") == "Workers":
                break
        else:
            raise AssertionError("the Workers link is not reachable with Tab")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Workers").wait_for()
        page.locator("table.workers tr[data-kind=cache]").first.wait_for()
        page.go_back()
        page.locator("table.jobs tbody tr[data-job-id]").first.wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width}px wide at a phone's 375"
        page.screenshot(path=str(artifacts / "jobs-phone.png"), full_page=True)
        assert not phone.problems, phone.problems
    finally:
        phone.close()


def test_a_schedule_is_switched_off_and_on(dash, tab):
    admin = edge_login(dash)
    r = requests.post(
        f"{dash.edge_url}/api/v1/schedules",
        json={
            "name": "nightly warm-up",
            "kind": "cache",
            "directories": ["tiny"],
            "interval_minutes": 60,
        },
        headers=admin,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    schedule = r.json()
    assert schedule["enabled"] is True
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    page.get_by_role("link", name="Schedules").click()
    switch = page.get_by_role("switch", name="Schedule nightly warm-up enabled")
    switch.wait_for()
    assert switch.get_attribute("aria-checked") == "true"
    switch.click()
    page.locator(f'tr[data-schedule-id="{schedule["id"]}"][data-enabled=false]').wait_for()

    def enabled() -> bool:
        url = f"{dash.edge_url}/api/v1/schedules/{schedule['id']}"
        return requests.get(url, headers=admin, timeout=10).json()["enabled"]

    assert enabled() is False
    switch = page.get_by_role("switch", name="Schedule nightly warm-up enabled")
    assert switch.get_attribute("aria-checked") == "false"
    switch.press("Enter")  # the keyboard does the same
    page.locator(f'tr[data-schedule-id="{schedule["id"]}"][data-enabled=true]').wait_for()
    assert enabled() is True


SESSION = "() => JSON.parse(sessionStorage.getItem('jobgate.dashboard.session'))"


def test_the_access_token_is_refreshed_before_it_expires_and_logout_ends_it(dash, tab):
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    first = page.evaluate(SESSION)
    page.wait_for_function(
        f"old => ({SESSION})().accessToken !== old", arg=first["accessToken"], timeout=WAIT_MS
    )
    second = page.evaluate(SESSION)
    assert second["refreshToken"] != first["refreshToken"]  # rotated
    assert second["expiresAt"] > first["expiresAt"]
    # The new token works for reads and for a new stream.
    page.get_by_role("link", name="Workers").click()
    page.locator("table.workers tr[data-kind=cache]").first.wait_for()
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.locator(".live-state[data-state=live]").wait_for()

    latest = page.evaluate(SESSION)
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("heading", name="Log in to Jobgate").wait_for()
    assert page.evaluate("sessionStorage.getItem('jobgate.dashboard.session')") is None
    assert page.locator("#nav").is_hidden()
    deadline = time.monotonic() + 10  # the logout call is sent as the page moves on
    while time.monotonic() < deadline:
        r = requests.post(
            f"{dash.edge_url}/api/v1/auth/refresh",
            json={"refresh_token": latest["refreshToken"]},
            timeout=10,
        )
        if r.status_code == 401:
            break
        time.sleep(0.2)
    assert r.status_code == 401, "the refresh token was revoked at logout"


# --- /ws/jobs: one stream of all the caller's jobs -----------------------------------------


def ws_url(stack: Stack, query: str) -> str:
    return f"ws://127.0.0.1:{stack.edge_port}/ws/jobs?{query}"


def read_until(ws, done, *, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Messages until `done(message)` is true (failing after `timeout` seconds)."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"stream never finished: {messages[-5:]}")
        messages.append(json.loads(ws.recv(timeout=left)))
        if done(messages[-1]):
            return messages


def test_ws_jobs_streams_own_jobs_to_users_and_every_job_to_admins(dash):
    admin = edge_login(dash)
    dave, _ = add_user(dash, admin, "dave")
    token = lambda h: h["Authorization"].split()[1]  # noqa: E731
    make_files(dash, "streamed", count=6)
    with (
        connect(ws_url(dash, f"token={token(dave)}"), open_timeout=10) as mine,
        connect(ws_url(dash, f"token={token(admin)}"), open_timeout=10) as everything,
        connect(ws_url(dash, f"token={token(admin)}&kind=task"), open_timeout=10) as tasks,
    ):
        for ws, scope in ((mine, "own"), (everything, "all"), (tasks, "all")):
            hello = json.loads(ws.recv(timeout=10))
            assert hello["type"] == "subscribed" and hello["scope"] == scope
        admins = submit_cache(dash, admin, "streamed")
        daves = submit_cache(dash, dave, "streamed")

        def finished(m: dict[str, Any]) -> bool:
            return m.get("job_id") == daves and m.get("event") in {"completed", "failed"}

        seen = read_until(mine, finished)
        admin_seen = read_until(everything, finished)
        # The task-only stream saw none of it (a ping-free second of silence).
        with pytest.raises(TimeoutError):
            tasks.recv(timeout=1.0)

    assert {m["job_id"] for m in seen} == {daves}, "dave saw only his own job"
    events = [m["event"] for m in seen if m["type"] == "status"]
    assert events == ["created", "started", "completed"]
    assert seen[-1]["progress"] == 100 and seen[-1]["owner_id"]
    ticks = [m for m in seen if m["type"] == "progress"]
    assert ticks and all(m["kind"] == "cache" and 0 <= m["progress"] <= 100 for m in ticks)
    assert {m["job_id"] for m in admin_seen if m["type"] == "status"} == {admins, daves}
    admin_events = [
        m["event"] for m in admin_seen if m["type"] == "status" and m["job_id"] == admins
    ]
    assert admin_events[0] == "created" and "completed" in admin_events


def test_ws_jobs_refuses_missing_credentials_and_unknown_kinds(dash):
    admin = edge_login(dash)
    token = admin["Authorization"].split()[1]
    for query, status in (("", 401), ("token=not-a-token", 401), (f"token={token}&kind=nope", 400)):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(dash, query), open_timeout=10)
        assert refused.value.response.status_code == status
        body = json.loads(refused.value.response.body or b"{}")
        assert body["error"]["code"] == ("UNAUTHORIZED" if status == 401 else "INVALID_REQUEST")


# --- pictures ----------------------------------------------------------------------------


def test_screenshots_of_every_view_are_saved(dash, tab, artifacts):
    admin = edge_login(dash)
    make_files(dash, "00_Media/Farm", count=40)
    tab.login("admin", ADMIN_PASSWORD)
    page = tab.page
    page.locator(".live-state[data-state=live]").wait_for()
    running = submit_cache(dash, admin, "00_Media/Farm")  # caught mid-way, for the picture
    page.wait_for_function(
        "id => Number(document.querySelector(`tr[data-job-id='${id}'] progress`)"
        "?.dataset.value) >= 30",
        arg=running,
        timeout=WAIT_MS,
    )
    shots = {"jobs.png": None}
    page.screenshot(path=str(artifacts / "jobs.png"))
    r = requests.post(f"{dash.edge_url}/api/v1/jobs/{running}/cancel", headers=admin, timeout=10)
    assert r.status_code == 200, r.text
    for view, ready in (
        ("workers", "table.workers tr[data-kind]"),
        ("queues", "table.queues tr[data-queue]"),
        ("schedules", "table.schedules tbody tr"),
        ("analytics", "svg.chart"),
    ):
        tab.open(f"#/{view}")
        page.locator(ready).first.wait_for()
        page.screenshot(path=str(artifacts / f"{view}.png"), full_page=True)
        shots[f"{view}.png"] = None
    for name in shots:
        assert (artifacts / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    if os.environ.get("JOBGATE_DOCS_SCREENSHOT"):
        shutil.copyfile(artifacts / "jobs.png", REPO / "docs" / "dashboard.png")
