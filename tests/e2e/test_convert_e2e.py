"""MP4 -> MP3 through the whole running stack: gunicorn gateway and auth-service, a convert
worker process, real ffmpeg, PostgreSQL and RabbitMQ (seed 001's routes and the canonical API)."""

from __future__ import annotations

import datetime as dt
import signal
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from jobgate.media import probe
from tests.e2e.conftest import login, wait_status
from tests.media import make_long_video, make_video, mp3_header_ok

pytestmark = pytest.mark.e2e
LONG_SECONDS = 1200


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return {
        "short": make_video(root / "holiday.mp4", seconds=4),
        "long": make_long_video(root / "lecture.mp4", seconds=LONG_SECONDS),
    }


@pytest.fixture
def convert_stack(make_stack):
    # Storing an MP3 fsyncs it, and on a busy disk that can hold PostgreSQL's commits for
    # seconds: a 3 s lease (the e2e default) then expires under a live worker.
    stack = make_stack(
        MAX_FILE_SIZE="200", CONVERT_PROGRESS_INTERVAL_MS="200", JOB_LEASE_SECONDS="8"
    )
    stack.start_worker("convert")
    return stack


def upload(stack, headers, path, url="/upload", name=None):
    with open(path, "rb") as f:
        return requests.post(
            f"{stack.url}{url}", files={"file": (name or path.name, f)}, headers=headers
        )


def test_upload_convert_download(convert_stack, clips, tmp_path):
    stack, token = convert_stack, login(convert_stack)
    r = upload(stack, token, clips["short"])
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued" and r.json()["filename"] == "holiday.mp4"
    job_id = r.json()["job_id"]
    done = wait_status(f"{stack.url}/status/{job_id}", token, {"completed", "failed"})
    assert done["status"] == "completed", done["error"]
    assert done["progress"] == 100 and done["filename"] == "holiday.mp3" and done["completed_at"]
    r = requests.get(f"{stack.url}/download/{job_id}", headers=token)
    assert r.status_code == 200 and r.headers["Content-Type"] == "audio/mpeg"
    assert "holiday.mp3" in r.headers["Content-Disposition"]
    assert mp3_header_ok(r.content)
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(r.content)
    assert abs(probe(mp3).duration_s - probe(clips["short"]).duration_s) <= 0.1
    # A Range request gets exactly those bytes.
    part = requests.get(
        f"{stack.url}/download/{job_id}", headers={**token, "Range": "bytes=10-109"}
    )
    assert part.status_code == 206 and part.content == r.content[10:110]
    # The canonical API lists the same output.
    listed = requests.get(f"{stack.url}/api/v1/jobs/{job_id}/output", headers=token).json()
    assert [f["filename"] for f in listed["files"]] == ["holiday.mp3"]
    same = requests.get(f"{stack.url}{listed['files'][0]['download_url']}", headers=token)
    assert same.content == r.content


