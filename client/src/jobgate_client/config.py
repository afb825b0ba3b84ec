"""The command line's settings: which server, and how to authenticate to it.

The file is JSON, `$XDG_CONFIG_HOME/jobgate/config.json` (else `~/.config/jobgate/...`;
`JOBGATE_CONFIG` names another), written with mode 0600 in a 0700 folder because it holds
credentials. Credentials are kept per server URL, so a key for one server is never sent to
another:

    {"url": "http://127.0.0.1:8080",
     "servers": {"http://127.0.0.1:8080": {"username": "admin", "access_token": "…",
                                            "refresh_token": "…"}}}

What wins: the `--url` option, then `JOBGATE_URL`, then the file's `url`, then the default
(the local edge); `JOBGATE_API_KEY`, then the file's credentials for that URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from jobgate_client.transport import DEFAULT_URL


def config_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("JOBGATE_CONFIG"):
        return Path(env["JOBGATE_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "jobgate" / "config.json"


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


class Config:
    """The settings file's contents, and what the environment changes in them."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data or {}

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        path = path or config_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} is not a JSON object")
        return cls(path, data)

    def url(self, option: str | None = None) -> str:
        chosen = option or os.environ.get("JOBGATE_URL") or self.data.get("url") or DEFAULT_URL
        return normalize_url(chosen)

    def server(self, url: str) -> dict[str, Any]:
        """The credentials stored for `url` (empty when none)."""
        servers = self.data.get("servers") or {}
        entry = servers.get(normalize_url(url)) if isinstance(servers, dict) else None
        return dict(entry) if isinstance(entry, dict) else {}

    def set_server(self, url: str, entry: dict[str, Any], *, make_default: bool = True) -> None:
        url = normalize_url(url)
        self.data.setdefault("servers", {})[url] = entry
        if make_default:
            self.data["url"] = url

    def forget_server(self, url: str) -> bool:
        servers = self.data.get("servers") or {}
        return servers.pop(normalize_url(url), None) is not None

    def save(self) -> None:
        """Write atomically (a temporary file renamed over the old one), owner-only."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config-", dir=folder)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.data, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class ConfigError(Exception):
    """The settings file exists but cannot be used."""
