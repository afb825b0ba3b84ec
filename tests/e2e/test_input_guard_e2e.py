"""Text PostgreSQL cannot store (NUL) or that is not UTF-8 is a 400 JSON error on every
route, through the real gunicorn gateway (whose URLs arrive as raw bytes)."""

import pytest
import requests

from tests.helpers import DEMO_KEY

JOB = "6bb4629b-1487-477c-96fe-b762d82a099b"
URLS = [
    "/api/v1/jobs?kind=a%00b",
    "/api/v1/jobs?status=%ff%fe",
    f"/api/v1/jobs/{JOB}%00",
    "/api/v1/jobs/%c3%28",
    "/api/v1/cache/jobs/%ff",
    "/api/v1/cache/jobs?status=a%00",
    "/status/%00",
    "/api/v1/files/%e2%82",
    "/api/v1/auth/users?limit=1%00",
]


@pytest.mark.e2e
@pytest.mark.parametrize("url", URLS)
def test_nul_or_invalid_utf8_in_the_url_is_a_400(stack, url):
    r = requests.get(stack.url + url, headers={"X-API-Key": DEMO_KEY}, timeout=10)
    assert r.status_code == 400, r.text
    body = r.json()
    if url.startswith("/api/v1/cache/"):
        assert body["success"] is False and "URL" in body["error"]
    else:
        assert body["error"]["code"] == "INVALID_REQUEST"


@pytest.mark.e2e
def test_nul_in_a_json_body_is_a_400(stack):
    for path, body in [
        ("/api/v1/jobs", {"kind": "cache", "files": ["a\u0000b"]}),
        ("/api/v1/cache/jobs", {"files": ["ok"], "directories": ["x\u0000"]}),
        ("/api/v1/jobs", {"kind": "cache", "files": ["ok"], "k\u0000": 1}),
    ]:
        r = requests.post(stack.url + path, json=body, headers={"X-API-Key": DEMO_KEY}, timeout=10)
        assert r.status_code == 400, r.text
        assert "NUL" in r.text


@pytest.mark.e2e
@pytest.mark.parametrize("depth", [101, 990, 100_000])
def test_json_nested_too_deeply_is_a_400(stack, depth):
    """Python's JSON parsers recurse: a body this deep was a RecursionError (500) on every
    route that reads one. 100 levels pass the guard (and meet the route's own checks)."""
    for path in ("/api/v1/jobs", "/api/v1/auth/login", "/api/proxy/config"):
        for n, refused in ((depth, True), (100, False)):
            r = requests.post(
                stack.url + path,
                data="[" * n + "]" * n,
                headers={"X-API-Key": DEMO_KEY, "Content-Type": "application/json"},
                timeout=10,
            )
            assert r.status_code in (400, 405), (path, n, r.text)
            assert ("nested more than 100 levels" in r.text) is refused, (path, n, r.text)
