"""nginx as the agent's child: start it, signal it, check a file with `nginx -t`, and ask its
status socket which configuration generation is live.

The status server (rendered by jobgate.proxy.render) listens on a unix socket in the state
directory, so it needs no port, and answers `GET /version` with the generation string: the
only proof that a reload took effect (a HUP the master refuses is silent, design §4.3)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """nginx gets SIGTERM if the agent dies without stopping it (even kill -9): no orphan
    keeps the port."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Nginx:
    """One nginx master in the foreground, configured by `<state_dir>/nginx.conf`."""

    def __init__(self, binary: str, state_dir: str | Path) -> None:
        self.binary = binary
        self.dir = Path(state_dir)
        self.conf = self.dir / "nginx.conf"
        self.status_socket = self.dir / "edge-status.sock"
        self.proc: subprocess.Popen | None = None
        if len(str(self.status_socket)) > SOCKET_PATH_MAX:
            raise ValueError(
                f"EDGE_STATE_DIR too long for a unix socket path: {self.status_socket}"
            )

    def _prefix(self) -> list[str]:
        return ["-e", "stderr", "-p", f"{self.dir}/"]

    def test(self, path: str | Path) -> str | None:
        """`nginx -t` on a file: None when it passes, else nginx's message."""
        try:
            done = subprocess.run(
                [self.binary, "-t", "-q", *self._prefix(), "-c", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"nginx -t could not run: {exc}"
        if done.returncode == 0:
            return None
        return (done.stderr or done.stdout).strip() or f"nginx -t exited {done.returncode}"

    def start(self) -> subprocess.Popen:
        """Start the master on `nginx.conf` (stdout/stderr are the agent's: its access and
        error logs go where the agent's go). A socket left by a killed master is removed
        first, or the new one could not bind it."""
        self._wait_previous_master()
        with contextlib.suppress(FileNotFoundError):
            self.status_socket.unlink()
        self.proc = subprocess.Popen(
            [self.binary, *self._prefix(), "-c", str(self.conf), "-g", "daemon off;"],
            preexec_fn=_die_with_parent,  # started before the agent's threads
            # Its own process group: the workers of a master that died (kill -9) keep the
            # port open; `reap()` ends them by the group.
            start_new_session=True,
        )
        log.info("nginx started (pid %s) on %s", self.proc.pid, self.conf)
        return self.proc

    def wait(self, timeout: float | None = None) -> int:
        """Until the master exits (killed after `timeout`); then no worker of it is left
        running (a master killed outright leaves its workers serving, and the port taken)."""
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return rc

    def _wait_previous_master(self, timeout: float = 10.0) -> None:
        """A master of this state directory still exiting (its agent was killed: it got
        SIGTERM) would delete the new master's status socket as it goes (its pid file is
        gone by then, so its command line is what finds it); one still running belongs to
        another agent on the same directory."""
        deadline = time.monotonic() + timeout
        while pids := self._masters():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"nginx master {sorted(pids)} still runs on {self.dir}")
            time.sleep(0.05)

    def _masters(self) -> set[int]:
        """nginx masters started with this state directory as their prefix (`-p DIR/`)."""
        marker = f" -p {self.dir}/ ".encode()
        found = set()
        for path in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                cmdline = path.read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"nginx: master") and marker in cmdline.replace(b"\0", b" "):
                found.add(int(path.parent.name))
        return found

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def signal(self, signum: int) -> bool:
        """Send a signal to the master; False when it is not running."""
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
        return True

    def version(self, timeout: float = 1.0) -> str | None:
        """The generation the status socket answers, or None (not up, refused, garbled)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.status_socket))
                sock.sendall(b"GET /version HTTP/1.0\r\nHost: edge\r\n\r\n")
                chunks = []
                while True:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError:
            return None
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or head.split(b" ", 2)[1:2] != [b"200"]:
            return None
        return body.decode("ascii", "replace").strip()

    def workers(self) -> set[int]:
        """PIDs of the master's children (its worker processes)."""
        pid = self.pid
        if pid is None:
            return set()
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
            return {int(p) for p in text.split()}
        except (OSError, ValueError):
            pass
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields and int(fields[1]) == pid:
                children.add(int(stat.parent.name))
        return children

    def wait_retired(self, pids: set[int], timeout: float) -> bool:
        """Until none of these (old) workers accepts connections any more: each has exited or
        renamed itself "worker process is shutting down", which nginx does as it closes its
        listening sockets. Until then an old worker may still take a new connection, so a
        probe that once saw the new generation is not enough."""
        deadline = time.monotonic() + timeout
        while True:
            if all(_retired(pid) for pid in pids):
                time.sleep(0.01)  # the title changes just before the sockets close
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def wait_generation(self, generation: str, timeout: float) -> bool:
        """Poll the status socket until it answers `generation`; False on timeout or when the
        master has exited."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            if self.version(timeout=max(0.1, min(1.0, deadline - time.monotonic()))) == generation:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def _retired(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # gone
    return not cmdline or b"shutting down" in cmdline  # empty: a zombie
