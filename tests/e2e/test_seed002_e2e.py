"""Seed 002 as its users drive it, through the real processes (gunicorn gateway, scrape
worker) and a local feed server standing in for the video site: the document's own Python,
JavaScript and cURL examples, run as written with `API_URL` pointed at the gateway. The
seed's "Authentication" section asks for `X-API-Key`; its short examples leave the header
out, so the test adds it to every request around the example code, never inside it."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import DEMO_KEY, wait_status
from tests.feeds import FeedServer, feed_videos
from tests.media import make_video

SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "002_5c4579d6e25f5b1c.txt"
KEY = {"X-API-Key": DEMO_KEY}
NEWEST = dt.datetime(2025, 1, 10, 12, tzinfo=dt.UTC)


def example(language: str) -> str:
    """The seed's SDK example in `language` (the fenced block under "### Python" etc.)."""
    text = SEED.read_text()
    heading = {"python": "### Python", "javascript": "### JavaScript", "bash": "### cURL"}
    section = text[text.index(heading[language]) :]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def feeds(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", seconds=1)
    server = FeedServer(clip).start()
    server.add("profile", "khaby.lame", feed_videos(3, newest=NEWEST, step=dt.timedelta(days=1)))
    yield server
    server.close()


@pytest.fixture
def seed_stack(make_stack, feeds):
    stack = make_stack(SCRAPE_PROFILE_URL=feeds.profile_url, SCRAPE_HASHTAG_URL=feeds.hashtag_url)
    stack.start_worker("scrape")
    return stack


@pytest.mark.e2e
def test_the_seeds_python_example(seed_stack):
    code = example("python").replace("http://localhost:8000/api/v1", f"{seed_stack.url}/api/v1")
    prelude = (
        "import requests\n"
        "_session = requests.Session()\n"
        f"_session.headers['X-API-Key'] = {DEMO_KEY!r}\n"
        "requests.post, requests.get = _session.post, _session.get\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"Progress: \d+%\n", out.stdout), out.stdout
    jobs = requests.get(f"{seed_stack.url}/api/v1/jobs", headers=KEY, timeout=10).json()
    [job] = jobs
    url = f"{seed_stack.url}/api/v1/jobs/{job['id']}"
    wait_status(url, KEY, {"completed"})
    done = requests.get(url, headers=KEY, timeout=10).json()
    assert done["job"]["successful_downloads"] == 3 and done["job"]["progress"] == 100
    assert {v["id"] for v in done["videos"]} == {v for v in _feed_ids()}
    link = done["drive_links"][0]
    assert re.fullmatch(r"TikTok/profile/khaby\.lame/2025/01", link["folder_path"])
    video = requests.get(f"{seed_stack.url}{link['video_link']}", headers=KEY, timeout=10)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    meta = requests.get(f"{seed_stack.url}{link['metadata_link']}", headers=KEY, timeout=10)
    assert json.loads(meta.content)["id"] == link["video_id"]


def _feed_ids() -> set[str]:
    return {v.id for v in feed_videos(3, newest=NEWEST, step=dt.timedelta(days=1))}


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs the JavaScript example")
def test_the_seeds_javascript_example(seed_stack, tmp_path):
    code = example("javascript").replace("http://localhost:8000/api/v1", f"{seed_stack.url}/api/v1")
    prelude = (
        "const _fetch = globalThis.fetch;\n"
        "globalThis.fetch = (url, options = {}) => _fetch(url, "
        f"{{...options, headers: {{...(options.headers || {{}}), 'X-API-Key': '{DEMO_KEY}'}}}});\n"
    )
    script = tmp_path / "example.mjs"
    script.write_text(prelude + code)
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"Progress: \d+%\n", out.stdout), out.stdout


@pytest.mark.e2e
def test_the_seeds_curl_examples(seed_stack, tmp_path):
    script = example("bash").replace("http://localhost:8000", seed_stack.url)
    # Each example's `curl` gets the key; `{job_id}` becomes the job the first one created.
    script = script.replace("curl ", f"curl -sS -f -H 'X-API-Key: {DEMO_KEY}' ")
    create, get_status, list_videos = (
        part.strip() for part in re.split(r"\n# .*\n", "\n" + script) if part.strip()
    )
    created = subprocess.run(["bash", "-c", create], capture_output=True, text=True, timeout=30)
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)
    assert job["mode"] == "profile" and job["value"] == "khaby.lame" and job["limit"] == 50
    assert job["status"] == "pending" and job["progress"] == 0
    wait_status(f"{seed_stack.url}/api/v1/jobs/{job['id']}", KEY, {"completed"})
    status = subprocess.run(
        ["bash", "-c", get_status.replace("{job_id}", job["id"])],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["job"]["status"] == "completed" and len(body["videos"]) == 3
    listed = subprocess.run(["bash", "-c", list_videos], capture_output=True, text=True, timeout=30)
    videos = json.loads(listed.stdout)
    assert videos["total"] == 3 and len(videos["videos"]) == 3
    assert {v["author_username"] for v in videos["videos"]} <= {"khaby.lame", None}


NODE_PATH = Path(__file__).resolve().parents[1] / "js" / "node_modules"


@pytest.mark.e2e
@pytest.mark.skipif(not NODE_PATH.is_dir(), reason="tests/js not installed (make test does it)")
def test_the_seeds_websocket_example(seed_stack, tmp_path):
    """ "WebSocket Support (Future)", through the edge: the `ws` package is its WebSocket
    under Node.js 20, given the API key around the example, as the other examples are."""
    seed_stack.start_stats()
    seed_stack.start_edge()
    r = requests.post(
        f"{seed_stack.url}/api/v1/jobs",
        json={"mode": "profile", "value": "khaby.lame", "limit": 3},
        headers=KEY,
    )
    assert r.status_code == 201, r.text
    text = SEED.read_text()
    section = text[text.index("## WebSocket Support (Future)") :]
    code = re.search(r"```javascript\n(.*?)```", section, re.S).group(1)
    code = code.replace("ws://localhost:8000", seed_stack.edge_url.replace("http://", "ws://"))
    code = code.replace("{job_id}", r.json()["id"])
    prelude = (
        "const WebSocket = class extends require('ws') {\n"
        "  constructor(url, protocols, options = {}) {\n"
        f"    super(url, protocols, {{...options, headers: {{'X-API-Key': '{DEMO_KEY}'}}}});\n"
        "  }\n};\n"
    )
    out = subprocess.run(
        ["node", "-e", prelude + code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODE_PATH": str(NODE_PATH)},
    )
    assert out.returncode == 0, out.stderr  # node exits once the server closes the stream
    progress = [line.removeprefix("Progress: ") for line in out.stdout.splitlines()]
    numbers = [int(p) for p in progress if p != "undefined"]  # per-file messages have none
    assert numbers == sorted(numbers) and numbers[-1] == 100, out.stdout
