"""The item model every kind shares: key, size in bytes, kind-specific meta, status."""

from __future__ import annotations

from jobgate import db as dbmod
from jobgate.jobs import job_items, submission
from tests.factories.jobs import make_job
from tests.factories.users import make_user


def test_items_keep_key_size_and_meta_and_failures_read_as_paths(db):
    job = make_job(db, owner_id=make_user(db)["id"])
    job_id = str(job["id"])
    with db.transaction() as conn:
        job_items.insert_items(
            conn,
            job_id=job_id,
            items=[
                ("media/a.bin", 100),  # a cache file, as the gateway passes it
                job_items.NewItem("7301234567890123456", meta={"title": "a video"}),
                job_items.NewItem("out/result.csv", 2048, {"role": "output"}),
            ],
        )
        job_items.mark_items(conn, job_id=job_id, done=[0], failed={2: "not written"})
        open_now = job_items.open_items(conn, job_id=job_id)
        totals = job_items.item_totals(conn, job_id=job_id)
        failed = job_items.failed_items(conn, job_id=job_id)
    assert open_now == [
        {"seq": 1, "key": "7301234567890123456", "size": 0, "meta": {"title": "a video"}},
        {"seq": 2, "key": "out/result.csv", "size": 2048, "meta": {"role": "output"}},
    ]
    assert totals == {"items_done": 1, "items_failed": 1, "bytes_done": 100}
    # The APIs (seed 000's failedFiles, the canonical failures) call the key `path`.
    assert failed == [{"path": "out/result.csv", "error": "not written"}]


def test_retrying_a_job_makes_failed_items_pending_and_keeps_done_ones(db):
    job = make_job(db, owner_id=make_user(db)["id"], items=[("a", 1), ("b", 2), ("c", 3)])
    job_id = str(job["id"])
    with db.transaction() as conn:
        job_items.mark_items(conn, job_id=job_id, done=[0], failed={1: "gone"})
        dbmod.execute(conn, "UPDATE jobs SET status = 'failed' WHERE id = %s", (job_id,))
    with db.transaction() as conn:
        submission.retry_job(conn, job_id=job_id, app_id="test", request_id=None)
        keys = [i["key"] for i in job_items.open_items(conn, job_id=job_id)]
        failed = job_items.failed_items(conn, job_id=job_id)
    assert keys == ["b", "c"] and failed == []


def test_items_with_any_characters_are_stored_as_given(db):
    user = make_user(db)
    job = make_job(db, owner_id=user["id"])
    odd = [
        ('tab\there/"quoted", comma.mov', 7, None),
        ("new\nline\\back", 0, {"file_id": "f1", "note": 'a "b"'}),
        ("", 3, None),
        ("ünïcode/ファイル", 2**40, {}),
    ]
    with db.transaction() as conn:
        job_items.insert_items(conn, job_id=str(job["id"]), items=odd)
        rows = dbmod.fetch_all(
            conn,
            "SELECT seq, key, size, meta FROM job_items WHERE job_id = %s ORDER BY seq",
            (str(job["id"]),),
        )
    assert [(r["key"], r["size"], r["meta"]) for r in rows] == odd
    assert [r["seq"] for r in rows] == [0, 1, 2, 3]
