"""Uploads through the gateway's /api/v1/files: streamed to storage, checked, probed; downloads
with Range and ETag; ownership. Real auth-service, PostgreSQL, ffmpeg."""

from __future__ import annotations

import hashlib
import io

import pytest

from tests.integration.conftest import DEMO, leftovers, make_api_user, upload


def test_upload_records_size_hash_type_and_media(client, gateway_app, video):
    data = video.read_bytes()
    r = upload(client, "clip.mp4", data)
    assert r.status_code == 201, r.json
    body = r.json
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["content_type"] == "video/mp4" and body["filename"] == "clip.mp4"
    assert body["media"]["has_audio"] is True and abs(body["media"]["duration_s"] - 2.0) < 0.1
    assert client.get(f"/api/v1/files/{body['id']}", headers=DEMO).json["sha256"] == body["sha256"]
    assert leftovers(gateway_app) == []


def test_download_supports_range_etag_and_disposition(client, video):
    data = video.read_bytes()
    file_id = upload(client, "clip.mp4", data).json["id"]
    url = f"/api/v1/files/{file_id}/content"
    full = client.get(url, headers=DEMO)
    assert full.status_code == 200 and full.data == data
    assert "attachment; filename=clip.mp4" in full.headers["Content-Disposition"]
    part = client.get(url, headers={**DEMO, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    etag = full.headers["ETag"]
    assert client.get(url, headers={**DEMO, "If-None-Match": etag}).status_code == 304


def test_oversize_upload_is_413_json_before_reading(client, gateway_app):
    r = upload(client, "big.mp4", b"\0" * (2 * 1024 * 1024))
    assert r.status_code == 413 and r.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert leftovers(gateway_app) == []


def test_oversize_upload_without_length_is_413_while_counting(client, gateway_app):
    boundary = "XyZ"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + b"\0" * (2 * 1024 * 1024)
        + f"\r\n--{boundary}--\r\n".encode()
    )

    # No Content-Length: the body is counted as it streams (gunicorn marks such input
    # terminated, as it does for chunked requests).
    r = client.post(
        "/api/v1/files",
        input_stream=io.BytesIO(body),
        headers={**DEMO, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert r.status_code == 413, r.data
    assert r.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert leftovers(gateway_app) == []


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.txt", b"hello", "not allowed"),
        ("noext", b"hello", "no extension"),
        ("fake.mp4", b"this is a text file, renamed" * 10, "not a readable video"),
        ("empty.mp4", b"", "empty"),
    ],
)
def test_bad_uploads_are_400_and_leave_nothing(client, gateway_app, name, data, message):
    r = upload(client, name, data)
    assert r.status_code == 400, r.json
    assert message in r.json["error"]["message"]
    assert leftovers(gateway_app) == []


def test_upload_needs_credentials_and_multipart(client, video):
    assert upload(client, "clip.mp4", b"x", headers={}).status_code == 401
    assert upload(client, "clip.mp4", b"x", url="/upload", headers={}).status_code == 401
    r = client.post("/api/v1/files", json={"file": "x"}, headers=DEMO)
    assert r.status_code == 400 and "multipart" in r.json["error"]["message"]


def test_other_users_files_are_404(client, admin, video):
    file_id = upload(client, "clip.mp4", video.read_bytes()).json["id"]
    mallory = make_api_user(client, admin, "mallory")
    assert client.get(f"/api/v1/files/{file_id}", headers=mallory).status_code == 404
    assert client.get(f"/api/v1/files/{file_id}/content", headers=mallory).status_code == 404
    r = client.post(
        "/api/v1/jobs", json={"kind": "convert", "input_file": file_id}, headers=mallory
    )
    assert r.status_code == 400 and "not one of your uploads" in r.json["error"]["message"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("a\r\nb.mp4", "ab.mp4"),
        ("bad\x00name.mp4", "badname.mp4"),
        ("../../etc/clip.mp4", "clip.mp4"),
        ("x" * 400 + ".mp4", "x" * 251 + ".mp4"),
    ],
)
def test_file_names_are_cleaned_and_stay_downloadable(client, video, sent, kept):
    from urllib.parse import quote

    # RFC 5987 encoding carries any character, as a hostile client would send it.
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f"filename*=UTF-8''{quote(sent, safe='')}\r\nContent-Type: video/mp4\r\n\r\n"
        ).encode()
        + video.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = client.post(
        "/api/v1/files",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        headers=DEMO,
    )
    assert r.status_code == 201, r.json
    assert r.json["filename"] == kept
    download = client.get(f"/api/v1/files/{r.json['id']}/content", headers=DEMO)
    assert download.status_code == 200


def test_one_file_per_request(client, gateway_app, video):
    data = video.read_bytes()
    r = client.post(
        "/api/v1/files",
        data={"file": [(io.BytesIO(data), "a.mp4"), (io.BytesIO(data), "b.mp4")]},
        content_type="multipart/form-data",
        headers=DEMO,
    )
    assert r.status_code == 400 and "one file" in r.json["error"]["message"]
    assert leftovers(gateway_app) == []
