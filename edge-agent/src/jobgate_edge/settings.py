"""The agent's own settings, from environment variables (defaults suit `make run`).

The shared ones (DATABASE_URL, LOG_LEVEL, LOG_FORMAT) come from jobgate.config.Settings."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The repository's scripts/edge.sh when installed editable (edge-agent/src/jobgate_edge/..),
# else the image's copy.
_REPO_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "edge.sh"
_IMAGE_SCRIPT = Path("/opt/jobgate/scripts/edge.sh")


def nginx_rate(value: str) -> str:
    """PROXY_RATE_LIMIT as nginx's rate: `10/second`, `10 per second`, `600/minute`, `10/s`
    or nginx's own `10r/s` / `600r/m`."""
    text = value.strip().lower()
    match = re.fullmatch(r"(\d+)\s*r/([sm])", text) or re.fullmatch(
        r"(\d+)\s*(?:/|per)\s*(second|sec|s|minute|min|m)", text
    )
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"PROXY_RATE_LIMIT={value!r}: expected like 10/second or 600/minute")
    return f"{int(match.group(1))}r/{match.group(2)[0]}"


def _default_script() -> str:
    for path in (_REPO_SCRIPT, _IMAGE_SCRIPT):
        if path.exists():
            return str(path)
    return str(_REPO_SCRIPT)


@dataclasses.dataclass(frozen=True)
class EdgeSettings:
    state_dir: str = "var/edge"  # EDGE_STATE_DIR: nginx.conf, pid, temp paths, log, socket
    edge_id: str = ""  # EDGE_ID: this edge's row in proxy_edges (default: the host name)
    nginx: str = ""  # EDGE_NGINX: the nginx binary (default: nginx on PATH, /usr/sbin/nginx)
    script: str = ""  # EDGE_SCRIPT: scripts/edge.sh, which renders the static part
    poll_s: float = 5.0  # EDGE_POLL_SECONDS: the set is re-read this often without NOTIFY
    debounce_s: float = 0.25  # EDGE_DEBOUNCE_SECONDS: changes arriving together: one reload
    reload_min_interval_s: float = 0.25  # EDGE_RELOAD_MIN_INTERVAL_SECONDS: <= 4 reloads/s
    probe_timeout_s: float = 5.0  # EDGE_PROBE_TIMEOUT_SECONDS: a HUP not live by then failed
    rate_limit: str = "10r/s"  # PROXY_RATE_LIMIT (10/second), per client per route
    rate_burst: int = 20  # PROXY_RATE_LIMIT_BURST
    stats_flush_s: float = 1.0  # PROXY_STATS_FLUSH_SECONDS: access log -> stats tables
    access_log_max_mb: float = 64.0  # PROXY_ACCESS_LOG_MAX_MB: rotated above this
    stats_retention_hours: float = 24.0  # PROXY_STATS_RETENTION_HOURS: 10 s buckets kept
    health_workers: int = 8  # EDGE_HEALTH_WORKERS: health checks run at once

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EdgeSettings:
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            value = env.get(name, "")
            return value if value.strip() else default

        values: dict[str, Any] = {
            "state_dir": str(Path(get("EDGE_STATE_DIR", cls.state_dir)).absolute()),
            "edge_id": get("EDGE_ID", socket.gethostname()),
            "nginx": get("EDGE_NGINX", shutil.which("nginx") or "/usr/sbin/nginx"),
            "script": get("EDGE_SCRIPT", _default_script()),
            "poll_s": float(get("EDGE_POLL_SECONDS", str(cls.poll_s))),
            "debounce_s": float(get("EDGE_DEBOUNCE_SECONDS", str(cls.debounce_s))),
            "reload_min_interval_s": float(
                get("EDGE_RELOAD_MIN_INTERVAL_SECONDS", str(cls.reload_min_interval_s))
            ),
            "probe_timeout_s": float(get("EDGE_PROBE_TIMEOUT_SECONDS", str(cls.probe_timeout_s))),
            "rate_limit": nginx_rate(get("PROXY_RATE_LIMIT", "10/second")),
            "rate_burst": int(get("PROXY_RATE_LIMIT_BURST", str(cls.rate_burst))),
            "stats_flush_s": float(get("PROXY_STATS_FLUSH_SECONDS", str(cls.stats_flush_s))),
            "access_log_max_mb": float(get("PROXY_ACCESS_LOG_MAX_MB", str(cls.access_log_max_mb))),
            "stats_retention_hours": float(
                get("PROXY_STATS_RETENTION_HOURS", str(cls.stats_retention_hours))
            ),
            "health_workers": int(get("EDGE_HEALTH_WORKERS", str(cls.health_workers))),
        }
        values.update(overrides)
        return cls(**values)
