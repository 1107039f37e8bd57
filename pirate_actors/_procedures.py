"""``ProcedureActor``: the base class users subclass; its public methods are procedures.

A procedure actor never touches a socket. It receives a :class:`Run` by ``tell`` from the
worker's socket actor, marks it begun (``Run.began``: the socket actor sees the flag at its next
turn, no message needed), and answers by putting messages into that actor's inbox: a
:class:`Partial` per ``report()``, then :class:`Done`. When its loop ends for any reason it hands back the calls
still in its inbox and says :class:`Exited`, so the supervisor can replace it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import queue
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, TypeVar

import pykka
from pykka import ActorRef
from pykka._envelope import Envelope

from . import _codec
from ._codec import ErrorKind
from ._errors import CallTimeout, ProtocolError
from .protocol import Command

__all__ = ["ProcedureActor", "idempotent", "idempotent_of", "is_async", "procedures_of", "slots_of"]

logger = logging.getLogger("pirate_actors.procedures")

@dataclass(slots=True)
class Run:
    """Socket actor → procedure actor: run this call and tell ``sink`` how it goes.

    ``cancelled`` is set by the supervisor (another thread) when the caller gave up; the
    procedure can poll it through :attr:`ProcedureActor.cancelled`, and ``report()`` stops
    sending."""

    request_id: int
    body: bytes | memoryview
    sink: ActorRef[Any]
    max_body: int
    """The largest answer body both ends accept (the protocol's size budget, computed there)."""
    deadline: float | None = None
    """``time.monotonic()`` after which the call must not start (None: no deadline)."""
    cancelled: bool = False
    lane: int = 0
    """Which of the worker's clients sent it (answers carry it back)."""
    slot: str = ""
    """The engine's name for where it runs: the actor's urn, or ``urn/N`` for one of an
    async actor's ``max_concurrency`` slots (``Done`` carries it back)."""
    began: bool = False
    """Set by the procedure actor when the procedure begins: the engine, which holds this same
    object, sends "started" at its next turn (or on the reply) without a message for it."""


@dataclass(frozen=True, slots=True)
class CancelSlot:
    """Socket actor → async procedure actor: cancel the task running on ``slot`` now."""

    slot: str


@dataclass(slots=True)
class Partial:
    """Procedure actor → socket actor: a ``report()``, pickled."""

    request_id: int
    body: bytes
    lane: int = 0


@dataclass(slots=True)
class Done:
    """Procedure actor → socket actor: the final REPLY or ERROR body; ``actor`` is free again."""

    request_id: int
    command: Command
    body: bytes
    actor_urn: str
    lane: int = 0
    fatal: bool = False
    """The procedure raised a BaseException: this actor stops now and takes no other call."""


@dataclass(slots=True)
class Emit:
    """Anyone in the worker's process → socket actor: an event, its data already pickled."""

    topic: str
    time: float
    data: bytes


def make_emit(topic: str, data: Any, max_size: int) -> Emit:
    """Check and pickle an event (in the emitting thread: errors are the emitter's)."""
    if not isinstance(topic, str):
        raise TypeError(f"an event topic is a str, not {type(topic).__name__}")
    body = _codec.dumps(data)
    if len(body) + len(topic.encode()) > max_size:
        raise ProtocolError(f"event of {len(body)} bytes exceeds max_message_size (at most {max_size} fit)")
    return Emit(topic, time.time(), body)


@dataclass(frozen=True)
class Exited:
    """Procedure actor → socket actor: my loop ended; these calls never started."""

    actor_urn: str
    unrun: tuple[Run, ...]
    reason: str = "its loop ended"
    """Why, as far as the actor knows (for the log of a worker that gives up)."""


def _tell(sink: ActorRef[Any], message: Any) -> None:
    """Tell the socket actor. ``ActorRef.tell`` without its liveness check (if the worker
    has stopped, nobody reads its inbox and nobody waits for the answer anyway), and without
    an envelope where its inbox takes answers bare (``_SocketInbox.put_answer``)."""
    inbox = sink.actor_inbox
    put_answer = getattr(inbox, "put_answer", None)
    if put_answer is not None:
        put_answer(message)
    else:
        inbox.put(Envelope(message))


spawning = threading.local()
"""Set by the supervisor around ``start()``: ``spawning.sink`` is the ref new actors report to."""


F = TypeVar("F", bound=Callable[..., Any])


def idempotent(procedure: F) -> F:
    """Mark a procedure as safe to run twice: a call lost with its worker is sent again
    (``Client(retries=...)``). Announced to clients in READY."""
    procedure.__pirate_idempotent__ = True  # type: ignore[attr-defined]
    return procedure


@lru_cache(maxsize=None)
def idempotent_of(cls: type) -> frozenset[str]:
    """The procedures of ``cls`` marked :func:`idempotent`."""
    return frozenset(
        name for name in procedures_of(cls)
        if getattr(getattr(cls, name, None), "__pirate_idempotent__", False)
    )


@lru_cache(maxsize=None)
def slots_of(cls: type) -> int:
    """Calls one actor of ``cls`` runs at once: ``max_concurrency`` if it has ``async def``
    procedures, else 1. ValueError for a ``max_concurrency`` that is not an int >= 1."""
    limit = getattr(cls, "max_concurrency", 1)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"{cls.__name__}.max_concurrency must be an int >= 1, not {limit!r}")
    return limit if is_async(cls) else 1


