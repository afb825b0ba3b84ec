"""PostgreSQL access: a thread-safe pool and a transaction context manager.

Domain functions take an explicit connection (`def claim_job(conn, *, job_id, ...)`);
callers own the transaction, so a job row and its outbox row commit together.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

psycopg2.extras.register_uuid()
psycopg2.extensions.register_adapter(dict, psycopg2.extras.Json)

Connection = psycopg2.extensions.connection

# Errors that mean "the database is unreachable or went away", not "your SQL is wrong".
OperationalError = psycopg2.OperationalError
InterfaceError = psycopg2.InterfaceError
PoolError = psycopg2.pool.PoolError  # every pooled connection is in use
DataError = psycopg2.DataError  # a value PostgreSQL cannot take (range, encoding)
UNAVAILABLE = (OperationalError, InterfaceError, PoolError)  # wait and try again
IDLE_CHECK_S = 0.1  # a pooled connection idle longer is checked for a server goodbye


class Database:
    """A lazily opened connection pool; `transaction()` commits or rolls back.

    With every connection in use, `transaction()` waits up to `wait_s` for one to come back
    before raising PoolError (psycopg2's pool itself never waits): 0 suits a web process,
    which answers 503 at once; a worker whose job runs several threads waits its turn."""

    def __init__(
        self, url: str, *, minconn: int = 1, maxconn: int = 10, wait_s: float = 0.0
    ) -> None:
        self.url = url
        self._minconn = minconn
        self._maxconn = maxconn
        self._wait_s = wait_s
        self._free = threading.BoundedSemaphore(maxconn)
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._lock = threading.Lock()
        self._returned: dict[int, float] = {}  # id(connection) -> when it was handed back

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    pool = psycopg2.pool.ThreadedConnectionPool(
                        self._minconn,
                        self._maxconn,
                        self.url,
                        cursor_factory=psycopg2.extras.RealDictCursor,
                        connect_timeout=5,
                        application_name="jobgate",
                    )
                    # psycopg2's pool closes every connection handed back while `minconn`
                    # are idle, so each transaction beyond the first concurrent one paid a
                    # new connection (a PostgreSQL backend: ~3 ms; issue 13's profile). It
                    # opens only `minconn` at start; from then on keep what was opened.
                    pool.minconn = self._maxconn
                    self._pool = pool
        return self._pool

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Yield a pooled connection inside a transaction; broken connections are discarded."""
        with self._checkout() as conn:
            yield conn
            conn.commit()

    @contextlib.contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """Yield a pooled connection on which every `execute` is a transaction of its own,
        committed by the server as it answers: one round trip for a lone statement instead
        of three (psycopg2 sends BEGIN, the statement, COMMIT). For the hot paths that need
        one statement (a worker's claim, its outcome); a string of several statements sent
        in one `execute` runs as one implicit transaction, `SET LOCAL` included."""
        with self._checkout() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = False

    @contextlib.contextmanager
    def _checkout(self) -> Iterator[Connection]:
        pool = self._get_pool()
        if not self._free.acquire(timeout=self._wait_s or None, blocking=self._wait_s > 0):
            raise PoolError(f"all {self._maxconn} database connections are in use")
        try:
            conn = pool.getconn()
            # Kept idle through a restart? Only a connection idle for a while can have been
            # ended unnoticed: one handed back a moment ago is used without the check.
            while self._idle_for(conn) > IDLE_CHECK_S and _closed_by_server(conn):
                pool.putconn(conn, close=True)
                conn = pool.getconn()
        except BaseException:
            self._free.release()
            raise
        broken = False
        try:
            yield conn
        except BaseException as exc:
            broken = isinstance(exc, (OperationalError, InterfaceError)) or conn.closed != 0
            if not conn.closed and not conn.autocommit:
                with contextlib.suppress(Exception):
                    conn.rollback()
            raise
        finally:
            closing = broken or bool(conn.closed)
            if closing:
                self._returned.pop(id(conn), None)
            else:
                self._returned[id(conn)] = time.monotonic()
            pool.putconn(conn, close=closing)
            self._free.release()

    def _idle_for(self, conn: Connection) -> float:
        """Seconds since `conn` was last handed back (a new connection: never checked)."""
        returned = self._returned.get(id(conn))
        return 0.0 if returned is None else time.monotonic() - returned

    def ping(self) -> bool:
        try:
            with self.transaction() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                return True
        except Exception:  # noqa: BLE001 - any failure means "not reachable" to a health check
            return False

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


class Listener:
    """One connection LISTENing on `channel`, opened on first use and again once it was
    closed or lost: what a loop waiting for NOTIFY selects on (the webhook dispatcher, the
    edge agent). Not pooled: a listening connection is never handed to anyone else."""

    def __init__(self, url: str, channel: str, application_name: str) -> None:
        self.url = url
        self.channel = channel
        self.application_name = application_name
        self._conn: Connection | None = None

    def connection(self) -> Connection:
        """The listening connection (its `poll()` fills `notifies`)."""
        if self._conn is None or self._conn.closed:
            conn = psycopg2.connect(
                self.url, connect_timeout=5, application_name=self.application_name
            )
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {self.channel}")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        """Throw the connection away (it may be dead); the next `connection()` opens anew."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


def _closed_by_server(conn: Connection) -> bool:
    """Whether an idle pooled connection was ended by the server (a restart, an admin's
    pg_terminate_backend): an idle connection has nothing to read unless the server said
    goodbye, so a readable socket means it is gone; checked without blocking."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def fetch_one(conn: Connection, sql: str, params: Any = None) -> dict[str, Any] | None:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def fetch_all(conn: Connection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


RELAXED = "SET LOCAL synchronous_commit = off;\n"  # prefix: `relax_durability` in the same string


def relax_durability(conn: Connection) -> None:
    """This transaction may be lost in a database crash, so its commit need not wait for
    the WAL to reach the disk (progress that can be redone, a lease renewed every beat):
    a disk slow to flush then delays nothing that has a deadline."""
    execute(conn, "SET LOCAL synchronous_commit = off")


def execute(conn: Connection, sql: str, params: Any = None) -> int:
    """Run a statement and return the affected row count."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.rowcount
