"""Container jobs (seed 003): a command in an image on the container engine, with the job's
input files copied in and the files matching its output patterns collected into storage.

One attempt is one container, created (never `run`) through the Docker API with the safe
defaults (network `none`, all capabilities dropped, no-new-privileges, a pids limit, the
job's or the default memory and CPU limits) and labelled with the job, the attempt, the
worker and the deployment (`jobgate.instance`, from the database's address). Inputs go in
with `put_archive` before `start`; the output is attached before `start` too, so not a line
is missed, and read by a thread into the job's log in batches (stdout lines at level
`stdout`, stderr at `stderr`; a stdout line `::progress::<0-100>` sets `progress_pct`
instead of being logged). The handler thread checks every TICK_S for cancel/hand-back
(kill, then remove), the timeout (kill, then fail) and the container's end, and every
STATS_INTERVAL_S writes the live `resource_usage` into `jobs.details`, where
`container_id` went right after `create`. Exit 0: the outputs are read with `get_archive`,
stored as `files` rows (role `output`) replacing an earlier attempt's, and progress goes to
100, in one transaction. Exit 137 that we did not cause is out of memory (Podman never sets
`OOMKilled`). Whatever happens, the container is removed; a worker killed before it could
remove one leaves it to `housekeeping`, which removes containers whose attempt is over.
Decisions are written up in docs/architecture.md, "Container jobs".
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import mimetypes
import posixpath
import re
import secrets
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import requests

from jobgate import db, files
from jobgate.broker import RPC_CONTAINERS_QUEUE
from jobgate.config import Settings
from jobgate.jobs import attempts, job_items, job_logs
from jobgate.kinds.container import image_allowed, parse_cpus, parse_duration, parse_memory
from jobgate.storage import DirectoryStorage
from jobgate_worker.context import JobContext
from jobgate_worker.errors import HandBack, JobFailed, LeaseLost

# The containers API's engine side, which this kind's workers serve over RPC beside their
# jobs (`KindSpec.rpc` looks for RPC_QUEUE and rpc_handlers in the kind's worker module).
from jobgate_worker.kinds.container_api import ContainersApi, Sample

__all__ = ["RPC_QUEUE", "housekeeping", "rpc_handlers", "run"]

log = logging.getLogger(__name__)

# The API version spoken. Podman 4.3 serves 1.41 and Docker engines still accept it; naming
# it means no version probe when the client is made, so a stopped engine fails at `ping`.
ENGINE_API_VERSION = "1.41"
CONTROL_TIMEOUT_S = 30.0  # every engine call but the attached output, which may be silent
POOL_SIZE = 32  # connections per client: each running attempt holds one for its output
ENGINE_WAIT_S = 5.0  # an unreachable engine is retried this long, then the job handed back
ENGINE_RETRY_S = 0.5
TICK_S = 0.2  # how often the handler looks for a stop request, the timeout and the end
INSPECT_S = 1.0  # how often the container's state is read while its output stays open
STATS_INTERVAL_S = 2.0  # resource usage sampled and written to jobs.details this often
ATTACH_WAIT_S = 10.0
EXIT_WAIT_S = 5.0  # how long a killed container's exit is awaited
OUTPUT_TAIL_S = 2.0  # how long the output is drained after the container's exit
LINE_LIMIT = 8192  # bytes per logged line (longer lines are split)
LOG_LINES_MAX = 10_000  # lines stored per attempt; the rest are counted, not stored
OOM_EXIT = 137  # 128 + SIGKILL
SPOOL_BYTES = 16 * 1024 * 1024  # inputs' tar in memory up to this, then in a temp file
CHUNK = 1024 * 1024
OUTPUT_DIR_MODE = 0o777  # an output directory the image lacks: writable whatever the user
REASON_LIMIT = 300
PROGRESS_LINE = re.compile(rb"^::progress::\s*(\d+(?:\.\d+)?)\s*%?\s*$")
GLOB_CHARS = re.compile(r"[*?\[]")
FINISHED = ("exited", "stopped", "dead")  # Podman: "stopped" until its cleanup is done
CLEANUP_WAIT_S = 2.0  # how long a "stopped" container is given to become "exited"
ARCHIVE_TRIES = 5
ARCHIVE_RETRY_S = 0.1

LABEL_JOB = "jobgate.job"
LABEL_ATTEMPT = "jobgate.attempt"
LABEL_WORKER = "jobgate.worker"
LABEL_INSTANCE = "jobgate.instance"

# The engine is away, refused a call, or answered something unreadable.
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


# --- the engine -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Engine:
    """Two clients of one engine: `control` with a timeout for every call, `stream` without
    one for the attached output of containers that may print nothing for hours."""

    control: docker.DockerClient
    stream: docker.DockerClient


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine(docker_host: str) -> Engine:
    """The process's clients of the engine at `docker_host` (made on first use, no I/O)."""
    with _engines_lock:
        found = _engines.get(docker_host)
        if found is None:
            common = {
                "base_url": docker_host,
                "version": ENGINE_API_VERSION,
                "max_pool_size": POOL_SIZE,
            }
            found = Engine(
                control=docker.DockerClient(timeout=CONTROL_TIMEOUT_S, **common),
                stream=docker.DockerClient(timeout=None, **common),
            )
            _engines[docker_host] = found
        return found


