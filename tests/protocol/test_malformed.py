"""Every malformed input: decode() raises ProtocolError; receive() counts it, drops it and never
raises; a call-carrying message whose ids can be read becomes a BadCalls event (SPEC §6).

A message is one frame, ``SIGNATURE + COMMAND + body``; a call-carrying body is a count, that
many entry headers, then the entries' bodies (docs/protocol.md §1)."""

from __future__ import annotations

import json
import struct
from typing import Any, Callable

import pytest

from pirate_actors._errors import AuthenticationError, ProtocolError
from pirate_actors.protocol import (
    SIGNATURE,
    BadCalls,
    Calls,
    Command,
    Entry,
    FrameCodec,
    Heartbeat,
    MalformedCalls,
    Ready,
)

from .conftest import Network

pytestmark = pytest.mark.timeout(10)

S = SIGNATURE


def msg(*parts: bytes) -> list[bytes]:
    """A message of one frame: ``parts`` joined."""
    return [b"".join(parts)]


def cmd(command: int) -> bytes:
    return bytes([command])


def count(n: int) -> bytes:
    """The entry count that opens a call-carrying body."""
    return struct.pack("!I", n)


def header(*entries: tuple[int, int, int]) -> bytes:
    """Entry headers ``(request_id, flags, length)``, without the count."""
    return b"".join(struct.pack("!QBI", *entry) for entry in entries)


def calls(*entries: tuple[int, int, int], bodies: bytes = b"") -> bytes:
    """A call-carrying body: the count of ``entries``, their headers, then ``bodies``."""
    return count(len(entries)) + header(*entries) + bodies


def ready(**fields: Any) -> bytes:
    info = {"name": "w", "capacity": 1, "heartbeat": 1.0, "liveness": 3, "procedures": ["ping"],
            "incarnation": 0}
    info.update(fields)
    for name, value in list(info.items()):
        if value is Ellipsis:
            del info[name]
    return json.dumps(info).encode()


def heartbeat(interval: float, liveness: int) -> bytes:
    return struct.pack("!dI", interval, liveness)


def heartbeat_sized(interval: float, liveness: int, max_message_size: int) -> bytes:
    return struct.pack("!dIQ", interval, liveness, max_message_size)


