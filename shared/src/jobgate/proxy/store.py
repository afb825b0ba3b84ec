"""The proxy set's tables (migration 0014): `proxy_upstreams`, `proxy_routes`, `proxy_state`.

Every writer first locks the one `proxy_state` row, then reads the current set, applies
its change and validates the WHOLE resulting set with `validate_set` before writing: two
writers serialise, so neither commits a set validated against a state the other changed
(a route on an upstream deleted meanwhile). The whole-set PUT, which depends on nothing
stored, validates before the lock and reads only the version under it. The caller owns the
transaction and must use
READ COMMITTED (the default): each statement after the lock sees what the writer before
committed. A trigger bumps `proxy_state.version` once per transaction and notifies
`jobgate_proxy` with it; NOTIFY is delivered at commit, so an agent never sees a set that
was rolled back. A refused change (400/409) writes nothing.

Single-item errors name the item's own fields (`servers[0].address`, `upstream`), not its
place in the set.
"""

from __future__ import annotations

from typing import Any

from psycopg2.extras import Json

from jobgate import db
from jobgate.errors import Conflict, InvalidRequest, JobgateError, NotFound
from jobgate.proxy.model import invalid_request, validate_route, validate_set, validate_upstream

PROXY_CHANNEL = "jobgate_proxy"  # pg_notify channel, payload = the new version

Doc = dict[str, Any]


class UpstreamNotFound(NotFound):
    code = "UPSTREAM_NOT_FOUND"


class RouteNotFound(NotFound):
    code = "ROUTE_NOT_FOUND"


# --- reading ----------------------------------------------------------------------------------

# One statement, so one snapshot: the version always matches the documents.
_LOAD_SQL = """
SELECT s.version,
       (SELECT coalesce(jsonb_agg(doc ORDER BY name COLLATE "C"), '[]') FROM proxy_upstreams)
           AS upstreams,
       (SELECT coalesce(jsonb_agg(doc ORDER BY id COLLATE "C"), '[]') FROM proxy_routes)
           AS routes
FROM proxy_state s
"""


def load_set(conn: db.Connection) -> tuple[int, dict]:
    """(version, normalised set): upstreams sorted by name, routes by id."""
    row = db.fetch_one(conn, _LOAD_SQL)
    assert row is not None, "migration 0014 inserts the proxy_state row"
    return row["version"], {"upstreams": row["upstreams"], "routes": row["routes"]}


def list_upstreams(conn: db.Connection) -> list[dict]:
    rows = db.fetch_all(conn, 'SELECT doc FROM proxy_upstreams ORDER BY name COLLATE "C"')
    return [row["doc"] for row in rows]


def get_upstream(conn: db.Connection, name: str) -> dict | None:
    """By exact name (GET /api/proxy/upstreams/{name})."""
    row = db.fetch_one(conn, "SELECT doc FROM proxy_upstreams WHERE name = %s", (name,))
    return row["doc"] if row else None


def require_upstream(conn: db.Connection, name: str) -> dict:
    """By exact name, or UpstreamNotFound listing the names there are."""
    found = get_upstream(conn, name)
    if found is None:
        raise _upstream_missing(list_upstreams(conn), name)
    return found


def list_routes(conn: db.Connection) -> list[dict]:
    rows = db.fetch_all(conn, 'SELECT doc FROM proxy_routes ORDER BY id COLLATE "C"')
    return [row["doc"] for row in rows]


def get_route(conn: db.Connection, route_id: str) -> dict | None:
    row = db.fetch_one(conn, "SELECT doc FROM proxy_routes WHERE id = %s", (route_id,))
    return row["doc"] if row else None


def require_route(conn: db.Connection, route_id: str) -> dict:
    """By id, or RouteNotFound listing the ids there are."""
    found = get_route(conn, route_id)
    if found is None:
        raise _route_missing(list_routes(conn), route_id)
    return found


# --- the whole set ----------------------------------------------------------------------------


def replace_set(conn: db.Connection, doc: dict) -> tuple[int, dict]:
    """Replace everything with `doc` (PUT /api/proxy/config); (new version, normalised set).
    Rows that did not change keep their `updated_at`. A `version` in `doc` (GET's, sent
    back) must still be the set's: a set changed since then is a 409, not overwritten with
    an edit of an older one; without `version` the set is replaced whatever it was."""
    new = validate_set(doc)  # before the lock: host names are looked up
    current = _lock_version(conn)  # the current set itself is not needed: all is replaced
    expected = doc.get("version")
    if expected is not None:
        if not isinstance(expected, int) or isinstance(expected, bool):
            raise invalid_request([{"path": "version", "message": "must be GET's version"}])
        if expected != current:
            raise Conflict(
                f"The set changed since version {expected} (now {current}): read it again"
                " and apply your change to that",
                details={"version": expected, "current_version": current},
            )
    _write_set(conn, new)
    return load_set(conn)


