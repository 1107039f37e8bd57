"""The client: a ROUTER socket in a background thread that turns replies into futures.

User threads never touch the socket: ``submit``/``cancel``/``close`` put commands in a
:class:`Mailbox` whose wake-up fd the client thread polls together with the socket (the pattern
of pyzmq's auth thread). The thread dispatches calls to the registered worker with the most free
capacity, batching every call bound for the same worker into one message per wake-up.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import itertools
import logging
import math
import secrets
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import zmq

from . import _codec
from ._codec import ErrorKind
from ._errors import CallTimeout, NoWorkerError, PirateError, ProtocolError, WorkerLost
from ._future import CallFuture, WorkerInfo
from ._mailbox import Mailbox, drain, send_frames
from ._security import check_endpoint, resolve_key
from .protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BadCalls,
    CallsReceived,
    ClientProtocol,
    Command,
    Entry,
    Event,
    STARTED,
    FrameCodec,
    check_settings,
    WorkerGone,
    WorkerLeaving,
    WorkerRegistered,
)

__all__ = ["Client"]

logger = logging.getLogger("pirate_actors.client")

_ENTRY_OVERHEAD = 13
_FRAME_OVERHEAD = 128  # signature, command, header and MAC of a one-call message


@dataclass
class _Call:
    request_id: int
    future: CallFuture
    body: bytes
    submitted: float
    peer: bytes | None = None


@dataclass
class _Load:
    """A registered worker's in-flight calls, as the client dispatched them."""

    name: str
    capacity: int
    procedures: frozenset[str]
    max_message_size: int
    calls: set[int] = field(default_factory=set)
    leaving: bool = False

    @property
    def free(self) -> int:
        return -1 if self.leaving else self.capacity - len(self.calls)


@dataclass(frozen=True)
class _Query:
    """A question for the client thread, answered through ``future``."""

    ask: Callable[[_Loop], Any]
    future: concurrent.futures.Future[Any]


