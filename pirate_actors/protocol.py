"""The wire protocol, sans-IO: frames in, events out; no sockets and no clock of its own.

Every message is one ZeroMQ frame, ``SIGNATURE + COMMAND + body + MAC?`` (every extra frame costs
a GIL round trip in pyzmq, measured at ~12 us per frame per side). The socket code hands a message's frames
to :meth:`WorkerProtocol.receive` or :meth:`ClientProtocol.receive` together with the current
time, and gets back events; it asks the same objects for the frames to send. Heartbeats, peer
liveness and (re-)registration live here, so they are tested in memory with a fake clock.
``docs/protocol.md`` describes every frame.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import struct
from dataclasses import dataclass, field, replace
from typing import Sequence, Union

from ._errors import AuthenticationError, ProtocolError

__all__ = [
    "SIGNATURE",
    "ClientProtocol",
    "Command",
    "Entry",
    "Flag",
    "FrameCodec",
    "Heartbeat",
    "Disconnect",
    "Ready",
    "Calls",
    "Message",
    "WorkerProtocol",
    "Peer",
    "Stats",
]

logger = logging.getLogger("pirate_actors.protocol")

SIGNATURE = b"PIRATE-ACTORS/2"
"""First bytes of every message: the protocol name and major version."""

DEFAULT_MAX_MESSAGE_SIZE = 64 * 2**20

_ENTRY = struct.Struct("!QBI")  # request id, flags, body length
_COUNT = struct.Struct("!I")  # entries in a call-carrying message
_BODY = len(SIGNATURE) + 1  # where the body starts: after the signature and the command byte
_HEARTBEAT = struct.Struct("!dI")  # interval in seconds, liveness
_HEARTBEAT_SIZED = struct.Struct("!dIQ")  # ... and the sender's max_message_size
_MAC_SIZE = 32


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


class Flag(enum.IntFlag):
    """Per-entry flags of call-carrying commands."""

    NONE = 0
    STARTED = 1
    """PARTIAL: this entry is the ``"started"`` marker (empty body). REPLY/ERROR: ``"started"``
    precedes this reply and was not sent on its own."""


STARTED = int(Flag.STARTED)
"""``Flag.STARTED`` as a plain int, for the hot path (IntFlag arithmetic costs ~1 µs)."""

_CALL_COMMANDS = frozenset(
    {Command.REQUEST, Command.PARTIAL, Command.REPLY, Command.ERROR, Command.CANCEL}
)
_COMMAND_BYTES = {c: bytes([c]) for c in Command}


@dataclass(slots=True)
class Entry:
    """One call's part of a message: its request id, flags and opaque (pickled) body."""

    request_id: int
    flags: int = 0
    body: bytes = b""


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


@dataclass(frozen=True)
class Heartbeat:
    """A sign of life carrying the sender's heartbeat interval and liveness."""

    heartbeat: float
    liveness: int
    max_message_size: int = 0
    """The largest message the sender accepts (0: not said, as in a 12-byte body)."""


@dataclass(frozen=True)
class Disconnect:
    """The sender is leaving. ``final`` is False for a worker that still finishes running calls."""

    final: bool = True


@dataclass(slots=True)
class Calls:
    """REQUEST, PARTIAL, REPLY, ERROR or CANCEL for one or more calls."""

    command: Command
    entries: tuple[Entry, ...]


Message = Union[Ready, Heartbeat, Disconnect, Calls]


class MalformedCalls(ProtocolError):
    """A call-carrying message whose request ids could be read but whose rest is malformed."""

    def __init__(self, message: str, command: Command, request_ids: tuple[int, ...]) -> None:
        super().__init__(message)
        self.command = command
        self.request_ids = request_ids


def _mac(key: bytes, data: bytes | memoryview) -> bytes:
    """HMAC-SHA256 of everything in the message before the MAC."""
    return hmac.new(key, data, hashlib.sha256).digest()


