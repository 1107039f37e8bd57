"""The worker: a socket actor that owns the DEALER socket and a supervised procedure pool.

The socket actor is a Pykka actor with its own inbox type. When the inbox is empty, ``get()``
hands the actor an *idle* message, and handling it runs the actor's own loop: send what is
batched, sleep in one ``zmq.Poller`` on the socket, the socket's monitor and the inbox's wake-up
fd until any of them stirs or a deadline is due, then read the socket, run due timers and take
the procedure actors' answers straight from the inbox. A ``Partial`` or ``Done`` wakes the poll
at once; a ``Started`` does not (see ``STARTED_DELAY``). The loop returns to Pykka when a message
only Pykka handles (stop, ask, ``Exited``) is next. Only this actor's thread touches the socket.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import socket as _socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import pykka
import zmq
from pykka._envelope import Envelope

from . import _codec
from ._codec import ErrorKind
from ._mailbox import Mailbox, drain, send_frames
from ._procedures import Done, Exited, Partial, ProcedureActor, Run, Started, procedures_of
from ._security import check_endpoint, resolve_key
from ._supervisor import Pool
from .protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BadCalls,
    CallsReceived,
    ClientLost,
    ClientRegistered,
    Command,
    Entry,
    Event,
    STARTED,
    FrameCodec,
    check_settings,
    Ready,
    WorkerProtocol,
)

__all__ = ["Worker"]

logger = logging.getLogger("pirate_actors.worker")

_ENTRY_OVERHEAD = 13
_FAIR_SHARE = 256  # inbox messages handled before the socket and timers get a turn
STARTED_DELAY = 0.002
"""Seconds after handing a call over before the socket thread first looks for its unannounced
``Started``: the longest delay of a "started" whose procedure begins at once."""


class _Idle:
    """The message an empty inbox yields: flush, then wait on the socket and the inbox."""


_IDLE = Envelope(_Idle())
_ANSWERS = frozenset({Done, Started, Partial})


class _SocketInbox:
    """A Pykka inbox (``put``/``get``/``empty``) whose reader can sleep in a zmq poll."""

    def __init__(self) -> None:
        self.mailbox: Mailbox[Envelope[Any]] = Mailbox()
        self._streak = 0

    def put(self, envelope: Envelope[Any], /) -> None:
        self.mailbox.put(envelope)

    def put_quietly(self, envelope: Envelope[Any], /) -> None:
        """For ``Started``: the socket actor looks within ``STARTED_DELAY`` anyway (see
        ``_idle``), and a quick call's ``Done`` usually wakes it first, so "started" rides
        with the reply and the call costs the socket thread one wake-up instead of two."""
        self.mailbox.put_quietly(envelope)

    def get(self) -> Envelope[Any]:
        # Every _FAIR_SHARE messages the socket gets a turn even if the inbox never empties,
        # so a procedure reporting as fast as it can cannot starve heartbeats and flushes.
        self._streak += 1
        if self._streak > _FAIR_SHARE:
            self._streak = 0
            return _IDLE
        try:
            return self.mailbox.get_nowait()
        except IndexError:
            self._streak = 0
            return _IDLE

    def empty(self) -> bool:
        return self.mailbox.empty()


@dataclass(frozen=True)
class _Config:
    actor_class: type[ProcedureActor]
    connect: str
    pool_size: int
    capacity: int
    key: bytes | None
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


@dataclass(frozen=True)
class _BeginStop:
    timeout: float


class _GetStats:
    """Ask the socket actor for its counters (tests and diagnostics)."""


class _SocketActor(pykka.ThreadingActor):
    """Owns the DEALER socket; forwards calls to the pool and streams answers back."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> _SocketInbox:
        return _SocketInbox()

    def __init__(self, config: _Config) -> None:
        super().__init__()
        self.config = config
        self.inbox: _SocketInbox = self.actor_inbox  # type: ignore[assignment]
        procedures = tuple(sorted(procedures_of(config.actor_class)))
        self.protocol = WorkerProtocol(
            FrameCodec(config.key, config.max_message_size),
            Ready(config.name, config.capacity, config.heartbeat, config.liveness, procedures,
                  max_message_size=config.max_message_size),
            time.monotonic(),
        )
        self.pool: Pool | None = None
        self.socket: zmq.Socket[bytes] | None = None
        self.monitor: zmq.Socket[bytes] | None = None
        self.poller = zmq.Poller()
        self._started_unsent: set[int] = set()
        self._out: dict[Command, list[Entry]] = {Command.PARTIAL: [], Command.REPLY: [], Command.ERROR: []}
        self._out_size = 0
        self._stop_deadline: float | None = None
        self._lost_at: float | None = None  # when the client left, if no one replaced it yet
        self._connected = False  # a live connection to the endpoint (from the socket monitor)
        self._finished = False
        self._timer_at = 0.0  # when _timers has work; only ever too early, never late

    # -- life cycle

    def on_start(self) -> None:
        config = self.config
        try:
            self._open_socket()
            self.poller.register(self.inbox.mailbox.fd, zmq.POLLIN)
            self.pool = Pool(self._start_procedure_actor, config.pool_size, self.actor_ref)
            logger.info(
                "worker %s serving %s from %s, connecting to %s",
                config.name, ", ".join(self.protocol.ready.procedures) or "(nothing)",
                config.actor_class.__qualname__, config.connect,
            )
        except BaseException:
            self._shutdown()  # Pykka calls no on_failure for a failed on_start
            raise
        finally:
            config.started.set()

    @property
    def _patience(self) -> float:
        return self.config.heartbeat * self.config.liveness

    def _open_socket(self) -> None:
        """Create and connect the DEALER socket and its monitor (in this actor's thread)."""
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
        sock.setsockopt(zmq.ROUTING_ID, config.identity)
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        sock.connect(config.connect)
        self.socket = sock
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)

    def _close_socket(self, linger: int | None = None) -> None:
        self._connected = False
        if self.socket is not None:
            self.poller.unregister(self.socket)
            self.socket.disable_monitor()
            self.socket.close(linger)
            self.socket = None
        if self.monitor is not None:
            self.poller.unregister(self.monitor)
            self.monitor.close(linger=0)
            self.monitor = None

    def _reconnect(self) -> None:
        """Paranoid Pirate: after the client fell silent, start over with a fresh socket.

        libzmq does not reconnect a session it ended for a protocol error (e.g. a message
        beyond MAXMSGSIZE), so waiting on the old socket could wait forever."""
        self._close_socket(linger=0)
        self._open_socket()

    def _start_procedure_actor(self) -> pykka.ActorRef[Any]:
        return self.config.actor_class.start(*self.config.actor_args, **self.config.actor_kwargs)

    def on_stop(self) -> None:
        self._shutdown()

    def on_failure(self, *exc_info: Any) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.config.stopping_actors.extend(self.pool.close())
        if self.socket is not None and not self._finished:
            self._send(self.protocol.disconnect(time.monotonic(), final=True))
        self._close_socket()
        self.inbox.mailbox.close()
        self.config.stopped.set()

    # -- messages

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Idle):
            self._idle()
        elif self._answer(message):
            pass
        elif isinstance(message, Exited):
            self._exited(message)
        elif isinstance(message, _BeginStop):
            self._begin_stop(message.timeout)
        elif isinstance(message, _GetStats):
            stats = self.protocol.stats
            assert self.pool is not None
            return {
                "malformed": stats.malformed,
                "unauthenticated": stats.unauthenticated,
                "received": stats.received,
                "sent": stats.sent,
                "registered": self.protocol.registered,
                "live_actors": self.pool.live_actors(),
                "replacements": self.pool.replacements,
                "held": len(self.pool),
            }
        return None

    def _answer(self, message: Any) -> bool:
        """Handle a procedure actor's Done, Started or Partial; False for anything else."""
        kind = type(message)
        if kind is Done:
            self._done(message)
        elif kind is Started:
            if self.pool is not None and self.pool.holds(message.request_id):
                self.pool.starting.pop(message.request_id, None)
                self._started_unsent.add(message.request_id)
        elif kind is Partial:
            if self.pool is not None and self.pool.holds(message.request_id):
                self._flush_started(message.request_id)
                self._queue(Command.PARTIAL, Entry(message.request_id, 0, message.body))
        else:
            return False
        return True

    def _take_answers(self) -> bool:
        """Handle the answers waiting in the inbox (a bounded batch) without a trip through
        Pykka's loop for each; False when a message only Pykka can handle is next."""
        mailbox = self.inbox.mailbox
        for _ in range(_FAIR_SHARE):
            if mailbox.empty() or self._finished:
                return True
            envelope = mailbox.peek()
            if envelope.reply_to is not None or type(envelope.message) not in _ANSWERS:
                return False
            mailbox.get_nowait()
            self._answer(envelope.message)
        return True

    def _done(self, done: Done) -> None:
        assert self.pool is not None
        if not self.pool.finished(done.request_id, done.actor_urn):
            self._started_unsent.discard(done.request_id)
            return
        flags = 0
        if done.request_id in self._started_unsent:
            self._started_unsent.discard(done.request_id)
            flags = STARTED  # "started" rides with the reply
        self._queue(done.command, Entry(done.request_id, flags, done.body))
        self._check_stop()

    def _exited(self, exited: Exited) -> None:
        assert self.pool is not None
        orphan = self.pool.exited(exited.actor_urn, exited.unrun)
        if orphan is not None:
            self._flush_started(orphan)
            body = _codec.dump_error(ErrorKind.RAISED, "ActorDeadError", "the procedure's actor died")
            self._queue(Command.ERROR, Entry(orphan, 0, body))
        if self.protocol.leaving:
            for request_id in self.pool.take_waiting():
                self._not_run(request_id)
        self._check_stop()

    # -- outgoing batches

    def _flush_started(self, request_id: int) -> None:
        if request_id in self._started_unsent:
            self._started_unsent.discard(request_id)
            self._queue(Command.PARTIAL, Entry(request_id, STARTED))

    def _queue(self, command: Command, entry: Entry) -> None:
        size = len(entry.body) + _ENTRY_OVERHEAD
        limit = self.config.max_message_size
        if self.protocol.client_max_message_size:
            limit = min(limit, self.protocol.client_max_message_size)  # or its socket cuts us off
        if self._out_size + size > limit // 2:
            self._flush()
        self._out[command].append(entry)
        self._out_size += size

    def _not_run(self, request_id: int) -> None:
        body = _codec.dump_error(ErrorKind.NOT_RUN, "NotRun", "the worker is leaving; not run")
        self._queue(Command.ERROR, Entry(request_id, 0, body))

    def _flush(self) -> None:
        """Send what is batched: every partial first, then replies, then errors, so each call's
        partials precede its final answer."""
        for request_id in self._started_unsent:
            self._out[Command.PARTIAL].append(Entry(request_id, STARTED))
        self._started_unsent.clear()
        if not self._out_size and not any(self._out.values()):
            return
        now = time.monotonic()
        for command, entries in self._out.items():
            if entries:
                if self.protocol.registered or self.protocol.leaving:
                    self._send(self.protocol.calls(command, entries, now))
                self._out[command] = []
        self._out_size = 0

    def _send(self, frames: Sequence[bytes]) -> None:
        if self.socket is None:
            return
        try:
            send_frames(self.socket, frames)
        except zmq.Again:
            logger.debug("no connection to the client; a message was dropped")

    # -- the poll

    def _idle(self) -> None:
        """Serve until a message only Pykka handles (stop, ask, ...) is next in the inbox:
        send what is batched, sleep in the poll, read the socket, run the timers, and take
        the procedure actors' answers straight from the inbox."""
        mailbox, pool = self.inbox.mailbox, self.pool
        assert pool is not None  # on_start made it
        self._timer_at = self._deadline()
        while True:
            if self.socket is None or self._finished:
                return  # (_finish sent the last batch, then the final DISCONNECT)
            self._flush()
            pool.send()
            timeout = 0.0
            if mailbox.prepare_sleep():
                now = time.monotonic()
                timeout = max(0.0, min(self._timer_at, pool.next_spawn) - now)
                if pool.starting:
                    # A Started may sit unannounced in the inbox. Look after STARTED_DELAY, then
                    # back off (each wait as long as the newest call has waited), so an actor
                    # slow to begin does not keep this thread waking every few milliseconds.
                    waited = now - max(pool.starting.values())
                    timeout = min(timeout, max(STARTED_DELAY, waited))
            ready: dict[Any, int] = {}
            try:
                ready = dict(self.poller.poll(math.ceil(timeout * 1000)))
            finally:
                mailbox.woken(mailbox.fd in ready)
            if self.monitor in ready:
                self._on_monitor()
                self._timer_at = self._deadline()
            drained = self.socket not in ready or self._on_socket()
            now = time.monotonic()
            if not drained or now >= self._timer_at or now >= pool.next_spawn:
                self._timers(now, drained)
                self._timer_at = self._deadline()
            if self._finished or not self._take_answers():
                return

    def _deadline(self) -> float:
        """The next time :meth:`_timers` has heartbeats, liveness or the stop to see to. (The
        pool's delayed respawns are read live from ``pool.next_spawn``: the pool schedules them
        in the middle of a turn, so a copy here could be stale.)"""
        deadline = self.protocol.next_deadline()
        if self._stop_deadline is not None:
            deadline = min(deadline, self._stop_deadline)
        if self._lost_at is not None:
            deadline = min(deadline, self._lost_at + self._patience)
        return deadline

    def _timers(self, now: float, drained: bool) -> None:
        if self.pool is not None:
            self.pool.tick(now)
        if self._lost_at is not None and now >= self._lost_at + self._patience:
            # No client came back on this socket; libzmq may have given up on the session
            # (it does after a protocol error), so start over with a fresh one.
            self._lost_at = now
            self._reconnect()
        events, frames = self.protocol.tick(now, expire=drained)  # judge only a read backlog
        self._handle(events)
        if self._connected or self.protocol.registered:
            # (a READY while unconnected would only queue up; the handshake sends a fresh one)
            for message in frames:
                self._send(message)
        if self._stop_deadline is not None and now >= self._stop_deadline:
            self._finish()

    def _on_monitor(self) -> None:
        assert self.monitor is not None
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = int.from_bytes(frames[0][:2], "little")
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected = False
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED and not self.protocol.leaving:
                now = time.monotonic()
                self._handle(self.protocol.connected(now))
                self._send(self.protocol.ready_frames(now))
            elif event == zmq.EVENT_DISCONNECTED:
                # The client closed or died: no need to wait for its silence.
                self._handle(self.protocol.disconnected())

    def _on_socket(self) -> bool:
        """Handle waiting messages (a bounded batch); True once the socket is drained."""
        assert self.socket is not None
        return drain(self.socket, self._on_message)

    def _on_message(self, frames: list[bytes]) -> None:
        events = self.protocol.receive(frames, time.monotonic())
        self._handle(events)
        if len(events) != 1 or type(events[0]) is not CallsReceived:
            # A heartbeat or a goodbye may bring a deadline forward; calls never do.
            self._timer_at = self._deadline()

    def _handle(self, events: list[Event]) -> None:
        assert self.pool is not None
        for event in events:
            if isinstance(event, CallsReceived):
                if event.command is Command.REQUEST:
                    for entry in event.entries:
                        self._request(entry)
                else:
                    for entry in event.entries:
                        self.pool.cancel(entry.request_id)
                        self._started_unsent.discard(entry.request_id)
                    self._check_stop()
            elif isinstance(event, BadCalls):
                if event.command is Command.REQUEST:
                    body = _codec.dump_error(ErrorKind.PROTOCOL, "ProtocolError", event.reason)
                    for request_id in event.request_ids:
                        self._queue(Command.ERROR, Entry(request_id, 0, body))
            elif isinstance(event, ClientRegistered):
                self._lost_at = None
                logger.info(
                    "worker %s registered with %s (client heartbeat %.3g s x %d)",
                    self.config.name, self.config.connect, event.heartbeat, event.liveness,
                )
            elif isinstance(event, ClientLost):
                logger.log(
                    logging.WARNING if event.silent else logging.INFO,
                    "worker %s lost its client: %s; waiting for one", self.config.name, event.reason,
                )
                self._abandon_calls()
                self._check_stop()
                if event.silent:
                    self._reconnect()
                else:
                    self._lost_at = time.monotonic()

    def _request(self, entry: Entry) -> None:
        assert self.pool is not None
        if self.protocol.leaving or self.pool.closed or not self.protocol.registered:
            # (not registered: sent before the client learnt we had given its calls up)
            self._not_run(entry.request_id)
        elif self.pool.holds(entry.request_id):
            logger.warning("duplicate request id %d dropped", entry.request_id)
        else:
            # Results must fit what both ends accept, or the client's socket would cut us off.
            max_size = self.config.max_message_size
            if self.protocol.client_max_message_size:
                max_size = min(max_size, self.protocol.client_max_message_size)
            self.pool.submit(Run(entry.request_id, entry.body, self.actor_ref, max_size))

    def _abandon_calls(self) -> None:
        """The client that sent our calls is gone: nobody waits for their answers."""
        assert self.pool is not None
        self.pool.take_waiting()
        self.pool.cancel_running()
        self._started_unsent.clear()
        for entries in self._out.values():
            entries.clear()
        self._out_size = 0

    # -- graceful stop

    def _begin_stop(self, timeout: float) -> None:
        assert self.pool is not None
        now = time.monotonic()
        self._stop_deadline = now + timeout
        if not self.protocol.leaving:
            was_registered = self.protocol.registered
            frames = self.protocol.disconnect(now, final=False)
            if was_registered:
                self._send(frames)
            for request_id in self.pool.take_waiting():
                self._not_run(request_id)
        self._check_stop()

    def _check_stop(self) -> None:
        if self._stop_deadline is not None and self.pool is not None and self.pool.running == 0:
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._flush()
        self._send(self.protocol.disconnect(time.monotonic(), final=True))
        self._finished = True
        self.stop()


