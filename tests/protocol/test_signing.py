"""HMAC-SHA256 signing: what is signed, what is rejected, how it is counted, and that the check
comes before anything is parsed or unpickled (SPEC §6)."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
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
    Seal,
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


def documented_mac(key: bytes, data: bytes) -> bytes:
    """The MAC as docs/protocol.md describes it, written independently of the code."""
    return hmac.new(key, data, hashlib.sha256).digest()


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_signed_message_ends_with_hmac_sha256_over_everything_before_it(message: Any) -> None:
    seal = Seal(0x1122334455667788, 0x99AABBCCDDEEFF01, 42)
    [frame] = FrameCodec(KEY).encode(message, seal)
    assert frame[-32:] == documented_mac(KEY, frame[:-32])
    assert frame[-56:-32] == struct.pack("!QQQ", *seal)  # the seal, just before the MAC
    [unsigned] = FrameCodec(None).encode(message)
    # The same message with the command byte's SIGNED bit (0x80), then the seal and the MAC.
    assert frame[:15] == unsigned[:15] and frame[15] == unsigned[15] | 0x80
    assert frame[16:-56] == unsigned[16:]


def test_open_returns_the_seal_a_message_was_signed_with() -> None:
    seal = Seal(7, 8, 9)
    codec = FrameCodec(KEY)
    assert codec.open(codec.encode(Heartbeat(1.0, 3), seal)) == (Heartbeat(1.0, 3), seal)
    assert FrameCodec(None).open(FrameCodec(None).encode(Heartbeat(1.0, 3))) == (Heartbeat(1.0, 3), None)


def test_with_several_keys_messages_are_signed_with_the_first_and_accepted_with_any() -> None:
    rotating = FrameCodec((KEY, OTHER_KEY))
    [frame] = rotating.encode(Heartbeat(1.0, 3))
    assert frame[-32:] == documented_mac(KEY, frame[:-32])  # signed with the first
    for old_or_new in (KEY, OTHER_KEY):
        assert rotating.decode(FrameCodec(old_or_new).encode(Heartbeat(1.0, 3))) == Heartbeat(1.0, 3)
    with pytest.raises(AuthenticationError, match="another key"):
        rotating.decode(FrameCodec(b"a-third-key-nobody-has").encode(Heartbeat(1.0, 3)))


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_message_signed_with_the_same_key_is_accepted(message: Any) -> None:
    assert FrameCodec(KEY).decode(FrameCodec(KEY).encode(message)) == message


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_flipped_bit_anywhere_after_the_signature_is_rejected_as_an_authentication_error(
    message: Any,
) -> None:
    codec = FrameCodec(KEY)
    [frame] = codec.encode(message)
    size = len(frame)
    # The signature (15 bytes) is checked before the MAC; everything after it is signed.
    for position in sorted({15, 16, 20, size // 2, size - 33, size - 32, size - 1}):
        for bit in (0, 7):
            changed = bytearray(frame)
            changed[position] ^= 1 << bit
            with pytest.raises(AuthenticationError):
                codec.decode([bytes(changed)])


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_message_signed_with_another_key_is_rejected(message: Any) -> None:
    with pytest.raises(AuthenticationError, match="HMAC"):
        FrameCodec(KEY).decode(FrameCodec(OTHER_KEY).encode(message))


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_message_without_its_mac_is_rejected_by_a_peer_with_a_key(message: Any) -> None:
    with pytest.raises(AuthenticationError):
        FrameCodec(KEY).decode(FrameCodec(None).encode(message))


def test_a_message_of_only_signature_and_command_is_rejected_by_a_peer_with_a_key() -> None:
    with pytest.raises(AuthenticationError, match="not signed"):
        FrameCodec(KEY).decode([SIGNATURE + bytes([Command.HEARTBEAT])])
    with pytest.raises(AuthenticationError, match="too short to carry its seal and MAC"):
        FrameCodec(KEY).decode([SIGNATURE + bytes([Command.HEARTBEAT | 0x80]) + b"\x00" * 55])


@pytest.mark.parametrize("mac", [b"", b"\x00" * 31, b"\x00" * 32, b"\x00" * 33, b"\x00" * 64])
def test_a_mac_of_any_wrong_value_or_length_is_rejected(mac: bytes) -> None:
    [frame] = FrameCodec(None).encode(Heartbeat(1.0, 3))
    with pytest.raises(AuthenticationError):
        FrameCodec(KEY).decode([frame + mac])


def test_a_signed_message_cut_into_two_frames_is_refused() -> None:
    codec = FrameCodec(KEY)
    [frame] = codec.encode(Calls(Command.REQUEST, (Entry(1, 0, b"abcdef"),)))
    for cut in (15, 16, len(frame) - 32):
        with pytest.raises(ProtocolError, match="one frame"):
            codec.decode([frame[:cut], frame[cut:]])


def test_a_dropped_byte_or_an_added_byte_breaks_the_mac() -> None:
    codec = FrameCodec(KEY)
    [frame] = codec.encode(Calls(Command.REQUEST, (Entry(1, 0, b"abcdef"),)))
    body_at = len(SIGNATURE) + 1
    with pytest.raises(AuthenticationError):
        codec.decode([frame[:body_at] + frame[body_at + 1:]])
    with pytest.raises(AuthenticationError):
        codec.decode([frame[:-32] + b"\x00" + frame[-32:]])


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_a_signed_message_to_a_peer_without_a_key_is_refused_saying_so(message: Any) -> None:
    # SPEC §13: a keyed worker talking to an unkeyed client is told apart from garbage.
    with pytest.raises(AuthenticationError, match="signed .* but this side has no key"):
        FrameCodec(None).decode(FrameCodec(KEY).encode(message))


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_an_unsigned_message_to_a_peer_with_a_key_is_refused_saying_so(message: Any) -> None:
    with pytest.raises(AuthenticationError, match="not signed: the peer has no key"):
        FrameCodec(KEY).decode(FrameCodec(None).encode(message))


def test_the_mac_is_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((bytes(a), bytes(b)))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    codec = FrameCodec(KEY)
    [frame] = codec.encode(Heartbeat(1.0, 3))
    codec.decode([frame])
    assert calls == [(frame[-32:], frame[-32:])]


def test_the_mac_is_checked_before_the_ready_json_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("parsed an unsigned READY"))
    frames = FrameCodec(OTHER_KEY).encode(Ready("w", 1, 1.0, 3, ()))
    with pytest.raises(AuthenticationError):
        FrameCodec(KEY).decode(frames)


def test_a_badly_signed_body_that_would_break_the_parser_is_rejected_as_unauthenticated() -> None:
    data = SIGNATURE + bytes([Command.READY]) + b"[" * 100_000
    with pytest.raises(AuthenticationError):
        FrameCodec(KEY).decode([data + documented_mac(OTHER_KEY, data)])


def test_a_wrong_signature_is_malformed_even_with_a_key_it_is_checked_first() -> None:
    [frame] = FrameCodec(KEY).encode(Heartbeat(1.0, 3))
    older = b"PIRATE-ACTORS/1" + frame[len(SIGNATURE):]
    with pytest.raises(ProtocolError, match="not a PIRATE-ACTORS/4 message") as caught:
        FrameCodec(KEY).decode([older])
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


def test_a_keyed_message_to_a_keyless_peer_is_counted_as_unauthenticated(
    network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    net.inject_to_worker(b"w1", FrameCodec(KEY).encode(Heartbeat(1.0, 3)))
    assert worker.stats.unauthenticated == 1 and worker.stats.malformed == 0
    assert worker.stats.last_drop is not None and "no key" in worker.stats.last_drop[1]


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
