"""`jobgate-worker <kind>`: one worker process for one job kind."""

from __future__ import annotations

import argparse
import sys

from jobgate.config import Settings
from jobgate.logs import configure_logging
from jobgate_worker.kinds import HANDLERS
from jobgate_worker.runtime import Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobgate-worker", description=__doc__)
    parser.add_argument("kind", choices=sorted(HANDLERS))
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jobs run at once (WORKER_CONCURRENCY)"
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(f"worker-{args.kind}", settings.log_level, settings.log_format)
    return Worker(settings, args.kind, HANDLERS[args.kind], concurrency=args.concurrency).run()


if __name__ == "__main__":
    sys.exit(main())
