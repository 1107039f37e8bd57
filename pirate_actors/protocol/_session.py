"""Sessions: heartbeats, liveness and (re)registration of one side of the protocol, sans-IO.

A session takes decoded input and ``now`` and returns events and frames to send; it never touches
a socket or reads a clock. Each session is a small state machine: its states are an enum, its
transitions a table (as in h11's ``_state.py``), and a send its state does not allow raises
:class:`LocalProtocolError` instead of going out. Only what a session returns counts as sent.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Sequence, Union

from .._errors import AuthenticationError, ProtocolError
from ._wire import (
    SESSION_SIZE,
    Calls,
    Capacity,
    Command,
    Disconnect,
    Entry,
    EventEntry,
    Events,
    FrameCodec,
    Heartbeat,
    MalformedCalls,
    Message,
    Ready,
    Seal,
)

__all__ = [
    "BadCalls",
    "CapacityChanged",
    "CallsReceived",
    "EventsReceived",
    "ClientLost",
    "ClientProtocol",
    "ClientRegistered",
    "Event",
    "LocalProtocolError",
    "Peer",
    "SessionState",
    "Stats",
    "WorkerGone",
    "WorkerLeaving",
    "WorkerPeer",
    "WorkerProtocol",
    "WorkerRegistered",
    "WorkerState",
    "peer_name",
]

logger = logging.getLogger("pirate_actors.protocol")

LATE_ALLOWANCE = 3
"""HEARTBEATs for its previous session a worker's new session takes for late, at most: the
client answers a READY once, and again at each of its heartbeats until the worker proves
itself (see ``WorkerProtocol._late``)."""


class LocalProtocolError(ProtocolError):
    """This side tried a send its session's state does not allow (a bug of the caller)."""


@dataclass
class Stats:
    """What a session received, sent and dropped, counted as it happens."""

    malformed: int = 0
    unauthenticated: int = 0
    replayed: int = 0
    """Signed messages that verified but were not fresh: sent before, or for another session
    (except the ``late`` ones)."""
    late: int = 0
    """HEARTBEATs for a worker's previous session that came before the new one heard from its
    client: sent while the session changed (a client restarting), not a sign of attack."""
    received: int = 0
    sent: int = 0
    last_drop: tuple[str, str] | None = None
    """(kind, reason) of the latest drop, for the socket code to log with the peer's address
    (rate-limited) and to clear; a session itself never logs a drop."""

    def drop(self, kind: str, reason: str) -> None:
        """Count a dropped message: ``kind`` is "malformed", "unauthenticated", "replayed" or
        "late"."""
        setattr(self, kind, getattr(self, kind) + 1)
        self.last_drop = (kind, reason)


def new_nonce() -> int:
    """A random, non-zero 64-bit session nonce (0 means "not known yet" in a seal)."""
    return secrets.randbits(64) | 1


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
    closed: bool = False
    """True when the client said goodbye (DISCONNECT): a normal end, not a failure."""


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


@dataclass(slots=True)
class EventsReceived:
    """Client side: events from a registered worker, in the order it emitted them."""

    peer: bytes
    entries: tuple[EventEntry, ...]


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
class CapacityChanged:
    """Client side: a worker announced a new capacity (its record already has it)."""

    peer: bytes


@dataclass(frozen=True)
class WorkerGone:
    """Client side: a worker is gone (silent too long, left, or restarted); its calls are lost.
    ``worker`` is its last record, with the calls it held."""

    peer: bytes
    reason: str
    worker: WorkerPeer | None = field(default=None, compare=False, repr=False)
    graceful: bool = field(default=False, compare=False)
    """It left after saying it was leaving: it answered every call it had received, so a call
    still unanswered never reached it."""


Event = Union[ClientRegistered, ClientLost, CallsReceived, BadCalls, EventsReceived,
              WorkerRegistered, WorkerLeaving, CapacityChanged, WorkerGone]


