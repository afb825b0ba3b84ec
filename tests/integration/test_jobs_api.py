"""The canonical job API (/api/v1/jobs) through the gateway: submit any kind, read, list,
cancel, retry, logs, idempotency keys, and the 400s its inputs can earn."""

from __future__ import annotations

import pytest

from jobgate import db as jobgate_db
from tests.integration.conftest import DEMO, upload

pytestmark = pytest.mark.usefixtures("filespace")


def test_canonical_submit_read_cancel_retry_and_logs(client):
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "cache", "directories": ["00_Media/Farm"], "priority": 8, "max_attempts": 2},
        headers=DEMO,
    )
    assert r.status_code == 201, r.json
    job = r.json
    assert job["kind"] == "cache" and job["status"] == "pending" and job["priority"] == 8
    assert job["max_attempts"] == 2 and job["progress_detail"]["items_total"] == 3
    assert job["progress_detail"]["bytes_total_readable"] == "2.93 KB"
    assert job["progress"] == 0  # the overall percentage, as seed 002's clients read it
    got = client.get(f"/api/v1/jobs/{job['id']}", headers=DEMO).json
    assert got["job"]["id"] == job["id"] and got["job"]["progress_detail"]["items_total"] == 3
    r = client.post(f"/api/v1/jobs/{job['id']}/retry", headers=DEMO)
    assert r.status_code == 409 and r.json["error"]["code"] == "CONFLICT"
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=DEMO)
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    r = client.post(f"/api/v1/jobs/{job['id']}/retry", headers=DEMO)
    assert r.status_code == 200 and r.json["status"] == "pending" and r.json["attempt"] == 0
    assert client.get(f"/api/v1/jobs/{job['id']}/logs", headers=DEMO).json["logs"] == []
    r = client.get("/api/v1/jobs?kind=cache&status=pending&sort=priority&order=asc", headers=DEMO)
    assert r.headers["X-Total-Count"] == "1" and [j["id"] for j in r.json] == [job["id"]]


def test_unknown_kind_and_bad_options_are_400(client):
    r = client.post("/api/v1/jobs", json={"kind": "teleport"}, headers=DEMO)
    assert r.status_code == 400 and "teleport" in r.json["error"]["message"]
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "cache", "files": ["00_Media/video.mp4"], "priority": 42},
        headers=DEMO,
    )
    assert r.status_code == 400 and "priority" in r.json["error"]["details"]["fields"]
    assert r.json["detail"] == [
        {
            "loc": ["body", "priority"],
            "msg": "Must be greater than or equal to 0 and less than or equal to 9.",
            "type": "value_error",
        }
    ]
    r = client.post("/api/v1/jobs", json={"kind": "cache", "filez": ["x"]}, headers=DEMO)
    assert (
        r.status_code == 400
        and {"loc": ["body", "filez"], "msg": "Unknown field.", "type": "value_error"}
        in r.json["detail"]
    )


def test_idempotency_key_replays_and_conflicts(client):
    headers = {**DEMO, "Idempotency-Key": "order-42"}
    body = {"kind": "cache", "files": ["00_Media/video.mp4"]}
    first = client.post("/api/v1/jobs", json=body, headers=headers)
    again = client.post("/api/v1/jobs", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json["id"] == again.json["id"]
    other = client.post("/api/v1/jobs", json={**body, "recursive": False}, headers=headers)
    assert other.status_code == 409


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("get", "/api/v1/jobs?offset=99999999999999999999", {}),
        ("get", "/api/v1/cache/jobs?offset=99999999999999999999", {}),
        ("get", "/api/v1/jobs?limit=-1", {}),
        ("get", "/api/v1/jobs?created_since=yesterday", {}),
        ("post", "/api/v1/cache/jobs", {"json": {"files": ["a\ud800b"]}}),
        (
            "post",
            "/api/v1/jobs",
            {"json": {"kind": "cache", "files": ["x"]}, "headers": {"Idempotency-Key": "k" * 300}},
        ),
        ("post", "/api/v1/jobs", {"json": {"kind": ["cache"]}}),
        (
            "post",
            "/api/v1/jobs",
            {"json": {"kind": "cache", "files": ["x"], "max_attempts": "lots"}},
        ),
    ],
)
def test_odd_inputs_are_400_not_500(client, method, url, kwargs):
    headers = {**DEMO, **kwargs.pop("headers", {})}
    r = getattr(client, method)(url, headers=headers, **kwargs)
    assert r.status_code == 400, r.data
    assert r.is_json