RPC_QUEUE = RPC_CONTAINERS_QUEUE  # the containers API's requests (KindSpec.rpc)


def rpc_handlers(settings: Settings) -> dict[str, Any]:
    """The containers API served by this worker process, on its engine client."""
    api = ContainersApi(settings, engine(settings.docker_host).control, instance_label(settings))
    return api.handlers()


def instance_label(settings: Settings) -> str:
    """Which Jobgate a container belongs to: a digest of its database's address (never the
    credentials). Engines may be shared (several deployments, test runs); housekeeping only
    ever looks at containers of its own deployment."""
    url = urllib.parse.urlsplit(settings.database_url)
    ident = f"{url.hostname}:{url.port or 5432}/{url.path.lstrip('/')}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _connect(ctx: JobContext) -> Engine:
    """The engine, answering `ping`; a job that finds it unreachable for ENGINE_WAIT_S is
    handed back (requeued, no attempt used): the engine's outage is not the job's fault."""
    deadline = time.monotonic() + ENGINE_WAIT_S
    while True:
        try:
            found = engine(ctx.settings.docker_host)
            found.control.ping()
            return found
        except ENGINE_ERRORS as exc:
            error = exc
        reason = ctx.stop_reason()
        if reason is not None:
            raise reason()
        if time.monotonic() >= deadline:
            break
        time.sleep(ENGINE_RETRY_S)
    log.warning(
        "job %s: container engine %s unreachable (%s); handing the job back",
        ctx.job_id,
        ctx.settings.docker_host,
        _explain(error),
    )
    raise HandBack()


# --- the handler --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Limits:
    """An attempt's limits: the job's `resources`, else the settings' defaults."""

    memory: int
    cpus: float
    timeout_s: float

    @classmethod
    def of(cls, resources: dict[str, Any], settings: Settings) -> Limits:
        memory = parse_memory(resources.get("memory_limit") or settings.container_default_memory)
        cpus = parse_cpus(resources.get("cpu_limit") or settings.container_default_cpus)
        timeout = settings.container_default_timeout_s
        if resources.get("timeout"):
            timeout = parse_duration(resources["timeout"]) or timeout
        return cls(memory, cpus, min(timeout, settings.container_max_timeout_s))


def run(ctx: JobContext) -> dict[str, Any]:
    """Run the job's container to its end and collect its outputs (one attempt)."""
    image = ctx.params["image"]
    _check_allowed(image, ctx.settings.container_image_allowlist)
    limits = Limits.of(ctx.params.get("resources") or {}, ctx.settings)
    storage = DirectoryStorage(ctx.settings.storage_dir)
    inputs = _resolve_inputs(ctx, storage)
    found = _connect(ctx)
    try:
        _check_image(found, image)
        return _Attempt(ctx, found, limits, storage, inputs).run()
    except ENGINE_ERRORS as exc:  # the engine went away or refused a call mid-attempt
        raise JobFailed(f"container engine error: {_explain(exc)}") from None