def _decode_counted(
    codec: FrameCodec, stats: Stats, frames: Sequence[bytes]
) -> tuple[Message | BadCalls, Seal | None] | None:
    """Decode, or count why not (``stats.last_drop``); never raises."""
    try:
        return codec.open(frames)
    except AuthenticationError as exc:
        stats.drop("unauthenticated", str(exc))
    except MalformedCalls as exc:
        stats.drop("malformed", f"a malformed {exc.command.name}: {exc}")
        return BadCalls(exc.command, exc.request_ids, str(exc)), exc.seal
    except ProtocolError as exc:
        stats.drop("malformed", str(exc))
    return None


# --------------------------------------------------------------------------- worker


class SessionState(enum.Enum):
    """The worker's session with its client."""

    WAITING = "waiting"
    """READY is (re)sent every heartbeat and on every new connection; no calls yet."""
    REGISTERED = "registered"
    """The client acknowledged READY: calls come in, answers and heartbeats go out."""
    LEAVING = "leaving"
    """DISCONNECT (not final) sent: no new calls; running ones are still answered."""
    CLOSED = "closed"
    """The final DISCONNECT went out: nothing more is sent."""


_W = SessionState
_WORKER_TRANSITIONS: dict[tuple[SessionState, str], SessionState] = {
    (_W.WAITING, "acknowledged"): _W.REGISTERED,
    (_W.REGISTERED, "acknowledged"): _W.REGISTERED,
    (_W.LEAVING, "acknowledged"): _W.LEAVING,
    (_W.WAITING, "lost"): _W.WAITING,
    (_W.REGISTERED, "lost"): _W.WAITING,
    (_W.LEAVING, "lost"): _W.LEAVING,
    (_W.WAITING, "leave"): _W.LEAVING,
    (_W.REGISTERED, "leave"): _W.LEAVING,
    (_W.WAITING, "close"): _W.CLOSED,
    (_W.REGISTERED, "close"): _W.CLOSED,
    (_W.LEAVING, "close"): _W.CLOSED,
}
"""(state, what happened) -> next state; a pair that is missing cannot happen."""

_WORKER_SENDS: dict[SessionState, frozenset[Command]] = {
    _W.WAITING: frozenset({Command.READY, Command.DISCONNECT}),
    _W.REGISTERED: frozenset({Command.HEARTBEAT, Command.PARTIAL, Command.REPLY, Command.ERROR,
                              Command.EVENT, Command.CAPACITY, Command.DISCONNECT}),
    _W.LEAVING: frozenset({Command.HEARTBEAT, Command.PARTIAL, Command.REPLY, Command.ERROR,
                           Command.EVENT, Command.DISCONNECT}),
    _W.CLOSED: frozenset(),
}
"""What each state may send."""


