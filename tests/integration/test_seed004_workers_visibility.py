"""Seed 004's workers API shows each reader only what is its business: Jobgate's own workers
to everyone (infrastructure), an external worker to its owner and admins, and a worker's
`current_task_id` to the owner of that job and admins (another user's job id is never
disclosed). `/workers/status` counts what its reader sees."""

from __future__ import annotations

from typing import Any

import pytest

from jobgate import workers
from tests.factories.jobs import make_job
from tests.integration.conftest import make_login

WORKERS = "/api/v1/workers"
STATUS_PATHS = ("/workers/status", f"{WORKERS}/status")


@pytest.fixture
def alice(client, admin) -> tuple[dict[str, str], str]:
    return make_login(client, admin, "alice", ["jobs:read", "jobs:write", "workers:write"])


@pytest.fixture
def bob(client, admin) -> tuple[dict[str, str], str]:
    return make_login(client, admin, "bob", ["jobs:read", "jobs:write", "workers:write"])


def beat(db, worker_id: str, *, job_id: Any = None, kind: str = "task") -> None:
    """A Jobgate worker's heartbeat, holding `job_id` (busy) or nothing (idle)."""
    with db.transaction() as conn:
        workers.heartbeat(
            conn,
            worker_id=worker_id,
            kind=kind,
            hostname="host-1",
            pid=1234,
            status="busy" if job_id else "idle",
            current_job_id=str(job_id) if job_id else None,
            current_load=1 if job_id else 0,
            max_capacity=2,
        )


def register(client, headers: dict[str, str], worker_id: str, load: int = 1) -> None:
    body = {"worker_id": worker_id, "status": "busy", "current_load": load, "max_capacity": 4}
    r = client.post(f"{WORKERS}/heartbeat", json=body, headers=headers)
    assert r.status_code == 200, r.get_json()


def listed(client, headers: dict[str, str], query: str = "") -> dict[str, dict[str, Any]]:
    r = client.get(f"{WORKERS}?{query}", headers=headers)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["pagination"]["total"] == len(body["data"])  # one page: the total agrees
    return {w["worker_id"]: w for w in body["data"]}


def one(client, headers: dict[str, str], worker_id: str) -> dict[str, Any]:
    r = client.get(f"{WORKERS}/{worker_id}", headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["data"]


def test_current_task_id_only_for_the_jobs_owner_and_admins(client, db, admin, alice, bob):
    alices_job = make_job(db, owner_id=alice[1], kind="task", params={"name": "a"})["id"]
    bobs_job = make_job(db, owner_id=bob[1], kind="task", params={"name": "b"})["id"]
    beat(db, "task-host-1-1-aaaaaa", job_id=alices_job)
    beat(db, "task-host-1-2-bbbbbb", job_id=bobs_job)
    beat(db, "task-host-1-3-cccccc")

    def tasks(headers: dict[str, str]) -> dict[str, str | None]:
        """Each worker's `current_task_id` as `headers` read it, in the list and one by one."""
        seen = {w: body["current_task_id"] for w, body in listed(client, headers).items()}
        for worker_id, task_id in seen.items():
            assert one(client, headers, worker_id)["current_task_id"] == task_id
        return seen

    assert tasks(alice[0]) == {
        "task-host-1-1-aaaaaa": str(alices_job),
        "task-host-1-2-bbbbbb": None,  # bob's job: not disclosed, the worker still is
        "task-host-1-3-cccccc": None,
    }
    assert tasks(bob[0]) == {
        "task-host-1-1-aaaaaa": None,
        "task-host-1-2-bbbbbb": str(bobs_job),
        "task-host-1-3-cccccc": None,
    }
    assert tasks(admin) == {
        "task-host-1-1-aaaaaa": str(alices_job),
        "task-host-1-2-bbbbbb": str(bobs_job),
        "task-host-1-3-cccccc": None,
    }
    # Everything else about a worker is the same for every reader.
    as_alice = one(client, alice[0], "task-host-1-2-bbbbbb")
    as_admin = one(client, admin, "task-host-1-2-bbbbbb")
    assert as_alice == {**as_admin, "current_task_id": None}
    assert as_alice["state"] == "busy" and as_alice["current_load"] == 1


def test_external_workers_are_seen_by_their_owner_and_admins(client, db, admin, alice, bob):
    beat(db, "task-host-1-1-aaaaaa")
    beat(db, "scheduler-host-1-9", kind="scheduler")
    register(client, alice[0], "alice-gpu-1", load=3)
    register(client, bob[0], "bob-box-1", load=2)
    carol = make_login(client, admin, "carol", ["jobs:read"])[0]  # no workers of her own
    ours = {"task-host-1-1-aaaaaa", "scheduler-host-1-9"}

    assert set(listed(client, alice[0])) == ours | {"alice-gpu-1"}
    assert set(listed(client, bob[0])) == ours | {"bob-box-1"}
    assert set(listed(client, carol)) == ours
    assert set(listed(client, admin)) == ours | {"alice-gpu-1", "bob-box-1"}
    assert set(listed(client, alice[0], "status=active")) == ours | {"alice-gpu-1"}
    assert set(listed(client, carol, "status=inactive")) == set()
    assert one(client, alice[0], "alice-gpu-1")["external"] is True
    assert one(client, admin, "bob-box-1")["current_load"] == 2

    # Another user's external worker is a 404, as another user's job is.
    for headers, worker_id in ((alice[0], "bob-box-1"), (carol, "alice-gpu-1")):
        r = client.get(f"{WORKERS}/{worker_id}", headers=headers)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "NOT_FOUND"
    # Its id stays taken (the 409 says only that, not whose it is).
    r = client.post(
        f"{WORKERS}/heartbeat", json={"worker_id": "bob-box-1", "status": "busy"}, headers=alice[0]
    )
    assert r.status_code == 409

    # A page's total counts the visible ones only.
    page = client.get(f"{WORKERS}?limit=1", headers=carol).get_json()
    assert page["pagination"]["total"] == 2 and page["pagination"]["pages"] == 2


def test_workers_status_counts_what_its_reader_sees(client, db, admin, alice, bob):
    beat(db, "task-host-1-1-aaaaaa")
    register(client, alice[0], "alice-gpu-1", load=3)
    register(client, bob[0], "bob-box-1", load=2)

    def status(headers: dict[str, str]) -> dict[str, Any]:
        answers = [client.get(path, headers=headers).get_json()["data"] for path in STATUS_PATHS]
        assert answers[0] == answers[1]
        return answers[0]

    mine = status(alice[0])
    assert (mine["total"], mine["active"]) == (2, 2)
    assert (mine["current_load"], mine["max_capacity"]) == (3, 6)
    assert mine["by_kind"]["external"] == {"total": 1, "active": 1, "busy": 1}
    assert {w["worker_id"] for w in mine["workers"]} == {"task-host-1-1-aaaaaa", "alice-gpu-1"}

    everyone = status(admin)
    assert (everyone["total"], everyone["current_load"], everyone["max_capacity"]) == (3, 5, 10)
    assert everyone["by_kind"]["external"] == {"total": 2, "active": 2, "busy": 2}

    carol = make_login(client, admin, "carol", ["jobs:read"])[0]
    theirs = status(carol)
    assert theirs["healthy"] is True and theirs["total"] == 1
    assert "external" not in theirs["by_kind"]
    assert [w["worker_id"] for w in theirs["workers"]] == ["task-host-1-1-aaaaaa"]
