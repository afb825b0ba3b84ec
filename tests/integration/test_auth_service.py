"""auth-service against the real test database, through the Flask test client."""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from jobgate.config import Settings
from jobgate.db import Database, OperationalError
from jobgate.identity import DEFAULT_USER_SCOPES, KNOWN_SCOPES
from jobgate_auth import create_app, tokens
from jobgate_auth.bootstrap import BootstrapError, run_bootstrap
from jobgate_auth.keys import SigningKey, SigningKeyError, jwk_thumbprint, load_signing_key
from tests.helpers import bearer, create_user, login_tokens

ADMIN = "admin"
ADMIN_PASSWORD = "admin-password-123"
BOOT_KEY = "demo-api-key-2024"
USER_PASSWORD = "user-password-123"


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    return settings.replace(bootstrap_admin_password=ADMIN_PASSWORD, bootstrap_api_key=BOOT_KEY)


@pytest.fixture
def app(app_settings: Settings, db: Database) -> Iterator[Any]:
    application = create_app(app_settings)
    yield application
    application.extensions["jobgate_auth"].db.close()


@pytest.fixture
def client(app: Any) -> Any:
    """auth-service's own test client: here `client` overrides the gateway's (conftest)."""
    return app.test_client()


def login(client: Any, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> dict[str, Any]:
    """auth-service's token body for a login (the bootstrapped admin's by default)."""
    return login_tokens(client, username, password, url="/login")


@pytest.fixture
def admin_headers(client: Any) -> dict[str, str]:
    return bearer(login(client)["access_token"])


def make_user(
    client: Any, admin_headers: dict[str, str], username: str | None = None, **fields: Any
) -> dict[str, Any]:
    """Factory: a user created through the admin API, with USER_PASSWORD."""
    return create_user(
        client,
        admin_headers,
        url="/users",
        username=username or f"user-{uuid.uuid4().hex[:8]}",
        password=USER_PASSWORD,
        **fields,
    )


def user_headers(client: Any, admin_headers: dict[str, str], **fields: Any) -> dict[str, str]:
    user = make_user(client, admin_headers, **fields)
    return bearer(login(client, user["username"], USER_PASSWORD)["access_token"])


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    error = resp.get_json()["error"]
    assert error["code"] == code
    assert error["request_id"]
    return error


# --- login ----------------------------------------------------------------------------


def test_login_with_json_returns_tokens_and_user(client: Any, app_settings: Settings) -> None:
    body = login(client)

    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert len(body["refresh_token"]) >= 40
    user = body["user"]
    assert user["username"] == ADMIN
    assert user["role"] == "admin"
    assert user["scopes"] == list(KNOWN_SCOPES)
    assert user["is_active"] is True
    assert uuid.UUID(user["id"])
    assert user["created_at"]
    assert "password_hash" not in user

    header = jwt.get_unverified_header(body["access_token"])
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert header["alg"] == "RS256"
    assert header["kid"]
    assert claims["iss"] == app_settings.jwt_issuer
    assert claims["aud"] == app_settings.jwt_audience
    assert claims["sub"] == user["id"]
    assert claims["username"] == ADMIN
    assert claims["role"] == "admin"
    assert claims["scopes"] == list(KNOWN_SCOPES)
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]


def test_login_with_http_basic(client: Any) -> None:
    credentials = base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
    resp = client.post("/login", headers={"Authorization": f"Basic {credentials}"})
    assert resp.status_code == 200
    assert resp.get_json()["user"]["username"] == ADMIN


def test_wrong_password_unknown_user_and_inactive_user_get_the_same_401(
    client: Any, admin_headers: dict[str, str]
) -> None:
    inactive = make_user(client, admin_headers)
    resp = client.patch(
        f"/users/{inactive['id']}", json={"is_active": False}, headers=admin_headers
    )
    assert resp.status_code == 200

    messages = set()
    for username, password in [
        (ADMIN, "wrong-password"),
        ("nobody-here", ADMIN_PASSWORD),
        (inactive["username"], USER_PASSWORD),
    ]:
        resp = client.post("/login", json={"username": username, "password": password})
        messages.add(assert_error(resp, 401, "UNAUTHORIZED")["message"])
    assert messages == {"Invalid username or password"}


