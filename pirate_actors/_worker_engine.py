"""The worker's call engine, sans-IO: each call's whole life, from arrival to its answer.

One :class:`WorkerCall` per call, keyed by request id, goes through :class:`CallState`: it
arrives and WAITS (in arrival order) for an idle procedure actor, is HANDED to one, is told
(RUNNING), STARTED, REPORTED ("started" sent) and done; a call cancelled while running is
RETIRED with its actor until the actor answers. The engine also owns the worker's session and
the batcher of outgoing answers. It never touches a socket, an actor or a clock: actors are
names (urns) it hands calls to (:attr:`WorkerEngine.to_tell`) or asks to be retired
(:attr:`WorkerEngine.to_retire`); the socket actor in ``_worker.py`` carries that out, and the
pool (``_supervisor.py``) only spawns, retires and backs off actors.
"""

from __future__ import annotations

import collections
import enum
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from . import _codec
from ._codec import ErrorKind
from ._errors import CallTimeout, ProtocolError
from ._procedures import Run
from .protocol import (
    DEADLINE,
    ENTRY_HEADER,
    EVENT_HEADER,
    RETRYABLE,
    SIGNATURE,
    STARTED,
    BadCalls,
    CallsReceived,
    ClientLost,
    ClientRegistered,
    Command,
    Entry,
    Event,
    EventEntry,
    SessionState,
    WorkerProtocol,
    split_deadline,
)

__all__ = ["CallState", "WorkerCall", "WorkerEngine"]

logger = logging.getLogger("pirate_actors.worker")

UNANSWERED_READIES = 5
"""READYs a worker sends into silence before it warns (SPEC §13)."""


class CallState(enum.Enum):
    """Where a call held by the worker stands."""

    WAITING = "waiting"
    """Arrived; waits for an idle actor, in arrival order."""
    HANDED = "handed"
    """Given to an idle actor this turn; told just before the socket thread sleeps."""
    RUNNING = "running"
    """Told; not seen begun yet (its actor sets ``Run.began`` when it begins)."""
    STARTED = "started"
    """Seen begun; "started" is not sent yet (it may ride with the reply)."""
    REPORTED = "reported"
    """"started" was sent; partials follow as the procedure reports."""
    CANCELLED = "cancelled"
    """Cancelled before its actor began it: forgotten, its actor (if any) idle again."""
    RETIRED = "retired"
    """Cancelled while running: no answer goes out, and its actor is retired."""


_RUNNING_STATES = (CallState.RUNNING, CallState.STARTED, CallState.REPORTED)
_STARTED_STATE = CallState.STARTED
_PARTIAL = Command.PARTIAL
_TIMED_OUT = _codec.dump_exception(CallTimeout("the call's deadline had passed when it arrived; not run"))
_ABANDONED = _codec.dump_error(
    ErrorKind.ABANDONED, "WorkerLost", "the worker stopped before the call finished")


@dataclass(slots=True, eq=False)
class WorkerCall:
    """One call the worker holds, and the :class:`Run` its actor gets."""

    request_id: int
    run: Run
    state: CallState = CallState.WAITING
    actor: str | None = None
    session: bytes = b""
    """The session of the client that sent it: with the request id, the call's name."""
    retryable: bool = False
    """Its client may send it again: keep its outcome (and, if that client goes away, let it
    finish) so that a repeat is answered without running it twice."""
    orphaned: bool = False
    """Its client went away while it ran; it finishes on a retired actor for the cache."""
    told_at: float = 0.0
    """When its actor was told it (how long it has run, for ``oldest_running``)."""


CallKey = tuple[bytes, int]
"""(client session, request id): what names a call across reconnections."""

DEFAULT_RESULT_TTL = 60.0
DEFAULT_RESULT_CACHE_SIZE = 64 * 2**20
DEFAULT_EVENT_BUFFER = 1000
"""What ``Worker`` and ``pirate-worker`` take by default: outcomes kept (seconds, bytes), events kept."""
_OUTCOME_OVERHEAD = 160  # bytes a kept outcome costs besides its body (key, tuple, dict slot)


