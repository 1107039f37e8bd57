"""The client: a ROUTER socket in a background thread that turns replies into futures.

``submit``/``cancel``/``close`` put commands in a :class:`Mailbox` whose wake-up fd the client
thread polls together with the socket (the pattern of pyzmq's auth thread); a caller of
``call()`` that finds the loop's lead free runs the loop's turns itself while it waits
(leader/follower, ``Client._call``). The thread is a thin adapter: :class:`SocketLoop` polls,
:class:`ClientEngine` decides (dispatch, requeue, deadlines, batches), and ``_Driver`` moves
what the engine says onto the socket and into the futures.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import importlib
import itertools
import logging
import math
import secrets
import select
import signal
import threading
import time
import os
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import zmq

from . import _codec
from ._client_engine import Call, ClientEngine
from ._drops import DropLog
from ._errors import CallTimeout, NoWorkerError, PirateError, ProtocolError
from ._events import Event, EventQueue, Subscribers, Subscription
from ._future import CallFuture, WorkerInfo, deliver_partials, settle
from ._loop import SocketLoop
from ._mailbox import Mailbox, drain, send_frames
from ._security import (
    AuthorizedFolder,
    Curve,
    KeyArg,
    check_endpoint,
    resolve_key,
    start_authenticator,
)
from .protocol import DEFAULT_MAX_MESSAGE_SIZE, ClientProtocol, FrameCodec, check_settings, peer_name

__all__ = ["Client"]

logger = logging.getLogger("pirate_actors.client")


@dataclass(frozen=True)
class _Query:
    """A question for the client thread, answered through ``future``."""

    ask: Callable[[ClientEngine], Any]
    future: concurrent.futures.Future[Any]


class _Driver:
    """The client thread's adapter between :class:`SocketLoop` and :class:`ClientEngine`:
    mailbox items become engine input, engine output goes to the socket and the futures."""

    def __init__(self, client: Client, socket: zmq.Socket[bytes]) -> None:
        self.client = client
        self.socket = socket
        self.engine = ClientEngine(
            ClientProtocol(client._codec, client.heartbeat, client.liveness),
            client.timeout, time.monotonic(), client.retries,
        )
        self.loop = SocketLoop(client._mailbox, self)
        self.loop.add(socket, self.on_frames)
        self.closing = False
        self.drops = DropLog(logger, f"the client at {client.endpoint}")
        self.engine.explain = self.drops.explain
        self._lead_freed = threading.Event()
        """Set by a caller that stops leading with work left (the client thread waits on it
        while a caller leads)."""
        self._stand_by_poll = select.poll()
        self._stand_by_poll.register(client._mailbox.fd, select.POLLIN)

    # -- the loop's driver interface

    def flush(self) -> None:
        engine = self.engine
        if engine.events:
            self._deliver_events()
        engine.flush(time.monotonic())
        while engine.out and self._send_out():
            engine.flush(time.monotonic())  # calls that could not go to a vanished worker
        if engine.workers_changed:
            engine.workers_changed = False
            self.client._workers_changed(engine.registered(), engine.registrations)
        if engine.partials:
            self._deliver_partials()
        if engine.settled:
            self._settle()

    def wake_at(self) -> float:
        return self.engine.deadline

    def on_frames(self, frames: list[bytes], frame: zmq.Frame) -> None:
        stats = self.engine.session.stats
        if len(frames) < 2:
            stats.drop("malformed", "a message without a body")
        else:
            self.engine.receive(frames[0], frames[1:], time.monotonic())
        if stats.last_drop is not None:
            self.drops.take(stats, _peer_address(frame), time.monotonic())
        if self.engine.events:
            self._deliver_events()
        if self.engine.partials:
            self._deliver_partials()

    def on_wake(self, now: float, drained: bool) -> None:
        if not drained or now >= self.engine.deadline:
            self.engine.tick(now, drained)

    def on_inbox(self) -> bool:
        mailbox, engine = self.client._mailbox, self.engine
        while True:
            try:
                item = mailbox.get_nowait()
            except IndexError:
                return not self.closing
            if isinstance(item, Call):
                engine.submit(item, item.submitted)
            elif isinstance(item, int):
                engine.cancel(item)
            elif isinstance(item, _Query):
                try:
                    item.future.set_result(item.ask(engine))
                except Exception as exc:  # noqa: BLE001 - a query must not kill the loop
                    item.future.set_exception(exc)
            elif item is _CLOSE:
                self.closing = True

    # -- output

    def _send_out(self, judge: bool = True) -> bool:
        """Send what the engine put out; True if a worker turned out to be gone (the engine
        then has calls to dispatch again). ``judge=False`` (closing): a worker whose
        connection closed is not judged any more, what it was sent is just dropped."""
        out, self.engine.out = self.engine.out, []
        socket = self.socket
        gone: dict[bytes, list[int]] = {}  # worker -> indexes in out of what it was not sent
        for index, (peer, frames) in enumerate(out):
            if gone and peer in gone:
                gone[peer].append(index)
                continue
            try:
                send_frames(socket, [peer, *frames])
            except zmq.Again:
                logger.warning("worker %s is not keeping up; a message was dropped", peer_name(peer))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EHOSTUNREACH:  # ROUTER_MANDATORY: its connection closed
                    gone[peer] = [index]
                else:
                    logger.warning("could not send to worker %s: %s", peer_name(peer), exc)
        if not gone or not judge:
            return False
        engine = self.engine
        for peer, unsent in gone.items():
            engine.not_sent(peer, unsent)  # before anything is read: nothing answered them
        try:
            # What such a worker sent before its connection closed is read first (one bounded
            # batch): the goodbye of a worker that stopped gracefully is not taken for a death.
            drain(socket, self.on_frames)
        finally:
            for peer in gone:
                engine.unreachable(peer, time.monotonic())
        return True

    def _deliver_events(self) -> None:
        """Decode the events received and hand them to the subscribers (none: dropped unread)."""
        received, self.engine.events = self.engine.events, []
        subscribers = self.client._subscribers
        if not subscribers:
            return
        loop = self.loop
        loop.interruptible = True  # subscribers' callbacks: as for partials
        try:
            for worker, entries in received:
                for entry in entries:
                    try:
                        data = _codec.loads(entry.data)
                    except Exception as exc:  # noqa: BLE001
                        logger.warning("undecodable event %r from worker %s: %r", entry.topic, worker, exc)
                        continue
                    subscribers.deliver(Event(entry.topic, data, worker, entry.time))
        finally:
            loop.interruptible = False

    def _deliver_partials(self) -> None:
        partials, self.engine.partials = self.engine.partials, []
        loop = self.loop
        loop.interruptible = True  # user callbacks: a signal's handler may run (a leading caller)
        try:
            deliver_partials(partials)  # (what a raising callback left is put back, first)
        except BaseException:
            self.engine.partials[:0] = partials
            raise
        finally:
            loop.interruptible = False

    def _settle(self) -> None:
        """Complete the finished calls' futures. Done last, just before the loop sleeps: a
        waiting caller wakes when this thread is about to let go of the GIL, not while it
        still has work to do (what ``settle`` leaves behind after a raising done-callback
        waits for ``finish``)."""
        loop = self.loop
        loop.interruptible = True  # done-callbacks: as for partials
        try:
            settle(self.engine.settled)
        finally:
            loop.interruptible = False

    # -- the end

    def run(self) -> None:
        """The client thread: lead the loop, or stand by while a caller of ``call()`` leads
        it (see :meth:`Client.call`), until the loop ends. The lead is never given up after
        that: the end (goodbyes, failing what is left) is this thread's alone."""
        lead, freed = self.client._lead, self._lead_freed
        while True:
            if not lead.acquire(blocking=False):
                freed.wait(_LEASE)  # a caller leads: until it stops with work left, or a while
                freed.clear()
                continue
            if self._lead():
                break
            lead.release()
            self._stand_by()
        self.engine.close(time.monotonic())
        self._send_out(judge=False)

    def _lead(self) -> bool:
        """Turns of the loop until it ends (True), or until nothing is in flight and a caller
        of ``call()`` wants the lead or had it within ``_LEASE`` (False: this thread stands by)."""
        loop, client, engine = self.loop, self.client, self.engine
        self.flush()
        # Just back from standing by while a caller leads: one quick look, and stand by again.
        first: float | None = 0.0 if time.monotonic() - client._last_led < _LEASE else None
        while True:
            if not loop.turn(first):
                return True
            first = None
            if not engine.calls and (
                client._lead_wanted or time.monotonic() - client._last_led < _LEASE
            ):
                client._lead_wanted = False
                return False

    def _stand_by(self) -> None:
        """Just after giving up the lead: sleep until the mailbox stirs or ``_LEASE`` has passed
        (the longest a message from a worker waits unread between two calls of a caller)."""
        mailbox = self.client._mailbox
        if not mailbox.prepare_sleep():
            mailbox.signal()  # for whoever leads now (a caller may have taken it meanwhile)
            return
        self._stand_by_poll.poll(_LEASE * 1000)  # not read here: whoever leads next reads it

    def led(self) -> None:
        """A caller stops leading: if anything is left to do, wake this thread to lead."""
        mailbox = self.client._mailbox
        if not mailbox.prepare_sleep() or self.engine.calls or self.closing:
            mailbox.signal()
            self._lead_freed.set()

    def finish(self) -> None:
        """After the loop (even one that crashed): fail every unfinished and late call."""
        while True:
            try:
                item = self.client._mailbox.get_nowait()
            except IndexError:
                break
            if isinstance(item, Call):
                self.engine.submit(item, item.submitted)
            elif isinstance(item, _Query):
                item.future.set_exception(PirateError("the client was closed"))
        self.engine.fail_all()
        if self.engine.partials:
            self._deliver_partials()
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
        key: KeyArg = None,
        heartbeat: float = 1.0,
        liveness: int = 3,
        timeout: float = 5.0,
        insecure: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        retries: int = 2,
        curve_secret: str | os.PathLike[str] | None = None,
        curve_authorized: str | os.PathLike[str] | None = None,
    ) -> None:
        check_settings(heartbeat, liveness)
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        _check_retries(retries)
        self.retries = int(retries)
        keys = resolve_key(key)
        self._curve = Curve.for_client(curve_secret, curve_authorized)
        check_endpoint(bind, keys, insecure, curve=self._curve is not None)
        self.bind = bind
        self.endpoint = bind
        self.heartbeat = float(heartbeat)
        self.liveness = int(liveness)
        self.timeout = float(timeout)
        self._codec = FrameCodec(keys, int(max_message_size))
        self._authorized = (
            AuthorizedFolder(self._curve.authorized)
            if self._curve is not None and self._curve.authorized is not None else None)
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
        self._driver: _Driver | None = None
        self._subscribers = Subscribers()
        self._lead = threading.Lock()
        """Held by whichever thread drives the loop: the client thread, or a caller of ``call()``."""
        self._lead_wanted = False
        """A caller of ``call()`` found the lead taken: the client thread stands by once idle."""
        self._leader: int | None = None
        """The thread id of the caller leading now (None: the client thread, or nobody)."""
        self._last_led = -math.inf
        """When a caller last stopped leading."""

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
        # No ROUTER_HANDOVER: with it, anyone who connects claiming a worker's routing id (it
        # travels in clear) takes that worker's connection over. Without it libzmq ignores the
        # newcomer; a worker gives each of its sockets a fresh routing id, so its own
        # reconnection never collides with a connection the client still holds.
        sock.setsockopt(zmq.SNDHWM, 0)  # a ROUTER drops silently at its limit: have none
        # Nor silently to a peer it has no connection to: a send to a worker whose connection
        # closed (its process died) fails at once, so its calls go elsewhere without waiting
        # out heartbeat x liveness, and those never sent there are not counted as lost.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self._codec.max_message_size)
        authenticator = None
        try:
            if self._curve is not None:
                assert self._authorized is not None
                authenticator = start_authenticator(context, self._authorized)
                self._curve.apply(sock)
            sock.bind(self.bind)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            self._start_error = OSError(exc.errno, f"cannot bind {self.bind}: {exc.strerror}")
            sock.close(linger=0)
            if authenticator is not None:
                authenticator.stop()
            context.term()
            self._started.set()
            return
        driver = self._driver = _Driver(self, sock)
        self._started.set()
        try:
            driver.run()
        except BaseException:  # noqa: BLE001 - e.g. a user callback raising SystemExit
            logger.exception("client thread crashed")
        finally:
            with self._lock:
                self._closed = True  # from here on submit() raises instead of queueing
            driver.finish()
            self._subscribers.close()
            self._workers_changed(0, self._registrations)
            sock.close()
            if authenticator is not None:
                authenticator.stop()
            context.term()
            self._mailbox.close()

    def close(self) -> None:
        """Stop the client: unfinished futures fail with ``PirateError``; returns promptly."""
        with self._lock:
            self._closed = True
            thread = self._thread
        _live_clients.discard(self)
        if thread is None:
            self._subscribers.close()
            # Never started: fail what was submitted.
            while not self._mailbox.empty():
                item = self._mailbox.get_nowait()
                if isinstance(item, Call):
                    try:
                        item.future.set_exception(PirateError("the client was closed"))
                    except concurrent.futures.InvalidStateError:
                        pass
            return
        if thread.is_alive():
            self._mailbox.put(_CLOSE)
            if thread is threading.current_thread() or self._leader == threading.get_ident():
                return  # from a callback (or signal handler) of the loop itself: it ends after
            thread.join(timeout=5.0)

    def __enter__(self) -> Client:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- workers

    def _workers_changed(self, count: int, registrations: int) -> None:
        """From the client thread: ``count`` workers take calls now, ``registrations`` ever."""
        with self._workers_cond:
            self._worker_count = count
            self._registrations = registrations
            self._workers_cond.notify_all()

    def wait_for_worker(self, timeout: float = 3.2) -> None:
        """Return once a worker is registered; raise :class:`NoWorkerError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._workers_cond:
            while self._worker_count == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # In slices: a signal the kernel gave another thread runs its handler only
                # once the main thread wakes.
                self._workers_cond.wait(min(left, SIGNAL_PATIENCE))
            else:
                return
        explain: str = self._ask(lambda engine: engine.explain(), "")
        raise NoWorkerError(f"no worker registered at {self.endpoint} within {timeout:g} s{explain}")

    def _ask(self, ask: Callable[[ClientEngine], Any], default: Any) -> Any:
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
        def ask(engine: ClientEngine) -> list[WorkerInfo]:
            return [
                WorkerInfo(worker.id, worker.ready.name,
                           tuple(sorted(worker.procedures)), worker.capacity, len(worker.calls),
                           worker.ready.idempotent)
                for worker in engine.session.workers.values() if not worker.leaving
            ]
        result: list[WorkerInfo] = self._ask(ask, [])
        return result

    def stats(self) -> dict[str, int]:
        """Counters of the client loop (``docs/operations.md``): messages received and sent,
        those dropped by cause, workers refused by CURVE, calls submitted and how they ended,
        calls queued and in flight now, retries and events."""
        authorized = self._authorized

        def ask(engine: ClientEngine) -> dict[str, int]:
            stats = engine.session.stats
            return {
                "malformed": stats.malformed, "unauthenticated": stats.unauthenticated,
                "replayed": stats.replayed,
                "refused": authorized.refused if authorized is not None else 0,
                "received": stats.received, "sent": stats.sent,
                "queued": engine.queued, "in_flight": engine.in_flight,
                "retried": engine.retried,
                "events_received": engine.events_received,
                "submitted": engine.submitted,
                **{f"calls_{outcome}": engine.outcomes[outcome] for outcome in _OUTCOMES},
                "workers": engine.registered(),
            }
        result: dict[str, int] = self._ask(ask, {})
        return result

    # -- events

    def subscribe(self, callback: Callable[[Event], object], topic: str = "") -> Subscription:
        """Call ``callback(event)`` for every event whose topic starts with ``topic``, on the
        thread that drives the client's loop (keep it quick: it delays the client's other work), until the returned
        :class:`Subscription` is closed."""
        return Subscription(self._subscribers, callback, topic)

    def events(self, topic: str = "", maxsize: int = 10000) -> EventQueue:
        """A queue of the events whose topic starts with ``topic``: ``get(timeout)``, blocking
        iteration, ``dropped`` (the oldest go first when ``maxsize`` wait), ``close()``."""
        return EventQueue(self._subscribers, topic, maxsize)

    # -- calls

    def submit(self, procedure: str, /, *args: Any, **kwargs: Any) -> CallFuture:
        """Send a call; the returned future ends with its result, its exception, or cancelled."""
        return self._submit(procedure, args, kwargs)

    def options(self, *, retries: int | None = None, timeout: float | None = None) -> CallOptions:
        """A view of this client whose calls are sent again up to ``retries`` times when their
        worker is lost (any procedure: the caller's explicit choice), and fail with
        :class:`CallTimeout` ``timeout`` seconds after submission, wherever they are."""
        return CallOptions(self, retries, timeout)

    def _submit(
        self, procedure: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        retries: int | None = None, timeout: float | None = None,
    ) -> CallFuture:
        future, call = self._new_call(procedure, args, kwargs, retries, timeout)
        if call is not None:
            with self._lock:  # against close(): a call is either seen by the loop or refused
                if self._closed:
                    raise PirateError("the client is closed")
                self._mailbox.put(call)
        return future

    def _new_call(
        self, procedure: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        retries: int | None, timeout: float | None,
    ) -> tuple[CallFuture, Call | None]:
        """The future and the call to queue (None: it failed already, too large or unpicklable)."""
        request_id = next(self._ids)
        future = CallFuture(procedure, self._cancel, request_id)
        try:
            body = _codec.dumps_call(procedure, args, kwargs)
        except Exception as exc:  # noqa: BLE001
            future.set_exception(ProtocolError(f"cannot pickle the arguments of {procedure!r}: {exc!r}"))
            return future, None
        if len(body) > self._codec.max_body():
            future.set_exception(ProtocolError(
                f"call {procedure!r} of {len(body)} bytes exceeds max_message_size "
                f"({self._codec.max_message_size})"
            ))
            return future, None
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        return future, Call(request_id, procedure, body, future, now, retries=retries, deadline=deadline)

    def map(
        self, procedure: str, /, *iterables: Iterable[Any], timeout: float | None = None
    ) -> Iterator[Any]:
        """Like ``concurrent.futures.Executor.map``: every call goes out at once, the results
        come back in order, a call's exception is raised when its result is reached, and
        ``timeout`` bounds the whole iteration (``TimeoutError`` when it passes; the calls not
        yet done are cancelled)."""
        return self._map(procedure, iterables, timeout)

    def _map(
        self, procedure: str, iterables: tuple[Iterable[Any], ...], timeout: float | None,
        retries: int | None = None, call_timeout: float | None = None,
    ) -> Iterator[Any]:
        end = None if timeout is None else time.monotonic() + timeout
        futures = [self._submit(procedure, args, {}, retries, call_timeout) for args in zip(*iterables)]

        def results() -> Iterator[Any]:
            try:
                futures.reverse()  # pop from the end: the iterator keeps no reference to results
                while futures:
                    future = futures.pop()
                    if end is None:
                        yield future.result()
                    else:
                        yield future.result(max(0.0, end - time.monotonic()))
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def _cancel(self, future: CallFuture) -> None:
        self._mailbox.put(future.request_id)

    def call(self, procedure: str, /, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Submit and wait. On timeout the call is cancelled and :class:`CallTimeout` is raised,
        or :class:`NoWorkerError` if no worker was registered at any moment of the wait."""
        wait = self.timeout if timeout is None else timeout
        if not wait > 0:
            raise ValueError("timeout must be > 0")
        return self._call(procedure, args, kwargs, None, wait)

    def _call(
        self, procedure: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        retries: int | None, wait: float,
    ) -> Any:
        """Submit and wait, leading the loop while waiting when no other thread does.

        Leader/follower: a caller that finds the lead free drives the client's loop itself
        (its turns send the call, read the reply, run the timers and take the mailbox, for
        every call of the client), so that a call made one at a time costs no hand-off to the
        client thread and back. The deadline travels with the call either way: whoever leads
        ends it there, wherever it is."""
        driver = self._driver
        if driver is None:
            future = self._submit(procedure, args, kwargs, retries, wait)
        else:
            if self._leader == threading.get_ident() or self._thread is threading.current_thread():
                raise RuntimeError(
                    "call() from a callback of the same client would wait for itself; "
                    "use submit() there")
            future = self._call_leading(driver, procedure, args, kwargs, retries, wait)
        try:
            return future.result(wait + _GRACE)
        except concurrent.futures.TimeoutError:  # only if the client thread is stuck
            future.cancel()
            raise CallTimeout(f"{procedure!r} got no reply within {wait:g} s; cancelled") from None
        except BaseException:
            future.cancel()  # interrupted while waiting (a no-op for the call's own error)
            raise

    def _call_leading(
        self, driver: _Driver, procedure: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        retries: int | None, wait: float,
    ) -> CallFuture:
        """Take the lead if it is free and keep it until the call is over, else queue the
        call for whoever leads. In the main thread, a signal's handler that would run while
        this thread holds the lead outside its poll and callbacks waits until the lead is
        given back (and then, if it raised, the call is cancelled)."""
        interrupts = _Interrupts.hold(driver.loop)
        future: CallFuture | None = None
        try:
            if not self._lead.acquire(blocking=False):
                self._lead_wanted = True
                future = self._submit(procedure, args, kwargs, retries, wait)
            else:
                self._leader = threading.get_ident()
                try:
                    future = self._lead_call(driver, procedure, args, kwargs, retries, wait)
                finally:
                    self._leader = None
                    self._last_led = time.monotonic()
                    self._lead.release()
                    driver.led()
        finally:
            if interrupts is not None:
                try:
                    interrupts.release(driver.loop)
                except BaseException:
                    if future is not None:
                        future.cancel()
                    raise
        return future

    def _lead_call(
        self, driver: _Driver, procedure: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        retries: int | None, wait: float,
    ) -> CallFuture:
        """With the lead held: submit straight to the engine and take turns until the call
        is over (or the loop ends: the client thread then fails what is left)."""
        future, call = self._new_call(procedure, args, kwargs, retries, wait)
        if call is None:
            return future
        with self._lock:
            if self._closed:
                raise PirateError("the client is closed")
        loop = driver.loop
        try:
            driver.engine.submit(call, call.submitted)
            driver.flush()
            while not future.done():
                if not loop.turn():
                    break
                if _Interrupts._pending:
                    _Interrupts.deliver()  # a clean point: between two turns
        except BaseException:
            future.cancel()  # interrupted (or a callback raised): the call ends with the caller
            raise
        return future

    async def acall(
        self, procedure: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """``call`` for asyncio: awaits the result without blocking the loop. On timeout the
        call is cancelled and :class:`CallTimeout` (or :class:`NoWorkerError`) is raised;
        cancelling the awaiting task cancels the call."""
        return await self._acall(procedure, args, kwargs, None, timeout)

    async def _acall(
        self, procedure: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        retries: int | None, timeout: float | None,
    ) -> Any:
        wait = self.timeout if timeout is None else timeout
        if not wait > 0:
            raise ValueError("timeout must be > 0")
        future = self._submit(procedure, args, kwargs, retries, wait)
        try:
            return await asyncio.wait_for(future, wait + _GRACE)
        except asyncio.TimeoutError:  # only if the client thread is stuck
            future.cancel()
            raise CallTimeout(f"{procedure!r} got no reply within {wait:g} s; cancelled") from None
        except asyncio.CancelledError:
            future.cancel()  # the awaiting task was cancelled: so is the call
            raise

    def __repr__(self) -> str:
        return f"<Client {self.endpoint} workers={self._worker_count}>"


def _peer_address(frame: zmq.Frame) -> str:
    """The address a message came from ("" where the transport has none, as inproc)."""
    try:
        return str(frame.get("Peer-Address"))
    except (zmq.ZMQError, KeyError, ValueError):
        return ""


_OUTCOMES = ("succeeded", "raised", "timed_out", "no_worker", "lost", "protocol", "cancelled", "closed")
"""How a call can end, as counted in ``stats()["calls_..."]``."""

_GRACE = 5.0
"""How much longer ``call()`` waits than its deadline before giving up on the client thread."""

SIGNAL_PATIENCE = 0.2
"""The longest a wait in the main thread sleeps at a time (``wait_for_worker``, the command-line
tools). The kernel may deliver a process's signal to another thread, and CPython runs the Python
handler only once the main thread wakes: one blocked on a lock without a timeout never would."""

_LEASE = 0.005
"""Seconds the client thread stands by after a caller of ``call()`` last led the loop: the
longest a worker's message waits unread between two calls made one at a time."""


def _check_retries(retries: object) -> None:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")


_getsignal: Callable[[int], Any] = importlib.import_module("_signal").getsignal
"""``signal.getsignal`` less its conversion of the answer to an enum (a caught ValueError for a
Python handler): the main thread's every ``call()`` looks at two handlers."""


class _Interrupts:
    """Keeps a signal's Python handler from running in the middle of a turn led by the main
    thread (it would raise ``KeyboardInterrupt`` half-way through the engine's bookkeeping).

    Installed once per signal, in the main thread, around the handler found there, and
    transparent otherwise: while a caller leads, a signal that comes in its poll runs the
    handler at once (the poll is a clean point), one that comes in the rest of a turn runs it
    when the turn is over."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)
    _installed: dict[int, _Interrupts] = {}
    _leading: list[SocketLoop] = []
    """The loops the main thread may lead now, innermost last (a callback of one client's loop
    may call another client)."""
    _pending: list[tuple[int, Any]] = []

    def __init__(self, signum: int, previous: Callable[[int, Any], Any]) -> None:
        self.signum = signum
        self.previous = previous

    def __call__(self, signum: int, frame: Any) -> None:
        leading = _Interrupts._leading
        if leading and not leading[-1].interruptible:
            _Interrupts._pending.append((signum, frame))
            return
        self.previous(signum, frame)

    @classmethod
    def hold(cls, loop: SocketLoop) -> type[_Interrupts] | None:
        """In the main thread: wrap the handlers (once), and hold signals while ``loop`` is
        not interruptible, until :meth:`release`."""
        if threading.current_thread() is not threading.main_thread():
            return None
        for signum in cls._SIGNALS:
            handler = _getsignal(signum)
            if callable(handler) and not isinstance(handler, _Interrupts):
                wrapper = cls._installed[signum] = cls(signum, handler)
                signal.signal(signum, wrapper)
        cls._leading.append(loop)
        return cls

    @classmethod
    def deliver(cls) -> None:
        """Run the handlers of the signals held back (a clean point: between two turns)."""
        while cls._pending:
            signum, frame = cls._pending.pop(0)
            wrapper = cls._installed.get(signum)
            if wrapper is not None:
                wrapper.previous(signum, frame)

    @classmethod
    def release(cls, loop: SocketLoop) -> None:
        """The main thread no longer leads ``loop``: what is held runs now (unless an outer
        loop it leads is not interruptible)."""
        cls._leading.remove(loop)
        if not cls._leading or cls._leading[-1].interruptible:
            cls.deliver()


class CallOptions:
    """``client.options(retries=..., timeout=...)``: the client's calls, with those settings."""

    def __init__(self, client: Client, retries: int | None, timeout: float | None) -> None:
        if retries is not None:
            _check_retries(retries)
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be > 0")
        self.client = client
        self.retries = retries
        self.timeout = timeout

    def submit(self, procedure: str, /, *args: Any, **kwargs: Any) -> CallFuture:
        """``Client.submit`` with these options."""
        return self.client._submit(procedure, args, kwargs, self.retries, self.timeout)

    def call(self, procedure: str, /, *args: Any, **kwargs: Any) -> Any:
        """Submit and wait: the result, or the call's exception (``CallTimeout`` or
        ``NoWorkerError`` at the deadline, if these options set one)."""
        timeout = self.timeout if self.timeout is not None else self.client.timeout
        return self.client._call(procedure, args, kwargs, self.retries, timeout)

    async def acall(self, procedure: str, /, *args: Any, **kwargs: Any) -> Any:
        """``Client.acall`` with these options."""
        return await self.client._acall(procedure, args, kwargs, self.retries, self.timeout)

    def map(
        self, procedure: str, /, *iterables: Iterable[Any], timeout: float | None = None
    ) -> Iterator[Any]:
        """``Client.map`` with these options."""
        return self.client._map(procedure, iterables, timeout, self.retries, self.timeout)

    def __repr__(self) -> str:
        return f"<CallOptions retries={self.retries} timeout={self.timeout} of {self.client!r}>"
