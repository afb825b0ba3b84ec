"""The `container` kind's contract: run a command in an image with input files from the
files API, collect the outputs that match globs (seed 003's `POST /api/jobs`).

Sizes and durations are written as seed 003 writes them: `memory_limit` "512m" / "1g"
(Docker's units, 1024-based), `cpu_limit` "0.5" (CPUs), `timeout` "3600s" / "30m" / "2h"
(or plain seconds). `priority` and `retry_policy` are the job's options (`jobs.priority`,
`max_attempts`, `backoff`), not params: the gateway maps them (`PRIORITIES`, `BACKOFFS`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import posixpath
import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from jobgate.kinds.spec import KindSpec

PRIORITIES = {"low": 2, "normal": 5, "high": 8}  # seed word -> jobs.priority (0-9)
BACKOFFS = ("exponential", "linear", "fixed")
MAX_ATTEMPTS = 10
# An image reference as Docker's grammar has it: [domain/]path[/path…][:tag][@digest]. The
# first part is a domain only if it has a dot or a port or is `localhost`; path components
# are lower-case, separated by '.', '_', '__' or dashes.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:localhost(?::\d+)?|{_LABEL}(?:\.{_LABEL})+(?::\d+)?|{_LABEL}:\d+)"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = re.compile(
    rf"^(?=.{{1,255}}$)(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*"
    r"(?::\w[\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def _image_reference(value: str) -> None:
    """IMAGE_REF, checked here rather than as an OpenAPI `pattern`: the grammar is too
    intricate for clients (and fuzzers) to generate from."""
    if not IMAGE_REF.match(value):
        raise ValidationError("Not a valid image reference.")


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SECONDS = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600}
MIN_MEMORY = 6 * 1024**2  # runc refuses less
MAX_CPUS = 64.0


def parse_memory(text: str | int) -> int:
    """Bytes of a Docker-style size ("512m", "1g", "1048576"); ValueError when it is not one."""
    match = _MEMORY.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 512m, 1g)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_duration(text: str | int | float) -> float:
    """Seconds of "3600s", "30m", "2h", "500ms" or a plain number of seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 3600s, 30m, 2h)")
    return float(match.group(1)) * _SECONDS[(match.group(2) or "").lower()]


def parse_cpus(text: str | int | float) -> float:
    """CPUs as a number ("0.5", 2)."""
    try:
        cpus = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"not a number of CPUs: {text!r}") from None
    if not 0 < cpus <= MAX_CPUS:
        raise ValueError(f"cpu_limit must be more than 0 and at most {MAX_CPUS:g}")
    return cpus


def image_allowed(image: str, allowlist: tuple[str, ...] | list[str]) -> bool:
    """`CONTAINER_IMAGE_ALLOWLIST`'s rule, the same at submission, in the worker and in the
    containers API: an empty list allows every image; otherwise a glob must match the image
    as written or, when it has no tag or digest, with `:latest` (what the engine resolves)."""
    if not allowlist:
        return True
    candidates = [image]
    if "@" not in image and ":" not in image.rsplit("/", 1)[-1]:
        candidates.append(f"{image}:latest")
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates for pattern in allowlist)


def container_path(text: str) -> str:
    """An absolute path inside the container, normalised; ValueError for a relative one or
    one with `..` (an input must land where the job says, an output pattern stay inside)."""
    if not text.startswith("/") or "\x00" in text:
        raise ValueError(f"not an absolute path: {text!r}")
    if ".." in text.split("/"):
        raise ValueError(f"'..' is not allowed in {text!r}")
    path = posixpath.normpath(text)
    return "/" + path.lstrip("/")


