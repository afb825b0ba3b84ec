"""Start the real processes (gunicorn gateway and auth-service, workers) on loopback ports.

Used by end-to-end tests and by the benchmarks, so both exercise exactly what `make run`
starts. Every process gets the same environment, pointed at a test database and vhost.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

VENV_BIN = Path(sys.executable).parent
EDGE_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "edge.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.auth_port, self.gateway_port = free_port(), free_port()
        self.stats_port = free_port()
        self.env = {
            **os.environ,
            "JOBGATE_ENV": "test",
            "LOG_FORMAT": "text",
            "AUTH_SERVICE_URL": f"http://127.0.0.1:{self.auth_port}",
            "JWT_PRIVATE_KEY_FILE": str(workdir / "keys" / "jwt-private.pem"),
            **env,
        }
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def _spawn(self, name: str, argv: list[str], **env: str) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            argv, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        self.procs[name] = proc
        return proc

    def _wait_http(self, url: str, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log(name)[-2000:]}")
            try:
                if requests.get(url, timeout=1).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer {url}: {self.log(name)[-2000:]}")

    def start_auth(self) -> None:
        self._spawn(
            "auth",
            [
                str(VENV_BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.auth_port}",
                "--workers",
                "2",
                "--no-control-socket",
                "jobgate_auth.wsgi:app",
            ],
        )
        self._wait_http(f"http://127.0.0.1:{self.auth_port}/health", "auth")

    def start_gateway(self) -> None:
        self._spawn(
            "gateway",
            [
                str(VENV_BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.gateway_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--no-control-socket",
                "jobgate_gateway.wsgi:app",
            ],
        )
        self._wait_http(f"{self.url}/health", "gateway")

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}"

    def start_stats(self, name: str = "stats", **env: str) -> subprocess.Popen:
        """stats-service (uvicorn) on its own port; started again after a kill, same port."""
        proc = self._spawn(
            name,
            [str(VENV_BIN / "jobgate-stats"), "--bind", f"127.0.0.1:{self.stats_port}"],
            **env,
        )
        self._wait_http(f"{self.stats_url}/health", name)
        return proc

    def start_worker(
        self, kind: str = "cache", name: str | None = None, **env: str
    ) -> subprocess.Popen:
        return self._spawn(
            name or f"worker-{kind}", [str(VENV_BIN / "jobgate-worker"), kind], **env
        )

    def start_scheduler(self, name: str = "scheduler", **env: str) -> subprocess.Popen:
        """A `jobgate-scheduler` replica (start several: none fires a run twice)."""
        return self._spawn(name, [str(VENV_BIN / "jobgate-scheduler")], **env)

    def start(self) -> Stack:
        self.start_auth()
        self.start_gateway()
        self.start_worker()
        return self

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.edge_dir is not None:
            shutil.rmtree(self.edge_dir, ignore_errors=True)
            self.edge_dir = None

    # The edge (`jobgate-edge`: nginx as its child, configured from the run's database) in
    # front of gateway and stats-service.
    edge_port: int = 0
    edge_dir: Path | None = None

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def start_edge(self, name: str = "edge", **env: str) -> subprocess.Popen:
        """The edge agent on its own port (the same port when started again), routing to
        this stack's gateway and stats-service ports and publishing the run's proxy set.
        Its state (configuration, pid file, temporary paths, access log, status socket) is
        kept in a short directory of its own: a unix socket's path is limited to 107 bytes."""
        self.edge_port = self.edge_port or free_port()
        if self.edge_dir is None:
            self.edge_dir = Path(tempfile.mkdtemp(prefix="jge-", dir="/tmp"))
        proc = self._spawn(
            name,
            [str(VENV_BIN / "jobgate-edge")],
            EDGE_BIND=f"127.0.0.1:{self.edge_port}",
            GATEWAY_UPSTREAM=f"127.0.0.1:{self.gateway_port}",
            STATS_UPSTREAM=f"127.0.0.1:{self.stats_port}",
            EDGE_STATE_DIR=str(self.edge_dir),
            EDGE_ID=f"stack-edge-{self.edge_port}",  # its own access-log position
            EDGE_SCRIPT=str(EDGE_SCRIPT),
            EDGE_POLL_SECONDS="1",
            PROXY_STATS_FLUSH_SECONDS="0.2",
            **env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log(name)[-2000:]}")
            # An HTTP answer, not an accepted connection: the agent's `nginx -t` before the
            # master starts binds and listens on the port too, for a few milliseconds, and
            # never answers (a connection it took is reset as it exits).
            try:
                requests.get(f"{self.edge_url}/api/v1/health", timeout=1)
                return proc
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"{name} did not answer on {self.edge_port}: {self.log(name)[-2000:]}")