class WorkerEngine:
    """Frames and actors' answers in; frames, hand-overs and retirements out."""

    def __init__(
        self, session: WorkerProtocol, sink: Any, patience: float,
        result_ttl: float = DEFAULT_RESULT_TTL, result_cache_size: int = DEFAULT_RESULT_CACHE_SIZE,
        event_buffer: int = 1000, lanes: Lanes | None = None, endpoint: str = "its client",
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        """Where its client is (for the log)."""
        self.lanes = Lanes(session.ready.capacity, event_buffer) if lanes is None else lanes
        """The clients this worker serves, the idle actors they share, their shares."""
        self.lane = self.lanes.add(self)
        """This engine's index among them (carried by each Run and its answers)."""
        self.offer = session.ready.capacity
        """The calls this worker holds for this client at most, now (see ``Lanes.rebalance``)."""
        self._offer_told = session.ready.capacity  # what the client was last told (READY says C)
        self.last_request = float("-inf")
        self.result_ttl = result_ttl
        self.result_cache_size = result_cache_size
        self.outcomes: collections.OrderedDict[CallKey, tuple[float, Command, bytes]] = (
            collections.OrderedDict()
        )
        """Outcomes of retryable calls, oldest first: (expires, command, body)."""
        self._outcome_bytes = 0
        self.orphans: dict[CallKey, WorkerCall] = {}
        """Retryable calls still running whose client went away."""
        self.duplicates = 0
        """Requests for a call already held or finished, answered without running it again."""
        self._events: list[EventEntry] = []  # to go out at the next flush, first of all
        self._events_size = 0
        self.events_sent = 0
        self.sink = sink
        """Where procedure actors send their answers (opaque here: the socket actor's ref)."""
        self.patience = patience
        """After a client left without replacement, how long before starting over afresh."""
        self.calls: dict[int, WorkerCall] = {}
        """Every call held: waiting, handed, running (retired ones are in :attr:`retired`)."""
        self._waiting: collections.OrderedDict[int, WorkerCall] = collections.OrderedDict()
        self.retired: dict[str, WorkerCall] = {}
        """Actor urn -> the cancelled call it still runs."""
        self._awaiting_start: dict[int, float] = {}  # RUNNING calls -> when told, oldest first
        self._unannounced: list[int] = []  # calls that became STARTED since the last flush
        self._batch: dict[Command, list[Entry]] = {Command.PARTIAL: [], Command.REPLY: [], Command.ERROR: []}
        self._batch_size = 0
        self.out: list[list[bytes]] = []
        """Frames to send, in order."""
        self.to_tell: list[WorkerCall] = []
        """HANDED calls whose actors are to be told."""
        self.to_retire: list[str] = []
        """Actors to retire (their call was cancelled; a replacement is wanted at once)."""
        self.reconnect_wanted = False
        """The client fell silent, or left and nobody came: start over with a fresh socket."""
        self.finished = False
        """The final DISCONNECT is out: the worker may close."""
        self.closing = False
        self._stop_deadline: float | None = None
        self._lost_at: float | None = None
        self.deadline = float("-inf")
        """When :meth:`tick` next has work: only ever too early, never too late."""
        self._now = 0.0  # the latest time an input brought (a batch split mid-turn is sent then)
        self._warned_unanswered = False
        self._log_registration = logging.INFO  # the first one, and the next after an odd loss
        self.entries_received: collections.Counter[Command] = collections.Counter()
        """REQUEST and CANCEL entries received, ever."""
        self.entries_sent: collections.Counter[Command] = collections.Counter()
        """PARTIAL, REPLY and ERROR entries sent, ever (what was batched for a client that
        went away before it was sent is not counted)."""

    # -- derived counts

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Calls handed to an actor and not yet answered (retired ones not counted)."""
        return len(self.calls) - len(self._waiting)

    def idle_actors(self) -> int:
        return len(self.lanes.idle)

    def awaiting_start_since(self) -> float | None:
        """When the newest call whose Started is unseen was told (None: there is none)."""
        if not self._awaiting_start:
            return None
        return next(reversed(self._awaiting_start.values()))

    # -- input: the network

    def receive(self, frames: list[bytes], now: float) -> None:
        self._now = now
        events = self.session.receive(frames, now)
        if len(events) == 1 and type(events[0]) is CallsReceived:
            self._calls_received(events[0])  # calls never bring a deadline forward
            return
        self._handle(events, now)
        self.deadline = self._next_deadline()

    def connection(self, up: bool, now: float) -> None:
        """The socket monitor saw a connection come up (a client (re)appeared) or drop."""
        session = self.session
        events = session.connected(now) if up else session.disconnected()
        self._handle(events, now)
        if up and session.can_send(Command.READY):
            # READY now, before anything is read from the new connection: a HEARTBEAT the
            # client sent earlier would register this worker, and then no READY would tell
            # the client that the calls it sent before are lost (the new incarnation).
            self.out.append(session.ready_frames(now))
        self.deadline = self._next_deadline()

    def handshake_failed(self, now: float) -> None:
        """The client refused our connection's handshake (CURVE): libzmq does not try again
        on that socket, so start over with a fresh one after ``patience`` (a certificate
        authorized meanwhile is then honoured)."""
        if self._lost_at is None:
            self._lost_at = now
        self.deadline = self._next_deadline()

    def _handle(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, CallsReceived):
                self._calls_received(event)
            elif isinstance(event, BadCalls):
                if event.command is Command.REQUEST:
                    body = _codec.dump_error(ErrorKind.PROTOCOL, "ProtocolError", event.reason)
                    for request_id in event.request_ids:
                        self._queue(Command.ERROR, Entry(request_id, 0, body))
            elif isinstance(event, ClientRegistered):
                self._lost_at = None
                self._warned_unanswered = False
                self._offer_told = self.session.ready.capacity  # READY said so
                unsent = self.lanes.unsent_events
                while unsent:  # what was emitted while no client listened
                    self._batch_event(unsent.popleft())
                logger.log(
                    self._log_registration,
                    "worker %s registered with %s (client heartbeat %.3g s x %d)",
                    self.session.ready.name, self.endpoint, event.heartbeat, event.liveness,
                )
                self._log_registration = logging.DEBUG
            elif isinstance(event, ClientLost):
                # A client that said goodbye (each one-shot pirate-call does) is routine: DEBUG,
                # and so is the next registration. One that fell silent is a WARNING; any other
                # loss (the connection dropped, a restarted client) INFO, and the next
                # registration INFO too, so that the log shows the worker is served again.
                closed = event.closed
                level = (logging.WARNING if event.silent
                         else logging.DEBUG if closed else logging.INFO)
                self._log_registration = logging.DEBUG if closed else logging.INFO
                logger.log(
                    level, "worker %s lost its client at %s: %s; waiting for one",
                    self.session.ready.name, self.endpoint, event.reason,
                )
                self._abandon()
                if event.silent:
                    self.reconnect_wanted = True
                else:
                    self._lost_at = now
                self._check_stop(now)

    def _calls_received(self, event: CallsReceived) -> None:
        self.entries_received[event.command] += len(event.entries)
        if event.command is Command.REQUEST:
            for entry in event.entries:
                self._request(entry)
        else:
            for entry in event.entries:
                self.cancel(entry.request_id)
            if self._stop_deadline is not None:
                self._check_stop(self._now)  # the last running call may just have gone

    def _request(self, entry: Entry) -> None:
        request_id, flags, body = entry.request_id, entry.flags, entry.body
        if self.session.state is not SessionState.REGISTERED or self.closing:
            # (not registered: sent before the client learnt we had given its calls up)
            self._not_run(request_id)
            return
        deadline = None
        if flags & DEADLINE:
            try:
                left, body = split_deadline(body)
            except ProtocolError as exc:
                error = _codec.dump_error(ErrorKind.PROTOCOL, "ProtocolError", str(exc))
                self._queue(Command.ERROR, Entry(request_id, 0, error))
                return
            if left <= 0:
                self._queue(Command.ERROR, Entry(request_id, 0, _TIMED_OUT))
                return
            deadline = self._now + left
        if request_id in self.calls:
            self.duplicates += 1
            logger.debug("call %d is already held; its first run will answer", request_id)
            return
        self.last_request = self._now
        # A repeat of a call that ran, or still runs, needs no room: answer it before refusing.
        key = (self.session.client_session, request_id)
        if self.outcomes and self._answer_from_cache(key):
            return
        orphan = self.orphans.pop(key, None) if self.orphans else None
        if orphan is not None:
            self._adopt(orphan)
            return
        if len(self.calls) >= self.offer or (
            len(self.lanes.engines) > 1 and self.lanes.held() >= self.lanes.capacity
        ):
            # Beyond what this client was offered (a smaller offer may still be on its way):
            # the client sends it elsewhere, or here again once there is room.
            self._not_run(request_id)
            return
        self._batch_limit()  # (brings _max_body up to date with the client's announced size)
        run = Run(request_id, body, self.sink, self._max_body, deadline, lane=self.lane)
        call = self.calls[request_id] = WorkerCall(
            request_id, run, session=key[0], retryable=bool(flags & RETRYABLE))
        self._waiting[request_id] = call
        if self.lanes.idle:
            self.lanes.dispatch()

    def _answer_from_cache(self, key: CallKey) -> bool:
        """A repeat of a finished call: its first outcome, again; True if there was one."""
        kept = self.outcomes.get(key)
        if kept is None:
            return False
        self.duplicates += 1
        _, command, body = kept
        self._queue(command, Entry(key[1], STARTED, body))
        return True

    def _adopt(self, orphan: WorkerCall) -> None:
        """The client of a call that kept running without it asks for it again: its answer
        goes to that client after all (its actor stays retired)."""
        self.duplicates += 1
        orphan.orphaned = False
        self.calls[orphan.request_id] = orphan
        if orphan.state is CallState.RUNNING and not orphan.run.began:
            self._awaiting_start[orphan.request_id] = self._now  # its beginning is awaited anew
        else:
            orphan.state = CallState.STARTED  # "started" again, for this attempt
            self._unannounced.append(orphan.request_id)

    def _remember(self, key: CallKey, command: Command, body: bytes) -> None:
        """Keep a retryable call's outcome for ``result_ttl``, within ``result_cache_size``."""
        size = len(body) + _OUTCOME_OVERHEAD
        if size > self.result_cache_size or self.result_ttl <= 0:
            return
        outcomes = self.outcomes
        old = outcomes.pop(key, None)
        if old is not None:
            self._outcome_bytes -= len(old[2]) + _OUTCOME_OVERHEAD
        outcomes[key] = (self._now + self.result_ttl, command, body)
        self._outcome_bytes += size
        while self._outcome_bytes > self.result_cache_size:
            _, (_, _, dropped) = outcomes.popitem(last=False)
            self._outcome_bytes -= len(dropped) + _OUTCOME_OVERHEAD

    def _expire_outcomes(self, now: float) -> None:
        outcomes = self.outcomes
        while outcomes:
            key, (expires, _, body) = next(iter(outcomes.items()))
            if expires > now:
                return
            del outcomes[key]
            self._outcome_bytes -= len(body) + _OUTCOME_OVERHEAD

    def cancel(self, request_id: int) -> None:
        """The caller gave up: forget a waiting call, or retire the actor running it."""
        call = self.calls.pop(request_id, None)
        if call is None:
            return
        state = call.state
        call.run.cancelled = True  # seen by the procedure thread: report() goes quiet
        if state is CallState.WAITING:
            call.state = CallState.CANCELLED
            del self._waiting[request_id]
            return
        assert call.actor is not None
        if state is CallState.HANDED:
            call.state = CallState.CANCELLED
            self.lanes.idle.appendleft(call.actor)  # its actor never got the call: still idle
            self.lanes.dispatch()
            return
        self._awaiting_start.pop(request_id, None)
        call.state = CallState.RETIRED
        self.retired[call.actor] = call
        self.to_retire.append(call.actor)
        logger.debug("call %d cancelled while running; retiring its actor", request_id)

    def _abandon(self) -> None:
        """The client that sent our calls is gone. Retryable calls that run go on, on retired
        actors (their replacements serve whoever comes next), and keep their outcomes for when
        the client asks again; nobody waits for the others."""
        for call in list(self.calls.values()):
            if call.retryable and call.state in _RUNNING_STATES and call.actor is not None:
                del self.calls[call.request_id]
                self._awaiting_start.pop(call.request_id, None)
                call.orphaned = True
                self.orphans[call.session, call.request_id] = call
                if call.actor not in self.retired:
                    self.retired[call.actor] = call
                    if not self.lanes.reusable:  # (retiring an async slot would cancel it)
                        self.to_retire.append(call.actor)
            else:
                self.cancel(call.request_id)
        self._unannounced.clear()
        for entries in self._batch.values():
            entries.clear()
        self._batch_size = 0

    # -- input: the actors

    def actor_ready(self, urn: str) -> None:
        """A new procedure actor is live and idle."""
        self.lanes.actor_ready(urn)

    def told(self, call: WorkerCall, now: float) -> None:
        """The call's actor has it now."""
        call.state = CallState.RUNNING
        call.told_at = now
        self._awaiting_start[call.request_id] = now

    def oldest_running(self, now: float) -> float:
        """Seconds the longest-running call (its client's or an orphan) has been with its
        actor; 0 with none running. A procedure that never returns shows here."""
        told = [call.told_at for calls in (self.calls, self.orphans) for call in calls.values()
                if call.state in _RUNNING_STATES]
        return now - min(told) if told else 0.0

    def tell_failed(self, calls: list[WorkerCall], dead: str) -> None:
        """Telling ``calls[0]``'s actor failed: it is dead. These calls, in order, and the
        later ones of the same turn wait again, first; their other actors are idle again."""
        for call in reversed(calls):
            if call.state is not CallState.HANDED:
                continue
            self._take_back(call)
            if call.actor != dead:
                self.lanes.idle.appendleft(call.actor)  # type: ignore[arg-type]
            call.actor = None
        self.lanes.actor_exited(dead, ())

    def _take_back(self, call: WorkerCall) -> None:
        call.state = CallState.WAITING
        self._waiting[call.request_id] = call
        self._waiting.move_to_end(call.request_id, last=False)

    def started(self, request_id: int) -> None:
        """The call's actor began it (what ``Run.began`` says; for callers without one)."""
        call = self.calls.get(request_id)
        if call is None and self.orphans:
            call = self._orphan(request_id)
        if call is not None:
            call.run.began = True
            self._begun(call)

    def _begun(self, call: WorkerCall) -> None:
        """A RUNNING call whose actor began it is STARTED: "started" is owed."""
        if call.state is CallState.RUNNING and call.run.began:
            call.state = CallState.STARTED
            if not call.orphaned:
                del self._awaiting_start[call.request_id]
                self._unannounced.append(call.request_id)

    def _look_for_begun(self) -> None:
        """The calls whose actors began them since the last look (``Run.began``)."""
        calls = self.calls
        begun = [calls[i] for i in self._awaiting_start if calls[i].run.began]
        for call in begun:
            self._begun(call)

    def partial(self, request_id: int, body: bytes) -> None:
        call = self.calls.get(request_id)
        if call is None or call.state not in _RUNNING_STATES:
            return
        self._begun(call)  # (a procedure reports only once it has begun)
        if call.state is _STARTED_STATE:
            self._announce(call)
        self._queue(_PARTIAL, Entry(request_id, 0, body))

    def _orphan(self, request_id: int) -> WorkerCall | None:
        for call in self.retired.values():
            if call.request_id == request_id and call.orphaned:
                return call
        return None

    def done(
        self, request_id: int, actor: str, command: Command, body: bytes, now: float,
        fatal: bool = False,
    ) -> bool:
        """A call returned; True if it was answered (False: it had been cancelled, or its
        client is away and its outcome is kept for when it asks again)."""
        self._now = now
        call = self.calls.get(request_id)
        retired = self.retired.pop(actor, None)
        if call is None or call.actor != actor:
            if retired is not None and retired.orphaned:
                key = (retired.session, request_id)
                self.orphans.pop(key, None)
                self._remember(key, command, body)
            if retired is not None and self.lanes.reusable and not fatal and not self.closing:
                self.lanes.idle.append(actor)  # the async slot is free again
                self.lanes.dispatch()
            return False
        del self.calls[request_id]
        if call.retryable:
            self._remember((call.session, request_id), command, body)
        flags = 0
        self._begun(call)
        if call.state is CallState.STARTED:
            flags = STARTED  # "started" rides with the reply
        elif call.state is CallState.RUNNING:
            del self._awaiting_start[request_id]  # (answered without beginning: no "started")
        self._queue(command, Entry(request_id, flags, body))
        if (retired is None or self.lanes.reusable) and not fatal and not self.closing:
            # (an adopted orphan's thread actor is retiring; a fatal one stops: Exited follows)
            self.lanes.idle.append(actor)
            self.lanes.dispatch()
        if self._stop_deadline is not None:
            self._check_stop(now)
        return True

    def actor_exited(self, actor: str, unrun: Iterable[Run]) -> None:
        """An actor's loop ended (see :meth:`Lanes.actor_exited`)."""
        self.lanes.actor_exited(actor, unrun)

    def _actor_exited(self, actor: str, unrun_ids: set[int]) -> None:
        """This lane's part of an actor's end: the calls of this lane it never started wait
        again, first and in order; one it was running fails with ActorDeadError."""
        retired = self.retired.pop(actor, None)
        if retired is not None:
            if retired.orphaned:  # its client is away, and now there is no outcome to keep
                self.orphans.pop((retired.session, retired.request_id), None)
                return
            held = self.calls.get(retired.request_id)
            if held is None or held.actor != actor:
                return  # its call was cancelled; its replacement already runs
            # (else an adopted orphan: its call fails like any other below)
        for call in [c for c in self.calls.values() if c.actor == actor]:
            self._awaiting_start.pop(call.request_id, None)
            if call.request_id in unrun_ids or call.state is CallState.HANDED:
                call.actor = None
                self._take_back(call)
            else:
                del self.calls[call.request_id]
                self._announce(call)
                body = _codec.dump_error(ErrorKind.RAISED, "ActorDeadError", "the procedure's actor died")
                self._queue(Command.ERROR, Entry(call.request_id, 0, body))
        if self.session.leaving or self.closing:
            self._give_back_waiting()
        if self._stop_deadline is not None:
            self._check_stop(self._now)  # its call may have been the last one running

    # -- events

    def emit(self, topic: str, when: float, data: bytes) -> None:
        """An event (see :meth:`Lanes.emit`)."""
        self.lanes.emit(EventEntry(topic, when, data))

    def can_take_events(self) -> bool:
        return self.session.can_send(Command.EVENT) and self.session.connection_up

    def _batch_event(self, entry: EventEntry) -> None:
        size = EVENT_HEADER + len(entry.topic.encode()) + len(entry.data)
        limit = self._batch_limit()
        if size > limit:
            self.lanes.events_dropped += 1
            logger.warning("an event on %r of %d bytes exceeds max_message_size; dropped", entry.topic, size)
            return
        if self._events and self._events_size + size > limit:
            self._flush_events(self._now)
        self._events.append(entry)
        self._events_size += size

    def _flush_events(self, now: float) -> None:
        events, self._events, self._events_size = self._events, [], 0
        if self.can_take_events():
            self.out.append(self.session.events(events, now))
            self.events_sent += len(events)
        else:  # the client went away meanwhile: keep them for the next one
            for entry in events:
                self.lanes.keep_event(entry)

    # -- dispatch and answers

    def _hand(self, actor: str) -> None:
        """Give this lane's oldest waiting call to ``actor``."""
        _, call = self._waiting.popitem(last=False)
        call.state = CallState.HANDED
        call.actor = actor
        self.to_tell.append(call)

    def _announce(self, call: WorkerCall) -> None:
        """Send "started" now if it is still owed."""
        self._begun(call)
        if call.state is CallState.STARTED:
            call.state = CallState.REPORTED
            self._queue(Command.PARTIAL, Entry(call.request_id, STARTED))

    def _queue(self, command: Command, entry: Entry) -> None:
        size = len(entry.body) + ENTRY_HEADER
        if self._batch_size + size > self._batch_limit():
            self._flush_batch(self._now)
        self._batch[command].append(entry)
        self._batch_size += size

    _limit_for = -1  # the client's announced size the cached sizes were computed for
    _room = 0
    _max_body = 0

    def _batch_limit(self) -> int:
        """Room for entries in one message to this client (cached with ``_max_body``, the
        largest answer body: they are read per call)."""
        announced = self.session.client_max_message_size
        if announced != self._limit_for:
            self._limit_for = announced
            self._room = self.session.codec.room(self.session.send_limit)
            self._max_body = self.session.max_body
        return self._room

    def _not_run(self, request_id: int) -> None:
        body = _codec.dump_error(ErrorKind.NOT_RUN, "NotRun", "the worker is leaving; not run")
        self._queue(Command.ERROR, Entry(request_id, 0, body))

    def _give_back_waiting(self) -> None:
        while self._waiting:
            request_id, _ = self._waiting.popitem(last=False)
            del self.calls[request_id]
            self._not_run(request_id)

    def flush(self, now: float) -> None:
        """Turn what is batched into frames in :attr:`out`: every "started" still owed and every
        partial first, then replies, then errors, so each call's partials precede its answer."""
        self._now = now
        if self.offer != self._offer_told and self.session.can_send(Command.CAPACITY):
            self.out.append(self.session.capacity(self.offer, now))  # first: a smaller share
            self._offer_told = self.offer
        if self._events:
            self._flush_events(now)  # first: an event emitted before a reply arrives before it
        if self._awaiting_start:
            self._look_for_begun()
        if self._unannounced:
            calls = self.calls
            for request_id in self._unannounced:
                call = calls.get(request_id)
                if call is not None and call.state is CallState.STARTED:
                    call.state = CallState.REPORTED
                    self._batch[Command.PARTIAL].append(Entry(request_id, STARTED))
                    self._batch_size += ENTRY_HEADER
            self._unannounced.clear()
        if self._batch_size:
            self._flush_batch(now)

    def _flush_batch(self, now: float) -> None:
        if self._events:
            self._flush_events(now)  # events emitted before these answers go first
        session = self.session
        for command, entries in self._batch.items():
            if entries:
                if session.can_send(command):
                    self.out.append(session.calls(command, entries, now))
                    self.entries_sent[command] += len(entries)
                self._batch[command] = []
        self._batch_size = 0

    # -- time

    def tick(self, now: float, drained: bool = True) -> None:
        """Heartbeats, the client's liveness (judged only once the backlog is read), the
        fresh start after a client that left, and the stop's deadline."""
        self._now = now
        if self._lost_at is not None and now >= self._lost_at + self.patience:
            # No client came back on this socket; libzmq may have given up on the session
            # (it does after a protocol error), so start over with a fresh one.
            self._lost_at = now
            self.reconnect_wanted = True
        events, frames = self.session.tick(now, expire=drained)
        self._handle(events, now)
        self.out.extend(frames)
        if self.session.unanswered >= UNANSWERED_READIES and not self._warned_unanswered:
            self._warn_unanswered()
        if self.outcomes:
            self._expire_outcomes(now)
        if self._stop_deadline is not None and now >= self._stop_deadline:
            self.finish(now)
        self.deadline = self._next_deadline()

    def _warn_unanswered(self) -> None:
        """Say why nothing answers, once per wait: the usual causes are all configuration."""
        self._warned_unanswered = True
        session = self.session
        logger.warning(
            "worker %s: no answer from %s after %d READYs (%.3g s): is a client running there? "
            "A client drops what it cannot verify without saying so: check that both use the "
            "same key (this worker %s) and the same CURVE certificates, and the same version "
            "of pirate_actors (protocol %s)", session.ready.name, self.endpoint,
            session.unanswered, session.unanswered * session.ready.heartbeat,
            "signs with a key" if session.sealed else "has no key", SIGNATURE.decode(),
        )

    def _next_deadline(self) -> float:
        deadline = self.session.next_deadline()
        if self._stop_deadline is not None:
            deadline = min(deadline, self._stop_deadline)
        if self._lost_at is not None:
            deadline = min(deadline, self._lost_at + self.patience)
        if self.outcomes:
            deadline = min(deadline, next(iter(self.outcomes.values()))[0])
        return deadline

    # -- leaving

    def leave(self, now: float, timeout: float) -> None:
        """Stop taking calls: tell the client, answer waiting calls "not run", and finish once
        the running ones are answered or ``timeout`` has passed."""
        self._now = now
        if self._stop_deadline is None:
            self._stop_deadline = now + timeout
            self.out.extend(self.session.leave(now))
            self._give_back_waiting()
        self._check_stop(now)
        self.deadline = self._next_deadline()

    def _check_stop(self, now: float) -> None:
        if self._stop_deadline is not None and self.running == 0:
            self.finish(now)

    def finish(self, now: float) -> None:
        """Say a final goodbye: every call held is answered first — "not run" if it never
        started, "abandoned" if it still runs — so a call the client still waits for after the
        DISCONNECT never reached this worker. Nothing is sent afterwards."""
        if self.finished:
            return
        self._give_back_waiting()
        if self.calls:  # still running (at the stop's deadline, or the worker is going down)
            for call in list(self.calls.values()):
                call.run.cancelled = True
                self._queue(Command.ERROR, Entry(call.request_id, 0, _ABANDONED))
        self.flush(now)
        self.out.extend(self.session.close(now))
        self.finished = True
        self.close()

    def close(self) -> None:
        """No more calls: every running call's procedure goes quiet (nobody reads its answers)."""
        self.closing = True
        for call in self.calls.values():
            call.run.cancelled = True
        self.lanes.idle.clear()


class Lanes:
    """The clients of one worker: an engine each, the idle procedure actors they share, the
    share of the worker's capacity each is offered, and the events no client has taken yet.

    With one client it is offered the whole capacity. With several, each registered client
    that sent calls within its last heartbeat interval (or holds some) is *active*; an idle
    one is offered only a slot to start with, the active ones share the rest equally, and a
    share an active client does not use goes to the others (work-conserving). What is offered
    beyond the calls a client holds never exceeds the worker's free capacity, so the worker
    never holds more than its capacity in all. Idle actors go to the lanes' waiting calls in
    turn (round robin), one call at a time.
    """

    def __init__(self, capacity: int, event_buffer: int = 1000, reusable: bool = False) -> None:
        self.capacity = capacity
        self.reusable = reusable
        """The actors are async: a slot whose call was cancelled (its task cancelled) or left
        running for a client that went away takes calls again once that call returns, instead
        of being retired and replaced."""
        self.idle: collections.deque[str] = collections.deque()
        self.engines: list[WorkerEngine] = []
        self._turn = 0
        self.event_buffer = event_buffer
        self.unsent_events: collections.deque[EventEntry] = collections.deque()
        """Events emitted while no client was registered (the newest ``event_buffer``)."""
        self.events_dropped = 0

    def add(self, engine: WorkerEngine) -> int:
        self.engines.append(engine)
        return len(self.engines) - 1

    def held(self) -> int:
        """Calls the worker holds, over all its clients."""
        engines = self.engines
        return len(engines[0].calls) if len(engines) == 1 else sum(len(e.calls) for e in engines)

    # -- actors

    def actor_ready(self, urn: str) -> None:
        """A new procedure actor is live and idle."""
        if self.engines[0].closing:
            return
        self.idle.append(urn)
        self.dispatch()

    def dispatch(self) -> None:
        """Idle actors to waiting calls, one lane after the other."""
        idle, engines = self.idle, self.engines
        if len(engines) == 1:
            engine = engines[0]
            while idle and engine._waiting:
                engine._hand(idle.popleft())
            return
        turn, count = self._turn, len(engines)
        while idle:
            for step in range(count):
                engine = engines[(turn + step) % count]
                if engine._waiting:
                    engine._hand(idle.popleft())
                    turn = (turn + step + 1) % count
                    break
            else:
                break
        self._turn = turn

    def actor_exited(self, actor: str, unrun: Iterable[Run]) -> None:
        """An actor's loop ended: each lane takes back its calls the actor never started and
        fails the one it was running, if any."""
        try:
            self.idle.remove(actor)
        except ValueError:
            pass
        unrun_ids: dict[int, set[int]] = {}
        for run in unrun:
            unrun_ids.setdefault(run.lane, set()).add(run.request_id)
        for engine in self.engines:
            engine._actor_exited(actor, unrun_ids.get(engine.lane, set()))
        self.dispatch()

    # -- shares

    def rebalance(self, now: float) -> None:
        """Set each client's ``offer`` (see the class docstring). Only with several clients."""
        engines = [e for e in self.engines if e.session.registered]
        if len(engines) <= 1:
            for engine in engines:
                engine.offer = self.capacity
            return
        capacity = self.capacity
        active = [e for e in engines if e.calls or now - e.last_request < e.session.ready.heartbeat]
        idle = [e for e in engines if e not in active]
        # Idle clients keep a slot each, as far as the active ones leave room for one each.
        reserve = max(0, min(len(idle), capacity - len(active)))
        targets: dict[int, int] = {e.lane: (1 if i < reserve else 0) for i, e in enumerate(idle)}
        sharers = active or engines
        if not active:
            targets = {}
        pool = capacity - sum(targets.values())
        self._share_turn = (getattr(self, "_share_turn", 0) + 1) % len(sharers)
        for index, engine in enumerate(sharers):
            # (the remainder goes round, so that no lane is left at 0 for good)
            extra = 1 if (index - self._share_turn) % len(sharers) < pool % len(sharers) else 0
            targets[engine.lane] = pool // len(sharers) + extra
        held = {e.lane: len(e.calls) for e in engines}
        free = capacity - self.held()
        wants = {lane: max(0, targets[lane] - held[lane]) for lane in targets}
        grants = dict.fromkeys(targets, 0)
        # First what each is owed of its share, in turn, then what is left to the active ones.
        for takers, limit in ((list(targets), wants), ([e.lane for e in sharers], None)):
            while free > 0:
                given = False
                for lane in takers:
                    if free > 0 and (limit is None or grants[lane] < limit[lane]):
                        grants[lane] += 1
                        free -= 1
                        given = True
                if not given:
                    break
        for engine in engines:
            engine.offer = held[engine.lane] + grants[engine.lane]

    # -- events

    def emit(self, entry: EventEntry) -> None:
        """To every client that can take it now, else kept for the first that registers."""
        taken = False
        for engine in self.engines:
            if engine.can_take_events():
                engine._batch_event(entry)
                taken = True
        if not taken:
            self.keep_event(entry)

    def keep_event(self, entry: EventEntry) -> None:
        if len(self.unsent_events) >= self.event_buffer:
            self.events_dropped += 1
            if not self.unsent_events:
                return  # (event_buffer=0: nothing is kept)
            self.unsent_events.popleft()
        self.unsent_events.append(entry)
