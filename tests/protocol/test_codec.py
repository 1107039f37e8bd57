"""FrameCodec: every command's frame, round trips with and without a key, batches, size caps.

The byte layouts asserted here are the ones ``docs/protocol.md`` documents."""

from __future__ import annotations

import json
import pickle
import struct
from typing import Any

import pytest

from pirate_actors import _codec
from pirate_actors._errors import AuthenticationError, ProtocolError
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

pytestmark = pytest.mark.timeout(10)

KEY = b"k" * 32

READY = Ready("w-1", 8, 0.25, 4, ("compare", "ping"), incarnation=3)

MESSAGES: dict[str, Any] = {
    "READY": READY,
    "REQUEST": Calls(Command.REQUEST, (Entry(1, 0, _codec.dumps(("ping", (), {}))),)),
    "PARTIAL": Calls(Command.PARTIAL, (Entry(2, 0, _codec.dumps("halfway?")),)),
    "PARTIAL started": Calls(Command.PARTIAL, (Entry(2, Flag.STARTED, b""),)),
    "REPLY": Calls(Command.REPLY, (Entry(3, 0, _codec.dumps([True, 1])),)),
    "REPLY with started": Calls(Command.REPLY, (Entry(3, Flag.STARTED, _codec.dumps(None)),)),
    "ERROR": Calls(Command.ERROR, (Entry(4, 0, _codec.dump_error("unknown", "UnknownProcedure", "nope")),)),
    "CANCEL": Calls(Command.CANCEL, (Entry(5),)),
    "HEARTBEAT": Heartbeat(0.5, 3),
    "DISCONNECT final": Disconnect(True),
    "DISCONNECT leaving": Disconnect(False),
}

COMMAND_OF = {
    "READY": Command.READY, "REQUEST": Command.REQUEST, "PARTIAL": Command.PARTIAL,
    "PARTIAL started": Command.PARTIAL, "REPLY": Command.REPLY, "REPLY with started": Command.REPLY,
    "ERROR": Command.ERROR, "CANCEL": Command.CANCEL, "HEARTBEAT": Command.HEARTBEAT,
    "DISCONNECT final": Command.DISCONNECT, "DISCONNECT leaving": Command.DISCONNECT,
}



def split(frames: list[bytes], key: bytes | None = None) -> tuple[bytes, int, bytes, bytes]:
    """A message's one frame as (signature, command, body, MAC), per docs/protocol.md: with a
    key, the command byte has its 0x80 bit set and the body is followed by a 24-byte seal
    (asserted separately) and the MAC."""
    [frame] = frames
    body_end = len(frame) - 56 if key else len(frame)
    command = frame[15]
    assert bool(command & 0x80) == bool(key)
    return frame[:15], command & 0x7F, frame[16:body_end], frame[body_end + 24 if key else body_end:]


def calls_body(*entries: Entry) -> bytes:
    """The documented body of a call-carrying message: count, headers, then the bodies."""
    header = b"".join(struct.pack("!QBI", e.request_id, e.flags, len(e.body)) for e in entries)
    return struct.pack("!I", len(entries)) + header + b"".join(e.body for e in entries)


@pytest.mark.parametrize("key", [None, KEY], ids=["no key", "key"])
@pytest.mark.parametrize("name", list(MESSAGES))
def test_every_command_round_trips_through_encode_and_decode(name: str, key: bytes | None) -> None:
    codec = FrameCodec(key)
    assert codec.decode(codec.encode(MESSAGES[name])) == MESSAGES[name]


@pytest.mark.parametrize("key", [None, KEY], ids=["no key", "key"])
@pytest.mark.parametrize("name", list(MESSAGES))
def test_every_message_is_one_frame_the_signature_a_command_byte_its_body_and_a_mac_with_a_key(
    name: str, key: bytes | None
) -> None:
    frames = FrameCodec(key).encode(MESSAGES[name])
    assert len(frames) == 1 and isinstance(frames[0], bytes)
    signature, command, body, mac = split(frames, key)
    assert signature == SIGNATURE == b"PIRATE-ACTORS/4"
    assert command == COMMAND_OF[name]
    assert len(mac) == (32 if key else 0)
    assert FrameCodec(key).encode(MESSAGES[name]) == frames  # deterministic


def test_command_bytes_are_the_documented_values() -> None:
    assert {c.name: c.value for c in Command} == {
        "READY": 1, "REQUEST": 2, "PARTIAL": 3, "REPLY": 4,
        "ERROR": 5, "CANCEL": 6, "HEARTBEAT": 7, "DISCONNECT": 8, "EVENT": 9, "CAPACITY": 10,
    }
    assert (int(Flag.STARTED), int(Flag.RETRYABLE), int(Flag.DEADLINE)) == (1, 2, 4)


