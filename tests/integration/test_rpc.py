"""Request/reply over the run's RabbitMQ vhost: answers, errors that keep their status and
code, and a 503 when nobody answers in time (jobgate.rpc)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from jobgate.errors import NotFound, ServiceUnavailable
from jobgate.rpc import RemoteError, RpcClient, RpcServer


class ContainerMissing(NotFound):
    code = "CONTAINER_NOT_FOUND"


def _handlers() -> dict:
    def echo(params: dict) -> dict:
        return {"echo": params}

    def missing(params: dict) -> None:
        raise ContainerMissing(f"Container with ID '{params['id']}' not found", details=params)

    def broken(_params: dict) -> None:
        raise RuntimeError("a bug")

    def slow(params: dict) -> str:
        time.sleep(params["seconds"])
        return "late"

    return {"echo": echo, "missing": missing, "broken": broken, "slow": slow}


@pytest.fixture
def queue() -> str:
    return f"jobgate.rpc.test.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server(amqp_url, queue):
    srv = RpcServer(amqp_url, queue, _handlers())
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    client = RpcClient(amqp_url, queue, timeout_s=5)
    deadline = time.monotonic() + 10
    while True:  # the server has declared its queue and consumes
        try:
            client.call("echo", timeout_s=1)
            break
        except ServiceUnavailable:
            assert time.monotonic() < deadline, "the RPC server did not start"
    yield srv
    client.close()
    srv.stop()
    thread.join(5)


def test_a_call_gets_its_answer(amqp_url, queue, server) -> None:
    client = RpcClient(amqp_url, queue, timeout_s=5)
    assert client.call("echo", {"a": 1}) == {"echo": {"a": 1}}
    assert client.call("echo", {"b": [2]}) == {"echo": {"b": [2]}}


def test_an_error_keeps_its_status_code_and_details(amqp_url, queue, server) -> None:
    client = RpcClient(amqp_url, queue, timeout_s=5)
    with pytest.raises(RemoteError) as caught:
        client.call("missing", {"id": "c1"})
    err = caught.value
    assert (err.status, err.code) == (404, "CONTAINER_NOT_FOUND")
    assert err.message == "Container with ID 'c1' not found" and err.details == {"id": "c1"}
    with pytest.raises(RemoteError) as caught:
        client.call("broken")
    assert (caught.value.status, caught.value.code) == (500, "INTERNAL_ERROR")
    with pytest.raises(RemoteError) as caught:
        client.call("nope")
    assert caught.value.status == 400
    assert client.call("echo", {"still": "serving"}) == {"echo": {"still": "serving"}}


def test_no_answer_in_time_is_a_503_and_the_late_answer_is_not_taken_for_the_next(
    amqp_url, queue, server
) -> None:
    client = RpcClient(amqp_url, queue, timeout_s=5)
    with pytest.raises(ServiceUnavailable):
        client.call("slow", {"seconds": 1.0}, timeout_s=0.3)
    assert client.call("echo", {"n": 1}, timeout_s=5) == {"echo": {"n": 1}}


def test_without_a_server_a_call_is_a_503(amqp_url) -> None:
    client = RpcClient(amqp_url, f"jobgate.rpc.nobody.{uuid.uuid4().hex[:8]}", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        client.call("echo")
    assert time.monotonic() - started < 3


def test_an_unreachable_broker_is_a_503() -> None:
    client = RpcClient("amqp://guest:guest@127.0.0.1:1/%2F", "jobgate.rpc.x", timeout_s=1)
    with pytest.raises(ServiceUnavailable):
        client.call("echo")


def test_a_connection_the_broker_closed_while_idle_is_replaced_not_a_503(amqp_url, queue, server):
    """A blocking connection answers heartbeats only while in use: the broker closes one left
    idle past its heartbeat timeout. The next call opens a new connection and is answered."""
    client = RpcClient(amqp_url, queue, timeout_s=5, heartbeat=1)
    try:
        assert client.call("echo", {"n": 1}) == {"echo": {"n": 1}}
        first = client._local.state.connection
        time.sleep(5)  # idle: the client sends no heartbeats, the broker gives up on it
        assert client.call("echo", {"n": 2}) == {"echo": {"n": 2}}
        assert client._local.state.connection is not first
    finally:
        client.close()