def test_bad_uploads(convert_stack, tmp_path):
    stack, token = convert_stack, login(convert_stack)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video at all\n" * 100)
    r = upload(stack, token, fake)
    assert r.status_code == 400 and "not a readable video" in r.json()["error"]["message"]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    r = upload(stack, token, text)
    assert r.status_code == 400 and "not allowed" in r.json()["error"]["message"]
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (201 * 1024 * 1024))
    started = time.monotonic()
    r = upload(stack, token, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert time.monotonic() - started < 5


def test_tokens_and_ownership(convert_stack, clips):
    stack = convert_stack
    admin = login(stack)
    assert upload(stack, {}, clips["short"]).status_code == 401
    token = admin["Authorization"].split()[1]
    header, payload, sig = token.split(".")
    tampered = {"Authorization": f"Bearer {header}.{payload}.{sig[::-1]}"}
    assert upload(stack, tampered, clips["short"]).status_code == 401
    # An expired token signed with the real key: refused as expired.
    pem = (stack.workdir / "keys" / "jwt-private.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["exp"] = int((dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)).timestamp())
    expired = jwt.encode(
        claims, key, algorithm="RS256", headers={"kid": jwt.get_unverified_header(token)["kid"]}
    )
    r = upload(stack, {"Authorization": f"Bearer {expired}"}, clips["short"])
    assert r.status_code == 401 and r.json()["error"]["message"] == "Token expired"
    # Another user's job is not found, for status and download alike.
    job_id = upload(stack, admin, clips["short"]).json()["job_id"]
    requests.post(
        f"{stack.url}/api/v1/auth/users",
        json={"username": "eve", "password": "password-eve"},
        headers=admin,
    )
    eve = login(stack, "eve", "password-eve")
    assert requests.get(f"{stack.url}/status/{job_id}", headers=eve).status_code == 404
    assert requests.get(f"{stack.url}/download/{job_id}", headers=eve).status_code == 404


@pytest.mark.slow
def test_cancel_during_a_long_conversion(convert_stack, clips):
    stack, token = convert_stack, login(convert_stack)
    job_id = upload(stack, token, clips["long"]).json()["job_id"]
    wait_status(f"{stack.url}/status/{job_id}", token, {"running"}, min_progress=1)
    r = requests.post(f"{stack.url}/api/v1/jobs/{job_id}/cancel", headers=token)
    assert r.status_code == 200
    asked = time.monotonic()
    done = wait_status(
        f"{stack.url}/status/{job_id}", token, {"cancelled", "completed", "failed"}, timeout=10
    )
    assert done["status"] == "cancelled"
    assert time.monotonic() - asked < 1.5
    assert done["progress"] < 100


@pytest.mark.slow
def test_worker_killed_mid_conversion_completes_after_restart(convert_stack, clips, tmp_path):
    stack, token = convert_stack, login(convert_stack)
    job_id = upload(stack, token, clips["long"]).json()["job_id"]
    wait_status(f"{stack.url}/status/{job_id}", token, {"running"}, min_progress=10)
    worker = stack.procs["worker-convert"]
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    stack.start_worker("convert", name="worker-convert-2")
    done = wait_status(f"{stack.url}/status/{job_id}", token, {"completed", "failed"}, timeout=90)
    assert done["status"] == "completed", done["error"]
    mp3 = tmp_path / "lecture.mp3"
    mp3.write_bytes(requests.get(f"{stack.url}/download/{job_id}", headers=token).content)
    assert abs(probe(mp3).duration_s - LONG_SECONDS) <= 0.1
    job = requests.get(f"{stack.url}/api/v1/jobs/{job_id}", headers=token).json()["job"]
    assert job["attempt"] == 2


def test_health_and_upload_stats(convert_stack, clips):
    stack = convert_stack
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = requests.get(f"{stack.url}/health").json()
        if health["services"]["converter"] == "connected":
            break
        time.sleep(0.2)
    assert health["status"] == "healthy"
    assert health["services"] == {
        "auth": "connected",
        "converter": "connected",
        "rabbitmq": "connected",
        "database": "connected",
    }
    token = login(stack)
    upload(stack, token, clips["short"])
    stats = requests.get(f"{stack.url}/stats/uploads", headers=token).json()["uploads"]
    assert stats["count"] == 1 and stats["bytes"] == clips["short"].stat().st_size
    metrics = requests.get(f"{stack.url}/metrics").text
    assert "jobgate_uploads_total" in metrics and 'jobgate_jobs{kind="convert"' in metrics


def test_interrupted_upload_leaves_no_file_or_row(convert_stack, db):
    import socket

    stack, token = convert_stack, login(convert_stack)
    boundary = "cut"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    declared = len(head) + 10 * 1024 * 1024 + len(f"\r\n--{boundary}--\r\n")
    request = (
        f"POST /api/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {token['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", stack.gateway_port)) as sock:
        sock.sendall(request + head + b"\0" * (2 * 1024 * 1024))
        time.sleep(0.5)  # the gateway is now writing the part to storage
    tmp = stack.workdir / "storage" / "tmp"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(tmp.iterdir()):
        time.sleep(0.1)
    assert list(tmp.iterdir()) == []
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM files")
        assert cur.fetchone()["n"] == 0