@lru_cache(maxsize=None)
def is_async(cls: type) -> bool:
    """True if ``cls`` has ``async def`` procedures: its actors run an asyncio loop, and a
    cancelled call cancels its task instead of retiring the actor."""
    return any(_table_of(cls).values())


@lru_cache(maxsize=None)
def _table_of(cls: type) -> dict[str, bool]:
    """Each procedure of ``cls``, and whether it is ``async def`` (looked up once per class,
    not per call)."""
    return {name: inspect.iscoroutinefunction(getattr(cls, name)) for name in procedures_of(cls)}


_running: contextvars.ContextVar[Run | None] = contextvars.ContextVar("pirate_actors_run", default=None)
"""The call an async procedure's task runs (each task has its own context)."""


@lru_cache(maxsize=None)
def procedures_of(cls: type) -> frozenset[str]:
    """The procedure names of a ``ProcedureActor`` subclass: its own public callables."""
    reserved = set(dir(ProcedureActor))
    return frozenset(
        name
        for name in dir(cls)
        if not name.startswith("_") and name not in reserved and callable(getattr(cls, name, None))
    )


class ProcedureActor(pykka.ThreadingActor):
    """Subclass this and add methods: every public method you define is a procedure.

    Each worker runs ``pool_size`` instances, each in its own thread; an instance runs one
    call at a time. Inside a procedure, :meth:`report` streams a partial message to the caller.

    ``async def`` procedures run on an asyncio loop of the instance's own (in a second
    thread), up to ``max_concurrency`` calls at once per instance; cancelling such a call
    cancels its task (the coroutine sees ``asyncio.CancelledError``) and frees its slot as soon
    as the coroutine returns. Plain procedures of the same class run in the actor's thread.
    """

    use_daemon_thread = True  # a stuck procedure must not keep the process alive
    max_concurrency = 1
    """Calls of ``async def`` procedures one instance runs at once (say 100 for I/O-bound work)."""

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        """A ``SimpleQueue``: the same FIFO as Pykka's ``Queue`` without its two condition
        notifications per message (measured: half the hand-off cost)."""
        return queue.SimpleQueue()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.__current: Run | None = None
        # The supervisor creates actors in its own thread with this set: where to say Exited.
        self.__sink: ActorRef[Any] | None = getattr(spawning, "sink", None)
        self.__thread: threading.Thread | None = None
        self.__exit_reason = "its loop ended (on_start failed, or it stopped itself)"
        self.__loop: asyncio.AbstractEventLoop | None = None  # for async procedures, made on demand
        self.__loop_thread: threading.Thread | None = None
        self.__tasks: dict[str, asyncio.Task[None]] = {}  # slot -> the task running there

    def __call_here(self) -> Run | None:
        """The call of the procedure running in this thread or task, if any."""
        run = _running.get()
        if run is not None:
            return run
        if threading.current_thread() is self.__thread:
            return self.__current
        return None

    def report(self, message: Any) -> None:
        """Send ``message`` to the caller of the running call, before its final reply."""
        current = self.__call_here()
        if current is None:
            raise RuntimeError("report() can only be called from inside a procedure")
        if current.cancelled:
            return  # nobody listens any more
        body = _codec.dumps(message)
        if len(body) > current.max_body:
            raise ProtocolError(
                f"partial message of {len(body)} bytes exceeds max_message_size "
                f"(at most {current.max_body} bytes fit)"
            )
        _tell(current.sink, Partial(current.request_id, body, current.lane))

    def emit(self, topic: str, data: Any = None) -> None:
        """Send an event to every client this worker is registered with (it belongs to no
        call). Emitted before the procedure returns, it arrives before the call's reply."""
        sink = self.__sink
        if sink is None:
            raise RuntimeError("emit() needs a worker: this actor was not started by one")
        current = self.__call_here() or self.__current
        max_size = current.max_body if current is not None else 2**62
        _tell(sink, make_emit(topic, data, max_size))

    @property
    def cancelled(self) -> bool:
        """True inside a procedure whose call was cancelled (or whose client left): a
        long-running procedure may poll this and return early; its result is dropped."""
        current = self.__call_here()
        return current is not None and current.cancelled

    def on_receive(self, message: Any) -> Any:
        """Run calls; anything else goes to pykka's default handling."""
        if isinstance(message, Run):
            self.__run(message)
            return None
        if isinstance(message, CancelSlot):
            if self.__loop is not None:
                # Looked up on the loop's thread, after any start() queued before it: a cancel
                # that arrives as its call is starting still finds the task.
                self.__loop.call_soon_threadsafe(self.__cancel_task, message.slot)
            return None
        return super().on_receive(message)

    # -- async procedures

    def __start_loop(self) -> asyncio.AbstractEventLoop:
        """This actor's asyncio loop, in a daemon thread of its own (made at the first call)."""
        if self.__loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self.__loop_thread = threading.Thread(
                target=serve, name=f"{self.actor_urn}-asyncio", daemon=True)
            self.__loop_thread.start()
            ready.wait()
            self.__loop = loop
        return self.__loop

    def __run_async(self, run: Run, procedure: str, args: Any, kwargs: Any) -> None:
        """Start the coroutine as a task on this actor's loop; its Done goes out when it ends."""
        loop = self.__start_loop()
        slot = run.slot or self.actor_urn
        coroutine = self.__task(run, procedure, args, kwargs, slot)

        def start() -> None:
            if run.cancelled:
                coroutine.close()
                body = _codec.dump_error(ErrorKind.NOT_RUN, "NotRun", "cancelled before it started")
                _tell(run.sink, Done(run.request_id, Command.ERROR, body, slot, run.lane))
                return
            self.__tasks[slot] = loop.create_task(coroutine)  # (context= is 3.11+; the task copies the context anyway)

        loop.call_soon_threadsafe(start)

    async def __task(self, run: Run, procedure: str, args: Any, kwargs: Any, slot: str) -> None:
        _running.set(run)
        fatal = False
        run.began = True
        try:
            result = await getattr(self, procedure)(*args, **kwargs)
            command, body = self.__dump_result(result, run.max_body)
        except asyncio.CancelledError:
            command = Command.ERROR
            if run.cancelled:  # its caller gave up: nobody reads this answer
                body = _codec.dump_error(ErrorKind.RAISED, "CancelledError", "the call was cancelled")
            else:  # the actor is stopping under it, as a thread actor's call dies with its actor
                body = _codec.dump_error(ErrorKind.RAISED, "ActorDeadError", "the procedure's actor died")
        except BaseException as exc:  # noqa: BLE001 - the caller gets it
            command, body, fatal = self.__failed(exc, procedure, run.max_body)
        finally:
            if self.__tasks.get(slot) is asyncio.current_task():
                del self.__tasks[slot]
        self.__done(run, command, body, slot, fatal, procedure)

    def __cancel_task(self, slot: str) -> None:
        task = self.__tasks.get(slot)
        if task is not None:
            task.cancel()

    def __stop_loop(self) -> None:
        """Cancel what still runs on the loop and end its thread (the actor is stopping)."""
        loop, thread = self.__loop, self.__loop_thread
        if loop is None or thread is None:
            return

        async def wind_down() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(wind_down(), loop)
        except RuntimeError:
            return  # already closed
        thread.join(5.0)
        if not thread.is_alive():
            loop.close()

    def __run(self, run: Run) -> None:
        self.__thread = threading.current_thread()
        sink = run.sink
        slot = run.slot or self.actor_urn
        try:
            procedure, args, kwargs = _codec.loads(run.body)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit from a __setstate__
            run.began = True
            body = _codec.dump_error(ErrorKind.PROTOCOL, "ProtocolError", f"undecodable call: {exc!r}")
            _tell(sink, Done(run.request_id, Command.ERROR, body, slot, run.lane))
            return
        table = _table_of(type(self))
        if not isinstance(procedure, str) or procedure not in table:
            served = ", ".join(sorted(procedures_of(type(self)))) or "nothing"
            body = _codec.dump_error(
                ErrorKind.UNKNOWN, "UnknownProcedure",
                f"no procedure {procedure!r} on {type(self).__name__}; it serves: {served}",
            )
            _tell(sink, Done(run.request_id, Command.ERROR, body, slot, run.lane))
            return
        if run.cancelled:  # cancelled (or its client lost) before this actor got to it
            body = _codec.dump_error(ErrorKind.NOT_RUN, "NotRun", "cancelled before it started")
            _tell(sink, Done(run.request_id, Command.ERROR, body, slot, run.lane))
            return
        if run.deadline is not None and time.monotonic() >= run.deadline:
            body = _codec.dump_exception(CallTimeout(f"{procedure!r} was not started: its deadline had passed"))
            _tell(sink, Done(run.request_id, Command.ERROR, body, slot, run.lane))
            return
        if table[procedure]:
            self.__run_async(run, procedure, args, kwargs)
            return
        run.began = True
        self.__current = run
        fatal = False
        try:
            result = getattr(self, procedure)(*args, **kwargs)
            command, body = self.__dump_result(result, run.max_body)
        except BaseException as exc:  # noqa: BLE001 - the caller gets it
            command, body, fatal = self.__failed(exc, procedure, run.max_body)
        finally:
            self.__current = None
        self.__done(run, command, body, slot, fatal, procedure)

    def __failed(self, exc: BaseException, procedure: str, max_body: int) -> tuple[Command, bytes, bool]:
        """The ERROR for what a procedure raised, and whether it was fatal: an ``Exception``
        goes to the caller and the actor lives on; a ``BaseException`` (SystemExit & co) goes
        to the caller too, and then the actor is replaced."""
        fatal = not isinstance(exc, Exception)
        if fatal:
            self.__exit_reason = f"procedure {procedure!r} raised {exc!r}"
        return Command.ERROR, _codec.dump_exception(exc, max_body), fatal

    def __done(self, run: Run, command: Command, body: bytes, slot: str, fatal: bool, procedure: str) -> None:
        _tell(run.sink, Done(run.request_id, command, body, slot, run.lane, fatal))
        if fatal:
            logger.warning("procedure %s raised a BaseException; replacing its actor", procedure)
            self.stop()  # (puts a stop message in the inbox: safe from any thread)

    @staticmethod
    def __dump_result(result: Any, max_body: int) -> tuple[Command, bytes]:
        """REPLY with the pickled result, or ERROR if it cannot be pickled or is too large."""
        try:
            body = _codec.dumps(result)
        except Exception as exc:  # noqa: BLE001
            return Command.ERROR, _codec.dump_error(
                ErrorKind.PROTOCOL, "ProtocolError", f"cannot pickle the result: {exc!r}"
            )
        if len(body) > max_body:
            return Command.ERROR, _codec.dump_error(
                ErrorKind.PROTOCOL, "ProtocolError",
                f"result of {len(body)} bytes exceeds max_message_size "
                f"(at most {max_body} bytes fit)",
            )
        return Command.REPLY, body

    def _actor_loop_teardown(self) -> None:
        """Hand back calls that never started and tell the supervisor this actor is gone.

        Pykka's own teardown drops ``tell``\\ s silently; a call must never vanish that way.
        """
        unrun: list[Run] = []
        others = []
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            if isinstance(envelope.message, Run):
                unrun.append(envelope.message)
            else:
                others.append(envelope)
        for envelope in others:
            self.actor_inbox.put(envelope)
        self.__stop_loop()
        super()._actor_loop_teardown()
        sink = self.__sink
        if sink is not None:
            _tell(sink, Exited(self.actor_urn, tuple(unrun), self.__exit_reason))
