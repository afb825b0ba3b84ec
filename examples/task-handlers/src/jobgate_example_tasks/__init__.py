"""Example task handlers for Jobgate (the `jobgate.tasks` entry points in pyproject.toml).

A handler is a plain function `handler(payload, task)`: `payload` is the task's JSON object,
`task` a `jobgate.task_handlers.TaskInfo` (job id, name, attempt, timeout...). What it returns
(any JSON value) becomes the task's `result`; an exception fails the attempt (retried per the
task's `retry_count`). Handlers run in child processes of the task worker, so they may block,
crash or be killed at their timeout without harming the worker.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any


def add(payload: dict[str, Any], task: Any) -> int | float:
    """Sum `payload["numbers"]`: the task's result is the bare number (any JSON will do)."""
    numbers = payload.get("numbers", [])
    if not isinstance(numbers, list) or not all(
        isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
    ):
        raise ValueError("payload.numbers must be a list of numbers")
    return sum(numbers)


def fail(payload: dict[str, Any], task: Any) -> None:
    """Always raise (with `payload["message"]`): shows how an exception ends a task."""
    raise RuntimeError(payload.get("message", "this handler always fails"))


def crash(payload: dict[str, Any], task: Any) -> None:
    """Kill the handler's own process: `payload["how"]` is `exit` (os._exit with
    `payload["code"]`, default 3) or `segfault`. The task fails; the worker carries on."""
    if payload.get("how") == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    os._exit(int(payload.get("code", 3)))


def clock(payload: dict[str, Any], task: Any) -> float:
    """The wall clock when the handler's code started: bench/task_bench.py measures the time
    from a task's submission to its start with it."""
    return time.time()
