"""Write the pip configuration an image build uses, taken from this machine's own pip.

Why: `pip install` inside `podman build` sees none of the host's pip settings, yet on some
machines PyPI is reachable only through a configured index or a TLS-inspecting proxy whose
CA the host's pip trusts (`cert`). scripts/images.sh hands the file written here to the
build as a secret (`--secret id=pip.conf`), so no index URL, credential or CA ever lands in
a committed file or an image layer.

    python3 deploy/images/pip_build_conf.py OUTPUT_PIP_CONF OUTPUT_CA

Keeps `index-url`, the http(s) entries of `extra-index-url` and `find-links` (a `file://`
index or a local folder does not exist inside the build), `trusted-host`, `timeout` and
`retries`. When pip is told a CA bundle (`cert`), that file is copied to OUTPUT_CA and the
configuration points at the build secret `build-ca` (/run/secrets/build-ca). Prints
nothing; exits 0 even when this machine's pip has no settings (then the file is empty and
pip in the build uses PyPI as usual).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

KEPT = ("index-url", "extra-index-url", "find-links", "trusted-host", "timeout", "retries")
URL_LISTS = ("extra-index-url", "find-links")
BUILD_CA = "/run/secrets/build-ca"  # where the `build-ca` secret is mounted in a RUN step
LINE = re.compile(r"^(?P<section>[^.]*)\.(?P<key>[a-z-]+)=(?P<value>.*)$")
# pip's precedence: environment variables over the files; [install] over [global].
PRECEDENCE = {":env:": 0, "install": 1, "global": 2}
ALIASES = {"default-timeout": "timeout"}


def host_settings() -> dict[str, str]:
    """The settings this machine's pip uses (`pip config list`)."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_config_list(out)


def parse_config_list(out: str) -> dict[str, str]:
    """`pip config list` output as one value per key, the one pip itself would use."""
    ranked: dict[str, tuple[int, str]] = {}
    for line in out.splitlines():
        match = LINE.match(line.strip())
        if not match or match["section"] not in PRECEDENCE:
            continue
        key = ALIASES.get(match["key"], match["key"])
        rank = PRECEDENCE[match["section"]]
        try:
            value = str(ast.literal_eval(match["value"]))
        except (ValueError, SyntaxError):
            continue
        if key not in ranked or rank < ranked[key][0]:
            ranked[key] = (rank, value)
    return {key: value for key, (_, value) in ranked.items()}


def remote_only(value: str) -> str:
    """The http(s) URLs of a whitespace-separated list: local indexes stay on the host."""
    return " ".join(u for u in value.split() if u.startswith(("http://", "https://")))


def build_conf(settings: dict[str, str], ca_out: Path) -> str:
    """The [global] section for the build, copying the CA bundle next to it if pip uses one."""
    lines = ["[global]"]
    for key in KEPT:
        value = settings.get(key, "")
        if key in URL_LISTS or key == "index-url":
            value = remote_only(value)
        if value:
            lines.append(f"{key} = {value}")
    cert = settings.get("cert", "")
    if cert and Path(cert).is_file():
        shutil.copyfile(cert, ca_out)
        lines.append(f"cert = {BUILD_CA}")
    return "\n".join(lines) + "\n" if len(lines) > 1 else ""


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    conf_out, ca_out = Path(argv[0]), Path(argv[1])
    ca_out.write_bytes(b"")  # an empty secret when pip names no CA bundle
    conf_out.write_text(build_conf(host_settings(), ca_out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