class WorkerProtocol:
    """The worker's session with one client endpoint (states: :class:`SessionState`).

    While WAITING and connected it sends READY every heartbeat and on every new connection, so
    a client that (re)appears registers the worker at once, however long it waited. Nothing is
    sent while no connection is up (it would only queue in the socket).
    """

    def __init__(self, codec: FrameCodec, ready: Ready, now: float) -> None:
        self.codec = codec
        self.ready = ready
        self.stats = Stats()
        self.state = SessionState.WAITING
        self.connection_up = False
        """A connection to the endpoint is up (the socket monitor says so)."""
        self.client = Peer(now, ready.heartbeat, ready.liveness)
        self.client_max_message_size = 0  # what the client announced (0: not said)
        self.client_session = b""
        """The client's session id, from its HEARTBEATs: with a request id, it names a call."""
        self._last_ready: float | None = None  # None: READY is due at once
        self.unanswered = 0
        """READYs sent since the client last said anything we accepted."""
        self.sealed = codec.key is not None
        """Signed messages carry seals: only fresh ones of this session are accepted."""
        self.nonce = new_nonce()
        """This session's nonce: new for every READY cycle, so nothing sent to an earlier one
        (or to another worker) is ever accepted again."""
        self.peer_nonce = 0
        """The client's nonce for this session (0 until it acknowledged our READY)."""
        self._previous_nonce = 0
        """The nonce of the session before this one (0: none): its answer may still arrive."""
        self._late_allowance = LATE_ALLOWANCE
        self.peer_seq = 0
        self._seq = 0

    @property
    def registered(self) -> bool:
        return self.state is SessionState.REGISTERED

    @property
    def leaving(self) -> bool:
        return self.state is SessionState.LEAVING or self.state is SessionState.CLOSED

    def can_send(self, command: Command) -> bool:
        return command in _WORKER_SENDS[self.state]

    def _go(self, happened: str) -> None:
        self.state = _WORKER_TRANSITIONS[self.state, happened]

    @property
    def send_limit(self) -> int:
        """The largest message both ends accept (the client's socket cuts off more)."""
        limit = self.codec.max_message_size
        if self.client_max_message_size:
            limit = min(limit, self.client_max_message_size)
        return limit

    @property
    def max_body(self) -> int:
        """The largest answer body one message can carry to this client."""
        return self.codec.max_body(self.send_limit)

    # -- outgoing

    def _out(self, command: Command, message: Message, now: float) -> list[bytes]:
        if command not in _WORKER_SENDS[self.state]:
            raise LocalProtocolError(f"a {self.state.value} worker cannot send {command.name}")
        if self.sealed:
            self._seq += 1
            frames = self.codec.encode(message, Seal(self.nonce, self.peer_nonce, self._seq))
        else:
            frames = self.codec.encode(message)
        self.client.last_sent = now
        self.stats.sent += 1
        return frames

    def heartbeat(self, now: float) -> list[bytes]:
        """HEARTBEAT, to send now."""
        heartbeat = Heartbeat(self.ready.heartbeat, self.ready.liveness, self.codec.max_message_size)
        return self._out(Command.HEARTBEAT, heartbeat, now)

    def ready_frames(self, now: float) -> list[bytes]:
        """READY, to send now (only while WAITING)."""
        frames = self._out(Command.READY, self.ready, now)
        self._last_ready = now
        self.unanswered += 1
        return frames

    def calls(self, command: Command, entries: Sequence[Entry], now: float) -> list[bytes]:
        """PARTIAL, REPLY or ERROR entries for the client (REGISTERED or LEAVING)."""
        return self._out(command, Calls(command, tuple(entries)), now)

    def events(self, entries: Sequence[EventEntry], now: float) -> list[bytes]:
        """EVENT: events for the client (REGISTERED or LEAVING)."""
        return self._out(Command.EVENT, Events(tuple(entries)), now)

    def capacity(self, capacity: int, now: float) -> list[bytes]:
        """CAPACITY: the calls this worker now holds for this client at most (REGISTERED)."""
        return self._out(Command.CAPACITY, Capacity(capacity), now)

    def leave(self, now: float) -> list[list[bytes]]:
        """No new calls please: DISCONNECT (not final) if a client knows us, then LEAVING."""
        out = []
        if self.state is SessionState.REGISTERED and self.connection_up:
            out.append(self._out(Command.DISCONNECT, Disconnect(False), now))
        self._go("leave")
        return out

    def close(self, now: float) -> list[list[bytes]]:
        """The final DISCONNECT (unless already closed); nothing is sent after it."""
        if self.state is SessionState.CLOSED:
            return []
        out = [self._out(Command.DISCONNECT, Disconnect(True), now)] if self.connection_up else []
        self._go("close")
        return out

    def disconnect(self, now: float, final: bool) -> list[bytes]:
        """DISCONNECT now, whatever the connection (for tests and harnesses)."""
        frames = self._out(Command.DISCONNECT, Disconnect(final), now)
        self._go("close" if final else "leave")
        return frames

    # -- incoming

    def receive(self, frames: Sequence[bytes], now: float) -> list[Event]:
        """Events for a message from the client; malformed ones are counted and dropped."""
        decoded = _decode_counted(self.codec, self.stats, frames)
        if decoded is None:
            return []
        message, seal = decoded
        if seal is not None and not self._fresh(message, seal):
            if self._late(message, seal):
                self.stats.drop("late", f"a {type(message).__name__} for the previous session")
            else:
                self.stats.drop("replayed", f"a {type(message).__name__} not fresh for this session")
            return []
        self.stats.received += 1
        self.client.last_received = now
        self.unanswered = 0
        if isinstance(message, BadCalls):
            # Only a request needs an answer; any other malformed message is just dropped.
            return [message] if message.command is Command.REQUEST else []
        if isinstance(message, Heartbeat):
            self.client.heartbeat, self.client.liveness = message.heartbeat, message.liveness
            self.client_max_message_size = message.max_message_size
            self.client_session = message.session
            if self.state is SessionState.WAITING:
                self._go("acknowledged")
                if self.sealed:
                    # A HEARTBEAT at the next tick (due at once) completes a signed
                    # registration: it proves to the client that we hold the key and saw its
                    # nonce, which a READY sent again by anyone else cannot.
                    self.client.last_sent = float("-inf")
                return [ClientRegistered(message.heartbeat, message.liveness)]
            return []
        if isinstance(message, Disconnect):
            return self._lose("the client closed", closed=True)
        if isinstance(message, Calls) and message.command in (Command.REQUEST, Command.CANCEL):
            return [CallsReceived(message.command, message.entries)]
        self.stats.malformed += 1
        logger.warning("dropped an unexpected %s from the client", type(message).__name__)
        return []

    def _fresh(self, message: Message | BadCalls, seal: Seal) -> bool:
        """Whether a signed message belongs to this session and was not accepted before."""
        if seal.receiver != self.nonce:
            return False  # for an earlier session of ours, or for another worker
        if self.peer_nonce == 0:
            if not isinstance(message, Heartbeat):
                return False  # nothing but the acknowledgement of our READY comes first
            self.peer_nonce = seal.sender
        elif seal.sender != self.peer_nonce or seal.seq <= self.peer_seq:
            return False
        self.peer_seq = seal.seq
        return True

    def _late(self, message: Message | BadCalls, seal: Seal) -> bool:
        """Whether a message that is not fresh is the client's answer to the READY of the
        session just before this one, which crossed the change of session on the wire: a
        HEARTBEAT sealed for it, before this session heard from its client (a few at most,
        so that a replayed session cannot pass for late)."""
        if (self._late_allowance and self.peer_nonce == 0 and isinstance(message, Heartbeat)
                and self._previous_nonce and seal.receiver == self._previous_nonce):
            self._late_allowance -= 1
            return True
        return False

    def _new_session(self) -> None:
        self._late_allowance = LATE_ALLOWANCE
        self._previous_nonce = self.nonce
        self.nonce = new_nonce()
        self.peer_nonce = self.peer_seq = self._seq = 0

    def connected(self, now: float) -> list[Event]:
        """A new connection to the client's endpoint came up: a client (re)appeared there.

        Whatever we held for a previous client is abandoned, and READY is due at once."""
        self.connection_up = True
        events = self._lose("a new connection to the endpoint (the client restarted)")
        if not events:
            self._new_session()
        self._last_ready = None
        return events

    def disconnected(self) -> list[Event]:
        """The connection to the client's endpoint dropped: the client closed or died."""
        self.connection_up = False
        return self._lose("the connection to the client dropped")

    def _lose(self, reason: str, silent: bool = False, closed: bool = False) -> list[Event]:
        if self.state is not SessionState.REGISTERED:
            return []
        self._go("lost")
        self._new_session()
        self.ready = replace(self.ready, incarnation=self.ready.incarnation + 1)
        self._last_ready = None  # announce again at the next tick
        return [ClientLost(reason, silent, closed)]

    # -- time

    def tick(self, now: float, expire: bool = True) -> tuple[list[Event], list[list[bytes]]]:
        """Expire a silent client, re-send READY while waiting, heartbeat otherwise.

        ``expire=False`` while the socket code still has unread messages: the client may
        well have spoken, so heartbeats go out but nobody is judged."""
        events: list[Event] = []
        out: list[list[bytes]] = []
        if expire and self.state is SessionState.REGISTERED and self.client.expired(now):
            events = self._lose("the client fell silent", silent=True)
            # A fresh READY must not be judged by a dead client's announced interval.
            self.client = Peer(now, self.ready.heartbeat, self.ready.liveness)
            # The socket code starts over with a fresh connection (ClientLost.silent): nothing
            # goes out on the old one, where a client could take it for the new one's.
            self.connection_up = False
        if not self.connection_up:
            return events, out
        if self.state is SessionState.WAITING:
            if self._last_ready is None or now - self._last_ready >= self.ready.heartbeat:
                out.append(self.ready_frames(now))
        elif self.can_send(Command.HEARTBEAT) and now - self.client.last_sent >= self.ready.heartbeat:
            out.append(self.heartbeat(now))
        return events, out

    def next_deadline(self) -> float:
        """The next time :meth:`tick` has something to do."""
        state = self.state
        if state is SessionState.CLOSED:
            return float("inf")
        if state is SessionState.WAITING:
            if not self.connection_up:
                return float("inf")
            return float("-inf") if self._last_ready is None else self._last_ready + self.ready.heartbeat
        deadline = self.client.last_sent + self.ready.heartbeat if self.connection_up else float("inf")
        if state is SessionState.REGISTERED:
            deadline = min(deadline, self.client.expiry)
        return deadline