def _lock_version(conn: db.Connection) -> int:
    """Take the writers' lock; return the set's version under it."""
    row = db.fetch_one(conn, "SELECT version FROM proxy_state FOR UPDATE")
    assert row is not None, "migration 0014 inserts the proxy_state row"
    return int(row["version"])


def _lock(conn: db.Connection) -> dict:
    """Take the writers' lock; return the set as it is under it."""
    _lock_version(conn)
    return load_set(conn)[1]


def _write_set(conn: db.Connection, new: dict) -> None:
    """Make the tables hold `new` (valid): routes that go first, then upstreams are
    renamed (case only), upserted and dropped, so the foreign key holds at every step."""
    route_ids = [r["id"] for r in new["routes"]]
    db.execute(conn, "DELETE FROM proxy_routes WHERE NOT (id = ANY(%s))", (route_ids,))
    _rename_by_case(conn, [u["name"] for u in new["upstreams"]])
    if new["upstreams"]:
        db.execute(
            conn,
            """
            INSERT INTO proxy_upstreams (name, doc)
            SELECT e ->> 'name', e FROM jsonb_array_elements(%s::jsonb) AS e
            ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc, updated_at = now()
                WHERE proxy_upstreams.doc IS DISTINCT FROM EXCLUDED.doc
            """,
            (Json(new["upstreams"]),),
        )
    if new["routes"]:
        db.execute(
            conn,
            """
            INSERT INTO proxy_routes (id, doc, upstream)
            SELECT e ->> 'id', e, e ->> 'upstream' FROM jsonb_array_elements(%s::jsonb) AS e
            ON CONFLICT (id) DO UPDATE
                SET doc = EXCLUDED.doc, upstream = EXCLUDED.upstream, updated_at = now()
                WHERE proxy_routes.doc IS DISTINCT FROM EXCLUDED.doc
            """,
            (Json(new["routes"]),),
        )
    names = [u["name"] for u in new["upstreams"]]
    db.execute(conn, "DELETE FROM proxy_upstreams WHERE NOT (name = ANY(%s))", (names,))


def _rename_by_case(conn: db.Connection, names: list[str]) -> None:
    """An upstream whose new name differs from the stored one only in case is renamed in
    place (ON UPDATE CASCADE moves its routes): inserting it would break the unique index
    on lower(name) while the old row still has routes."""
    for name in names:
        db.execute(
            conn,
            "UPDATE proxy_upstreams SET name = %s WHERE lower(name) = lower(%s) AND name <> %s",
            (name, name, name),
        )


def _validate(*, upstreams: list[Doc], routes: list[Doc], focus: str) -> None:
    """validate_set on the set a write would leave, with errors about the item being
    written (at `focus`, e.g. "routes[3]") named by its own fields. No name is looked up
    under the writers' lock: the item was validated alone before it, the rest when stored
    (a stored name that stopped resolving does not block other writes)."""
    try:
        validate_set({"upstreams": upstreams, "routes": routes}, resolve_names=False)
    except InvalidRequest as exc:
        raise invalid_request([_refocus(e, focus) for e in exc.details["errors"]]) from None
    except Conflict as exc:
        if "field" in exc.details:
            exc.details["field"] = _refocus({"path": exc.details["field"]}, focus)["path"]
        raise


def _refocus(error: dict, focus: str) -> dict:
    path = error["path"]
    if path == focus:
        return {**error, "path": ""}
    if path.startswith(focus + "."):
        return {**error, "path": path[len(focus) + 1 :]}
    return error


# --- upstreams --------------------------------------------------------------------------------


def create_upstream(conn: db.Connection, doc: dict) -> dict:
    """POST: Conflict when the name exists, compared case-insensitively."""
    upstream = validate_upstream(doc)
    current = _lock(conn)
    existing = _same_name(current, upstream["name"])
    if existing is not None:
        raise Conflict(
            f"Upstream {upstream['name']!r} already exists",
            details={"upstream": upstream["name"], "existing": existing},
        )
    upstreams = [*current["upstreams"], upstream]
    focus = f"upstreams[{len(upstreams) - 1}]"
    _validate(upstreams=upstreams, routes=current["routes"], focus=focus)
    db.execute(
        conn,
        "INSERT INTO proxy_upstreams (name, doc) VALUES (%s, %s)",
        (upstream["name"], upstream),
    )
    return upstream