# Messages no reader can make sense of: each must be refused with ProtocolError (never
# AuthenticationError: no key is involved) and must not become a BadCalls event.
UNREADABLE: dict[str, list[bytes]] = {
    "empty frames list": [],
    "one empty frame": [b""],
    "shorter than the signature": msg(S[:-1]),
    "only the signature": msg(S),
    "no signature": msg(cmd(7), heartbeat(1, 3)),
    "another protocol's signature": msg(b"MDPW01", cmd(7), heartbeat(1, 3)),
    "the old version's signature": msg(b"PIRATE-ACTORS/1", cmd(7), heartbeat(1, 3)),
    "version 2's signature": msg(b"PIRATE-ACTORS/2", cmd(7), heartbeat(1, 3)),
    "version 3's signature": msg(b"PIRATE-ACTORS/3", cmd(7), heartbeat(1, 3)),
    "a newer version's signature": msg(b"PIRATE-ACTORS/5", cmd(7), heartbeat(1, 3)),
    "signature in lower case": msg(b"pirate-actors/4", cmd(7), heartbeat(1, 3)),
    "signature with trailing byte": msg(S, b"\x00", cmd(7), heartbeat(1, 3)),
    "the old version's frames": [b"PIRATE-ACTORS/1", cmd(7), heartbeat(1, 3)],
    "signature in a frame of its own": [S, cmd(7) + heartbeat(1, 3)],
    "command byte 0": msg(S, cmd(0)),
    "command byte 11": msg(S, cmd(11)),
    "EVENT without body": msg(S, cmd(9)),
    "EVENT with a count of 0": msg(S, cmd(9), struct.pack("!I", 0)),
    "EVENT whose lengths pass its end": msg(S, cmd(9), struct.pack("!I", 1), struct.pack("!HdI", 5, 1.0, 9), b"ab"),
    "EVENT whose topic is not UTF-8": msg(S, cmd(9), struct.pack("!I", 1), struct.pack("!HdI", 2, 1.0, 0), b"\xff\xfe"),
    "CAPACITY of the wrong size": msg(S, cmd(10), b"\x00\x01"),
    "command byte 127": msg(S, cmd(127)),  # (255 has the SIGNED bit: unauthenticated)
    "command byte 0 with a body": msg(S, cmd(0), heartbeat(1, 3)),
    "no command byte before the body": msg(S, heartbeat(1, 3)),
    "two command bytes": msg(S, b"\x07\x07", heartbeat(1, 3)),
    "command as text": msg(S, b"HEARTBEAT", heartbeat(1, 3)),
    "HEARTBEAT without body": msg(S, cmd(7)),
    "HEARTBEAT in two frames": [S + cmd(7), heartbeat(1, 3)],
    "HEARTBEAT with an extra empty frame": [*msg(S, cmd(7), heartbeat(1, 3)), b""],
    "HEARTBEAT body 11 bytes": msg(S, cmd(7), heartbeat(1, 3)[:-1]),
    "HEARTBEAT body 13 bytes": msg(S, cmd(7), heartbeat(1, 3) + b"\x00"),
    "HEARTBEAT body 19 bytes": msg(S, cmd(7), heartbeat_sized(1, 3, 1024)[:-1]),
    "HEARTBEAT body 21 bytes": msg(S, cmd(7), heartbeat_sized(1, 3, 1024) + b"\x00"),
    "HEARTBEAT interval 0": msg(S, cmd(7), heartbeat(0.0, 3)),
    "HEARTBEAT interval negative": msg(S, cmd(7), heartbeat(-1.0, 3)),
    "HEARTBEAT interval NaN": msg(S, cmd(7), heartbeat(float("nan"), 3)),
    "HEARTBEAT interval infinite": msg(S, cmd(7), heartbeat(float("inf"), 3)),
    "HEARTBEAT interval over an hour": msg(S, cmd(7), heartbeat(3600.5, 3)),
    "HEARTBEAT liveness 0": msg(S, cmd(7), heartbeat(1.0, 0)),
    "HEARTBEAT liveness 1001": msg(S, cmd(7), heartbeat(1.0, 1001)),
    "HEARTBEAT with size, interval 0": msg(S, cmd(7), heartbeat_sized(0.0, 3, 1024)),
    "HEARTBEAT with size, liveness 0": msg(S, cmd(7), heartbeat_sized(1.0, 0, 1024)),
    "DISCONNECT without body": msg(S, cmd(8)),
    "DISCONNECT body 2": msg(S, cmd(8), b"\x02"),
    "DISCONNECT two bytes": msg(S, cmd(8), b"\x00\x01"),
    "DISCONNECT in two frames": [S + cmd(8), b"\x01"],
    "DISCONNECT with an extra frame": [*msg(S, cmd(8), b"\x01"), b"\x01"],
    "READY without body": msg(S, cmd(1)),
    "READY with an extra empty frame": [*msg(S, cmd(1), ready()), b""],
    "READY in two frames": [S + cmd(1), ready()],
    "READY with a trailing byte": msg(S, cmd(1), ready(), b"\x00"),
    "READY not JSON": msg(S, cmd(1), b"name=w"),
    "READY not UTF-8": msg(S, cmd(1), b"\xff\xfe{"),
    "READY truncated JSON": msg(S, cmd(1), ready()[:-1]),
    "READY a JSON array": msg(S, cmd(1), b"[1, 2]"),
    "READY a JSON string": msg(S, cmd(1), b'"w"'),
    "READY without name": msg(S, cmd(1), ready(name=...)),
    "READY name not a string": msg(S, cmd(1), ready(name=7)),
    "READY without capacity": msg(S, cmd(1), ready(capacity=...)),
    "READY capacity 0": msg(S, cmd(1), ready(capacity=0)),
    "READY capacity negative": msg(S, cmd(1), ready(capacity=-4)),
    "READY capacity a string": msg(S, cmd(1), ready(capacity="4")),
    "READY capacity a float": msg(S, cmd(1), ready(capacity=4.0)),
    "READY capacity true": msg(S, cmd(1), ready(capacity=True)),
    "READY procedures not a list": msg(S, cmd(1), ready(procedures="ping")),
    "READY procedures with a number": msg(S, cmd(1), ready(procedures=["ping", 3])),
    "READY without heartbeat": msg(S, cmd(1), ready(heartbeat=...)),
    "READY heartbeat a string": msg(S, cmd(1), ready(heartbeat="1.0")),
    "READY heartbeat true": msg(S, cmd(1), ready(heartbeat=True)),
    "READY heartbeat 0": msg(S, cmd(1), ready(heartbeat=0)),
    "READY heartbeat NaN": msg(S, cmd(1), ready(heartbeat=float("nan"))),
    "READY heartbeat Infinity": msg(S, cmd(1), ready(heartbeat=float("inf"))),
    "READY heartbeat too long": msg(S, cmd(1), ready(heartbeat=10_000)),
    "READY without liveness": msg(S, cmd(1), ready(liveness=...)),
    "READY liveness 0": msg(S, cmd(1), ready(liveness=0)),
    "READY liveness a float": msg(S, cmd(1), ready(liveness=3.0)),
    "READY liveness 1001": msg(S, cmd(1), ready(liveness=1001)),
    "READY incarnation a string": msg(S, cmd(1), ready(incarnation="1")),
    "READY incarnation true": msg(S, cmd(1), ready(incarnation=True)),
    "READY incarnation a float": msg(S, cmd(1), ready(incarnation=1.5)),
    "READY max_message_size negative": msg(S, cmd(1), ready(max_message_size=-1)),
    "READY max_message_size a string": msg(S, cmd(1), ready(max_message_size="64")),
    "READY integer of 5000 digits": msg(S, cmd(1), ready()[:-1] + b', "x": ' + b"9" * 5000 + b"}"),
    "REQUEST without a count": msg(S, cmd(2)),
    "REQUEST count of 3 bytes": msg(S, cmd(2), count(1)[1:]),
    "REQUEST count 0": msg(S, cmd(2), count(0)),
    "REQUEST count 0 before a header and a body": msg(S, cmd(2), count(0), header((1, 0, 3)), b"abc"),
    "REQUEST count 1 without its header": msg(S, cmd(2), count(1)),
    "REQUEST header of 12 bytes": msg(S, cmd(2), count(1), header((1, 0, 0))[:-1]),
    "REQUEST count 2 with one header": msg(S, cmd(2), count(2), header((1, 0, 0))),
    "REQUEST count 2**32-1 with one header": msg(S, cmd(2), count(2**32 - 1), header((1, 0, 3)), b"abc"),
    "REQUEST in two frames": [S + cmd(2) + calls((1, 0, 3)), b"abc"],
    "REQUEST with an extra empty frame": [*msg(S, cmd(2), calls((1, 0, 3), bodies=b"abc")), b""],
    "REQUEST in the old version's frames": [b"PIRATE-ACTORS/1", cmd(2), header((1, 0, 3)), b"abc"],
    "REPLY second header truncated": msg(S, cmd(4), count(2), header((1, 0, 1), (2, 0, 1))[:-5], b"ab"),
    "REPLY in two frames": [S + cmd(4) + calls((1, 0, 3)), b"abc"],
    "CANCEL without a count": msg(S, cmd(6)),
    "CANCEL count 0": msg(S, cmd(6), count(0)),
    "CANCEL header of 12 bytes": msg(S, cmd(6), count(1), header((1, 0, 0))[:-1]),
}