def test_login_without_credentials_is_400(client: Any) -> None:
    assert_error(client.post("/login", json={}), 400, "INVALID_REQUEST")
    assert_error(client.post("/login", json={"username": ADMIN}), 400, "INVALID_REQUEST")


# --- refresh and logout ---------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(client: Any) -> None:
    first = login(client)
    resp = client.post("/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200
    second = resp.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["token_type"] == "Bearer"
    assert client.get("/me", headers=bearer(second["access_token"])).status_code == 200

    resp = client.post("/refresh", json={"refresh_token": second["refresh_token"]})
    assert resp.status_code == 200


def test_refresh_token_reuse_revokes_the_whole_family(client: Any, db: Database) -> None:
    first = login(client)
    other_session = login(client)
    second = client.post("/refresh", json={"refresh_token": first["refresh_token"]}).get_json()

    # Replaying the used token: refused, and the legitimate successor dies with it.
    resp = client.post("/refresh", json={"refresh_token": first["refresh_token"]})
    assert_error(resp, 401, "UNAUTHORIZED")
    resp = client.post("/refresh", json={"refresh_token": second["refresh_token"]})
    assert_error(resp, 401, "UNAUTHORIZED")

    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) AS n, count(revoked_at) AS revoked FROM refresh_tokens"
            " GROUP BY family_id ORDER BY n DESC"
        )
        families = cur.fetchall()
    assert [(f["n"], f["revoked"]) for f in families] == [(2, 2), (1, 0)]
    # A separate login is a separate family and keeps working.
    resp = client.post("/refresh", json={"refresh_token": other_session["refresh_token"]})
    assert resp.status_code == 200


def test_refresh_tokens_are_stored_only_as_hashes(client: Any, db: Database) -> None:
    token = login(client)["refresh_token"]
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT token_hash FROM refresh_tokens")
        stored = [row["token_hash"] for row in cur.fetchall()]
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]


def test_refresh_with_unknown_or_expired_token_is_401(client: Any, db: Database) -> None:
    assert_error(client.post("/refresh", json={"refresh_token": "nope"}), 401, "UNAUTHORIZED")
    token = login(client)["refresh_token"]
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    assert_error(client.post("/refresh", json={"refresh_token": token}), 401, "UNAUTHORIZED")


def test_logout_revokes_the_session_and_is_idempotent(client: Any) -> None:
    session = login(client)
    refreshed = client.post("/refresh", json={"refresh_token": session["refresh_token"]})
    token = refreshed.get_json()["refresh_token"]

    for _ in range(2):
        resp = client.post("/logout", json={"refresh_token": token})
        assert resp.status_code == 200
        assert resp.get_json() == {"message": "Logged out"}
    assert_error(client.post("/refresh", json={"refresh_token": token}), 401, "UNAUTHORIZED")
    resp = client.post("/logout", json={"refresh_token": "never-issued"})
    assert resp.status_code == 200


# --- me and validate ------------------------------------------------------------------


def test_me_with_jwt_and_with_api_key(client: Any, admin_headers: dict[str, str]) -> None:
    resp = client.get("/me", headers=admin_headers)
    assert resp.status_code == 200
    assert resp.get_json()["username"] == ADMIN
    assert resp.get_json()["role"] == "admin"

    resp = client.get("/me", headers={"X-API-Key": BOOT_KEY})
    assert resp.status_code == 200
    assert resp.get_json()["username"] == ADMIN


