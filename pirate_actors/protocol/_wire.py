"""The wire format: one ZeroMQ frame per message, encoded, signed and checked here.

A message is ``SIGNATURE + COMMAND + body`` and, with a key, ``+ SEAL + MAC``: one frame,
because every extra frame costs a GIL round trip in pyzmq (~12 us per frame per side, measured).
The seal (the sender's and receiver's session nonces and the sender's sequence number) is what
lets a session tell a replayed message from a fresh one; the MAC covers it. Decoding checks
size, signature, MAC and shape and never unpickles: bodies stay opaque bytes. The sizes every
layer budgets with (:data:`CALLS_HEADER`, :data:`ENTRY_HEADER`, :data:`TRAILER_SIZE`) are
defined here and only here.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from typing import NamedTuple, Sequence, Union

Buffer = Union[bytes, memoryview]
"""A frame or a body as received: bytes, or for a large one a view of the frame (no copy)."""

from .._errors import AuthenticationError, ProtocolError

__all__ = [
    "CALLS_HEADER",
    "Capacity",
    "EVENT_HEADER",
    "EventEntry",
    "Events",
    "Buffer",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ENTRY_HEADER",
    "MAC_SIZE",
    "NO_SEAL",
    "SEAL_SIZE",
    "SIGNATURE",
    "SIGNED",
    "Seal",
    "TRAILER_SIZE",
    "VIEW_SIZE",
    "DEADLINE",
    "RETRYABLE",
    "SESSION_SIZE",
    "STARTED",
    "Calls",
    "Command",
    "Disconnect",
    "Entry",
    "Flag",
    "FrameCodec",
    "Heartbeat",
    "MalformedCalls",
    "Message",
    "Ready",
    "check_settings",
    "deadline_head",
    "split_deadline",
    "with_deadline",
]

SIGNATURE = b"PIRATE-ACTORS/4"
"""First bytes of every message: the protocol name and major version."""

DEFAULT_MAX_MESSAGE_SIZE = 64 * 2**20

_ENTRY = struct.Struct("!QBI")  # request id, flags, body length
_COUNT = struct.Struct("!I")  # entries in a call-carrying message
_BODY = len(SIGNATURE) + 1  # where the body starts: after the signature and the command byte
_HEARTBEAT = struct.Struct("!dI")  # interval in seconds, liveness
_HEARTBEAT_SIZED = struct.Struct("!dIQ")  # ... and the sender's max_message_size
_HEARTBEAT_SESSION = struct.Struct("!dIQ16s")  # ... and the client's session id
_EVENT = struct.Struct("!HdI")  # topic length, emit time, data length
_CAPACITY = struct.Struct("!I")
_DEADLINE = struct.Struct("!d")  # a REQUEST's seconds left, before its body (Flag.DEADLINE)
VIEW_SIZE = 2**16
"""Bodies (and, in ``drain``, frames) from this size on stay views of the frame they came in
rather than copies: a 1 MiB payload is not copied on its way to ``pickle.loads``."""
SESSION_SIZE = _HEARTBEAT_SESSION.size - _HEARTBEAT_SIZED.size
"""Bytes of a client's session id (random per Client, sent in its HEARTBEATs)."""

_SEAL = struct.Struct("!QQQ")  # sender's session nonce, receiver's, sender's sequence number
MAC_SIZE = 32
"""Bytes of the HMAC-SHA256 that ends every message when a key is set."""
SEAL_SIZE = _SEAL.size
"""Bytes of the seal a signed message carries before its MAC."""
TRAILER_SIZE = SEAL_SIZE + MAC_SIZE
"""Bytes a key adds to every message: the seal and the MAC."""
SIGNED = 0x80
"""Set in the command byte of a signed message: a peer without the key can say why it drops
it, and a peer with the key can tell an unsigned message from a forged one."""
CALLS_HEADER = _BODY + _COUNT.size
"""Bytes of a call-carrying message before its first entry header: signature, command, count."""
ENTRY_HEADER = _ENTRY.size
"""Bytes each entry adds besides its body: request id, flags, body length."""
EVENT_HEADER = _EVENT.size
"""Bytes each event adds besides its topic and data: their lengths and the emit time."""


