"""Uploads and downloads of the client, streamed from and to disk: the multipart body a
server parses back to the same bytes (sent with a Content-Length, read as it goes), and a
download that resumes with `Range` after its connection drops."""

from __future__ import annotations

import hashlib
import io
import os

from werkzeug.formparser import parse_form_data

from jobgate_client.transfer import MultipartFile
from tests.unit.test_client_transport import Reply, Seen, make_client, server  # noqa: F401


def parse(body: bytes, content_type: str):
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    _stream, form, files = parse_form_data(environ)
    return form, files


def test_the_multipart_body_is_read_from_disk_in_pieces(tmp_path):
    data = os.urandom(300_000)
    source = tmp_path / "clip.mp4"
    source.write_bytes(data)
    seen: list[tuple[int, int | None]] = []
    body = MultipartFile(
        source,
        filename="holiday “2024”.mp4",
        fields={"path": "/a"},
        progress=lambda d, t: seen.append((d, t)),
    )
    chunks = []
    while chunk := body.read(65536):
        assert len(chunk) <= 65536
        chunks.append(chunk)
    raw = b"".join(chunks)
    assert len(raw) == len(body), "the announced length is what is sent"
    form, files = parse(raw, body.content_type)
    assert form["path"] == "/a"
    assert files["file"].filename == "holiday “2024”.mp4"
    assert files["file"].read() == data
    assert seen[-1] == (len(data), len(data)) and len(seen) > 1


def test_an_upload_is_sent_with_a_content_length_and_not_chunked(server, tmp_path):  # noqa: F811
    data = os.urandom(100_000)
    (tmp_path / "v.mp4").write_bytes(data)
    server.handler = lambda seen: Reply(201, {"id": "f1", "size": len(seen.body)})
    client, _ = make_client(server.url)
    info = client.files.upload(tmp_path / "v.mp4")
    request = server.seen[0]
    assert "Transfer-Encoding" not in request.headers
    assert int(request.headers["Content-Length"]) == len(request.body) == info["size"]
    _form, files = parse(request.body, request.headers["Content-Type"])
    assert files["file"].read() == data


def test_a_dropped_download_resumes_with_range(server, tmp_path):  # noqa: F811
    data = os.urandom(2_000_000)
    etag = '"' + hashlib.sha256(data).hexdigest() + '"'
    disposition = "attachment; filename*=UTF-8''out%20put.mp3"

    def handle(seen: Seen) -> Reply:
        wanted = seen.headers.get("Range")
        if wanted is None:  # the first try: the connection drops at 700 kB
            headers = {"ETag": etag, "Content-Disposition": disposition}
            return Reply(200, data, headers=headers, cut_after=700_000)
        assert seen.headers.get("If-Range") == etag
        start = int(wanted.removeprefix("bytes=").rstrip("-"))
        headers = {"ETag": etag, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        return Reply(206, data[start:], headers=headers)

    server.handler = handle
    client, sleeps = make_client(server.url)
    progress: list[tuple[int, int | None]] = []
    path = client.files.download("f1", tmp_path, progress=lambda d, t: progress.append((d, t)))
    assert path == tmp_path / "out put.mp3"
    assert path.read_bytes() == data
    resumed_at = int(server.seen[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 700_000, "from what was written, not from the start"
    assert progress[-1] == (len(data), len(data)) and len(sleeps) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out put.mp3"], "no .part left"


def test_a_download_to_a_file_path_uses_that_name(server, tmp_path):  # noqa: F811
    server.handler = lambda seen: Reply(200, b"abc", headers={"Content-Disposition": "x"})
    client, _ = make_client(server.url)
    target = tmp_path / "mine.bin"
    assert client.jobs.download_output("j1", "a b.mp3", target) == target
    assert target.read_bytes() == b"abc"
    assert server.seen[0].path == "/api/v1/jobs/j1/output/a%20b.mp3"
