"""`jobgate`: the command line on the Python client (click + rich).

Exit codes: 0 success; 1 the job failed or was cancelled; 2 a usage error; 3 an error
answered by the API (its code, message and request id on one line of stderr); 4 the
server could not be reached; 130 interrupted (Ctrl-C). `--json` on any command prints
only JSON on stdout; bars and progress lines go to stderr, and only on a terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from jobgate_client import __version__
from jobgate_client.client import BATCH_MAX, Client
from jobgate_client.config import Config, ConfigError
from jobgate_client.display import JobDisplay, TransferDisplay, readable
from jobgate_client.errors import Conflict, ConnectionFailed, InvalidRequest, JobgateError
from jobgate_client.models import TERMINAL, Job, Tokens
from jobgate_client.streams import StreamUnavailable

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_CONNECTION = 4
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])

EPILOG = """\b
Exit codes: 0 success, 1 the job failed or was cancelled, 2 usage error,
3 API error, 4 cannot connect, 130 interrupted.
Settings: --url, else JOBGATE_URL, else `jobgate login`'s; JOBGATE_API_KEY, else the
credentials `jobgate login` stored (JOBGATE_CONFIG, else
$XDG_CONFIG_HOME/jobgate/config.json)."""


class State:
    """What every command shares: the settings, the client (made on first use) and the
    two consoles (results on stdout, progress and messages on stderr)."""

    def __init__(self, url: str | None) -> None:
        self.url_option = url
        self._config: Config | None = None
        self._client: Client | None = None
        # Tables piped to a file or another program are not cut to 80 columns.
        wide = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 250
        self.out = Console(highlight=False, soft_wrap=True, width=wide)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = Config.load()
        return self._config

    @property
    def url(self) -> str:
        return self.config.url(self.url_option)

    def client(self, *, anonymous: bool = False) -> Client:
        """The client for this server: JOBGATE_API_KEY, else the stored session or key
        (`anonymous`: no credentials, for `login`)."""
        if self._client is None:
            entry = self.config.server(self.url)
            env_key = os.environ.get("JOBGATE_API_KEY")
            credentials: dict[str, Any] = {"api_key": ""}  # "": none, not even the env's
            if anonymous:
                pass
            elif env_key:
                credentials = {"api_key": env_key}
            elif entry.get("access_token"):
                credentials["token"] = entry["access_token"]
                credentials["refresh_token"] = entry.get("refresh_token")
            elif entry.get("api_key"):
                credentials = {"api_key": entry["api_key"]}
            self._client = Client(self.url, on_tokens=self._store_tokens, **credentials)
        return self._client

    def _store_tokens(self, tokens: Tokens) -> None:
        """A refreshed session replaces the stored one (refresh tokens rotate)."""
        entry = self.config.server(self.url)
        if "access_token" not in entry and "refresh_token" not in entry:
            return  # a login in progress: `login` stores what it decides
        entry.update(
            access_token=tokens.get("access_token", entry.get("access_token")),
            refresh_token=tokens.get("refresh_token", entry.get("refresh_token")),
        )
        self.config.set_server(self.url, entry, make_default=False)
        self.config.save()

    def print_json(self, data: Any) -> None:
        self.out.file.write(json.dumps(data, default=str) + "\n")
        self.out.file.flush()


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout."
    )(func)


def watch_options(func: F) -> F:
    func = click.option(
        "--cancel-on-interrupt",
        is_flag=True,
        help="On Ctrl-C, cancel the job (by default it keeps running).",
    )(func)
    return click.option(
        "--watch", "-w", is_flag=True, help="Follow the job until it ends, with a live bar."
    )(func)


def job_options(func: F) -> F:
    """The options every submission takes (retry policy, priority, idempotency)."""
    for option in reversed(
        [
            click.option("--priority", type=click.IntRange(0, 9), help="0-9, higher first."),
            click.option("--max-attempts", type=click.IntRange(1, 20), help="Tries at most."),
            click.option(
                "--idempotency-key",
                help="Submitting again with this key returns the first job (default: a new key).",
            ),
        ]
    ):
        func = option(func)
    return func


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "priority": kwargs.pop("priority", None),
        "max_attempts": kwargs.pop("max_attempts", None),
        "idempotency_key": kwargs.pop("idempotency_key", None),
    }


pass_state = click.make_pass_decorator(State)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG,
)
@click.option("--url", metavar="URL", help="The server (default: JOBGATE_URL, then the config).")
@click.version_option(__version__, prog_name="jobgate")
@click.pass_context
def cli(ctx: click.Context, url: str | None) -> None:
    """Run and watch Jobgate jobs: cache, convert, scrape, containers, tasks."""
    ctx.obj = State(url)


# --- watching ------------------------------------------------------------------------


def watch_job(state: State, job: Job, *, label: str | None = None) -> Job:
    """Show the job's progress until it ends; its final state."""
    client = state.client()
    with JobDisplay(state.err, job, label=label) as display:
        for event in client.jobs.watch(job["id"]):
            display.update(event)
    return client.jobs.get(job["id"])