class Command(enum.IntEnum):
    """The command byte, right after the signature."""

    READY = 1
    REQUEST = 2
    PARTIAL = 3
    REPLY = 4
    ERROR = 5
    CANCEL = 6
    HEARTBEAT = 7
    DISCONNECT = 8
    EVENT = 9
    """Worker → client: events, which belong to no call."""
    CAPACITY = 10
    """Worker → client: the calls the worker now offers this client (several clients share it)."""


class Flag(enum.IntFlag):
    """Per-entry flags of call-carrying commands."""

    NONE = 0
    STARTED = 1
    """PARTIAL: this entry is the ``"started"`` marker (empty body). REPLY/ERROR: ``"started"``
    precedes this reply and was not sent on its own."""
    RETRYABLE = 2
    """REQUEST: the client may send this call again if it loses the worker; the worker keeps
    its outcome for ``result_ttl`` so a repeat is answered without running it again."""
    DEADLINE = 4
    """REQUEST: the body begins with ``!d``, the seconds left before the call's deadline."""


STARTED = int(Flag.STARTED)
"""``Flag.STARTED`` as a plain int, for the hot path (IntFlag arithmetic costs ~1 µs)."""
RETRYABLE = int(Flag.RETRYABLE)
DEADLINE = int(Flag.DEADLINE)


def deadline_head(seconds_left: float) -> bytes:
    """What goes before a REQUEST's body to carry its deadline (``Entry.head``; set
    ``Flag.DEADLINE`` on the entry)."""
    return _DEADLINE.pack(seconds_left)


def with_deadline(body: bytes, seconds_left: float) -> bytes:
    """A REQUEST body carrying its deadline, in one piece (as a worker receives it)."""
    return deadline_head(seconds_left) + body


def split_deadline(body: Buffer) -> tuple[float, Buffer]:
    """Seconds left and the call body of a ``Flag.DEADLINE`` entry; ProtocolError if short."""
    if len(body) < _DEADLINE.size:
        raise ProtocolError("a REQUEST with a deadline is too short to carry it")
    (seconds,) = _DEADLINE.unpack_from(body)
    if seconds != seconds:  # NaN
        raise ProtocolError("a REQUEST's deadline is not a number")
    return seconds, body[_DEADLINE.size:]

_CALL_COMMANDS = frozenset(
    {Command.REQUEST, Command.PARTIAL, Command.REPLY, Command.ERROR, Command.CANCEL}
)
_COMMAND_BYTES = {c: bytes([c]) for c in Command}
_SIGNED_BYTES = {c: bytes([c | SIGNED]) for c in Command}


class Seal(NamedTuple):
    """What a signed message says about its session: who sent it, to whom, and its number.

    ``sender`` and ``receiver`` are the two ends' random session nonces (0: not known yet, as in
    a READY), ``seq`` counts the sender's messages in that session from 1. A receiver accepts a
    message only for its current session and only with a number above the last it accepted."""

    sender: int
    receiver: int
    seq: int


NO_SEAL = Seal(0, 0, 0)


@dataclass(slots=True)
class Entry:
    """One call's part of a message: its request id, flags and opaque (pickled) body."""

    request_id: int
    flags: int = 0
    body: Buffer = b""
    head: bytes = b""
    """Sent just before the body and counted in its length (a REQUEST's deadline): the body
    itself, maybe large, is never copied to prepend it. A received entry has none."""

    @property
    def size(self) -> int:
        """Bytes of the body on the wire (with its head)."""
        return len(self.head) + len(self.body)


