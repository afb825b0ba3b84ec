"""Keyset paging of `GET /api/v1/jobs` (`cursor`, `X-Next-Cursor`) beside offset paging, and
the list's totals (analytics rollups; a capped count with `created_since`), issue 13."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from urllib.parse import parse_qs, urlparse

import pytest

from jobgate import analytics, jobs
from tests.integration.conftest import DEMO, make_api_user

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def demo_user(client) -> str:
    return client.get("/api/v1/auth/me", headers=DEMO).json["id"]


def insert_jobs(db, owner: str, n: int, *, start: int = 0, created_at=None) -> list[str]:
    """n jobs of `owner`: kinds, statuses and priorities cycle; created_at one minute apart
    from T0 (three jobs share each minute, so the id tiebreaker matters), or `created_at`."""
    kinds = ("cache", "task", "convert", "webhook")
    statuses = ("completed", "failed", "pending", "running", "cancelled")
    rows = []
    for i in range(start, start + n):
        status = statuses[i % len(statuses)]
        created = created_at or T0 + dt.timedelta(minutes=i // 3)
        started = created + dt.timedelta(seconds=1) if status != "pending" else None
        done = created + dt.timedelta(seconds=i % 7) if status in ("completed", "failed") else None
        rows.append(
            (str(uuid.uuid4()), kinds[i % 4], owner, status, i % 10, created, started, done)
        )
    with db.transaction() as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO jobs (id, kind, owner_id, status, priority, created_at, started_at,"
            " completed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    return [r[0] for r in rows]


def links(response) -> dict[str, str]:
    out = {}
    for part in response.headers.get("Link", "").split(", "):
        if part:
            url, rel = part.split("; ")
            out[rel.split('"')[1]] = url.strip("<>")
    return out


def walk(client, url: str, headers: dict[str, str], between=None) -> tuple[list[str], int]:
    """Page from `url` (an offset page) on with its X-Next-Cursor, then by each cursor page's
    `Link: rel=next`, which must carry that page's X-Next-Cursor; `between(page_number)`
    runs before each next page. Returns the ids in order and the number of pages."""
    ids, pages = [], 0
    r = client.get(url, headers=headers)
    while True:
        assert r.status_code == 200, r.json
        pages += 1
        ids += [j["id"] for j in r.json]
        nxt = r.headers.get("X-Next-Cursor")
        if nxt is None:
            assert "next" not in links(r) or pages == 1
            return ids, pages
        if between:
            between(pages)
        if pages == 1:
            r = client.get(f"{url}&cursor={nxt}", headers=headers)
            continue
        following = urlparse(links(r)["next"])
        assert parse_qs(following.query)["cursor"] == [nxt]
        r = client.get(f"{following.path}?{following.query}", headers=headers)


def test_cursor_pages_return_every_job_once_while_jobs_are_inserted(client, db):
    owner = demo_user(client)
    before = insert_jobs(db, owner, 40)
    public = [j for i, j in enumerate(before) if i % 4 != 3]  # webhook deliveries are hidden
    inserted: list[str] = []

    def insert_more(page: int) -> None:  # new jobs, newest of all, and some in the past
        inserted.extend(insert_jobs(db, owner, 3, start=100 + 3 * page, created_at=None))
        inserted.extend(
            insert_jobs(db, owner, 1, start=200 + page, created_at=dt.datetime.now(dt.UTC))
        )

    ids, pages = walk(client, "/api/v1/jobs?limit=7", DEMO, between=insert_more)
    assert len(ids) == len(set(ids)), "a job came twice"
    assert set(public) <= set(ids), "a job that was there from the start was skipped"
    assert pages >= len(public) // 7
    # Newest first: the ones inserted "now" were above the first page, never seen.
    assert not set(ids) & {i for i in inserted[3::4]}
    # Order: created_at then id, both descending.
    listed = client.get("/api/v1/jobs?limit=500", headers=DEMO).json
    order = [(j["created_at"], j["id"]) for j in listed]
    assert order == sorted(order, reverse=True)


def test_cursor_and_offset_pages_agree_and_offset_is_unchanged(client, db):
    owner = demo_user(client)
    insert_jobs(db, owner, 30)
    full = [j["id"] for j in client.get("/api/v1/jobs?limit=500&order=asc", headers=DEMO).json]
    assert len(full) == 23  # 30 minus the webhook deliveries
    by_offset = []
    for offset in range(0, 30, 5):
        r = client.get(f"/api/v1/jobs?limit=5&offset={offset}&order=asc", headers=DEMO)
        assert r.headers["X-Total-Count"] == "23"
        by_offset += [j["id"] for j in r.json]
        rels = links(r)
        assert "offset=0" in rels["first"] and "offset=20" in rels["last"]
        if offset + 5 < 23:  # offset pages still link the next one by offset
            assert f"offset={offset + 5}" in rels["next"] and "cursor" not in rels["next"]
            assert r.headers["X-Next-Cursor"]
        else:
            assert "next" not in rels and "X-Next-Cursor" not in r.headers
    assert by_offset == full
    by_cursor, _ = walk(client, "/api/v1/jobs?limit=5&order=asc", DEMO)
    assert by_cursor == full
    # A cursor page links first (by offset) and next (by cursor), keeping the filters.
    first = client.get("/api/v1/jobs?limit=5&order=asc", headers=DEMO)
    r = client.get(
        f"/api/v1/jobs?limit=5&order=asc&cursor={first.headers['X-Next-Cursor']}", headers=DEMO
    )
    rels = links(r)
    assert set(rels) == {"first", "next"} and "order=asc" in rels["next"]
    assert r.headers["X-Total-Count"] == "23"


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("kind=cache", lambda j: j["kind"] == "cache"),
        ("status=failed", lambda j: j["status"] == "failed"),
        ("kind=task&status=running", lambda j: j["kind"] == "task" and j["status"] == "running"),
        ("kind=webhook", lambda j: j["kind"] == "webhook"),
        ("created_since=2026-01-01T00:10:00Z", lambda j: j["created_at"] >= "2026-01-01T00:10"),
        ("sort=priority", lambda j: True),
        ("sort=completed_at&order=asc", lambda j: True),
        ("sort=completed_at&order=desc", lambda j: True),
        ("sort=started_at&order=asc&status=pending", lambda j: j["status"] == "pending"),
        ("sort=kind&order=asc", lambda j: True),
    ],
)
def test_filters_and_sorts_combine_with_the_cursor(client, db, query, keep):
    owner = demo_user(client)
    insert_jobs(db, owner, 60)
    r = client.get(f"/api/v1/jobs?limit=500&{query}", headers=DEMO)
    expected = [j["id"] for j in r.json if keep(j)]
    assert expected, "the filter should match some jobs"
    assert int(r.headers["X-Total-Count"]) == len(expected) == len(r.json)
    ids, pages = walk(client, f"/api/v1/jobs?limit=4&{query}", DEMO)
    assert ids == expected
    assert pages == max(1, -(-len(expected) // 4))


def test_admin_lists_everyone_and_one_owner_by_cursor(client, db, admin):
    user = make_api_user(client, admin, "lister")
    user_id = client.get("/api/v1/auth/me", headers=user).json["id"]
    admins = insert_jobs(db, demo_user(client), 12)
    users = insert_jobs(db, user_id, 12, start=12)
    public = {j for i, j in enumerate(admins + users) if i % 4 != 3}
    ids, _ = walk(client, "/api/v1/jobs?limit=5", admin)
    assert set(ids) == public and len(ids) == len(public)
    ids, _ = walk(client, f"/api/v1/jobs?limit=5&owner={user_id}", admin)
    assert set(ids) == public & set(users)
    # A user's cursor walk shows only their own jobs (their webhook deliveries by kind).
    ids, _ = walk(client, "/api/v1/jobs?limit=5", user)
    assert set(ids) == public & set(users) and len(ids) == len(set(ids))
    ids, _ = walk(client, "/api/v1/jobs?limit=2&kind=webhook", user)
    assert set(ids) == set(users) - public


def garbage(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        garbage("{}"),
        garbage('["created_at", "desc", "yesterday", "' + str(uuid.uuid4()) + '"]'),
        garbage('["created_at", "desc", "2026-01-01T00:00:00", "' + str(uuid.uuid4()) + '"]'),
        garbage('["password_hash", "desc", "x", "' + str(uuid.uuid4()) + '"]'),
        garbage('["priority", "desc", "5", "' + str(uuid.uuid4()) + '"]'),
        garbage('["created_at", "desc", null, "' + str(uuid.uuid4()) + '"]'),
        garbage('["created_at", "sideways", "2026-01-01T00:00:00+00:00", "x"]'),
        garbage('["kind", "asc", "cache", "not-a-uuid"]'),
        "x" * 2000,
        "A" * 257,  # base64url-looking, longer than any cursor (CURSOR_MAX)
    ],
)
def test_a_bad_cursor_is_a_400(client, cursor):
    r = client.get(f"/api/v1/jobs?cursor={cursor}", headers=DEMO)
    assert r.status_code == 400 and r.is_json, r.data
    assert "cursor" in json.dumps(r.json)


def test_a_cursor_with_an_offset_or_another_sort_is_a_400(client, db):
    insert_jobs(db, demo_user(client), 10)
    nxt = client.get("/api/v1/jobs?limit=2", headers=DEMO).headers["X-Next-Cursor"]
    assert client.get(f"/api/v1/jobs?cursor={nxt}", headers=DEMO).status_code == 200
    assert client.get(f"/api/v1/jobs?cursor={nxt}&offset=0", headers=DEMO).status_code == 200
    for extra in ("offset=2", "sort=priority", "order=asc"):
        r = client.get(f"/api/v1/jobs?cursor={nxt}&{extra}", headers=DEMO)
        assert r.status_code == 400 and r.is_json, (extra, r.data)
    # The same sort and order as the cursor's are fine.
    r = client.get(f"/api/v1/jobs?cursor={nxt}&sort=created_at&order=desc", headers=DEMO)
    assert r.status_code == 200


def test_totals_come_from_the_rollups_and_stay_exact(client, db):
    owner = demo_user(client)
    insert_jobs(db, owner, 25)

    def total(query: str) -> int:
        r = client.get(f"/api/v1/jobs?limit=1&{query}", headers=DEMO)
        return int(r.headers["X-Total-Count"])

    assert (total(""), total("kind=webhook"), total("status=failed")) == (19, 6, 4)
    analytics.compact_all(db)  # folded or not, the same numbers
    assert (total(""), total("kind=webhook"), total("status=failed")) == (19, 6, 4)
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("UPDATE jobs SET status = 'failed' WHERE status = 'running'")
        cur.execute("DELETE FROM jobs WHERE kind = 'convert' AND status = 'completed'")
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM jobs WHERE status = 'failed' AND kind <> 'webhook'")
        failed = cur.fetchone()["n"]
        cur.execute("SELECT count(*) AS n FROM jobs WHERE kind <> 'webhook'")
        everything = cur.fetchone()["n"]
    assert (total(""), total("status=failed")) == (everything, failed)


def test_created_since_counts_up_to_the_cap(client, db, monkeypatch):
    owner = demo_user(client)
    insert_jobs(db, owner, 30)
    since = "created_since=2026-01-01T00:05:00Z"  # minutes 5..9: 15 jobs, 11 public
    r = client.get(f"/api/v1/jobs?limit=5&{since}", headers=DEMO)
    assert r.headers["X-Total-Count"] == "11" and "X-Total-Count-Min" not in r.headers
    monkeypatch.setattr(jobs, "COUNT_CAP", 10)
    r = client.get(f"/api/v1/jobs?limit=5&{since}", headers=DEMO)
    assert "X-Total-Count" not in r.headers and r.headers["X-Total-Count-Min"] == "11"
    rels = links(r)
    assert "last" not in rels and "offset=5" in rels["next"]
    r = client.get(f"/api/v1/jobs?limit=5&offset=10&{since}", headers=DEMO)
    assert len(r.json) == 1 and "next" not in links(r) and "prev" in links(r)
    ids, _ = walk(client, f"/api/v1/jobs?limit=5&{since}", DEMO)
    assert len(ids) == 11


def test_the_openapi_document_describes_the_cursor(client):
    spec = client.get("/openapi.json").json
    get = spec["paths"]["/api/v1/jobs"]["get"]
    assert "cursor" in {p["name"] for p in get["parameters"]}
    headers = get["responses"]["200"]["headers"]
    assert {"X-Total-Count", "X-Total-Count-Min", "X-Next-Cursor", "Link"} <= set(headers)


@pytest.mark.parametrize(
    "query",
    [
        "created_since=2000-01-01T00:17:21%2B17:45",  # Python takes the offset, PostgreSQL not
        "created_since=0001-01-01T00:00:00%2B05:00",  # before the first instant in UTC
    ],
)
def test_created_since_is_read_in_utc_and_out_of_range_is_400(client, query):
    r = client.get(f"/api/v1/jobs?{query}", headers=DEMO)
    assert r.status_code in (200, 400), r.get_data(as_text=True)
    if query.startswith("created_since=2000"):
        assert r.status_code == 200 and r.json == []
    else:
        assert r.status_code == 400 and "created_since" in r.get_data(as_text=True)
