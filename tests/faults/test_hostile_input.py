"""SPEC §6–§7: signed messages are checked before anything is unpickled; malformed, unsigned and
badly signed messages are counted, logged and dropped — never unpickled — and never stop the
loop. Every hostile message here carries a pickle that would create a file if it were ever
loaded (the ``bomb`` fixture); the file must never appear, and the worker and the client must
still serve real calls afterwards.

Hostile peers are raw pyzmq sockets: a ROUTER that plays a worker's client, DEALERs that play a
client's workers.
"""

from __future__ import annotations

import pickle
import random
import struct
from collections.abc import Iterator

import cloudpickle
import pytest

from pirate_actors import ProtocolError
from pirate_actors.protocol import (
    SIGNATURE,
    Calls,
    Command,
    Disconnect,
    Entry,
    Flag,
    FrameCodec,
    Heartbeat,
    Ready,
)
from tests.helpers import FAST
from tests.helpers.fakes import FakeClient, FakeWorker, request
from tests.helpers.sync import wait_until

KEY = b"fault-tests-key-0123456789abcdef"
OTHER_KEY = b"an-attacker-guess-0123456789abcd"
_ENTRY = struct.Struct("!QBI")  # an entry header: request id, flags, body length (docs/protocol.md)


def _cmd(command: Command) -> bytes:
    return bytes([command])


def _header(request_id: int, length: int) -> bytes:
    return _ENTRY.pack(request_id, 0, length)