def _check_allowed(image: str, allowlist: Iterable[str]) -> None:
    """The gateway checks at submission too; this catches a job submitted before the
    allow-list changed."""
    if not image_allowed(image, tuple(allowlist)):
        raise JobFailed(f"image '{image}' is not allowed", retryable=False)


def _check_image(found: Engine, image: str) -> None:
    """The image must be there already: jobs never pull (no registry is assumed)."""
    try:
        found.control.images.get(image)
    except docker.errors.APIError as exc:  # not found, or (Podman, a 500) a name it cannot parse
        reason = "" if isinstance(exc, docker.errors.NotFound) else f" ({exc.explanation})"
        raise JobFailed(f"image '{image}' not found{reason}", retryable=False) from None


def _resolve_inputs(ctx: JobContext, storage: DirectoryStorage) -> list[tuple[str, Path]]:
    """`(destination, stored object)` per input: the file at the owner's files API path now
    (a retry reads what is there then). In the same transaction the rows are locked and their
    ids recorded on the job (`job_items.record_inputs`), so a file replaced at its path while
    the job copies it keeps its object. A missing one fails for good (another attempt would
    find the same)."""
    items = ctx.params.get("input_files") or []
    if not items:
        return []
    resolved = []
    with ctx.db.transaction() as conn:
        for item in items:
            source = item["source"]
            try:
                row = files.file_at_path(
                    conn, owner_id=str(ctx.job["owner_id"]), path=source, lock=True
                )
            except files.InvalidPath as exc:
                raise JobFailed(f"input file '{source}': {exc.reason}", retryable=False) from None
            if row is None:
                raise JobFailed(f"input file '{source}' not found", retryable=False)
            resolved.append((item["destination"], source, row))
        job_items.record_inputs(
            conn,
            job_id=ctx.job_id,
            inputs=[
                (dest, row["size"], {"file_id": str(row["id"]), "source": source})
                for dest, source, row in resolved
            ],
        )
    out = []
    for destination, source, row in resolved:
        path = storage.path(row["storage_key"])
        if not path.is_file():
            raise JobFailed(f"the stored data of input file '{source}' is missing", retryable=False)
        out.append((destination, path))
    return out