# --------------------------------------------------------------------------- client


class WorkerState(enum.Enum):
    """A registered worker, as the client's session sees it (an unknown worker has none)."""

    REGISTERED = "registered"
    """Takes calls, up to its capacity."""
    LEAVING = "leaving"
    """Said DISCONNECT (not final): finishes what it runs, takes nothing new."""


_CLIENT_SENDS: dict[WorkerState, frozenset[Command]] = {
    WorkerState.REGISTERED: frozenset({Command.REQUEST, Command.CANCEL, Command.HEARTBEAT,
                                       Command.DISCONNECT}),
    WorkerState.LEAVING: frozenset({Command.CANCEL, Command.HEARTBEAT, Command.DISCONNECT}),
}


@dataclass(eq=False)
class WorkerPeer:
    """The client's one record of a registered worker: what it announced, its liveness, its
    state, and the ids of the calls it holds (kept by the client's call engine)."""

    ready: Ready
    peer: Peer
    state: WorkerState = WorkerState.REGISTERED
    calls: set[int] = field(default_factory=set)
    id: str = ""
    """Its id (``WorkerInfo.id``, ``CallFuture.worker``): READY's, else its routing id as text."""
    nonce: int = 0
    """Signed sessions: the worker's nonce for this session, from its READY's seal."""
    client_nonce: int = 0
    """Signed sessions: our nonce for this session, sent in our answer to its READY."""
    seq_in: int = 0
    """Signed sessions: the number of the last message accepted from it."""
    seq_out: int = 0
    procedures: frozenset[str] = field(init=False)
    """``ready.procedures`` as a set, for dispatch."""
    capacity: int = field(init=False)
    """What the worker offers this client now: READY's, then each CAPACITY's."""

    def __post_init__(self) -> None:
        self.procedures = frozenset(self.ready.procedures)
        self.capacity = self.ready.capacity

    @property
    def leaving(self) -> bool:
        return self.state is WorkerState.LEAVING

    @property
    def free(self) -> int:
        """Calls it would still take (0 while leaving)."""
        return 0 if self.state is WorkerState.LEAVING else self.capacity - len(self.calls)