def _garbage(seed: int, count: int) -> Iterator[list[bytes]]:
    """Random messages of 1–6 random frames (never starting with the signature frame)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield [rng.randbytes(rng.randint(0, 80)) for _ in range(rng.randint(1, 6))]


def _near_misses(seed: int, count: int, codec: FrameCodec) -> Iterator[list[bytes]]:
    """Random messages that start like real ones (signature, a command byte) but that ``codec``
    refuses: they get past the first checks and exercise the parsers behind them."""
    rng = random.Random(seed)
    made = 0
    while made < count:
        frames = [SIGNATURE, bytes([rng.randint(0, 9)])]
        frames += [rng.randbytes(rng.choice([0, 1, 12, 13, 26, 40])) for _ in range(rng.randint(0, 4))]
        try:
            codec.decode(frames)
        except ProtocolError:
            made += 1
            yield frames


# --------------------------------------------------------------------------- at a worker


@pytest.mark.timeout(40)
def test_a_worker_with_a_key_never_unpickles_unsigned_or_badly_signed_requests_counts_them_and_still_serves_real_calls(
    bomb, make_worker, make_client
):
    fake = FakeClient(KEY)
    worker = make_worker(fake.endpoint, key=KEY, **FAST)
    fake.register()
    wait_until(lambda: worker.stats()["registered"], 20, "the worker registered with the fake client")
    before = worker.stats()

    signed_bomb = request(FrameCodec(KEY), 4, bomb.call)  # would run if its MAC were accepted
    benign = request(FrameCodec(KEY), 5, cloudpickle.dumps(("ping", (), {})))
    tampered = [benign[0], benign[1], _header(5, len(bomb.call)), bomb.call, benign[-1]]
    unauthenticated = {
        "unsigned": request(FrameCodec(None), 1, bomb.call),
        "signed with another key": request(FrameCodec(OTHER_KEY), 2, bomb.call),
        "signed, then its body swapped": tampered,
        "a truncated MAC": [*signed_bomb[:-1], signed_bomb[-1][:16]],
        "an empty MAC": [*signed_bomb[:-1], b""],
        "no MAC frame": signed_bomb[:-1],
        "no frame after the command": [SIGNATURE, _cmd(Command.REQUEST)],
        "an unsigned DISCONNECT": FrameCodec(None).encode(Disconnect(True)),
        "a DISCONNECT signed with another key": FrameCodec(OTHER_KEY).encode(Disconnect(True)),
        "an unsigned HEARTBEAT": FrameCodec(None).encode(Heartbeat(0.001, 1)),
        "an unsigned CANCEL": FrameCodec(None).encode(Calls(Command.CANCEL, (Entry(1),))),
    }
    near_misses = list(_near_misses(7, 40, FrameCodec(KEY)))  # all fail their MAC
    malformed = {
        "a lone pickle": [bomb.payload],
        "an HTTP request": [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
        "an older protocol version": [b"PIRATE-ACTORS/0", *signed_bomb[1:]],
    }
    garbage = list(_garbage(1, 40))
    for frames in [*unauthenticated.values(), *near_misses, *malformed.values(), *garbage]:
        fake.send_raw(frames)

    # The loop read all of that (in order) if it answers a real call sent after it.
    assert fake.call(99, "ping") == "pong"
    after = worker.stats()
    bomb.assert_never_unpickled()
    assert after["unauthenticated"] - before["unauthenticated"] == len(unauthenticated) + len(near_misses)
    assert after["malformed"] - before["malformed"] == len(malformed) + len(garbage)
    assert after["registered"], "an unsigned DISCONNECT must not unregister the worker"
    assert (after["live_actors"], after["replacements"]) == (4, 0), "the pool is untouched"
    assert fake.errors == set(), "no request of a hostile message may get an answer"

    # And a real client at the same endpoint gets it too.
    fake.close()
    client = make_client(fake.endpoint, key=KEY)
    client.wait_for_worker(timeout=10)
    assert client.call("echo", "still here", timeout=10) == "still here"
    bomb.assert_never_unpickled()


@pytest.mark.timeout(40)
def test_a_worker_without_a_key_counts_and_drops_malformed_messages_without_unpickling_them_answers_readable_request_ids_with_errors_and_still_serves_real_calls(
    bomb, make_worker, make_client
):
    fake = FakeClient(None)
    worker = make_worker(fake.endpoint, **FAST)
    fake.register()
    wait_until(lambda: worker.stats()["registered"], 20, "the worker registered with the fake client")
    before = worker.stats()

    size = len(bomb.call)
    malformed = {
        "a lone pickle": [bomb.payload],
        "an older protocol version": [b"PIRATE-ACTORS/0", _cmd(Command.REQUEST), _header(10, size), bomb.call],
        "no command frame": [SIGNATURE],
        "an unknown command": [SIGNATURE, b"\x63", bomb.payload],
        "an empty command": [SIGNATURE, b"", bomb.payload],
        "a two-byte command": [SIGNATURE, b"\x02\x02", _header(11, size), bomb.call],
        "a REQUEST with an extra frame": [SIGNATURE, _cmd(Command.REQUEST), _header(101, size), bomb.call, b"x"],
        "a REQUEST whose lengths do not add up": [SIGNATURE, _cmd(Command.REQUEST), _header(102, size + 1), bomb.call],
        "a REQUEST without its body": [SIGNATURE, _cmd(Command.REQUEST), _header(103, size)],
        "a REQUEST with an unreadable header": [SIGNATURE, _cmd(Command.REQUEST), b"\x01\x02\x03", bomb.call],
        "a REQUEST with an empty header": [SIGNATURE, _cmd(Command.REQUEST), b"", bomb.call],
        "a REPLY (workers take none)": [SIGNATURE, _cmd(Command.REPLY), _header(12, len(bomb.payload)), bomb.payload],
        "a PARTIAL (workers take none)": [SIGNATURE, _cmd(Command.PARTIAL), _header(13, len(bomb.payload)), bomb.payload],
        "an ERROR (workers take none)": [SIGNATURE, _cmd(Command.ERROR), _header(14, len(bomb.payload)), bomb.payload],
        "a READY (workers take none)": FrameCodec(None).encode(Ready("x", 1, 1.0, 3, ())),
        "a READY with a pickle body": [SIGNATURE, _cmd(Command.READY), bomb.payload],
        "a HEARTBEAT with a pickle body": [SIGNATURE, _cmd(Command.HEARTBEAT), bomb.payload],
        "a HEARTBEAT out of range": [SIGNATURE, _cmd(Command.HEARTBEAT), struct.pack("!dI", -1.0, 0)],
        "a DISCONNECT with a pickle body": [SIGNATURE, _cmd(Command.DISCONNECT), bomb.payload],
        "a CANCEL with a pickle frame": [SIGNATURE, _cmd(Command.CANCEL), _header(15, 0), bomb.payload],
    }
    near_misses = list(_near_misses(8, 60, FrameCodec(None)))
    garbage = list(_garbage(2, 40))
    for frames in [*malformed.values(), *near_misses, *garbage]:
        fake.send_raw(frames)

    assert fake.call(200, "ping") == "pong"
    # "A request whose id can be read gets an ERROR reply" (they may trail the REPLY).
    fake.await_entries(Command.ERROR, {101, 102, 103})
    after = worker.stats()
    bomb.assert_never_unpickled()
    assert after["malformed"] - before["malformed"] == len(malformed) + len(near_misses) + len(garbage)
    assert after["unauthenticated"] == before["unauthenticated"]
    assert after["registered"]
    assert (after["live_actors"], after["replacements"]) == (4, 0), "the pool is untouched"
    assert not {10, 11, 12, 13, 14, 15} & fake.errors, "only REQUESTs get ERROR replies"

    fake.close()
    client = make_client(fake.endpoint)
    client.wait_for_worker(timeout=10)
    assert client.call("echo", "still here", timeout=10) == "still here"
    bomb.assert_never_unpickled()


# --------------------------------------------------------------------------- at a client


@pytest.mark.timeout(40)
def test_a_client_with_a_key_never_unpickles_unsigned_or_badly_signed_answers_to_its_calls_and_still_serves_real_calls(
    bomb, make_client, make_worker
):
    client = make_client(key=KEY, **FAST)
    fake = FakeWorker(client.endpoint, KEY)
    # Unsigned and badly signed READYs register nobody.
    fake.send_raw(FrameCodec(None).encode(Ready("intruder", 9, 10.0, 3, ("echo",))))
    fake.send_raw(FrameCodec(OTHER_KEY).encode(Ready("intruder", 9, 10.0, 3, ("echo",))))
    fake.ready("fake")  # properly signed: the test knows the key
    infos = wait_until(client.workers, 20, "the fake worker registered")
    assert [info.name for info in infos] == ["fake"]

    future = client.submit("echo", "real")
    call_id = fake.next_request().request_id  # a live call, held by the fake: a bomb's target

    def answer(command: Command, body: bytes, flags: int = 0) -> Calls:
        return Calls(command, (Entry(call_id, flags, body),))

    before = client.stats()
    signed = FrameCodec(KEY).encode(answer(Command.REPLY, b"\x80\x05N."))  # pickled None
    unauthenticated = [
        FrameCodec(None).encode(answer(Command.REPLY, bomb.payload)),
        FrameCodec(OTHER_KEY).encode(answer(Command.REPLY, bomb.payload)),
        FrameCodec(OTHER_KEY).encode(answer(Command.PARTIAL, bomb.payload)),
        FrameCodec(OTHER_KEY).encode(answer(Command.ERROR, bomb.payload)),
        FrameCodec(OTHER_KEY).encode(answer(Command.PARTIAL, b"", Flag.STARTED)),
        [signed[0], signed[1], _header(call_id, len(bomb.payload)), bomb.payload, signed[-1]],
        [*FrameCodec(KEY).encode(answer(Command.REPLY, bomb.payload))[:-1], b"\x00" * 32],
        FrameCodec(KEY).encode(answer(Command.REPLY, bomb.payload))[:-1],
        FrameCodec(None).encode(Disconnect(True)),  # would make the client drop the fake
        FrameCodec(OTHER_KEY).encode(Ready("fake", 1, 10.0, 3, (), incarnation=5)),  # ditto
        *_near_misses(9, 30, FrameCodec(KEY)),  # all fail their MAC
    ]
    malformed = [[bomb.payload], *_garbage(3, 30)]
    for frames in [*unauthenticated, *malformed]:
        fake.send_raw(frames)
    fake.send_raw(FrameCodec(KEY).encode(answer(Command.REPLY, pickle.dumps("genuine"), Flag.STARTED)))

    assert future.result(timeout=10) == "genuine"
    assert future.partials == ["started"], "no unsigned partial may reach the future"
    bomb.assert_never_unpickled()
    after = client.stats()
    assert after["unauthenticated"] - before["unauthenticated"] == len(unauthenticated)
    assert after["malformed"] - before["malformed"] == len(malformed)
    assert [info.name for info in client.workers()] == ["fake"]

    fake.send_raw(FrameCodec(KEY).encode(Disconnect(True)))
    wait_until(lambda: not client.workers(), 20, "the fake worker left")
    fake.close()
    worker = make_worker(client.endpoint, key=KEY, **FAST)
    client.wait_for_worker(timeout=10)
    assert client.call("echo", "still here", timeout=10) == "still here"
    assert [info.id for info in client.workers()] == [worker.id]
    bomb.assert_never_unpickled()


@pytest.mark.timeout(40)
def test_a_client_without_a_key_never_unpickles_malformed_or_unsolicited_answers_and_still_serves_real_calls(
    bomb, make_client, make_worker
):
    client = make_client(**FAST)
    fake = FakeWorker(client.endpoint, None)
    fake.ready("fake")
    wait_until(client.workers, 20, "the fake worker registered")
    future = client.submit("echo", "real")
    call_id = fake.next_request().request_id

    # A peer that never said READY answers that very call: not unpickled, told to register.
    stranger = FakeWorker(client.endpoint, None)
    stranger.send_raw(FrameCodec(None).encode(
        Calls(Command.REPLY, (Entry(call_id, Flag.STARTED, bomb.payload),))
    ))
    assert stranger.next_message(Disconnect).final
    stranger.close()

    before = client.stats()
    size = len(bomb.payload)
    unsolicited = [  # well formed, but for calls this worker does not hold
        FrameCodec(None).encode(Calls(Command.REPLY, (Entry(call_id + 1000, 0, bomb.payload),))),
        FrameCodec(None).encode(Calls(Command.PARTIAL, (Entry(call_id + 1001, 0, bomb.payload),))),
        FrameCodec(None).encode(Calls(Command.ERROR, (Entry(call_id + 1002, 0, bomb.payload),))),
    ]
    malformed = [
        [bomb.payload],
        [b"PIRATE-ACTORS/0", _cmd(Command.REPLY), _header(call_id, size), bomb.payload],
        [SIGNATURE, b"\x63", bomb.payload],
        [SIGNATURE, _cmd(Command.REQUEST), _header(call_id, size), bomb.payload],  # clients take none
        [SIGNATURE, _cmd(Command.CANCEL), _header(call_id, 0)],  # nor CANCELs
        [SIGNATURE, _cmd(Command.READY), bomb.payload],
        [SIGNATURE, _cmd(Command.HEARTBEAT), bomb.payload],
        [SIGNATURE, _cmd(Command.DISCONNECT), bomb.payload],
        [SIGNATURE, _cmd(Command.PARTIAL), _header(call_id + 1003, size + 1), bomb.payload],
        *_near_misses(10, 30, FrameCodec(None)),
        *_garbage(4, 30),
        # Last: a malformed REPLY whose request id can be read — it fails that call.
        [SIGNATURE, _cmd(Command.REPLY), _header(call_id, size), bomb.payload, b"extra"],
    ]
    for frames in [*unsolicited, *malformed]:
        fake.send_raw(frames)

    with pytest.raises(ProtocolError):
        future.result(timeout=10)
    bomb.assert_never_unpickled()
    assert future.partials == []
    after = client.stats()
    assert after["malformed"] - before["malformed"] == len(malformed)
    assert after["unauthenticated"] == before["unauthenticated"]

    fake.send_raw(FrameCodec(None).encode(Disconnect(True)))
    wait_until(lambda: not client.workers(), 20, "the fake worker left")
    fake.close()
    worker = make_worker(client.endpoint, **FAST)
    client.wait_for_worker(timeout=10)
    assert client.call("echo", "still here", timeout=10) == "still here"
    assert [info.id for info in client.workers()] == [worker.id]
    bomb.assert_never_unpickled()