def test_me_without_or_with_bad_credentials_is_401(client: Any) -> None:
    resp = client.get("/me")
    assert_error(resp, 401, "UNAUTHORIZED")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(client.get("/me", headers=bearer("not.a.jwt")), 401, "UNAUTHORIZED")
    assert_error(client.get("/me", headers={"X-API-Key": "jg_nope"}), 401, "UNAUTHORIZED")


def test_validate_api_key_in_body_and_header(client: Any) -> None:
    admin_id = client.get("/me", headers={"X-API-Key": BOOT_KEY}).get_json()["id"]
    for resp in (
        client.post("/validate", json={"api_key": BOOT_KEY}),
        client.post("/validate", headers={"X-API-Key": BOOT_KEY}),
        client.get("/validate", headers={"X-API-Key": BOOT_KEY}),
    ):
        assert resp.status_code == 200
        body = resp.get_json()
        assert body["valid"] is True
        assert body["user_id"] == admin_id
        assert body["username"] == ADMIN
        assert body["role"] == "admin"
        assert body["scopes"] == list(KNOWN_SCOPES)
        assert body["auth_method"] == "api_key"
        assert uuid.UUID(body["key_id"])


def test_validate_jwt_in_body_and_header(client: Any) -> None:
    token = login(client)["access_token"]
    for resp in (
        client.post("/validate", json={"token": token}),
        client.post("/validate", headers=bearer(token)),
        client.get("/validate", headers=bearer(token)),
    ):
        assert resp.status_code == 200
        body = resp.get_json()
        assert body["auth_method"] == "jwt"
        assert body["username"] == ADMIN
        assert body["key_id"] is None


def test_api_key_header_wins_over_bearer_like_in_the_gateway(client: Any) -> None:
    resp = client.get("/validate", headers={"X-API-Key": BOOT_KEY, **bearer("garbage")})
    assert resp.status_code == 200
    assert resp.get_json()["auth_method"] == "api_key"
    resp = client.get(
        "/me", headers={"X-API-Key": "jg_wrong", **bearer(login(client)["access_token"])}
    )
    assert_error(resp, 401, "UNAUTHORIZED")


def test_validate_rejects_garbage_missing_and_ambiguous(client: Any) -> None:
    assert_error(client.post("/validate", json={"api_key": "garbage"}), 401, "UNAUTHORIZED")
    assert_error(client.post("/validate", json={"token": "garbage"}), 401, "UNAUTHORIZED")
    assert_error(client.post("/validate", json={}), 401, "UNAUTHORIZED")
    assert_error(client.get("/validate"), 401, "UNAUTHORIZED")
    resp = client.post("/validate", json={"api_key": BOOT_KEY, "token": "x"})
    assert_error(resp, 400, "INVALID_REQUEST")


def test_validate_rejects_revoked_expired_and_inactive_keys(
    client: Any, admin_headers: dict[str, str], db: Database
) -> None:
    headers = user_headers(client, admin_headers)
    revoked = client.post("/api-keys", json={"name": "r"}, headers=headers).get_json()
    expired = client.post("/api-keys", json={"name": "e"}, headers=headers).get_json()
    assert client.post("/validate", json={"api_key": revoked["key"]}).status_code == 200

    assert client.delete(f"/api-keys/{revoked['id']}", headers=headers).status_code == 204
    assert_error(client.post("/validate", json={"api_key": revoked["key"]}), 401, "UNAUTHORIZED")

    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = %s",
            (expired["id"],),
        )
    assert_error(client.post("/validate", json={"api_key": expired["key"]}), 401, "UNAUTHORIZED")

    live = client.post("/api-keys", json={"name": "l"}, headers=headers).get_json()
    me = client.get("/me", headers=headers).get_json()
    resp = client.patch(f"/users/{me['id']}", json={"is_active": False}, headers=admin_headers)
    assert resp.status_code == 200
    assert_error(client.post("/validate", json={"api_key": live["key"]}), 401, "UNAUTHORIZED")


