"""`jobgate-stats`: run stats-service under uvicorn on STATS_BIND (default 127.0.0.1:8082)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import uvicorn

from jobgate.config import Settings
from jobgate.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="jobgate-stats", description=__doc__)
    parser.add_argument("--bind", default=settings.stats_bind, help="host:port to listen on")
    parser.add_argument("--workers", type=int, default=1, help="processes (each its own queue)")
    args = parser.parse_args(argv)
    host, _, port = args.bind.rpartition(":")
    configure_logging("stats", settings.log_level, settings.log_format)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again with the
    # handlers it found: these make that a clean exit 0, as every process under honcho.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(
        "jobgate_stats.app:create_app",
        factory=True,
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        workers=args.workers,
        ws="websockets-sansio",
        # Pings find dead peers; the client answers them, so idle streams stay open.
        ws_ping_interval=settings.stats_ping_seconds,
        ws_ping_timeout=settings.stats_ping_seconds,
        # X-Forwarded-For is believed from the edge only (TRUSTED_PROXIES).
        proxy_headers=True,
        forwarded_allow_ips=",".join(settings.trusted_proxies),
        log_config=None,
        access_log=True,
        timeout_graceful_shutdown=5,
    )


def _exit_cleanly(signum: int, frame: Any) -> None:
    sys.exit(0)


if __name__ == "__main__":
    main()