class FrameCodec:
    """Encodes messages to frames and decodes frames to messages, signing and checking them.

    A message is a single frame; ``encode`` returns it in a list, ``decode`` takes the list
    the socket read (so a message of several frames is refused, not joined). Decoding checks
    the size, the signature, the HMAC (with ``hmac.compare_digest``) and the shape of the body;
    it never unpickles anything (bodies stay opaque bytes).
    """

    def __init__(self, key: bytes | None = None, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE):
        self.key = key
        self.max_message_size = max_message_size

    def encode(self, message: Message) -> list[bytes]:
        """The frame for ``message``; raises :class:`ProtocolError` if it exceeds the size cap."""
        if isinstance(message, Calls):
            entries = message.entries
            parts = [SIGNATURE, _COMMAND_BYTES[message.command], _COUNT.pack(len(entries))]
            parts += [_ENTRY.pack(e.request_id, e.flags, len(e.body)) for e in entries]
            parts += [e.body for e in entries]
        elif isinstance(message, Heartbeat):
            _check_heartbeat(message.heartbeat, message.liveness)
            body = (
                _HEARTBEAT_SIZED.pack(message.heartbeat, message.liveness, message.max_message_size)
                if message.max_message_size
                else _HEARTBEAT.pack(message.heartbeat, message.liveness)
            )
            parts = [SIGNATURE, _COMMAND_BYTES[Command.HEARTBEAT], body]
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
            parts = [SIGNATURE, _COMMAND_BYTES[Command.READY], json.dumps(info).encode()]
        else:
            parts = [SIGNATURE, _COMMAND_BYTES[Command.DISCONNECT], b"\x01" if message.final else b"\x00"]
        frame = b"".join(parts)
        size = len(frame) + (_MAC_SIZE if self.key else 0)
        if size > self.max_message_size:
            raise ProtocolError(
                f"message of {size} bytes exceeds max_message_size ({self.max_message_size})"
            )
        if self.key is not None:
            frame += _mac(self.key, frame)
        return [frame]

    def decode(self, frames: Sequence[bytes]) -> Message:
        """The message in ``frames``; raises :class:`ProtocolError` or :class:`AuthenticationError`."""
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
        if self.key is not None:
            end -= _MAC_SIZE
            if end < _BODY:
                raise AuthenticationError("message carries no MAC")
            view = memoryview(frame)
            if not hmac.compare_digest(_mac(self.key, view[:end]), view[end:]):
                raise AuthenticationError("bad message signature (HMAC)")
        command = _COMMANDS.get(frame[_BODY - 1])
        if command is None:
            raise ProtocolError(f"unknown command byte {frame[_BODY - 1]}")
        if command in _CALL_COMMANDS:
            return _decode_calls(command, memoryview(frame)[_BODY:end])
        payload = frame[_BODY:end]
        if command is Command.HEARTBEAT:
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
    return Ready(name, capacity, interval, liveness, tuple(procedures), incarnation, max_size)


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
        entries.append(Entry(request_id, flags, body[offset:offset + length].tobytes()))
        offset += length
    return Calls(command, tuple(entries))


@dataclass
class Stats:
    """Counters of what a peer's loop dropped."""

    malformed: int = 0
    unauthenticated: int = 0
    received: int = 0
    sent: int = 0


class Peer:
    """Liveness bookkeeping for one remote peer, judged by the interval *it* announced."""

    def __init__(self, now: float, heartbeat: float, liveness: int) -> None:
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.last_received = now
        self.last_sent = now

    @property
    def expiry(self) -> float:
        """When the peer counts as dead if nothing more arrives."""
        return self.last_received + self.heartbeat * self.liveness

    def expired(self, now: float) -> bool:
        return now > self.expiry


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ClientRegistered:
    """Worker side: a client acknowledged our READY; calls may come."""

    heartbeat: float
    liveness: int