def test_expired_foreign_and_unsigned_jwts_are_rejected(client: Any, app: Any) -> None:
    state = app.extensions["jobgate_auth"]
    user_id = login(client)["user"]["id"]
    claims = {"user_id": user_id, "username": ADMIN, "role": "admin", "scopes": []}
    expired = tokens.issue_access_token(
        state.signing_key, settings=state.settings, now=int(time.time()) - 10_000, **claims
    )
    # Same kid, different key: a forgery attempt.
    forged_key = SigningKey(rsa.generate_private_key(65537, 2048), state.signing_key.kid)
    forged = tokens.issue_access_token(forged_key, settings=state.settings, **claims)
    unsigned = jwt.encode(
        {"sub": user_id, "iss": state.settings.jwt_issuer, "aud": state.settings.jwt_audience},
        None,
        algorithm="none",
        headers={"kid": state.signing_key.kid},
    )
    wrong_audience = tokens.issue_access_token(
        state.signing_key, settings=state.settings.replace(jwt_audience="other"), **claims
    )
    for token in (expired, forged, unsigned, wrong_audience):
        assert_error(client.post("/validate", json={"token": token}), 401, "UNAUTHORIZED")


# --- JWKS and signing keys ------------------------------------------------------------


def test_jwks_verifies_an_issued_token(client: Any, app_settings: Settings) -> None:
    token = login(client)["access_token"]
    resp = client.get("/.well-known/jwks.json")
    assert resp.status_code == 200
    keys = resp.get_json()["keys"]
    assert len(keys) == 1
    jwk = keys[0]
    assert {jwk["kty"], jwk["use"], jwk["alg"], jwk["e"]} == {"RSA", "sig", "RS256", "AQAB"}
    assert jwk["kid"] == jwt.get_unverified_header(token)["kid"]
    assert jwk["kid"] == jwk_thumbprint(jwk)

    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=app_settings.jwt_audience,
        issuer=app_settings.jwt_issuer,
    )
    assert claims["username"] == ADMIN


def test_jwk_thumbprint_matches_rfc_7638_example() -> None:
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
        "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v"
        "-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNL"
        "yrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzK"
        "nqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_key_file_is_generated_once_and_reloaded(settings: Settings, db: Database) -> None:
    path = settings.jwt_private_key_file
    assert not os.path.exists(path)

    first = create_app(settings)
    assert os.path.exists(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "rb") as fh:
        assert fh.read().startswith(b"-----BEGIN PRIVATE KEY-----")
    second = create_app(settings)

    kid = first.extensions["jobgate_auth"].signing_key.kid
    assert second.extensions["jobgate_auth"].signing_key.kid == kid
    resp = second.test_client().get("/.well-known/jwks.json")
    assert resp.get_json()["keys"][0]["kid"] == kid


def _load_kid(path: str) -> str:
    return load_signing_key(path, env="development").kid


def test_concurrent_processes_agree_on_one_generated_key(tmp_path: Any) -> None:
    path = str(tmp_path / "race" / "key.pem")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        kids = pool.map(_load_kid, [path] * 6)
    assert len(set(kids)) == 1
    assert _load_kid(path) == kids[0]


def test_missing_key_in_production_is_a_startup_error(settings: Settings) -> None:
    with pytest.raises(SigningKeyError):
        create_app(settings.replace(env="production"))
    assert not os.path.exists(settings.jwt_private_key_file)


# --- API keys -------------------------------------------------------------------------


