"""Scrape's download processes end with the worker that started them, kill -9 included:
a download must not go on, nor be retried, for a worker that can no longer record it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import process_alive

WORKER = """
import sys, tempfile, threading
from jobgate_worker.kinds.scrape_fetch import Fetcher

if __name__ == "__main__":
    fetcher = Fetcher({"quiet": True, "socket_timeout": 60, "retries": 0})
    fetcher.start()
    print(fetcher.process.pid, flush=True)
    # A download that hangs: the server takes the connection and never answers.
    fetcher.fetch({"_type": "url", "url": sys.argv[1]}, tempfile.mkdtemp(), threading.Event())
"""


@pytest.fixture
def silent_server():
    """A URL on 127.0.0.1 whose server accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/video.mp4", server


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_download_process_ends_with_its_worker(tmp_path, silent_server, sig) -> None:
    url, server = silent_server
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, text=True)
    try:
        child = int(worker.stdout.readline())
        server.settimeout(10)
        held, _ = server.accept()  # the download process now waits for an answer
        assert process_alive(child)
        os.kill(worker.pid, sig)
        worker.wait(10)
        deadline = time.monotonic() + 5
        while process_alive(child):
            assert time.monotonic() < deadline, "the download process outlived its worker"
            time.sleep(0.05)
        held.close()
    finally:
        worker.kill()
        worker.wait()