# --------------------------------------------------------------------------- public facade

_live_workers: weakref.WeakSet[Worker] = weakref.WeakSet()


def _stop_live_workers() -> None:
    for worker in list(_live_workers):
        worker.stop(timeout=0.5)


atexit.register(_stop_live_workers)


class Worker:
    """Serves the procedures of ``actor_class`` to the client bound at ``connect``.

    ``start()`` returns at once; ``stop()`` leaves gracefully; a ``with`` block does both.
    """

    def __init__(
        self,
        actor_class: type[ProcedureActor],
        connect: str,
        *,
        pool_size: int = 4,
        prefetch: int | None = None,
        key: bytes | None = None,
        heartbeat: float = 1.0,
        liveness: int = 3,
        name: str | None = None,
        actor_args: Sequence[Any] = (),
        actor_kwargs: dict[str, Any] | None = None,
        insecure: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        if not (isinstance(actor_class, type) and issubclass(actor_class, ProcedureActor)):
            raise TypeError(f"actor_class must be a ProcedureActor subclass, not {actor_class!r}")
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        prefetch = pool_size if prefetch is None else prefetch
        if prefetch < 0:
            raise ValueError("prefetch must be 0 or more")
        check_settings(heartbeat, liveness)
        key = resolve_key(key)
        check_endpoint(connect, key, insecure)
        self.name = name or f"{_socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.id = uuid.uuid4().hex
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._config = _Config(
            actor_class=actor_class, connect=connect, pool_size=pool_size,
            capacity=pool_size + prefetch, key=key, heartbeat=float(heartbeat), liveness=int(liveness),
            name=self.name, actor_args=tuple(actor_args), actor_kwargs=dict(actor_kwargs or {}),
            max_message_size=int(max_message_size), identity=self.id.encode(), context=self._context,
        )
        self._ref: pykka.ActorRef[_SocketActor] | None = None
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Calls this worker holds at once: ``pool_size + prefetch``."""
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
            raise RuntimeError(f"worker {self.name} could not start on {self._config.connect} (see log)")
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
                "process's exit", self.name, self._config.connect,
            )

    def join(self, timeout: float | None = None) -> bool:
        """Block until the worker has stopped; False on timeout."""
        return self._config.stopped.wait(timeout)

    @property
    def running(self) -> bool:
        return self._ref is not None and not self._config.stopped.is_set()

    def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """Counters of the socket loop: messages received, sent, dropped as malformed or
        unauthenticated, live procedure actors, replacements."""
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
        return f"<Worker {self.name} {self._config.connect} capacity={self.capacity}>"