def test_api_key_is_shown_once_and_stored_hashed(
    client: Any, admin_headers: dict[str, str], db: Database
) -> None:
    headers = user_headers(client, admin_headers)
    resp = client.post("/api-keys", json={"name": "ci", "expires_in_days": 30}, headers=headers)
    assert resp.status_code == 201
    created = resp.get_json()
    key = created["key"]
    assert key.startswith("jg_")
    assert len(key) == 3 + 43
    assert created["prefix"] == key[:12]
    assert created["name"] == "ci"
    assert created["scopes"] == list(DEFAULT_USER_SCOPES)
    assert created["created_at"]
    assert created["expires_at"] > created["created_at"]

    resp = client.get("/api-keys", headers=headers)
    assert resp.status_code == 200
    listed = resp.get_json()["api_keys"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert key not in resp.get_data(as_text=True)

    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT prefix, key_hash FROM api_keys WHERE id = %s", (created["id"],))
        row = cur.fetchone()
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert row["prefix"] == key[:12]

    # The new key works as a credential, with the scopes it was given.
    resp = client.get("/validate", headers={"X-API-Key": key})
    assert resp.get_json()["scopes"] == list(DEFAULT_USER_SCOPES)
    assert resp.get_json()["key_id"] == created["id"]


def test_api_key_scopes_are_bounded_by_the_callers(
    client: Any, admin_headers: dict[str, str]
) -> None:
    headers = user_headers(client, admin_headers, scopes=["jobs:read"])
    resp = client.post("/api-keys", json={"name": "x", "scopes": ["jobs:write"]}, headers=headers)
    assert_error(resp, 403, "FORBIDDEN")
    resp = client.post("/api-keys", json={"name": "x", "scopes": ["root"]}, headers=headers)
    assert_error(resp, 400, "INVALID_REQUEST")
    resp = client.post("/api-keys", json={"name": "x", "scopes": ["jobs:read"]}, headers=headers)
    assert resp.status_code == 201
    assert resp.get_json()["scopes"] == ["jobs:read"]

    resp = client.post(
        "/api-keys", json={"name": "c", "scopes": ["containers"]}, headers=admin_headers
    )
    assert resp.status_code == 201
    assert resp.get_json()["scopes"] == ["containers"]


def test_revoking_api_keys_own_others_and_admin(client: Any, admin_headers: dict[str, str]) -> None:
    alice = user_headers(client, admin_headers)
    bob = user_headers(client, admin_headers)
    alice_key = client.post("/api-keys", json={"name": "a"}, headers=alice).get_json()
    bob_key = client.post("/api-keys", json={"name": "b"}, headers=bob).get_json()

    assert_error(client.delete(f"/api-keys/{bob_key['id']}", headers=alice), 404, "NOT_FOUND")
    assert client.post("/validate", json={"api_key": bob_key["key"]}).status_code == 200
    assert_error(client.delete(f"/api-keys/{uuid.uuid4()}", headers=alice), 404, "NOT_FOUND")

    assert client.delete(f"/api-keys/{alice_key['id']}", headers=alice).status_code == 204
    assert client.get("/api-keys", headers=alice).get_json()["api_keys"] == []
    resp = client.get("/api-keys?include_revoked=true", headers=alice)
    assert resp.get_json()["api_keys"][0]["revoked_at"] is not None

    assert client.delete(f"/api-keys/{bob_key['id']}", headers=admin_headers).status_code == 204
    assert_error(client.post("/validate", json={"api_key": bob_key["key"]}), 401, "UNAUTHORIZED")


def test_admin_lists_keys_of_a_user_others_may_not(
    client: Any, admin_headers: dict[str, str]
) -> None:
    alice = make_user(client, admin_headers)
    alice_headers = bearer(login(client, alice["username"], USER_PASSWORD)["access_token"])
    client.post("/api-keys", json={"name": "a"}, headers=alice_headers)
    bob_headers = user_headers(client, admin_headers)

    resp = client.get(f"/api-keys?user_id={alice['id']}", headers=admin_headers)
    assert [k["name"] for k in resp.get_json()["api_keys"]] == ["a"]
    resp = client.get(f"/api-keys?user_id={alice['id']}", headers=bob_headers)
    assert_error(resp, 403, "FORBIDDEN")
    resp = client.get("/api-keys", headers=admin_headers)
    assert [k["name"] for k in resp.get_json()["api_keys"]] == ["bootstrap"]


# --- users ----------------------------------------------------------------------------


def test_user_admin_routes_are_403_for_non_admins(
    client: Any, admin_headers: dict[str, str]
) -> None:
    headers = user_headers(client, admin_headers)
    some_id = client.get("/me", headers=admin_headers).get_json()["id"]
    assert_error(client.get("/users", headers=headers), 403, "FORBIDDEN")
    resp = client.post("/users", json={"username": "x", "password": "12345678"}, headers=headers)
    assert_error(resp, 403, "FORBIDDEN")
    assert_error(client.get(f"/users/{some_id}", headers=headers), 403, "FORBIDDEN")
    resp = client.patch(f"/users/{some_id}", json={"is_active": False}, headers=headers)
    assert_error(resp, 403, "FORBIDDEN")
    assert_error(client.delete(f"/users/{some_id}", headers=headers), 403, "FORBIDDEN")
    assert_error(client.get("/users"), 401, "UNAUTHORIZED")


def test_create_list_get_users(client: Any, admin_headers: dict[str, str]) -> None:
    created = make_user(client, admin_headers, username="carol")
    assert created["role"] == "user"
    assert created["scopes"] == list(DEFAULT_USER_SCOPES)
    assert created["is_active"] is True
    assert "password" not in created and "password_hash" not in created

    body = client.get("/users", headers=admin_headers).get_json()
    assert body["total"] == 2
    assert [u["username"] for u in body["users"]] == [ADMIN, "carol"]
    resp = client.get(f"/users/{created['id']}", headers=admin_headers)
    assert resp.get_json()["username"] == "carol"
    assert_error(client.get(f"/users/{uuid.uuid4()}", headers=admin_headers), 404, "NOT_FOUND")


def test_duplicate_username_is_409_and_short_password_400(
    client: Any, admin_headers: dict[str, str]
) -> None:
    make_user(client, admin_headers, username="dave")
    resp = client.post(
        "/users", json={"username": "dave", "password": "another-pass"}, headers=admin_headers
    )
    assert_error(resp, 409, "CONFLICT")
    resp = client.post(
        "/users", json={"username": "erin", "password": "short"}, headers=admin_headers
    )
    error = assert_error(resp, 400, "INVALID_REQUEST")
    assert "password" in error["details"]["fields"]["json"]


def test_patch_user_changes_fields_and_password_ends_sessions(
    client: Any, admin_headers: dict[str, str]
) -> None:
    user = make_user(client, admin_headers)
    session = login(client, user["username"], USER_PASSWORD)

    resp = client.patch(
        f"/users/{user['id']}",
        json={"scopes": ["jobs:read", "containers"], "password": "a-brand-new-password"},
        headers=admin_headers,
    )
    assert resp.status_code == 200
    assert resp.get_json()["scopes"] == ["jobs:read", "containers"]

    refresh = client.post("/refresh", json={"refresh_token": session["refresh_token"]})
    assert_error(refresh, 401, "UNAUTHORIZED")
    assert (
        client.post(
            "/login", json={"username": user["username"], "password": USER_PASSWORD}
        ).status_code
        == 401
    )
    fresh = login(client, user["username"], "a-brand-new-password")
    claims = jwt.decode(fresh["access_token"], options={"verify_signature": False})
    assert claims["scopes"] == ["jobs:read", "containers"]

    resp = client.patch(f"/users/{user['id']}", json={"role": "admin"}, headers=admin_headers)
    assert resp.get_json()["role"] == "admin"


def test_delete_user_deactivates_and_revokes_keys_and_sessions(
    client: Any, admin_headers: dict[str, str], db: Database
) -> None:
    user = make_user(client, admin_headers)
    session = login(client, user["username"], USER_PASSWORD)
    key = client.post(
        "/api-keys", json={"name": "k"}, headers=bearer(session["access_token"])
    ).get_json()

    resp = client.delete(f"/users/{user['id']}", headers=admin_headers)
    assert resp.status_code == 200
    assert resp.get_json()["is_active"] is False

    assert_error(client.post("/validate", json={"api_key": key["key"]}), 401, "UNAUTHORIZED")
    resp = client.post("/validate", json={"token": session["access_token"]})
    assert_error(resp, 401, "UNAUTHORIZED")
    resp = client.post("/refresh", json={"refresh_token": session["refresh_token"]})
    assert_error(resp, 401, "UNAUTHORIZED")
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) AS n FROM api_keys WHERE user_id = %s AND revoked_at IS NULL",
            (user["id"],),
        )
        assert cur.fetchone()["n"] == 0
        cur.execute("SELECT count(*) AS n FROM users WHERE id = %s", (user["id"],))
        assert cur.fetchone()["n"] == 1