@dataclass(frozen=True)
class ClientLost:
    """Worker side: the client is gone (silent, closed, or it no longer knows us)."""

    reason: str
    silent: bool = False
    """True when it fell silent: the socket code should reconnect with a fresh socket."""


@dataclass(slots=True)
class CallsReceived:
    """Calls (REQUEST/PARTIAL/REPLY/ERROR/CANCEL entries) from a peer."""

    command: Command
    entries: tuple[Entry, ...]
    peer: bytes = b""


@dataclass(frozen=True)
class BadCalls:
    """A call-carrying message whose ids could be read but whose rest was malformed."""

    command: Command
    request_ids: tuple[int, ...]
    reason: str
    peer: bytes = b""


@dataclass(frozen=True)
class WorkerRegistered:
    """Client side: a worker (re)announced itself."""

    peer: bytes
    ready: Ready


@dataclass(frozen=True)
class WorkerLeaving:
    """Client side: a worker takes no new calls but still finishes the ones it runs."""

    peer: bytes


@dataclass(frozen=True)
class WorkerGone:
    """Client side: a worker is gone (silent too long, left, or restarted); its calls are lost."""

    peer: bytes
    reason: str


Event = Union[ClientRegistered, ClientLost, CallsReceived, BadCalls,
              WorkerRegistered, WorkerLeaving, WorkerGone]


def _decode_counted(
    codec: FrameCodec, stats: Stats, frames: Sequence[bytes], who: str
) -> Message | BadCalls | None:
    """Decode, or count and log why not; never raises."""
    try:
        return codec.decode(frames)
    except AuthenticationError as exc:
        stats.unauthenticated += 1
        logger.warning("dropped a message from %s: %s", who, exc)
    except MalformedCalls as exc:
        stats.malformed += 1
        logger.warning("dropped a malformed %s from %s: %s", exc.command.name, who, exc)
        return BadCalls(exc.command, exc.request_ids, str(exc))
    except ProtocolError as exc:
        stats.malformed += 1
        logger.warning("dropped a malformed message from %s: %s", who, exc)
    return None


# --------------------------------------------------------------------------- worker