@dataclass(frozen=True)
class Ready:
    """A worker announces itself: who it is, how many calls it holds, and its heartbeat."""

    name: str
    capacity: int
    heartbeat: float
    liveness: int
    procedures: tuple[str, ...]
    incarnation: int = 0
    """Bumped each time the worker abandons its calls; a repeated READY with the same value is
    a duplicate, a new value means the calls the client sent before are lost."""
    max_message_size: int = 0
    """The largest message the worker accepts (0: not said)."""
    idempotent: tuple[str, ...] = ()
    """Procedures safe to run twice: the client may send a lost call to them again."""
    id: str = ""
    """The worker's own id (``WorkerInfo.id``), the same over all its connections (its
    routing id is new for each, so a stale connection never blocks a fresh one)."""
    lane: int = 0
    """Which of the worker's endpoints this connection is for: with ``id``, it names the
    connection, so two endpoints that reach the same client never replace each other."""


@dataclass(frozen=True)
class Heartbeat:
    """A sign of life carrying the sender's heartbeat interval and liveness."""

    heartbeat: float
    liveness: int
    max_message_size: int = 0
    """The largest message the sender accepts (0: not said, as in a 12-byte body)."""
    session: bytes = b""
    """A client's session id (``SESSION_SIZE`` bytes; empty: not said, as in a 20-byte body)."""


@dataclass(frozen=True)
class Disconnect:
    """The sender is leaving. ``final`` is False for a worker that still finishes running calls."""

    final: bool = True


@dataclass(slots=True)
class Calls:
    """REQUEST, PARTIAL, REPLY, ERROR or CANCEL for one or more calls."""

    command: Command
    entries: tuple[Entry, ...]


@dataclass(slots=True)
class EventEntry:
    """One event: its topic, the worker's ``time.time()`` at ``emit``, and its pickled data."""

    topic: str
    time: float
    data: bytes


@dataclass(slots=True)
class Events:
    """EVENT: one or more events, in the order they were emitted."""

    entries: tuple[EventEntry, ...]


@dataclass(frozen=True)
class Capacity:
    """CAPACITY: how many calls the worker now holds for this client at most."""

    capacity: int


Message = Union[Ready, Heartbeat, Disconnect, Calls, Events, Capacity]


class MalformedCalls(ProtocolError):
    """A call-carrying message whose request ids could be read but whose rest is malformed."""

    def __init__(self, message: str, command: Command, request_ids: tuple[int, ...]) -> None:
        super().__init__(message)
        self.command = command
        self.request_ids = request_ids
        self.seal: Seal | None = None
        """The message's seal, when it was signed (a session still judges its freshness)."""


def _mac(key: bytes, data: bytes | memoryview) -> bytes:
    """HMAC-SHA256 of everything in the message before the MAC."""
    return hmac.digest(key, data, hashlib.sha256)