def test_last_active_admin_cannot_be_demoted_or_deactivated(
    client: Any, admin_headers: dict[str, str]
) -> None:
    admin_id = client.get("/me", headers=admin_headers).get_json()["id"]
    resp = client.patch(f"/users/{admin_id}", json={"role": "user"}, headers=admin_headers)
    assert_error(resp, 409, "CONFLICT")
    assert_error(client.delete(f"/users/{admin_id}", headers=admin_headers), 409, "CONFLICT")

    make_user(client, admin_headers, role="admin")
    resp = client.patch(f"/users/{admin_id}", json={"role": "user"}, headers=admin_headers)
    assert resp.status_code == 200
    assert resp.get_json()["role"] == "user"


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/login", {"data": "{not json", "content_type": "application/json"}),
        ("post", "/login", {"json": ["admin", "pw"]}),
        ("post", "/login", {"json": {"username": 1, "password": 2}}),
        ("post", "/login", {"json": {"username": "a", "password": "b", "extra": 1}}),
        ("post", "/refresh", {"json": {}}),
        ("post", "/refresh", {"json": {"refresh_token": 123}}),
        ("post", "/logout", {"json": "token"}),
        ("post", "/validate", {"json": {"api_key": ["x"]}}),
        ("post", "/api-keys", {"json": {"name": "x", "expires_in_days": "5"}}),
        ("post", "/api-keys", {"json": {"name": "x", "expires_in_days": 0}}),
        ("post", "/api-keys", {"json": {"name": "x", "scopes": "jobs:read"}}),
        ("post", "/api-keys", {"json": {}}),
        ("post", "/users", {"json": {"username": "x", "password": 12345678}}),
        ("post", "/users", {"json": {"username": "bad name", "password": "12345678"}}),
        ("post", "/users", {"json": {"username": "x", "password": "12345678", "role": "root"}}),
        ("get", "/users?limit=abc", {}),
        ("get", "/api-keys?user_id=not-a-uuid", {}),
    ],
)
def test_bad_bodies_and_wrong_types_are_400_json(
    client: Any, admin_headers: dict[str, str], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    resp = getattr(client, method)(path, headers=admin_headers, **kwargs)
    assert_error(resp, 400, "INVALID_REQUEST")


def test_patch_with_string_boolean_is_400(client: Any, admin_headers: dict[str, str]) -> None:
    user = make_user(client, admin_headers)
    resp = client.patch(f"/users/{user['id']}", json={"is_active": "false"}, headers=admin_headers)
    assert_error(resp, 400, "INVALID_REQUEST")
    assert client.get(f"/users/{user['id']}", headers=admin_headers).get_json()["is_active"]


def test_unknown_routes_methods_and_ids_are_json(
    client: Any, admin_headers: dict[str, str]
) -> None:
    assert_error(client.get("/nope"), 404, "NOT_FOUND")
    assert_error(client.get("/login"), 405, "INVALID_REQUEST")
    assert_error(client.get("/users/not-a-uuid", headers=admin_headers), 404, "NOT_FOUND")
    big = {"username": "a", "password": "x" * 100_000}
    assert_error(client.post("/login", json=big), 413, "PAYLOAD_TOO_LARGE")


# --- bootstrap, health, docs ----------------------------------------------------------


def _count(db: Database, sql: str) -> int:
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()["n"]


def _bootstrap_in_parallel(boot: Settings, workers: int = 4) -> None:
    """Run bootstrap from several threads released at the same instant, each with its own
    pool, as several gunicorn workers would; any exception is re-raised by result()."""
    barrier = threading.Barrier(workers)

    def run() -> None:
        database = Database(boot.database_url)
        try:
            barrier.wait()
            run_bootstrap(database, boot)
        finally:
            database.close()

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(run) for _ in range(workers)]:
            future.result()