def replace_upstream(conn: db.Connection, name: str, doc: dict) -> dict:
    """PUT: a full replacement; the body's name (if given) must be the path's: no renames."""
    body = {**doc, "name": doc.get("name", name)} if isinstance(doc, dict) else doc
    upstream = validate_upstream(body)
    if upstream["name"] != name:
        raise InvalidRequest(
            "name: must equal the name in the path (upstreams are not renamed)",
            details={"errors": [{"path": "name", "message": "must equal the name in the path"}]},
        )
    current = _lock(conn)
    index = _index(current["upstreams"], "name", name, _upstream_missing)
    upstreams = list(current["upstreams"])
    upstreams[index] = upstream
    _validate(upstreams=upstreams, routes=current["routes"], focus=f"upstreams[{index}]")
    db.execute(
        conn,
        "UPDATE proxy_upstreams SET doc = %s, updated_at = now() WHERE name = %s",
        (upstream, name),
    )
    return upstream


def delete_upstream(conn: db.Connection, name: str) -> None:
    """DELETE: Conflict listing the routes that still use it. A removal cannot make a
    valid set invalid, so it is not validated again: an upstream whose host name stopped
    resolving can always be removed."""
    current = _lock(conn)
    _index(current["upstreams"], "name", name, _upstream_missing)
    users = [r["id"] for r in current["routes"] if r["upstream"] == name]
    if users:
        raise Conflict(
            f"Upstream {name!r} is used by {len(users)} route(s)",
            details={"upstream": name, "routes": users},
        )
    db.execute(conn, "DELETE FROM proxy_upstreams WHERE name = %s", (name,))


def _same_name(current: dict, name: str) -> str | None:
    return next(
        (u["name"] for u in current["upstreams"] if u["name"].lower() == name.lower()), None
    )


def _upstream_missing(current: list[Doc], name: str) -> JobgateError:
    return UpstreamNotFound(
        f"Upstream {name!r} not found",
        details={"name": name, "available_upstreams": [u["name"] for u in current]},
    )


# --- routes -----------------------------------------------------------------------------------


def create_route(conn: db.Connection, doc: dict) -> dict:
    """POST: a route with a new id (`route_<12 hex>` when the body has none)."""
    route = validate_route(doc)
    current = _lock(conn)
    if any(r["id"] == route["id"] for r in current["routes"]):
        raise Conflict(f"Route {route['id']!r} already exists", details={"id": route["id"]})
    routes = [*current["routes"], route]
    focus = f"routes[{len(routes) - 1}]"
    _validate(upstreams=current["upstreams"], routes=routes, focus=focus)
    db.execute(
        conn,
        "INSERT INTO proxy_routes (id, doc, upstream) VALUES (%s, %s, %s)",
        (route["id"], route, route["upstream"]),
    )
    return route


def replace_route(conn: db.Connection, route_id: str, doc: dict) -> dict:
    """PUT: a full replacement; the body's id (if given) must be the path's."""
    body = {**doc, "id": doc.get("id", route_id)} if isinstance(doc, dict) else doc
    route = validate_route(body)
    if route["id"] != route_id:
        raise InvalidRequest(
            "id: must equal the id in the path",
            details={"errors": [{"path": "id", "message": "must equal the id in the path"}]},
        )
    current = _lock(conn)
    index = _index(current["routes"], "id", route_id, _route_missing)
    routes = list(current["routes"])
    routes[index] = route
    _validate(upstreams=current["upstreams"], routes=routes, focus=f"routes[{index}]")
    db.execute(
        conn,
        "UPDATE proxy_routes SET doc = %s, upstream = %s, updated_at = now() WHERE id = %s",
        (route, route["upstream"], route_id),
    )
    return route


def delete_route(conn: db.Connection, route_id: str) -> None:
    current = _lock(conn)
    _index(current["routes"], "id", route_id, _route_missing)
    db.execute(conn, "DELETE FROM proxy_routes WHERE id = %s", (route_id,))


def _route_missing(current: list[Doc], route_id: str) -> JobgateError:
    return RouteNotFound(
        f"Route {route_id!r} not found",
        details={"id": route_id, "available_routes": [r["id"] for r in current]},
    )


def _index(items: list[Doc], key: str, value: str, missing: Any) -> int:
    for i, item in enumerate(items):
        if item[key] == value:
            return i
    raise missing(items, value)