class _Checked(fields.String):
    """A string that one of the parse functions above must accept (kept as written)."""

    def __init__(self, check: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            self.check(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return text


class _ContainerPath(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return container_path(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def _memory_at_least(text: str) -> None:
    if parse_memory(text) < MIN_MEMORY:
        raise ValueError("memory_limit must be at least 6m")


def _environment() -> fields.Dict:
    return fields.Dict(
        keys=fields.String(validate=validate.Regexp(ENV_NAME, error="Not a valid variable name.")),
        values=fields.String(validate=validate.Length(max=65536)),
        load_default=dict,
        validate=validate.Length(max=200),
    )


class InputFile(Schema):
    source = fields.String(
        required=True,
        validate=validate.Length(1, 1024),
        metadata={
            "description": "a path of the owner's files API (/api/files), e.g. /uploads/a.csv"
        },
    )
    destination = _ContainerPath(
        required=True, metadata={"description": "where it is placed in the container"}
    )


class Resources(Schema):
    cpu_limit = _Checked(parse_cpus, load_default=None, allow_none=True)
    memory_limit = _Checked(_memory_at_least, load_default=None, allow_none=True)
    timeout = _Checked(parse_duration, load_default=None, allow_none=True)


class ContainerParams(Schema):
    name = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200))
    image = fields.String(
        required=True,
        validate=[validate.Length(1, 255), _image_reference],
        metadata={"description": "e.g. busybox, python:3.11-slim"},
    )
    command = fields.List(
        fields.String(validate=validate.Length(max=65536)),
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, 1000),
        metadata={"description": "argv; the image's own command when omitted"},
    )
    environment = _environment()
    input_files = fields.List(
        fields.Nested(InputFile), load_default=list, validate=validate.Length(max=100)
    )
    output_patterns = fields.List(
        _ContainerPath(),
        load_default=list,
        validate=validate.Length(max=50),
        metadata={"description": "globs of files to collect, e.g. /output/*.json"},
    )
    resources = fields.Nested(Resources, load_default=dict)


@dataclasses.dataclass(frozen=True)
class ContainerSettings:
    # The engine's Docker API. `make run` and the tests point it at the project's Podman
    # (var/podman/podman.sock); a Docker engine's socket works the same.
    docker_host: str = "unix:///var/run/docker.sock"
    container_default_memory: str = "512m"
    container_default_cpus: float = 1.0
    container_default_timeout_s: float = 3600.0
    container_max_timeout_s: float = 86400.0
    container_pids_limit: int = 256
    # Images a job or container may use: globs (busybox*, python:3.11*), comma-separated;
    # empty = any.
    container_image_allowlist: tuple[str, ...] = ()
    # Host directories a container's `volumes` may mount (and below): none by default -> 403.
    container_volume_roots: tuple[str, ...] = ()
    # The address published ports bind to.
    container_publish_host: str = "127.0.0.1"
    # How long the gateway waits for a container worker to answer a containers API call.
    container_rpc_timeout_s: float = 10.0


SPEC = KindSpec(
    name="container",
    description="Run a command in a container image with input files, collect its outputs",
    params=ContainerParams,
    settings=ContainerSettings,
    seed="003",
    # A container job's checks are its submitter's (the `containers` scope, the image
    # allow-list, its input files); a schedule would spawn jobs without them.
    schedulable=False,
)


# --- the containers API (seed 003's /api/containers): long-running containers -------------

NETWORK_MODES = ("none", "bridge")  # `host` would bypass every isolation: never
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
PORT = re.compile(r"^\d{1,5}(/(tcp|udp))?$")


def _port_number(text: str) -> None:
    if not PORT.match(text) or not 0 < int(text.split("/")[0]) < 65536:
        raise ValueError(f"not a port: {text!r}")


class ContainerCreate(Schema):
    """Seed 003's `POST /api/containers` body."""

    name = fields.String(
        required=True, validate=validate.Regexp(CONTAINER_NAME, error="Not a valid name.")
    )
    image = fields.String(required=True, validate=[validate.Length(1, 255), _image_reference])
    command = fields.List(fields.String(), load_default=None, allow_none=True)
    environment = _environment()
    ports = fields.Dict(
        keys=_Checked(_port_number),
        values=_Checked(_port_number),
        load_default=dict,
        validate=validate.Length(max=50),
        metadata={"description": "container port -> host port (bound to 127.0.0.1)"},
    )
    volumes = fields.Dict(
        keys=_ContainerPath(),
        values=fields.String(validate=validate.Length(1, 4096)),
        load_default=dict,
        validate=validate.Length(max=20),
        metadata={"description": "container path -> host path (only under CONTAINER_VOLUME_ROOTS)"},
    )
    resources = fields.Nested(Resources, load_default=dict)
    network_mode = fields.String(load_default="none", validate=validate.OneOf(NETWORK_MODES))
    restart_policy = fields.String(load_default="no", validate=validate.OneOf(RESTART_POLICIES))