class WorkerProtocol:
    """The worker's side of one connection to its client.

    States: *waiting* (READY sent, no acknowledgement yet) and *registered*. While waiting it
    re-sends READY every heartbeat and on every new connection, so a client that (re)appears
    registers the worker at once, however long it waited.
    """

    def __init__(
        self,
        codec: FrameCodec,
        ready: Ready,
        now: float,
    ) -> None:
        self.codec = codec
        self.ready = ready
        self.stats = Stats()
        self.registered = False
        self.leaving = False
        self.client = Peer(now, ready.heartbeat, ready.liveness)
        self.client_max_message_size = 0  # what the client announced (0: not said)
        self._last_ready = float("-inf")

    # -- outgoing

    def _out(self, message: Message, now: float) -> list[bytes]:
        frames = self.codec.encode(message)
        self.client.last_sent = now
        self.stats.sent += 1
        return frames

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(self.ready.heartbeat, self.ready.liveness, self.codec.max_message_size)

    def ready_frames(self, now: float) -> list[bytes]:
        """READY, to send now (on a new connection, or while waiting)."""
        self._last_ready = now
        return self._out(self.ready, now)

    def calls(self, command: Command, entries: Sequence[Entry], now: float) -> list[bytes]:
        """PARTIAL, REPLY or ERROR entries for the client."""
        return self._out(Calls(command, tuple(entries)), now)

    def disconnect(self, now: float, final: bool) -> list[bytes]:
        """DISCONNECT: leaving (``final=False``: no new calls please) or gone."""
        self.leaving = True
        return self._out(Disconnect(final), now)

    # -- incoming

    def receive(self, frames: Sequence[bytes], now: float) -> list[Event]:
        """Events for a message from the client; malformed ones are counted and dropped."""
        message = _decode_counted(self.codec, self.stats, frames, "the client")
        if message is None:
            return []
        self.stats.received += 1
        self.client.last_received = now
        if isinstance(message, BadCalls):
            # Only a request needs an answer; any other malformed message is just dropped.
            return [message] if message.command is Command.REQUEST else []
        if isinstance(message, Heartbeat):
            self.client.heartbeat, self.client.liveness = message.heartbeat, message.liveness
            self.client_max_message_size = message.max_message_size
            if not self.registered and not self.leaving:
                self.registered = True
                return [ClientRegistered(message.heartbeat, message.liveness)]
            return []
        if isinstance(message, Disconnect):
            return self._lose("the client closed")
        if isinstance(message, Calls) and message.command in (Command.REQUEST, Command.CANCEL):
            return [CallsReceived(message.command, message.entries)]
        self.stats.malformed += 1
        logger.warning("dropped an unexpected %s from the client", type(message).__name__)
        return []

    def connected(self, now: float) -> list[Event]:
        """A new connection to the client's endpoint came up: a client (re)appeared there.

        Whatever we held for a previous client is abandoned; call :meth:`ready_frames` next."""
        return self._lose("a new connection to the endpoint (the client restarted)")

    def disconnected(self) -> list[Event]:
        """The connection to the client's endpoint dropped: the client closed or died."""
        return self._lose("the connection to the client dropped")

    def _lose(self, reason: str, silent: bool = False) -> list[Event]:
        if not self.registered:
            return []
        self.registered = False
        self.ready = replace(self.ready, incarnation=self.ready.incarnation + 1)
        self._last_ready = float("-inf")  # announce again at the next tick
        return [ClientLost(reason, silent)]

    # -- time

    def tick(self, now: float, expire: bool = True) -> tuple[list[Event], list[list[bytes]]]:
        """Expire a silent client, re-send READY while waiting, heartbeat while registered.

        ``expire=False`` while the socket code still has unread messages: the client may
        well have spoken, so heartbeats go out but nobody is judged."""
        events: list[Event] = []
        out: list[list[bytes]] = []
        if expire and self.registered and self.client.expired(now):
            events = self._lose("the client fell silent", silent=True)
            # A fresh READY must not be judged by a dead client's announced interval.
            self.client = Peer(now, self.ready.heartbeat, self.ready.liveness)
        if self.leaving:
            if now - self.client.last_sent >= self.ready.heartbeat:
                out.append(self._out(self._heartbeat(), now))
        elif not self.registered:
            if now - self._last_ready >= self.ready.heartbeat:
                out.append(self.ready_frames(now))
        elif now - self.client.last_sent >= self.ready.heartbeat:
            out.append(self._out(self._heartbeat(), now))
        return events, out

    def next_deadline(self) -> float:
        """The next time :meth:`tick` has something to do."""
        if not self.registered and not self.leaving:
            return self._last_ready + self.ready.heartbeat
        deadline = self.client.last_sent + self.ready.heartbeat
        if self.registered:
            deadline = min(deadline, self.client.expiry)
        return deadline


# --------------------------------------------------------------------------- client


@dataclass
class WorkerPeer:
    """The client's view of one registered worker."""

    ready: Ready
    peer: Peer
    leaving: bool = False
    in_flight: set[int] = field(default_factory=set)


