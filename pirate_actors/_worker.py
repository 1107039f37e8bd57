"""The worker: a socket actor that owns the DEALER socket and a supervised procedure pool.

The socket actor is a Pykka actor whose inbox is the socket loop's mailbox. When the inbox is
empty, ``get()`` hands the actor an *idle* message, and handling it runs :class:`SocketLoop`:
send what is batched, hand calls to procedure actors, sleep in one poll on the socket, its
monitor and the inbox's wake-up fd, read, run timers, and take the procedure actors' answers
straight from the inbox, until a message only Pykka handles (stop, ask, ``Exited``) is next.
The actor is a thin adapter: :class:`WorkerEngine` decides everything about calls, the
:class:`Pool` keeps the actors. Only this actor's thread touches the socket.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket as _socket
import threading
import itertools
import time
import uuid
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import pykka
import zmq
from pykka._envelope import Envelope

from ._drops import DropLog
from ._errors import WorkerCrashed
from ._loop import SocketLoop
from ._mailbox import Mailbox, drain, send_frames
from ._procedures import (
    Done,
    Emit,
    Exited,
    Partial,
    ProcedureActor,
    idempotent_of,
    is_async,
    make_emit,
    procedures_of,
    slots_of,
)
from ._security import Curve, KeyArg, check_endpoint, resolve_key
from ._supervisor import Pool
from ._worker_engine import (
    DEFAULT_EVENT_BUFFER,
    DEFAULT_RESULT_CACHE_SIZE,
    DEFAULT_RESULT_TTL,
    CallState,
    Lanes,
    WorkerEngine,
)
from .protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Command,
    EventEntry,
    FrameCodec,
    Ready,
    WorkerProtocol,
    check_settings,
)

__all__ = ["Worker"]

logger = logging.getLogger("pirate_actors.worker")

_FAIR_SHARE = 256  # inbox messages handled before the socket and timers get a turn
_UNFINISHED_HANDSHAKES = 5
"""A run of this many incomplete CURVE handshakes is warned about (one is a client closing)."""
STARTED_DELAY = 0.002
"""Seconds after handing a call over before the socket thread first looks whether it began
(``Run.began``): the longest delay of a "started" whose procedure begins at once."""


class _Idle:
    """The message an empty inbox yields: run the socket loop."""


_IDLE = Envelope(_Idle())
_ANSWERS = frozenset({Done, Partial, Emit})
_HANDED = CallState.HANDED


class _SocketInbox:
    """A Pykka inbox (``put``/``get``/``empty``) whose reader can sleep in a zmq poll."""

    def __init__(self) -> None:
        self.mailbox: Mailbox[Any] = Mailbox()
        """Pykka's envelopes, and answers put bare (``put_answer``)."""
        self._streak = 0

    def put(self, envelope: Envelope[Any], /) -> None:
        self.mailbox.put(envelope)

    def put_answer(self, answer: Done | Partial | Emit, /) -> None:
        """A procedure actor's answer (or an event), bare: the socket loop takes it from the
        mailbox itself, so it needs no Pykka envelope (``get`` wraps one that Pykka sees)."""
        self.mailbox.put(answer)

    def get(self) -> Envelope[Any]:
        # Every _FAIR_SHARE messages the socket gets a turn even if the inbox never empties,
        # so a procedure reporting as fast as it can cannot starve heartbeats and flushes.
        self._streak += 1
        if self._streak > _FAIR_SHARE:
            self._streak = 0
            return _IDLE
        try:
            item: Any = self.mailbox.get_nowait()
        except IndexError:
            self._streak = 0
            return _IDLE
        return item if type(item) is Envelope else Envelope(item)

    def empty(self) -> bool:
        return self.mailbox.empty()


@dataclass(frozen=True)
class _Config:
    actor_class: type[ProcedureActor]
    connect: tuple[str, ...]
    pool_size: int
    capacity: int
    key: tuple[bytes, ...] | None
    heartbeat: float
    liveness: int
    name: str
    actor_args: tuple[Any, ...]
    actor_kwargs: dict[str, Any]
    max_message_size: int
    identity: bytes
    context: zmq.Context[zmq.Socket[bytes]]
    started: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    stopping_actors: list[pykka.ActorRef[Any]] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    """Why the worker gave up serving, if it did (see ``max_restarts``)."""
    result_ttl: float = DEFAULT_RESULT_TTL
    result_cache_size: int = DEFAULT_RESULT_CACHE_SIZE
    event_buffer: int = DEFAULT_EVENT_BUFFER
    max_restarts: int = 10
    restart_window: float = 10.0
    curve: Curve | None = None


