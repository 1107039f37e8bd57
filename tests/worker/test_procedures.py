"""SPEC §2: what a procedure is, how it reports, how its errors travel."""

from __future__ import annotations

import threading

import pytest

from pirate_actors import (
    Client, ProcedureActor, ProtocolError, RemoteError, RemoteTraceback, UnknownProcedure, Worker,
)
from pirate_actors._procedures import procedures_of
from tests.conftest import Testing

pytestmark = pytest.mark.timeout(20)


class Base(ProcedureActor):
    def inherited(self) -> str:
        return "inherited"

    def _private(self) -> None:
        pass

    def on_start(self) -> None:
        self.started = True


class Child(Base):
    def own(self) -> str:
        return "own"

    def report(self, message: object) -> None:  # overriding a reserved name keeps it reserved
        super().report(message)


def test_every_public_method_the_subclass_defines_is_a_procedure() -> None:
    assert procedures_of(Child) == {"inherited", "own"}


def test_names_of_procedure_actor_and_pykka_are_never_procedures(client: Client, start_worker) -> None:
    start_worker(Child)
    client.wait_for_worker()
    for name in ("on_start", "stop", "report", "on_receive", "actor_ref", "_private"):
        with pytest.raises(UnknownProcedure, match=name):
            client.call(name)
    assert client.workers()[0].procedures == ("inherited", "own")


def test_a_call_returns_the_procedures_result(client: Client, start_worker) -> None:
    start_worker()
    client.wait_for_worker()
    assert client.call("ping") == "pong"
    assert client.call("echo", 1, "two", three=[3]) == ((1, "two"), {"three": [3]})


def test_partials_arrive_started_first_then_each_report_in_order_then_the_reply(
    client: Client, start_worker
) -> None:
    start_worker()
    client.wait_for_worker()
    seen: list[object] = []
    future = client.submit("progress", 200)
    future.add_partial_callback(lambda fut, msg: seen.append(msg))
    assert future.result(timeout=10) == 200
    assert future.partials == ["started", *range(200)]
    assert seen == future.partials


def test_started_is_a_partial_even_when_the_procedure_returns_at_once(client: Client, start_worker) -> None:
    start_worker()
    client.wait_for_worker()
    futures = [client.submit("ping") for _ in range(50)]
    for future in futures:
        assert future.result(timeout=10) == "pong"
        assert future.partials == ["started"]


def test_started_reaches_the_caller_while_a_long_procedure_still_runs(gate) -> None:
    # A procedure's Started does not wake the socket thread (a quick call's reply carries it),
    # yet it goes out within milliseconds while the call runs on. Heartbeats of 30 s on both
    # sides make sure no heartbeat is what carries it.
    with Client("tcp://127.0.0.1:*", heartbeat=30.0, timeout=10.0) as client:
        with Worker(Testing, client.endpoint, heartbeat=30.0):
            client.wait_for_worker(timeout=10)
            assert client.call("ping") == "pong"  # registration traffic is over
            name, held = gate()
            started = threading.Event()
            future = client.submit("hold", name, "done")
            future.add_partial_callback(lambda fut, msg: msg == "started" and started.set())
            held.wait_entered()
            assert started.wait(timeout=5), '"started" waited for something other than itself'
            assert not future.done()
            held.opened.set()
            assert future.result(timeout=10) == "done"
            assert future.partials == ["started"]


def test_report_outside_a_call_raises() -> None:
    ref = Testing.start()
    try:
        with pytest.raises(RuntimeError, match="inside a procedure"):
            ref.proxy().report("nope").get(timeout=5)
    finally:
        ref.stop()


def test_an_exception_that_can_be_rebuilt_is_raised_as_its_own_type_with_the_remote_traceback(
    client: Client, start_worker
) -> None:
    start_worker()
    client.wait_for_worker()
    with pytest.raises(ValueError, match="bad input") as info:
        client.call("fail", "bad input")
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in fail" in str(cause) and "ValueError: bad input" in str(cause)


class Unrebuildable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickles, but will not unpickle
        super().__init__(f"{a}/{b}")


class Raiser(ProcedureActor):
    def odd(self) -> None:
        raise Unrebuildable(1, 2)


def test_an_exception_that_will_not_unpickle_is_rebuilt_without_its_init(client: Client, start_worker) -> None:
    start_worker(Raiser)
    client.wait_for_worker()
    with pytest.raises(Unrebuildable) as info:
        client.call("odd")
    assert info.value.args == ("1/2",)
    assert "Unrebuildable" in str(info.value.__cause__)


def test_an_unknown_procedure_raises_unknown_procedure_naming_it(client: Client, start_worker) -> None:
    start_worker()
    client.wait_for_worker()
    with pytest.raises(UnknownProcedure, match="invalid_request"):
        client.call("invalid_request")


def test_a_result_too_large_to_send_becomes_a_protocol_error(client: Client, start_worker) -> None:
    start_worker(max_message_size=64 * 1024)
    client.wait_for_worker()
    with pytest.raises(ProtocolError, match="exceeds max_message_size"):
        client.call("big", 100_000)
    assert client.call("big", 10) == b"x" * 10


def test_a_call_too_large_fails_at_once_with_protocol_error() -> None:
    with Client("tcp://127.0.0.1:*", max_message_size=4096) as client:
        future = client.submit("echo", b"x" * 10_000)
        assert future.done()
        with pytest.raises(ProtocolError, match="exceeds max_message_size"):
            future.result()


def test_arguments_that_cannot_be_pickled_fail_the_call_at_once(client: Client) -> None:
    import threading

    future = client.submit("echo", threading.Lock())
    with pytest.raises(ProtocolError, match="cannot pickle"):
        future.result(timeout=1)


def test_a_partial_too_large_to_send_raises_protocol_error_in_the_procedure_and_the_worker_serves_on(
    client: Client, start_worker
) -> None:
    start_worker(max_message_size=64 * 1024)
    client.wait_for_worker()
    with pytest.raises(ProtocolError, match="partial message"):
        client.call("big_report", 100_000)
    assert client.call("big_report", 1000) == "reported"


def test_batched_partials_are_split_to_fit_a_client_that_accepts_less_than_the_worker() -> None:
    # A worker batches the partials it collects; with a client whose max_message_size is
    # smaller than the worker's, each batch must fit the client's, or its socket cuts the
    # worker off and every call on it is lost.
    with Client("tcp://127.0.0.1:*", heartbeat=0.2, max_message_size=64 * 1024) as client:
        with Worker(Testing, client.endpoint, heartbeat=0.2):
            client.wait_for_worker(timeout=10)
            future = client.submit("blobs", 200, 8000)
            assert future.result(timeout=20) == 200
            assert client.workers(), "the worker was cut off"
        assert len(future.partials) == 201 and future.partials[1] == b"b" * 8000


def test_an_exception_too_large_to_send_arrives_cut_down_as_remote_error(client: Client, start_worker) -> None:
    start_worker(max_message_size=64 * 1024)
    client.wait_for_worker()
    with pytest.raises(RemoteError) as info:
        client.call("big_error", 100_000)
    assert info.value.type_name == "ValueError" and info.value.message == "y" * len(info.value.message)
    assert len(info.value.message) < 64 * 1024
    assert client.call("ping") == "pong"
