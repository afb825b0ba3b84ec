"""The edge agent's apply step (jobgate_edge.apply) with the real nginx binary: a
configuration that fails `nginx -t` never reaches the live file, and one that passes `-t` but
is refused by the master at SIGHUP (a changed limit_req_zone key, design §4.3) is detected by
the generation probe and the last good file is put back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from jobgate_edge.apply import Applier
from jobgate_edge.nginx import Nginx

NGINX = os.environ.get("EDGE_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conf(
    state: Path, port: int, generation: str, *, body: str, key: str = "$binary_remote_addr"
) -> str:
    return f"""
worker_processes 1;
pid {state}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {state}/tmp/client_body;
    proxy_temp_path {state}/tmp/proxy;
    fastcgi_temp_path {state}/tmp/fastcgi;
    uwsgi_temp_path {state}/tmp/uwsgi;
    scgi_temp_path {state}/tmp/scgi;
    access_log off;
    limit_req_zone {key} zone=jobgate_rl_test:1m rate=100r/s;
    server {{
        listen unix:{state}/edge-status.sock;
        location = /version {{ return 200 "{generation}"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ limit_req zone=jobgate_rl_test burst=10; return 200 "{body}"; }}
    }}
}}
"""


@pytest.fixture
def state() -> Iterator[Path]:
    # Short: a unix socket path holds at most 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="jge-", dir="/tmp"))
    (path / "tmp").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nginx(state) -> Iterator[Nginx]:
    n = Nginx(NGINX, state)
    yield n
    if n.signal(signal.SIGTERM):
        n.proc.wait(10)


def test_apply_keeps_the_old_configuration(state, nginx):
    port = free_port()
    applier = Applier(nginx, probe_timeout_s=2.0)
    one = conf(state, port, "g1", body="one")
    assert applier.install_initial(one, "g1").ok
    nginx.start()
    assert nginx.wait_generation("g1", 10)
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "one"

    # nginx -t fails: nothing changes, nginx's message is the error.
    broken = one.replace('return 200 "one";', "return 200 one two three;")
    outcome = applier.apply(broken, "g2")
    assert not outcome.ok and "nginx" in outcome.error and "invalid" in outcome.error.lower()
    assert nginx.conf.read_text() == one
    assert nginx.version() == "g1"
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "one"

    # A good change is live once the call returns.
    two = conf(state, port, "g3", body="two")
    outcome = applier.apply(two, "g3")
    assert outcome.ok, outcome.error
    assert nginx.version() == "g3"
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "two"

    # Passes -t, refused at HUP: the probe times out, the last good file comes back.
    refused = conf(state, port, "g4", body="three", key="$remote_addr")
    assert nginx.test(nginx.conf) is None
    outcome = applier.apply(refused, "g4")
    assert not outcome.ok and "g4" in outcome.error
    assert nginx.conf.read_text() == two
    assert nginx.version() == "g3"
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "two"
    assert applier.good == (two, "g3")


def test_a_failed_set_waits_longer_after_each_failure():
    """The config loop tries a refused (version, down) again once it is due: soon after the
    first failure, then less and less often; another key is never held back."""
    from jobgate_edge.agent import RETRY_S, Failed

    key, other = (7, frozenset()), (8, frozenset())
    failed = Failed.after(None, key, 100.0)
    assert failed.holds(key, 100.0 + RETRY_S[0] - 0.1)
    assert not failed.holds(key, 100.0 + RETRY_S[0])
    assert not failed.holds(other, 100.0)
    pauses = []
    for _ in range(len(RETRY_S) + 2):
        failed = Failed.after(failed, key, 200.0)
        pauses.append(failed.retry_at - 200.0)
    assert pauses == sorted(pauses) and pauses[-1] == pauses[-2] == RETRY_S[-1]
    assert Failed.after(failed, other, 300.0).retry_at == 300.0 + RETRY_S[0]


def test_the_config_loop_applies_what_is_new_forced_or_due_again():
    from jobgate_edge.agent import RETRY_S, Agent, Failed

    agent = Agent.__new__(Agent)  # the decision only: no nginx, no database
    running, failing = (6, frozenset()), (6, frozenset({("web", "127.0.0.1:1")}))
    agent._applied, agent._failed = running, Failed.after(None, failing, 100.0)
    assert not agent._wanted(failing, False, 101.0)  # failed, not due yet
    assert agent._wanted(failing, True, 101.0)  # SIGHUP or NOTIFY "reload"
    assert agent._wanted(failing, False, 100.0 + RETRY_S[0])  # due again
    assert agent._wanted((7, frozenset()), False, 101.0)  # a new set
    # The server came back: the running key is wanted again, the failure is moot (its past
    # retry time would make the loop's wait zero: a busy loop).
    assert not agent._wanted(running, False, 200.0)
    assert agent._failed is None
