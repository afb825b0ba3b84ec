"""A Podman engine of the test run's own: `scripts/engine.sh serve` on a socket in a temp
directory, started once per session by the `docker_host` fixture (tests/conftest.py) and
stopped at the end. Its storage is the machine's (/var/lib/containers): container workers
label what they make with their deployment (`jobgate.instance`), so runs sharing it do not
touch each other's containers."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.unix_path)


def ping(socket_path: str) -> bool:
    """Whether the Docker API answers `GET /_ping` on that socket."""
    conn = _UnixHTTPConnection(socket_path)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def podman_engine() -> Iterator[str]:
    """A running engine; yields its DOCKER_HOST (`unix://…`)."""
    workdir = Path(tempfile.mkdtemp(prefix="jobgate-engine-"))
    sock = workdir / "podman.sock"
    log = (workdir / "engine.log").open("wb")
    proc = subprocess.Popen(
        [str(REPO / "scripts" / "engine.sh"), "serve", str(sock)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (sock.exists() and ping(str(sock))):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the test engine did not start: {(workdir / 'engine.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield f"unix://{sock}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)  # its socket, log and conmon's files
