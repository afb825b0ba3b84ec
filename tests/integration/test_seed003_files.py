"""Seed 003's /api/files through the gateway: upload, info and download by path in each
owner's namespace (any file type), replacement at a taken path, path escapes refused, the
`containers` scope. Real auth-service, PostgreSQL and storage."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jobgate import files
from jobgate.jobs import job_items
from tests.factories.files import make_path_file
from tests.factories.jobs import make_job
from tests.helpers import create_user
from tests.integration.conftest import DEMO, leftovers, login, make_api_user

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4  # 1033 bytes, not media: no probe refuses it
INFO_FIELDS = {"path", "size", "mime_type", "created_at", "modified_at", "etag", "permissions"}


def put(
    client: Any,
    path: str | None,
    data: bytes,
    *,
    headers: dict[str, str] | None = None,
    name: str = "local-name.bin",
    **fields: str,
) -> Any:
    """POST /api/files/upload with `file` (named `name` on the client side), `path` and
    whatever other form `fields`; the demo key unless other `headers` are given."""
    form: dict[str, Any] = {"file": (io.BytesIO(data), name), **fields}
    if path is not None:
        form["path"] = path
    return client.post(
        "/api/files/upload",
        data=form,
        content_type="multipart/form-data",
        headers=DEMO if headers is None else headers,
    )


def container_user(client: Any, admin: dict[str, str], name: str) -> dict[str, str]:
    """A plain user holding the `containers` scope, logged in: its bearer headers."""
    password = "password-" + name
    create_user(
        client,
        admin,
        url="/api/v1/auth/users",
        username=name,
        password=password,
        scopes=["jobs:read", "jobs:write", "containers"],
    )
    return login(client, name, password)


def user_row(db: Any, username: str) -> dict[str, Any]:
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM users WHERE username = %s", (username,))
        return cur.fetchone()


def rows_of(db: Any) -> list[dict[str, Any]]:
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM files ORDER BY created_at, updated_at")
        return list(cur.fetchall())


def stored_objects(gateway_app: Any) -> list[Path]:
    objects = gateway_app.extensions["jobgate"].storage.objects
    return [p for p in objects.rglob("*") if p.is_file()]


def parse_time(text: str) -> dt.datetime:
    assert text.endswith("Z"), text
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- upload, info, download ---------------------------------------------------------------


def test_upload_then_info_shows_every_field(client, gateway_app, db):
    r = put(client, "/uploads/document.pdf", PDF, permissions="640")
    assert r.status_code == 201, r.json
    body = r.json
    assert set(body) == INFO_FIELDS
    assert body["path"] == "/uploads/document.pdf"
    assert body["size"] == len(PDF)
    assert body["mime_type"] == "application/pdf"  # from the path's name, not the client's
    assert body["etag"] == hashlib.sha256(PDF).hexdigest()
    assert body["permissions"] == "640"
    created, modified = parse_time(body["created_at"]), parse_time(body["modified_at"])
    assert created == modified
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=1)

    info = client.get("/api/files/info/uploads/document.pdf", headers=DEMO)
    assert info.status_code == 200 and info.json == body
    # A client joining the prefix and a leading-slash path gets the same file.
    assert client.get("/api/files/info//uploads//document.pdf", headers=DEMO).json == body

    [row] = rows_of(db)
    assert row["owner_id"] == user_row(db, "admin")["id"]  # the demo key's owner
    assert row["role"] == "upload" and row["filename"] == "document.pdf"
    assert row["media"] is None and row["job_id"] is None
    assert leftovers(gateway_app) == [] and len(stored_objects(gateway_app)) == 1


def test_permissions_default_to_644_and_any_file_type_is_taken(client):
    r = put(client, "/scripts/run.sh", b"#!/bin/sh\necho hi\n", name="run")
    assert r.status_code == 201, r.json
    assert r.json["permissions"] == "644"
    empty = put(client, "/markers/.keep", b"")
    assert empty.status_code == 201 and empty.json["size"] == 0
    assert empty.json["mime_type"] == "application/octet-stream"
    assert client.get("/api/files/download/markers/.keep", headers=DEMO).data == b""


def test_download_whole_range_416_and_304(client):
    etag = put(client, "/uploads/document.pdf", PDF).json["etag"]
    url = "/api/files/download/uploads/document.pdf"

    whole = client.get(url, headers=DEMO)
    assert whole.status_code == 200 and whole.data == PDF
    assert whole.headers["Content-Type"] == "application/pdf"
    assert whole.headers["ETag"] == f'"{etag}"'
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert "attachment; filename=document.pdf" in whole.headers["Content-Disposition"]

    part = client.get(url, headers={**DEMO, "Range": "bytes=0-9"})
    assert part.status_code == 206 and part.data == PDF[:10]
    assert part.headers["Content-Range"] == f"bytes 0-9/{len(PDF)}"

    tail = client.get(url, headers={**DEMO, "Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.data == PDF[-5:]

    beyond = client.get(url, headers={**DEMO, "Range": f"bytes={len(PDF)}-{len(PDF) + 10}"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(PDF)}"
    assert beyond.json["error"]["code"] == "INVALID_REQUEST"

    cached = client.get(url, headers={**DEMO, "If-None-Match": f'"{etag}"'})
    assert cached.status_code == 304 and cached.data == b""
    changed = client.get(url, headers={**DEMO, "If-None-Match": '"something-else"'})
    assert changed.status_code == 200 and changed.data == PDF


# --- replacing -----------------------------------------------------------------------------


def test_upload_to_a_taken_path_replaces_the_file(client, gateway_app, db):
    first = put(client, "/uploads/data.csv", b"a,b\n1,2\n").json
    r = put(client, "//uploads/data.csv", b"a,b\n3,4\n5,6\n", permissions="600")
    assert r.status_code == 201, r.json
    second = r.json
    assert second["path"] == "/uploads/data.csv"
    assert second["size"] == 12 and second["permissions"] == "600"
    assert second["etag"] == hashlib.sha256(b"a,b\n3,4\n5,6\n").hexdigest() != first["etag"]
    # The file at the path was created once and modified since.
    assert second["created_at"] == first["created_at"]
    assert parse_time(second["modified_at"]) > parse_time(first["modified_at"])

    assert client.get("/api/files/info/uploads/data.csv", headers=DEMO).json == second
    got = client.get("/api/files/download/uploads/data.csv", headers=DEMO)
    assert got.data == b"a,b\n3,4\n5,6\n"
    # Nothing referred to the old file: its row and its object are gone.
    [row] = rows_of(db)
    assert row["sha256"] == second["etag"]
    assert stored_objects(gateway_app) == [
        gateway_app.extensions["jobgate"].storage.path(row["storage_key"])
    ]
    assert leftovers(gateway_app) == []


@pytest.mark.parametrize("reference", ["item meta", "job params", "nested params", "job output"])
def test_a_replaced_file_a_job_refers_to_keeps_its_row_and_object(
    client, gateway_app, db, reference
):
    put(client, "/inputs/model.bin", b"old weights")
    [old] = rows_of(db)
    admin_id = str(old["owner_id"])
    if reference == "item meta":  # how a job records the input it read (file_at_path)
        job = make_job(db, owner_id=admin_id, kind="cache")
        with db.transaction() as conn:
            job_items.insert_items(
                conn,
                job_id=str(job["id"]),
                items=[("/input/model.bin", old["size"], {"file_id": str(old["id"])})],
            )
    elif reference == "job params":  # a conversion names its input by id
        make_job(db, owner_id=admin_id, kind="convert", params={"input_file": str(old["id"])})
    elif reference == "nested params":  # any kind naming it anywhere in its params
        params = {"files": ["x"], "inputs": [{"file": {"id": str(old["id"])}}]}
        make_job(db, owner_id=admin_id, kind="cache", params=params)
    else:  # a job's output that was put at a path
        job = make_job(db, owner_id=admin_id, kind="cache")
        with db.transaction() as conn, conn.cursor() as cur:
            cur.execute("UPDATE files SET job_id = %s WHERE id = %s", (job["id"], old["id"]))

    new = put(client, "/inputs/model.bin", b"new weights").json
    assert client.get("/api/files/download/inputs/model.bin", headers=DEMO).data == b"new weights"
    kept, current = rows_of(db)
    assert kept["id"] == old["id"] and kept["path"] is None  # out of the namespace ...
    assert current["path"] == "/inputs/model.bin" and current["sha256"] == new["etag"]
    assert len(stored_objects(gateway_app)) == 2  # ... but still stored for its job
    by_id = client.get(f"/api/v1/files/{old['id']}/content", headers=DEMO)
    assert by_id.status_code == 200 and by_id.data == b"old weights"


def test_a_job_resolving_a_path_while_it_is_replaced_keeps_what_it_read(client, gateway_app, db):
    """The worker's way (`file_at_path(lock=True)` and the id recorded in the same
    transaction): a replacement waits for that transaction, then keeps the row it read."""
    put(client, "/inputs/data.csv", b"old,rows\n")
    [old] = rows_of(db)
    job = make_job(db, owner_id=old["owner_id"], kind="cache")
    resolved = threading.Event()

    def resolve_and_record() -> None:
        with db.transaction() as conn:
            row = files.file_at_path(
                conn, owner_id=str(old["owner_id"]), path="/inputs/data.csv", lock=True
            )
            resolved.set()
            time.sleep(0.5)  # the upload below arrives meanwhile, and must wait
            job_items.insert_items(
                conn,
                job_id=str(job["id"]),
                items=[("/input/data.csv", row["size"], {"file_id": str(row["id"])})],
            )

    worker = threading.Thread(target=resolve_and_record)
    worker.start()
    assert resolved.wait(10)
    started = time.monotonic()
    assert put(client, "/inputs/data.csv", b"new,rows\n").status_code == 201
    assert time.monotonic() - started > 0.3
    worker.join(10)
    kept, current = rows_of(db)
    assert kept["id"] == old["id"] and kept["path"] is None
    assert current["path"] == "/inputs/data.csv"
    storage = gateway_app.extensions["jobgate"].storage
    assert storage.path(kept["storage_key"]).read_bytes() == b"old,rows\n"


def test_concurrent_uploads_to_one_path_end_as_one_file(gateway_app, db):
    contents = [f"version {n}\n".encode() * (n + 1) for n in range(4)]
    results: list[Any] = [None] * len(contents)

    def send(n: int) -> None:
        results[n] = put(gateway_app.test_client(), "/shared/state.txt", contents[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(contents))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [r.status_code for r in results] == [201] * len(contents)
    [row] = rows_of(db)
    assert row["path"] == "/shared/state.txt"
    assert row["sha256"] in {hashlib.sha256(c).hexdigest() for c in contents}
    storage = gateway_app.extensions["jobgate"].storage
    assert stored_objects(gateway_app) == [storage.path(row["storage_key"])]


# --- paths ---------------------------------------------------------------------------------


ESCAPES = [
    "..",
    "/uploads/../../etc/passwd",
    "/uploads/%2e%2e/%2e%2e/etc/passwd",
    "/uploads%2f..%2f..%2fetc%2fpasswd",
    "//..//etc/passwd",
    "/./etc/passwd",
    "\\..\\etc\\passwd",
    "/uploads/a\x00b",
    "/uploads/a\nb",
    "",
    "/",
    "/uploads/",
    "/" + "x" * 256,
    "/x" * 600,
]


@pytest.mark.parametrize("path", ESCAPES)
def test_bad_upload_paths_are_400_and_nothing_is_written(
    client, gateway_app, db, settings, tmp_path, path
):
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    r = put(client, path, b"root::0:0::/root:/bin/sh\n")
    assert r.status_code == 400, r.json
    error = r.json["error"]
    assert error["code"] == "INVALID_REQUEST" and error["message"].startswith("Invalid path")
    assert error["request_id"] and error["details"]["reason"]
    assert rows_of(db) == [] and stored_objects(gateway_app) == [] and leftovers(gateway_app) == []
    after = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert after == before  # not a byte anywhere else either (e.g. beside the storage dir)


@pytest.mark.parametrize(
    "url_path",
    [
        "uploads/../document.pdf",
        "uploads/%2e%2e/document.pdf",
        "uploads/%2E%2E/%2e%2e/etc/passwd",
        "uploads/%252e%252e/document.pdf",  # decoded once: still an escape, still refused
        "uploads%2f..%2fdocument.pdf",
        "/../etc/passwd",
        "uploads/./document.pdf",
        "uploads%5c..%5cdocument.pdf",
        "uploads/document.pdf%00",
        "uploads/%0a",
        "",
        "uploads/",
    ],
)
@pytest.mark.parametrize("route", ["info", "download"])
def test_bad_paths_in_the_url_are_400(client, route, url_path):
    put(client, "/uploads/document.pdf", PDF)
    r = client.get(f"/api/files/{route}/{url_path}", headers=DEMO)
    assert r.status_code == 400, (r.status_code, r.data[:200])
    assert r.json["error"]["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize("route", ["info", "download"])
def test_unknown_paths_are_404(client, route):
    put(client, "/uploads/document.pdf", PDF)
    for missing in (
        "uploads/other.pdf",
        "uploads",
        "uploads/document.pdf/more",
        "UPLOADS/document.pdf",
    ):
        r = client.get(f"/api/files/{route}/{missing}", headers=DEMO)
        assert r.status_code == 404, missing
        assert r.json["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"permissions": "999"}, "permissions"),
        ({"permissions": "64"}, "permissions"),
        ({"permissions": "07555"}, "permissions"),
        ({"permissions": "rwxr-xr-x"}, "permissions"),
        ({"permissions": "644\n"}, "permissions"),
        ({"owner": "someone"}, "owner"),
    ],
)
def test_bad_form_fields_are_400(client, gateway_app, db, fields, field):
    r = put(client, "/uploads/a.txt", b"hello", **fields)
    assert r.status_code == 400, r.json
    assert field in r.json["error"]["details"]["fields"]["multipart"]
    assert rows_of(db) == [] and leftovers(gateway_app) == []


def test_upload_needs_a_file_part_and_a_path(client, gateway_app, db):
    no_path = put(client, None, b"hello")
    assert no_path.status_code == 400
    assert "path" in no_path.json["error"]["details"]["fields"]["multipart"]
    as_text = client.post(
        "/api/files/upload",
        data={"file": "not a file part", "path": "/a.txt"},
        content_type="multipart/form-data",
        headers=DEMO,
    )
    assert as_text.status_code == 400
    assert "file" in as_text.json["error"]["details"]["fields"]["multipart"]
    as_json = client.post("/api/files/upload", json={"path": "/a.txt"}, headers=DEMO)
    assert as_json.status_code == 400 and "multipart" in as_json.json["error"]["message"]
    assert rows_of(db) == [] and leftovers(gateway_app) == []


def test_oversize_upload_is_413_and_leaves_nothing(client, gateway_app, db):
    r = put(client, "/big.bin", b"\0" * (2 * 1024 * 1024))
    assert r.status_code == 413 and r.json["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert rows_of(db) == [] and leftovers(gateway_app) == []


# --- who may -------------------------------------------------------------------------------


def test_paths_are_per_owner(client, admin, db):
    alice = container_user(client, admin, "alice")
    bob = container_user(client, admin, "bob")
    assert put(client, "/uploads/data.csv", b"alice's", headers=alice).status_code == 201
    for route in ("info", "download"):
        url = f"/api/files/{route}/uploads/data.csv"
        assert client.get(url, headers=bob).status_code == 404
        # An admin sees only their own namespace here (the demo key is the admin's).
        assert client.get(url, headers=admin).status_code == 404
        assert client.get(url, headers=DEMO).json["error"]["code"] == "NOT_FOUND"
    # Bob's file at the same path is his own; Alice's stays hers.
    assert put(client, "/uploads/data.csv", b"bob's", headers=bob).status_code == 201
    url = "/api/files/download/uploads/data.csv"
    assert client.get(url, headers=alice).data == b"alice's"
    assert client.get(url, headers=bob).data == b"bob's"
    assert len(rows_of(db)) == 2


def test_the_containers_scope_is_required(client, gateway_app, admin, db):
    put(client, "/uploads/document.pdf", PDF)
    plain = make_api_user(client, admin, "carol")  # jobs:read + jobs:write only
    r = put(client, "/uploads/document.pdf", b"x" * 1000, headers=plain)
    assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    assert "containers" in r.json["error"]["message"]
    for route in ("info", "download"):
        r = client.get(f"/api/files/{route}/uploads/document.pdf", headers=plain)
        assert r.status_code == 403 and r.json["error"]["code"] == "FORBIDDEN"
    assert len(rows_of(db)) == 1 and leftovers(gateway_app) == []


def test_no_credentials_is_401(client, gateway_app):
    put(client, "/uploads/document.pdf", PDF)
    r = put(client, "/uploads/document.pdf", b"x", headers={})
    assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHORIZED"
    for route in ("info", "download"):
        r = client.get(f"/api/files/{route}/uploads/document.pdf")
        assert r.status_code == 401 and r.json["error"]["code"] == "UNAUTHORIZED"
        bad = client.get(f"/api/files/{route}/uploads/document.pdf", headers={"X-API-Key": "no"})
        assert bad.status_code == 401
    assert leftovers(gateway_app) == []


# --- what workers call, and the documentation ------------------------------------------------


def test_file_at_path_resolves_in_the_owners_namespace(db, storage, tmp_path):
    from tests.factories.users import make_user

    owner, other = make_user(db), make_user(db)
    row = make_path_file(db, storage, owner, "/uploads/data.csv", b"a,b\n", tmp_path)
    with db.transaction() as conn:
        found = files.file_at_path(conn, owner_id=str(owner["id"]), path="uploads//data.csv")
        assert found is not None and found["id"] == row["id"]
        locked = files.file_at_path(
            conn, owner_id=str(owner["id"]), path="/uploads/data.csv", lock=True
        )
        assert locked["id"] == row["id"]
        assert files.file_at_path(conn, owner_id=str(other["id"]), path="/uploads/data.csv") is None
        assert files.file_at_path(conn, owner_id=str(owner["id"]), path="/nothing") is None
        with pytest.raises(files.InvalidPath):
            files.file_at_path(conn, owner_id=str(owner["id"]), path="/uploads/../data.csv")
    assert storage.path(row["storage_key"]).read_bytes() == b"a,b\n"


def test_openapi_documents_the_routes(client):
    spec = client.get("/openapi.json").json
    upload = spec["paths"]["/api/files/upload"]["post"]
    body = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    if "$ref" in body:
        body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert set(body["properties"]) == {"file", "path", "permissions"}
    assert body["properties"]["file"]["format"] == "binary"
    assert set(body["required"]) == {"file", "path"}
    assert "201" in upload["responses"]
    info = spec["paths"]["/api/files/info/{path}"]["get"]
    assert {"200", "400", "404"} <= set(info["responses"])
    info_schema = info["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][info_schema.rsplit("/", 1)[-1]]
    assert set(schema["properties"]) == INFO_FIELDS
    download = spec["paths"]["/api/files/download/{path}"]["get"]
    assert {"200", "206", "304", "404", "416"} <= set(download["responses"])
