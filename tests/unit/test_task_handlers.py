"""Task handlers by name (`jobgate.task_handlers`): the registry and its entry points, how a
task's handler is resolved, the built-ins (the `http` one against a real local server), what
one call in a handler process answers, and the handler processes' end with their worker."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest

from jobgate import task_handlers
from jobgate.task_handlers import (
    GROUP,
    Called,
    PermanentFailure,
    Registry,
    TaskInfo,
    UnknownHandler,
    call,
    host_allowed,
    request_url,
    resolve_name,
)
from tests.helpers import process_alive, serve_in_thread

BUILTINS = ["echo", "http", "sleep"]
EXAMPLES = ["example.add", "example.crash", "example.fail"]


def info(**settings) -> TaskInfo:
    return TaskInfo(
        job_id="00000000-0000-4000-8000-000000000001",
        name="test",
        handler="test",
        settings={"task_max_result_bytes": 1024 * 1024, **settings},
    )


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


# Handlers of this module, registered through entry points by the tests below.
def returns_set(payload, task):
    return {1, 2}


def returns(payload, task):
    return payload["value"]


def returns_nan(payload, task):
    return float("nan")


def exits(payload, task):
    sys.exit(2)


@pytest.fixture
def this_module_registry(monkeypatch) -> Registry:
    """The process's registry with this module's handlers added as entry points."""
    here = __name__
    reg = Registry(
        [
            *task_handlers.registry()._entry_points.values(),
            ep("t.set", f"{here}:returns_set"),
            ep("t.returns", f"{here}:returns"),
            ep("t.nan", f"{here}:returns_nan"),
            ep("t.exit", f"{here}:exits"),
            ep("t.broken", "no_such_module_anywhere:handler"),
        ]
    )
    monkeypatch.setattr(task_handlers, "_registry", reg)
    return reg


# --- the registry --------------------------------------------------------------------------


def test_names_are_the_builtins_and_the_installed_entry_points_sorted():
    names = task_handlers.names()
    assert names == sorted(names)
    assert set(BUILTINS + EXAMPLES) <= set(names)


def test_an_entry_point_never_shadows_a_builtin(caplog):
    reg = Registry(
        [
            ep("echo", "jobgate_example_tasks:fail"),
            ep("mine.one", "jobgate_example_tasks:add"),
            ep("mine.one", "jobgate_example_tasks:fail"),  # a second package's, same name
            ep("not a name!", "jobgate_example_tasks:add"),
        ]
    )
    assert reg.names() == sorted([*BUILTINS, "mine.one"])
    assert reg.get("echo") is task_handlers.echo
    assert reg.get("mine.one")({"numbers": [1, 2]}, info()) == 3  # the first one registered
    assert "shadow a built-in" in caplog.text
    assert "registered it first" in caplog.text
    assert "not a handler name" in caplog.text


def test_get_of_an_unknown_name_lists_the_available_ones():
    reg = Registry([ep("mine.one", "jobgate_example_tasks:add")])
    with pytest.raises(UnknownHandler) as caught:
        reg.get("nope")
    assert caught.value.name == "nope"
    assert caught.value.available == sorted([*BUILTINS, "mine.one"])
    assert isinstance(caught.value, LookupError)


def test_resolve_name_explicit_then_by_name_then_default():
    assert resolve_name(handler="sleep", name="example.add", default="echo") == "sleep"
    assert resolve_name(handler=None, name="example.add", default="echo") == "example.add"
    assert resolve_name(handler=None, name="Process Data", default="echo") == "echo"
    assert resolve_name(handler="", name="Process Data", default="http") == "http"
    with pytest.raises(UnknownHandler) as caught:
        resolve_name(handler="nope", name="echo", default="echo")
    assert caught.value.name == "nope"
    assert set(BUILTINS + EXAMPLES) <= set(caught.value.available)


def test_the_example_package_handlers():
    reg = task_handlers.registry()
    assert reg.get("example.add")({"numbers": [1, 2, 3.5]}, info()) == 6.5
    with pytest.raises(ValueError):
        reg.get("example.add")({"numbers": ["1"]}, info())
    with pytest.raises(RuntimeError, match="boom"):
        reg.get("example.fail")({"message": "boom"}, info())


# --- built-ins -------------------------------------------------------------------------------


def test_echo_and_sleep():
    assert task_handlers.echo({"a": [1, {"b": None}]}, info()) == {"a": [1, {"b": None}]}
    assert task_handlers.sleep({"seconds": 0.05}, info())["slept"] >= 0.05
    assert task_handlers.sleep({"seconds": 0}, info())["slept"] < 1
    for bad in ("1", True, -1, 86401, None, float("nan")):
        with pytest.raises(PermanentFailure):
            task_handlers.sleep({"seconds": bad}, info())


@pytest.mark.parametrize(
    ("url", "allowed", "expected"),
    [
        ("http://api.example.com/x", ["api.example.com"], True),
        ("https://API.Example.com./x", ["api.example.com"], True),
        ("http://api.example.com:8080/x", ["api.example.com"], True),
        ("http://api.example.com:8080/x", ["api.example.com:8080"], True),
        ("http://api.example.com/x", ["api.example.com:8080"], False),
        ("https://api.example.com/x", ["api.example.com:443"], True),
        ("http://evil.com/x", ["api.example.com"], False),
        ("http://api.example.com.evil.com/x", ["api.example.com"], False),
        ("http://api.example.com@evil.com/x", ["api.example.com"], False),
        ("http://evil.com@api.example.com/x", ["api.example.com"], False),  # urllib: all of it
        ("http://user:pw@api.example.com/x", ["api.example.com"], False),
        ("http://[::1]:9000/x", ["::1"], True),
        ("http://[::1]:9000/x", ["[::1]:9000"], True),
        ("ftp://api.example.com/x", ["api.example.com"], False),
        ("file:///etc/passwd", ["localhost", ""], False),
        ("http://127.0.0.1/x", [], False),
        ("http://127.0.0.1:99999/x", ["127.0.0.1"], False),
    ],
)
def test_host_allowed(url, allowed, expected):
    assert host_allowed(url, allowed) is expected


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, str | None]] = []  # (path, Host) of every request served

    def log_message(self, *args):
        pass

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if parsed:
            _Handler.requests.append((self.path, self.headers.get("Host")))
        return parsed

    def _answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/redirect":
            self._answer(302, b"", Location="http://evil.invalid/")
        elif self.path == "/big":
            self._answer(200, b"x" * (task_handlers.HTTP_BODY_MAX_CHARS + 10))
        elif self.path == "/missing":
            self._answer(404, b"no such thing", Content_Type="text/plain")
        else:
            self._answer(200, b"hello\x00world", Content_Type="text/plain; charset=utf-8")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        echo = {"body": body.decode(), "type": self.headers["Content-Type"]}
        echo["x"] = self.headers.get("X-Test")
        self._answer(201, json.dumps(echo).encode(), Content_Type="application/json")


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.requests.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = serve_in_thread(httpd)
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(5)


def test_http_calls_an_allowed_host(server):
    task = info(task_http_allowed_hosts=("127.0.0.1",), task_http_timeout_s=5)
    result = task_handlers.http({"url": f"http://{server}/"}, task)
    assert result["status_code"] == 200
    assert result["body"] == "hello\ufffdworld"  # no NUL: jsonb refuses it
    assert result["headers"]["Content-Type"] == "text/plain; charset=utf-8"
    assert result["truncated"] is False

    posted = task_handlers.http(
        {
            "method": "post",
            "url": f"http://{server}/echo",
            "json": {"a": 1},
            "headers": {"X-Test": "yes"},
        },
        task,
    )
    assert posted["status_code"] == 201
    assert json.loads(posted["body"]) == {
        "body": '{"a": 1}',
        "type": "application/json",
        "x": "yes",
    }

    redirect = task_handlers.http({"url": f"http://{server}/redirect"}, task)
    assert redirect["status_code"] == 302  # answered, not followed off the allowed hosts
    assert redirect["headers"]["Location"] == "http://evil.invalid/"

    big = task_handlers.http({"url": f"http://{server}/big"}, task)
    assert big["truncated"] is True and len(big["body"]) == task_handlers.HTTP_BODY_MAX_CHARS

    missing = task_handlers.http({"url": f"http://{server}/missing"}, task)
    assert (missing["status_code"], missing["body"]) == (404, "no such thing")
    with pytest.raises(RuntimeError, match="HTTP 404"):
        task_handlers.http({"url": f"http://{server}/missing", "raise_for_status": True}, task)


def test_http_refuses_what_is_not_allowed(server):
    task = info(task_http_allowed_hosts=("api.example.com",))
    with pytest.raises(PermanentFailure, match=r"'127\.0\.0\.1' is not in TASK_HTTP_ALLOWED_HOSTS"):
        task_handlers.http({"url": f"http://{server}/"}, task)
    with pytest.raises(PermanentFailure, match="not in TASK_HTTP_ALLOWED_HOSTS"):
        task_handlers.http({"url": f"http://{server}/"}, info())  # nothing allowed by default
    allowed = info(task_http_allowed_hosts=("127.0.0.1",))
    for payload, message in [
        ({}, "payload.url is required"),
        ({"url": f"http://{server}/", "method": "TRACE"}, "payload.method"),
        ({"url": f"http://{server}/", "headers": {"a": 1}}, "payload.headers"),
        ({"url": f"http://{server}/", "body": {"a": 1}}, "payload.body"),
    ]:
        with pytest.raises(PermanentFailure, match=message):
            task_handlers.http(payload, allowed)


def test_request_url_is_rebuilt_from_the_judged_parts():
    allowed = ["api.example.com", "[::1]:9000"]
    assert request_url("HTTPS://API.Example.com/a/b?c=1&d#frag", allowed) == (
        "https://api.example.com/a/b?c=1&d"
    )
    assert request_url("http://api.example.com:8080", allowed) == "http://api.example.com:8080/"
    assert request_url("http://[::1]:9000/x", allowed) == "http://[::1]:9000/x"
    for url, message in [
        ("http://evil.com@api.example.com/", "must not hold credentials"),
        ("http://user:pw@api.example.com/", "must not hold credentials"),
        ("http://evil.com\t@api.example.com/", "must not hold credentials"),
        ("http://api.example.com%2eevil.com/", "not in TASK_HTTP_ALLOWED_HOSTS"),
    ]:
        with pytest.raises(PermanentFailure, match=message):
            request_url(url, allowed)
    # A host that urllib would unquote into another one is refused even when allowed.
    with pytest.raises(PermanentFailure, match="not a plain host name"):
        request_url("http://a%2eb/", ["a%2eb"])


def test_http_connects_only_to_the_judged_host(server):
    """Userinfo, a Host header, a header urllib cannot send: each fails the task at once
    (no retries) and nothing reaches the server; a plain request carries the URL's host."""
    task = info(task_http_allowed_hosts=("127.0.0.1",), task_http_timeout_s=5)
    for payload, message in [
        ({"url": f"http://evil.invalid@{server}/"}, "must not hold credentials"),
        ({"url": f"http://user:pw@{server}/"}, "must not hold credentials"),
        ({"url": f"http://{server}/", "headers": {"Host": "admin.internal"}}, "must not set Host"),
        ({"url": f"http://{server}/", "headers": {"host ": "admin.internal"}}, "must not set Host"),
        ({"url": f"http://{server}/", "headers": {"X-A": "1\r\nX-B: 2"}}, "cannot be sent"),
    ]:
        with pytest.raises(PermanentFailure, match=message):
            task_handlers.http(payload, task)
        assert call("http", payload, task).outcome == "permanent"
    assert _Handler.requests == []

    assert task_handlers.http({"url": f"http://{server}/seen"}, task)["status_code"] == 200
    assert _Handler.requests == [("/seen", server)]


