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
_COUNT = struct.Struct("!I")  # how many entries a call-carrying message holds (docs/protocol.md)
_ENTRY = struct.Struct("!QBI")  # an entry header: request id, flags, body length (docs/protocol.md)
_MAC = 32  # the HMAC-SHA256 that ends a signed message
OLD_SIGNATURE = b"PIRATE-ACTORS/1"  # version 1: several frames per message


def _msg(*parts: bytes) -> list[bytes]:
    """A message of one frame: ``parts`` joined."""
    return [b"".join(parts)]


def _cmd(command: Command) -> bytes:
    return bytes([command])


def _count(n: int) -> bytes:
    return _COUNT.pack(n)


def _header(request_id: int, length: int) -> bytes:
    return _ENTRY.pack(request_id, 0, length)


def _one(request_id: int, length: int) -> bytes:
    """The count and entry header of a one-entry call message; its body follows."""
    return _count(1) + _header(request_id, length)


def _garbage(seed: int, count: int) -> Iterator[list[bytes]]:
    """Random messages of 1–6 random frames (none of them starting with the signature)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield [rng.randbytes(rng.randint(0, 80)) for _ in range(rng.randint(1, 6))]


def _near_misses(seed: int, count: int, codec: FrameCodec) -> Iterator[list[bytes]]:
    """Random one-frame messages that start like real ones (signature, a command byte, often a
    small entry count) but that ``codec`` refuses: they get past the first checks and exercise
    the parsers behind them."""
    rng = random.Random(seed)
    made = 0
    while made < count:
        parts = [SIGNATURE, bytes([rng.randint(0, 9)])]
        parts.append(rng.choice([b"", rng.randbytes(rng.randint(1, 4)), _count(rng.randint(0, 3))]))
        parts += [rng.randbytes(rng.choice([0, 1, 12, 13, 26, 40])) for _ in range(rng.randint(0, 4))]
        frames = _msg(*parts)
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

    signed_bomb = fake.encode(Calls(Command.REQUEST, (Entry(4, 0, bomb.call),)))  # would run if its MAC were accepted
    benign = fake.encode(Calls(Command.REQUEST, (Entry(5, 0, cloudpickle.dumps(("ping", (), {}))),)))
    [signed_frame] = signed_bomb
    tampered = _msg(SIGNATURE, _cmd(Command.REQUEST), _one(5, len(bomb.call)), bomb.call, benign[0][-_MAC:])
    unauthenticated = {
        "unsigned": request(FrameCodec(None), 1, bomb.call),
        "signed with another key": request(FrameCodec(OTHER_KEY), 2, bomb.call),
        "signed, then its body swapped": tampered,
        "a truncated MAC": [signed_frame[:-16]],
        "a MAC of zeros": [signed_frame[:-_MAC] + b"\0" * _MAC],
        "no MAC": [signed_frame[:-_MAC]],
        "nothing after the command": _msg(SIGNATURE, _cmd(Command.REQUEST)),
        "an unsigned DISCONNECT": FrameCodec(None).encode(Disconnect(True)),
        "a DISCONNECT signed with another key": FrameCodec(OTHER_KEY).encode(Disconnect(True)),
        "an unsigned HEARTBEAT": FrameCodec(None).encode(Heartbeat(0.001, 1)),
        "an unsigned CANCEL": FrameCodec(None).encode(Calls(Command.CANCEL, (Entry(1),))),
    }
    near_misses = list(_near_misses(7, 40, FrameCodec(KEY)))  # all fail their MAC
    malformed = {
        "a lone pickle": [bomb.payload],
        "an HTTP request": [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
        "the old protocol version": [OLD_SIGNATURE + signed_frame[len(SIGNATURE):]],
        "the old version's frames": [OLD_SIGNATURE, _cmd(Command.REQUEST), _header(4, len(bomb.call)), bomb.call],
        # Correctly signed, so accepted as one frame: in more frames it must not be pieced together.
        "a signed message with its MAC in a frame of its own": [signed_frame[:-_MAC], signed_frame[-_MAC:]],
        "a signed message split in its body": [signed_frame[:40], signed_frame[40:]],
        "a signed message and an empty frame": [signed_frame, b""],
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
        "the old protocol version": _msg(OLD_SIGNATURE, _cmd(Command.REQUEST), _one(10, size), bomb.call),
        "the old version's frames": [OLD_SIGNATURE, _cmd(Command.REQUEST), _header(16, size), bomb.call],
        "no command byte": _msg(SIGNATURE),
        "an unknown command": _msg(SIGNATURE, b"\x63", bomb.payload),
        "a two-byte command": _msg(SIGNATURE, b"\x02\x02", _one(11, size), bomb.call),
        "a REQUEST with bytes after its body": _msg(SIGNATURE, _cmd(Command.REQUEST), _one(101, size), bomb.call, b"x"),
        "a REQUEST whose lengths do not add up": _msg(SIGNATURE, _cmd(Command.REQUEST), _one(102, size + 1), bomb.call),
        "a REQUEST without its body": _msg(SIGNATURE, _cmd(Command.REQUEST), _one(103, size)),
        "a REQUEST in two frames": [SIGNATURE + _cmd(Command.REQUEST) + _one(104, size), bomb.call],
        "a REQUEST and an empty frame": [*_msg(SIGNATURE, _cmd(Command.REQUEST), _one(105, size), bomb.call), b""],
        "a REQUEST counting more headers than it has": _msg(
            SIGNATURE, _cmd(Command.REQUEST), _count(2**32 - 1), _header(17, size), bomb.call
        ),
        "a REQUEST of no entries": _msg(SIGNATURE, _cmd(Command.REQUEST), _count(0), _header(18, size), bomb.call),
        "a REPLY (workers take none)": _msg(SIGNATURE, _cmd(Command.REPLY), _one(12, len(bomb.payload)), bomb.payload),
        "a PARTIAL (workers take none)": _msg(SIGNATURE, _cmd(Command.PARTIAL), _one(13, len(bomb.payload)), bomb.payload),
        "an ERROR (workers take none)": _msg(SIGNATURE, _cmd(Command.ERROR), _one(14, len(bomb.payload)), bomb.payload),
        "a READY (workers take none)": FrameCodec(None).encode(Ready("x", 1, 1.0, 3, ())),
        "a READY with a pickle body": _msg(SIGNATURE, _cmd(Command.READY), bomb.payload),
        "a HEARTBEAT with a pickle body": _msg(SIGNATURE, _cmd(Command.HEARTBEAT), bomb.payload),
        "a HEARTBEAT out of range": _msg(SIGNATURE, _cmd(Command.HEARTBEAT), struct.pack("!dI", -1.0, 0)),
        "a DISCONNECT with a pickle body": _msg(SIGNATURE, _cmd(Command.DISCONNECT), bomb.payload),
        "a CANCEL with a pickle after its header": _msg(SIGNATURE, _cmd(Command.CANCEL), _one(15, 0), bomb.payload),
        "a CANCEL whose entry holds a pickle": _msg(
            SIGNATURE, _cmd(Command.CANCEL), _one(19, len(bomb.payload)), bomb.payload
        ),
    }
    near_misses = list(_near_misses(8, 60, FrameCodec(None)))
    garbage = list(_garbage(2, 40))
    # A pickle's first byte (PROTO, 0x80) in the command's place reads as the SIGNED bit: a
    # keyless worker drops it as a signed message it cannot check.
    signed_looking = _msg(SIGNATURE, bomb.payload)
    for frames in [*malformed.values(), *near_misses, *garbage, signed_looking]:
        fake.send_raw(frames)

    assert fake.call(200, "ping") == "pong"
    # "A request whose id can be read gets an ERROR reply" (they may trail the REPLY).
    fake.await_entries(Command.ERROR, {101, 102, 103})
    after = worker.stats()
    bomb.assert_never_unpickled()
    assert after["malformed"] - before["malformed"] == len(malformed) + len(near_misses) + len(garbage)
    assert after["unauthenticated"] - before["unauthenticated"] == 1  # signed_looking
    assert after["registered"]
    assert (after["live_actors"], after["replacements"]) == (4, 0), "the pool is untouched"
    assert not {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 104, 105} & fake.errors, (
        "only REQUESTs whose one frame is readable up to the entry headers get ERROR replies"
    )

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
    signed = fake.encode(answer(Command.REPLY, b"\x80\x05N."))  # pickled None
    [signed_bomb] = fake.encode(answer(Command.REPLY, bomb.payload))  # would be unpickled
    unauthenticated = [
        FrameCodec(None).encode(answer(Command.REPLY, bomb.payload)),
        FrameCodec(OTHER_KEY).encode(answer(Command.REPLY, bomb.payload)),
        FrameCodec(OTHER_KEY).encode(answer(Command.PARTIAL, bomb.payload)),
        FrameCodec(OTHER_KEY).encode(answer(Command.ERROR, bomb.payload)),
        FrameCodec(OTHER_KEY).encode(answer(Command.PARTIAL, b"", Flag.STARTED)),
        _msg(SIGNATURE, _cmd(Command.REPLY), _one(call_id, len(bomb.payload)), bomb.payload, signed[0][-_MAC:]),
        [signed_bomb[:-_MAC] + b"\x00" * _MAC],
        [signed_bomb[:-_MAC]],
        [signed_bomb[:-16]],
        FrameCodec(None).encode(Disconnect(True)),  # would make the client drop the fake
        FrameCodec(OTHER_KEY).encode(Ready("fake", 1, 10.0, 3, (), incarnation=5)),  # ditto
        *_near_misses(9, 30, FrameCodec(KEY)),  # all fail their MAC
    ]
    # Correctly signed, so accepted as one frame: in more frames it must not be pieced together.
    malformed = [
        [bomb.payload],
        [signed_bomb[:-_MAC], signed_bomb[-_MAC:]],
        [signed_bomb[:40], signed_bomb[40:]],
        [signed_bomb, b""],
        [OLD_SIGNATURE + signed_bomb[len(SIGNATURE):]],
        *_garbage(3, 30),
    ]
    for frames in [*unauthenticated, *malformed]:
        fake.send_raw(frames)
    fake.send_raw(fake.encode(answer(Command.REPLY, pickle.dumps("genuine"), Flag.STARTED)))

    assert future.result(timeout=10) == "genuine"
    assert future.partials == ["started"], "no unsigned partial may reach the future"
    bomb.assert_never_unpickled()
    after = client.stats()
    assert after["unauthenticated"] - before["unauthenticated"] == len(unauthenticated)
    assert after["malformed"] - before["malformed"] == len(malformed)
    assert [info.name for info in client.workers()] == ["fake"]

    fake.send_raw(fake.encode(Disconnect(True)))
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
        _msg(OLD_SIGNATURE, _cmd(Command.REPLY), _one(call_id, size), bomb.payload),
        [OLD_SIGNATURE, _cmd(Command.REPLY), _header(call_id, size), bomb.payload],  # version 1's frames
        _msg(SIGNATURE, b"\x63", bomb.payload),
        _msg(SIGNATURE, _cmd(Command.REQUEST), _one(call_id, size), bomb.payload),  # clients take none
        _msg(SIGNATURE, _cmd(Command.CANCEL), _one(call_id, 0)),  # nor CANCELs
        _msg(SIGNATURE, _cmd(Command.READY), bomb.payload),
        _msg(SIGNATURE, _cmd(Command.HEARTBEAT), bomb.payload),
        _msg(SIGNATURE, _cmd(Command.DISCONNECT), bomb.payload),
        _msg(SIGNATURE, _cmd(Command.PARTIAL), _one(call_id + 1003, size + 1), bomb.payload),
        # A well-formed REPLY for the live call, but in two frames, or followed by an empty one:
        # unreadable, so neither answered nor failed by it.
        [SIGNATURE + _cmd(Command.REPLY) + _one(call_id, size), bomb.payload],
        [*_msg(SIGNATURE, _cmd(Command.REPLY), _one(call_id, size), bomb.payload), b""],
        *_near_misses(10, 30, FrameCodec(None)),
        *_garbage(4, 30),
        # Last: a malformed REPLY whose request id can be read — it fails that call.
        _msg(SIGNATURE, _cmd(Command.REPLY), _one(call_id, size), bomb.payload, b"extra"),
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