def test_bootstrap_is_idempotent_concurrent_and_never_overwrites(
    app_settings: Settings, db: Database, client: Any, admin_headers: dict[str, str]
) -> None:
    admin_id = client.get("/me", headers=admin_headers).get_json()["id"]
    client.patch(f"/users/{admin_id}", json={"password": "changed-by-admin"}, headers=admin_headers)

    _bootstrap_in_parallel(app_settings.replace(bootstrap_admin_password="other-pass-1"))
    assert _count(db, "SELECT count(*) AS n FROM users") == 1
    assert _count(db, "SELECT count(*) AS n FROM api_keys WHERE name = 'bootstrap'") == 1
    login(client, ADMIN, "changed-by-admin")


def test_bootstrap_from_scratch_in_parallel(settings: Settings, db: Database) -> None:
    boot = settings.replace(bootstrap_api_key=BOOT_KEY, bootstrap_admin_username="root")
    _bootstrap_in_parallel(boot)
    assert _count(db, "SELECT count(*) AS n FROM users WHERE role = 'admin'") == 1
    assert _count(db, "SELECT count(*) AS n FROM api_keys") == 1
    # Without BOOTSTRAP_ADMIN_PASSWORD the admin exists (owning the key) but cannot log in.
    app = create_app(settings)
    client = app.test_client()
    resp = client.get("/validate", headers={"X-API-Key": BOOT_KEY})
    assert resp.get_json()["username"] == "root"
    assert resp.get_json()["role"] == "admin"
    for guess in ("root", BOOT_KEY, "admin-password-123"):
        resp = client.post("/login", json={"username": "root", "password": guess})
        assert resp.status_code == 401
    app.extensions["jobgate_auth"].db.close()


