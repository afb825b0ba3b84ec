"""`make run` reads var/dev.env, but what the user exports wins over it."""

import subprocess
from pathlib import Path

LOADER = Path(__file__).resolve().parents[2] / "scripts" / "load-env.sh"


def load(tmp_path: Path, env: dict[str, str], lines: str) -> dict[str, str]:
    dev_env = tmp_path / "dev.env"
    dev_env.write_text(lines)
    out = subprocess.run(
        ["bash", "-c", f'. "{LOADER}" "{dev_env}"; env -0'],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        check=True,
    ).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def test_exported_variables_win_over_the_file(tmp_path):
    got = load(
        tmp_path,
        {"CACHE_ROOT": "/mnt/filespace", "LOG_FORMAT": ""},
        "# comment\nCACHE_ROOT=/from/file\nLOG_FORMAT=text\nSTORAGE_DIR=/srv/storage\n\n",
    )
    assert got["CACHE_ROOT"] == "/mnt/filespace"
    assert got["LOG_FORMAT"] == ""  # set, even if empty: the user's choice
    assert got["STORAGE_DIR"] == "/srv/storage"  # unset: the file fills it in


def test_values_with_equals_signs_and_spaces_survive(tmp_path):
    got = load(tmp_path, {}, "DATABASE_URL=postgresql://a:b@h/db?x=1\nNAME=two words\n")
    assert got["DATABASE_URL"] == "postgresql://a:b@h/db?x=1"
    assert got["NAME"] == "two words"
