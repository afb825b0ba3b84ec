"""`jobgate-edge`: run nginx as a child and keep it configured from PostgreSQL (the proxy
set), with active health checks and access-log stats. Settings: jobgate_edge.settings (EDGE_*,
PROXY_*), plus DATABASE_URL, LOG_LEVEL and LOG_FORMAT as every process; EDGE_BIND,
GATEWAY_UPSTREAM, STATS_UPSTREAM, ... as scripts/edge.sh reads them."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from jobgate.config import Settings
from jobgate.logs import configure_logging
from jobgate_edge.agent import Agent
from jobgate_edge.settings import EdgeSettings

log = logging.getLogger("jobgate_edge")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jobgate-edge", description=__doc__)
    parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging("edge", settings.log_level, settings.log_format)
    edge = EdgeSettings.from_env()
    agent = Agent(edge, settings.database_url)
    pending: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        if agent.nginx.pid is None:
            pending.append(signum)  # nginx not started yet: stop once it is
        else:
            agent.forward(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, forward)
    # SIGHUP to the agent: read the set again and reload nginx even if nothing changed.
    signal.signal(signal.SIGHUP, lambda signum, frame: agent.wake(force=True))
    try:
        agent.start()
    except Exception as exc:  # noqa: BLE001 - reported as one line, exit 1
        log.error("edge not started: %s", exc)
        sys.exit(1)
    log.info("edge %s: nginx pid %s, state in %s", edge.edge_id, agent.nginx.pid, edge.state_dir)
    for signum in pending:
        agent.forward(signum)
    rc = agent.wait()
    log.info("nginx exited (%s)", rc)
    sys.exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()
