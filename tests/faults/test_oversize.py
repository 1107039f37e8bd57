"""SPEC §6: ``max_message_size`` caps every message. A peer that sends a message beyond it is cut
off by the socket (``zmq.MAXMSGSIZE``) while the process keeps serving; a call or a result too
large fails its own call with ProtocolError and nothing else."""

from __future__ import annotations

import struct

import pytest
import zmq

from pirate_actors import ProtocolError
from pirate_actors.protocol import SIGNATURE, Command, Heartbeat
from tests.helpers import FAST
from tests.helpers.fakes import FakeClient
from tests.helpers.raw import RawPeer
from tests.helpers.sync import wait_until

CAP = 64 * 1024
_COUNT = struct.Struct("!I")  # how many entries a call-carrying message holds
_ENTRY = struct.Struct("!QBI")  # an entry header: request id, flags, body length


def _head(command: Command, request_id: int, length: int) -> bytes:
    """Signature, command, count and entry header of a one-entry message; its body follows."""
    return SIGNATURE + bytes([command]) + _COUNT.pack(1) + _ENTRY.pack(request_id, 0, length)


def _oversized(command: Command, request_id: int, payload: bytes, size: int) -> list[bytes]:
    """A well-formed one-entry message (one frame) whose body is ``payload`` padded to ``size``
    bytes (pickle ignores what follows its STOP opcode, so the padded bomb is still a bomb)."""
    body = payload + b"\0" * (size - len(payload))
    return [_head(command, request_id, len(body)) + body]


@pytest.mark.timeout(40)
def test_a_worker_cuts_off_a_client_that_sends_a_message_beyond_max_message_size_never_unpickles_it_and_serves_that_client_again(
    bomb, make_worker
):
    # libzmq ends a connecting socket's session for good when a message exceeds MAXMSGSIZE;
    # the worker must notice the silence (the fake announces 0.5 s x 3) and connect afresh.
    fake = FakeClient(None, announce=Heartbeat(0.5, 3))
    worker = make_worker(fake.endpoint, max_message_size=CAP, **FAST)
    first = fake.register()
    wait_until(lambda: worker.stats()["registered"], 20, "the worker registered with the fake client")
    before = worker.stats()

    # A message of two frames, each under the cap, both together over it: refused and counted
    # (a message is one frame), connection kept.
    half = CAP // 2 + 1024
    body = bomb.call + b"\0" * (2 * half - len(bomb.call))
    fake.send_raw([_head(Command.REQUEST, 1, len(body)) + body[:half], body[half:]])
    assert fake.call(2, "ping") == "pong"
    assert worker.stats()["malformed"] == before["malformed"] + 1

    # One frame over the cap: the worker's socket drops the connection...
    fake.send_raw(_oversized(Command.REQUEST, 3, bomb.call, 4 * CAP))
    fake.peer.wait_event(zmq.EVENT_DISCONNECTED)
    bomb.assert_never_unpickled()
    assert worker.running
    # ... and the worker comes back, at the latest once it has judged the fake silent (1.5 s),
    # plus the 1.5 s in which a worker registers with a client that is there.
    again = fake.register(timeout=1.5 + 1.5 + 0.5)
    assert again.incarnation > first.incarnation  # a new registration: old calls abandoned
    assert fake.call(4, "echo", "x" * (CAP // 2)) == "x" * (CAP // 2)
    bomb.assert_never_unpickled()
    assert 3 not in fake.errors
    fake.close()


@pytest.mark.timeout(40)
def test_a_call_beyond_a_workers_smaller_max_message_size_fails_with_protocol_error_and_costs_nothing_else(
    make_client, make_worker
):
    # The client allows 64 MiB; the worker only CAP, and says so in its READY: the client
    # fails the call instead of sending what the worker's socket would cut off.
    client = make_client(**FAST)
    worker = make_worker(client.endpoint, max_message_size=CAP, **FAST)
    client.wait_for_worker(timeout=20)
    running = client.submit("sleep", 0.3)
    with pytest.raises(ProtocolError, match="max_message_size"):
        client.call("echo", b"x" * 2 * CAP, timeout=10)
    assert running.result(timeout=10) is True
    assert [info.id for info in client.workers()] == [worker.id]
    assert client.call("echo", "x" * (CAP // 2), timeout=10) == "x" * (CAP // 2)


def test_a_result_beyond_the_clients_smaller_max_message_size_fails_with_protocol_error(
    make_client, make_worker
):
    # The worker allows 64 MiB; the client only CAP, and says so in its heartbeats.
    client = make_client(max_message_size=CAP, **FAST)
    worker = make_worker(client.endpoint, **FAST)
    client.wait_for_worker(timeout=20)
    with pytest.raises(ProtocolError, match="max_message_size"):
        client.call("blob", 2 * CAP, timeout=10)
    assert [info.id for info in client.workers()] == [worker.id]
    assert client.call("ping", timeout=10) == "pong"


@pytest.mark.timeout(40)
def test_a_client_cuts_off_a_peer_that_sends_a_message_beyond_max_message_size_and_keeps_serving_its_workers(
    bomb, make_client, make_worker
):
    client = make_client(max_message_size=CAP, **FAST)
    worker = make_worker(client.endpoint, max_message_size=CAP, **FAST)
    client.wait_for_worker(timeout=20)
    running = client.submit("sleep", 0.5)  # in flight across the cut-off

    intruder = RawPeer.dealer(client.endpoint)
    try:
        intruder.wait_event(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        intruder.send(_oversized(Command.REPLY, 1, bomb.payload, 4 * CAP))
        intruder.wait_event(zmq.EVENT_DISCONNECTED)
    finally:
        intruder.close()

    assert running.result(timeout=10) is True
    assert client.call("echo", "x" * (CAP // 2), timeout=10) == "x" * (CAP // 2)
    assert [info.id for info in client.workers()] == [worker.id]
    bomb.assert_never_unpickled()


@pytest.mark.timeout(30)
def test_a_call_beyond_max_message_size_fails_at_once_with_protocol_error_and_the_client_keeps_serving(
    make_client, make_worker
):
    client = make_client(max_message_size=CAP, **FAST)
    make_worker(client.endpoint, max_message_size=CAP, **FAST)
    client.wait_for_worker(timeout=20)
    future = client.submit("echo", b"x" * 2 * CAP)
    assert future.done()
    with pytest.raises(ProtocolError):
        future.result(timeout=0)
    assert client.call("ping", timeout=10) == "pong"


@pytest.mark.timeout(30)
def test_a_result_beyond_max_message_size_becomes_a_protocol_error_for_its_caller_and_the_worker_keeps_serving(
    make_client, make_worker
):
    client = make_client(max_message_size=CAP, **FAST)
    worker = make_worker(client.endpoint, max_message_size=CAP, **FAST)
    client.wait_for_worker(timeout=20)
    with pytest.raises(ProtocolError):
        client.call("blob", 2 * CAP, timeout=10)
    assert client.call("blob", CAP // 2, timeout=10) == b"x" * (CAP // 2)
    assert [info.id for info in client.workers()] == [worker.id]
