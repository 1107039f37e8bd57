"""``ProcedureActor``: the base class users subclass; its public methods are procedures.

A procedure actor never touches a socket. It receives a :class:`Run` by ``tell`` from the
worker's socket actor and answers by putting messages into that actor's inbox: :class:`Started`
(without waking it), a :class:`Partial` per ``report()``, then :class:`Done`. When its loop ends for any reason it hands back the calls
still in its inbox and says :class:`Exited`, so the supervisor can replace it.
"""

from __future__ import annotations

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

__all__ = ["ProcedureActor", "idempotent", "idempotent_of", "procedures_of"]

logger = logging.getLogger("pirate_actors.procedures")

@dataclass(slots=True)
class Run:
    """Socket actor → procedure actor: run this call and tell ``sink`` how it goes.

    ``cancelled`` is set by the supervisor (another thread) when the caller gave up; the
    procedure can poll it through :attr:`ProcedureActor.cancelled`, and ``report()`` stops
    sending."""

    request_id: int
    body: bytes
    sink: ActorRef[Any]
    max_body: int
    """The largest answer body both ends accept (the protocol's size budget, computed there)."""
    deadline: float | None = None
    """``time.monotonic()`` after which the call must not start (None: no deadline)."""
    cancelled: bool = False
    lane: int = 0
    """Which of the worker's clients sent it (answers carry it back)."""


@dataclass(slots=True)
class Started:
    """Procedure actor → socket actor: the call began."""

    request_id: int
    lane: int = 0


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
    """Tell the socket actor. ``ActorRef.tell`` without its liveness check: if the worker
    has stopped, nobody reads its inbox and nobody waits for the answer anyway."""
    sink.actor_inbox.put(Envelope(message))


def _tell_started(sink: ActorRef[Any], request_id: int, lane: int) -> None:
    """Tell the socket actor a call started, without waking it if its inbox allows."""
    inbox = sink.actor_inbox
    put = getattr(inbox, "put_quietly", inbox.put)
    put(Envelope(Started(request_id, lane)))


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
    """

    use_daemon_thread = True  # a stuck procedure must not keep the process alive

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

    def report(self, message: Any) -> None:
        """Send ``message`` to the caller of the running call, before its final reply."""
        current = self.__current
        if current is None or threading.current_thread() is not self.__thread:
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
        current = self.__current
        max_size = current.max_body if current is not None else 2**62
        _tell(sink, make_emit(topic, data, max_size))

    @property
    def cancelled(self) -> bool:
        """True inside a procedure whose call was cancelled (or whose client left): a
        long-running procedure may poll this and return early; its result is dropped."""
        current = self.__current
        return current is not None and current.cancelled

    def on_receive(self, message: Any) -> Any:
        """Run calls; anything else goes to pykka's default handling."""
        if isinstance(message, Run):
            self.__run(message)
            return None
        return super().on_receive(message)

    def __run(self, run: Run) -> None:
        self.__thread = threading.current_thread()
        sink = run.sink
        try:
            procedure, args, kwargs = _codec.loads(run.body)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit from a __setstate__
            _tell_started(sink, run.request_id, run.lane)
            body = _codec.dump_error(ErrorKind.PROTOCOL, "ProtocolError", f"undecodable call: {exc!r}")
            _tell(sink, Done(run.request_id, Command.ERROR, body, self.actor_urn, run.lane))
            return
        if not isinstance(procedure, str) or procedure not in procedures_of(type(self)):
            body = _codec.dump_error(
                ErrorKind.UNKNOWN, "UnknownProcedure",
                f"no procedure {procedure!r} on {type(self).__name__}",
            )
            _tell(sink, Done(run.request_id, Command.ERROR, body, self.actor_urn, run.lane))
            return
        if run.cancelled:  # cancelled (or its client lost) before this actor got to it
            body = _codec.dump_error(ErrorKind.NOT_RUN, "NotRun", "cancelled before it started")
            _tell(sink, Done(run.request_id, Command.ERROR, body, self.actor_urn, run.lane))
            return
        if run.deadline is not None and time.monotonic() >= run.deadline:
            body = _codec.dump_exception(CallTimeout(f"{procedure!r} was not started: its deadline had passed"))
            _tell(sink, Done(run.request_id, Command.ERROR, body, self.actor_urn, run.lane))
            return
        _tell_started(sink, run.request_id, run.lane)
        self.__current = run
        fatal = False
        try:
            result = getattr(self, procedure)(*args, **kwargs)
            command, body = self.__dump_result(result, run.max_body)
        except Exception as exc:  # noqa: BLE001 - the caller gets it
            command, body = Command.ERROR, _codec.dump_exception(exc, run.max_body)
        except BaseException as exc:  # noqa: BLE001 - SystemExit & co: reply, then be replaced
            command, body = Command.ERROR, _codec.dump_exception(exc, run.max_body)
            fatal = True
            self.__exit_reason = f"procedure {procedure!r} raised {exc!r}"
        finally:
            self.__current = None
        _tell(sink, Done(run.request_id, command, body, self.actor_urn, run.lane, fatal))
        if fatal:
            logger.warning("procedure %s raised a BaseException; replacing its actor", procedure)
            self.stop()

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
        super()._actor_loop_teardown()
        sink = self.__sink
        if sink is not None:
            _tell(sink, Exited(self.actor_urn, tuple(unrun), self.__exit_reason))