# --- one call, as a handler process makes it --------------------------------------------------


def test_call_answers_the_result_as_json_text():
    assert call("echo", {"a": "é"}, info()) == Called("ok", '{"a":"é"}')


@pytest.mark.usefixtures("this_module_registry")
@pytest.mark.parametrize("value", [[1, "two"], 3, "text", None, True])
def test_call_takes_any_json_value(value):
    called = call("t.returns", {"value": value}, info())
    assert called.outcome == "ok" and json.loads(called.value) == value


@pytest.mark.usefixtures("this_module_registry")
def test_call_refuses_results_that_are_not_storable_json():
    assert call("t.set", {}, info()).outcome == "invalid"
    assert call("t.nan", {}, info()).outcome == "invalid"
    assert call("t.returns", {"value": "a\x00b"}, info()).outcome == "invalid"
    assert call("t.returns", {"value": "a\ud800"}, info()).outcome == "invalid"
    assert call("t.returns", {"value": "a\\u0000"}, info()).outcome == "ok"  # a backslash, a u...
    big = call("t.returns", {"value": "x" * 100}, info(task_max_result_bytes=50))
    assert big.outcome == "invalid" and "TASK_MAX_RESULT_BYTES is 50" in big.value


@pytest.mark.usefixtures("this_module_registry")
def test_call_reports_exceptions_with_their_traceback():
    failed = call("example.fail", {"message": "boom"}, info())
    assert failed.outcome == "error"
    assert failed.value == "RuntimeError: boom"
    assert failed.detail.startswith("Traceback") and 'raise RuntimeError(payload.get("message"' in (
        failed.detail
    )
    assert len(failed.detail.splitlines()) <= task_handlers.TRACEBACK_LINES
    exited = call("t.exit", {}, info())  # sys.exit() fails its task, not the process
    assert (exited.outcome, exited.value) == ("error", "SystemExit: 2")
    assert call("sleep", {"seconds": "x"}, info()) == Called(
        "permanent", "payload.seconds must be a number"
    )
    broken = call("t.broken", {}, info())
    assert broken.outcome == "permanent"
    assert broken.value.startswith("cannot load handler 't.broken': ModuleNotFoundError")
    unknown = call("nope", {}, info())
    assert unknown.outcome == "unknown" and "echo" in unknown.detail.split(", ")