def test_canonical_convert_job_validates_its_input(client, video):
    file_id = upload(client, "clip.mp4", video.read_bytes()).json["id"]
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "convert", "input_file": file_id, "bitrate": "128k"},
        headers=DEMO,
    )
    assert r.status_code == 201 and r.json["params"]["bitrate"] == "128k"
    r = client.post(
        "/api/v1/jobs",
        json={"kind": "convert", "input_file": file_id, "bitrate": "7k"},
        headers=DEMO,
    )
    assert r.status_code == 400
    r = client.post("/api/v1/jobs", json={"kind": "convert", "input_file": "nope"}, headers=DEMO)
    assert r.status_code == 400


def test_list_is_an_array_with_total_and_page_links(client):
    ids = [
        client.post("/api/v1/jobs", json={"kind": "cache", "files": [f]}, headers=DEMO).json["id"]
        for f in (f"00_Media/Farm/ProRes422/Farm0010{i}.mov" for i in range(3))
    ]
    r = client.get("/api/v1/jobs?limit=1&offset=1&order=asc&kind=cache", headers=DEMO)
    assert r.status_code == 200 and [j["id"] for j in r.json] == ids[1:2]
    assert r.headers["X-Total-Count"] == "3"
    links = {part.split("; ")[1]: part.split("; ")[0] for part in r.headers["Link"].split(", ")}
    assert set(links) == {'rel="first"', 'rel="prev"', 'rel="next"', 'rel="last"'}
    assert "offset=2" in links['rel="next"'] and "offset=0" in links['rel="prev"']
    assert "offset=2" in links['rel="last"'] and "kind=cache" in links['rel="next"']


def test_delete_removes_the_job_and_its_outputs(client, gateway_app, db, tmp_path):
    from tests.factories.files import make_output

    job = client.post(
        "/api/v1/jobs", json={"kind": "cache", "files": ["00_Media/video.mp4"]}, headers=DEMO
    ).json
    mp3 = tmp_path / "out.mp3"
    mp3.write_bytes(b"ID3" + b"\0" * 100)
    storage = gateway_app.extensions["jobgate"].storage
    output = make_output(db, storage, job, mp3)
    assert storage.path(output["storage_key"]).exists()
    r = client.delete(f"/api/v1/jobs/{job['id']}", headers=DEMO)
    assert r.status_code == 204 and r.data == b""
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=DEMO).status_code == 404
    assert client.get(f"/api/v1/files/{output['id']}", headers=DEMO).status_code == 404
    assert not storage.path(output["storage_key"]).exists()
    r = client.delete(f"/api/v1/jobs/{job['id']}", headers=DEMO)
    assert r.status_code == 404 and r.json["detail"] == "Job not found"


@pytest.mark.parametrize("files", [2, 1001])
def test_a_job_its_items_and_its_message_are_written_together(client, db, filespace, files):
    """Up to 1,000 items the job, its items and its outbox message are one statement; more
    go page by page in one transaction. Either way all of it, once, and the key replays."""
    folder = filespace / "many"
    folder.mkdir()
    for i in range(files):
        (folder / f"f{i:04d}.bin").write_bytes(b"x" * (i % 7 + 1))
    body = {"kind": "cache", "directories": ["many"], "priority": 7}
    headers = {**DEMO, "Idempotency-Key": f"items-{files}"}
    r = client.post("/api/v1/jobs", json=body, headers=headers)
    assert r.status_code == 201, r.json
    job = r.json
    assert job["progress_detail"]["items_total"] == files
    with db.transaction() as conn:
        items = jobgate_db.fetch_all(
            conn,
            "SELECT seq, key, size FROM job_items WHERE job_id = %s ORDER BY seq",
            (job["id"],),
        )
        events = jobgate_db.fetch_all(
            conn, "SELECT event FROM job_events WHERE job_id = %s", (job["id"],)
        )
    assert [i["seq"] for i in items] == list(range(files))
    assert items[-1]["key"] == f"many/f{files - 1:04d}.bin"
    assert sum(i["size"] for i in items) == job["progress_detail"]["bytes_total"]
    assert [e["event"] for e in events] == ["created"]
    again = client.post("/api/v1/jobs", json=body, headers=headers)
    assert again.status_code == 200 and again.json["id"] == job["id"]
    with db.transaction() as conn:
        count = jobgate_db.fetch_one(
            conn, "SELECT count(*) AS n FROM job_items WHERE job_id = %s", (job["id"],)
        )
    assert count["n"] == files