def interrupted(state: State, job_id: str, cancel: bool, resume: str = "jobs watch") -> int:
    """Ctrl-C while watching: nothing is asked. The job keeps running (the command to watch
    it again is printed), or is cancelled with --cancel-on-interrupt."""
    if cancel:
        try:
            state.client().jobs.cancel(job_id)
            state.err.print(f"jobgate: cancelled job {job_id}")
        except Conflict:
            state.err.print(f"jobgate: job {job_id} had already ended")
    else:
        state.err.print(
            f"jobgate: stopped watching; job {job_id} keeps running. "
            f"Watch it again with: jobgate {resume} {job_id}"
        )
    return EXIT_INTERRUPTED


def summary(job: Job) -> str:
    """One line on how a job ended."""
    kind, status = job.get("kind", "job"), job.get("status")
    line = f"{kind} job {job.get('id')} {status}"
    result = job.get("result") if isinstance(job.get("result"), dict) else {}
    detail = job.get("progress_detail") or {}
    if status == "completed":
        if kind == "cache":
            line += (
                f": {detail.get('items_done', 0)} files, {readable(detail.get('bytes_done', 0))}"
            )
        elif kind == "scrape":
            line += (
                f": {job.get('successful_downloads', detail.get('items_done', 0))} videos"
                f" ({job.get('failed_downloads', detail.get('items_failed', 0))} failed)"
            )
        elif kind == "container":
            line += f": exit code {job.get('exit_code', result.get('exit_code'))}"
        elif kind == "task" and "result" in job:
            line += f": {json.dumps(job.get('result'), default=str)[:200]}"
    elif job.get("error"):
        line += f": {job['error']}"
    return line


def finish(state: State, job: Job, as_json: bool) -> int:
    """Print how the job ended; the exit code that says it (0 completed, 1 otherwise)."""
    if as_json:
        state.print_json(job)
    elif job.get("status") == "completed":
        state.out.print(summary(job))
    else:
        state.err.print(summary(job))
    if job.get("status") in TERMINAL:
        return EXIT_OK if job.get("status") == "completed" else EXIT_JOB_FAILED
    return EXIT_OK


def submitted(
    state: State, job: Job, *, watch: bool, cancel_on_interrupt: bool, as_json: bool
) -> int:
    """After a submission: print the job, or follow it to its end."""
    if not watch:
        if as_json:
            state.print_json(job)
        else:
            state.out.print(job["id"])
            state.err.print(
                f"submitted {job.get('kind')} job {job['id']} ({job.get('status')}); "
                f"follow it with: jobgate jobs watch {job['id']}"
            )
        return EXIT_OK
    try:
        final = state.client().jobs.wait(job["id"]) if as_json else watch_job(state, job)
    except KeyboardInterrupt:
        return interrupted(state, job["id"], cancel_on_interrupt)
    return finish(state, final, as_json)


# --- session -------------------------------------------------------------------------


@cli.command()
@click.option("--username", "-u", help="Prompted for when missing.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--api-key", "use_api_key", is_flag=True, help="Store an API key instead.")
@json_option
@pass_state
def login(
    state: State, username: str | None, password_stdin: bool, use_api_key: bool, as_json: bool
) -> int:
    """Log in and remember the session (or an API key) for this server."""
    url = state.url
    client = state.client(anonymous=True)
    if use_api_key:
        key = _secret("API key")
        client.http.api_key = key
        user = client.auth.me()
        entry: dict[str, Any] = {"username": user.get("username"), "api_key": key}
    else:
        username = username or click.prompt("Username")
        password = _secret("Password", from_stdin=password_stdin)
        tokens = client.auth.login(username, password)
        user = tokens.get("user") or client.auth.me()
        entry = {
            "username": user.get("username", username),
            "access_token": tokens["access_token"],
            "refresh_token": tokens.get("refresh_token"),
        }
    state.config.set_server(url, entry)
    state.config.save()
    if as_json:
        state.print_json({"url": url, "user": user})
    else:
        state.out.print(f"Logged in to {url} as {user.get('username')} ({user.get('role')})")
    return EXIT_OK


def _secret(prompt: str, *, from_stdin: bool = False) -> str:
    """A password or key: asked without echo on a terminal, else the first line of stdin."""
    if not from_stdin and sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True)).strip()
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise click.UsageError(f"no {prompt.lower()} on stdin")
    return value


@cli.command()
@json_option
@pass_state
def logout(state: State, as_json: bool) -> int:
    """End the stored session for this server and forget its credentials."""
    url = state.url
    entry = state.config.server(url)
    if entry.get("refresh_token"):
        client = Client(url, token=entry.get("access_token"), refresh_token=entry["refresh_token"])
        with contextlib.suppress(JobgateError):  # expired or revoked: just forget it
            client.auth.logout()
    forgot = state.config.forget_server(url)
    state.config.save()
    if as_json:
        state.print_json({"url": url, "logged_out": forgot})
    else:
        state.out.print(f"Logged out of {url}" if forgot else f"No stored credentials for {url}")
    return EXIT_OK


