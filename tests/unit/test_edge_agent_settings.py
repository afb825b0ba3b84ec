"""The edge agent's settings (jobgate_edge.settings): environment names, defaults, and
PROXY_RATE_LIMIT in the limiter's spelling turned into nginx's."""

from __future__ import annotations

import os

import pytest

from jobgate_edge.settings import EdgeSettings, nginx_rate


@pytest.mark.parametrize(
    ("given", "rate"),
    [
        ("10/second", "10r/s"),
        ("10 per second", "10r/s"),
        ("600/minute", "600r/m"),
        ("5/s", "5r/s"),
        ("30r/m", "30r/m"),
        (" 7 / Second ", "7r/s"),
    ],
)
def test_rates(given, rate):
    assert nginx_rate(given) == rate


@pytest.mark.parametrize("given", ["", "0/second", "10/hour", "ten/second", "10r/h", "1.5/s"])
def test_bad_rates(given):
    with pytest.raises(ValueError, match="PROXY_RATE_LIMIT"):
        nginx_rate(given)


def test_defaults_and_environment(tmp_path):
    defaults = EdgeSettings.from_env({})
    assert defaults.state_dir == os.path.abspath("var/edge")
    assert defaults.edge_id  # the host name
    assert (defaults.poll_s, defaults.rate_limit, defaults.rate_burst) == (5.0, "10r/s", 20)
    assert defaults.script.endswith("scripts/edge.sh")
    settings = EdgeSettings.from_env(
        {
            "EDGE_STATE_DIR": str(tmp_path),
            "EDGE_ID": "edge-7",
            "EDGE_POLL_SECONDS": "1.5",
            "PROXY_RATE_LIMIT": "100/minute",
            "PROXY_RATE_LIMIT_BURST": "5",
            "PROXY_STATS_FLUSH_SECONDS": "0.2",
            "PROXY_ACCESS_LOG_MAX_MB": "",  # empty: the default
        }
    )
    assert settings.state_dir == str(tmp_path)
    assert (settings.edge_id, settings.poll_s) == ("edge-7", 1.5)
    assert (settings.rate_limit, settings.rate_burst) == ("100r/m", 5)
    assert settings.stats_flush_s == 0.2
    assert settings.access_log_max_mb == 64.0
