"""HMAC-SHA256 signing: what is signed, what is rejected, how it is counted, and that the check
comes before anything is parsed or unpickled (SPEC §6)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Callable

import pytest

from pirate_actors._errors import AuthenticationError, ProtocolError
from pirate_actors.protocol import (
    SIGNATURE,
    Calls,
    CallsReceived,
    Command,
    Disconnect,
    Entry,
    FrameCodec,
    Heartbeat,
    Ready,
    WorkerGone,
    WorkerRegistered,
)

from .conftest import CLIENT, Network

pytestmark = pytest.mark.timeout(10)

KEY = b"0123456789abcdef-shared-secret"
OTHER_KEY = b"fedcba9876543210-other-secret"

MESSAGES: list[Any] = [
    Ready("w", 2, 1.0, 3, ("ping",), 1),
    Calls(Command.REQUEST, (Entry(1, 0, b"call-1"), Entry(2, 0, b"call-2"))),
    Calls(Command.PARTIAL, (Entry(1, 1, b""),)),
    Calls(Command.REPLY, (Entry(1, 0, b"result"),)),
    Calls(Command.ERROR, (Entry(1, 0, b"error"),)),
    Calls(Command.CANCEL, (Entry(1),)),
    Heartbeat(1.0, 3),
    Disconnect(True),
]
IDS = ["READY", "REQUEST", "PARTIAL", "REPLY", "ERROR", "CANCEL", "HEARTBEAT", "DISCONNECT"]


def documented_mac(key: bytes, frames: list[bytes]) -> bytes:
    """The MAC as docs/protocol.md describes it, written independently of the code."""
    data = b"".join(len(frame).to_bytes(4, "big") + frame for frame in frames)
    return hmac.new(key, data, hashlib.sha256).digest()


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_signed_message_ends_with_hmac_sha256_over_every_other_frame_each_prefixed_by_its_length(
    message: Any,
) -> None:
    frames = FrameCodec(KEY).encode(message)
    assert frames[-1] == documented_mac(KEY, frames[:-1])
    assert frames[:-1] == FrameCodec(None).encode(message)  # the MAC is only appended


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_message_signed_with_the_same_key_is_accepted(message: Any) -> None:
    assert FrameCodec(KEY).decode(FrameCodec(KEY).encode(message)) == message


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_flipped_bit_in_any_frame_is_rejected_as_an_authentication_error(message: Any) -> None:
    codec = FrameCodec(KEY)
    frames = codec.encode(message)
    for index in range(1, len(frames)):  # frame 0 is the signature, checked before the MAC
        if not frames[index]:
            continue  # an empty body (a "started" PARTIAL) has no bit to flip
        for position in {0, len(frames[index]) // 2, len(frames[index]) - 1}:
            for bit in (0, 7):
                tampered = list(frames)
                changed = bytearray(tampered[index])
                changed[position] ^= 1 << bit
                tampered[index] = bytes(changed)
                with pytest.raises(AuthenticationError):
                    codec.decode(tampered)


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_message_signed_with_another_key_is_rejected(message: Any) -> None:
    with pytest.raises(AuthenticationError, match="HMAC"):
        FrameCodec(KEY).decode(FrameCodec(OTHER_KEY).encode(message))


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_message_without_its_mac_frame_is_rejected_by_a_peer_with_a_key(message: Any) -> None:
    with pytest.raises(AuthenticationError):
        FrameCodec(KEY).decode(FrameCodec(None).encode(message))


def test_a_message_of_only_signature_and_command_is_rejected_by_a_peer_with_a_key() -> None:
    with pytest.raises(AuthenticationError, match="no signature frame"):
        FrameCodec(KEY).decode([SIGNATURE, bytes([Command.HEARTBEAT])])


@pytest.mark.parametrize("mac", [b"", b"\x00" * 31, b"\x00" * 32, b"\x00" * 33, b"\x00" * 64])
def test_a_mac_frame_of_any_wrong_value_or_length_is_rejected(mac: bytes) -> None:
    frames = FrameCodec(None).encode(Heartbeat(1.0, 3)) + [mac]
    with pytest.raises(AuthenticationError):
        FrameCodec(KEY).decode(frames)


def test_moving_bytes_from_one_frame_to_the_next_breaks_the_mac() -> None:
    codec = FrameCodec(KEY)
    frames = codec.encode(Calls(Command.REQUEST, (Entry(1, 0, b"abcdef"),)))
    recut = [frames[0], frames[1], frames[2] + frames[3][:3], frames[3][3:], frames[4]]
    assert b"".join(recut[:-1]) == b"".join(frames[:-1])  # same bytes, cut elsewhere
    with pytest.raises(AuthenticationError):
        codec.decode(recut)


def test_a_dropped_frame_or_an_added_frame_breaks_the_mac() -> None:
    codec = FrameCodec(KEY)
    frames = codec.encode(Calls(Command.REQUEST, (Entry(1, 0, b"abcdef"),)))
    with pytest.raises(AuthenticationError):
        codec.decode(frames[:2] + frames[3:])
    with pytest.raises(AuthenticationError):
        codec.decode(frames[:-1] + [b""] + frames[-1:])


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_signed_message_to_a_peer_without_a_key_is_rejected_as_malformed(message: Any) -> None:
    with pytest.raises(ProtocolError) as caught:
        FrameCodec(None).decode(FrameCodec(KEY).encode(message))
    assert not isinstance(caught.value, AuthenticationError)


def test_the_mac_is_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    codec = FrameCodec(KEY)
    frames = codec.encode(Heartbeat(1.0, 3))
    codec.decode(frames)
    assert calls == [(frames[-1], frames[-1])]


def test_the_mac_is_checked_before_the_ready_json_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("parsed an unsigned READY"))
    frames = FrameCodec(OTHER_KEY).encode(Ready("w", 1, 1.0, 3, ()))
    with pytest.raises(AuthenticationError):
        FrameCodec(KEY).decode(frames)


def test_a_badly_signed_body_that_would_break_the_parser_is_rejected_as_unauthenticated() -> None:
    frames = [SIGNATURE, bytes([Command.READY]), b"[" * 100_000]
    frames.append(documented_mac(OTHER_KEY, frames))
    with pytest.raises(AuthenticationError):
        FrameCodec(KEY).decode(frames)


def test_a_wrong_signature_frame_is_malformed_even_with_a_key_it_is_checked_first() -> None:
    frames = FrameCodec(KEY).encode(Heartbeat(1.0, 3))
    frames[0] = b"PIRATE-ACTORS/2"
    with pytest.raises(ProtocolError, match="not a PIRATE-ACTORS/1 message") as caught:
        FrameCodec(KEY).decode(frames)
    assert not isinstance(caught.value, AuthenticationError)


# ----------------------------------------------------------------------------- through receive()


def test_the_worker_counts_a_badly_signed_message_as_unauthenticated_and_drops_it(
    network: Callable[..., Network], trap: Any,
) -> None:
    net = network(key=KEY)
    worker = net.add_worker(b"w1")
    assert worker.registered
    body, path = trap()
    forged = FrameCodec(OTHER_KEY).encode(Calls(Command.REQUEST, (Entry(1, 0, body),)))
    before = worker.stats.received
    assert net.inject_to_worker(b"w1", forged) == []
    assert worker.stats.unauthenticated == 1 and worker.stats.malformed == 0
    assert worker.stats.received == before
    assert not path.exists()


def test_the_client_counts_a_badly_signed_message_as_unauthenticated_and_drops_it_without_reply(
    network: Callable[..., Network], trap: Any,
) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1")
    client = net.client
    assert client is not None
    body, path = trap()
    forged = FrameCodec(None).encode(Calls(Command.REPLY, (Entry(1, 0, body),)))
    assert net.inject_to_client(b"w1", forged) == ([], [])
    assert net.inject_to_client(b"stranger", forged) == ([], [])  # no DISCONNECT to a forger
    assert client.stats.unauthenticated == 2 and client.stats.malformed == 0
    assert not path.exists()


def test_a_keyed_message_to_a_keyless_peer_is_counted_as_malformed_not_unauthenticated(
    network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    net.inject_to_worker(b"w1", FrameCodec(KEY).encode(Heartbeat(1.0, 3)))
    assert worker.stats.malformed == 1 and worker.stats.unauthenticated == 0


def test_a_worker_with_the_wrong_key_is_never_registered(network: Callable[..., Network]) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1", key=OTHER_KEY)
    net.run(10)
    assert net.events(CLIENT, WorkerRegistered) == []
    assert net.client is not None and net.client.stats.unauthenticated >= 10
    assert not net.workers[b"w1"].registered


def test_a_worker_without_a_key_is_never_registered_by_a_client_with_one(
    network: Callable[..., Network],
) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1", key=None)
    net.run(5)
    assert net.events(CLIENT, WorkerRegistered) == []


def test_a_forged_heartbeat_is_no_sign_of_life(network: Callable[..., Network]) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1")
    net.freeze(b"w1")
    silent_since = net.now
    forged = FrameCodec(OTHER_KEY).encode(Heartbeat(1.0, 3))
    while net.now < silent_since + 3.5:
        net.inject_to_client(b"w1", forged)
        net.run(0.25)
    gone = net.timed_events(CLIENT, WorkerGone)
    assert [e.peer for _, e in gone] == [b"w1"]
    assert gone[0][0] <= silent_since + 3.0 + 0.002


def test_signed_calls_flow_both_ways_between_peers_with_the_same_key(
    network: Callable[..., Network],
) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1")
    net.client_send(b"w1", Command.REQUEST, [Entry(7, 0, b"call")])
    net.deliver()
    assert net.events(b"w1", CallsReceived) == [CallsReceived(Command.REQUEST, (Entry(7, 0, b"call"),))]
    net.worker_send(b"w1", Command.REPLY, [Entry(7, 0, b"result")])
    net.deliver()
    assert net.events(CLIENT, CallsReceived) == [
        CallsReceived(Command.REPLY, (Entry(7, 0, b"result"),), b"w1")
    ]