class _Loop:
    """Everything the client thread owns. Not thread-safe: only the client thread calls it."""

    def __init__(self, client: Client, socket: zmq.Socket[bytes]) -> None:
        self.client = client
        self.socket = socket
        self.protocol = ClientProtocol(client._codec, client.heartbeat, client.liveness)
        self.calls: dict[int, _Call] = {}
        self.queue: collections.deque[_Call] = collections.deque()
        self.load: dict[bytes, _Load] = {}
        self.no_worker_since = time.monotonic()
        self.requests: dict[bytes, list[Entry]] = {}
        self.cancels: dict[bytes, list[Entry]] = {}
        self.closing = False
        self._timer_at = float("inf")  # when _timers has work; only ever too early, never late
        self._settled: collections.deque[tuple[CallFuture, Any, BaseException | None]] = (
            collections.deque()
        )

    # -- the loop

    def run(self) -> None:
        mailbox = self.client._mailbox
        socket = self.socket
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(mailbox.fd, zmq.POLLIN)
        while True:
            if not mailbox.empty():
                self._drain_mailbox()
                if self.closing:
                    return
            if self.queue:
                self._dispatch()
                if self.queue:  # calls wait for a worker: their NoWorkerError is a deadline
                    self._timer_at = self._next_deadline()
            if self.requests or self.cancels:
                self._flush()
            if self._settled:
                self._settle()
            timeout = 0.0
            if mailbox.prepare_sleep():
                timeout = max(0.0, self._timer_at - time.monotonic())
            ready: dict[Any, int] = {}
            try:
                ready = dict(poller.poll(None if math.isinf(timeout) else math.ceil(timeout * 1000)))
            finally:
                mailbox.woken(mailbox.fd in ready)
            drained = socket not in ready or self._read_socket()
            now = time.monotonic()
            if not drained or now >= self._timer_at:
                self._timers(now, drained)

    def _timers(self, now: float, drained: bool) -> None:
        """Expire and heartbeat workers, fail calls that found no worker in time."""
        # Judge liveness only once the backlog is read; heartbeat regardless.
        events, out = self.protocol.tick(now, expire=drained)
        self._handle(events, now)
        for peer, frames in out:
            self._send(peer, frames)
        self._expire_queued(now)
        self._timer_at = self._next_deadline()

    def _next_deadline(self) -> float:
        deadline = self.protocol.next_deadline()
        if self.queue and not self._registered():
            first = min(max(c.submitted, self.no_worker_since) for c in self.queue)
            deadline = min(deadline, first + self.client.timeout)
        return deadline

    def _registered(self) -> int:
        return sum(1 for load in self.load.values() if not load.leaving)

    def _drain_mailbox(self) -> None:
        mailbox = self.client._mailbox
        while True:
            try:
                item = mailbox.get_nowait()
            except IndexError:
                return
            if isinstance(item, _Call):
                self.calls[item.request_id] = item
                self.queue.append(item)
            elif isinstance(item, int):
                self._cancel(item)
            elif isinstance(item, _Query):
                try:
                    item.future.set_result(item.ask(self))
                except Exception as exc:  # noqa: BLE001 - a query must not kill the loop
                    item.future.set_exception(exc)
            elif item is _CLOSE:
                self.closing = True

    def _read_socket(self) -> bool:
        """Handle waiting messages (a bounded batch); True once the socket is drained."""
        return drain(self.socket, self._on_message)

    def _on_message(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            self.protocol.stats.malformed += 1
            return
        now = time.monotonic()
        events, out = self.protocol.receive(frames[0], frames[1:], now)
        for peer, reply in out:
            self._send(peer, reply)
        self._handle(events, now)
        if len(events) != 1 or type(events[0]) is not CallsReceived:
            # A heartbeat or a (de)registration may bring a deadline forward; answers never do.
            self._timer_at = self._next_deadline()

    def _send(self, peer: bytes, frames: Sequence[bytes]) -> None:
        try:
            send_frames(self.socket, [peer, *frames])
        except zmq.Again:
            logger.warning("worker %s is not keeping up; a message was dropped", peer.hex())
        except zmq.ZMQError as exc:
            logger.warning("could not send to worker %s: %s", peer.hex(), exc)

    # -- dispatch

    def _dispatch(self) -> None:
        """Hand queued calls, in order, to the worker with the most free capacity among those
        that serve the procedure (any worker if none does: it answers UnknownProcedure)."""
        while self.queue:
            call = self.queue[0]
            if call.future.done() or call.request_id not in self.calls:
                self.queue.popleft()
                continue
            procedure = call.future.procedure
            best: bytes | None = None
            best_free = 0
            serves = False
            for peer, load in self.load.items():
                offers = not load.leaving and procedure in load.procedures
                if offers and not serves:
                    serves, best, best_free = True, None, 0  # from now on only those that serve it
                if (offers or not serves) and load.free > best_free:
                    best, best_free = peer, load.free
            if best is None:
                return  # head of the queue waits; order is kept
            self.queue.popleft()
            limit = self.load[best].max_message_size
            if len(call.body) + _FRAME_OVERHEAD > limit:
                # Its socket would cut the worker off (zmq.MAXMSGSIZE): fail just this call.
                self._finish(call.request_id, None, exception=ProtocolError(
                    f"call {procedure!r} of {len(call.body)} bytes exceeds the max_message_size "
                    f"of worker {self.load[best].name} ({limit})"
                ))
                continue
            call.peer = best
            call.future.worker = best.decode(errors="replace")
            self.load[best].calls.add(call.request_id)
            self.requests.setdefault(best, []).append(Entry(call.request_id, 0, call.body))

    def _flush(self) -> None:
        now = time.monotonic()
        for batches, command in ((self.cancels, Command.CANCEL), (self.requests, Command.REQUEST)):
            for peer, entries in batches.items():
                for chunk in self._chunks(entries):
                    self._send(peer, self.protocol.calls(peer, command, chunk, now)[1])
            batches.clear()

    def _chunks(self, entries: list[Entry]) -> list[list[Entry]]:
        """Split a batch so that no message exceeds max_message_size."""
        limit = self.client._codec.max_message_size - _FRAME_OVERHEAD
        chunks: list[list[Entry]] = [[]]
        size = 0
        for entry in entries:
            entry_size = len(entry.body) + _ENTRY_OVERHEAD
            if chunks[-1] and size + entry_size > limit:
                chunks.append([])
                size = 0
            chunks[-1].append(entry)
            size += entry_size
        return chunks

    def _cancel(self, request_id: int) -> None:
        call = self.calls.pop(request_id, None)
        if call is None or call.peer is None:
            return  # queued: skipped when its turn comes
        load = self.load.get(call.peer)
        if load is not None:
            load.calls.discard(request_id)
            self.cancels.setdefault(call.peer, []).append(Entry(request_id))

    # -- events

    def _handle(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, CallsReceived):
                self._answers(event)
            elif isinstance(event, WorkerRegistered):
                ready = event.ready
                self.load[event.peer] = _Load(
                    ready.name, ready.capacity, frozenset(ready.procedures),
                    ready.max_message_size or self.client._codec.max_message_size,
                )
                logger.info(
                    "worker %s (%s) registered: capacity %d, heartbeat %.3g s x %d, procedures %s",
                    ready.name, event.peer.decode(errors="replace"), ready.capacity,
                    ready.heartbeat, ready.liveness, ", ".join(ready.procedures),
                )
                self.client._worker_registered(self._registered())
            elif isinstance(event, WorkerGone):
                self._worker_gone(event.peer, event.reason, now)
            elif isinstance(event, WorkerLeaving):
                load = self.load.get(event.peer)
                if load is not None:
                    load.leaving = True
                    logger.info("worker %s is leaving", load.name)
                    self._workers_changed(now)
            elif isinstance(event, BadCalls):
                error = ProtocolError(f"malformed {event.command.name} from the worker: {event.reason}")
                for request_id in event.request_ids:
                    self._finish(request_id, event.peer, exception=error)

    def _worker_gone(self, peer: bytes, reason: str, now: float) -> None:
        load = self.load.pop(peer, None)
        if load is None:
            return
        logger.warning("worker %s lost: %s", load.name, reason)
        error = f"worker {load.name} was lost before replying: {reason}"
        for request_id in list(load.calls):
            self._finish(request_id, peer, exception=WorkerLost(error))
        self._workers_changed(now)

    def _workers_changed(self, now: float) -> None:
        count = self._registered()
        if count == 0:
            self.no_worker_since = now
        self.client._worker_count_changed(count)

    def _answers(self, event: CallsReceived) -> None:
        command = event.command
        for entry in event.entries:
            call = self.calls.get(entry.request_id)
            if call is None or call.peer != event.peer:
                continue  # cancelled, or a late answer for a call that ended otherwise
            future = call.future
            if entry.flags & STARTED:
                future._add_partial("started")
            if command is Command.PARTIAL:
                if not entry.flags & STARTED:
                    try:
                        future._add_partial(_codec.loads(entry.body))
                    except Exception as exc:  # noqa: BLE001
                        logger.warning("undecodable partial for call %d: %r", entry.request_id, exc)
            elif command is Command.REPLY:
                try:
                    result = _codec.loads(entry.body)
                except Exception as exc:  # noqa: BLE001
                    self._finish(entry.request_id, event.peer,
                                 exception=ProtocolError(f"undecodable result: {exc!r}"))
                else:
                    self._finish(entry.request_id, event.peer, result=result)
            else:
                kind, exception = _codec.load_error(entry.body)
                if kind == ErrorKind.NOT_RUN:
                    self._requeue(call)
                else:
                    self._finish(entry.request_id, event.peer, exception=exception)

    def _requeue(self, call: _Call) -> None:
        if call.peer is not None and call.peer in self.load:
            self.load[call.peer].calls.discard(call.request_id)
        call.peer = None
        call.future.worker = None
        # Back ahead of newer calls, in submission order (request ids grow with submission).
        index = 0
        for index, queued in enumerate(self.queue):  # noqa: B007
            if queued.request_id > call.request_id:
                break
        else:
            index = len(self.queue)
        self.queue.insert(index, call)

    def _finish(
        self, request_id: int, peer: bytes | None, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """The call is over: forget it, and settle its future before the loop next sleeps."""
        call = self.calls.pop(request_id, None)
        if call is None:
            return
        if peer is not None and peer in self.load:
            self.load[peer].calls.discard(request_id)
        self._settled.append((call.future, result, exception))

    def _settle(self) -> None:
        """Complete the finished calls' futures. Done last, just before the loop sleeps: a
        waiting caller wakes when this thread is about to let go of the GIL, not while it
        still has work to do. One at a time: if a done-callback raises a BaseException, the
        futures after it stay here for ``fail_all``."""
        settled = self._settled
        while settled:
            future, result, exception = settled.popleft()
            try:
                if exception is None:
                    future.set_result(result)
                else:
                    future.set_exception(exception)
            except concurrent.futures.InvalidStateError:
                pass  # cancelled meanwhile by a user thread

    def _expire_queued(self, now: float) -> None:
        if not self.queue or self._registered():
            return
        keep: collections.deque[_Call] = collections.deque()
        for call in self.queue:
            if call.request_id not in self.calls:
                continue
            if now - max(call.submitted, self.no_worker_since) >= self.client.timeout:
                self._finish(call.request_id, None, exception=NoWorkerError(
                    f"no worker registered for {self.client.timeout:g} s to take {call.future.procedure!r}"
                ))
            else:
                keep.append(call)
        self.queue = keep

    def close(self) -> None:
        """Say goodbye to every worker and fail whatever is unfinished."""
        for peer, frames in self.protocol.close(time.monotonic()):
            self._send(peer, frames)
        self.fail_all()

    def take_late_calls(self) -> None:
        """Calls submitted after the loop's last look at the mailbox: fail them too."""
        while True:
            try:
                item = self.client._mailbox.get_nowait()
            except IndexError:
                return
            if isinstance(item, _Call):
                self.calls[item.request_id] = item
            elif isinstance(item, _Query):
                item.future.set_exception(PirateError("the client was closed"))

    def fail_all(self) -> None:
        for request_id in list(self.calls):
            self._finish(request_id, None, exception=PirateError("the client was closed"))
        self.queue.clear()
        self._settle()


_CLOSE = object()

_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _close_live_clients() -> None:
    for client in list(_live_clients):
        client.close()


atexit.register(_close_live_clients)


class Client:
    """Binds ``bind`` and sends calls to the workers that connect there.

    ``submit`` returns a :class:`CallFuture`; ``call`` blocks for the result. The socket lives
    in a background thread; ``close()`` (or leaving the ``with`` block) stops it.
    """

    def __init__(
        self,
        bind: str,
        *,
        key: bytes | None = None,
        heartbeat: float = 1.0,
        liveness: int = 3,
        timeout: float = 5.0,
        insecure: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        check_settings(heartbeat, liveness)
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        key = resolve_key(key)
        check_endpoint(bind, key, insecure)
        self.bind = bind
        self.endpoint = bind
        self.heartbeat = float(heartbeat)
        self.liveness = int(liveness)
        self.timeout = float(timeout)
        self._codec = FrameCodec(key, int(max_message_size))
        self._mailbox: Mailbox[Any] = Mailbox()
        self._ids = itertools.count(secrets.randbits(48) + 1)
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._workers_cond = threading.Condition()
        self._worker_count = 0
        self._registrations = 0
        self._loop: _Loop | None = None

    # -- life cycle

    def start(self) -> Client:
        """Bind and start the client thread; raises ``OSError`` if the endpoint cannot be bound."""
        with self._lock:
            if self._closed:
                raise PirateError("the client is closed")
            if self._thread is not None:
                raise RuntimeError("client already started")
            self._thread = threading.Thread(target=self._run, name=f"pirate-client {self.bind}", daemon=True)
            self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._closed = True
            raise self._start_error
        _live_clients.add(self)
        return self

    def _run(self) -> None:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 200)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.SNDHWM, 0)  # a ROUTER drops silently at its limit: have none
        sock.setsockopt(zmq.MAXMSGSIZE, self._codec.max_message_size)
        try:
            sock.bind(self.bind)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            self._start_error = OSError(exc.errno, f"cannot bind {self.bind}: {exc.strerror}")
            sock.close(linger=0)
            context.term()
            self._started.set()
            return
        self._loop = _Loop(self, sock)
        self._started.set()
        try:
            self._loop.run()
            self._loop.close()
        except BaseException:  # noqa: BLE001 - e.g. a user callback raising SystemExit
            logger.exception("client thread crashed")
        finally:
            with self._lock:
                self._closed = True  # from here on submit() raises instead of queueing
            self._loop.take_late_calls()
            self._loop.fail_all()
            self._worker_count_changed(0)
            sock.close()
            context.term()
            self._mailbox.close()

    def close(self) -> None:
        """Stop the client: unfinished futures fail with ``PirateError``; returns promptly."""
        with self._lock:
            self._closed = True
            thread = self._thread
        _live_clients.discard(self)
        if thread is None:
            # Never started: fail what was submitted.
            while not self._mailbox.empty():
                item = self._mailbox.get_nowait()
                if isinstance(item, _Call):
                    try:
                        item.future.set_exception(PirateError("the client was closed"))
                    except concurrent.futures.InvalidStateError:
                        pass
            return
        if thread.is_alive():
            self._mailbox.put(_CLOSE)
            thread.join(timeout=5.0)

    def __enter__(self) -> Client:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- workers

    def _worker_registered(self, count: int) -> None:
        with self._workers_cond:
            self._registrations += 1
            self._worker_count = count
            self._workers_cond.notify_all()

    def _worker_count_changed(self, count: int) -> None:
        with self._workers_cond:
            self._worker_count = count
            self._workers_cond.notify_all()

    def wait_for_worker(self, timeout: float = 3.2) -> None:
        """Return once a worker is registered; raise :class:`NoWorkerError` after ``timeout``."""
        with self._workers_cond:
            if not self._workers_cond.wait_for(lambda: self._worker_count > 0, timeout):
                raise NoWorkerError(f"no worker registered at {self.endpoint} within {timeout:g} s")

    def _ask(self, ask: Callable[[_Loop], Any], default: Any) -> Any:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return default
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._mailbox.put(_Query(ask, future))
        try:
            return future.result(timeout=10)
        except concurrent.futures.TimeoutError:
            return default  # closed meanwhile

    def workers(self) -> list[WorkerInfo]:
        """The registered workers, with the calls each holds now."""
        def ask(loop: _Loop) -> list[WorkerInfo]:
            return [
                WorkerInfo(peer.decode(errors="replace"), load.name, tuple(sorted(load.procedures)),
                           load.capacity, len(load.calls))
                for peer, load in loop.load.items() if not load.leaving
            ]
        result: list[WorkerInfo] = self._ask(ask, [])
        return result

    def stats(self) -> dict[str, int]:
        """Counters of the client loop: messages received and sent, and those dropped as
        malformed or unauthenticated."""
        def ask(loop: _Loop) -> dict[str, int]:
            stats = loop.protocol.stats
            return {
                "malformed": stats.malformed, "unauthenticated": stats.unauthenticated,
                "received": stats.received, "sent": stats.sent,
                "queued": len(loop.queue), "in_flight": len(loop.calls) - len(loop.queue),
            }
        result: dict[str, int] = self._ask(ask, {})
        return result

    # -- calls

    def submit(self, procedure: str, /, *args: Any, **kwargs: Any) -> CallFuture:
        """Send a call; the returned future ends with its result, its exception, or cancelled."""
        future = CallFuture(procedure, self._cancel)
        request_id = next(self._ids)
        future.request_id = request_id  # type: ignore[attr-defined]
        try:
            body = _codec.dumps_call(procedure, args, kwargs)
        except Exception as exc:  # noqa: BLE001
            future.set_exception(ProtocolError(f"cannot pickle the arguments of {procedure!r}: {exc!r}"))
            return future
        limit = self._codec.max_message_size - _FRAME_OVERHEAD
        if len(body) > limit:
            future.set_exception(ProtocolError(
                f"call {procedure!r} of {len(body)} bytes exceeds max_message_size "
                f"({self._codec.max_message_size})"
            ))
            return future
        with self._lock:  # against close(): a call is either seen by the loop or refused
            if self._closed:
                raise PirateError("the client is closed")
            self._mailbox.put(_Call(request_id, future, body, time.monotonic()))
        return future

    def _cancel(self, future: CallFuture) -> None:
        self._mailbox.put(future.request_id)  # type: ignore[attr-defined]

    def call(self, procedure: str, /, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Submit and wait. On timeout the call is cancelled and :class:`CallTimeout` is raised,
        or :class:`NoWorkerError` if no worker was registered at any moment of the wait."""
        wait = self.timeout if timeout is None else timeout
        with self._workers_cond:
            had_worker = self._worker_count > 0
            registrations = self._registrations
        future = self.submit(procedure, *args, **kwargs)
        try:
            return future.result(wait)
        except concurrent.futures.TimeoutError:
            if not future.cancel() and future.done():
                return future.result()
            with self._workers_cond:
                saw_worker = had_worker or self._worker_count > 0 or self._registrations != registrations
            if not saw_worker:
                raise NoWorkerError(
                    f"no worker registered at {self.endpoint} within {wait:g} s to take {procedure!r}"
                ) from None
            raise CallTimeout(f"{procedure!r} got no reply within {wait:g} s; cancelled") from None

    def __repr__(self) -> str:
        return f"<Client {self.endpoint} workers={self._worker_count}>"