class _Output:
    """What the container printed, cut into lines by the attach thread and taken in batches
    by the handler thread (`drain`): log lines, and the last `::progress::` value."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[tuple[str, str]] = []
        self._partial = {"stdout": b"", "stderr": b""}
        self._progress: float | None = None
        self.kept = 0
        self.dropped = 0
        self.attached = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None

    def feed(self, stream: str, data: bytes) -> None:
        with self._lock:
            *lines, rest = (self._partial[stream] + data).split(b"\n")
            while len(rest) > LINE_LIMIT:
                lines.append(rest[:LINE_LIMIT])
                rest = rest[LINE_LIMIT:]
            self._partial[stream] = rest
            for line in lines:
                self._add(stream, line)

    def finish(self) -> None:
        """The output ended: a last line without a newline still counts."""
        with self._lock:
            for stream, rest in self._partial.items():
                if rest:
                    self._add(stream, rest)
                self._partial[stream] = b""

    def _add(self, stream: str, line: bytes) -> None:
        line = line.removesuffix(b"\r")
        match = PROGRESS_LINE.match(line) if stream == "stdout" else None
        if match:
            self._progress = min(100.0, max(0.0, float(match.group(1))))
        elif self.kept < LOG_LINES_MAX:
            self._lines.append((stream, line.decode("utf-8", "replace")))
            self.kept += 1
        else:
            self.dropped += 1

    def drain(self) -> tuple[list[tuple[str, str]], float | None]:
        with self._lock:
            lines, self._lines = self._lines, []
            progress, self._progress = self._progress, None
        return lines, progress


@dataclasses.dataclass
class _Usage:
    """Resource usage from the engine's stats samples (Podman keeps no peak: the highest
    sample is the peak; a container that exits before the first sample shows zeros)."""

    cpu_ns: int = 0
    memory_peak: int = 0
    network_io: int = 0

    def add(self, stats: dict[str, Any]) -> None:
        sample = Sample.of(stats)
        self.cpu_ns = max(self.cpu_ns, sample.cpu_ns)
        self.memory_peak = max(self.memory_peak, sample.memory_peak)
        self.network_io = max(self.network_io, sample.network_rx + sample.network_tx)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpu_time": round(self.cpu_ns / 1e9, 3),
            "memory_peak": self.memory_peak,
            "network_io": self.network_io,
        }


class _Attempt:
    """One container from `create` to `remove`."""

    def __init__(
        self,
        ctx: JobContext,
        found: Engine,
        limits: Limits,
        storage: DirectoryStorage,
        inputs: list[tuple[str, Path]],
    ) -> None:
        self.ctx = ctx
        self.engine = found
        self.api = found.control.api
        self.limits = limits
        self.storage = storage
        self.inputs = inputs
        self.output = _Output()
        self.usage = _Usage()
        self.stream: Any = None
        self.last_pct: float | None = None

    def run(self) -> dict[str, Any]:
        self.ctx.check()
        container = self._create()
        cid = container.id
        self._announce(cid, "create")
        reader: threading.Thread | None = None
        try:
            self._details(container_id=cid, resource_usage=self.usage.as_dict(), exit_code=None)
            reader = threading.Thread(
                target=self._follow, args=(cid,), name=f"container-out-{cid[:12]}", daemon=True
            )
            reader.start()  # attaching takes tens of ms: meanwhile, copy the inputs in
            self._copy_inputs(container)
            self._prepare_output_dirs(container)
            if not self.output.attached.wait(ATTACH_WAIT_S) or self.output.error is not None:
                raise JobFailed(f"could not attach to the container: {self.output.error}")
            self.ctx.check()
            self._start(container)
            self._announce(cid, "start")
            started = time.monotonic()
            code, oom = self._supervise(cid, started)
            seconds = time.monotonic() - started
            self._announce(cid, "die", exit_code=code, oom_killed=oom)
            self.output.ended.wait(OUTPUT_TAIL_S)
            self._flush()
            self._details(exit_code=code, resource_usage=self.usage.as_dict())
            self.ctx.log("info", f"container exited with code {code} after {seconds:.1f}s")
            if oom or code == OOM_EXIT:
                raise JobFailed(f"out of memory (limit {_size_text(self.limits.memory)})")
            if code != 0:
                raise JobFailed(f"exited with code {code}")
            if self.ctx.params.get("output_patterns"):
                self._settle(cid)  # only reading its files needs Podman's cleanup done
            outputs = self._collect(container)
            return {
                "exit_code": code,
                "container_id": cid,
                "image": self.ctx.params["image"],
                "seconds": round(seconds, 3),
                "resource_usage": self.usage.as_dict(),
                "output_files": [out["path"] for out in outputs],
                "outputs": outputs,
            }
        finally:
            self._remove(cid)
            self._announce(cid, "destroy")
            if self.stream is not None:
                _quietly(self.stream.close)
            if reader is not None:
                reader.join(timeout=1)

    def _announce(self, cid: str, event: str, **data: Any) -> None:
        """A container event (Docker's words: create, start, die, destroy) on
        `jobgate.events`, for seed 003's `container_event` stream; live only."""
        self.ctx.announce("container", {"container_id": cid, "action": event, **data})

    # --- create, inputs, start --------------------------------------------------------

    def _create(self) -> Any:
        ctx, params, limits = self.ctx, self.ctx.params, self.limits
        attempt = str(ctx.job["attempt"])
        labels = {
            LABEL_JOB: ctx.job_id,
            LABEL_ATTEMPT: attempt,
            LABEL_WORKER: ctx.worker_id,
            LABEL_INSTANCE: instance_label(ctx.settings),
        }
        try:
            container = self.engine.control.containers.create(
                params["image"],
                command=params.get("command"),
                environment=params.get("environment") or {},
                name=f"jobgate-{ctx.job_id}-{attempt}-{secrets.token_hex(3)}",
                labels=labels,
                mem_limit=limits.memory,
                memswap_limit=limits.memory,  # no swap beyond the limit: over it is OOM
                nano_cpus=int(limits.cpus * 1e9),
                pids_limit=ctx.settings.container_pids_limit,
                network_mode="none",  # not network_disabled, which Podman ignores
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                privileged=False,
                stdin_open=False,
                tty=False,
            )
        except docker.errors.APIError as exc:
            if exc.is_client_error():
                raise JobFailed(
                    f"container not created: {_explain(exc)}", retryable=False
                ) from None
            raise
        ctx.log(
            "info",
            f"container {container.id[:12]} created from {params['image']} (memory"
            f" {_size_text(limits.memory)}, {limits.cpus:g} CPU, timeout {limits.timeout_s:g}s)",
        )
        return container

    def _copy_inputs(self, container: Any) -> None:
        """The inputs as one tar extracted at `/`: parent directories are made as needed."""
        if not self.inputs:
            return

        def fill(tar: tarfile.TarFile) -> None:
            for destination, path in self.inputs:
                info = tarfile.TarInfo(destination.lstrip("/"))
                info.size = path.stat().st_size
                info.mode = 0o644
                info.mtime = int(time.time())
                with open(path, "rb") as f:
                    tar.addfile(info, f)

        put_tar(container, fill)
        self.ctx.log("info", f"copied {len(self.inputs)} input file(s) in")

    def _prepare_output_dirs(self, container: Any) -> None:
        """Directories the output patterns read that the image lacks: made writable, since
        a process without capabilities cannot create them in a read-only `/`."""
        wanted = sorted({_output_dir(p) for p in self.ctx.params.get("output_patterns") or []})
        missing = [d for d in wanted if d != "/" and not self._exists(container.id, d)]
        if not missing:
            return

        def fill(tar: tarfile.TarFile) -> None:
            for directory in missing:
                info = tarfile.TarInfo(directory.lstrip("/"))
                info.type = tarfile.DIRTYPE
                info.mode = OUTPUT_DIR_MODE
                info.mtime = int(time.time())
                tar.addfile(info)

        put_tar(container, fill)

    def _exists(self, cid: str, path: str) -> bool:
        """Whether `path` exists in the container (the archive API's HEAD: no data read)."""
        url = self.api._url("/containers/{0}/archive", cid)
        response = self.api.head(url, params={"path": path}, timeout=CONTROL_TIMEOUT_S)
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def _start(self, container: Any) -> None:
        try:
            container.start()
        except docker.errors.APIError as exc:
            # e.g. the command is not in the image: the same on every attempt.
            raise JobFailed(
                f"container did not start: {_explain(exc)}", retryable=not exc.is_server_error()
            ) from None

    def _follow(self, cid: str) -> None:
        """The attach thread: the container's output (from its first byte) until it ends."""
        try:
            self.stream = self.engine.stream.api.attach(
                cid, stdout=True, stderr=True, stream=True, logs=True, demux=True
            )
        except Exception as exc:  # noqa: BLE001 - reported by the handler thread
            self.output.error = exc
            self.output.attached.set()
            self.output.ended.set()
            return
        self.output.attached.set()
        try:
            for out, err in self.stream:
                if out:
                    self.output.feed("stdout", out)
                if err:
                    self.output.feed("stderr", err)
        except Exception as exc:  # noqa: BLE001 - closed under us (removal) or engine gone
            log.debug("container %s: output stream ended: %s", cid[:12], exc)
        finally:
            self.output.finish()
            self.output.ended.set()

    # --- while it runs ------------------------------------------------------------------

    def _supervise(self, cid: str, started: float) -> tuple[int, bool]:
        """Wait for the container's exit, writing its output, progress and usage; kill it
        on cancel/hand-back (raised) or timeout (failed). Returns (exit code, OOMKilled)."""
        deadline = started + self.limits.timeout_s
        next_stats = started
        next_inspect = started + INSPECT_S
        pause = 0.0
        while True:
            if self.output.ended.is_set():
                # Output closed: only the state says when it exits. Look at once (a short
                # job is over by now), then less and less often, up to a tick.
                time.sleep(pause)
                pause = min(TICK_S, max(0.01, pause * 2))
                ended = True
            else:
                ended = self.output.ended.wait(TICK_S)
            reason = self.ctx.stop_reason()
            if reason is not None:
                self._kill(cid)
                self._flush()
                self.ctx.log("info", f"container killed ({reason.__name__.lower()})")
                raise reason()
            now = time.monotonic()
            if now >= next_stats:
                self._sample(cid)
                self._details(resource_usage=self.usage.as_dict())
                next_stats = now + STATS_INTERVAL_S
            self._flush()
            if ended or now >= next_inspect:
                state = self.api.inspect_container(cid)["State"]
                if state.get("Status") in FINISHED:
                    return int(state.get("ExitCode") or 0), bool(state.get("OOMKilled"))
                next_inspect = now + INSPECT_S
            if now >= deadline:
                self._kill(cid)
                self._flush()
                timeout = f"{self.limits.timeout_s:g}"
                self._details(exit_code=self._exit_code(cid), resource_usage=self.usage.as_dict())
                raise JobFailed(f"timed out after {timeout} s")

    def _settle(self, cid: str) -> None:
        """Wait for Podman's cleanup after the exit ("stopped" -> "exited"): reading the
        filesystem while it is being unmounted gives an empty archive."""
        deadline = time.monotonic() + CLEANUP_WAIT_S
        while time.monotonic() < deadline:
            if self.api.inspect_container(cid)["State"].get("Status") != "stopped":
                return
            time.sleep(0.01)

    def _kill(self, cid: str) -> None:
        try:
            self.api.kill(cid)
        except docker.errors.APIError as exc:  # it exited meanwhile: nothing to kill
            log.debug("container %s: kill: %s", cid[:12], _explain(exc))

    def _exit_code(self, cid: str) -> int | None:
        """The exit code of a container just killed, once the engine has seen it exit."""
        deadline = time.monotonic() + EXIT_WAIT_S
        while time.monotonic() < deadline:
            try:
                state = self.api.inspect_container(cid)["State"]
            except ENGINE_ERRORS:
                return None
            if state.get("Status") in FINISHED:
                return int(state.get("ExitCode") or 0)
            time.sleep(0.05)
        return None

    def _sample(self, cid: str) -> None:
        try:
            self.usage.add(self.api.stats(cid, stream=False, one_shot=True))
        except (ValueError, *ENGINE_ERRORS) as exc:  # exited meanwhile: no cgroup to read
            log.debug("container %s: no stats: %s", cid[:12], exc)

    def _flush(self) -> None:
        """The output's new lines and progress into the job, in one transaction."""
        lines, pct = self.output.drain()
        if pct == self.last_pct:
            pct = None
        if not lines and pct is None:
            return
        with self.ctx.db.transaction() as conn:
            job_logs.add_logs(conn, job_id=self.ctx.job_id, entries=lines)
            if pct is not None:
                self.ctx.progress(conn, progress_pct=pct)
        if pct is not None:
            self.last_pct = pct

    def _details(self, **details: Any) -> None:
        with self.ctx.db.transaction() as conn:
            held = attempts.set_details(
                conn, job_id=self.ctx.job_id, worker_id=self.ctx.worker_id, details=details
            )
        if not held:
            raise LeaseLost(self.ctx.job_id)

    # --- after it exited ------------------------------------------------------------------

    def _collect(self, container: Any) -> list[dict[str, Any]]:
        """Store the files matching the output patterns; record them (replacing an earlier
        attempt's outputs) with progress 100 in one transaction."""
        if self.output.dropped:
            self.ctx.log(
                "warning",
                f"{self.output.dropped} more output line(s) not stored"
                f" (at most {LOG_LINES_MAX} per attempt)",
            )
        patterns = self.ctx.params.get("output_patterns") or []
        stored: dict[str, tuple[str, int, str]] = {}
        try:
            for root in _roots(patterns):
                for path, data in self._archive(container, root):
                    if path not in stored and matches(path, patterns):
                        stored[path] = self._store(data)
            rows, replaced = self._record_outputs(stored)
        except BaseException:
            for key, _, _ in stored.values():  # no row was written: they would be orphans
                _quietly(self.storage.delete, key)
            raise
        for key in replaced:  # after commit: a rolled-back delete must not lose objects
            _quietly(self.storage.delete, key)
        if patterns:
            self.ctx.log("info", f"collected {len(rows)} output file(s)")
        return rows

    def _archive(self, container: Any, root: str) -> Iterator[tuple[str, IO[bytes]]]:
        """`(container path, data)` of each regular file at or below `root`, streamed."""
        for _ in range(ARCHIVE_TRIES):
            try:
                chunks, _ = container.get_archive(root, chunk_size=CHUNK)
            except docker.errors.NotFound:
                self.ctx.log("info", f"no {root} in the container: nothing collected there")
                return
            # Podman answers an empty body now and then while it unmounts the exited
            # container's filesystem; a real archive is never empty (it holds `root`).
            chunks = iter(chunks)
            first = next((chunk for chunk in chunks if chunk), b"")
            if first:
                break
            time.sleep(ARCHIVE_RETRY_S)
        else:
            raise JobFailed(f"the engine gave no archive of {root}")
        parent = posixpath.dirname(root.rstrip("/")) or "/"
        reader = _ChunkReader(itertools.chain([first], chunks))
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                data = tar.extractfile(member)
                if data is not None:
                    yield posixpath.normpath(posixpath.join(parent, member.name)), data

    def _store(self, data: IO[bytes]) -> tuple[str, int, str]:
        pending = self.storage.begin()
        try:
            while chunk := data.read(CHUNK):
                pending.write(chunk)
            return self.storage.commit(pending), pending.size, pending.sha256
        finally:
            self.storage.discard(pending)  # a no-op once committed

    def _record_outputs(
        self, stored: dict[str, tuple[str, int, str]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        ctx = self.ctx
        rows = []
        with ctx.db.transaction() as conn:
            # First, so the job row is locked and still ours (LeaseLost rolls all of this back).
            ctx.progress(conn, progress_pct=100.0)
            replaced = files.delete_outputs_of(conn, job_id=ctx.job_id)
            for path in sorted(stored):
                key, size, sha256 = stored[path]
                row = files.create_file(
                    conn,
                    owner_id=str(ctx.job["owner_id"]),
                    role="output",
                    filename=path.lstrip("/"),
                    content_type=mimetypes.guess_type(path)[0] or "application/octet-stream",
                    size=size,
                    sha256=sha256,
                    storage_key=key,
                    job_id=ctx.job_id,
                )
                rows.append({"path": path, "file_id": str(row["id"]), "size": size})
        return rows, replaced

    def _remove(self, cid: str) -> None:
        try:
            self.api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except ENGINE_ERRORS as exc:  # housekeeping removes it once the attempt is over
            log.warning("job %s: container %s not removed: %s", self.ctx.job_id, cid[:12], exc)


def put_tar(container: Any, fill: Callable[[tarfile.TarFile], None]) -> None:
    """Extract at `/` in `container` the tar that `fill` writes, sent without the padding
    that Python adds after the two end-of-archive blocks (up to a 10 KiB record).

    Podman's extractor stops reading at the end blocks; padding still on its way then
    fails the whole request with "passing bulk input to subprocess: write |1: broken
    pipe" (containers/buildah#6573), now and then and more often under load.
    """
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        with tarfile.open(fileobj=spool, mode="w") as tar:
            fill(tar)
        spool.truncate(tar.offset)  # the end of the end blocks: `close` pads past it
        spool.seek(0)
        container.put_archive("/", spool)


class _ChunkReader:
    """A read-only file over `get_archive`'s chunks, for `tarfile`'s stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


# --- output patterns ------------------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob on container paths: `*` and `?` stay within one path segment, `**` spans
    segments, `[...]` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, patterns: Iterable[str]) -> bool:
    """Whether a file is an output: a pattern matches its path, or one of its directories
    (a pattern naming a directory collects everything below it, like `cp -r`)."""
    regexes = [_glob_regex(p) for p in patterns]
    candidates = [path]
    parent = posixpath.dirname(path)
    while parent not in ("/", ""):
        candidates.append(parent)
        parent = posixpath.dirname(parent)
    return any(r.match(c) for r in regexes for c in candidates)


def _pattern_root(pattern: str) -> str:
    """The deepest directory of a pattern without wildcards (read with `get_archive`), or
    the pattern itself when it has none (a file, or a directory collected whole)."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if GLOB_CHARS.search(part):
            return "/".join(parts[:i]) or "/"
    return pattern


def _output_dir(pattern: str) -> str:
    """The directory a job writes a pattern's files into (made if the image lacks it)."""
    root = _pattern_root(pattern)
    return (posixpath.dirname(root) or "/") if root == pattern else root


def _roots(patterns: Iterable[str]) -> list[str]:
    """The archives to read: each pattern's root, minus roots inside another one."""
    roots = sorted({_pattern_root(p) for p in patterns})
    kept: list[str] = []
    for root in roots:
        if not any(root == k or root.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(root)
    return kept


# --- housekeeping -----------------------------------------------------------------------------


UNREACHABLE_WARN_S = 60.0  # housekeeping runs every heartbeat: say the engine is away less often
_unreachable_warned = -UNREACHABLE_WARN_S


def housekeeping(settings: Settings, database: db.Database) -> None:
    """Remove this deployment's job containers whose attempt is over (a worker killed with
    `kill -9` could not remove its container; the reaper re-queues the job, which runs again
    in a new one), and sweep storage's temporary files (outputs being stored when a worker
    died). Containers without our labels are never touched."""
    swept = DirectoryStorage(settings.storage_dir).sweep_tmp(
        older_than_s=settings.storage_tmp_max_age_s
    )
    if swept:
        log.info("removed %d stale temporary file(s) from storage", swept)
    removed = remove_orphans(settings, database)
    if removed:
        log.warning("removed %d container(s) of attempts that are over: %s", len(removed), removed)


def remove_orphans(settings: Settings, database: db.Database) -> list[str]:
    """Remove job containers (labels `jobgate.job` and this deployment's `jobgate.instance`)
    unless their job is running in that attempt on that worker; returns their ids. The
    containers are listed before the jobs are read, and a claim commits before its
    container is made, so a live attempt's container is never taken for an orphan."""
    api = engine(settings.docker_host).control.api
    try:
        listed = api.containers(
            all=True,
            filters={"label": [LABEL_JOB, f"{LABEL_INSTANCE}={instance_label(settings)}"]},
        )
    except ENGINE_ERRORS as exc:
        global _unreachable_warned
        if time.monotonic() - _unreachable_warned >= UNREACHABLE_WARN_S:
            _unreachable_warned = time.monotonic()
            log.warning(
                "container housekeeping skipped: engine %s unreachable (%s)",
                settings.docker_host,
                _explain(exc),
            )
        return []
    if not listed:
        return []
    job_ids = {c["Labels"].get(LABEL_JOB, "") for c in listed}
    valid = [j for j in job_ids if _is_uuid(j)]
    with database.transaction() as conn:
        holders = attempts.running_holders(conn, job_ids=valid)
    removed = []
    for container in listed:
        labels = container.get("Labels") or {}
        holder = holders.get(labels.get(LABEL_JOB, ""))
        if (
            holder is not None
            and str(holder["attempt"]) == labels.get(LABEL_ATTEMPT)
            and holder["worker_id"] == labels.get(LABEL_WORKER)
        ):
            continue
        try:
            api.remove_container(container["Id"], force=True)
        except docker.errors.NotFound:
            continue  # its own worker removed it meanwhile
        except ENGINE_ERRORS as exc:
            log.warning("container %s not removed: %s", container["Id"][:12], _explain(exc))
            continue
        removed.append(container["Id"][:12])
    return removed


# --- small helpers -----------------------------------------------------------------------------


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _size_text(size: int) -> str:
    """Bytes as Docker writes them: 16m, 1g, 1536k."""
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"


def _explain(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return str(text).strip()[:REASON_LIMIT]


def _quietly(action: Any, *args: Any) -> None:
    try:
        action(*args)
    except Exception as exc:  # noqa: BLE001 - best effort cleanup
        log.debug("cleanup step failed: %s", exc)