@dataclass(frozen=True)
class _BeginStop:
    timeout: float


class _GetStats:
    """Ask the socket actor for its counters (tests and diagnostics)."""


class _Lane:
    """One client endpoint of the worker: its engine, its DEALER socket and that socket's monitor."""

    def __init__(self, endpoint: str, engine: WorkerEngine) -> None:
        self.endpoint = endpoint
        self.engine = engine
        self.socket: zmq.Socket[bytes] | None = None
        self.monitor: zmq.Socket[bytes] | None = None
        self.drops = DropLog(logger, f"worker {engine.session.ready.name}")
        self.unfinished_handshakes = 0
        """CURVE handshakes in a row that ended before they succeeded or were refused."""


class _SocketActor(pykka.ThreadingActor):
    """Owns the DEALER sockets (one per client endpoint); drives their engines and the pool
    (the loop's driver)."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> _SocketInbox:
        return _SocketInbox()

    def __init__(self, config: _Config) -> None:
        super().__init__()
        self.config = config
        self.inbox: _SocketInbox = self.actor_inbox  # type: ignore[assignment]
        procedures = tuple(sorted(procedures_of(config.actor_class)))
        ready = Ready(config.name, config.capacity, config.heartbeat, config.liveness, procedures,
                      max_message_size=config.max_message_size,
                      idempotent=tuple(sorted(idempotent_of(config.actor_class))),
                      id=config.identity.decode())
        self._sockets_made = itertools.count(1)
        slots = slots_of(config.actor_class)
        asynchronous = is_async(config.actor_class)
        self.lanes = Lanes(config.capacity, config.event_buffer, reusable=asynchronous)
        now = time.monotonic()
        self.lane_list = [
            _Lane(endpoint, WorkerEngine(
                WorkerProtocol(FrameCodec(config.key, config.max_message_size),
                               replace(ready, lane=index), now),
                self.actor_ref, config.heartbeat * config.liveness, config.result_ttl,
                config.result_cache_size, config.event_buffer, self.lanes, endpoint,
            ))
            for index, endpoint in enumerate(config.connect)
        ]
        self.engines = [lane.engine for lane in self.lane_list]
        self.pool = Pool(self._start_procedure_actor, config.pool_size, self.actor_ref,
                         self.lanes.actor_ready, max_restarts=config.max_restarts,
                         restart_window=config.restart_window, slots=slots,
                         cancels_tasks=asynchronous)
        self.loop = SocketLoop(self.inbox.mailbox, self)
        self._stopping = False

    # -- life cycle

    def on_start(self) -> None:
        config = self.config
        try:
            for lane in self.lane_list:
                self._open_socket(lane)
            self.pool.fill()
            logger.info(
                "worker %s serving %s from %s, connecting to %s",
                config.name, ", ".join(self.engines[0].session.ready.procedures) or "(nothing)",
                config.actor_class.__qualname__, ", ".join(config.connect),
            )
        except BaseException:
            self._shutdown()  # Pykka calls no on_failure for a failed on_start
            raise
        finally:
            config.started.set()

    def _open_socket(self, lane: _Lane) -> None:
        """Create and connect a lane's DEALER socket and its monitor (in this actor's thread)."""
        config = self.config
        sock = config.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 500)
        # Not ZMQ_IMMEDIATE: with it libzmq tears down the pipe on every disconnect, which can
        # abort the process mid multipart read (fq.cpp "!_more") and discards unread goodbyes.
        # No send limit either: an answer must never be dropped; a client that stops reading
        # is dead within its liveness and the socket is then replaced, queue and all.
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, config.max_message_size)
        # A fresh routing id for every socket: the client ignores a connection that claims a
        # routing id it already holds (no takeover), so a stale one must never block ours.
        sock.setsockopt(zmq.ROUTING_ID, b"%s.%d" % (config.identity, next(self._sockets_made)))
        if config.curve is not None:
            config.curve.apply(sock)
        monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        sock.connect(lane.endpoint)
        lane.socket, lane.monitor = sock, monitor
        engine = lane.engine
        self.loop.add(sock, lambda frames, _frame: self._receive(lane, frames))
        self.loop.watch(monitor, lambda: self._on_monitor(lane))

    def _receive(self, lane: _Lane, frames: list[bytes]) -> None:
        now = time.monotonic()
        lane.engine.receive(frames, now)
        stats = lane.engine.session.stats
        if stats.last_drop is not None:
            lane.drops.take(stats, lane.endpoint, now)

    def _close_socket(self, lane: _Lane, linger: int | None = None) -> None:
        if lane.socket is not None:
            self.loop.remove(lane.socket)
            lane.socket.disable_monitor()
            lane.socket.close(linger)
            lane.socket = None
        if lane.monitor is not None:
            self.loop.unwatch(lane.monitor)
            lane.monitor.close(linger=0)
            lane.monitor = None

    def _reconnect(self, lane: _Lane) -> None:
        """Paranoid Pirate: after the client fell silent, start over with a fresh socket.

        libzmq does not reconnect a session it ended for a protocol error (e.g. a message
        beyond MAXMSGSIZE), so waiting on the old socket could wait forever."""
        lane.engine.reconnect_wanted = False
        self._close_socket(lane, linger=0)
        lane.engine.connection(False, time.monotonic())
        self._open_socket(lane)

    def _start_procedure_actor(self) -> pykka.ActorRef[Any]:
        return self.config.actor_class.start(*self.config.actor_args, **self.config.actor_kwargs)

    def on_stop(self) -> None:
        self._shutdown()

    def on_failure(self, *exc_info: Any) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        now = time.monotonic()
        for engine in self.engines:
            engine.finish(now)  # (nothing more if it had already said goodbye)
        self.config.stopping_actors.extend(self.pool.close())
        for lane in self.lane_list:
            if lane.socket is not None and lane.engine.out:
                self._send_out(lane)
            self._close_socket(lane)
        self.inbox.mailbox.close()
        self.config.stopped.set()

    # -- messages Pykka hands us

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Idle):
            self.loop.run()
        elif self._answer(message):
            pass
        elif isinstance(message, Exited):
            for slot in self.pool.slots_of(message.actor_urn):
                self.lanes.actor_exited(slot, message.unrun)
            self.pool.exited(message.actor_urn, message.reason)
            self._check_crash()
        elif isinstance(message, _BeginStop):
            now = time.monotonic()
            for engine in self.engines:
                engine.leave(now, message.timeout)
        elif isinstance(message, _GetStats):
            return self._stats()
        return None

    def _stats(self) -> dict[str, Any]:
        engines = self.engines
        sessions = [e.session.stats for e in engines]
        return {
            "malformed": sum(s.malformed for s in sessions),
            "unauthenticated": sum(s.unauthenticated for s in sessions),
            "replayed": sum(s.replayed for s in sessions),
            "late": sum(s.late for s in sessions),
            "received": sum(s.received for s in sessions),
            "sent": sum(s.sent for s in sessions),
            "registered": any(e.session.registered for e in engines),
            "clients": sum(1 for e in engines if e.session.registered),
            "live_actors": self.pool.live_actors(),
            "replacements": self.pool.replacements,
            "held": self.lanes.held(),
            "queued": sum(e.waiting for e in engines),
            "in_flight": sum(e.running for e in engines),
            "oldest_call_seconds": max(
                (e.oldest_running(time.monotonic()) for e in engines), default=0.0),
            "duplicates": sum(e.duplicates for e in engines),
            "outcomes_kept": sum(len(e.outcomes) for e in engines),
            "requests": sum(e.entries_received[Command.REQUEST] for e in engines),
            "cancels": sum(e.entries_received[Command.CANCEL] for e in engines),
            "replies": sum(e.entries_sent[Command.REPLY] for e in engines),
            "errors": sum(e.entries_sent[Command.ERROR] for e in engines),
            "partials": sum(e.entries_sent[Command.PARTIAL] for e in engines),
            "events_sent": sum(e.events_sent for e in engines),
            "events_dropped": self.lanes.events_dropped,
            "events_buffered": len(self.lanes.unsent_events),
        }

    def _answer(self, message: Any) -> bool:
        """Hand a procedure actor's Done or Partial or an Emit to the engines; False for
        anything else."""
        kind = type(message)
        if kind is Done:
            if self.engines[message.lane].done(message.request_id, message.actor_urn, message.command,
                                               message.body, time.monotonic(), message.fatal):
                self.pool.served(message.actor_urn)
        elif kind is Partial:
            self.engines[message.lane].partial(message.request_id, message.body)
        elif kind is Emit:
            self.lanes.emit(EventEntry(message.topic, message.time, message.data))
        else:
            return False
        return True

    # -- the loop's driver interface

    def flush(self) -> None:
        """Send what the engines batched, then hand over the calls they dispatched (last: an
        actor woken earlier would only wait for the GIL while this thread finishes its turn)."""
        now = time.monotonic()
        lanes = self.lane_list
        if len(lanes) > 1:
            self.lanes.rebalance(now)
        finished = True
        for lane in lanes:
            engine = lane.engine
            engine.flush(now)
            if engine.out:
                self._send_out(lane)
            if engine.to_retire:
                retire, engine.to_retire = engine.to_retire, []
                for urn in retire:
                    self.pool.retire(urn)
            finished = finished and engine.finished
        for engine in self.engines:
            while engine.to_tell:
                self._tell(engine)
        for lane in lanes:
            if lane.engine.reconnect_wanted:
                self._reconnect(lane)
        if finished and not self._stopping:
            self._stopping = True
            self.stop()

    def _tell(self, engine: WorkerEngine) -> None:
        pool = self.pool
        calls, engine.to_tell = engine.to_tell, []
        now = time.monotonic()
        for index, call in enumerate(calls):
            if call.state is not _HANDED:
                continue  # cancelled meanwhile
            assert call.actor is not None
            if not pool.tell(call.actor, call.run):
                dead = call.actor
                engine.tell_failed(calls[index:], dead)
                pool.exited(pool.urn_of(dead), "a procedure actor was found dead")
                self._check_crash()
                return
            engine.told(call, now)

    def _send_out(self, lane: _Lane) -> None:
        out, lane.engine.out = lane.engine.out, []
        socket = lane.socket
        if socket is None:
            return
        for frames in out:
            try:
                send_frames(socket, frames)
            except zmq.Again:
                logger.debug("no connection to the client; a message was dropped")

    def wake_at(self) -> float:
        wake = self.pool.next_spawn
        told: float | None = None
        for engine in self.engines:
            wake = min(wake, engine.deadline)
            since = engine.awaiting_start_since()
            if since is not None and (told is None or since > told):
                told = since
        if told is not None:
            # A Started may sit unannounced in the inbox. Look after STARTED_DELAY, then back
            # off (each wait as long as the newest call has waited), so an actor slow to begin
            # does not keep this thread waking every few milliseconds.
            now = time.monotonic()
            wake = min(wake, now + max(STARTED_DELAY, now - told))
        return wake

    def _check_crash(self) -> None:
        """Too many actor deaths: stop serving; calls never started go back "not run"."""
        if self.pool.crashed and not self.config.crashed:
            self.config.crashed.append(self.pool.crashed)
            logger.error("worker %s stops serving: %s", self.config.name, self.pool.crashed)
            now = time.monotonic()
            for engine in self.engines:
                engine.leave(now, 0.0)

    def on_wake(self, now: float, drained: bool) -> None:
        if now >= self.pool.next_spawn:
            self.pool.tick(now)
            self._check_crash()
        for engine in self.engines:
            if not drained or now >= engine.deadline:
                engine.tick(now, drained)

    def on_inbox(self) -> bool:
        """Take the answers waiting in the inbox (a bounded batch) without a trip through
        Pykka's loop for each; False when a message only Pykka can handle is next."""
        mailbox = self.inbox.mailbox
        for _ in range(_FAIR_SHARE):
            if self._stopping:
                return False
            if mailbox.empty():
                return True
            answer = mailbox.peek()
            if type(answer) not in _ANSWERS:
                return False  # an envelope: a message for Pykka's loop
            mailbox.get_nowait()
            self._answer(answer)
        return True

    def _on_monitor(self, lane: _Lane) -> None:
        monitor = lane.monitor
        assert monitor is not None
        while True:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = int.from_bytes(frames[0][:2], "little")
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                lane.unfinished_handshakes = 0
                lane.engine.connection(True, time.monotonic())
            elif event == zmq.EVENT_DISCONNECTED:
                # The client closed or died: no need to wait for its silence. What it sent
                # before is read first: a goodbye and the drop can come in the same poll.
                if lane.socket is not None:
                    drain(lane.socket, lambda frames, _frame: self._receive(lane, frames))
                lane.engine.connection(False, time.monotonic())
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                # The client's ZAP handler refused us; libzmq will not try again on this socket.
                lane.engine.handshake_failed(time.monotonic())
                lane.drops.dropped(
                    lane.endpoint, "refused",
                    "the client refused this worker's CURVE certificate (it is not in the "
                    "client's authorized folder)", time.monotonic(), "a connection")
            elif self.config.curve is not None:
                # A handshake cut short: the client went away mid-way (a one-shot pirate-call
                # closing), or curve_server is not its certificate. libzmq tries again itself;
                # only a run of them is worth a warning.
                lane.unfinished_handshakes += 1
                logger.debug("worker %s: a CURVE handshake with %s did not complete",
                             self.config.name, lane.endpoint)
                if lane.unfinished_handshakes % _UNFINISHED_HANDSHAKES == 0:
                    lane.drops.dropped(
                        lane.endpoint, "refused",
                        f"{lane.unfinished_handshakes} CURVE handshakes in a row did not complete: "
                        "is curve_server the client's certificate?", time.monotonic(), "a connection")
            else:
                lane.drops.dropped(
                    lane.endpoint, "refused",
                    "the connection's handshake failed (does the client use CURVE?)",
                    time.monotonic(), "a connection")