# Call-carrying messages whose entry headers are readable but whose rest is wrong.
BAD_CALLS: dict[str, tuple[list[bytes], tuple[int, ...]]] = {
    "REQUEST missing its body": (msg(S, cmd(2), calls((1, 0, 3))), (1,)),
    "REQUEST with bytes after its body": (msg(S, cmd(2), calls((1, 0, 3), bodies=b"abcmore")), (1,)),
    "REQUEST with a byte after an empty body": (msg(S, cmd(2), calls((1, 0, 0), bodies=b"\x00")), (1,)),
    "REQUEST bodies shorter than the headers say": (msg(S, cmd(2), calls((1, 0, 3), (2, 0, 3), bodies=b"abcde")), (1, 2)),
    "REQUEST bodies longer than the headers say": (msg(S, cmd(2), calls((1, 0, 3), (2, 0, 3), bodies=b"abcdefg")), (1, 2)),
    "REQUEST of three, the last body missing": (msg(S, cmd(2), calls((7, 0, 1), (8, 0, 1), (9, 0, 1), bodies=b"ab")), (7, 8, 9)),
    "REQUEST huge body length": (msg(S, cmd(2), calls((5, 0, 2**32 - 1), bodies=b"x")), (5,)),
    "REPLY bodies longer than the headers say": (msg(S, cmd(4), calls((9, 0, 0), bodies=b"x")), (9,)),
    "PARTIAL missing its body": (msg(S, cmd(3), calls((4, 0, 2))), (4,)),
    "ERROR with bytes after its body": (msg(S, cmd(5), calls((6, 0, 1), bodies=b"ee")), (6,)),
    "CANCEL with a body after its header": (msg(S, cmd(6), calls((3, 0, 0), bodies=b"x")), (3,)),
    "CANCEL whose entry has a body": (msg(S, cmd(6), calls((3, 0, 1), (4, 0, 0), bodies=b"x")), (3, 4)),
}