class FrameCodec:
    """Encodes messages to frames and decodes frames to messages, signing and checking them.

    A message is a single frame; ``encode`` returns it in a list, ``decode`` takes the list
    the socket read (so a message of several frames is refused, not joined). Decoding checks
    the size, the signature, the HMAC (with ``hmac.compare_digest``) and the shape of the body;
    it never unpickles anything (bodies stay opaque bytes). With several keys, messages are
    signed with the first and accepted when any of them verifies (key rotation).
    """

    def __init__(
        self, key: bytes | Sequence[bytes] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.keys: tuple[bytes, ...] = (
            () if key is None else (key,) if isinstance(key, bytes) else tuple(key))
        self.key: bytes | None = self.keys[0] if self.keys else None
        """The key messages are signed with (None: unsigned)."""
        self.max_message_size = max_message_size
        self._trailer = TRAILER_SIZE if self.keys else 0
        self._command_bytes = _SIGNED_BYTES if self.keys else _COMMAND_BYTES

    def overhead(self, entries: int = 1) -> int:
        """Bytes a call-carrying message of ``entries`` entries adds to their bodies."""
        return CALLS_HEADER + entries * ENTRY_HEADER + self._trailer

    def room(self, limit: int | None = None) -> int:
        """Bytes a call-carrying message has for its entries (each ``ENTRY_HEADER`` + body)
        within ``limit`` (default: ours)."""
        return (self.max_message_size if limit is None else limit) - self.overhead(0)

    def max_body(self, limit: int | None = None) -> int:
        """The largest body a one-entry message can carry within ``limit`` (default: ours)."""
        return self.room(limit) - ENTRY_HEADER

    def encode(self, message: Message, seal: Seal = NO_SEAL) -> list[bytes]:
        """The frame for ``message`` (with ``seal`` when signed); raises :class:`ProtocolError`
        if it exceeds the size cap."""
        commands = self._command_bytes
        if isinstance(message, Calls):
            entries = message.entries
            parts: list[Buffer] = [SIGNATURE, commands[message.command], _COUNT.pack(len(entries))]
            parts += [_ENTRY.pack(e.request_id, e.flags, len(e.head) + len(e.body)) for e in entries]
            for e in entries:
                if e.head:
                    parts.append(e.head)
                parts.append(e.body)
        elif isinstance(message, Heartbeat):
            _check_heartbeat(message.heartbeat, message.liveness)
            if message.session:
                if len(message.session) != SESSION_SIZE:
                    raise ProtocolError(f"a session id is {SESSION_SIZE} bytes")
                body = _HEARTBEAT_SESSION.pack(
                    message.heartbeat, message.liveness, message.max_message_size, message.session)
            elif message.max_message_size:
                body = _HEARTBEAT_SIZED.pack(message.heartbeat, message.liveness, message.max_message_size)
            else:
                body = _HEARTBEAT.pack(message.heartbeat, message.liveness)
            parts = [SIGNATURE, commands[Command.HEARTBEAT], body]
        elif isinstance(message, Ready):
            _check_heartbeat(message.heartbeat, message.liveness)
            info = {
                "name": message.name,
                "capacity": message.capacity,
                "heartbeat": message.heartbeat,
                "liveness": message.liveness,
                "procedures": list(message.procedures),
                "incarnation": message.incarnation,
                "max_message_size": message.max_message_size,
            }
            if message.idempotent:
                info["idempotent"] = list(message.idempotent)
            if message.id:
                info["id"] = message.id
                info["lane"] = message.lane
            parts = [SIGNATURE, commands[Command.READY], json.dumps(info).encode()]
        elif isinstance(message, Events):
            events = message.entries
            topics = [e.topic.encode() for e in events]
            parts = [SIGNATURE, commands[Command.EVENT], _COUNT.pack(len(events))]
            parts += [_EVENT.pack(len(t), e.time, len(e.data)) for t, e in zip(topics, events)]
            for topic, event in zip(topics, events):
                parts += [topic, event.data]
        elif isinstance(message, Capacity):
            parts = [SIGNATURE, commands[Command.CAPACITY], _CAPACITY.pack(message.capacity)]
        else:
            parts = [SIGNATURE, commands[Command.DISCONNECT], b"\x01" if message.final else b"\x00"]
        if self.key is not None:
            parts.append(_SEAL.pack(*seal))
        frame = b"".join(parts)
        size = len(frame) + (MAC_SIZE if self.key else 0)
        if size > self.max_message_size:
            raise ProtocolError(
                f"message of {size} bytes exceeds max_message_size ({self.max_message_size})"
            )
        if self.key is not None:
            frame += _mac(self.key, frame)
        return [frame]

    def decode(self, frames: Sequence[Buffer]) -> Message:
        """The message in ``frames``; raises :class:`ProtocolError` or :class:`AuthenticationError`."""
        return self.open(frames)[0]

    def open(self, frames: Sequence[Buffer]) -> tuple[Message, Seal | None]:
        """The message in ``frames`` and its seal (None without a key); raises
        :class:`ProtocolError` or :class:`AuthenticationError`."""
        if len(frames) != 1:
            size = sum(len(f) for f in frames)
            if size > self.max_message_size:
                raise ProtocolError(f"message of {size} bytes exceeds max_message_size")
            raise ProtocolError(f"a message is one frame, not {len(frames)}")
        frame = frames[0]
        size = len(frame)
        if size > self.max_message_size:
            raise ProtocolError(f"message of {size} bytes exceeds max_message_size")
        if size < _BODY or frame[:_BODY - 1] != SIGNATURE:
            raise ProtocolError(f"not a {SIGNATURE.decode()} message (it begins {bytes(frame[:32])!r})")
        end = size
        byte = frame[_BODY - 1]
        seal = None
        if self.keys:
            if not byte & SIGNED:
                raise AuthenticationError(
                    "the message is not signed: the peer has no key (give both sides the same key)")
            end -= TRAILER_SIZE
            if end < _BODY:
                raise AuthenticationError("the message is too short to carry its seal and MAC")
            view = memoryview(frame)
            signed, mac = view[:size - MAC_SIZE], view[size - MAC_SIZE:]
            for key in self.keys:
                if hmac.compare_digest(_mac(key, signed), mac):
                    break
            else:
                raise AuthenticationError(
                    "bad signature (HMAC): the peer signs with another key")
            seal = Seal._make(_SEAL.unpack_from(frame, end))
        elif byte & SIGNED:
            raise AuthenticationError(
                "the message is signed (HMAC) but this side has no key: give both sides the same key")
        command = _COMMANDS.get(byte & ~SIGNED)
        if command is None:
            raise ProtocolError(f"unknown command byte {byte}")
        if command in _CALL_COMMANDS:
            try:
                return _decode_calls(command, memoryview(frame)[_BODY:end]), seal
            except MalformedCalls as exc:
                exc.seal = seal
                raise
        return self._decode_other(command, bytes(frame[_BODY:end])), seal

    @staticmethod
    def _decode_other(command: Command, payload: bytes) -> Message:
        if command is Command.HEARTBEAT:
            if len(payload) == _HEARTBEAT_SESSION.size:
                interval, liveness, max_size, session = _HEARTBEAT_SESSION.unpack(payload)
                return Heartbeat(*_check_heartbeat(interval, liveness), max_size, session)
            if len(payload) == _HEARTBEAT_SIZED.size:
                interval, liveness, max_size = _HEARTBEAT_SIZED.unpack(payload)
                return Heartbeat(*_check_heartbeat(interval, liveness), max_size)
            if len(payload) != _HEARTBEAT.size:
                raise ProtocolError("HEARTBEAT body has the wrong size")
            interval, liveness = _HEARTBEAT.unpack(payload)
            return Heartbeat(*_check_heartbeat(interval, liveness))
        if command is Command.DISCONNECT:
            if payload not in (b"\x00", b"\x01"):
                raise ProtocolError("DISCONNECT body must be one byte 0 or 1")
            return Disconnect(final=payload == b"\x01")
        if command is Command.EVENT:
            return _decode_events(payload)
        if command is Command.CAPACITY:
            if len(payload) != _CAPACITY.size:
                raise ProtocolError("CAPACITY body has the wrong size")
            return Capacity(_CAPACITY.unpack(payload)[0])
        return _decode_ready(payload)


_COMMANDS = {int(c): c for c in Command}  # a dict lookup is ~20x cheaper than Command(byte)


def check_settings(heartbeat: float, liveness: int) -> None:
    """Raise ``ValueError`` for heartbeat settings a peer would refuse (0.001–3600 s), and for
    liveness below 2: a peer heartbeating every interval and judged after one interval would
    be declared dead by any delay at all."""
    try:
        _check_heartbeat(heartbeat, liveness)
    except ProtocolError as exc:
        raise ValueError(f"heartbeat must be 0.001-3600 s and liveness 2-1000: {exc}") from None
    if liveness < 2:
        raise ValueError("liveness must be at least 2 (1 declares any late heartbeat a death)")


def _check_heartbeat(interval: object, liveness: object) -> tuple[float, int]:
    if (
        not isinstance(interval, (int, float)) or isinstance(interval, bool)
        or not 0.001 <= interval <= 3600.0
        or not isinstance(liveness, int) or isinstance(liveness, bool)
        or not 1 <= liveness <= 1000
    ):
        raise ProtocolError(f"heartbeat settings out of range: {interval!r} s x {liveness!r}")
    return float(interval), liveness


def _decode_ready(payload: bytes) -> Ready:
    try:
        info = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"READY body is not JSON: {exc!r:.200}") from None
    if not isinstance(info, dict):
        raise ProtocolError("READY body is not a JSON object")
    name, capacity, procedures = info.get("name"), info.get("capacity"), info.get("procedures")
    if (
        not isinstance(name, str)
        or not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1
        or not isinstance(procedures, list)
        or not all(isinstance(p, str) for p in procedures)
    ):
        raise ProtocolError("READY body lacks name, capacity or procedures")
    incarnation = info.get("incarnation", 0)
    if not isinstance(incarnation, int) or isinstance(incarnation, bool):
        raise ProtocolError("READY incarnation is not an integer")
    interval, liveness = _check_heartbeat(info.get("heartbeat"), info.get("liveness"))
    max_size = info.get("max_message_size", 0)
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0:
        raise ProtocolError("READY max_message_size is not a size")
    idempotent = info.get("idempotent", [])
    if not isinstance(idempotent, list) or not all(isinstance(p, str) for p in idempotent):
        raise ProtocolError("READY idempotent is not a list of procedure names")
    worker_id = info.get("id", "")
    if not isinstance(worker_id, str) or len(worker_id) > 255:
        raise ProtocolError("READY id is not a short string")
    lane = info.get("lane", 0)
    if not isinstance(lane, int) or isinstance(lane, bool) or lane < 0:
        raise ProtocolError("READY lane is not a number")
    return Ready(name, capacity, interval, liveness, tuple(procedures), incarnation, max_size,
                 tuple(idempotent), worker_id, lane)