# --- handler processes end with their worker --------------------------------------------------

WORKER = """
import time
from jobgate import task_handlers
from jobgate.task_handlers import TaskInfo
from jobgate_worker.kinds.task import POOL

if __name__ == "__main__":
    pool = POOL.get(2)
    info = TaskInfo(job_id="j", name="t", handler="sleep")
    future = pool.schedule(task_handlers.call, args=("sleep", {"seconds": 60}, info), timeout=90)
    while not future.running():
        time.sleep(0.05)
    print(*pool._pool_manager.worker_manager.workers, flush=True)
    time.sleep(60)
"""


def test_handler_processes_end_with_a_killed_worker(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        children = [int(pid) for pid in worker.stdout.readline().split()]
        assert len(children) == 2 and all(process_alive(pid) for pid in children)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        deadline = time.monotonic() + 10
        while any(process_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(process_alive(pid) for pid in children), "a handler outlived its worker"
    finally:
        if worker.poll() is None:
            worker.kill()
        for pid in children:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_broken_handler_pool_is_replaced():
    """pebble gives up a whole pool when an idle child dies (killed from outside, the OOM
    killer): the next task gets a fresh pool instead of an error."""
    from jobgate_worker.kinds.task import HandlerPool

    pools = HandlerPool()
    try:
        pool = pools.get(1)
        task = info()
        assert pool.schedule(call, args=("echo", {"a": 1}, task)).result(30) == Called(
            "ok", '{"a":1}'
        )
        for pid in list(pool._pool_manager.worker_manager.workers):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pool.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pool.active
        fresh = pools.get(1)
        assert fresh is not pool
        assert fresh.schedule(call, args=("echo", {"b": 2}, task)).result(30).outcome == "ok"
    finally:
        pools.shutdown()