_SEEN_SESSIONS = 10_000
"""Signed sessions of workers the client remembers after they end or while they register,
so that their messages sent again later are recognised as replays."""
_PENDING_LIMIT = 1_000
"""READYs awaiting the proof that completes their registration, at most (the oldest go)."""


class ClientProtocol:
    """The client's sessions with its workers, keyed by ZeroMQ routing id.

    ``workers`` is the one registry of registered workers on the client side. With a key, a
    READY only opens a handshake: the client answers with its own nonce, and the worker is
    registered when a message sealed with both nonces comes back, so a READY sent again by
    someone else never registers anything."""

    def __init__(
        self, codec: FrameCodec, heartbeat: float, liveness: int, session: bytes | None = None
    ) -> None:
        self.codec = codec
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.session = secrets.token_bytes(SESSION_SIZE) if session is None else session
        """This client's session id: random, one per client, sent in every HEARTBEAT."""
        self.stats = Stats()
        self.workers: dict[bytes, WorkerPeer] = {}
        self.pending: dict[bytes, WorkerPeer] = {}
        """Signed sessions: workers whose READY we answered, until their proof comes."""
        self._seen: OrderedDict[int, tuple[bytes, WorkerPeer]] = OrderedDict()
        """Signed sessions of workers (registered, pending or ended), the newest last: worker
        nonce -> (the routing id it came from, the last number seen when it was not registered)."""
        self.sealed = codec.key is not None
        self.closed = False

    def _out(self, peer: bytes, command: Command, message: Message, now: float,
             seal: Seal | None = None, record: WorkerPeer | None = None) -> tuple[bytes, list[bytes]]:
        """Frames for ``peer``, sealed for ``record``'s session (default: the registered one)."""
        if self.closed:
            raise LocalProtocolError("the client's session is closed")
        worker = record or self.workers.get(peer)
        if worker is not None:
            if command not in _CLIENT_SENDS[worker.state]:
                raise LocalProtocolError(f"cannot send {command.name} to a {worker.state.value} worker")
            worker.peer.last_sent = now
            if self.sealed and seal is None:
                worker.seq_out += 1
                seal = Seal(worker.client_nonce, worker.nonce, worker.seq_out)
        elif command is not Command.DISCONNECT:
            raise LocalProtocolError(
                f"cannot send {command.name} to worker {peer_name(peer)}: not registered")
        frames = self.codec.encode(message, seal) if seal is not None else self.codec.encode(message)
        self.stats.sent += 1
        return peer, frames

    def _heartbeat(
        self, peer: bytes, now: float, record: WorkerPeer | None = None
    ) -> tuple[bytes, list[bytes]]:
        heartbeat = Heartbeat(self.heartbeat, self.liveness, self.codec.max_message_size, self.session)
        return self._out(peer, Command.HEARTBEAT, heartbeat, now, record=record)

    def calls(
        self, peer: bytes, command: Command, entries: Sequence[Entry], now: float
    ) -> tuple[bytes, list[bytes]]:
        """REQUEST or CANCEL entries for one worker."""
        return self._out(peer, command, Calls(command, tuple(entries)), now)

    def receive(
        self, peer: bytes, frames: Sequence[bytes], now: float
    ) -> tuple[list[Event], list[tuple[bytes, list[bytes]]]]:
        """Events for a message from worker ``peer``, and frames to answer with."""
        decoded = _decode_counted(self.codec, self.stats, frames)
        if decoded is None:
            return [], []
        message, seal = decoded
        worker = self.workers.get(peer)
        if seal is not None:
            if worker is None or seal.sender != worker.nonce:
                return self._unregistered(peer, message, seal, now)
            if seal.receiver != worker.client_nonce or seal.seq <= worker.seq_in:
                self.stats.drop("replayed", f"a {type(message).__name__} sent before, from worker {worker.id}")
                return [], []
            worker.seq_in = seal.seq
        self.stats.received += 1
        if isinstance(message, Ready):
            if worker is not None and (seal is not None or worker.ready.incarnation == message.incarnation):
                worker.peer.last_received = now  # a duplicate READY: acknowledge again
                return [], [self._heartbeat(peer, now)]
            record = WorkerPeer(message, Peer(now, message.heartbeat, message.liveness))
            events = self._register(peer, record)
            return events, [self._heartbeat(peer, now)]
        if worker is None:
            if isinstance(message, Disconnect):
                return [], []
            # A worker we do not know (we restarted, or declared it dead): make it register again.
            logger.info("worker %s is not registered; asking it to register again", peer_name(peer))
            return [], [self._out(peer, Command.DISCONNECT, Disconnect(True), now)]
        return self._from_worker(peer, worker, message, now), []

    def _register(self, peer: bytes, record: WorkerPeer) -> list[Event]:
        """``record`` is now the worker at ``peer``; one it replaces (the same routing id, or the
        same worker id and lane over another connection) is gone."""
        events: list[Event] = []
        record.id = record.ready.id or peer_name(peer)
        old = self.workers.pop(peer, None)
        if old is not None:
            self._ended(peer, old)
            events.append(WorkerGone(peer, "it registered again (restarted or reconnected)", old))
        if record.ready.id:
            for other_peer, other in list(self.workers.items()):
                if other.ready.id == record.ready.id and other.ready.lane == record.ready.lane:
                    del self.workers[other_peer]
                    self._ended(other_peer, other)
                    events.append(WorkerGone(other_peer, "it reconnected", other))
        self.workers[peer] = record
        events.append(WorkerRegistered(peer, record.ready))
        return events

    def _remember(self, peer: bytes, record: WorkerPeer) -> None:
        """Keep a signed session (its record holds the numbers both ways) for replay checks."""
        seen = self._seen
        seen[record.nonce] = (peer, record)
        seen.move_to_end(record.nonce)
        while len(seen) > _SEEN_SESSIONS:
            seen.popitem(last=False)

    def _ended(self, peer: bytes, worker: WorkerPeer) -> None:
        """A signed session ended: remember where it stood, so what it sent is a replay now."""
        if worker.nonce:
            self._remember(peer, worker)

    def _unregistered(
        self, peer: bytes, message: Message | BadCalls, seal: Seal, now: float
    ) -> tuple[list[Event], list[tuple[bytes, list[bytes]]]]:
        """A signed message from a session not registered at ``peer``: a READY (answered with
        our nonce), the proof that completes one, or something to ask to register again."""
        known = self._seen.get(seal.sender)
        pending = self.pending.get(peer)
        if known is not None and (known[0] != peer or seal.seq <= known[1].seq_in):
            # A session is bound to one connection: from another, or not newer, it is a replay.
            self.stats.drop("replayed", f"a {type(message).__name__} sent before, from {peer_name(peer)}")
            return [], []
        if pending is not None and seal.sender == pending.nonce:
            if seal.receiver == pending.client_nonce:  # the proof: it has the key and our nonce
                del self.pending[peer]
                pending.seq_in = seal.seq
                pending.peer.last_received = now
                self.stats.received += 1
                events = self._register(peer, pending)
                if not isinstance(message, (Ready, Heartbeat)):
                    events += self._from_worker(peer, pending, message, now)
                return events, []
            if isinstance(message, Ready) and seal.receiver == 0:  # READY again: answer again
                pending.seq_in = seal.seq
                self.stats.received += 1
                return [], [self._heartbeat(peer, now, pending)]
            self.stats.drop("replayed", f"a {type(message).__name__} for another session, from {peer_name(peer)}")
            return [], []
        if isinstance(message, Ready) and seal.receiver == 0:
            self.stats.received += 1
            record = WorkerPeer(message, Peer(now, message.heartbeat, message.liveness),
                                nonce=seal.sender, client_nonce=new_nonce(), seq_in=seal.seq)
            self._remember(peer, record)
            self.pending.pop(peer, None)
            self.pending[peer] = record
            while len(self.pending) > _PENDING_LIMIT:
                self.pending.pop(next(iter(self.pending)))
            return [], [self._heartbeat(peer, now, record)]
        if isinstance(message, Disconnect) or seal.receiver == 0 or known is None:
            # (a session never seen here: not ours to end; the worker's own liveness check will)
            return [], []
        # A fresh message of a session we ended (we declared the worker dead): ask it to
        # register again, sealed within that session so the worker takes it.
        known[1].seq_in = seal.seq
        self.stats.received += 1
        logger.info("worker %s is not registered; asking it to register again", peer_name(peer))
        return [], [self._out(peer, Command.DISCONNECT, Disconnect(True), now, record=known[1])]

    def _from_worker(
        self, peer: bytes, worker: WorkerPeer, message: Message | BadCalls, now: float
    ) -> list[Event]:
        """What a message from a registered worker means."""
        worker.peer.last_received = now
        if isinstance(message, BadCalls):
            if message.command in (Command.PARTIAL, Command.REPLY, Command.ERROR):
                return [BadCalls(message.command, message.request_ids, message.reason, peer)]
            return []  # a malformed REQUEST/CANCEL from a worker: dropped like a well-formed one
        if isinstance(message, Heartbeat):
            worker.peer.heartbeat, worker.peer.liveness = message.heartbeat, message.liveness
            return []
        if isinstance(message, Disconnect):
            if message.final:
                del self.workers[peer]
                self._ended(peer, worker)
                graceful = worker.state is WorkerState.LEAVING
                return [WorkerGone(peer, "it left", worker, graceful)]
            worker.state = WorkerState.LEAVING
            return [WorkerLeaving(peer)]
        if isinstance(message, Calls) and message.command in (
            Command.PARTIAL, Command.REPLY, Command.ERROR
        ):
            return [CallsReceived(message.command, message.entries, peer)]
        if isinstance(message, Events):
            return [EventsReceived(peer, message.entries)]
        if isinstance(message, Capacity):
            worker.capacity = message.capacity
            return [CapacityChanged(peer)]
        self.stats.drop("malformed", f"an unexpected {type(message).__name__} from worker {worker.id}")
        return []

    def unreachable(self, peer: bytes) -> list[Event]:
        """The socket has no connection to ``peer`` any more: the worker there is gone (a
        worker that reconnects does so with a new routing id)."""
        self.pending.pop(peer, None)
        worker = self.workers.pop(peer, None)
        if worker is None:
            return []
        self._ended(peer, worker)
        return [WorkerGone(peer, "its connection closed", worker)]

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
                self._ended(peer, worker)
                events.append(WorkerGone(peer, "it fell silent", worker))
            elif now - worker.peer.last_sent >= self.heartbeat:
                out.append(self._heartbeat(peer, now))
        if expire and self.pending:
            for peer, pending in list(self.pending.items()):
                if pending.peer.expired(now):
                    del self.pending[peer]  # its proof never came (its READY is remembered)
        return events, out

    def next_deadline(self) -> float:
        """The next time :meth:`tick` has something to do (inf with no worker)."""
        deadline = float("inf")
        for worker in self.workers.values():
            deadline = min(deadline, worker.peer.expiry, worker.peer.last_sent + self.heartbeat)
        for pending in self.pending.values():
            deadline = min(deadline, pending.peer.expiry)
        return deadline

    def close(self, now: float) -> list[tuple[bytes, list[bytes]]]:
        """DISCONNECT to every worker; forgets them, and sends nothing after."""
        out = [self._out(peer, Command.DISCONNECT, Disconnect(True), now) for peer in self.workers]
        self.workers.clear()
        self.pending.clear()
        self.closed = True
        return out


def peer_name(peer: bytes) -> str:
    """A routing id for logs: as text when it is, else in hex."""
    try:
        text = peer.decode()
    except UnicodeDecodeError:
        return peer.hex()
    return text if text.isprintable() else peer.hex()
