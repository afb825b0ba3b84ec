"""`jobgate-worker <kind>`: one worker process for one job kind."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from jobgate import kinds
from jobgate.config import Settings
from jobgate.logs import configure_logging
from jobgate_worker.consumer import Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobgate-worker", description=__doc__)
    parser.add_argument("kind", choices=kinds.names())
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jobs run at once (WORKER_CONCURRENCY)"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(f"worker-{args.kind}", settings.log_level, settings.log_format)
    code = Worker(settings, kinds.get(args.kind), concurrency=args.concurrency).run()
    others = [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
    for thread in others:
        thread.join(timeout=2.0 / len(others))
    stuck = [t.name for t in others if t.is_alive()]
    if stuck:
        # A reader blocked in a hung filesystem would keep the process alive forever; its
        # job was already handed back or recorded, so leave without joining it.
        logging.getLogger(__name__).warning("exiting past stuck threads: %s", ", ".join(stuck))
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