@cli.command()
@json_option
@pass_state
def whoami(state: State, as_json: bool) -> int:
    """Who the stored credentials (or JOBGATE_API_KEY) are."""
    user = state.client().auth.me()
    if as_json:
        state.print_json(user)
    else:
        state.out.print(f"{user.get('username')} ({user.get('role')}) at {state.url}")
    return EXIT_OK


# --- submitting ----------------------------------------------------------------------


def _split_cache_paths(
    paths: Iterable[str], files: Iterable[str], dirs: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Positional paths: a trailing `/` or no extension means a folder, else a file (the
    server corrects a wrong guess, see `cache`)."""
    file_list, dir_list = list(files), list(dirs)
    for path in paths:
        name = PurePosixPath(path.replace("\\", "/")).name
        if path.endswith(("/", "\\")) or "." not in name.lstrip("."):
            dir_list.append(path)
        else:
            file_list.append(path)
    return file_list, dir_list


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--file", "files", multiple=True, help="A file to read (repeatable).")
@click.option("--dir", "dirs", multiple=True, help="A folder to read (repeatable).")
@click.option("--recursive/--no-recursive", default=True, help="Into sub-folders (default).")
@job_options
@watch_options
@json_option
@pass_state
def cache(
    state: State,
    paths: tuple[str, ...],
    files: tuple[str, ...],
    dirs: tuple[str, ...],
    recursive: bool,
    watch: bool,
    cancel_on_interrupt: bool,
    as_json: bool,
    **kwargs: Any,
) -> int:
    """Warm the file cache: read PATHS (relative to the filespace root, or absolute from a
    client mount). --watch shows files, bytes, MB/s and ETA live."""
    file_list, dir_list = _split_cache_paths(paths, files, dirs)
    if not file_list and not dir_list:
        raise click.UsageError("name at least one path")
    options = _options(kwargs)
    client = state.client()
    corrections = len(file_list) + len(dir_list)
    while True:
        try:
            job = client.jobs.cache(file_list, dir_list, recursive=recursive, **options)
            break
        except InvalidRequest as exc:  # "path is a directory; list it under 'directories'"
            corrections -= 1
            explicit = set(files) | set(dirs)
            if corrections < 0 or not _move_guessed_path(exc, file_list, dir_list, explicit):
                raise
    return submitted(
        state, job, watch=watch, cancel_on_interrupt=cancel_on_interrupt, as_json=as_json
    )


def _move_guessed_path(
    exc: InvalidRequest, file_list: list[str], dir_list: list[str], explicit: set[str]
) -> bool:
    """When the server says a guessed path is of the other type, move it; True if moved."""
    path, reason = exc.details.get("path"), str(exc.details.get("reason", ""))
    if path is None or path in explicit:
        return False
    if "is a directory" in reason and path in file_list:
        file_list.remove(path)
        dir_list.append(path)
        return True
    if "not a directory" in reason and path in dir_list:
        dir_list.remove(path)
        file_list.append(path)
        return True
    return False


@cli.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to save the MP3.")
@click.option("--bitrate", help="32k … 320k (default: the server's, 192k).")
@job_options
@click.option("--cancel-on-interrupt", is_flag=True, help="On Ctrl-C, cancel the conversion.")
@json_option
@pass_state
def convert(
    state: State,
    source: Path,
    output: Path | None,
    bitrate: str | None,
    cancel_on_interrupt: bool,
    as_json: bool,
    **kwargs: Any,
) -> int:
    """Convert a video (MP4/MOV/AVI) to MP3: upload it, convert it, download the MP3."""
    client = state.client()
    options = _options(kwargs)
    output = output or Path(source.stem + ".mp3")
    if output.is_dir():
        output = output / (source.stem + ".mp3")
    # The server names the MP3 as asked when it is an .mp3 name; it is saved as -o says.
    server_name = output.name if output.suffix.lower() == ".mp3" else None
    size = source.stat().st_size
    if as_json:
        uploaded = client.files.upload(source)
    else:
        with TransferDisplay(state.err, f"upload {source.name}", size) as bar:
            uploaded = client.files.upload(source, progress=bar)
    job = client.jobs.convert(uploaded["id"], bitrate=bitrate, output_name=server_name, **options)
    try:
        final = client.jobs.wait(job["id"]) if as_json else watch_job(state, job)
    except KeyboardInterrupt:
        code = interrupted(state, job["id"], cancel_on_interrupt)
        if not cancel_on_interrupt:
            state.err.print(f"jobgate: then download it with: jobgate jobs download {job['id']}")
        return code
    if final.get("status") != "completed":
        return finish(state, final, as_json)
    outputs = client.jobs.outputs(job["id"])
    if not outputs:
        raise click.ClickException(f"job {job['id']} completed without an output file")
    name = outputs[0]["filename"]
    if as_json:
        saved = client.jobs.download_output(job["id"], name, output)
        state.print_json({"job": final, "input": uploaded, "output": str(saved)})
        return EXIT_OK
    with TransferDisplay(state.err, f"download {name}", outputs[0].get("size")) as bar:
        saved = client.jobs.download_output(job["id"], name, output, progress=bar)
    state.out.print(f"{summary(final)}: saved {saved}")
    return EXIT_OK


@cli.command()
@click.argument("mode", type=click.Choice(["profile", "hashtag"]))
@click.argument("value")
@click.option("--limit", type=click.IntRange(1), help="The newest N videos.")
@click.option("--since", help="Published at or after (ISO 8601 with a zone).")
@click.option("--until", help="Published at or before (ISO 8601 with a zone).")
@click.option("--watermark/--no-watermark", default=None, help="Prefer the watermarked file.")
@job_options
@watch_options
@json_option
@pass_state
def scrape(
    state: State,
    mode: str,
    value: str,
    limit: int | None,
    since: str | None,
    until: str | None,
    watermark: bool | None,
    watch: bool,
    cancel_on_interrupt: bool,
    as_json: bool,
    **kwargs: Any,
) -> int:
    """Collect a profile's or hashtag's videos with their metadata."""
    job = state.client().jobs.scrape(
        mode,
        value,
        limit=limit,
        since=since,
        until=until,
        no_watermark=None if watermark is None else not watermark,
        **_options(kwargs),
    )
    return submitted(
        state, job, watch=watch, cancel_on_interrupt=cancel_on_interrupt, as_json=as_json
    )


def _pairs(values: Iterable[str], what: str, sep: str = "=") -> dict[str, str]:
    pairs = {}
    for value in values:
        key, found, rest = value.partition(sep)
        if not found or not key:
            raise click.BadParameter(f"{value!r} is not {what}")
        pairs[key] = rest
    return pairs


@cli.command(context_settings={"allow_interspersed_args": False})
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", help="A name for the job.")
@click.option("-e", "--env", "env", multiple=True, help="KEY=VALUE (repeatable).")
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    help="SOURCE:DEST, a file of yours into the container.",
)
@click.option("-o", "--output", "outputs", multiple=True, help="A glob of files to collect.")
@click.option("--memory", help="Memory limit (512m, 1g).")
@click.option("--cpus", help="CPU limit (0.5).")
@click.option("--timeout", help="Longest run (30m, 3600s).")
@click.option("--priority", type=click.IntRange(0, 9), help="0-9, higher first.")
@click.option(
    "--max-attempts", type=click.IntRange(1, 10), default=1, show_default=True, help="Tries."
)
@click.option("--idempotency-key", help="Submitting again with this key returns the first job.")
@click.option("--detach", "-d", is_flag=True, help="Print the job id and return at once.")
@click.option("--cancel-on-interrupt", is_flag=True, help="On Ctrl-C, cancel the job.")
@json_option
@pass_state
def run(
    state: State,
    image: str,
    command: tuple[str, ...],
    name: str | None,
    env: tuple[str, ...],
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    memory: str | None,
    cpus: str | None,
    timeout: str | None,
    detach: bool,
    cancel_on_interrupt: bool,
    as_json: bool,
    **kwargs: Any,
) -> int:
    """Run COMMAND in a container of IMAGE and follow its output until it ends
    (`jobgate run busybox -- sh -c 'echo hi'`). Exits 0 when it succeeded, 1 when it
    failed (the container's exit code is printed)."""
    if command[:1] == ("--",):  # after IMAGE, click leaves the separator in the arguments
        command = command[1:]
    client = state.client()
    resources = {"cpu_limit": cpus, "memory_limit": memory, "timeout": timeout}
    job = client.jobs.container(
        image,
        list(command) or None,
        name=name,
        environment=_pairs(env, "KEY=VALUE") or None,
        input_files=[
            {"source": src, "destination": dst}
            for src, dst in _pairs(inputs, "SOURCE:DEST", ":").items()
        ]
        or None,
        output_patterns=list(outputs) or None,
        resources={k: v for k, v in resources.items() if v} or None,
        **_options(kwargs),
    )
    if detach:
        return submitted(state, job, watch=False, cancel_on_interrupt=False, as_json=as_json)
    try:
        if as_json:
            final = client.jobs.wait(job["id"])
        else:
            for line in client.jobs.follow_logs(job["id"]):
                print_log_line(state, line)
            final = client.jobs.get(job["id"])
    except KeyboardInterrupt:
        return interrupted(state, job["id"], cancel_on_interrupt, resume="jobs logs -f")
    return finish(state, final, as_json)


def print_log_line(state: State, line: dict[str, Any]) -> None:
    """A container's own output as it wrote it (stdout, stderr); the platform's lines on
    stderr, dimmed."""
    level, message = line.get("level"), str(line.get("message", ""))
    if level == "stdout":
        state.out.file.write(message + "\n")
        state.out.file.flush()
    elif level == "stderr":
        state.err.file.write(message + "\n")
        state.err.file.flush()
    else:
        state.err.print(f"[dim]{line.get('ts', '')} {level}: {message}[/dim]", markup=True)


@cli.group()
def task() -> None:
    """Tasks: named handlers run on a JSON payload."""


@task.command("submit")
@click.argument("name")
@click.option("--payload", default=None, help="A JSON object.")
@click.option("--handler", help="The handler to run (default: the one named NAME).")
@click.option("--description")
@click.option("--timeout", type=click.IntRange(1), help="Seconds one attempt may run.")
@job_options
@watch_options
@json_option
@pass_state
def task_submit(
    state: State,
    name: str,
    payload: str | None,
    handler: str | None,
    description: str | None,
    timeout: int | None,
    watch: bool,
    cancel_on_interrupt: bool,
    as_json: bool,
    **kwargs: Any,
) -> int:
    """Submit a task NAME with --payload '{…}'."""
    body = _json_object(payload, "--payload") if payload is not None else None
    job = state.client().jobs.task(
        name,
        body,
        handler=handler,
        description=description,
        timeout=timeout,
        **_options(kwargs),
    )
    return submitted(
        state, job, watch=watch, cancel_on_interrupt=cancel_on_interrupt, as_json=as_json
    )


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return value


# --- jobs ----------------------------------------------------------------------------


@cli.group()
def jobs() -> None:
    """List, inspect, cancel, retry and follow jobs."""


def _progress_text(job: Job) -> str:
    return f"{job.get('progress', 0)}%"


@jobs.command("list")
@click.option("--kind", help="cache, convert, scrape, container, task.")
@click.option(
    "--status",
    type=click.Choice(["pending", "running", "retrying", "completed", "failed", "cancelled"]),
)
@click.option("--owner", help="A user id (admins).")
@click.option("--since", "created_since", help="Created at or after (ISO 8601).")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
@pass_state
def jobs_list(state: State, as_json: bool, **filters: Any) -> int:
    """Your jobs, newest first (an admin's: everyone's)."""
    page = state.client().jobs.list(**filters)
    if as_json:
        state.print_json(
            {"jobs": page.items, "total": page.total, "limit": page.limit, "offset": page.offset}
        )
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=36)
    for column in ("KIND", "STATUS", "PROGRESS", "CREATED"):
        table.add_column(column, no_wrap=True)
    table.add_column("ERROR", overflow="fold")
    for job in page.items:
        table.add_row(
            job["id"],
            job.get("kind", ""),
            job.get("status", ""),
            _progress_text(job),
            job.get("created_at", ""),
            (job.get("error") or "")[:60],
        )
    state.out.print(table)
    shown_to = page.offset + len(page.items)
    total = page.total if page.total is not None else f"at least {page.total_min}"
    state.err.print(f"{page.offset + 1 if page.items else 0}-{shown_to} of {total}")
    return EXIT_OK


@jobs.command("get")
@click.argument("job_id")
@json_option
@pass_state
def jobs_get(state: State, job_id: str, as_json: bool) -> int:
    """A job's state, progress, result and failures."""
    detail = state.client().jobs.detail(job_id)
    if as_json:
        state.print_json(detail)
        return EXIT_OK
    job = detail["job"]
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key in ("id", "kind", "status", "progress", "attempt", "max_attempts", "created_at"):
        table.add_row(key, str(job.get(key)))
    for key in ("started_at", "completed_at", "next_attempt_at", "error", "exit_code"):
        if job.get(key) is not None:
            table.add_row(key, str(job.get(key)))
    detail_ = job.get("progress_detail") or {}
    if detail_.get("items_total"):
        table.add_row("items", f"{detail_.get('items_done')}/{detail_.get('items_total')}")
    if detail_.get("bytes_total"):
        table.add_row(
            "bytes", f"{detail_.get('bytes_done_readable')}/{detail_.get('bytes_total_readable')}"
        )
    table.add_row("params", json.dumps(job.get("params"), default=str))
    if job.get("result") is not None:
        table.add_row("result", json.dumps(job.get("result"), default=str)[:500])
    for failure in job.get("failures") or []:
        table.add_row("failed", f"{failure.get('path')}: {failure.get('error')}")
    state.out.print(table)
    return EXIT_OK


def _read_job_bodies(source: Any) -> list[dict[str, Any]]:
    """Job bodies from a JSON array, or JSON lines (one object per line; blank lines and
    lines starting with # skipped): a usage error naming the line of any that is not one."""
    text = source.read()
    if text.lstrip().startswith("["):
        try:
            bodies = json.loads(text)
        except ValueError as exc:
            raise click.UsageError(f"{source.name}: not valid JSON: {exc}") from None
        numbered = list(enumerate(bodies, start=1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    numbered.append((number, json.loads(line)))
                except ValueError as exc:
                    raise click.UsageError(f"{source.name}, line {number}: {exc}") from None
    for number, body in numbered:
        if not isinstance(body, dict):
            raise click.UsageError(f"{source.name}, item {number}: not a JSON object")
    return [body for _, body in numbered]


@jobs.command("submit")
@click.argument("source", type=click.File("r"))
@json_option
@pass_state
def jobs_submit(state: State, source: Any, as_json: bool) -> int:
    """Submit many jobs at once from SOURCE (a file, or - for stdin): JSON lines or a JSON
    array of `POST /api/v1/jobs` bodies (`kind`, its params, options, and an optional
    `idempotency_key` that makes running the same file again safe). Sent in batches of
    1,000, each all or nothing; on an invalid item nothing of its batch is submitted, the
    batches before it stay, and the failing items are listed by their position."""
    bodies = _read_job_bodies(source)
    if not bodies:
        raise click.UsageError(f"{source.name}: no jobs")
    client, done = state.client(), []
    for start in range(0, len(bodies), BATCH_MAX):
        try:
            done.extend(client.jobs.submit_many(bodies[start : start + BATCH_MAX]))
        except InvalidRequest as exc:
            if done:
                state.err.print(f"{len(done)} job(s) submitted before this batch")
            for index, problem in sorted(
                (exc.details.get("items") or {}).items(), key=lambda kv: int(kv[0])
            ):
                message = problem.get("message", "") if isinstance(problem, dict) else problem
                fields = problem.get("fields") if isinstance(problem, dict) else None
                state.err.print(
                    f"job {start + int(index) + 1}: {message}"
                    + (f" {json.dumps(fields)}" if fields else ""),
                    markup=False,
                )
            raise
    if as_json:
        state.print_json({"jobs": done, "created": sum(1 for job in done if job.get("created"))})
        return EXIT_OK
    for job in done:
        state.out.print(
            f"{job['id']} {job.get('kind')} {job.get('status')}"
            + ("" if job.get("created", True) else " (submitted before)"),
            markup=False,
        )
    created = sum(1 for job in done if job.get("created"))
    state.err.print(f"{len(done)} job(s): {created} new, {len(done) - created} submitted before")
    return EXIT_OK


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@pass_state
def jobs_cancel(state: State, job_id: str, as_json: bool) -> int:
    """Cancel a pending or running job."""
    job = state.client().jobs.cancel(job_id)
    if as_json:
        state.print_json(job)
    else:
        state.out.print(f"{job.get('kind')} job {job['id']} {job.get('status')}")
    return EXIT_OK


@jobs.command("retry")
@click.argument("job_id")
@watch_options
@json_option
@pass_state
def jobs_retry(
    state: State, job_id: str, watch: bool, cancel_on_interrupt: bool, as_json: bool
) -> int:
    """Run a failed or cancelled job again."""
    job = state.client().jobs.retry(job_id)
    return submitted(
        state, job, watch=watch, cancel_on_interrupt=cancel_on_interrupt, as_json=as_json
    )


@jobs.command("delete")
@click.argument("job_id")
@json_option
@pass_state
def jobs_delete(state: State, job_id: str, as_json: bool) -> int:
    """Delete a job and what it produced (a running job is cancelled first)."""
    state.client().jobs.delete(job_id)
    if as_json:
        state.print_json({"id": job_id, "deleted": True})
    else:
        state.out.print(f"deleted job {job_id}")
    return EXIT_OK


@jobs.command("watch")
@click.argument("job_id")
@click.option("--cancel-on-interrupt", is_flag=True, help="On Ctrl-C, cancel the job.")
@json_option
@pass_state
def jobs_watch(state: State, job_id: str, cancel_on_interrupt: bool, as_json: bool) -> int:
    """Follow a job until it ends (--json: one event per line). Exits 1 if it failed."""
    client = state.client()
    try:
        if as_json:
            for event in client.jobs.watch(job_id):
                state.print_json(event.as_dict())
            final = client.jobs.get(job_id)
            return EXIT_OK if final.get("status") == "completed" else EXIT_JOB_FAILED
        final = watch_job(state, client.jobs.get(job_id))
    except KeyboardInterrupt:
        return interrupted(state, job_id, cancel_on_interrupt)
    return finish(state, final, as_json)


@jobs.command("logs")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
@json_option
@pass_state
def jobs_logs(state: State, job_id: str, follow: bool, as_json: bool) -> int:
    """A job's log: attempts, retries, failures, a container's output (--json: the log as
    one document; with -f, one JSON object per line as they come)."""
    client = state.client()
    if not follow:
        lines = client.jobs.logs(job_id, limit=5000)
        if as_json:
            state.print_json({"job_id": job_id, "logs": lines})
            return EXIT_OK
        for line in lines:
            state.out.print(_log_text(line), markup=False)
        return EXIT_OK
    try:
        for line in client.jobs.follow_logs(job_id):
            if as_json:
                state.print_json(line)
            else:
                state.out.print(_log_text(line), markup=False)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK


def _log_text(line: dict[str, Any]) -> str:
    return f"{line.get('ts')} {line.get('level'):<7} {line.get('message')}"


@jobs.command("outputs")
@click.argument("job_id")
@json_option
@pass_state
def jobs_outputs(state: State, job_id: str, as_json: bool) -> int:
    """The files a job produced."""
    files = state.client().jobs.outputs(job_id)
    if as_json:
        state.print_json(files)
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "SIZE", "TYPE", "SHA256"):
        table.add_column(column, no_wrap=True)
    for f in files:
        table.add_row(
            f.get("filename", ""),
            readable(f.get("size", 0)),
            f.get("content_type", ""),
            f.get("sha256", "")[:16],
        )
    state.out.print(table)
    return EXIT_OK


@jobs.command("download")
@click.argument("job_id")
@click.argument("names", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("."),
    help="A folder (or a file, for one output).",
)
@json_option
@pass_state
def jobs_download(
    state: State, job_id: str, names: tuple[str, ...], output: Path, as_json: bool
) -> int:
    """Save a job's output files (all, or those NAMES)."""
    client = state.client()
    files = [f for f in client.jobs.outputs(job_id) if not names or f["filename"] in names]
    if not files:
        raise click.ClickException(f"job {job_id} has no such output")
    saved = []
    for f in files:
        if as_json:
            path = client.jobs.download_output(job_id, f["filename"], output)
        else:
            with TransferDisplay(state.err, f"download {f['filename']}", f.get("size")) as bar:
                path = client.jobs.download_output(job_id, f["filename"], output, progress=bar)
            state.out.print(str(path))
        saved.append(str(path))
    if as_json:
        state.print_json({"job_id": job_id, "saved": saved})
    return EXIT_OK


# --- files ---------------------------------------------------------------------------


@cli.group()
def files() -> None:
    """Upload and download files (inputs of conversions, job outputs)."""


@files.command("upload")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_state
def files_upload(state: State, source: Path, as_json: bool) -> int:
    """Upload a video; prints its id."""
    client = state.client()
    if as_json:
        state.print_json(client.files.upload(source))
        return EXIT_OK
    with TransferDisplay(state.err, f"upload {source.name}", source.stat().st_size) as bar:
        info = client.files.upload(source, progress=bar)
    state.out.print(info["id"])
    return EXIT_OK


@files.command("get")
@click.argument("file_id")
@json_option
@pass_state
def files_get(state: State, file_id: str, as_json: bool) -> int:
    """A file's name, size, SHA-256 and media description."""
    info = state.client().files.get(file_id)
    if as_json:
        state.print_json(info)
    else:
        state.out.print(
            f"{info['id']} {info.get('filename')} {readable(info.get('size', 0))} "
            f"sha256={info.get('sha256')}"
        )
    return EXIT_OK


@files.command("download")
@click.argument("file_id")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("."))
@json_option
@pass_state
def files_download(state: State, file_id: str, output: Path, as_json: bool) -> int:
    """Save a file (to a folder, under its name, or to a file path)."""
    client = state.client()
    if as_json:
        state.print_json({"id": file_id, "saved": str(client.files.download(file_id, output))})
        return EXIT_OK
    with TransferDisplay(state.err, f"download {file_id[:8]}", None) as bar:
        path = client.files.download(file_id, output, progress=bar)
    state.out.print(str(path))
    return EXIT_OK


# --- workers and schedules -------------------------------------------------------------


@cli.command()
@click.option("--status", type=click.Choice(["active", "inactive"]))
@json_option
@pass_state
def workers(state: State, status: str | None, as_json: bool) -> int:
    """Workers, their heartbeat and load."""
    client = state.client()
    listed = client.workers.list(status=status, limit=100)
    overview = client.workers.status()
    if as_json:
        state.print_json({"workers": listed.items, "total": listed.total, "summary": overview})
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for column in ("WORKER", "KIND", "STATUS", "STATE", "LOAD", "DONE", "FAILED", "HEARTBEAT"):
        table.add_column(column, no_wrap=True)
    for w in listed.items:
        table.add_row(
            w.get("worker_id", ""),
            w.get("kind", ""),
            w.get("status", ""),
            w.get("state", ""),
            f"{w.get('current_load', 0)}/{w.get('max_capacity', 0)}",
            str(w.get("jobs_completed", 0)),
            str(w.get("jobs_failed", 0)),
            w.get("last_heartbeat", ""),
        )
    state.out.print(table)
    state.err.print(
        f"{overview.get('active', 0)} active, {overview.get('inactive', 0)} inactive; "
        f"load {overview.get('current_load', 0)}/{overview.get('max_capacity', 0)}"
    )
    return EXIT_OK


@cli.group()
def schedules() -> None:
    """Recurring jobs: list, get, create, delete, enable, disable."""


def _schedule_line(s: dict[str, Any]) -> str:
    timing = f"every {s['interval_minutes']} min" if s.get("interval_minutes") else s.get("cron")
    state = "enabled" if s.get("enabled") else "disabled"
    return f"{s['id']} {s.get('name')!r} {s.get('kind')} {timing} {state}"


@schedules.command("list")
@click.option("--kind")
@click.option("--enabled/--disabled", default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
@pass_state
def schedules_list(
    state: State, kind: str | None, enabled: bool | None, limit: int, offset: int, as_json: bool
) -> int:
    """Your schedules (an admin's: everyone's)."""
    page = state.client().schedules.list(kind=kind, enabled=enabled, limit=limit, offset=offset)
    if as_json:
        state.print_json(
            {
                "schedules": page.items,
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
            }
        )
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "NAME", "KIND", "EVERY", "ENABLED", "NEXT RUN", "RUNS", "FAILED"):
        table.add_column(column, no_wrap=column != "NAME")
    for s in page.items:
        every = f"{s['interval_minutes']} min" if s.get("interval_minutes") else s.get("cron")
        table.add_row(
            s["id"],
            s.get("name", ""),
            s.get("kind", ""),
            str(every),
            "yes" if s.get("enabled") else "no",
            s.get("next_run_at") or "-",
            str(s.get("total_runs", 0)),
            str(s.get("failed_runs", 0)),
        )
    state.out.print(table)
    return EXIT_OK


@schedules.command("get")
@click.argument("schedule_id")
@json_option
@pass_state
def schedules_get(state: State, schedule_id: str, as_json: bool) -> int:
    """One schedule with its next run and counters."""
    s = state.client().schedules.get(schedule_id)
    if as_json:
        state.print_json(s)
    else:
        state.out.print(_schedule_line(s))
        state.out.print(
            f"next run {s.get('next_run_at') or '-'}, last run {s.get('last_run_at') or '-'}, "
            f"runs {s.get('total_runs', 0)} ({s.get('successful_runs', 0)} completed, "
            f"{s.get('failed_runs', 0)} failed)"
        )
        state.out.print(f"params {json.dumps(s.get('params'), default=str)}")
    return EXIT_OK


def _param_value(text: str) -> Any:
    """A --param value: JSON when it parses (numbers, lists, true), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@schedules.command("create")
@click.argument("name")
@click.option("--kind", required=True, help="cache, scrape, container, task.")
@click.option("--every", "interval_minutes", type=click.IntRange(5), help="Minutes (>= 5).")
@click.option("--cron", help="Five fields, UTC.")
@click.option("--param", "params", multiple=True, help="KEY=VALUE of the kind (JSON values).")
@click.option("--params", "params_json", help="The kind's parameters as a JSON object.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@click.option("--priority", type=click.IntRange(0, 9))
@click.option("--max-attempts", type=click.IntRange(1, 20))
@json_option
@pass_state
def schedules_create(
    state: State,
    name: str,
    kind: str,
    interval_minutes: int | None,
    cron: str | None,
    params: tuple[str, ...],
    params_json: str | None,
    disabled: bool,
    priority: int | None,
    max_attempts: int | None,
    as_json: bool,
) -> int:
    """Create a schedule: jobgate schedules create nightly --kind cache --every 1440
    --param 'directories=["00_Media"]'."""
    if (interval_minutes is None) == (cron is None):
        raise click.UsageError("give exactly one of --every and --cron")
    kind_params = _json_object(params_json, "--params") if params_json else {}
    kind_params.update({k: _param_value(v) for k, v in _pairs(params, "KEY=VALUE").items()})
    if kind_params.get("name", name) != name:
        raise click.BadParameter("a task schedule's NAME is its tasks' name", param_hint="name")
    s = state.client().schedules.create(
        name,
        kind,
        interval_minutes=interval_minutes,
        cron=cron,
        enabled=not disabled,
        priority=priority,
        max_attempts=max_attempts,
        params=kind_params,
    )
    if as_json:
        state.print_json(s)
    else:
        state.out.print(_schedule_line(s))
    return EXIT_OK


def _schedule_change(name: str, help_text: str, change: Callable[[Client, str], Any]) -> None:
    @schedules.command(name, help=help_text)
    @click.argument("schedule_id")
    @json_option
    @pass_state
    def command(state: State, schedule_id: str, as_json: bool) -> int:
        result = change(state.client(), schedule_id)
        if as_json:
            state.print_json(result if result is not None else {"id": schedule_id})
        elif result is None:
            state.out.print(f"deleted schedule {schedule_id}")
        else:
            state.out.print(_schedule_line(result))
        return EXIT_OK


_schedule_change("enable", "Enable a schedule.", lambda c, i: c.schedules.enable(i))
_schedule_change("disable", "Disable a schedule.", lambda c, i: c.schedules.disable(i))
_schedule_change(
    "delete", "Delete a schedule (its jobs are kept).", lambda c, i: c.schedules.delete(i)
)


# --- entry point ---------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(exc: JobgateError) -> str:
    """An API error on one line: status, code, message, details, request id."""
    status = f"{exc.status} " if exc.status else ""
    line = f"jobgate: {status}{exc.code}: {exc.message}"
    if exc.details:
        details = json.dumps(exc.details, default=str, separators=(",", ":"))
        line += f" {details[:300]}"
    if exc.request_id:
        line += f" (request {exc.request_id})"
    return _one_line(line)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; exits with the documented codes."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        result = cli.main(args=argv, prog_name="jobgate", standalone_mode=False)
        code = result if isinstance(result, int) else EXIT_OK
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code if isinstance(exc, click.UsageError) else EXIT_USAGE
    except (click.Abort, KeyboardInterrupt):
        err.print("jobgate: interrupted")
        code = EXIT_INTERRUPTED
    except ConnectionFailed as exc:
        err.print(f"jobgate: {_one_line(str(exc))}", markup=False)
        code = EXIT_CONNECTION
    except JobgateError as exc:
        err.print(error_line(exc), markup=False)
        code = EXIT_API_ERROR
    except (ConfigError, StreamUnavailable) as exc:
        err.print(f"jobgate: {_one_line(str(exc))}", markup=False)
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_CONNECTION
    sys.exit(code)
