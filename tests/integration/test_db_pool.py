"""The connection pool keeps the connections it opened, and drops the ones the server ended."""

from __future__ import annotations

import threading
import time

import psycopg2.errors
import pytest

from jobgate import db as dbmod


def test_connections_handed_back_are_reused_not_reopened(database_url):
    pool = dbmod.Database(database_url, maxconn=4)
    opened: list[int] = []

    def work() -> None:
        for _ in range(50):
            with pool.transaction() as conn:
                pid = dbmod.fetch_one(conn, "SELECT pg_backend_pid() AS pid")["pid"]
                opened.append(pid)
            time.sleep(0.001)  # idle gaps: the pool holds spare connections between uses

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pool.close()
    # psycopg2's pool alone closes every connection returned while one is idle: hundreds
    # of backends for 200 transactions. At most one per thread here.
    assert len(set(opened)) <= 4


def test_idle_connections_ended_by_the_server_are_replaced(database_url):
    pool = dbmod.Database(database_url, maxconn=3)
    barrier = threading.Barrier(3)
    pids: list[int] = []

    def hold() -> None:
        with pool.transaction() as conn:
            barrier.wait(timeout=10)
            pids.append(dbmod.fetch_one(conn, "SELECT pg_backend_pid() AS pid")["pid"])

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admin = dbmod.Database(database_url, maxconn=1)
    with admin.transaction() as conn:
        ended = dbmod.fetch_one(
            conn,
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n"
            " FROM pg_stat_activity WHERE pid = ANY(%s)",
            (pids,),
        )
    assert ended["n"] == 3  # the three were kept open, idle, and are now ended
    time.sleep(0.2)
    # Every kept connection is dead; each transaction still gets a live one.
    for _ in range(4):
        with pool.transaction() as conn:
            pid = dbmod.fetch_one(conn, "SELECT pg_backend_pid() AS pid")["pid"]
            assert pid not in pids
    pool.close()
    admin.close()


def test_autocommit_statements_are_their_own_transactions(database_url):
    pool = dbmod.Database(database_url, maxconn=1)
    with pool.autocommit() as conn:
        dbmod.execute(conn, "CREATE TEMP TABLE IF NOT EXISTS ac (x int)")
        # A string of statements is one implicit transaction: SET LOCAL holds for it alone,
        # and a failure in it undoes the whole string.
        row = dbmod.fetch_one(
            conn, dbmod.RELAXED + "SELECT current_setting('synchronous_commit') AS s"
        )
        assert row["s"] == "off"
        assert (
            dbmod.fetch_one(conn, "SELECT current_setting('synchronous_commit') AS s")["s"] == "on"
        )
        with pytest.raises(psycopg2.errors.DivisionByZero):
            dbmod.execute(conn, "INSERT INTO ac VALUES (1); SELECT 1 / 0")
        dbmod.execute(conn, "INSERT INTO ac VALUES (2)")  # committed as it answered
        assert [r["x"] for r in dbmod.fetch_all(conn, "SELECT x FROM ac")] == [2]
    # Back in the pool as an ordinary connection: a transaction rolls back as one.
    with pytest.raises(RuntimeError), pool.transaction() as conn:
        dbmod.execute(conn, "INSERT INTO ac VALUES (3)")
        raise RuntimeError
    with pool.transaction() as conn:
        assert [r["x"] for r in dbmod.fetch_all(conn, "SELECT x FROM ac")] == [2]
    pool.close()