def test_a_call_body_is_a_count_then_request_id_flags_and_body_length_in_network_byte_order() -> None:
    body = b"\x80\x05payload"
    frames = FrameCodec().encode(Calls(Command.REPLY, (Entry(2**40 + 7, Flag.STARTED, body),)))
    _, _, message_body, _ = split(frames)
    assert message_body == struct.pack("!I", 1) + struct.pack("!QBI", 2**40 + 7, 1, len(body)) + body
    assert len(message_body) == 4 + 13 + len(body)


def test_a_batch_carries_several_calls_in_one_message_headers_then_concatenated_bodies() -> None:
    entries = (Entry(10, 0, b"aaa"), Entry(11, Flag.STARTED, b""), Entry(12, 0, b"cccccc"))
    codec = FrameCodec(KEY)
    frames = codec.encode(Calls(Command.REPLY, entries))
    _, _, body, _ = split(frames, KEY)
    assert body == calls_body(*entries)
    assert body.endswith(b"aaacccccc")
    decoded = codec.decode(frames)
    assert isinstance(decoded, Calls)
    assert decoded.entries == entries  # in the order they were batched


def test_a_batch_of_a_thousand_requests_round_trips_in_order() -> None:
    entries = tuple(Entry(i, 0, _codec.dumps(("ping", (i,), {}))) for i in range(1000))
    codec = FrameCodec(KEY)
    assert codec.decode(codec.encode(Calls(Command.REQUEST, entries))) == Calls(Command.REQUEST, entries)


def test_cancel_has_only_the_count_and_entry_headers_and_no_bodies() -> None:
    _, _, body, _ = split(FrameCodec().encode(Calls(Command.CANCEL, (Entry(5), Entry(6)))))
    assert body == struct.pack("!I", 2) + struct.pack("!QBI", 5, 0, 0) + struct.pack("!QBI", 6, 0, 0)


def test_heartbeat_body_is_the_senders_interval_as_a_double_and_liveness_as_an_unsigned_int() -> None:
    _, _, body, _ = split(FrameCodec().encode(Heartbeat(0.1, 7)))
    assert body == struct.pack("!dI", 0.1, 7)
    assert len(body) == 12


@pytest.mark.parametrize("final, byte", [(True, b"\x01"), (False, b"\x00")])
def test_disconnect_body_is_one_byte_1_for_gone_and_0_for_leaving(final: bool, byte: bytes) -> None:
    assert split(FrameCodec().encode(Disconnect(final)))[2] == byte


def test_ready_body_is_a_json_object_with_name_capacity_heartbeat_liveness_procedures_incarnation() -> None:
    info = json.loads(split(FrameCodec().encode(READY))[2])
    assert info == {
        "name": "w-1", "capacity": 8, "heartbeat": 0.25, "liveness": 4,
        "procedures": ["compare", "ping"], "incarnation": 3, "max_message_size": 0,
    }


def test_a_ready_without_an_incarnation_counts_as_incarnation_0() -> None:
    body = json.dumps({"name": "old", "capacity": 1, "heartbeat": 1, "liveness": 3, "procedures": []})
    ready = FrameCodec().decode([SIGNATURE + b"\x01" + body.encode()])
    assert ready == Ready("old", 1, 1.0, 3, (), 0)


def test_a_ready_with_fields_it_does_not_know_is_accepted_so_version_2_can_grow() -> None:
    body = json.dumps({
        "name": "new", "capacity": 2, "heartbeat": 0.5, "liveness": 3, "procedures": ["ping"],
        "incarnation": 1, "tags": {"gpu": True},
    })
    ready = FrameCodec().decode([SIGNATURE + b"\x01" + body.encode()])
    assert ready == Ready("new", 2, 0.5, 3, ("ping",), 1)


def test_entry_flags_the_codec_does_not_know_pass_through_untouched() -> None:
    codec = FrameCodec()
    decoded = codec.decode(codec.encode(Calls(Command.PARTIAL, (Entry(1, 0x81, b"x"),))))
    assert isinstance(decoded, Calls) and decoded.entries[0].flags == 0x81


def test_the_request_body_is_cloudpickle_of_procedure_args_and_kwargs_kept_opaque_by_the_codec() -> None:
    body = _codec.dumps(("compare", ("apple", "orange"), {"strict": True}))
    codec = FrameCodec(KEY)
    decoded = codec.decode(codec.encode(Calls(Command.REQUEST, (Entry(1, 0, body),))))
    assert isinstance(decoded, Calls)
    assert decoded.entries[0].body == body  # still bytes: the codec never unpickles
    assert pickle.loads(decoded.entries[0].body) == ("compare", ("apple", "orange"), {"strict": True})