class ClientProtocol:
    """The client's side of its connections to many workers, keyed by ZeroMQ routing id."""

    def __init__(self, codec: FrameCodec, heartbeat: float, liveness: int) -> None:
        self.codec = codec
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.stats = Stats()
        self.workers: dict[bytes, WorkerPeer] = {}

    def _out(self, peer: bytes, message: Message, now: float) -> tuple[bytes, list[bytes]]:
        frames = self.codec.encode(message)
        worker = self.workers.get(peer)
        if worker is not None:
            worker.peer.last_sent = now
        self.stats.sent += 1
        return peer, frames

    def calls(
        self, peer: bytes, command: Command, entries: Sequence[Entry], now: float
    ) -> tuple[bytes, list[bytes]]:
        """REQUEST or CANCEL entries for one worker."""
        return self._out(peer, Calls(command, tuple(entries)), now)

    def receive(
        self, peer: bytes, frames: Sequence[bytes], now: float
    ) -> tuple[list[Event], list[tuple[bytes, list[bytes]]]]:
        """Events for a message from worker ``peer``, and frames to answer with."""
        who = f"worker {peer.hex()}"
        message = _decode_counted(self.codec, self.stats, frames, who)
        if message is None:
            return [], []
        self.stats.received += 1
        worker = self.workers.get(peer)
        if isinstance(message, Ready):
            events: list[Event] = []
            if worker is not None:
                if worker.ready.incarnation == message.incarnation:
                    worker.peer.last_received = now  # a duplicate READY: acknowledge again
                    return [], [self._out(peer, Heartbeat(self.heartbeat, self.liveness, self.codec.max_message_size), now)]
                events.append(WorkerGone(peer, "it registered again (restarted or reconnected)"))
            self.workers[peer] = WorkerPeer(message, Peer(now, message.heartbeat, message.liveness))
            events.append(WorkerRegistered(peer, message))
            return events, [self._out(peer, Heartbeat(self.heartbeat, self.liveness, self.codec.max_message_size), now)]
        if worker is None:
            if isinstance(message, Disconnect):
                return [], []
            # A worker we do not know (we restarted, or declared it dead): make it register again.
            logger.info("%s is not registered; asking it to register again", who)
            return [], [self._out(peer, Disconnect(True), now)]
        worker.peer.last_received = now
        if isinstance(message, BadCalls):
            if message.command in (Command.PARTIAL, Command.REPLY, Command.ERROR):
                return [BadCalls(message.command, message.request_ids, message.reason, peer)], []
            return [], []  # a malformed REQUEST/CANCEL from a worker: dropped like a well-formed one
        if isinstance(message, Heartbeat):
            worker.peer.heartbeat, worker.peer.liveness = message.heartbeat, message.liveness
            return [], []
        if isinstance(message, Disconnect):
            if message.final:
                del self.workers[peer]
                return [WorkerGone(peer, "it left")], []
            worker.leaving = True
            return [WorkerLeaving(peer)], []
        if isinstance(message, Calls) and message.command in (
            Command.PARTIAL, Command.REPLY, Command.ERROR
        ):
            return [CallsReceived(message.command, message.entries, peer)], []
        self.stats.malformed += 1
        logger.warning("dropped an unexpected %s from %s", type(message).__name__, who)
        return [], []

    def tick(
        self, now: float, expire: bool = True
    ) -> tuple[list[Event], list[tuple[bytes, list[bytes]]]]:
        """Expire silent workers and heartbeat the others (``expire=False``: only heartbeat,
        while unread messages may hold the signs of life)."""
        events: list[Event] = []
        out: list[tuple[bytes, list[bytes]]] = []
        for peer, worker in list(self.workers.items()):
            if expire and worker.peer.expired(now):
                del self.workers[peer]
                events.append(WorkerGone(peer, "it fell silent"))
            elif now - worker.peer.last_sent >= self.heartbeat:
                out.append(self._out(peer, Heartbeat(self.heartbeat, self.liveness, self.codec.max_message_size), now))
        return events, out

    def next_deadline(self) -> float:
        """The next time :meth:`tick` has something to do (inf with no worker)."""
        deadline = float("inf")
        for worker in self.workers.values():
            deadline = min(deadline, worker.peer.expiry, worker.peer.last_sent + self.heartbeat)
        return deadline

    def close(self, now: float) -> list[tuple[bytes, list[bytes]]]:
        """DISCONNECT to every worker; forgets them."""
        out = [self._out(peer, Disconnect(True), now) for peer in self.workers]
        self.workers.clear()
        return out