# --------------------------------------------------------------------------- public facade

_live_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


def _stop_live_workers() -> None:
    for worker in list(_live_workers):
        worker.stop(timeout=0.5)


atexit.register(_stop_live_workers)


class Worker:
    """Serves the procedures of ``actor_class`` to the client bound at ``connect`` (an
    endpoint, or a list of them: one client each, sharing this worker's pool).

    ``start()`` returns at once; ``stop()`` leaves gracefully; a ``with`` block does both.
    """

    def __init__(
        self,
        actor_class: type[ProcedureActor],
        connect: str | Sequence[str],
        *,
        pool_size: int = 4,
        prefetch: int | None = None,
        key: KeyArg = None,
        heartbeat: float = 1.0,
        liveness: int = 3,
        name: str | None = None,
        actor_args: Sequence[Any] = (),
        actor_kwargs: dict[str, Any] | None = None,
        insecure: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        result_ttl: float = DEFAULT_RESULT_TTL,
        result_cache_size: int = DEFAULT_RESULT_CACHE_SIZE,
        max_restarts: int = 10,
        restart_window: float = 10.0,
        event_buffer: int = DEFAULT_EVENT_BUFFER,
        curve_secret: str | os.PathLike[str] | None = None,
        curve_server: str | os.PathLike[str] | None = None,
    ) -> None:
        if not (isinstance(actor_class, type) and issubclass(actor_class, ProcedureActor)):
            raise TypeError(f"actor_class must be a ProcedureActor subclass, not {actor_class!r}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        slots = pool_size * slots_of(actor_class)  # calls the pool runs at once
        prefetch = slots if prefetch is None else prefetch
        if prefetch < 0:
            raise ValueError("prefetch must be 0 or more")
        check_settings(heartbeat, liveness)
        if not result_ttl >= 0 or not result_cache_size >= 0:
            raise ValueError("result_ttl and result_cache_size must be 0 or more")
        if not isinstance(max_restarts, int) or max_restarts < 0 or not restart_window > 0:
            raise ValueError("max_restarts must be an int >= 0 and restart_window > 0")
        if not isinstance(event_buffer, int) or event_buffer < 0:
            raise ValueError("event_buffer must be an int >= 0")
        keys = resolve_key(key)
        curve = Curve.for_worker(curve_secret, curve_server)
        endpoints = (connect,) if isinstance(connect, str) else tuple(connect)
        if not endpoints or not all(isinstance(e, str) for e in endpoints):
            raise ValueError("connect must be an endpoint or a non-empty list of endpoints")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("connect lists an endpoint twice")
        for endpoint in endpoints:
            check_endpoint(endpoint, keys, insecure, curve=curve is not None)
        self.name = name or f"{_socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.id = uuid.uuid4().hex
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._config = _Config(
            actor_class=actor_class, connect=endpoints, pool_size=pool_size,
            capacity=slots + prefetch, key=keys, heartbeat=float(heartbeat), liveness=int(liveness),
            name=self.name, actor_args=tuple(actor_args), actor_kwargs=dict(actor_kwargs or {}),
            max_message_size=int(max_message_size), identity=self.id.encode(), context=self._context,
            result_ttl=float(result_ttl), result_cache_size=int(result_cache_size),
            max_restarts=max_restarts, restart_window=float(restart_window), event_buffer=event_buffer,
            curve=curve,
        )
        self._ref: pykka.ActorRef[_SocketActor] | None = None
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Calls this worker holds at once: ``pool_size × max_concurrency + prefetch``."""
        return self._config.capacity

    def start(self) -> Worker:
        """Start serving (returns at once; registration happens in the background)."""
        with self._lock:
            if self._ref is not None:
                raise RuntimeError("worker already started")
            self._ref = _SocketActor.start(self._config)
        self._config.started.wait(10)
        if self._config.stopped.is_set() or not self._ref.is_alive():
            self._ref = None
            self._context.term()
            raise RuntimeError(
                f"worker {self.name} could not start on {', '.join(self._config.connect)} (see log)")
        _live_workers.add(self)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Leave: no new calls, running ones finish (up to ``timeout``), unstarted ones go back."""
        ref = self._ref
        if ref is None:
            return
        try:
            ref.tell(_BeginStop(timeout))
        except pykka.ActorDeadError:
            pass
        deadline = time.monotonic() + timeout + 5.0
        if not self._config.stopped.wait(timeout + 5.0):
            logger.error("worker %s did not stop in time", self.name)
            return
        _live_workers.discard(self)
        grace = min(deadline, time.monotonic() + 1.0)
        for actor in self._config.stopping_actors:
            # Idle actors stop at once; one stuck in a procedure is a daemon thread left behind.
            actor.actor_stopped.wait(max(0.0, grace - time.monotonic()))
        self._end_context()

    def _end_context(self, patience: float = 2.0) -> None:
        """Terminate the ZeroMQ context, waiting at most ``patience`` seconds. libzmq resolves
        the client's host name in its I/O thread, and a lookup of a name that stopped resolving
        (a client container that went away) can hang for many seconds, and ``term()`` with it:
        a worker must still stop when asked."""
        ender = threading.Thread(target=self._context.term, name="pirate-worker-term", daemon=True)
        ender.start()
        ender.join(patience)
        if ender.is_alive():
            logger.warning(
                "worker %s stopped; ZeroMQ is still busy (resolving %s?) and is left to the "
                "process's exit", self.name, ", ".join(self._config.connect),
            )

    def emit(self, topic: str, data: Any = None) -> None:
        """Send an event to every client this worker is registered with, from any thread of
        its process; kept (the newest ``event_buffer``) while it is registered with none."""
        ref = self._ref
        if ref is None or self._config.stopped.is_set():
            raise RuntimeError(f"worker {self.name} is not running")
        limit = self._config.max_message_size
        inbox: _SocketInbox = ref.actor_inbox  # type: ignore[assignment]
        inbox.put_answer(make_emit(topic, data, limit))

    def join(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped; False on timeout. Raises :class:`WorkerCrashed`
        if it stopped because its procedure actors kept dying (``max_restarts``)."""
        stopped = self._config.stopped.wait(timeout)
        if stopped and self._config.crashed:
            raise WorkerCrashed(f"worker {self.name} stopped serving: {self._config.crashed[0]}")
        return stopped

    @property
    def running(self) -> bool:
        return self._ref is not None and not self._config.stopped.is_set()

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """Counters of the socket loop (``docs/operations.md``): messages received and sent,
        dropped by cause, call entries in and out, calls held, queued and running now, actors,
        replacements, duplicates and events."""
        if self._ref is None:
            raise RuntimeError("worker not started")
        result = self._ref.ask(_GetStats(), block=True, timeout=timeout)
        assert isinstance(result, dict)
        return result

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Worker {self.name} {', '.join(self._config.connect)} capacity={self.capacity}>"
