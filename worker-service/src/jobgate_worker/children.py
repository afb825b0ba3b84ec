"""What every child process a worker starts shares: it must not outlive the worker."""

from __future__ import annotations

import multiprocessing
import os
import threading


def die_with_worker() -> None:
    """In a child started with `multiprocessing` (a fork server's included): end this
    process as soon as the worker that asked for it is gone, `kill -9` included. A child
    must not go on working for a worker that can no longer record what it does (the job
    runs again elsewhere once its lease expires). Never raises."""
    worker = multiprocessing.parent_process()
    if worker is None:
        return

    def watch() -> None:
        worker.join()  # waits on the worker's sentinel
        os._exit(1)

    threading.Thread(target=watch, name="watch-worker", daemon=True).start()
