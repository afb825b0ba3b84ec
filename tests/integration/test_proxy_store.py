"""The proxy set's tables (jobgate.proxy.store, migration 0014) on the run's PostgreSQL:
every write validates the whole resulting set, bumps the version once and notifies at
commit; a refused write leaves the set untouched; writers serialise."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest

from jobgate import db as dbmod
from jobgate.db import Database
from jobgate.errors import Conflict, InvalidRequest, NotFound
from jobgate.proxy import store

WEB = {"name": "web", "servers": [{"address": "127.0.0.1:9001"}]}
API = {
    "name": "api",
    "strategy": "least_conn",
    "servers": [{"address": "127.0.0.1:9002", "weight": 3}],
}
ROUTE = {"id": "r_app", "path": "/app/*", "upstream": "web"}


@pytest.fixture
def proxy_db(db: Database) -> Iterator[Database]:
    """The run's database with an empty proxy set before and after (the shared `db`
    fixture does not truncate the proxy tables)."""
    _empty(db)
    yield db
    _empty(db)


def _empty(database: Database) -> None:
    with database.transaction() as conn:
        dbmod.execute(conn, "TRUNCATE proxy_routes, proxy_upstreams")


def version(database: Database) -> int:
    with database.transaction() as conn:
        return store.load_set(conn)[0]


def write(database: Database, fn, *args):
    with database.transaction() as conn:
        return fn(conn, *args)


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {store.PROXY_CHANNEL}")
    yield conn
    conn.close()


def notifications(conn, wait: float = 0.0) -> list[str]:
    """Payloads that arrived on the listening connection (waiting up to `wait` for one)."""
    if wait and not conn.notifies:
        select.select([conn], [], [], wait)
    conn.poll()
    payloads = [n.payload for n in conn.notifies]
    conn.notifies.clear()
    return payloads


# --- reading and writing ----------------------------------------------------------------------


def test_empty_set(proxy_db):
    with proxy_db.transaction() as conn:
        number, proxy_set = store.load_set(conn)
        assert proxy_set == {"upstreams": [], "routes": []}
        assert store.list_upstreams(conn) == [] and store.list_routes(conn) == []
        assert store.get_upstream(conn, "web") is None and store.get_route(conn, "x") is None
    assert isinstance(number, int)


def test_replace_set_stores_the_normalised_set(proxy_db):
    before = version(proxy_db)
    with proxy_db.transaction() as conn:
        number, proxy_set = store.replace_set(
            conn, {"upstreams": [WEB, API], "routes": [ROUTE, {"path": "/x", "upstream": "api"}]}
        )
    assert number == before + 1  # one transaction, one version, however many statements
    assert [u["name"] for u in proxy_set["upstreams"]] == ["api", "web"]
    assert proxy_set["upstreams"][1]["servers"][0]["fail_timeout"] == "10s"
    assert {r["path"] for r in proxy_set["routes"]} == {"/app/*", "/x"}
    with proxy_db.transaction() as conn:
        assert store.load_set(conn) == (number, proxy_set)
        assert store.list_upstreams(conn) == proxy_set["upstreams"]
        assert store.list_routes(conn) == proxy_set["routes"]
        assert store.get_route(conn, "r_app")["upstream"] == "web"


def test_replace_set_again_moves_deletes_and_renames_by_case(proxy_db):
    write(proxy_db, store.replace_set, {"upstreams": [WEB, API], "routes": [ROUTE]})
    with proxy_db.transaction() as conn:
        _, proxy_set = store.replace_set(
            conn,
            {
                "upstreams": [{**WEB, "name": "Web"}],
                "routes": [{**ROUTE, "upstream": "Web", "retries": 0}],
            },
        )
    assert [u["name"] for u in proxy_set["upstreams"]] == ["Web"]
    assert proxy_set["routes"][0]["retries"] == 0
    with proxy_db.transaction() as conn:
        assert store.get_upstream(conn, "web") is None
        assert store.get_upstream(conn, "Web")["name"] == "Web"
    write(proxy_db, store.replace_set, {"upstreams": [], "routes": []})
    with proxy_db.transaction() as conn:
        assert store.load_set(conn)[1] == {"upstreams": [], "routes": []}


def test_a_bad_whole_set_leaves_the_old_one_untouched(proxy_db):
    write(proxy_db, store.replace_set, {"upstreams": [WEB], "routes": [ROUTE]})
    before = version(proxy_db)
    with proxy_db.transaction() as conn:
        old = store.load_set(conn)
    bad = {"upstreams": [API], "routes": [ROUTE, {"id": "r2", "path": "/b", "upstream": "nope"}]}
    with pytest.raises(InvalidRequest) as exc, proxy_db.transaction() as conn:
        store.replace_set(conn, bad)
    assert exc.value.details["errors"] == [
        {"path": "routes[0].upstream", "message": "unknown upstream 'web'"},
        {"path": "routes[1].upstream", "message": "unknown upstream 'nope'"},
    ]
    with pytest.raises(Conflict), proxy_db.transaction() as conn:
        store.replace_set(conn, {"upstreams": [WEB], "routes": [{**ROUTE, "path": "/api/v1/*"}]})
    with proxy_db.transaction() as conn:
        assert store.load_set(conn) == old
    assert version(proxy_db) == before


# --- upstreams --------------------------------------------------------------------------------


def test_upstream_crud(proxy_db):
    created = write(proxy_db, store.create_upstream, WEB)
    assert created["strategy"] == "round_robin"
    with proxy_db.transaction() as conn:
        assert store.get_upstream(conn, "web") == created
    replaced = write(proxy_db, store.replace_upstream, "web", {**API, "name": "web"})
    assert replaced["strategy"] == "least_conn"
    without_name = write(proxy_db, store.replace_upstream, "web", {"servers": WEB["servers"]})
    assert without_name["name"] == "web"
    write(proxy_db, store.delete_upstream, "web")
    with proxy_db.transaction() as conn:
        assert store.list_upstreams(conn) == []


def test_upstream_errors(proxy_db):
    write(proxy_db, store.create_upstream, WEB)
    with pytest.raises(Conflict) as exc, proxy_db.transaction() as conn:
        store.create_upstream(conn, {**WEB, "name": "WEB"})
    assert exc.value.details == {"upstream": "WEB", "existing": "web"}
    with pytest.raises(InvalidRequest) as exc, proxy_db.transaction() as conn:
        store.create_upstream(conn, {"name": "x", "servers": [{"address": "127.0.0.1:0"}]})
    assert exc.value.details["errors"][0]["path"] == "servers[0].address"
    with pytest.raises(InvalidRequest) as exc, proxy_db.transaction() as conn:
        store.replace_upstream(conn, "web", {**WEB, "name": "other"})
    assert exc.value.details["errors"][0]["path"] == "name"
    with pytest.raises(NotFound) as exc, proxy_db.transaction() as conn:
        store.replace_upstream(conn, "nope", {**WEB, "name": "nope"})
    assert exc.value.code == "UPSTREAM_NOT_FOUND"
    assert exc.value.details == {"name": "nope", "available_upstreams": ["web"]}
    with pytest.raises(NotFound), proxy_db.transaction() as conn:
        store.delete_upstream(conn, "nope")


def test_deleting_an_upstream_in_use_is_a_conflict(proxy_db):
    write(
        proxy_db,
        store.replace_set,
        {"upstreams": [WEB], "routes": [ROUTE, {**ROUTE, "id": "r2", "path": "/b"}]},
    )
    with pytest.raises(Conflict) as exc, proxy_db.transaction() as conn:
        store.delete_upstream(conn, "web")
    assert exc.value.status == 409
    assert exc.value.details == {"upstream": "web", "routes": ["r2", "r_app"]}
    with proxy_db.transaction() as conn:
        assert store.get_upstream(conn, "web") is not None


# --- routes -----------------------------------------------------------------------------------


def test_route_crud(proxy_db):
    write(proxy_db, store.create_upstream, WEB)
    write(proxy_db, store.create_upstream, API)
    created = write(proxy_db, store.create_route, {"path": "/x/*", "upstream": "web"})
    route_id = created["id"]
    assert route_id.startswith("route_") and created["method"] == "ANY"
    replaced = write(proxy_db, store.replace_route, route_id, {"path": "/y", "upstream": "api"})
    assert replaced["id"] == route_id and replaced["path"] == "/y"
    with proxy_db.transaction() as conn:
        assert store.get_route(conn, route_id) == replaced
    # The foreign key follows: api cannot go while the route uses it, web can.
    with pytest.raises(Conflict), proxy_db.transaction() as conn:
        store.delete_upstream(conn, "api")
    write(proxy_db, store.delete_upstream, "web")
    write(proxy_db, store.delete_route, route_id)
    with proxy_db.transaction() as conn:
        assert store.list_routes(conn) == []


def test_route_errors_name_the_route_fields(proxy_db):
    write(proxy_db, store.create_upstream, WEB)
    write(proxy_db, store.create_route, ROUTE)
    with pytest.raises(InvalidRequest) as exc, proxy_db.transaction() as conn:
        store.create_route(conn, {"path": "/b", "upstream": "nope"})
    assert exc.value.details["errors"] == [
        {"path": "upstream", "message": "unknown upstream 'nope'"}
    ]
    with pytest.raises(Conflict) as exc, proxy_db.transaction() as conn:
        store.create_route(conn, {**ROUTE, "id": "other"})  # same path, same method
    assert exc.value.details["routes"] == ["r_app", "other"]
    with pytest.raises(Conflict), proxy_db.transaction() as conn:
        store.create_route(conn, {**ROUTE, "path": "/z"})  # same id
    with pytest.raises(Conflict) as exc, proxy_db.transaction() as conn:
        store.create_route(conn, {"path": "/docs", "upstream": "web"})
    assert exc.value.details["reserved"] == "/docs"
    with pytest.raises(InvalidRequest) as exc, proxy_db.transaction() as conn:
        store.replace_route(conn, "r_app", {**ROUTE, "id": "else"})
    assert exc.value.details["errors"][0]["path"] == "id"
    with pytest.raises(NotFound) as exc, proxy_db.transaction() as conn:
        store.replace_route(conn, "nope", {"path": "/q", "upstream": "web"})
    assert exc.value.code == "ROUTE_NOT_FOUND"
    assert exc.value.details == {"id": "nope", "available_routes": ["r_app"]}
    with pytest.raises(NotFound), proxy_db.transaction() as conn:
        store.delete_route(conn, "nope")


# --- version and NOTIFY -----------------------------------------------------------------------


def test_version_and_notify_arrive_at_commit(proxy_db, listener):
    notifications(listener)
    before = version(proxy_db)
    with proxy_db.transaction() as conn:
        store.create_upstream(conn, WEB)
        store.create_route(conn, ROUTE)
        time.sleep(0.2)
        assert notifications(listener) == []  # not before commit
        assert version(proxy_db) == before  # other connections still see the old set
    assert notifications(listener, wait=5) == [str(before + 1)]
    assert version(proxy_db) == before + 1
    write(proxy_db, store.delete_route, "r_app")
    assert notifications(listener, wait=5) == [str(before + 2)]


def test_a_rolled_back_write_notifies_nothing(proxy_db, listener):
    notifications(listener)
    before = version(proxy_db)
    with pytest.raises(RuntimeError), proxy_db.transaction() as conn:
        store.create_upstream(conn, WEB)
        raise RuntimeError("the caller fails after the write")
    time.sleep(0.2)
    assert notifications(listener) == []
    assert version(proxy_db) == before


def test_truncate_bumps_the_version_too(proxy_db, listener):
    """Tests empty the tables with TRUNCATE; agents must follow that as well."""
    write(proxy_db, store.create_upstream, WEB)
    notifications(listener, wait=5)
    before = version(proxy_db)
    _empty(proxy_db)
    assert notifications(listener, wait=5) == [str(before + 1)]


# --- writers serialise ------------------------------------------------------------------------


def test_writers_serialise_on_the_state_row(proxy_db):
    """A route written while another transaction creates its upstream waits for that
    commit and then validates against it (without the lock it would see no upstream)."""
    outcome: dict[str, object] = {}
    with proxy_db.transaction() as first:
        store.create_upstream(first, WEB)

        def second() -> None:
            try:
                outcome["route"] = write(proxy_db, store.create_route, ROUTE)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = exc

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the first writer's lock
    thread.join(10)
    assert "error" not in outcome, outcome
    assert outcome["route"]["upstream"] == "web"


def test_a_delete_waits_for_a_route_being_added(proxy_db):
    write(proxy_db, store.create_upstream, WEB)
    outcome: dict[str, object] = {}
    with proxy_db.transaction() as first:
        store.create_route(first, ROUTE)

        def second() -> None:
            try:
                write(proxy_db, store.delete_upstream, "web")
            except Exception as exc:  # noqa: BLE001 - the expected conflict
                outcome["error"] = exc

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()
    thread.join(10)
    assert isinstance(outcome.get("error"), Conflict)
    assert outcome["error"].details["routes"] == ["r_app"]


# --- the migration ----------------------------------------------------------------------------


def test_migration_rolls_back_and_applies_again():
    """0014 (and any later migration that depends on it) undone on a database of its own,
    then applied again: the rollback leaves nothing behind that the migration would trip on."""
    from yoyo import get_backend, read_migrations

    from jobgate.migrate import MIGRATIONS_DIR, apply_migrations
    from tests.conftest import PG_TEST_HOST, RUN_ID, _admin_execute

    name = f"jobgate_test_{RUN_ID}_proxy_migration"
    _admin_execute(f'CREATE DATABASE "{name}" OWNER jobgate')
    url = f"{PG_TEST_HOST}/{name}"
    try:
        apply_migrations(url)
        backend = get_backend(url)
        migrations = read_migrations(str(MIGRATIONS_DIR))
        with backend.lock():
            undo = [m for m in backend.to_rollback(migrations) if m.id >= "0014"]
            backend.rollback_migrations(undo)
        assert [m.id for m in undo][-1] == "0014.proxy-set"
        conn = psycopg2.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass('proxy_state'), to_regclass('proxy_routes')")
                assert cur.fetchone() == (None, None)
        finally:
            conn.close()
        assert "0014.proxy-set" in apply_migrations(url)
        database = Database(url)
        try:
            with database.transaction() as conn:
                assert store.load_set(conn) == (0, {"upstreams": [], "routes": []})
        finally:
            database.close()
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