def _decode_events(body: bytes) -> Events:
    """``count``, ``count`` event headers, then each event's topic and data in header order."""
    count = _COUNT.unpack_from(body)[0] if len(body) >= _COUNT.size else 0
    data_at = _COUNT.size + count * _EVENT.size
    if not count or len(body) < data_at:
        raise ProtocolError("EVENT has no readable header")
    header = list(_EVENT.iter_unpack(body[_COUNT.size:data_at]))
    if len(body) - data_at != sum(h[0] + h[2] for h in header):
        raise ProtocolError("EVENT lengths do not match its body")
    entries = []
    offset = data_at
    for topic_length, when, data_length in header:
        try:
            topic = body[offset:offset + topic_length].decode()
        except UnicodeDecodeError:
            raise ProtocolError("an EVENT topic is not UTF-8") from None
        offset += topic_length
        entries.append(EventEntry(topic, when, body[offset:offset + data_length]))
        offset += data_length
    return Events(tuple(entries))


def _decode_calls(command: Command, body: memoryview) -> Calls:
    """``count``, ``count`` entry headers, then the entries' bodies in header order."""
    count = _COUNT.unpack_from(body)[0] if len(body) >= _COUNT.size else 0
    bodies_at = _COUNT.size + count * _ENTRY.size
    if not count or len(body) < bodies_at:
        raise ProtocolError(f"{command.name} has no readable entry header")
    header = list(_ENTRY.iter_unpack(body[_COUNT.size:bodies_at]))
    if len(body) - bodies_at != sum(h[2] for h in header) or (
        command is Command.CANCEL and len(body) != bodies_at
    ):
        ids = tuple(h[0] for h in header)
        raise MalformedCalls(f"{command.name} entry lengths do not match its body", command, ids)
    entries = []
    offset = bodies_at
    for request_id, flags, length in header:
        chunk = body[offset:offset + length]
        entries.append(Entry(request_id, flags, chunk if length >= VIEW_SIZE else chunk.tobytes()))
        offset += length
    return Calls(command, tuple(entries))