def test_the_codec_never_unpickles_a_body_even_one_that_would_create_a_file(trap: Any) -> None:
    for key in (None, KEY):
        codec = FrameCodec(key)
        for command in (Command.REQUEST, Command.PARTIAL, Command.REPLY, Command.ERROR):
            body, path = trap()
            decoded = codec.decode(codec.encode(Calls(command, (Entry(1, 0, body),))))
            assert isinstance(decoded, Calls) and decoded.entries[0].body == body
            assert not path.exists()


def test_the_codec_never_calls_any_unpickler(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the codec unpickled something")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    codec = FrameCodec(KEY)
    for message in MESSAGES.values():
        codec.decode(codec.encode(message))


# ----------------------------------------------------------------------------- size


def test_encode_refuses_a_message_over_max_message_size_with_protocol_error() -> None:
    message = Calls(Command.REPLY, (Entry(1, 0, b"x" * 1000),))
    size = sum(map(len, FrameCodec().encode(message)))
    with pytest.raises(ProtocolError, match="max_message_size"):
        FrameCodec(None, size - 1).encode(message)
    assert sum(map(len, FrameCodec(None, size).encode(message))) == size  # the cap itself is allowed


def test_the_size_cap_counts_the_whole_message_including_the_mac() -> None:
    message = Heartbeat(1.0, 3)
    size = sum(map(len, FrameCodec(KEY).encode(message)))
    assert size == len(SIGNATURE) + 1 + 12 + 24 + 32  # signature, command, body, seal, MAC
    with pytest.raises(ProtocolError):
        FrameCodec(KEY, size - 1).encode(message)
    FrameCodec(KEY, size).encode(message)


def test_decode_refuses_a_message_over_max_message_size_with_protocol_error() -> None:
    frames = FrameCodec(KEY).encode(Calls(Command.REQUEST, (Entry(1, 0, b"x" * 1000),)))
    size = sum(map(len, frames))
    assert FrameCodec(KEY, size).decode(frames)
    with pytest.raises(ProtocolError, match="max_message_size") as caught:
        FrameCodec(KEY, size - 1).decode(frames)
    assert not isinstance(caught.value, AuthenticationError)


def test_the_size_is_checked_before_the_mac_so_an_oversize_message_costs_no_hmac(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pirate_actors.protocol import _wire as protocol

    frames = FrameCodec(KEY).encode(Calls(Command.REQUEST, (Entry(1, 0, b"x" * 1000),)))
    monkeypatch.setattr(protocol, "_mac", lambda *a: pytest.fail("computed a MAC"))
    with pytest.raises(ProtocolError, match="max_message_size"):
        FrameCodec(KEY, 100).decode(frames)


def test_the_default_max_message_size_is_64_mib() -> None:
    assert FrameCodec().max_message_size == 64 * 2**20


# ----------------------------------------------------------------------------- gaps


@pytest.mark.parametrize(
    "message",
    [Heartbeat(0.0005, 3), Heartbeat(7200.0, 3), Heartbeat(1.0, 5000),
     Ready("w", 1, 1.0, 5000, ()), Ready("w", 1, 0.0005, 3, ())],
    ids=["hb 0.5 ms", "hb 2 h", "liveness 5000", "READY liveness 5000", "READY hb 0.5 ms"],
)
def test_encode_never_produces_heartbeat_settings_that_decode_rejects(message: Any) -> None:
    codec = FrameCodec()
    try:
        frames = codec.encode(message)
    except (ProtocolError, ValueError):
        return  # refused where it is made: fine
    codec.decode(frames)  # otherwise the peer must accept it


# ----------------------------------------------------------------------------- the document


def test_docs_protocol_md_gives_every_command_its_byte_and_the_layouts_the_code_uses() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    for command in Command:
        assert f"| 0x{command.value:02x} | {command.name}" in doc
    for fact in ("PIRATE-ACTORS/3", "!QBI", "!I", "!dI", "HMAC-SHA256", "compare_digest", "STARTED",
                 "incarnation", "max_message_size", "zmq.MAXMSGSIZE", "one frame"):
        assert fact in doc


def test_a_heartbeat_may_carry_the_senders_max_message_size_in_a_20_byte_body() -> None:
    frames = FrameCodec().encode(Heartbeat(0.5, 3, 4096))
    assert split(frames)[2] == struct.pack("!dIQ", 0.5, 3, 4096)
    assert FrameCodec().decode(frames) == Heartbeat(0.5, 3, 4096)
    assert FrameCodec().decode(FrameCodec().encode(Heartbeat(0.5, 3))) == Heartbeat(0.5, 3, 0)


def test_ready_carries_the_workers_max_message_size() -> None:
    ready = Ready("w", 1, 1.0, 3, ("ping",), 0, 4096)
    assert FrameCodec().decode(FrameCodec().encode(ready)) == ready