def test_bootstrap_retries_then_raises_when_database_is_down(settings: Settings) -> None:
    down = Database("postgresql://jobgate:jobgate@127.0.0.1:1/jobgate")
    started = time.monotonic()
    with pytest.raises(OperationalError):
        run_bootstrap(
            down, settings.replace(bootstrap_admin_password="x" * 12), attempts=3, delay=0.1
        )
    assert time.monotonic() - started >= 0.3  # waited 0.1 + 0.2 between the attempts


def test_demo_key_is_refused_in_production(settings: Settings) -> None:
    with pytest.raises(BootstrapError):
        run_bootstrap(
            Database(settings.database_url),
            settings.replace(env="production", bootstrap_api_key=BOOT_KEY),
        )


def test_health_reports_database_state(client: Any, settings: Settings) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "status": "healthy",
        "service": "auth-service",
        "database": "connected",
    }

    down = create_app(settings.replace(database_url="postgresql://jobgate:x@127.0.0.1:1/jobgate"))
    resp = down.test_client().get("/health")
    assert resp.status_code == 503
    assert resp.get_json()["database"] == "disconnected"


def test_openapi_document_lists_the_routes(client: Any) -> None:
    resp = client.get("/openapi.json")
    assert resp.status_code == 200
    paths = resp.get_json()["paths"]
    for path in (
        "/login",
        "/refresh",
        "/logout",
        "/me",
        "/validate",
        "/.well-known/jwks.json",
        "/api-keys",
        "/api-keys/{key_id}",
        "/users",
        "/users/{user_id}",
        "/health",
    ):
        assert path in paths