@pytest.mark.parametrize("frames", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_decode_refuses_a_malformed_message_with_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError) as caught:
        FrameCodec().decode(frames)
    assert not isinstance(caught.value, (AuthenticationError, MalformedCalls))


@pytest.mark.parametrize("frames", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_the_worker_counts_and_drops_a_malformed_message_without_raising(
    frames: list[bytes], network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    stats = (worker.stats.received, worker.stats.unauthenticated)
    assert net.inject_to_worker(b"w1", frames) == []
    assert worker.stats.malformed == 1
    assert (worker.stats.received, worker.stats.unauthenticated) == stats
    assert worker.registered  # nothing else changed


@pytest.mark.parametrize("frames", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_the_client_counts_and_drops_a_malformed_message_without_raising_or_replying(
    frames: list[bytes], network: Callable[..., Network],
) -> None:
    net = network()
    net.add_worker(b"w1")
    client = net.client
    assert client is not None
    assert net.inject_to_client(b"w1", frames) == ([], [])
    assert net.inject_to_client(b"unknown", frames) == ([], [])
    assert client.stats.malformed == 2 and client.stats.unauthenticated == 0
    assert list(client.workers) == [b"w1"]


@pytest.mark.parametrize("frames, ids", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_decode_reports_the_request_ids_of_a_call_message_whose_rest_is_malformed(
    frames: list[bytes], ids: tuple[int, ...],
) -> None:
    with pytest.raises(ProtocolError) as caught:
        FrameCodec().decode(frames)
    assert getattr(caught.value, "request_ids") == ids


@pytest.mark.parametrize(
    "frames, ids",
    [v for k, v in BAD_CALLS.items() if k.startswith("REQUEST")],
    ids=[k for k in BAD_CALLS if k.startswith("REQUEST")],
)
def test_a_request_whose_ids_can_be_read_yields_bad_calls_with_those_ids_on_the_worker(
    frames: list[bytes], ids: tuple[int, ...], network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    [event] = net.inject_to_worker(b"w1", frames)
    assert isinstance(event, BadCalls)
    assert event.command is Command.REQUEST and event.request_ids == ids and event.reason
    assert worker.stats.malformed == 1


@pytest.mark.parametrize(
    "frames, ids",
    [v for k, v in BAD_CALLS.items() if k.startswith(("REPLY", "PARTIAL", "ERROR"))],
    ids=[k for k in BAD_CALLS if k.startswith(("REPLY", "PARTIAL", "ERROR"))],
)
def test_a_malformed_answer_whose_ids_can_be_read_yields_bad_calls_naming_the_worker_on_the_client(
    frames: list[bytes], ids: tuple[int, ...], network: Callable[..., Network],
) -> None:
    net = network()
    net.add_worker(b"w1")
    events, out = net.inject_to_client(b"w1", frames)
    assert out == []
    [event] = events
    assert isinstance(event, BadCalls) and event.peer == b"w1" and event.request_ids == ids
    assert net.client is not None and net.client.stats.malformed == 1


def test_malformed_calls_from_an_unknown_worker_get_a_disconnect_and_no_event(
    network: Callable[..., Network],
) -> None:
    net = network()
    events, out = net.inject_to_client(b"stranger", BAD_CALLS["REPLY bodies longer than the headers say"][0])
    assert events == []
    at = len(SIGNATURE)
    assert [(peer, len(frames), frames[0][at:at + 1]) for peer, frames in out] == [
        (b"stranger", 1, cmd(Command.DISCONNECT))
    ]


def test_a_message_that_cannot_be_decoded_is_no_sign_of_life(network: Callable[..., Network]) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    client = net.client
    assert client is not None
    net.run(1.0)
    last_client, last_worker = client.workers[b"w1"].peer.last_received, worker.client.last_received
    net.clock.advance(0.5)
    net.inject_to_client(b"w1", msg(S, cmd(7), heartbeat(0.0, 3)))
    net.inject_to_worker(b"w1", msg(S, cmd(7), heartbeat(0.0, 3)))
    assert client.workers[b"w1"].peer.last_received == last_client
    assert worker.client.last_received == last_worker


def test_a_bad_calls_message_is_still_a_sign_of_life(network: Callable[..., Network]) -> None:
    net = network()
    net.add_worker(b"w1")
    net.clock.advance(0.5)
    net.inject_to_client(b"w1", BAD_CALLS["PARTIAL missing its body"][0])
    assert net.client is not None and net.client.workers[b"w1"].peer.last_received == net.now


def test_the_worker_drops_and_counts_answers_sent_to_it_as_if_it_were_a_client(
    network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    codec = FrameCodec()
    for command in (Command.PARTIAL, Command.REPLY, Command.ERROR):
        assert net.inject_to_worker(b"w1", codec.encode(Calls(command, (Entry(1, 0, b"x"),)))) == []
    assert net.inject_to_worker(b"w1", codec.encode(Ready("w", 1, 1.0, 3, ()))) == []
    assert worker.stats.malformed == 4
    assert worker.registered


def test_the_client_drops_and_counts_requests_and_cancels_sent_to_it_by_a_worker(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.add_worker(b"w1")
    codec = FrameCodec()
    for command in (Command.REQUEST, Command.CANCEL):
        assert net.inject_to_client(b"w1", codec.encode(Calls(command, (Entry(1, 0, b""),)))) == ([], [])
    assert net.client is not None and net.client.stats.malformed == 2


def test_after_any_number_of_malformed_messages_calls_still_flow(network: Callable[..., Network]) -> None:
    net = network()
    net.add_worker(b"w1")
    for frames in UNREADABLE.values():
        net.inject_to_worker(b"w1", frames)
        net.inject_to_client(b"w1", frames)
    net.client_send(b"w1", Command.REQUEST, [Entry(1, 0, b"call")])
    net.worker_send(b"w1", Command.REPLY, [Entry(1, 0, b"result")])
    net.run(10)
    assert net.workers[b"w1"].registered
    assert net.client is not None and list(net.client.workers) == [b"w1"]
    assert net.client.stats.malformed == net.workers[b"w1"].stats.malformed == len(UNREADABLE)


# ----------------------------------------------------------------------------- gaps


@pytest.mark.parametrize("side", ["client", "worker"])
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000], ids=["arrays", "objects"])
def test_a_ready_of_deeply_nested_json_is_counted_and_dropped_without_raising(
    body: bytes, side: str, network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    frames = msg(S, cmd(Command.READY), body)
    if side == "client":
        assert net.inject_to_client(b"w1", frames) == ([], [])
        assert net.client is not None and net.client.stats.malformed == 1
    else:
        assert net.inject_to_worker(b"w1", frames) == []
        assert worker.stats.malformed == 1


def test_a_malformed_request_from_a_worker_is_dropped_like_a_well_formed_one(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.add_worker(b"w1")
    events, out = net.inject_to_client(b"w1", msg(S, cmd(Command.REQUEST), calls((1, 0, 1))))
    assert events == [] and out == []
    assert net.client is not None and net.client.stats.malformed == 1


def test_a_heartbeat_on_the_edge_of_the_accepted_range_is_accepted() -> None:
    codec = FrameCodec()
    assert codec.decode(msg(S, cmd(7), heartbeat(0.001, 1))) == Heartbeat(0.001, 1)
    assert codec.decode(msg(S, cmd(7), heartbeat(3600.0, 1000))) == Heartbeat(3600.0, 1000)
    assert codec.decode(msg(S, cmd(7), heartbeat_sized(0.001, 1, 1))) == Heartbeat(0.001, 1, 1)
    assert codec.decode(msg(S, cmd(7), heartbeat_sized(3600.0, 1000, 2**64 - 1))) == Heartbeat(
        3600.0, 1000, 2**64 - 1
    )
    assert isinstance(codec.decode(msg(S, cmd(1), ready(heartbeat=3600, liveness=1000))), Ready)
